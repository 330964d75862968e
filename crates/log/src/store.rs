//! The chain in the database: storing events inside the writer's transaction, the
//! sequencer that gives committed events their place at the chain's end, and reading
//! the log back in chain order. (Its signed statements are `statements`; removing old
//! events, `retention`.)
//!
//! One chain on every backend and any number of instances. A writer inserts its events
//! without a position and commits: it takes no lock another writer waits on. The
//! sequencer, one instance at a time, reads what is waiting, hashes it onto the chain
//! and writes positions, the last position and hash living in one row
//! (`event_chain_head`). Reads return events before they are placed; the checkpoints
//! page counts them (`unchained`).

use serde_json::value::RawValue;
use uuid::Uuid;

use super::chain::Entry;
use studyhall_core::clock::Micros;
use studyhall_core::db::{Db, Tx};
use studyhall_core::sql::Sql;

/// Rows per multi-row INSERT (× 7 parameters, far below either backend's limit).
const INSERT_CHUNK: usize = 500;

/// The end of the chain.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Head {
    /// The last position given out; 0 before the first event.
    pub position: i64,
    pub hash: String,
}

/// A stored event with its place in the chain.
#[derive(Debug, Clone)]
pub struct ChainedEvent {
    pub position: i64,
    pub hash: String,
    pub id: Uuid,
    pub created_at: Micros,
    pub component: String,
    pub environment: String,
    pub email: String,
    pub message: String,
    pub data: Box<RawValue>,
}

impl ChainedEvent {
    pub fn entry(&self) -> Entry<'_> {
        Entry {
            position: self.position,
            id: self.id,
            created_at: self.created_at,
            component: &self.component,
            environment: &self.environment,
            email: &self.email,
            message: &self.message,
            data: self.data.get(),
        }
    }
}

fn decode_error(err: impl std::error::Error + Send + Sync + 'static) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(err))
}

const HEAD: &str = "SELECT position, hash FROM event_chain_head WHERE id = 1";

/// Takes the next `count` positions: the head before them, its row locked until `tx`
/// ends (SQLite's write transaction already excludes every other writer). One
/// statement, one round trip.
async fn reserve(tx: &mut Tx, count: usize) -> Result<Head, sqlx::Error> {
    let (position, hash) = Sql::new(
        "UPDATE event_chain_head SET position = position + $1 WHERE id = 1 RETURNING position - $1, hash",
    )
    .bind(count as i64)
    .fetch_one::<(i64, String)>(tx)
    .await?;
    Ok(Head { position, hash })
}

/// Writes the hash at the end of the reserved positions.
async fn seal_head(tx: &mut Tx, hash: &str) -> Result<(), sqlx::Error> {
    Sql::new("UPDATE event_chain_head SET hash = $1 WHERE id = 1")
        .bind(hash)
        .execute(tx)
        .await
        .map(drop)
}

/// The committed head.
pub async fn head(db: &Db) -> Result<Head, sqlx::Error> {
    let (position, hash) = Sql::new(HEAD).fetch_one::<(i64, String)>(db).await?;
    Ok(Head { position, hash })
}

/// The chain hash stored at `position`, if an event is there.
pub async fn hash_at(db: &Db, position: i64) -> Result<Option<String>, sqlx::Error> {
    Sql::new("SELECT hash FROM events WHERE position = $1")
        .bind(position)
        .fetch_scalar(db)
        .await
}

/// The position of the first chained event stored at or after `since`: with the
/// head's, how many events a period holds, in one index lookup whatever the log's size.
pub async fn first_position_since(db: &Db, since: Micros) -> Result<Option<i64>, sqlx::Error> {
    Sql::new(
        "SELECT position FROM events WHERE created_at >= $1 AND position IS NOT NULL
         ORDER BY created_at, id LIMIT 1",
    )
    .bind(since.0)
    .fetch_scalar(db)
    .await
}

/// The messages `component` recorded at or after `since`, newest first, each with
/// when, at most `limit` of them.
pub async fn recorded_since(
    db: &Db,
    component: &str,
    since: Micros,
    limit: i64,
) -> Result<Vec<(String, Micros)>, sqlx::Error> {
    let rows: Vec<(String, i64)> = Sql::new(
        "SELECT message, created_at FROM events
         WHERE component = $1 AND created_at >= $2
         ORDER BY created_at DESC LIMIT $3",
    )
    .bind(component)
    .bind(since.0)
    .bind(limit)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(message, at)| (message, Micros(at)))
        .collect())
}

