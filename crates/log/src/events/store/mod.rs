//! Event storage: one narrow interface, one implementation per backend side by side.

mod postgres;
mod sqlite;

use sqlx::{Database, Encode, QueryBuilder, Type};
use uuid::Uuid;

use super::model::{Event, NewEvent};
use super::query::ListQuery;
use crate::chain::Entry;
use studyhall_core::clock::Micros;
use studyhall_core::db::Db;
use studyhall_core::sql::Sql;

/// What each backend has learned of how common a trigram is among the messages (SQLite:
/// a bounded count; PostgreSQL: a sampled share), kept for a minute: a figure only
/// chooses how a search reads, never what it finds, and it changes slowly, as a
/// planner's statistics do.
#[derive(Clone)]
struct TrigramStats<V: Clone> {
    known: std::sync::Arc<quick_cache::sync::Cache<String, (V, std::time::Instant)>>,
}

impl<V: Clone> TrigramStats<V> {
    /// Trigrams remembered, and for how long.
    const CAPACITY: usize = 4096;
    const TTL: std::time::Duration = std::time::Duration::from_secs(60);

    fn new() -> Self {
        TrigramStats {
            known: std::sync::Arc::new(quick_cache::sync::Cache::new(Self::CAPACITY)),
        }
    }

    /// The figure for `trigram`, if learned within the last minute.
    fn get(&self, trigram: &str) -> Option<V> {
        self.known
            .get(trigram)
            .filter(|(_, at)| at.elapsed() < Self::TTL)
            .map(|(value, _)| value)
    }

    fn insert(&self, trigram: &str, value: V) {
        self.known
            .insert(trigram.to_owned(), (value, std::time::Instant::now()));
    }
}

impl<V: Clone> std::fmt::Debug for TrigramStats<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TrigramStats({} known)", self.known.len())
    }
}

pub(crate) const COLUMNS: &str =
    "events.id, events.component, events.data, events.email, events.environment, events.message, events.created_at";

/// An event the writer is about to store, with its id and timestamp assigned.
#[derive(Debug)]
pub struct Pending<'a> {
    pub id: Uuid,
    pub created_at: Micros,
    pub event: &'a NewEvent,
    pub claim: Option<&'a KeyClaim>,
}

/// An `Idempotency-Key` the event is stored under.
#[derive(Debug, Clone)]
pub struct KeyClaim {
    pub scope: String,
    pub key: String,
    pub fingerprint: String,
}

/// What a stored key points at.
#[derive(Debug, Clone)]
pub struct KeyRecord {
    pub fingerprint: String,
    pub event_id: Uuid,
}

#[derive(Debug)]
pub enum Inserted {
    Created(Event),
    /// Another request stored an event under the same idempotency key first; nothing
    /// was written for this one.
    KeyTaken,
}

impl Pending<'_> {
    fn entry(&self) -> Entry<'_> {
        let event = self.event;
        Entry {
            position: 0,
            id: self.id,
            created_at: self.created_at,
            component: &event.component,
            environment: &event.environment,
            email: &event.email,
            message: &event.message,
            data: event.data.get(),
        }
    }

    fn stored(&self) -> Event {
        Event {
            id: self.id,
            component: self.event.component.clone(),
            data: self.event.data.clone(),
            email: self.event.email.clone(),
            environment: self.event.environment.clone(),
            message: self.event.message.clone(),
            created_at: self.created_at,
        }
    }
}

#[derive(Clone, Debug)]
pub struct EventStore {
    backend: Backend,
    /// Events are chained as they are stored (`STUDYHALL_AUDIT_CHAIN`).
    chain: bool,
}

#[derive(Clone, Debug)]
enum Backend {
    Sqlite(sqlite::SqliteEvents),
    Postgres(postgres::PgEvents),
}

impl EventStore {
    pub fn new(db: &Db, chain: bool) -> EventStore {
        let backend = match db {
            Db::Sqlite(db) => Backend::Sqlite(sqlite::SqliteEvents::new(db.clone())),
            Db::Postgres(pool) => Backend::Postgres(postgres::PgEvents::new(pool.clone())),
        };
        EventStore { backend, chain }
    }

    pub fn db(&self) -> Db {
        match &self.backend {
            Backend::Sqlite(store) => Db::Sqlite(store.db.clone()),
            Backend::Postgres(store) => Db::Postgres(store.pool.clone()),
        }
    }

