//! Stream leases in the database, SQLite or PostgreSQL, with the same statements.
//!
//! Every write goes through group commit (`studyhall_core::batch`): the operations that queued
//! up together are applied in one transaction at one instant of the database's clock.
//! On PostgreSQL, where a start is several round trips, viewers are spread over a few
//! writers by a hash of their id, each with a batch of its own in flight on its own
//! connection; a viewer's operations all go through one writer, in order.
//! A start's count and insert cannot interleave with another start for the same
//! viewer: on SQLite the batch holds the one write lock; on PostgreSQL every operation
//! first locks its viewer's row, which it holds until the batch commits, so starts for
//! one viewer from any number of instances queue up. A batch's operations run sorted
//! by viewer (a stable sort: one viewer's operations keep their order), so every
//! transaction on every instance takes viewer locks in one order, and two batches
//! never wait on each other in a cycle.

use tokio::task::JoinHandle;
use uuid::Uuid;

use super::{
    decide, Active, Policy, ACTIVE, END, ENSURE_VIEWER, INSERT, LIST, NO_METADATA, RENEW,
    SET_LIMIT, VIEWER_LIMIT,
};
use crate::model::{Counts, StartRequest, Started, Stream};
use studyhall_core::batch::{Batched, Batcher};
use studyhall_core::clock::{Clock, Micros};
use studyhall_core::db::{Db, Tx};
use studyhall_core::error::StoreError;
use studyhall_core::sql::Sql;
use studyhall_log::Actor;

#[derive(Clone, Debug)]
pub struct SqlStreams {
    db: Db,
    writers: Vec<Batcher<Op, Done>>,
    policy: Policy,
    /// Decisions are recorded in the audit log, in their own transaction.
    audited: bool,
    clock: Clock,
}

/// Writers on PostgreSQL (SQLite has one writer whatever the process does).
const POSTGRES_WRITERS: usize = 4;

#[derive(Debug)]
pub(super) enum Op {
    Start(String, StartRequest),
    Heartbeat(String, String),
    /// Who ends it (the viewer, or an operator).
    End(String, String, Actor),
    SetLimit(String, Option<i64>, Actor),
}

impl Op {
    fn viewer(&self) -> &str {
        match self {
            Op::Start(viewer, _)
            | Op::Heartbeat(viewer, _)
            | Op::End(viewer, _, _)
            | Op::SetLimit(viewer, _, _) => viewer,
        }
    }
}

#[derive(Debug)]
pub(super) enum Done {
    Started(Started),
    Renewed(Option<Stream>),
    Ended(Option<(Stream, Counts)>),
    LimitSet,
}

impl SqlStreams {
    /// The store, and its writer tasks to await at shutdown.
    pub fn spawn(
        db: Db,
        policy: Policy,
        (audited, clock): (bool, Clock),
    ) -> (SqlStreams, Vec<JoinHandle<()>>) {
        let writers = if db.dialect().concurrent_writes() {
            POSTGRES_WRITERS
        } else {
            1
        };
        let (writers, tasks) = (0..writers)
            .map(|_| {
                Batcher::start(Batch {
                    db: db.clone(),
                    policy,
                    audited,
                    clock: clock.clone(),
                })
            })
            .unzip();
        (
            SqlStreams {
                db,
                writers,
                policy,
                audited,
                clock,
            },
            tasks,
        )
    }

    /// The viewer's writer, with its operation.
    async fn submit(&self, op: Op) -> Result<Done, StoreError> {
        use std::hash::{Hash, Hasher};
        let mut hash = std::collections::hash_map::DefaultHasher::new();
        op.viewer().hash(&mut hash);
        let writer = &self.writers[hash.finish() as usize % self.writers.len()];
        writer.submit(op).await
    }

    pub async fn start(&self, viewer: &str, request: &StartRequest) -> Result<Started, StoreError> {
        match self
            .submit(Op::Start(viewer.to_owned(), request.clone()))
            .await?
        {
            Done::Started(started) => Ok(started),
            other => Err(mismatched(&other)),
        }
    }

    pub async fn heartbeat(&self, viewer: &str, id: &str) -> Result<Option<Stream>, StoreError> {
        match self
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
        by: Actor,
    ) -> Result<Option<(Stream, Counts)>, StoreError> {
        match self
            .submit(Op::End(viewer.to_owned(), id.to_owned(), by))
            .await?
        {
            Done::Ended(ended) => Ok(ended),
            other => Err(mismatched(&other)),
        }
    }