/// Stores `entries` inside `tx`, not yet in the chain: no position, no hash, no lock
/// shared with any other writer. The sequencer ([`sequence`]) gives them their place
/// once they are committed, so a write never waits on another through the log.
pub(crate) async fn append(tx: &mut Tx, entries: &[Entry<'_>]) -> Result<(), sqlx::Error> {
    for chunk in entries.chunks(INSERT_CHUNK) {
        let text = format!(
            "INSERT INTO events (id, component, data, email, environment, message, created_at) VALUES {}",
            studyhall_core::sql::values_rows(chunk.len(), 7, studyhall_core::sql::tuple)
        );
        let mut insert = Sql::new(&text);
        for entry in chunk {
            insert = insert
                .bind(entry.id)
                .bind(entry.component)
                .bind(entry.data)
                .bind(entry.email)
                .bind(entry.environment)
                .bind(entry.message)
                .bind(entry.created_at);
        }
        insert.execute(&mut *tx).await?;
    }
    Ok(())
}

pub(crate) const CHAINED_COLUMNS: &str =
    "position, hash, CAST(id AS TEXT), created_at, component, environment, email, message, data";

pub(crate) type ChainedRow = (
    i64,
    String,
    String,
    i64,
    String,
    String,
    String,
    String,
    String,
);

pub(crate) fn chained_from_row(row: ChainedRow) -> Result<ChainedEvent, sqlx::Error> {
    let (position, hash, id, created_at, component, environment, email, message, data) = row;
    Ok(ChainedEvent {
        position,
        hash,
        id: Uuid::try_parse(&id).map_err(decode_error)?,
        created_at: Micros(created_at),
        component,
        environment,
        email,
        message,
        data: RawValue::from_string(data).map_err(decode_error)?,
    })
}

/// Why sequencing stopped.
#[derive(Debug, thiserror::Error)]
pub enum SequenceError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// Another sequencer placed some of the events this one read: nothing was written.
    #[error("{placed} of {read} events were sequenced by another sequencer meanwhile; nothing was written")]
    Raced { read: usize, placed: usize },
}

/// What a sequencer does when another holds the lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// Skips its turn (the sealer's rounds: the holder places what waits).
    Skip,
    /// Waits for it (before reading the chain to its end, as an export does).
    Wait,
}

/// The sequencer: gives committed events their place at the end of the chain, in
/// (created_at, id) order among those waiting, `batch` per transaction, until none is
/// left; how many it placed. Any instance may run it at any time; one sequences at a
/// time, holding the chain head's row lock as its lease (a crashed holder's lock goes
/// with its connection). An event committed late, by a transaction held open while
/// others committed, is placed by the next round: the sequencer reads what is waiting,
/// not what comes after a position.
pub async fn sequence(db: &Db, batch: i64, lease: Lease) -> Result<u64, SequenceError> {
    let mut placed = 0;
    loop {
        let mut tx = db.begin_write().await?;
        // SQLite's write transaction already excludes every other writer.
        if tx.dialect().concurrent_writes() {
            let text = match lease {
                Lease::Skip => "SELECT 1 FROM event_chain_head WHERE id = 1 FOR UPDATE SKIP LOCKED",
                Lease::Wait => "SELECT 1 FROM event_chain_head WHERE id = 1 FOR UPDATE",
            };
            if Sql::new(text)
                .fetch_optional::<(i32,)>(&mut tx)
                .await?
                .is_none()
            {
                return Ok(placed);
            }
        }
        let count = sequence_batch(&mut tx, batch).await?;
        if count == 0 {
            return Ok(placed);
        }
        tx.commit().await?;
        metrics::counter!("audit_events_sequenced_total").increment(count);
        placed += count;
    }
}

