//! A durable job queue in the database, and the worker that runs it.
//!
//! Producers `enqueue` a typed job ([`JobKind`]), stored as its kind and JSON payload. A worker claims a batch of runnable
//! jobs under a lease (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so any number of workers
//! share the queue), then runs the batch in one transaction with a savepoint per job.
//! Each job's effect and its completion commit together, and completion is fenced on
//! the attempt number, so a job is applied exactly once even if its lease expired and
//! another worker took it over. Failures retry with exponential backoff and jitter,
//! and end `dead` after the configured attempts.
//!
//! Any number of workers may run batches at once on the same rows without deadlock:
//! jobs run in their handlers' lock-key order, and what they add to shared counter rows
//! is deferred to the end of the batch and applied in one global row order
//! ([`Increments`]). A batch that still meets a deadlock or serialization failure is
//! rolled back and run again whole, without counting as a failure of its jobs.

#![warn(unreachable_pub)]

pub mod admin;
pub mod console;
mod increments;
mod routes;
mod store;
mod worker;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use increments::{Increments, KeyPart};
pub use store::{
    complete, remove_succeeded, Claimed, Deletion, Hastened, Job, JobState, Queue, Retried,
};
pub use worker::{report_depth, Outcome, Worker, WorkerSettings};

use studyhall_core::db::Tx;

/// What a handler's run returns; any error retries the job (until it is dead).
pub type JobResult = Result<(), anyhow::Error>;
pub type JobFuture<'a> = Pin<Box<dyn Future<Output = JobResult> + Send + 'a>>;

/// A kind of job: the type of its payload, stored as JSON beside `KIND`.
pub trait JobKind: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The name stored with each job, and shown in `/jobs` and the metrics.
    const KIND: &'static str;

    /// The order of this kind's jobs within a batch: jobs that lock rows of their own (a
    /// task grade's row, say) give those rows' key, so every batch locks them in
    /// ascending order.
    fn lock_key(&self) -> String {
        String::new()
    }
}

/// What runs jobs of kind `J`: applies one job's effect inside the transaction that
/// completes it.
pub trait Handler<J: JobKind>: Send + Sync + 'static {
    /// Applies `job`: row writes of its own through `tx`, additions to counter rows
    /// shared with other jobs through `later` (applied at the end of the batch). A batch
    /// that meets a deadlock runs again whole, so this may run more than once per job;
    /// only the last run's effect commits.
    fn run<'a>(
        &'a self,
        tx: &'a mut Tx,
        job_id: &'a str,
        job: &'a J,
        later: &'a mut Increments,
    ) -> JobFuture<'a>;

    /// Applies several jobs of this kind, each as `run` would: a handler that can write
    /// them with a fixed number of statements overrides it (the default runs them one
    /// after another). If it fails, the batch runs again with each job on its own, so
    /// the failing job is found and fails alone.
    fn run_all<'a>(
        &'a self,
        tx: &'a mut Tx,
        jobs: &'a [(&'a str, &'a J)],
        later: &'a mut Increments,
    ) -> JobFuture<'a> {
        Box::pin(async move {
            for (job_id, job) in jobs {
                self.run(tx, job_id, job, later).await?;
            }
            Ok(())
        })
    }
}

/// A claimed job decoded from its payload, bound to its handler.
pub(crate) trait Prepared: Send + Sync {
    fn lock_key(&self) -> String;
    fn run<'a>(
        &'a self,
        tx: &'a mut Tx,
        job_id: &'a str,
        later: &'a mut Increments,
    ) -> JobFuture<'a>;

    fn as_any(&self) -> &dyn std::any::Any;

    /// Runs `jobs`, all of this one's kind, with the handler's `run_all`.
    fn run_all<'a>(
        &'a self,
        tx: &'a mut Tx,
        jobs: &'a [(&'a str, &'a dyn Prepared)],
        later: &'a mut Increments,
    ) -> JobFuture<'a>;
}

struct Bound<J, H> {
    job: J,
    handler: Arc<H>,
}

impl<J: JobKind, H: Handler<J>> Prepared for Bound<J, H> {
    fn lock_key(&self) -> String {
        self.job.lock_key()
    }