    pub async fn set_limit(
        &self,
        viewer: &str,
        limit: Option<i64>,
        by: Actor,
    ) -> Result<(), StoreError> {
        match self
            .submit(Op::SetLimit(viewer.to_owned(), limit, by))
            .await?
        {
            Done::LimitSet => Ok(()),
            other => Err(mismatched(&other)),
        }
    }

    pub async fn list(&self, viewer: &str) -> Result<(Vec<Stream>, Counts), sqlx::Error> {
        let now = self.now().await?;
        let rows: Vec<Stream> = Sql::new(LIST)
            .bind(viewer)
            .bind(now)
            .fetch_all(&self.db)
            .await?;
        let limit: Option<Option<i64>> = Sql::new(VIEWER_LIMIT)
            .bind(viewer)
            .fetch_scalar(&self.db)
            .await?;
        let counts = Counts {
            active: rows.len() as i64,
            limit: limit.flatten().unwrap_or(self.policy.default_limit),
        };
        Ok((rows, counts))
    }

    /// Marks leases that expired unended as ended at their expiry, recording each, in
    /// one transaction; nothing when unaudited (an expired lease counts for nothing
    /// either way). Rows another instance is sweeping are skipped, not waited for.
    pub async fn sweep_expired(&self) -> Result<u64, sqlx::Error> {
        if !self.audited {
            return Ok(0);
        }
        // A read first, so a quiet second does not take the write lock.
        let now_outside = self.now().await?;
        let due: Option<i64> = Sql::new(
            "SELECT expires_at FROM streams WHERE ended_at IS NULL AND expires_at <= $1 LIMIT 1",
        )
        .bind(now_outside)
        .fetch_scalar(&self.db)
        .await?;
        if due.is_none() {
            return Ok(0);
        }
        let mut tx = self.db.begin_write().await?;
        let now = now(&mut tx, &self.clock).await?;
        let lock = tx.dialect().for_update_skip_locked();
        let sweep = format!(
            "UPDATE streams SET ended_at = expires_at WHERE (viewer, id) IN
               (SELECT viewer, id FROM streams WHERE ended_at IS NULL AND expires_at <= $1
                ORDER BY viewer, id LIMIT 1000{lock})
             RETURNING viewer, id, expires_at"
        );
        let swept: Vec<(String, String, i64)> =
            Sql::new(&sweep).bind(now).fetch_all(&mut tx).await?;
        let decisions: Vec<_> = swept
            .iter()
            .map(|(viewer, id, at)| super::expired(viewer, id, *at))
            .collect();
        studyhall_log::commit(tx, &decisions, Micros(now)).await?;
        Ok(swept.len() as u64)
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// The database, for the reads outside a batch.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The database's clock, Unix µs.
    pub async fn now(&self) -> Result<i64, sqlx::Error> {
        now(&self.db, &self.clock).await
    }
}

/// The database's clock (the process's own, for an embedded database) moved by the
/// service clock's shift, Unix µs.
async fn now<'a>(
    on: impl Into<studyhall_core::sql::On<'a>>,
    clock: &Clock,
) -> Result<i64, sqlx::Error> {
    let on = on.into();
    let now: Option<i64> = Sql::new(on.dialect().now_micros()).fetch_scalar(on).await?;
    Ok(now.unwrap_or_default().saturating_add(clock.shift()))
}

/// The operations that queued up together, applied in one transaction at one instant.
struct Batch {
    db: Db,
    policy: Policy,
    audited: bool,
    clock: Clock,
}

impl Batched for Batch {
    type Write = Op;
    type Outcome = Done;

