use sqlx::SqliteConnection;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::{
    decide, Active, Policy, ACTIVE, END, INSERT, LIST, NO_METADATA, RENEW, SET_LIMIT, VIEWER_LIMIT,
};
use crate::batch::{Batched, Batcher};
use crate::clock::Micros;
use crate::db::{Db, SqliteDb};
use crate::error::StoreError;
use crate::streams::model::{Counts, StartRequest, Started, Stream};

/// The database's clock (the process's own, for an embedded database), Unix µs.
const NOW: &str = "SELECT CAST(unixepoch('subsec') * 1000000 AS INTEGER)";

/// Every write goes through group commit: SQLite has one writer, so a start's count
/// and insert cannot interleave with another's.
#[derive(Clone, Debug)]
pub struct SqliteStreams {
    db: SqliteDb,
    writer: Batcher<Op, Done>,
    policy: Policy,
}

pub enum Op {
    Start(String, StartRequest),
    Heartbeat(String, String),
    End(String, String),
    SetLimit(String, Option<i64>),
}

#[derive(Debug)]
pub enum Done {
    Started(Started),
    Renewed(Option<Stream>),
    Ended(Option<(Stream, Counts)>),
    LimitSet,
}

impl SqliteStreams {
    pub fn spawn(db: SqliteDb, policy: Policy) -> (SqliteStreams, JoinHandle<()>) {
        let (writer, task) = Batcher::start(Batch {
            db: db.clone(),
            policy,
        });
        (SqliteStreams { db, writer, policy }, task)
    }

    pub async fn start(&self, viewer: &str, request: &StartRequest) -> Result<Started, StoreError> {
        match self
            .writer
            .submit(Op::Start(viewer.to_owned(), request.clone()))
            .await?
        {
            Done::Started(started) => Ok(started),
            other => Err(mismatched(&other)),
        }
    }

    pub async fn heartbeat(&self, viewer: &str, id: &str) -> Result<Option<Stream>, StoreError> {
        match self
            .writer
            .submit(Op::Heartbeat(viewer.to_owned(), id.to_owned()))
            .await?
        {
            Done::Renewed(stream) => Ok(stream),
            other => Err(mismatched(&other)),
        }
    }

    pub async fn end(
        &self,
        viewer: &str,
        id: &str,
    ) -> Result<Option<(Stream, Counts)>, StoreError> {
        match self
            .writer
            .submit(Op::End(viewer.to_owned(), id.to_owned()))
            .await?
        {
            Done::Ended(ended) => Ok(ended),
            other => Err(mismatched(&other)),
        }
    }

    pub async fn set_limit(&self, viewer: &str, limit: Option<i64>) -> Result<(), StoreError> {
        self.writer
            .submit(Op::SetLimit(viewer.to_owned(), limit))
            .await?;
        Ok(())
    }

    pub async fn list(&self, viewer: &str) -> Result<(Vec<Stream>, Counts), sqlx::Error> {
        let mut conn = self.db.pool.acquire().await?;
        let now: i64 = sqlx::query_scalar(NOW).fetch_one(&mut *conn).await?;
        let rows: Vec<Stream> = sqlx::query_as(LIST)
            .bind(viewer)
            .bind(now)
            .fetch_all(&mut *conn)
            .await?;
        let limit = viewer_limit(&mut conn, viewer)
            .await?
            .unwrap_or(self.policy.default_limit);
        let counts = Counts {
            active: rows.len() as i64,
            limit,
        };
        Ok((rows, counts))
    }

    /// The database, with the query that reads its clock, for the reads both SQL
    /// backends share.
    pub fn clocked(&self) -> (Db, &'static str) {
        (Db::Sqlite(self.db.clone()), NOW)
    }
}

/// The operations that queued up together, applied in one transaction at one instant.
struct Batch {
    db: SqliteDb,
    policy: Policy,
}

impl Batched for Batch {
    type Write = Op;
    type Outcome = Done;

    async fn apply(&mut self, ops: &[Op]) -> Result<Vec<Done>, sqlx::Error> {
        apply(&self.db, ops, self.policy).await
    }
}

