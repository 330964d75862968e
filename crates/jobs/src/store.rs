use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::JobKind;
use studyhall_core::batch::{Batched, Batcher};
use studyhall_core::clock::{Clock, Micros};
use studyhall_core::db::{Db, Tx};
use studyhall_core::error::StoreError;
use studyhall_core::sql::Sql;
use studyhall_log::{Actor, Decision};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    /// Failed and waiting to retry.
    Failed,
    Dead,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Dead => "dead",
        }
    }

    /// The state of this name, if it is one.
    pub fn from_name(text: &str) -> Option<JobState> {
        [
            JobState::Queued,
            JobState::Running,
            JobState::Succeeded,
            JobState::Failed,
            JobState::Dead,
        ]
        .into_iter()
        .find(|state| state.as_str() == text)
    }

    fn parse(text: &str) -> JobState {
        match text {
            "running" => JobState::Running,
            "succeeded" => JobState::Succeeded,
            "failed" => JobState::Failed,
            "dead" => JobState::Dead,
            _ => JobState::Queued,
        }
    }
}

/// A job as `GET /jobs/{id}` shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Job {
    pub id: String,
    pub kind: String,
    pub state: JobState,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: String,
    pub finished_at: Option<String>,
    #[serde(skip)]
    pub created_micros: Micros,
}

/// A job as stored.
#[derive(Debug, sqlx::FromRow)]
struct JobRow {
    id: String,
    kind: String,
    state: String,
    attempts: i64,
    last_error: Option<String>,
    created_at: Micros,
    finished_at: Option<Micros>,
}

fn job(row: JobRow) -> Job {
    Job {
        id: row.id,
        kind: row.kind,
        state: JobState::parse(&row.state),
        attempts: row.attempts,
        last_error: row.last_error,
        created_at: row.created_at.rfc3339(),
        finished_at: row.finished_at.map(Micros::rfc3339),
        created_micros: row.created_at,
    }
}

const JOB_COLUMNS: &str = "id, kind, state, attempts, last_error, created_at, finished_at";

/// A job waiting to be inserted.
#[derive(Debug)]
pub(crate) struct NewJob {
    pub id: String,
    pub kind: &'static str,
    pub payload: String,
    pub max_attempts: i64,
    pub now: i64,
}

/// A claimed job: run it, then complete or fail it with the same `attempts`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    pub id: String,
    pub kind: String,
    pub payload: String,
    pub attempts: i64,
    pub max_attempts: i64,
    /// When it became due, and when this attempt claimed it (Unix µs).
    pub run_at: i64,
    pub started_at: i64,
}

/// Jobs enqueued together, inserted in one transaction.
struct Batch(Db);

impl Batched for Batch {
    type Write = NewJob;
    type Outcome = ();

    async fn apply(&mut self, jobs: &[NewJob]) -> Result<Vec<()>, sqlx::Error> {
        insert(&self.0, jobs).await?;
        Ok(vec![(); jobs.len()])
    }
}

/// What a retry did.
#[derive(Debug)]
pub enum Retried {
    Queued(Job),
    NotFound,
    /// Only dead jobs are retried; this one is in the given state.
    NotDead(JobState),
}

/// What asking a waiting job to run now did.
#[derive(Debug)]
pub enum Hastened {
    /// It is due now; a worker claims it next.
    Due(Job),
    NotFound,
    /// Only a job waiting its turn (queued for later, or failed and waiting out its
    /// backoff) is run sooner; this one is in the given state.
    NotWaiting(JobState),
}

/// What a delete did.
#[derive(Debug)]
pub enum Deletion {
    Deleted,
    NotFound,
    /// A worker holds the job; it cannot be deleted under it.
    Running,
}

