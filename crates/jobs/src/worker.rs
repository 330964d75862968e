//! The worker: `run_batch` claims and runs one batch (tests call it to drain the queue
//! deterministically); `run` loops it on N tasks until shutdown.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::store::{self, Claimed, JobState, Queue};
use super::{Handlers, Increments, Prepared};
use studyhall_core::clock::Micros;
use studyhall_core::db::Tx;
use studyhall_core::sql::Sql;

/// Times a batch is run again after a deadlock or serialization failure before the
/// worker gives up on it (its jobs are then taken again when their lease expires).
const MAX_CONFLICT_RETRIES: u64 = 20;

async fn savepoint(tx: &mut Tx, statement: &str) -> Result<(), sqlx::Error> {
    Sql::new(statement).execute(tx).await.map(drop)
}

/// Whether the database refused the transaction because of a concurrent one
/// (PostgreSQL's deadlock_detected and serialization_failure; SQLite's busy), so that
/// running it again can succeed.
fn is_conflict(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .and_then(|db| db.code())
        .is_some_and(|code| matches!(code.as_ref(), "40P01" | "40001" | "5" | "517"))
}

/// Why a run of a batch ended without committing.
#[derive(Debug)]
enum BatchFailure {
    /// A concurrent transaction was in the way; running the batch again can succeed.
    Conflict(String),
    /// Run without savepoints, a job failed (the job's place in the batch and its
    /// error) or its claim was lost (`None`): the batch must run again with each job in
    /// a savepoint of its own.
    NeedsIsolation(Option<(usize, String)>),
    Database(sqlx::Error),
}

impl From<sqlx::Error> for BatchFailure {
    fn from(err: sqlx::Error) -> Self {
        if is_conflict(&err) {
            BatchFailure::Conflict(err.to_string())
        } else {
            BatchFailure::Database(err)
        }
    }
}

/// The conflict a job's error carries, if it is one.
fn conflict_in(err: &anyhow::Error) -> Option<BatchFailure> {
    let sqlx_error = err
        .chain()
        .find_map(|cause| cause.downcast_ref::<sqlx::Error>())?;
    is_conflict(sqlx_error).then(|| BatchFailure::Conflict(sqlx_error.to_string()))
}

#[derive(Debug, Clone, Copy)]
pub struct WorkerSettings {
    /// How long a claim holds before another worker may take the job over.
    pub lease: Duration,
    /// Jobs claimed and run per transaction.
    pub batch: i64,
    /// First retry delay; doubles per attempt up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// Wait between polls of an empty queue.
    pub poll: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            lease: Duration::from_secs(30),
            batch: 64,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            poll: Duration::from_millis(100),
        }
    }
}

/// What a batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub succeeded: usize,
    pub failed: usize,
    pub dead: usize,
    /// Claims lost to another worker after a lease expired (their effect was not applied).
    pub lost: usize,
}

impl Outcome {
    pub fn claimed(&self) -> usize {
        self.succeeded + self.failed + self.dead + self.lost
    }
}

#[derive(Clone, Debug)]
pub struct Worker {
    queue: Queue,
    handlers: Arc<Handlers>,
    settings: WorkerSettings,
}

impl Worker {
    pub fn new(queue: Queue, handlers: Handlers, settings: WorkerSettings) -> Worker {
        Worker {
            queue,
            handlers: Arc::new(handlers),
            settings,
        }
    }

