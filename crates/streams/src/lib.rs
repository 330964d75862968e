//! The concurrent-stream limiter: a viewer may watch at most N streams at once, exactly,
//! across every instance, with leases that expire when a player disappears.

#![warn(unreachable_pub)]

mod console;
pub mod model;
mod routes;
mod store;
pub use store::StreamStore;

use std::time::Duration;

use axum::routing::post;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use store::Policy;
use studyhall_core::clock::Clock;
use studyhall_core::config::StreamSettings;
use studyhall_module::{self as module, Core, Definition, Module};

#[derive(Clone, Debug)]
pub struct Streams {
    store: StreamStore,
}

pub const MODULE: Definition<StreamSettings> = Definition {
    name: "streams",
    api: || module::document(routes()),
    aliases: ALIASES,
    jobs: module::no_jobs,
    start,
};

fn start(core: &Core, settings: &StreamSettings) -> anyhow::Result<Module> {
    let (store, writer) = store(core, settings)?;
    core.console
        .add(console::page(store.clone(), core.db.clone()));
    core.console
        .add_figure(console::ActiveStreams(store.clone()));
    let housekeeping = tokio::spawn(housekeeping(store.clone(), core.clock.clone()));
    let routes = routes()
        .route("/api/v1/stream", post(routes::start).get(routes::list))
        .with_state(Streams { store });
    Ok(Module::new(routes)
        .with_writer(writer)
        .with_housekeeping(housekeeping))
}

/// The store and its writer task, for the module and for the store ceiling
/// (the binary's `ceiling`).
pub fn store(
    core: &Core,
    settings: &StreamSettings,
) -> anyhow::Result<(StreamStore, Vec<tokio::task::JoinHandle<()>>)> {
    StreamStore::new(
        &core.db,
        settings.streams_backend,
        core.redis.as_ref(),
        Policy::from(settings),
        (
            core.audited
                .audits("streams")
                .then(|| core.recorder.clone()),
            core.clock.clone(),
        ),
    )
}

fn routes() -> OpenApiRouter<Streams> {
    OpenApiRouter::with_openapi(Api::openapi())
        .routes(routes!(routes::start, routes::list))
        .routes(routes!(routes::heartbeat))
        .routes(routes!(routes::end))
        .routes(routes!(routes::set_limit, routes::reset_limit))
}

/// Keeps the `active_streams` gauge current (every second, on every backend), records
/// expired leases (SQL backends, every second) and forgets old leases (SQL backends,
/// every five minutes).
async fn housekeeping(store: StreamStore, clock: Clock) {
    let mut ticks: u64 = 0;
    loop {
        ticks += 1;
        match store.active_total().await {
            Ok(active) => metrics::gauge!("active_streams").set(active as f64),
            Err(err) => {
                tracing::warn!(error = %format!("{err:#}"), "counting active streams failed")
            }
        }
        match store.sweep_expired().await {
            Ok(0) => {}
            Ok(swept) => tracing::debug!(swept, "recorded expired stream leases"),
            Err(err) => tracing::warn!(error = %err, "recording expired stream leases failed"),
        }
        if ticks.is_multiple_of(300) {
            if let Err(err) = store.prune().await {
                tracing::warn!(error = %err, "pruning old streams failed");
            }
        }
        clock.sleep(Duration::from_secs(1)).await;
    }
}

#[derive(OpenApi)]
#[openapi(
    tags((name = "streams", description = "Concurrent video stream limiter"))
)]
pub struct Api;

/// Paths served under a second spelling.
pub const ALIASES: &[(&str, &str)] = &[("/api/v1/streams", "/api/v1/stream")];
