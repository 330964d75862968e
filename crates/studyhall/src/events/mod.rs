//! The activity event log (activity_service): POST an event, GET them back filtered
//! and paged.

pub mod model;
mod routes;
mod store;
mod writer;

use std::time::Duration;

use axum::routing::get;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::module::{self, Core, Module, Plugin};
use store::EventStore;
use writer::Writer;

/// Idempotency keys are kept at least this long.
const KEY_RETENTION: Duration = Duration::from_secs(24 * 3600);

#[derive(Clone, Debug)]
pub struct Events {
    store: EventStore,
    writer: Writer,
}

pub const PLUGIN: Plugin = Plugin {
    name: "events",
    api: || module::document(routes()),
    aliases: ALIASES,
    jobs: module::no_jobs,
    start: |core, _| Ok(start(core)),
};

fn start(core: &Core) -> Module {
    let (store, writer, writer_task) = writer(core);
    let pruner = tokio::spawn(prune_keys(store.clone()));
    let routes = routes()
        .route("/api/healthz", get(routes::health))
        .route("/api/events/", get(routes::list).post(routes::create))
        .with_state(Events { store, writer });
    Module::new(routes)
        .with_writer(Some(writer_task))
        .with_housekeeping(pruner)
}

fn routes() -> OpenApiRouter<Events> {
    OpenApiRouter::with_openapi(Api::openapi())
        .routes(routes!(routes::health))
        .routes(routes!(routes::list, routes::create))
}

/// The store and its writer, for the module and for the store ceiling
/// (`crate::ceiling`).
pub(crate) fn writer(core: &Core) -> (EventStore, Writer, tokio::task::JoinHandle<()>) {
    let store = EventStore::new(&core.db);
    let (writer, task) = Writer::start(store.clone());
    (store, writer, task)
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
    tags((name = "events", description = "Activity event log (activity_service compatible)"))
)]
pub struct Api;

/// Paths served under a second spelling (routed above); the OpenAPI document lists both.
pub const ALIASES: &[(&str, &str)] = &[
    ("/api/events", "/api/events/"),
    ("/api/health", "/api/healthz"),
];
