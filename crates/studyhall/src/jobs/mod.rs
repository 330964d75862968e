//! A durable job queue in the database, and the worker that runs it.
//!
//! Producers `enqueue` a kind and a JSON payload. A worker claims a batch of runnable
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

mod increments;
mod routes;
mod store;
#[cfg(test)]
mod tests;
mod worker;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;
use utoipa::OpenApi;

pub use increments::{Increments, KeyPart};
pub use store::{Job, JobState, Queue};
pub use worker::{report_depth, Outcome, Worker, WorkerSettings};

use crate::db::Tx;

/// What a handler's run returns; any error retries the job (until it is dead).
pub type JobResult = Result<(), anyhow::Error>;
pub type JobFuture<'a> = Pin<Box<dyn Future<Output = JobResult> + Send + 'a>>;

/// One kind of job: applies its effect inside the transaction that completes the job.
pub trait Handler: Send + Sync + 'static {
    /// Applies the job: row writes of its own through `tx`, additions to counter rows
    /// shared with other jobs through `later` (applied at the end of the batch).
    fn run<'a>(
        &'a self,
        tx: &'a mut Tx,
        job_id: &'a str,
        payload: &'a Value,
        later: &'a mut Increments,
    ) -> JobFuture<'a>;

    /// The order of this kind's jobs within a batch: jobs that lock the same rows of
    /// their own (a task grade's row, say) should give those rows' key, so every batch
    /// locks them in ascending order.
    fn lock_key(&self, _payload: &Value) -> String {
        String::new()
    }
}

/// Handlers by kind.
#[derive(Clone, Default)]
pub struct Handlers(HashMap<&'static str, Arc<dyn Handler>>);

impl Handlers {
    pub fn register(&mut self, kind: &'static str, handler: impl Handler) {
        self.0.insert(kind, Arc::new(handler));
    }

    pub fn get(&self, kind: &str) -> Option<&Arc<dyn Handler>> {
        self.0.get(kind)
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
        f.debug_list().entries(self.0.keys()).finish()
    }
}

pub fn router(queue: Queue) -> Router {
    Router::new()
        .route("/jobs", get(routes::list))
        .route("/jobs/{id}", get(routes::get))
        .route("/jobs/{id}/retry", post(routes::retry))
        .with_state(queue)
}

#[derive(OpenApi)]
#[openapi(paths(routes::get, routes::list, routes::retry), tags((name = "jobs", description = "The background job queue")))]
pub struct Api;