/// The queue: enqueue, inspect, retry, and the worker's claim/complete/fail.
#[derive(Clone, Debug)]
pub struct Queue {
    db: Db,
    max_attempts: i64,
    /// Dead jobs and retries are recorded in the audit log (`STUDYHALL_AUDIT_MODULES`).
    pub(crate) audited: bool,
    /// Enqueues are group-committed: the jobs enqueued together are one INSERT.
    batcher: Batcher<NewJob, ()>,
    /// This process as a lease holder (`host:pid:random`), shown with a running job.
    holder: std::sync::Arc<str>,
    clock: Clock,
}

impl Queue {
    /// The queue, and its group-commit task to await at shutdown.
    pub fn new(
        db: &Db,
        max_attempts: u32,
        audited: bool,
        clock: Clock,
    ) -> (Queue, Option<tokio::task::JoinHandle<()>>) {
        let (batcher, task) = Batcher::start(Batch(db.clone()));
        (
            Queue {
                db: db.clone(),
                max_attempts: i64::from(max_attempts),
                audited,
                batcher,
                holder: holder_name().into(),
                clock,
            },
            Some(task),
        )
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The clock leases, backoff and stamps are read from.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Stores a job durably and returns its id.
    #[tracing::instrument(skip_all, fields(kind = J::KIND))]
    pub async fn enqueue<J: JobKind>(&self, job: &J) -> Result<String, StoreError> {
        let job = self.new_job(job)?;
        let id = job.id.clone();
        self.batcher.submit(job).await?;
        metrics::counter!("jobs_enqueued_total", "kind" => J::KIND).increment(1);
        Ok(id)
    }

    /// Stores a job inside the caller's transaction: it exists if and only if the
    /// caller's other writes commit.
    pub async fn enqueue_in<J: JobKind>(&self, tx: &mut Tx, job: &J) -> Result<String, StoreError> {
        let job = self.new_job(job)?;
        insert_in(tx, &job).await?;
        Ok(job.id)
    }

    fn new_job<J: JobKind>(&self, job: &J) -> Result<NewJob, StoreError> {
        let payload = serde_json::to_string(job)
            .map_err(|err| anyhow::anyhow!("a `{}` job does not serialise: {err}", J::KIND))?;
        Ok(NewJob {
            id: Uuid::now_v7().to_string(),
            kind: J::KIND,
            payload,
            max_attempts: self.max_attempts,
            now: self.clock.now().0,
        })
    }

    pub async fn get(&self, id: &str) -> Result<Option<Job>, sqlx::Error> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1");
        let row: Option<JobRow> = Sql::new(&sql).bind(id).fetch_optional(&self.db).await?;
        Ok(row.map(job))
    }

