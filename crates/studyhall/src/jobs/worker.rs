//! The worker: `run_batch` claims and runs one batch (tests call it to drain the queue
//! deterministically); `run` loops it on N tasks until shutdown.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::watch;

use super::store::{self, Claimed, JobState, Queue};
use super::Handlers;
use crate::db::with_tx;

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

    /// Claims one batch and runs it: each job's effect and completion in a savepoint of
    /// one transaction, so a failing job rolls back alone.
    pub async fn run_batch(&self) -> Result<Outcome, sqlx::Error> {
        let lease_us = i64::try_from(self.settings.lease.as_micros()).unwrap_or(i64::MAX);
        let jobs = self.queue.claim(self.settings.batch, lease_us).await?;
        let mut outcome = Outcome::default();
        if jobs.is_empty() {
            return Ok(outcome);
        }
        let mut tx = self.queue.begin().await?;
        for job in &jobs {
            let started = Instant::now();
            with_tx!(&mut tx, |conn| sqlx::query("SAVEPOINT job")
                .execute(&mut **conn)
                .await
                .map(drop))?;
            let result = self.apply(&mut tx, job).await;
            let label = match result {
                Ok(true) => {
                    with_tx!(&mut tx, |conn| sqlx::query("RELEASE SAVEPOINT job")
                        .execute(&mut **conn)
                        .await
                        .map(drop))?;
                    outcome.succeeded += 1;
                    "succeeded"
                }
                Ok(false) => {
                    with_tx!(&mut tx, |conn| sqlx::query("ROLLBACK TO SAVEPOINT job")
                        .execute(&mut **conn)
                        .await
                        .map(drop))?;
                    outcome.lost += 1;
                    "lost"
                }
                Err(err) => {
                    with_tx!(&mut tx, |conn| sqlx::query("ROLLBACK TO SAVEPOINT job")
                        .execute(&mut **conn)
                        .await
                        .map(drop))?;
                    let message = format!("{err:#}");
                    tracing::warn!(job = %job.id, kind = %job.kind, attempt = job.attempts, error = %message, "job failed");
                    match store::fail(&mut tx, job, &message, self.backoff_us(job.attempts)).await?
                    {
                        JobState::Dead => {
                            outcome.dead += 1;
                            "dead"
                        }
                        _ => {
                            outcome.failed += 1;
                            "failed"
                        }
                    }
                }
            };
            metrics::counter!("jobs_processed_total", "kind" => job.kind.clone(), "outcome" => label).increment(1);
            metrics::histogram!("job_duration_seconds", "kind" => job.kind.clone())
                .record(started.elapsed().as_secs_f64());
        }
        tx.commit().await?;
        Ok(outcome)
    }

    /// Runs the job's handler and marks it succeeded; `Ok(false)` if the claim was lost.
    async fn apply(&self, tx: &mut crate::db::Tx, job: &Claimed) -> anyhow::Result<bool> {
        let handler = self
            .handlers
            .get(&job.kind)
            .ok_or_else(|| anyhow::anyhow!("no handler for job kind `{}`", job.kind))?;
        let payload: Value = serde_json::from_str(&job.payload)?;
        handler.run(tx, &job.id, &payload).await?;
        Ok(store::complete(tx, job).await?)
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
                                _ = tokio::time::sleep(worker.settings.poll) => {}
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

/// Keeps the `job_queue_depth{state,kind}` gauge current.
pub async fn report_depth(db: crate::db::Db) {
    let mut every = tokio::time::interval(Duration::from_secs(5));
    loop {
        every.tick().await;
        match store::depth(&db).await {
            Ok(rows) => {
                for state in ["queued", "running", "failed", "dead"] {
                    for kind in rows
                        .iter()
                        .map(|(_, kind, _)| kind.clone())
                        .collect::<std::collections::BTreeSet<_>>()
                    {
                        let count = rows
                            .iter()
                            .find(|(s, k, _)| s == state && *k == kind)
                            .map_or(0, |row| row.2);
                        metrics::gauge!("job_queue_depth", "state" => state, "kind" => kind)
                            .set(count as f64);
                    }
                }
            }
            Err(err) => tracing::warn!(error = %err, "reading the queue depth failed"),
        }
    }
}
