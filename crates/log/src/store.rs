//! The chain in the database: appending events at its end inside the caller's
//! transaction, the sequencer that places events stored without a position, and
//! reading the log back in chain order. (Its signed statements are `statements`;
//! removing old events, `retention`.)
//!
//! One chain on every backend and any number of instances: the last position and
//! hash live in one row (`event_chain_head`) that each appending transaction locks
//! after its other writes, by the `UPDATE … RETURNING` that reserves its positions
//! (SQLite has one writer at a time anyway), so appenders never wait on each other in
//! another order, and holds until it commits. Writers already group-commit, so one lock
//! turn carries a whole batch.

use serde_json::value::RawValue;
use uuid::Uuid;

use super::chain::Entry;
use studyhall_core::clock::Micros;
use studyhall_core::db::{Db, Tx};
use studyhall_core::dialect::Dialect;
use studyhall_core::sql::Sql;

/// Rows per multi-row INSERT (× 9 parameters, far below either backend's limit).
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

/// Where this process last saw the chain end. On PostgreSQL a batch appends after it
/// in one statement whose guard (the head row still holds it, checked under the row's
/// lock) lets the insert through; if another transaction or instance moved the head,
/// nothing is written and the batch takes the reservation's round trip. The guard is
/// checked on the database written to, so a stale hint, or one seen on another
/// database, costs that round trip and never a wrong link.
static HEAD_HINT: std::sync::Mutex<Option<Head>> = std::sync::Mutex::new(None);

fn hint() -> Option<Head> {
    HEAD_HINT.lock().ok().and_then(|hint| hint.clone())
}

fn remember(head: &Head) {
    if let Ok(mut hint) = HEAD_HINT.lock() {
        *hint = Some(head.clone());
    }
}

/// Stores `entries` at the end of the chain inside `tx` (their `position` is assigned
/// here), as the transaction's last statements: its callers commit right after, so the
/// head's lock is the last a transaction takes (modules record through
/// [`crate::commit`], which keeps that order for them).
pub(crate) async fn append(tx: &mut Tx, entries: &[Entry<'_>]) -> Result<(), sqlx::Error> {
    if entries.is_empty() {
        return Ok(());
    }
    let concurrent = tx.dialect().concurrent_writes();
    if concurrent && entries.len() <= INSERT_CHUNK {
        if let Some(seen) = hint() {
            let (chained, head) = link(&seen, entries)?;
            if append_after(tx, &seen, &chained, &head).await? {
                metrics::counter!("audit_chain_appends_total", "head" => "seen").increment(1);
                remember(&head);
                return Ok(());
            }
        }
    }
    metrics::counter!("audit_chain_appends_total", "head" => "reserved").increment(1);
    let start = reserve(tx, entries.len()).await?;
    let (chained, head) = link(&start, entries)?;
    insert(tx, &chained, Some(&head.hash)).await?;
    if concurrent {
        remember(&head);
    } else {
        // SQLite: the tree grows in the same transaction, in process, from the entries
        // in hand, so the sealer neither reads them back nor waits for the writer's
        // turn to add them. (On PostgreSQL that would add round trips while the head is
        // locked; there the sealer grows it.)
        crate::integrate::extend(tx, start.position, &leaves(&chained)).await?;
    }
    Ok(())
}

/// An event to insert, with its hash (`None` outside the chain).
type Row<'a> = (Entry<'a>, Option<String>);

/// The tree's leaf hash of each row.
fn leaves(rows: &[Row<'_>]) -> Vec<crate::tree::Hash> {
    rows.iter()
        .map(|(entry, _)| crate::tree::leaf_hash(&entry.canonical()))
        .collect()
}

/// `entries` at the positions after `start`, each with its hash; and the new head.
fn link<'a>(start: &Head, entries: &[Entry<'a>]) -> Result<(Vec<Row<'a>>, Head), sqlx::Error> {
    let mut head = start.clone();
    let mut chained = Vec::with_capacity(entries.len());
    for entry in entries {
        let entry = Entry {
            position: head.position + 1,
            ..*entry
        };
        head = Head {
            position: entry.position,
            hash: entry.link(&head.hash).map_err(decode_error)?,
        };
        chained.push((entry, Some(head.hash.clone())));
    }
    Ok((chained, head))
}