    /// Newest first, after the cursor (created_at, id) when given.
    pub async fn list(
        &self,
        state: Option<JobState>,
        after: Option<(i64, String)>,
        limit: i64,
    ) -> Result<Vec<Job>, sqlx::Error> {
        let (after_time, after_id) = after.unwrap_or((i64::MAX, String::new()));
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs
             WHERE ($1 = '' OR state = $1) AND (created_at < $2 OR (created_at = $2 AND id < $3))
             ORDER BY created_at DESC, id DESC LIMIT $4"
        );
        let state = state.map_or("", JobState::as_str);
        let rows: Vec<JobRow> = Sql::new(&sql)
            .bind(state)
            .bind(after_time)
            .bind(&after_id)
            .bind(limit)
            .fetch_all(&self.db)
            .await?;
        Ok(rows.into_iter().map(job).collect())
    }

    /// Requeues a dead job with fresh attempts, recording that `by` did.
    pub async fn retry(&self, id: &str, by: Actor) -> Result<Retried, StoreError> {
        let sql = "UPDATE jobs SET state = 'queued', attempts = 0, run_at = $2, lease_until = NULL, finished_at = NULL
                   WHERE id = $1 AND state = 'dead' RETURNING kind, last_error";
        let mut tx = self.db.begin_write().await?;
        let retried: Option<(String, Option<String>)> = Sql::new(sql)
            .bind(id)
            .bind(self.clock.now())
            .fetch_optional(&mut tx)
            .await?;
        let mut decisions = Vec::new();
        if let (Some((kind, error)), true) = (&retried, self.audited) {
            let data = serde_json::json!({"job": id, "kind": kind, "last_error": error});
            let decision = Decision::new("studyhall.jobs", "job.retried", by, data);
            decisions.push(decision);
        }
        studyhall_log::commit(tx, &decisions, self.clock.now()).await?;
        let changed = u64::from(retried.is_some());
        Ok(match (changed, self.get(id).await?) {
            (_, None) => Retried::NotFound,
            (0, Some(job)) => Retried::NotDead(job.state),
            (_, Some(job)) => Retried::Queued(job),
        })
    }

    /// Makes a job waiting its turn (queued for later, or failed and waiting out its
    /// backoff) due now, recording that `by` did; its attempts so far still count.
    pub async fn run_now(&self, id: &str, by: Actor) -> Result<Hastened, StoreError> {
        let sql = "UPDATE jobs SET run_at = $2 WHERE id = $1 AND state IN ('queued', 'failed') AND run_at > $2
                   RETURNING kind, run_at";
        let now = self.clock.now();
        let mut tx = self.db.begin_write().await?;
        let hastened: Option<(String, i64)> = Sql::new(sql)
            .bind(id)
            .bind(now)
            .fetch_optional(&mut tx)
            .await?;
        let mut decisions = Vec::new();
        if let (Some((kind, _)), true) = (&hastened, self.audited) {
            let data = serde_json::json!({"job": id, "kind": kind});
            decisions.push(Decision::new("studyhall.jobs", "job.run_now", by, data));
        }
        studyhall_log::commit(tx, &decisions, now).await?;
        Ok(match (hastened, self.get(id).await?) {
            (_, None) => Hastened::NotFound,
            (Some(_), Some(job)) => Hastened::Due(job),
            (None, Some(job)) if matches!(job.state, JobState::Queued | JobState::Failed) => {
                // Due already: nothing to hasten, and a worker takes it as it is.
                Hastened::Due(job)
            }
            (None, Some(job)) => Hastened::NotWaiting(job.state),
        })
    }

    /// Deletes a job that no worker holds, recording that `by` did. A worker that
    /// claims it a moment later finds nothing; one whose claim was taken first keeps it.
    pub async fn delete(&self, id: &str, by: Actor) -> Result<Deletion, StoreError> {
        let sql = "DELETE FROM jobs WHERE id = $1 AND state <> 'running' RETURNING kind, state, last_error";
        let mut tx = self.db.begin_write().await?;
        let deleted: Option<(String, String, Option<String>)> =
            Sql::new(sql).bind(id).fetch_optional(&mut tx).await?;
        if deleted.is_some() {
            Sql::new("DELETE FROM job_errors WHERE job_id = $1")
                .bind(id)
                .execute(&mut tx)
                .await?;
        }
        let mut decisions = Vec::new();
        if let (Some((kind, state, error)), true) = (&deleted, self.audited) {
            let data =
                serde_json::json!({"job": id, "kind": kind, "state": state, "last_error": error});
            let decision = Decision::new("studyhall.jobs", "job.deleted", by, data);
            decisions.push(decision);
        }
        studyhall_log::commit(tx, &decisions, self.clock.now()).await?;
        Ok(match (deleted, self.get(id).await?) {
            (Some(_), _) => Deletion::Deleted,
            (None, None) => Deletion::NotFound,
            (None, Some(_)) => Deletion::Running,
        })
    }

    /// Claims up to `limit` runnable jobs (running with an expired lease first, then
    /// queued or failed and due, oldest first) for `lease_us`.
    pub async fn claim(&self, limit: i64, lease_us: i64) -> Result<Vec<Claimed>, sqlx::Error> {
        let lock = self.db.dialect().for_update_skip_locked();
        // Each selection on its own, each in the order of its partial index (an OR of
        // the two would be a bitmap scan that visits every dead row version of a busy
        // queue on PostgreSQL; an index scan skips those it has seen dead before).
        let selections = [
            "state = 'running' AND lease_until < $1 AND kind NOT IN (SELECT kind FROM job_kinds_paused) ORDER BY lease_until",
            "state IN ('queued', 'failed') AND run_at <= $1 AND kind NOT IN (SELECT kind FROM job_kinds_paused) ORDER BY run_at",
        ];
        let now = self.clock.now();
        // A read first: an idle worker polls often, and an UPDATE would take SQLite's
        // single write lock even when nothing is due.
        let due: Option<i64> = Sql::new(&format!(
            "SELECT CAST(1 AS BIGINT) WHERE EXISTS (SELECT 1 FROM jobs WHERE {} LIMIT 1)
                OR EXISTS (SELECT 1 FROM jobs WHERE {} LIMIT 1)",
            selections[0], selections[1]
        ))
        .bind(now)
        .fetch_scalar(&self.db)
        .await?;
        if due.is_none() {
            return Ok(Vec::new());
        }
        // In a write transaction, so that on SQLite the claim takes its turn with the
        // other writers of this process (see `studyhall_core::db::SqliteDb`).
        let mut tx = self.db.begin_write().await?;
        let mut claimed: Vec<Claimed> = Vec::new();
        for selection in selections {
            let room = limit - claimed.len() as i64;
            if room <= 0 {
                break;
            }
            let sql = format!(
                "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_until = $1 + $2,
                    started_at = $1, lease_holder = $4
                 WHERE id IN (SELECT id FROM jobs WHERE {selection} LIMIT $3{lock})
                 RETURNING id, kind, payload, attempts, max_attempts, run_at, started_at"
            );
            let more: Vec<Claimed> = Sql::new(&sql)
                .bind(now)
                .bind(lease_us)
                .bind(room)
                .bind(&*self.holder)
                .fetch_all(&mut tx)
                .await?;
            claimed.extend(more);
        }
        tx.commit().await?;
        Ok(claimed)
    }

    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        self.db.begin_write().await
    }
}