    /// Claims one batch and runs it in one transaction. It runs first without
    /// savepoints, completing its jobs with one statement at the end (three statements
    /// fewer per job); if a job fails or its claim was lost,
    /// that run is rolled back and the batch runs again with each job's effect and
    /// completion in a savepoint of its own, so a failing job rolls back alone. A batch
    /// that meets a deadlock or serialization failure is rolled back and run again
    /// whole; its jobs' attempts are not spent on it.
    pub async fn run_batch(&self) -> Result<Outcome, sqlx::Error> {
        let lease_us = studyhall_core::clock::duration_micros(self.settings.lease);
        let claimed = self.queue.claim(self.settings.batch, lease_us).await?;
        if claimed.is_empty() {
            return Ok(Outcome::default());
        }
        let jobs = self.in_lock_order(claimed);
        let mut conflicts = 0;
        let mut isolated = false;
        // Jobs that failed in the run without savepoints: the run with them fails them
        // with that error rather than running them a second time for one attempt.
        let mut failed: HashMap<usize, String> = HashMap::new();
        loop {
            let known = isolated.then_some(&failed);
            match self.try_batch(&jobs, known).await {
                Ok((outcome, labels)) => {
                    for ((job, _), (label, elapsed)) in jobs.iter().zip(labels) {
                        let kind = job.kind.clone();
                        metrics::counter!("jobs_processed_total", "kind" => kind.clone(), "outcome" => label).increment(1);
                        metrics::histogram!("job_duration_seconds", "kind" => kind)
                            .record(elapsed.as_secs_f64());
                    }
                    return Ok(outcome);
                }
                Err(BatchFailure::NeedsIsolation(failure)) => {
                    isolated = true;
                    failed.extend(failure);
                }
                Err(BatchFailure::Conflict(error)) if conflicts < MAX_CONFLICT_RETRIES => {
                    conflicts += 1;
                    metrics::counter!("job_batch_conflicts_total").increment(1);
                    tracing::debug!(%error, conflicts, "batch conflicted with another; running it again");
                    let jitter = getrandom::u64().unwrap_or(0) % 20;
                    tokio::time::sleep(Duration::from_millis(5 * conflicts + jitter)).await;
                }
                Err(BatchFailure::Conflict(error)) => {
                    return Err(sqlx::Error::Protocol(format!(
                        "the batch conflicted with concurrent ones {conflicts} times: {error}"
                    )))
                }
                Err(BatchFailure::Database(err)) => return Err(err),
            }
        }
    }

    /// The claimed jobs, decoded, sorted by their lock keys (then id), so that every
    /// batch takes the jobs' own row locks in one order. A job that does not decode
    /// (an unknown kind, a payload of another shape) keeps its error, to fail with it.
    fn in_lock_order(&self, claimed: Vec<Claimed>) -> Vec<(Claimed, Decoded)> {
        let mut jobs: Vec<(String, Claimed, Decoded)> = claimed
            .into_iter()
            .map(|job| {
                let prepared = self.handlers.prepare(&job.kind, &job.payload);
                let key = prepared.as_ref().map(|p| p.lock_key()).unwrap_or_default();
                (key, job, prepared)
            })
            .collect();
        jobs.sort_by(|a, b| (&a.0, &a.1.id).cmp(&(&b.0, &b.1.id)));
        jobs.into_iter()
            .map(|(_, job, prepared)| (job, prepared))
            .collect()
    }

