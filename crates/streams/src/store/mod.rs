//! Stream leases: `sql` (the database, default) or `redis`, behind one interface.
//!
//! A start is a check-and-insert that must be atomic per viewer across every instance:
//! PostgreSQL locks the viewer's row (`FOR UPDATE`) for the count and the insert,
//! SQLite has one writer, Redis runs one Lua script. Expiry is judged by the store's
//! clock, never an instance's, so instances with skewed clocks agree.

mod redis;
mod sql;

use tokio::task::JoinHandle;

use super::model::{Beat, Counts, StartRequest, Started, Stream, Why};
use serde_json::json;

use studyhall_core::clock::Clock;
use studyhall_core::config::{StreamPolicy, StreamSettings, StreamsBackend};
use studyhall_core::db::Db;
use studyhall_core::error::StoreError;
use studyhall_core::sql::Sql;
use studyhall_log::{Actor, Decision, Recorder};

pub(crate) use studyhall_core::redis_handle::RedisHandle;

/// Limits, lease length and what a start at the limit does, which every backend applies.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub default_limit: i64,
    pub lease_us: i64,
    /// How long after its expiry a lease still counts and may be renewed.
    pub grace_us: i64,
    pub on_limit: StreamPolicy,
    /// Admit starts at the limit, noting what `on_limit` would have done.
    pub dry_run: bool,
}

impl Policy {
    /// Leases that expired before this are gone; later ones count (`now` less the grace).
    pub fn cutoff(&self, now: i64) -> i64 {
        now - self.grace_us
    }

    /// How long until a lease expiring at `expires` frees its slot.
    pub fn retry_after_us(&self, expires: Option<i64>, now: i64) -> i64 {
        expires.map_or(self.lease_us, |expires| {
            (expires + self.grace_us - now).max(0)
        })
    }
}

impl From<&StreamSettings> for Policy {
    fn from(settings: &StreamSettings) -> Self {
        Policy {
            default_limit: i64::from(settings.stream_limit),
            lease_us: i64::from(settings.stream_lease_secs) * 1_000_000,
            grace_us: i64::from(settings.stream_grace_secs) * 1_000_000,
            on_limit: settings.stream_policy,
            dry_run: settings.stream_dry_run,
        }
    }
}

/// How long an ended or expired stream is kept: a stream ended to admit another
/// answers its heartbeats with 410 (not 404) this long.
const ENDED_KEPT_US: i64 = 3_600_000_000;

#[derive(Clone, Debug)]
pub enum StreamStore {
    /// Decisions are recorded in the transaction that makes them (when audited).
    Sql(sql::SqlStreams),
    /// Decisions are handed to the recorder right after Redis made them (when audited),
    /// and the request is answered without waiting for the record to be written: a
    /// crash, or an unreachable database, loses the record, never the decision.
    Redis(redis::RedisStreams, Option<Recorder>),
}

/// The audit log's records of what a start did: the start, and each stream it ended.
fn started(viewer: &str, outcome: &Started) -> Vec<Decision> {
    let (message, data) = match outcome {
        Started::Created(stream, counts) | Started::Renewed(stream, counts) => (
            "stream.started",
            json!({"viewer": viewer, "stream": stream.id, "active": counts.active, "limit": counts.limit,
                   "renewed": matches!(outcome, Started::Renewed(..))}),
        ),
        Started::OverLimit(stream, counts, ended, would) => {
            let mut records = started(
                viewer,
                &Started::Replacing(stream.clone(), *counts, ended.clone()),
            );
            if let Some(start) = records.last_mut() {
                start.data["dry_run"] = json!({"would": would.name(), "would_end": would.ends()});
            }
            return records;
        }
        Started::Replacing(stream, counts, ended) => {
            let records = ended.iter().map(|old| {
                let message = match old.why {
                    Why::Oldest => "stream.kicked",
                    Why::Asked | Why::SameDevice => "stream.replaced",
                };
                let data = json!({"viewer": viewer, "stream": old.stream.id, "replaced_by": stream.id,
                                  "why": old.why.as_str(), "device": old.stream.device_id,
                                  "started_at_us": old.stream.started_at.0});
                Decision::new(COMPONENT, message, viewer_actor(viewer), data)
            });
            let ids = |kicked: bool| {
                let ended = ended
                    .iter()
                    .filter(move |old| (old.why == Why::Oldest) == kicked);
                ended.map(|old| &old.stream.id).collect::<Vec<_>>()
            };
            let data = json!({"viewer": viewer, "stream": stream.id, "active": counts.active, "limit": counts.limit,
                              "renewed": false, "device": stream.device_id,
                              "replaced": ids(false), "kicked": ids(true)});
            let start = Decision::new(COMPONENT, "stream.started", viewer_actor(viewer), data);
            return records.chain([start]).collect();
        }
        Started::Refused {
            counts,
            retry_after_us,
        } => (
            "stream.refused",
            json!({"viewer": viewer, "active": counts.active, "limit": counts.limit, "retry_after_us": retry_after_us}),
        ),
    };
    vec![Decision::new(
        COMPONENT,
        message,
        viewer_actor(viewer),
        data,
    )]
}