/// Stores `jobs` with one multi-row INSERT in one transaction.
async fn insert(db: &Db, jobs: &[NewJob]) -> Result<(), sqlx::Error> {
    let mut tx = db.begin_write().await?;
    insert_all(&mut tx, jobs).await?;
    tx.commit().await
}

async fn insert_in(tx: &mut Tx, job: &NewJob) -> Result<(), sqlx::Error> {
    insert_all(tx, std::slice::from_ref(job)).await
}

async fn insert_all(tx: &mut Tx, jobs: &[NewJob]) -> Result<(), sqlx::Error> {
    let values = studyhall_core::sql::values_rows(jobs.len(), 5, |p| {
        // `now` is both when the job may run and when it was made.
        format!(
            "({}, {}, {}, 'queued', 0, {}, {}, {})",
            p[0], p[1], p[2], p[3], p[4], p[4]
        )
    });
    let sql = format!(
        "INSERT INTO jobs (id, kind, payload, state, attempts, max_attempts, run_at, created_at) VALUES {values}"
    );
    let mut insert = Sql::new(&sql);
    for job in jobs {
        insert = insert
            .bind(&job.id)
            .bind(job.kind)
            .bind(&job.payload)
            .bind(job.max_attempts)
            .bind(job.now);
    }
    insert.execute(tx).await.map(drop)
}

/// Marks a claimed job succeeded at `now` inside `tx` (with its effect); false if the
/// claim was lost (the lease expired and another worker took the job).
pub async fn complete(tx: &mut Tx, job: &Claimed, now: Micros) -> Result<bool, sqlx::Error> {
    Ok(complete_all(tx, &[job], now).await? == 1)
}