    /// One run of the batch in one transaction: without savepoints when `failed` is
    /// `None`, else each job in a savepoint and the jobs in `failed` failed with their
    /// error unrun. The outcome and each job's metric label and time, or why it ended
    /// without committing (the transaction is rolled back).
    async fn try_batch(
        &self,
        jobs: &[(Claimed, Decoded)],
        failed: Option<&HashMap<usize, String>>,
    ) -> Result<(Outcome, Vec<(&'static str, Duration)>), BatchFailure> {
        let isolated = failed.is_some();
        let mut outcome = Outcome::default();
        let mut labels = Vec::with_capacity(jobs.len());
        let mut later = Increments::default();
        let mut dead = Vec::new();
        let mut tx = self.queue.begin().await?;
        let now = self.queue.clock().now();
        let mut place = 0;
        while place < jobs.len() {
            // Without savepoints, a run of jobs of one kind is applied together.
            let run = if isolated {
                1
            } else {
                same_kind(&jobs[place..])
            };
            if run > 1 {
                let started = Instant::now();
                let group: Vec<(&str, &dyn Prepared)> = jobs[place..place + run]
                    .iter()
                    .filter_map(|(job, prepared)| {
                        Some((job.id.as_str(), prepared.as_deref().ok()?))
                    })
                    .collect();
                if let Err(err) = group[0].1.run_all(&mut tx, &group, &mut later).await {
                    // Which job failed is found by running each on its own.
                    return Err(conflict_in(&err).unwrap_or(BatchFailure::NeedsIsolation(None)));
                }
                let each = started.elapsed() / run as u32;
                for (job, _) in &jobs[place..place + run] {
                    outcome.succeeded += 1;
                    super::admin::time(&mut later, job, ("succeeded", now), each);
                    labels.push(("succeeded", each));
                }
                place += run;
                continue;
            }
            let (job, prepared) = &jobs[place];
            let started = Instant::now();
            if isolated {
                savepoint(&mut tx, "SAVEPOINT job").await?;
            }
            let mut mine = Increments::default();
            let result = match failed.and_then(|failed| failed.get(&place)) {
                Some(error) => Err(anyhow::anyhow!("{error}")),
                // Without savepoints the jobs are completed together after the loop.
                None => apply(&mut tx, job, prepared, &mut mine, isolated.then_some(now)).await,
            };
            if !isolated && !matches!(result, Ok(true)) {
                return Err(match result {
                    Err(err) => conflict_in(&err).unwrap_or_else(|| {
                        BatchFailure::NeedsIsolation(Some((place, format!("{err:#}"))))
                    }),
                    _ => BatchFailure::NeedsIsolation(None),
                });
            }
            let label = match result {
                Ok(true) => {
                    if isolated {
                        savepoint(&mut tx, "RELEASE SAVEPOINT job").await?;
                    }
                    later.merge(mine);
                    outcome.succeeded += 1;
                    "succeeded"
                }
                Ok(false) => {
                    savepoint(&mut tx, "ROLLBACK TO SAVEPOINT job").await?;
                    outcome.lost += 1;
                    "lost"
                }
                Err(err) => {
                    // A conflict with another transaction is not the job's failure: the
                    // whole batch runs again.
                    if let Some(conflict) = conflict_in(&err) {
                        return Err(conflict);
                    }
                    savepoint(&mut tx, "ROLLBACK TO SAVEPOINT job").await?;
                    let message = format!("{err:#}");
                    tracing::warn!(job = %job.id, kind = %job.kind, attempt = job.attempts, error = %message, "job failed");
                    let retry_in = self.backoff_us(job.attempts);
                    match store::fail(&mut tx, job, &message, (now, retry_in)).await? {
                        JobState::Dead => {
                            outcome.dead += 1;
                            let data = serde_json::json!({
                                "job": job.id, "kind": job.kind, "attempts": job.attempts,
                                "error": message.chars().take(2000).collect::<String>(),
                            });
                            dead.push(studyhall_log::Decision::new(
                                "studyhall.jobs",
                                "job.dead",
                                studyhall_log::Actor::system(),
                                data,
                            ));
                            "dead"
                        }
                        _ => {
                            outcome.failed += 1;
                            "failed"
                        }
                    }
                }
            };
            if label != "lost" {
                super::admin::time(&mut later, job, (label, now), started.elapsed());
            }
            labels.push((label, started.elapsed()));
            place += 1;
        }
        if !isolated {
            let all: Vec<&Claimed> = jobs.iter().map(|(job, _)| job).collect();
            if store::complete_all(&mut tx, &all, now).await? < all.len() as u64 {
                // A claim was lost: its effect must not commit.
                return Err(BatchFailure::NeedsIsolation(None));
            }
        }
        later.apply(&mut tx).await?;
        let dead: &[_] = if self.queue.audited { &dead } else { &[] };
        studyhall_log::commit(tx, dead, now).await?;
        Ok((outcome, labels))
    }

    /// Exponential backoff with ±20 % jitter, so retries of a burst spread out.
    fn backoff_us(&self, attempts: i64) -> i64 {
        let exponent = u32::try_from(attempts.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
        let base = self
            .settings
            .backoff
            .saturating_mul(2u32.saturating_pow(exponent))
            .min(self.settings.max_backoff);
        let jitter = 0.8 + 0.4 * (getrandom::u64().unwrap_or(0) % 1000) as f64 / 1000.0;
        (base.as_secs_f64() * jitter * 1_000_000.0) as i64
    }

    /// Runs `concurrency` loops until `shutdown` turns true; each finishes its batch
    /// first, so a job is never abandoned half-applied by a clean stop.
    pub async fn run(self, concurrency: usize, shutdown: watch::Receiver<bool>) {
        let loops: Vec<_> = (0..concurrency.max(1))
            .map(|_| {
                let (worker, mut shutdown) = (self.clone(), shutdown.clone());
                tokio::spawn(async move {
                    while !*shutdown.borrow() {
                        let idle = match worker.run_batch().await {
                            Ok(outcome) => outcome.claimed() == 0,
                            Err(err) => {
                                tracing::warn!(error = %err, "worker could not run a batch");
                                true
                            }
                        };
                        if idle {
                            tokio::select! {
                                _ = worker.queue.clock().sleep(worker.settings.poll) => {}
                                _ = shutdown.changed() => {}
                            }
                        }
                    }
                })
            })
            .collect();
        for task in loops {
            let _ = task.await;
        }
    }
}

/// Keeps the `job_queue_depth{state,kind}` gauge current for every known kind and every
/// unfinished state, zero included, so a kind that drains reads 0 (not its last count)
/// and one never queued is there too. Every ten minutes (of the queue's clock) it also
/// removes the jobs that succeeded more than `retention` ago and forgets the console's
/// per-minute job outcomes once they are a day old, so the queue's tables stay bounded.
pub async fn report_depth(queue: Queue, kinds: Vec<&'static str>, retention: Duration) {
    let db = queue.db();
    let mut pruned_at: Option<studyhall_core::clock::Micros> = None;
    loop {
        let now = queue.clock().now();
        if pruned_at.is_none_or(|at| now.0 - at.0 >= PRUNE_EVERY_US) {
            pruned_at = Some(now);
            if let Err(err) = super::admin::prune_minutes(&queue).await {
                tracing::warn!(error = %err, "forgetting old job minutes failed");
            }
            let before = now.plus(-studyhall_core::clock::duration_micros(retention));
            match store::remove_succeeded(&queue, before).await {
                Ok(0) => {}
                Ok(removed) => tracing::info!(
                    removed,
                    "removed jobs that succeeded before the job retention period"
                ),
                Err(err) => tracing::warn!(error = %err, "removing old succeeded jobs failed"),
            }
        }
        match store::depth(db).await {
            Ok(rows) => {
                let mut all: std::collections::BTreeSet<String> =
                    kinds.iter().map(|kind| (*kind).to_owned()).collect();
                all.extend(rows.iter().map(|row| row.kind.clone()));
                for kind in all {
                    for state in ["queued", "running", "failed", "dead"] {
                        let count = rows
                            .iter()
                            .find(|row| row.state == state && row.kind == kind)
                            .map_or(0, |row| row.jobs);
                        metrics::gauge!("job_queue_depth", "state" => state, "kind" => kind.clone())
                            .set(count as f64);
                    }
                }
            }
            Err(err) => tracing::warn!(error = %err, "reading the queue depth failed"),
        }
        queue.clock().sleep(Duration::from_secs(2)).await;
    }
}

/// How many jobs from the first are of its kind and decoded, one at least.
fn same_kind(jobs: &[(Claimed, Decoded)]) -> usize {
    match jobs.first() {
        Some((first, Ok(_))) => jobs
            .iter()
            .take_while(|(job, prepared)| prepared.is_ok() && job.kind == first.kind)
            .count(),
        _ => 1,
    }
}

/// How often old succeeded jobs and job minutes are removed.
const PRUNE_EVERY_US: i64 = 10 * 60 * 1_000_000;

/// A claimed job ready to run, or why it cannot run.
type Decoded = anyhow::Result<Box<dyn Prepared>>;

/// Runs the job and, when given a time to complete it at, marks it succeeded then;
/// `Ok(false)` if the claim was lost.
async fn apply(
    tx: &mut studyhall_core::db::Tx,
    job: &Claimed,
    prepared: &Decoded,
    later: &mut Increments,
    complete_at: Option<Micros>,
) -> anyhow::Result<bool> {
    let prepared = prepared
        .as_ref()
        .map_err(|err| anyhow::anyhow!("{err:#}"))?;
    prepared.run(tx, &job.id, later).await?;
    Ok(match complete_at {
        Some(now) => store::complete(tx, job, now).await?,
        None => true,
    })
}