fn ended(viewer: &str, stream: &Stream, counts: &Counts, by: Actor) -> Decision {
    let data = json!({"viewer": viewer, "stream": stream.id, "active": counts.active, "limit": counts.limit});
    Decision::new(COMPONENT, "stream.ended", by, data)
}

fn limit_changed(viewer: &str, limit: Option<i64>, by: Actor) -> Decision {
    let data = json!({"viewer": viewer, "limit": limit});
    Decision::new(COMPONENT, "stream.limit_changed", by, data)
}

fn expired(viewer: &str, stream: &str, at: i64) -> Decision {
    let data = json!({"viewer": viewer, "stream": stream, "expired_at_us": at});
    Decision::new(COMPONENT, "stream.expired", Actor::system(), data)
}

const COMPONENT: &str = "studyhall.streams";

fn viewer_actor(viewer: &str) -> Actor {
    Actor {
        kind: "viewer",
        id: Some(viewer.to_owned()),
        email: None,
    }
}

impl StreamStore {
    /// The store, and on SQLite the group-commit task to await at shutdown.
    /// `recorder`: record decisions, with it where they are not a database write.
    pub fn new(
        db: &Db,
        backend: StreamsBackend,
        redis: Option<&RedisHandle>,
        policy: Policy,
        (recorder, clock): (Option<Recorder>, Clock),
    ) -> anyhow::Result<(StreamStore, Vec<JoinHandle<()>>)> {
        Ok(match (backend, db) {
            (StreamsBackend::Redis, _) => {
                let redis = redis.ok_or_else(|| {
                    anyhow::anyhow!("the redis streams backend needs STUDYHALL_REDIS_URL")
                })?;
                (
                    StreamStore::Redis(
                        redis::RedisStreams::new(redis.clone(), policy, clock),
                        recorder,
                    ),
                    Vec::new(),
                )
            }
            (StreamsBackend::Sql, db) => {
                let (store, task) =
                    sql::SqlStreams::spawn(db.clone(), policy, (recorder.is_some(), clock));
                (StreamStore::Sql(store), task)
            }
        })
    }

    /// Hands the records of a decision Redis made to the recorder (a no-op when
    /// unaudited). The request does not wait for them to be written: the decision is
    /// Redis's, and a crash between the two could lose the records anyway.
    async fn recorded(
        recorder: &Option<Recorder>,
        decisions: impl FnOnce() -> Vec<Decision>,
    ) -> Result<(), StoreError> {
        let Some(recorder) = recorder else {
            return Ok(());
        };
        for decision in decisions() {
            recorder.record_later(decision).await?;
        }
        Ok(())
    }

    #[tracing::instrument(skip(self, request), fields(stream_id = ?request.stream_id))]
    pub async fn start(&self, viewer: &str, request: &StartRequest) -> Result<Started, StoreError> {
        match self {
            StreamStore::Sql(store) => Ok(store.start(viewer, request).await?),
            StreamStore::Redis(store, recorder) => {
                let done = store.start(viewer, request).await?;
                StreamStore::recorded(recorder, || started(viewer, &done)).await?;
                Ok(done)
            }
        }
    }

    #[tracing::instrument(skip(self))]
    pub async fn heartbeat(&self, viewer: &str, id: &str) -> Result<Beat, StoreError> {
        match self {
            StreamStore::Sql(store) => Ok(store.heartbeat(viewer, id).await?),
            StreamStore::Redis(store, _) => store.heartbeat(viewer, id).await,
        }
    }

    #[tracing::instrument(skip(self))]
    pub async fn end(
        &self,
        viewer: &str,
        id: &str,
    ) -> Result<Option<(Stream, Counts)>, StoreError> {
        self.end_by(viewer, id, viewer_actor(viewer)).await
    }

    /// Ends a viewer's stream for them (`by`: an operator).
    #[tracing::instrument(skip(self))]
    pub async fn end_by(
        &self,
        viewer: &str,
        id: &str,
        by: Actor,
    ) -> Result<Option<(Stream, Counts)>, StoreError> {
        match self {
            StreamStore::Sql(store) => Ok(store.end(viewer, id, by).await?),
            StreamStore::Redis(store, recorder) => {
                let done = store.end(viewer, id).await?;
                if let Some((stream, counts)) = &done {
                    StreamStore::recorded(recorder, || vec![ended(viewer, stream, counts, by)])
                        .await?;
                }
                Ok(done)
            }
        }
    }

