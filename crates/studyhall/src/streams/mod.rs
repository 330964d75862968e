//! The concurrent-stream limiter: a viewer may watch at most N streams at once, exactly,
//! across every instance, with leases that expire when a player disappears.

pub mod model;
mod routes;
mod store;

use std::time::Duration;

use axum::routing::{post, put};
use axum::Router;
use tokio::task::JoinHandle;
use utoipa::OpenApi;

use crate::config::{IdentitySettings, ServeSettings};
use crate::db::Db;
use store::{Policy, StreamStore};

pub use store::RedisHandle;

#[derive(Clone, Debug)]
pub struct Streams {
    store: StreamStore,
    identity: IdentitySettings,
}

pub struct Module {
    pub router: Router,
    pub writer: Option<JoinHandle<()>>,
    pub housekeeping: JoinHandle<()>,
}

pub fn start(
    db: &Db,
    settings: &ServeSettings,
    redis: Option<&RedisHandle>,
) -> anyhow::Result<Module> {
    let policy = Policy::from(&settings.streams);
    let (store, writer) = StreamStore::new(db, settings.streams.streams_backend, redis, policy)?;
    let housekeeping = tokio::spawn(housekeeping(store.clone()));
    let streams = Streams {
        store,
        identity: settings.identity.clone(),
    };
    let router = Router::new()
        .route("/api/v1/stream", post(routes::start).get(routes::list))
        .route("/api/v1/streams", post(routes::start).get(routes::list))
        .route("/api/v1/streams/{id}/heartbeat", post(routes::heartbeat))
        .route("/api/v1/streams/{id}", axum::routing::delete(routes::end))
        .route(
            "/api/v1/viewers/{viewer}/limit",
            put(routes::set_limit).delete(routes::reset_limit),
        )
        .with_state(streams);
    Ok(Module {
        router,
        writer,
        housekeeping,
    })
}

/// Keeps the `active_streams` gauge current (every second, on every backend) and
/// forgets old leases (SQL backends, every five minutes).
async fn housekeeping(store: StreamStore) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    let mut ticks: u64 = 0;
    loop {
        every.tick().await;
        ticks += 1;
        match store.active_total().await {
            Ok(active) => metrics::gauge!("active_streams").set(active as f64),
            Err(err) => {
                tracing::warn!(error = %format!("{err:#}"), "counting active streams failed")
            }
        }
        if ticks.is_multiple_of(300) {
            if let Err(err) = store.prune().await {
                tracing::warn!(error = %err, "pruning old streams failed");
            }
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    paths(routes::start, routes::list, routes::heartbeat, routes::end, routes::set_limit, routes::reset_limit),
    tags((name = "streams", description = "Concurrent video stream limiter"))
)]
pub struct Api;

/// Paths served under a second spelling.
pub const ALIASES: &[(&str, &str)] = &[("/api/v1/streams", "/api/v1/stream")];