    async fn apply(&mut self, ops: &[Op]) -> Result<Vec<Done>, sqlx::Error> {
        let policy = self.policy;
        let mut tx = self.db.begin_write().await?;
        let lock_viewers = tx.dialect().concurrent_writes();
        let now = now(&mut tx, &self.clock).await?;
        let mut order: Vec<usize> = (0..ops.len()).collect();
        order.sort_by(|&a, &b| ops[a].viewer().cmp(ops[b].viewer()));
        let mut done: Vec<Option<Done>> = ops.iter().map(|_| None).collect();
        let mut decisions = Vec::new();
        for index in order {
            let op = &ops[index];
            if lock_viewers {
                lock_viewer(&mut tx, op.viewer()).await?;
            }
            done[index] = Some(match op {
                Op::Start(viewer, request) => {
                    Done::Started(start(&mut tx, viewer, request, now, policy).await?)
                }
                Op::Heartbeat(viewer, id) => {
                    Done::Renewed(renew(&mut tx, viewer, id, now, policy, NO_METADATA).await?)
                }
                Op::End(viewer, id, _) => {
                    let row: Option<Stream> = Sql::new(END)
                        .bind(viewer)
                        .bind(id)
                        .bind(now)
                        .fetch_optional(&mut tx)
                        .await?;
                    match row {
                        Some(row) => {
                            Done::Ended(Some((row, counts(&mut tx, viewer, now, policy).await?)))
                        }
                        None => Done::Ended(None),
                    }
                }
                Op::SetLimit(viewer, limit, _) => {
                    Sql::new(SET_LIMIT)
                        .bind(viewer)
                        .bind(*limit)
                        .execute(&mut tx)
                        .await?;
                    Done::LimitSet
                }
            });
            if self.audited {
                decisions.extend(decision(op, done[index].as_ref()));
            }
        }
        // The chain's lock last, after every viewer's (`studyhall_log::commit`).
        studyhall_log::commit(tx, &decisions, Micros(now)).await?;
        Ok(done.into_iter().flatten().collect())
    }
}

/// The audit log's record of an operation's outcome, if it decided anything.
fn decision(op: &Op, done: Option<&Done>) -> Option<studyhall_log::Decision> {
    match (op, done?) {
        (Op::Start(viewer, _), Done::Started(started)) => Some(super::started(viewer, started)),
        (Op::End(viewer, _, by), Done::Ended(Some((stream, counts)))) => {
            Some(super::ended(viewer, stream, counts, by.clone()))
        }
        (Op::SetLimit(viewer, limit, by), Done::LimitSet) => {
            Some(super::limit_changed(viewer, *limit, by.clone()))
        }
        _ => None,
    }
}

/// PostgreSQL: takes the viewer's row lock (creating the row on first use) before any
/// of the viewer's leases is read or written.
async fn lock_viewer(tx: &mut Tx, viewer: &str) -> Result<(), sqlx::Error> {
    Sql::new(ENSURE_VIEWER)
        .bind(viewer)
        .execute(&mut *tx)
        .await?;
    let _: Option<Option<i64>> = Sql::new(&format!("{VIEWER_LIMIT} FOR UPDATE"))
        .bind(viewer)
        .fetch_scalar(&mut *tx)
        .await?;
    Ok(())
}

async fn start(
    tx: &mut Tx,
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
    }: Active = active(tx, viewer, now).await?;
    let counts = match decide(active, earliest, limit, now, policy) {
        Ok(counts) => counts,
        Err(refused) => return Ok(refused),
    };
    let id = request
        .stream_id
        .clone()
        .unwrap_or_else(|| Uuid::new_v4().to_string());
    Sql::new(INSERT)
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
    tx: &mut Tx,
    viewer: &str,
    id: &str,
    now: i64,
    policy: Policy,
    metadata: &str,
) -> Result<Option<Stream>, sqlx::Error> {
    Sql::new(RENEW)
        .bind(viewer)
        .bind(id)
        .bind(now)
        .bind(policy.lease_us)
        .bind(metadata)
        .fetch_optional(tx)
        .await
}

async fn active(tx: &mut Tx, viewer: &str, now: i64) -> Result<Active, sqlx::Error> {
    let active: Option<Active> = Sql::new(ACTIVE)
        .bind(viewer)
        .bind(now)
        .fetch_optional(tx)
        .await?;
    active.ok_or(sqlx::Error::RowNotFound)
}

async fn counts(
    tx: &mut Tx,
    viewer: &str,
    now: i64,
    policy: Policy,
) -> Result<Counts, sqlx::Error> {
    Ok(active(tx, viewer, now).await?.counts(policy))
}

/// The writer answered an operation with another operation's outcome: a bug, not an
/// outage.
fn mismatched(done: &Done) -> StoreError {
    StoreError::Failed(anyhow::anyhow!("the streams writer answered with {done:?}"))
}
