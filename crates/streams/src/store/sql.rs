//! Stream leases in the database, SQLite or PostgreSQL, with the same statements.
//!
//! Every write goes through group commit (`studyhall_core::batch`): the operations that
//! queued up together are applied in one transaction at one instant of the database's
//! clock, with a fixed number of statements however many they are (see `Batch::apply`).
//! On PostgreSQL viewers are spread over a few writers by a hash of their id, each with
//! a batch of its own in flight on its own connection; a viewer's operations all go
//! through one writer, in order.
//! A start's count and insert cannot interleave with another start for the same
//! viewer: on SQLite the batch holds the one write lock; on PostgreSQL a batch first
//! locks the rows of all its viewers, which it holds until it commits, so starts for
//! one viewer from any number of instances queue up. The viewers are locked sorted,
//! by one statement, so every transaction on every instance takes viewer locks in one
//! order, and two batches never wait on each other in a cycle; the sweep of expired
//! leases takes the same locks and skips viewers a batch holds.

use tokio::task::JoinHandle;
use uuid::Uuid;

use super::{Policy, LIST, NO_METADATA, VIEWER_LIMIT};
use crate::model::{Beat, Counts, Ended, Replacement, StartRequest, Started, Stream, Why, Would};
use studyhall_core::batch::{Batched, Batcher};
use studyhall_core::clock::{Clock, Micros};
use studyhall_core::config::StreamPolicy;
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
    Beaten(Beat),
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

    pub async fn heartbeat(&self, viewer: &str, id: &str) -> Result<Beat, StoreError> {
        match self
            .submit(Op::Heartbeat(viewer.to_owned(), id.to_owned()))
            .await?
        {
            Done::Beaten(beat) => Ok(beat),
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
            .bind(self.policy.cutoff(now))
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
        .bind(self.policy.cutoff(now_outside))
        .fetch_scalar(&self.db)
        .await?;
        if due.is_none() {
            return Ok(0);
        }
        let mut tx = self.db.begin_write().await?;
        let now = now(&mut tx, &self.clock).await?;
        let expired = "ended_at IS NULL AND expires_at <= $1";
        let mut viewers: Vec<(String,)> = Sql::new(&format!(
            "SELECT DISTINCT viewer FROM streams WHERE {expired} ORDER BY viewer LIMIT 1000"
        ))
        .bind(self.policy.cutoff(now))
        .fetch_all(&mut tx)
        .await?;
        if tx.dialect().concurrent_writes() && !viewers.is_empty() {
            // The viewers' locks, as a batch takes them, so that no lease is swept while a
            // batch renews it; viewers a batch holds are left for the next sweep.
            let list = studyhall_core::sql::params(1, viewers.len());
            let lock = format!(
                "SELECT viewer FROM stream_viewers WHERE viewer IN ({list}) ORDER BY viewer{}",
                tx.dialect().for_update_skip_locked()
            );
            let mut statement = Sql::new(&lock);
            for (viewer,) in &viewers {
                statement = statement.bind(viewer);
            }
            viewers = statement.fetch_all(&mut tx).await?;
        }
        if viewers.is_empty() {
            return Ok(0);
        }
        let list = studyhall_core::sql::params(2, viewers.len());
        let sweep = format!(
            "UPDATE streams SET ended_at = expires_at WHERE {expired} AND viewer IN ({list})
             RETURNING viewer, id, expires_at"
        );
        let mut statement = Sql::new(&sweep).bind(self.policy.cutoff(now));
        for (viewer,) in &viewers {
            statement = statement.bind(viewer);
        }
        let swept: Vec<(String, String, i64)> = statement.fetch_all(&mut tx).await?;
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

    /// A fixed number of statements whatever the batch holds: the batch's viewers locked
    /// (and their limits read) by one upsert, their active leases read by one SELECT,
    /// every operation decided in order on that state, then the leases and limits it
    /// changed written by one upsert each, and the decisions recorded.
    async fn apply(&mut self, ops: &[Op]) -> Result<Vec<Done>, sqlx::Error> {
        let mut tx = self.db.begin_write().await?;
        let now = now(&mut tx, &self.clock).await?;
        let mut order: Vec<usize> = (0..ops.len()).collect();
        order.sort_by(|&a, &b| ops[a].viewer().cmp(ops[b].viewer()));
        let mut viewers: Vec<&str> = order.iter().map(|&index| ops[index].viewer()).collect();
        viewers.dedup();
        let mut state = Leases::read(&mut tx, &viewers, self.policy.cutoff(now)).await?;
        state.read_replaced(&mut tx, ops).await?;
        let mut done: Vec<Option<Done>> = ops.iter().map(|_| None).collect();
        let mut decisions = Vec::new();
        for index in order {
            let op = &ops[index];
            let outcome = state.apply(op, now, self.policy);
            if self.audited {
                decisions.extend(decision(op, Some(&outcome)));
            }
            done[index] = Some(outcome);
        }
        state.write(&mut tx).await?;
        // The chain's lock last, after every viewer's (`studyhall_log::commit`).
        studyhall_log::commit(tx, &decisions, Micros(now)).await?;
        Ok(done.into_iter().flatten().collect())
    }
}

/// The batch's viewers as the batch goes: their limits and active leases, and which of
/// them the batch changed.
struct Leases {
    viewers: std::collections::HashMap<String, Viewer>,
    /// Leases the batch created, renewed or ended, by (viewer, id), as they end up.
    changed: std::collections::BTreeMap<(String, String), Change>,
    /// Viewers whose limit the batch set, with the limit they end up with.
    limits: std::collections::BTreeMap<String, Option<i64>>,
    /// Streams ended to admit another, by (viewer, id): the batch's own, and those
    /// the batch's heartbeats ask after.
    replaced: std::collections::HashMap<(String, String), Replacement>,
}

/// A lease as the batch leaves it.
struct Change {
    stream: Stream,
    ended_at: Option<i64>,
    /// The stream that replaced it, when it was ended to admit one.
    replaced_by: Option<Replacement>,
}

impl Change {
    /// Started or renewed: active, replacing nothing.
    fn active(stream: Stream) -> Change {
        Change {
            stream,
            ended_at: None,
            replaced_by: None,
        }
    }
}

#[derive(Default)]
struct Viewer {
    limit: Option<i64>,
    active: Vec<Stream>,
}

impl Leases {
    /// Locks `viewers` (sorted, distinct) in their order, creating the rows of new ones
    /// (on PostgreSQL the row lock holds every instance's operations for the viewer
    /// until this batch commits), and reads their limits and the leases that count
    /// (expiring after `cutoff`).
    async fn read(tx: &mut Tx, viewers: &[&str], cutoff: i64) -> Result<Leases, sqlx::Error> {
        let rows = studyhall_core::sql::values_rows(viewers.len(), 1, studyhall_core::sql::tuple);
        // An upsert that writes nothing new: it locks existing rows and new ones alike,
        // in the order of the list, and returns every row.
        let lock = format!(
            "INSERT INTO stream_viewers (viewer) VALUES {rows}
             ON CONFLICT (viewer) DO UPDATE SET stream_limit = stream_viewers.stream_limit
             RETURNING viewer, stream_limit"
        );
        let mut statement = Sql::new(&lock);
        for viewer in viewers {
            statement = statement.bind(*viewer);
        }
        let limits: Vec<(String, Option<i64>)> = statement.fetch_all(&mut *tx).await?;
        let mut state: std::collections::HashMap<String, Viewer> = limits
            .into_iter()
            .map(|(viewer, limit)| {
                let active = Vec::new();
                (viewer, Viewer { limit, active })
            })
            .collect();
        let list = studyhall_core::sql::params(1, viewers.len());
        let at = viewers.len() + 1;
        let active = format!(
            "SELECT id, viewer, started_at, expires_at, metadata, device_id FROM streams
             WHERE viewer IN ({list}) AND ended_at IS NULL AND expires_at > ${at}
             ORDER BY viewer, started_at, id"
        );
        let mut statement = Sql::new(&active);
        for viewer in viewers {
            statement = statement.bind(*viewer);
        }
        let streams: Vec<Stream> = statement.bind(cutoff).fetch_all(&mut *tx).await?;
        for stream in streams {
            let viewer = state.entry(stream.viewer.clone()).or_default();
            viewer.active.push(stream);
        }
        Ok(Leases {
            viewers: state,
            changed: Default::default(),
            limits: Default::default(),
            replaced: Default::default(),
        })
    }

    /// Reads which of the streams the batch's heartbeats name, not active, were ended
    /// to admit another (one statement, and only when a heartbeat names such a stream).
    async fn read_replaced(&mut self, tx: &mut Tx, ops: &[Op]) -> Result<(), sqlx::Error> {
        let missing: Vec<(&str, &str)> = ops
            .iter()
            .filter_map(|op| match op {
                Op::Heartbeat(viewer, id) => Some((viewer.as_str(), id.as_str())),
                _ => None,
            })
            .filter(|(viewer, id)| {
                let active = self.viewers.get(*viewer).map(|state| &state.active);
                !active.is_some_and(|active| active.iter().any(|stream| stream.id == *id))
            })
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let pairs = studyhall_core::sql::values_rows(missing.len(), 2, studyhall_core::sql::tuple);
        let sql = format!(
            "SELECT viewer, id, ended_at, replaced_by, replaced_by_device FROM streams
             WHERE replaced_by IS NOT NULL AND (viewer, id) IN (VALUES {pairs})"
        );
        let mut statement = Sql::new(&sql);
        for (viewer, id) in &missing {
            statement = statement.bind(*viewer).bind(*id);
        }
        let rows: Vec<(String, String, i64, String, Option<String>)> =
            statement.fetch_all(tx).await?;
        for (viewer, id, at, by, device) in rows {
            let replacement = Replacement {
                at: Micros(at),
                by,
                device,
            };
            self.replaced.insert((viewer, id), replacement);
        }
        Ok(())
    }

    /// Decides `op` on the state as the batch's earlier operations left it.
    fn apply(&mut self, op: &Op, now: i64, policy: Policy) -> Done {
        match op {
            Op::Start(viewer, request) => Done::Started(self.start(viewer, request, now, policy)),
            Op::Heartbeat(viewer, id) => {
                Done::Beaten(match self.renew(viewer, id, now, policy, NO_METADATA) {
                    Some(stream) => Beat::Renewed(stream),
                    None => match self.replaced.get(&(viewer.clone(), id.clone())) {
                        Some(replacement) => Beat::Replaced(replacement.clone()),
                        None => Beat::NotActive,
                    },
                })
            }
            Op::End(viewer, id, _) => match self.end(viewer, id, now, None) {
                Some(stream) => Done::Ended(Some((stream, self.counts(viewer, policy)))),
                None => Done::Ended(None),
            },
            Op::SetLimit(viewer, limit, _) => {
                self.viewer(viewer).limit = *limit;
                self.limits.insert(viewer.clone(), *limit);
                Done::LimitSet
            }
        }
    }

    fn start(&mut self, viewer: &str, request: &StartRequest, now: i64, policy: Policy) -> Started {
        if let Some(id) = &request.stream_id {
            if let Some(renewed) = self.renew(viewer, id, now, policy, &request.metadata) {
                return Started::Renewed(renewed, self.counts(viewer, policy));
            }
        }
        let id = request
            .stream_id
            .clone()
            .unwrap_or_else(|| Uuid::new_v4().to_string());
        let by = Replacement {
            at: Micros(now),
            by: id.clone(),
            device: request.device_id.clone(),
        };
        // The stream the start names to replace, and the device's own active stream,
        // give up their slots to the new one.
        let freed = {
            let state = self.viewer(viewer);
            let asked = request.replace.as_ref().and_then(|old| {
                let found = state.active.iter().find(|stream| &stream.id == old);
                found.map(|stream| (stream.id.clone(), Why::Asked))
            });
            let own = state.active.iter().filter(|stream| {
                request.device_id.is_some()
                    && stream.device_id == request.device_id
                    && request.replace.as_ref() != Some(&stream.id)
            });
            let own = own.map(|stream| (stream.id.clone(), Why::SameDevice));
            asked.into_iter().chain(own).collect::<Vec<_>>()
        };
        let counts = self.counts(viewer, policy);
        let others = counts.active - freed.len() as i64;
        // At the limit even without those: the others the policy may end, the oldest
        // first, as many as leave room for one.
        let oldest = if others >= counts.limit {
            let state = self.viewer(viewer);
            let mut others: Vec<&Stream> = state
                .active
                .iter()
                .filter(|stream| !freed.iter().any(|(id, _)| id == &stream.id))
                .collect();
            others.sort_by(|a, b| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)));
            let room = usize::try_from(others.len() as i64 - counts.limit + 1).unwrap_or(1);
            others
                .iter()
                .take(room)
                .map(|stream| stream.id.clone())
                .collect()
        } else {
            Vec::new()
        };
        let would = match policy.on_limit {
            _ if oldest.is_empty() => None,
            // Admitted: note what the policy would have done instead.
            StreamPolicy::Reject if policy.dry_run => Some(Would::Refuse),
            StreamPolicy::Ask if policy.dry_run => Some(Would::Ask),
            StreamPolicy::KickOldest if policy.dry_run => Some(Would::Kick(oldest.clone())),
            StreamPolicy::Reject | StreamPolicy::Ask => {
                // Refused: nothing changes, the streams it would have replaced included.
                let state = self.viewer(viewer);
                let earliest = state.active.iter().map(|stream| stream.expires_at.0).min();
                let retry_after_us = policy.retry_after_us(earliest, now);
                return Started::Refused {
                    counts,
                    retry_after_us,
                };
            }
            StreamPolicy::KickOldest => None,
        };
        let kicked = if would.is_none() { oldest } else { Vec::new() };
        let ended: Vec<Ended> = (freed.into_iter())
            .chain(kicked.into_iter().map(|id| (id, Why::Oldest)))
            .filter_map(|(old, why)| {
                let stream = self.end(viewer, &old, now, Some(&by))?;
                Some(Ended { stream, why })
            })
            .collect();
        let stream = Stream {
            id: id.clone(),
            viewer: viewer.to_owned(),
            started_at: Micros(now),
            expires_at: Micros(now).plus(policy.lease_us),
            metadata: request.metadata.clone(),
            device_id: request.device_id.clone(),
        };
        self.viewer(viewer).active.push(stream.clone());
        self.replaced.remove(&(viewer.to_owned(), id.clone()));
        self.changed
            .insert((viewer.to_owned(), id), Change::active(stream.clone()));
        let counts = self.counts(viewer, policy);
        match would {
            Some(would) => Started::OverLimit(stream, counts, ended, would),
            None if ended.is_empty() => Started::Created(stream, counts),
            None => Started::Replacing(stream, counts, ended),
        }
    }

    /// Ends an active lease at `now`; `replaced_by`: to admit that stream.
    fn end(
        &mut self,
        viewer: &str,
        id: &str,
        now: i64,
        replaced_by: Option<&Replacement>,
    ) -> Option<Stream> {
        let state = self.viewer(viewer);
        let place = state.active.iter().position(|stream| stream.id == id)?;
        let stream = state.active.remove(place);
        let key = (viewer.to_owned(), id.to_owned());
        if let Some(replacement) = replaced_by {
            self.replaced.insert(key.clone(), replacement.clone());
        }
        self.changed.insert(
            key,
            Change {
                stream: stream.clone(),
                ended_at: Some(now),
                replaced_by: replaced_by.cloned(),
            },
        );
        Some(stream)
    }

    /// Renews an active lease, replacing its metadata with `metadata` unless that is
    /// empty (`{}`, as heartbeats send).
    fn renew(
        &mut self,
        viewer: &str,
        id: &str,
        now: i64,
        policy: Policy,
        metadata: &str,
    ) -> Option<Stream> {
        let stream = self
            .viewer(viewer)
            .active
            .iter_mut()
            .find(|stream| stream.id == id)?;
        stream.expires_at = Micros(now).plus(policy.lease_us);
        if metadata != NO_METADATA {
            metadata.clone_into(&mut stream.metadata);
        }
        let renewed = stream.clone();
        self.changed.insert(
            (viewer.to_owned(), id.to_owned()),
            Change::active(renewed.clone()),
        );
        Some(renewed)
    }

    fn viewer(&mut self, viewer: &str) -> &mut Viewer {
        self.viewers.entry(viewer.to_owned()).or_default()
    }

    fn counts(&mut self, viewer: &str, policy: Policy) -> Counts {
        let state = self.viewer(viewer);
        Counts {
            active: state.active.len() as i64,
            limit: state.limit.unwrap_or(policy.default_limit),
        }
    }

    /// Writes what the batch changed: every lease it touched, as it ends up, with one
    /// upsert (a client id used before starts over), and the limits it set with another.
    async fn write(self, tx: &mut Tx) -> Result<(), sqlx::Error> {
        if !self.changed.is_empty() {
            let rows =
                studyhall_core::sql::values_rows(self.changed.len(), 9, studyhall_core::sql::tuple);
            let upsert = format!(
                "INSERT INTO streams (viewer, id, started_at, expires_at, ended_at, metadata, device_id,
                                      replaced_by, replaced_by_device)
                 VALUES {rows}
                 ON CONFLICT (viewer, id) DO UPDATE SET started_at = excluded.started_at,
                     expires_at = excluded.expires_at, ended_at = excluded.ended_at,
                     metadata = excluded.metadata, device_id = excluded.device_id,
                     replaced_by = excluded.replaced_by,
                     replaced_by_device = excluded.replaced_by_device"
            );
            let mut statement = Sql::new(&upsert);
            for ((viewer, id), change) in &self.changed {
                statement = statement
                    .bind(viewer)
                    .bind(id)
                    .bind(change.stream.started_at)
                    .bind(change.stream.expires_at)
                    .bind(change.ended_at)
                    .bind(&change.stream.metadata)
                    .bind(change.stream.device_id.as_deref())
                    .bind(change.replaced_by.as_ref().map(|by| by.by.as_str()))
                    .bind(
                        change
                            .replaced_by
                            .as_ref()
                            .and_then(|by| by.device.as_deref()),
                    );
            }
            statement.execute(&mut *tx).await?;
        }
        if !self.limits.is_empty() {
            let rows =
                studyhall_core::sql::values_rows(self.limits.len(), 2, studyhall_core::sql::tuple);
            let upsert = format!(
                "INSERT INTO stream_viewers (viewer, stream_limit) VALUES {rows}
                 ON CONFLICT (viewer) DO UPDATE SET stream_limit = excluded.stream_limit"
            );
            let mut statement = Sql::new(&upsert);
            for (viewer, limit) in &self.limits {
                statement = statement.bind(viewer).bind(*limit);
            }
            statement.execute(tx).await?;
        }
        Ok(())
    }
}

/// The audit log's records of an operation's outcome, if it decided anything.
fn decision(op: &Op, done: Option<&Done>) -> Vec<studyhall_log::Decision> {
    match (op, done) {
        (Op::Start(viewer, _), Some(Done::Started(started))) => super::started(viewer, started),
        (Op::End(viewer, _, by), Some(Done::Ended(Some((stream, counts))))) => {
            vec![super::ended(viewer, stream, counts, by.clone())]
        }
        (Op::SetLimit(viewer, limit, by), Some(Done::LimitSet)) => {
            vec![super::limit_changed(viewer, *limit, by.clone())]
        }
        _ => Vec::new(),
    }
}

/// The writer answered an operation with another operation's outcome: a bug, not an
/// outage.
fn mismatched(done: &Done) -> StoreError {
    StoreError::Failed(anyhow::anyhow!("the streams writer answered with {done:?}"))
}