/// Places up to `batch` waiting events after the chain's head inside `tx`; how many.
/// The caller holds the lease ([`sequence`]). Should two sequencers both believe they
/// hold it, the second's positions come after the first's (the head's row is locked
/// until the first commits) and its write is refused whole if any event it read was
/// placed meanwhile ([`SequenceError::Raced`]): no event is ever placed twice.
pub async fn sequence_batch(tx: &mut Tx, batch: i64) -> Result<u64, SequenceError> {
    let rows: Vec<(String, i64, String, String, String, String, String)> = Sql::new(
        "SELECT CAST(id AS TEXT), created_at, component, environment, email, message, data
         FROM events WHERE position IS NULL ORDER BY created_at, id LIMIT $1",
    )
    .bind(batch)
    .fetch_all(&mut *tx)
    .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut head = reserve(tx, rows.len()).await?;
    let mut placed = Vec::with_capacity(rows.len());
    for (id, created_at, component, environment, email, message, data) in &rows {
        let entry = Entry {
            position: head.position + 1,
            id: Uuid::try_parse(id).map_err(decode_error)?,
            created_at: Micros(*created_at),
            component,
            environment,
            email,
            message,
            data,
        };
        head = Head {
            position: entry.position,
            hash: entry.link(&head.hash).map_err(decode_error)?,
        };
        placed.push((head.position, head.hash.clone(), id));
    }
    // One statement for the batch, so the lease is held briefly; only events still
    // waiting are placed.
    let id = tx.dialect().uuid("v.column3");
    let text = format!(
        "UPDATE events SET position = v.column1, hash = v.column2 FROM (VALUES {}) AS v
         WHERE events.id = {id} AND events.position IS NULL",
        studyhall_core::sql::values_rows(placed.len(), 3, studyhall_core::sql::tuple)
    );
    let mut update = Sql::new(&text);
    for (position, hash, id) in &placed {
        update = update.bind(*position).bind(hash).bind(*id);
    }
    let written = update.execute(&mut *tx).await?;
    if written != placed.len() as u64 {
        return Err(SequenceError::Raced {
            read: placed.len(),
            placed: placed.len() - written as usize,
        });
    }
    seal_head(tx, &head.hash).await?;
    Ok(placed.len() as u64)
}

/// Events not chained yet (they are stored and listed all the same).
pub async fn unchained(db: &Db) -> Result<i64, sqlx::Error> {
    Ok(
        Sql::new("SELECT count(*) FROM events WHERE position IS NULL")
            .fetch_scalar::<i64>(db)
            .await?
            .unwrap_or(0),
    )
}

/// Exact filters of an export; `None` everywhere is the whole log.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub email: Option<String>,
    pub environment: Option<String>,
    pub component: Option<String>,
    pub message: Option<String>,
    pub from: Option<i64>,
    pub to: Option<i64>,
}

impl Filter {
    pub fn is_everything(&self) -> bool {
        self.email.is_none()
            && self.environment.is_none()
            && self.component.is_none()
            && self.message.is_none()
            && self.from.is_none()
            && self.to.is_none()
    }
}

/// Up to `limit` chained events after `after`, in chain order, matching `filter`.
pub async fn chained_after(
    db: &Db,
    after: i64,
    limit: i64,
    filter: &Filter,
) -> Result<Vec<ChainedEvent>, sqlx::Error> {
    let mut text = format!("SELECT {CHAINED_COLUMNS} FROM events WHERE position > $1");
    let mut params: Vec<studyhall_core::sql::Param> = vec![after.into()];
    let mut clause = |sql: &str, value: studyhall_core::sql::Param| {
        params.push(value);
        text.push_str(&sql.replace('?', &format!("${}", params.len())));
    };
    for (column, value) in [
        ("email", &filter.email),
        ("environment", &filter.environment),
        ("component", &filter.component),
    ] {
        if let Some(value) = value {
            clause(&format!(" AND {column} = ?"), value.into());
        }
    }
    if let Some(message) = &filter.message {
        // Case-sensitive, like the list route; an export walks the chain anyway.
        let test = format!(" AND {}", db.dialect().contains("message", "?"));
        clause(&test, message.into());
    }
    if let Some(from) = filter.from {
        clause(" AND created_at >= ?", from.into());
    }
    if let Some(to) = filter.to {
        clause(" AND created_at < ?", to.into());
    }
    params.push(limit.into());
    text.push_str(&format!(" ORDER BY position LIMIT ${}", params.len()));
    let mut query = Sql::new(&text);
    for param in params {
        query = query.bind(param);
    }
    query
        .fetch_all::<ChainedRow>(db)
        .await?
        .into_iter()
        .map(chained_from_row)
        .collect()
}
