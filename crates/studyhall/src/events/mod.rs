//! The activity event log (activity_service): POST an event, GET them back filtered
//! and paged.

pub mod model;
mod routes;
mod store;
mod writer;

use std::time::Duration;

use axum::routing::get;
use axum::Router;
use tokio::task::JoinHandle;
use utoipa::OpenApi;

use crate::db::Db;
use store::EventStore;
use writer::Writer;

/// Idempotency keys are kept at least this long.
const KEY_RETENTION: Duration = Duration::from_secs(24 * 3600);

#[derive(Clone, Debug)]
pub struct Events {
    store: EventStore,
    writer: Writer,
    /// Whether `X-User-Id` identifies the caller (idempotency keys are per caller).
    trust_headers: bool,
}

/// The running module: its router and the background tasks to await at shutdown.
pub struct Module {
    pub router: Router,
    pub writer: JoinHandle<()>,
    pub pruner: JoinHandle<()>,
}

pub fn start(db: &Db, settings: &crate::config::ServeSettings) -> Module {
    let store = EventStore::new(db);
    let (writer, writer_task) = Writer::start(store.clone());
    let pruner = tokio::spawn(prune_keys(store.clone()));
    let events = Events {
        store,
        writer,
        trust_headers: settings.identity.trust_identity_headers,
    };
    let router = Router::new()
        .route("/api/health", get(routes::health))
        .route("/api/healthz", get(routes::health))
        .route("/api/events", get(routes::list).post(routes::create))
        .route("/api/events/", get(routes::list).post(routes::create))
        .with_state(events);
    Module {
        router,
        writer: writer_task,
        pruner,
    }
}

async fn prune_keys(store: EventStore) {
    let mut every = tokio::time::interval(Duration::from_secs(600));
    loop {
        every.tick().await;
        let cutoff = time::OffsetDateTime::now_utc() - KEY_RETENTION;
        let before = crate::clock::micros(cutoff);
        match store.prune_keys(before).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "forgot expired idempotency keys"),
            Err(err) => tracing::warn!(error = %err, "pruning idempotency keys failed"),
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    paths(routes::health, routes::create, routes::list),
    tags((name = "events", description = "Activity event log (activity_service compatible)"))
)]
pub struct Api;

/// Paths served under a second spelling; the OpenAPI document lists both.
pub const ALIASES: &[(&str, &str)] = &[
    ("/api/events", "/api/events/"),
    ("/api/health", "/api/healthz"),
];