/// On PostgreSQL, inserts `rows` and moves the head from `seen` to `head` in one
/// statement, if the chain still ends at `seen`; whether it did.
async fn append_after(
    tx: &mut Tx,
    seen: &Head,
    rows: &[Row<'_>],
    head: &Head,
) -> Result<bool, sqlx::Error> {
    let guard = rows.len() * 9;
    let text = format!(
        "WITH head AS (UPDATE event_chain_head SET position = ${}, hash = ${} \
           WHERE id = 1 AND position = ${} AND hash = ${} RETURNING 1) \
         {INSERT_EVENTS} SELECT * FROM (VALUES {}) AS v WHERE EXISTS (SELECT 1 FROM head)",
        guard + 1,
        guard + 2,
        guard + 3,
        guard + 4,
        studyhall_core::sql::values_rows(rows.len(), 9, studyhall_core::sql::tuple)
    );
    let insert = bind_rows(Sql::new(&text), rows)
        .bind(head.position)
        .bind(&head.hash)
        .bind(seen.position)
        .bind(&seen.hash);
    Ok(insert.execute(&mut *tx).await? == rows.len() as u64)
}

/// The INSERT both appends begin with; [`bind_rows`] binds its columns in this order.
const INSERT_EVENTS: &str =
    "INSERT INTO events (id, component, data, email, environment, message, created_at, position, hash)";

/// Binds each row's nine columns, in the order of [`INSERT_EVENTS`].
fn bind_rows<'q>(mut insert: Sql<'q>, rows: &[Row<'_>]) -> Sql<'q> {
    for (entry, hash) in rows {
        insert = insert
            .bind(entry.id)
            .bind(entry.component)
            .bind(entry.data)
            .bind(entry.email)
            .bind(entry.environment)
            .bind(entry.message)
            .bind(entry.created_at)
            .bind(hash.as_ref().map(|_| entry.position))
            .bind(hash.clone());
    }
    insert
}

/// Stores `entries` outside the chain (`STUDYHALL_AUDIT_CHAIN=false`, for the
/// benchmark): no position, no hash, no lock.
pub(crate) async fn append_unchained(
    tx: &mut Tx,
    entries: &[Entry<'_>],
) -> Result<(), sqlx::Error> {
    let rows: Vec<Row<'_>> = entries.iter().map(|entry| (*entry, None)).collect();
    insert(tx, &rows, None).await
}

/// Inserts events (a row without a hash goes in without a position too), then writes
/// `head_hash` as the chain's end: on PostgreSQL in the last INSERT's own statement, to
/// save a round trip while the head is locked.
async fn insert(tx: &mut Tx, rows: &[Row<'_>], head_hash: Option<&str>) -> Result<(), sqlx::Error> {
    let chunks = rows.chunks(INSERT_CHUNK).count();
    let postgres = tx.dialect() == Dialect::Postgres;
    for (n, chunk) in rows.chunks(INSERT_CHUNK).enumerate() {
        let with_head = postgres && head_hash.is_some() && n + 1 == chunks;
        let head = if with_head {
            format!(
                "WITH head AS (UPDATE event_chain_head SET hash = ${} WHERE id = 1) ",
                chunk.len() * 9 + 1
            )
        } else {
            String::new()
        };
        let text = format!(
            "{head}{INSERT_EVENTS} VALUES {}",
            studyhall_core::sql::values_rows(chunk.len(), 9, studyhall_core::sql::tuple)
        );
        let mut insert = bind_rows(Sql::new(&text), chunk);
        if with_head {
            insert = insert.bind(head_hash);
        }
        insert.execute(&mut *tx).await?;
    }
    match head_hash {
        Some(hash) if !postgres => seal_head(tx, hash).await,
        _ => Ok(()),
    }
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

/// The sequencer: gives events stored without a position (while the chain was off,
/// before it existed, or by an older version during a rolling deploy) their place at
/// the end of the chain, in (created_at, id) order among those waiting, `batch` per
/// transaction, until none is left; how many it placed. Any instance may run it at any time; one sequences at a
/// time, holding the chain head's row lock as its lease (a crashed holder's lock goes
/// with its connection). An event committed late, by a transaction held open while
/// others committed, is placed by the next round: the sequencer reads what is waiting,
/// not what comes after a position.
pub async fn sequence(db: &Db, batch: i64, lease: Lease) -> Result<u64, SequenceError> {
    let mut placed = 0;
    loop {
        // Mostly nothing waits: then no write transaction at all.
        let waiting = Sql::new("SELECT 1 FROM events WHERE position IS NULL LIMIT 1")
            .fetch_optional::<(i32,)>(db)
            .await?;
        if waiting.is_none() {
            return Ok(placed);
        }
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
    // Through the index of waiting events alone: read in order, never sorted.
    let text = format!(
        "SELECT CAST(id AS TEXT), created_at, component, environment, email, message, data
         FROM {} WHERE position IS NULL ORDER BY created_at, id LIMIT $1",
        tx.dialect().indexed_by("events", "events_unchained")
    );
    let rows: Vec<(String, i64, String, String, String, String, String)> =
        Sql::new(&text).bind(batch).fetch_all(&mut *tx).await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let entries = rows
        .iter()
        .map(
            |(id, created_at, component, environment, email, message, data)| {
                Ok(Entry {
                    position: 0,
                    id: Uuid::try_parse(id).map_err(decode_error)?,
                    created_at: Micros(*created_at),
                    component,
                    environment,
                    email,
                    message,
                    data,
                })
            },
        )
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let start = reserve(tx, entries.len()).await?;
    let (placed, head) = link(&start, &entries)?;
    // Only events still waiting are placed. On PostgreSQL in one statement, one round
    // trip while the lease is held; on SQLite, in process, one indexed update per event
    // (its planner may walk the waiting events for each row of a VALUES list).
    let written = match tx.dialect() {
        Dialect::Postgres => {
            let text = format!(
                "UPDATE events SET position = v.column1, hash = v.column2 FROM (VALUES {}) AS v
                 WHERE events.id = CAST(v.column3 AS uuid) AND events.position IS NULL",
                studyhall_core::sql::values_rows(placed.len(), 3, studyhall_core::sql::tuple)
            );
            let mut update = Sql::new(&text);
            for (entry, hash) in &placed {
                update = update
                    .bind(entry.position)
                    .bind(hash.clone())
                    .bind(entry.id);
            }
            update.execute(&mut *tx).await?
        }
        Dialect::Sqlite => {
            let mut written = 0;
            for (entry, hash) in &placed {
                written += Sql::new(
                    "UPDATE events SET position = $1, hash = $2 WHERE id = $3 AND position IS NULL",
                )
                .bind(entry.position)
                .bind(hash.clone())
                .bind(entry.id)
                .execute(&mut *tx)
                .await?;
            }
            written
        }
    };
    if written != placed.len() as u64 {
        return Err(SequenceError::Raced {
            read: placed.len(),
            placed: placed.len() - written as usize,
        });
    }
    seal_head(tx, &head.hash).await?;
    crate::integrate::extend(tx, start.position, &leaves(&placed)).await?;
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
    /// Whether an exact filter (email, environment or component) is set.
    pub fn has_exact(&self) -> bool {
        self.email.is_some() || self.environment.is_some() || self.component.is_some()
    }

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