    #[tracing::instrument(skip(self))]
    pub async fn list(&self, viewer: &str) -> Result<(Vec<Stream>, Counts), StoreError> {
        match self {
            StreamStore::Sql(store) => Ok(store.list(viewer).await?),
            StreamStore::Redis(store, _) => store.list(viewer).await,
        }
    }

    /// Sets (or with `None` resets) a viewer's limit.
    #[tracing::instrument(skip(self))]
    pub async fn set_limit(
        &self,
        viewer: &str,
        limit: Option<i64>,
        by: Actor,
    ) -> Result<(), StoreError> {
        match self {
            StreamStore::Sql(store) => Ok(store.set_limit(viewer, limit, by).await?),
            StreamStore::Redis(store, recorder) => {
                store.set_limit(viewer, limit).await?;
                StreamStore::recorded(recorder, || vec![limit_changed(viewer, limit, by)]).await
            }
        }
    }

    /// Every viewer's active streams, by viewer (up to `limit`), on the SQL backends;
    /// `None` with Redis, which keeps leases by viewer only.
    pub async fn active_by_viewer(&self, limit: i64) -> Result<Option<Vec<Stream>>, sqlx::Error> {
        let StreamStore::Sql(store) = self else {
            return Ok(None);
        };
        let now = store.now().await?;
        let streams = Sql::new(ACTIVE_BY_VIEWER)
            .bind(store.policy().cutoff(now))
            .bind(limit)
            .fetch_all(store.db())
            .await?;
        Ok(Some(streams))
    }

    /// The limits, lease and policy every start and heartbeat is judged by.
    pub fn policy(&self) -> Policy {
        match self {
            StreamStore::Sql(store) => store.policy(),
            StreamStore::Redis(store, _) => store.policy(),
        }
    }

    /// Active streams of every viewer, for the `active_streams` gauge.
    pub async fn active_total(&self) -> anyhow::Result<i64> {
        let store = match self {
            StreamStore::Sql(store) => store,
            StreamStore::Redis(store, _) => return Ok(store.active_total().await?),
        };
        let now = store.now().await?;
        let active: Option<i64> = Sql::new(ACTIVE_TOTAL)
            .bind(store.policy().cutoff(now))
            .fetch_scalar(store.db())
            .await?;
        Ok(active.unwrap_or_default())
    }

    /// Forgets streams that ended or expired over an hour ago (SQL backends; Redis
    /// expires its keys itself).
    pub async fn prune(&self) -> Result<u64, sqlx::Error> {
        let store = match self {
            StreamStore::Sql(store) => store,
            StreamStore::Redis(..) => return Ok(0),
        };
        let now = store.now().await?;
        Sql::new(PRUNE)
            .bind(now - ENDED_KEPT_US)
            .execute(store.db())
            .await
    }
    /// Records the leases that expired since the last sweep (SQL backends, when
    /// audited; Redis expires its leases unseen). How many.
    pub async fn sweep_expired(&self) -> Result<u64, sqlx::Error> {
        match self {
            StreamStore::Sql(store) => store.sweep_expired().await,
            StreamStore::Redis(..) => Ok(0),
        }
    }
}

// SQL shared by both SQL backends (`$N` parameters work on both). `now` is always the
// database's clock, read once per transaction.
const LIST: &str = "SELECT id, viewer, started_at, expires_at, metadata, device_id FROM streams
    WHERE viewer = $1 AND ended_at IS NULL AND expires_at > $2 ORDER BY started_at, id";

const VIEWER_LIMIT: &str = "SELECT stream_limit FROM stream_viewers WHERE viewer = $1";

const ACTIVE_BY_VIEWER: &str =
    "SELECT id, viewer, started_at, expires_at, metadata, device_id FROM streams
    WHERE ended_at IS NULL AND expires_at > $1 ORDER BY viewer, started_at, id LIMIT $2";

const ACTIVE_TOTAL: &str =
    "SELECT count(*) FROM streams WHERE ended_at IS NULL AND expires_at > $1";

/// Streams that ended or expired before `$1` are forgotten.
const PRUNE: &str = "DELETE FROM streams WHERE COALESCE(ended_at, expires_at) < $1";

/// What a heartbeat sends as metadata: nothing, so the stored metadata stays.
const NO_METADATA: &str = "{}";