async fn apply(db: &SqliteDb, ops: &[Op], policy: Policy) -> Result<Vec<Done>, sqlx::Error> {
    let mut tx = db.begin_write().await?;
    let now: i64 = sqlx::query_scalar(NOW).fetch_one(&mut *tx).await?;
    let mut done = Vec::with_capacity(ops.len());
    for op in ops {
        done.push(match op {
            Op::Start(viewer, request) => {
                Done::Started(start(&mut tx, viewer, request, now, policy).await?)
            }
            Op::Heartbeat(viewer, id) => {
                Done::Renewed(renew(&mut tx, viewer, id, now, policy, NO_METADATA).await?)
            }
            Op::End(viewer, id) => {
                let row: Option<Stream> = sqlx::query_as(END)
                    .bind(viewer)
                    .bind(id)
                    .bind(now)
                    .fetch_optional(&mut *tx)
                    .await?;
                match row {
                    Some(row) => {
                        Done::Ended(Some((row, counts(&mut tx, viewer, now, policy).await?)))
                    }
                    None => Done::Ended(None),
                }
            }
            Op::SetLimit(viewer, limit) => {
                sqlx::query(SET_LIMIT)
                    .bind(viewer)
                    .bind(*limit)
                    .execute(&mut *tx)
                    .await?;
                Done::LimitSet
            }
        });
    }
    tx.commit().await?;
    Ok(done)
}

async fn start(
    tx: &mut SqliteConnection,
    viewer: &str,
    request: &StartRequest,
    now: i64,
    policy: Policy,
) -> Result<Started, sqlx::Error> {
    if let Some(id) = &request.stream_id {
        if let Some(renewed) = renew(tx, viewer, id, now, policy, &request.metadata).await? {
            return Ok(Started::Renewed(
                renewed,
                counts(tx, viewer, now, policy).await?,
            ));
        }
    }
    let Active {
        active,
        earliest,
        viewer_limit: limit,
    }: Active = sqlx::query_as(ACTIVE)
        .bind(viewer)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
    let counts = match decide(active, earliest, limit, now, policy) {
        Ok(counts) => counts,
        Err(refused) => return Ok(refused),
    };
    let id = request
        .stream_id
        .clone()
        .unwrap_or_else(|| Uuid::new_v4().to_string());
    // No viewer row is needed: SQLite's single writer is the lock.
    sqlx::query(INSERT)
        .bind(viewer)
        .bind(&id)
        .bind(now)
        .bind(policy.lease_us)
        .bind(&request.metadata)
        .execute(&mut *tx)
        .await?;
    let stream = Stream {
        id,
        viewer: viewer.to_owned(),
        started_at: Micros(now),
        expires_at: Micros(now).plus(policy.lease_us),
        metadata: request.metadata.clone(),
    };
    Ok(Started::Created(
        stream,
        Counts {
            active: counts.active + 1,
            ..counts
        },
    ))
}

/// Renews a lease, replacing its metadata with `metadata` unless that is empty.
async fn renew(
    tx: &mut SqliteConnection,
    viewer: &str,
    id: &str,
    now: i64,
    policy: Policy,
    metadata: &str,
) -> Result<Option<Stream>, sqlx::Error> {
    let row: Option<Stream> = sqlx::query_as(RENEW)
        .bind(viewer)
        .bind(id)
        .bind(now)
        .bind(policy.lease_us)
        .bind(metadata)
        .fetch_optional(&mut *tx)
        .await?;
    Ok(row)
}

async fn viewer_limit(
    conn: &mut SqliteConnection,
    viewer: &str,
) -> Result<Option<i64>, sqlx::Error> {
    let limit: Option<Option<i64>> = sqlx::query_scalar(VIEWER_LIMIT)
        .bind(viewer)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(limit.flatten())
}

async fn counts(
    conn: &mut SqliteConnection,
    viewer: &str,
    now: i64,
    policy: Policy,
) -> Result<Counts, sqlx::Error> {
    let active: Active = sqlx::query_as(ACTIVE)
        .bind(viewer)
        .bind(now)
        .fetch_one(&mut *conn)
        .await?;
    Ok(active.counts(policy))
}

/// The writer answered an operation with another operation's outcome: a bug, not an
/// outage.
fn mismatched(done: &Done) -> StoreError {
    StoreError::Failed(anyhow::anyhow!("the streams writer answered with {done:?}"))
}