    fn run<'a>(
        &'a self,
        tx: &'a mut Tx,
        job_id: &'a str,
        later: &'a mut Increments,
    ) -> JobFuture<'a> {
        self.handler.run(tx, job_id, &self.job, later)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn run_all<'a>(
        &'a self,
        tx: &'a mut Tx,
        jobs: &'a [(&'a str, &'a dyn Prepared)],
        later: &'a mut Increments,
    ) -> JobFuture<'a> {
        Box::pin(async move {
            let mut same: Vec<(&str, &J)> = Vec::with_capacity(jobs.len());
            for (job_id, prepared) in jobs {
                let bound = prepared
                    .as_any()
                    .downcast_ref::<Bound<J, H>>()
                    .ok_or_else(|| anyhow::anyhow!("job {job_id} is not a `{}` job", J::KIND))?;
                same.push((job_id, &bound.job));
            }
            self.handler.run_all(tx, &same, later).await
        })
    }
}

type Decode = dyn Fn(&str) -> anyhow::Result<Box<dyn Prepared>> + Send + Sync;

/// The job kinds a worker runs, each with its handler.
#[derive(Clone, Default)]
pub struct Handlers(HashMap<&'static str, Arc<Decode>>);

impl Handlers {
    /// Runs jobs of kind `J` with `handler`.
    pub fn register<J: JobKind, H: Handler<J>>(&mut self, handler: H) {
        let handler = Arc::new(handler);
        let decode = move |payload: &str| -> anyhow::Result<Box<dyn Prepared>> {
            let job: J = serde_json::from_str(payload).map_err(|err| {
                // Without serde's place in the payload: jobs with the same fault then
                // fail with the same error, which the console groups as one.
                let text = err.to_string();
                let place = format!(" at line {} column {}", err.line(), err.column());
                let reason = text.strip_suffix(&place).unwrap_or(&text);
                anyhow::anyhow!("the payload is not a `{}` job: {reason}", J::KIND)
            })?;
            Ok(Box::new(Bound {
                job,
                handler: handler.clone(),
            }))
        };
        self.0.insert(J::KIND, Arc::new(decode));
    }

    /// Adds every kind of `other`.
    pub fn extend(&mut self, other: Handlers) {
        self.0.extend(other.0);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The job stored as `kind` with `payload`, ready to run.
    pub(crate) fn prepare(&self, kind: &str, payload: &str) -> anyhow::Result<Box<dyn Prepared>> {
        let decode = self
            .0
            .get(kind)
            .ok_or_else(|| anyhow::anyhow!("no handler for job kind `{kind}`"))?;
        decode(payload)
    }

    /// Every registered kind.
    pub fn kinds(&self) -> Vec<&'static str> {
        let mut kinds: Vec<&'static str> = self.0.keys().copied().collect();
        kinds.sort_unstable();
        kinds
    }
}

impl std::fmt::Debug for Handlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.kinds()).finish()
    }
}

/// Runs `handlers`' jobs from `queue` until `stop` turns true, with `settings`'
/// concurrency and lease. The one way a worker is started, in `serve` and alone.
pub fn run_worker(
    queue: Queue,
    handlers: Handlers,
    settings: &studyhall_core::config::JobSettings,
    stop: tokio::sync::watch::Receiver<bool>,
) -> impl Future<Output = ()> + Send + 'static {
    let worker_settings = WorkerSettings {
        lease: std::time::Duration::from_secs(u64::from(settings.job_lease_secs)),
        ..WorkerSettings::default()
    };
    let concurrency = settings.concurrency as usize;
    Worker::new(queue, handlers, worker_settings).run(concurrency, stop)
}

/// The operator routes over `queue`.
pub fn routes(queue: Queue) -> OpenApiRouter {
    studyhall_core::http::recent::answered_by("jobs", api_routes().with_state(queue))
}

fn api_routes() -> OpenApiRouter<Queue> {
    OpenApiRouter::with_openapi(Api::openapi())
        .routes(routes!(routes::list))
        .routes(routes!(routes::get, routes::delete))
        .routes(routes!(routes::retry))
}

/// The operator routes' document.
pub fn api() -> utoipa::openapi::OpenApi {
    studyhall_core::http::document(api_routes())
}

#[derive(OpenApi)]
#[openapi(tags((name = "jobs", description = "The background job queue")))]
pub struct Api;