/// Marks claimed jobs succeeded at `now` inside `tx` with one statement; how many still
/// held their claim (fewer than `jobs` if some claim was lost).
pub(crate) async fn complete_all(
    tx: &mut Tx,
    jobs: &[&Claimed],
    now: Micros,
) -> Result<u64, sqlx::Error> {
    let claims: Vec<String> = (0..jobs.len())
        .map(|n| format!("(${}, ${})", 2 * n + 2, 2 * n + 3))
        .collect();
    let sql = format!(
        "UPDATE jobs SET state = 'succeeded', finished_at = $1, lease_until = NULL, last_error = NULL
         WHERE state = 'running' AND (id, attempts) IN ({})",
        claims.join(", ")
    );
    let mut complete = Sql::new(&sql).bind(now);
    for job in jobs {
        complete = complete.bind(&job.id).bind(job.attempts);
    }
    complete.execute(tx).await
}

/// Records a failure at `now`: retry after `retry_in_us`, or dead after the last attempt.
pub(crate) async fn fail(
    tx: &mut Tx,
    job: &Claimed,
    error: &str,
    (now, retry_in_us): (Micros, i64),
) -> Result<JobState, sqlx::Error> {
    let dead = job.attempts >= job.max_attempts;
    let sql = "UPDATE jobs SET state = $3, run_at = $4, last_error = $5, lease_until = NULL, finished_at = $6
               WHERE id = $1 AND attempts = $2 AND state = 'running'";
    let state = if dead {
        JobState::Dead
    } else {
        JobState::Failed
    };
    let error: String = error.chars().take(2000).collect();
    Sql::new(
        "INSERT INTO job_errors (job_id, at, attempt, holder, error)
         SELECT id, $2, attempts, lease_holder, $3 FROM jobs
         WHERE id = $1 AND attempts = $4 AND state = 'running'
         ON CONFLICT (job_id, at) DO NOTHING",
    )
    .bind(&job.id)
    .bind(now)
    .bind(&error)
    .bind(job.attempts)
    .execute(&mut *tx)
    .await?;
    Sql::new(sql)
        .bind(&job.id)
        .bind(job.attempts)
        .bind(state.as_str())
        .bind(now.plus(retry_in_us))
        .bind(&error)
        .bind(dead.then_some(now))
        .execute(tx)
        .await
        .map(drop)?;
    Ok(state)
}

/// Removes the jobs that succeeded before `before` (their error history with them), a
/// batch per transaction so writers get their turn between; how many.
pub async fn remove_succeeded(queue: &Queue, before: Micros) -> Result<u64, sqlx::Error> {
    const BATCH: i64 = 5000;
    let mut removed = 0;
    loop {
        let mut tx = queue.db().begin_write().await?;
        let old = "SELECT id FROM jobs WHERE state = 'succeeded' AND finished_at < $1 LIMIT $2";
        Sql::new(&format!("DELETE FROM job_errors WHERE job_id IN ({old})"))
            .bind(before)
            .bind(BATCH)
            .execute(&mut tx)
            .await?;
        let gone = Sql::new(&format!("DELETE FROM jobs WHERE id IN ({old})"))
            .bind(before)
            .bind(BATCH)
            .execute(&mut tx)
            .await?;
        tx.commit().await?;
        removed += gone;
        if gone < BATCH as u64 {
            return Ok(removed);
        }
        tokio::task::yield_now().await;
    }
}

/// How many jobs of a kind are in a state.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct Depth {
    pub state: String,
    pub kind: String,
    pub jobs: i64,
}

/// Queue depth by state and kind (succeeded jobs excluded), for the metrics gauge.
pub(crate) async fn depth(db: &Db) -> Result<Vec<Depth>, sqlx::Error> {
    let sql = "SELECT state, kind, CAST(count(*) AS BIGINT) AS jobs FROM jobs WHERE state <> 'succeeded' GROUP BY state, kind";
    Sql::new(sql).fetch_all(db).await
}

/// This process's name as a lease holder: the host, the process id and a random
/// suffix (two containers may share a host name and a pid).
fn holder_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|host| host.trim().to_owned())
        .filter(|host| !host.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    let suffix = getrandom::u32().unwrap_or_default() % 0x10000;
    format!("{host}:{}:{suffix:04x}", std::process::id())
}