    /// Stores a batch in one transaction, at the end of the audit chain: all of it or
    /// none of it. An event whose idempotency key another request holds is not stored;
    /// the key's foreign key to its event is checked at commit.
    #[tracing::instrument(skip_all, fields(batch = batch.len()))]
    pub async fn insert_batch(&self, batch: &[Pending<'_>]) -> Result<Vec<Inserted>, sqlx::Error> {
        let mut tx = self.db().begin_write().await?;
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut entries = Vec::with_capacity(batch.len());
        for pending in batch {
            if let Some(claim) = pending.claim {
                let claimed = Sql::new(
                    "INSERT INTO event_idempotency_keys (scope, key, fingerprint, event_id, created_at)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                )
                .bind(&claim.scope)
                .bind(&claim.key)
                .bind(&claim.fingerprint)
                .bind(pending.id)
                .bind(pending.created_at)
                .execute(&mut tx)
                .await?;
                if claimed == 0 {
                    outcomes.push(Inserted::KeyTaken);
                    continue;
                }
            }
            outcomes.push(Inserted::Created(pending.stored()));
            entries.push(pending.entry());
        }
        if self.chain {
            crate::store::append(&mut tx, &entries).await?;
        } else {
            crate::store::append_unchained(&mut tx, &entries).await?;
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    #[tracing::instrument(skip(self))]
    pub async fn find_key(&self, scope: &str, key: &str) -> Result<Option<KeyRecord>, sqlx::Error> {
        match &self.backend {
            Backend::Sqlite(store) => store.find_key(scope, key).await,
            Backend::Postgres(store) => store.find_key(scope, key).await,
        }
    }

    #[tracing::instrument(skip(self))]
    pub async fn get(&self, id: Uuid) -> Result<Option<Event>, sqlx::Error> {
        match &self.backend {
            Backend::Sqlite(store) => store.get(id).await,
            Backend::Postgres(store) => store.get(id).await,
        }
    }

    /// Places every event stored without a position so far (while the chain was off, or
    /// by an older version) in the chain, waiting for another instance's sequencer if it
    /// holds the lease: before reading the chain to its end, as an export does, so the
    /// export holds every event stored before it began. Nothing when the chain is off.
    pub async fn place_waiting(&self) -> Result<(), sqlx::Error> {
        use crate::store::{sequence, Lease, SequenceError};
        if !self.chain {
            return Ok(());
        }
        match sequence(&self.db(), crate::SEQUENCE_BATCH, Lease::Wait).await {
            // Raced: another sequencer placed them.
            Ok(_) | Err(SequenceError::Raced { .. }) => Ok(()),
            Err(SequenceError::Database(err)) => Err(err),
        }
    }

    /// An event's place in the audit chain: its position and hash (hex), once chained.
    pub async fn chain_place(&self, id: Uuid) -> Result<Option<(i64, String)>, sqlx::Error> {
        let place: Option<(Option<i64>, Option<String>)> =
            Sql::new("SELECT position, hash FROM events WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.db())
                .await?;
        Ok(match place {
            Some((Some(position), Some(hash))) => Some((position, hash)),
            _ => None,
        })
    }

    /// Up to `query.limit` matching events after the cursor, in the requested order.
    #[tracing::instrument(skip(self))]
    pub async fn list(&self, query: &ListQuery, limit: u32) -> Result<Vec<Event>, sqlx::Error> {
        match &self.backend {
            Backend::Sqlite(store) => store.list(query, limit).await,
            Backend::Postgres(store) => store.list(query, limit).await,
        }
    }

    /// Forgets idempotency keys stored before `before` (Unix microseconds).
    pub async fn prune_keys(&self, before: i64) -> Result<u64, sqlx::Error> {
        Sql::new("DELETE FROM event_idempotency_keys WHERE created_at < $1")
            .bind(before)
            .execute(&self.db())
            .await
    }
}

/// ` WHERE` the exact-match and date filters, the same on every backend. The caller
/// adds its own message and cursor clauses.
fn push_filters<'a, DB>(qb: &mut QueryBuilder<'a, DB>, query: &'a ListQuery)
where
    DB: Database,
    &'a str: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    qb.push(" WHERE TRUE");
    let exact = [
        ("email", &query.filter.email),
        ("environment", &query.filter.environment),
        ("component", &query.filter.component),
    ];
    for (column, value) in exact {
        if let Some(value) = value {
            qb.push(format_args!(" AND {column} = "))
                .push_bind(value.as_str());
        }
    }
    if let Some(from) = query.filter.from {
        qb.push(" AND events.created_at >= ").push_bind(from);
    }
    if let Some(to) = query.filter.to {
        qb.push(" AND events.created_at < ").push_bind(to);
    }
}

/// The keyset comparison and ORDER BY for the page direction.
fn page_order(query: &ListQuery) -> (&'static str, &'static str) {
    if query.descending {
        ("<", "DESC")
    } else {
        (">", "ASC")
    }
}

fn decode_event(
    id: Uuid,
    component: String,
    data: String,
    email: String,
    environment: String,
    message: String,
    created_at: Micros,
) -> Result<Event, sqlx::Error> {
    let data = serde_json::value::RawValue::from_string(data)
        .map_err(|err| sqlx::Error::Decode(Box::new(err)))?;
    Ok(Event {
        id,
        component,
        data,
        email,
        environment,
        message,
        created_at,
    })
}
