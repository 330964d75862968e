//! The concurrent-stream limiter: a viewer may watch at most N streams at once, exactly,
//! across every instance, with leases that expire when a player disappears.

pub mod model;
mod routes;
mod store;

use std::time::Duration;

use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::{post, put};
use axum::Router;
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;
use utoipa::OpenApi;

use crate::config::{IdentitySettings, Secret, ServeSettings};
use crate::db::Db;
use crate::error::ApiError;
use store::{Policy, StreamStore};

pub use store::RedisHandle;

#[derive(Clone, Debug)]
pub struct Streams {
    store: StreamStore,
    identity: IdentitySettings,
    admin_token: Option<Secret>,
}

impl Streams {
    fn authorize_admin(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(expected) = &self.admin_token else {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "The admin API is disabled: set STUDYHALL_ADMIN_TOKEN.",
            ));
        };
        let sent = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        let Some(sent) = sent else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "Send the admin token as `Authorization: Bearer TOKEN`.",
            ));
        };
        // Compare digests so the comparison takes the same time wherever they differ.
        let (a, b) = (
            Sha256::digest(sent.trim().as_bytes()),
            Sha256::digest(expected.expose().as_bytes()),
        );
        if a.iter()
            .zip(b.iter())
            .fold(0u8, |diff, (x, y)| diff | (x ^ y))
            != 0
        {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "The admin token is not valid.",
            ));
        }
        Ok(())
    }
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
        admin_token: settings.admin_token.clone(),
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

/// Keeps the `active_streams` gauge current and forgets old leases (SQL backends).
async fn housekeeping(store: StreamStore) {
    let mut every = tokio::time::interval(Duration::from_secs(10));
    let mut ticks: u64 = 0;
    loop {
        every.tick().await;
        ticks += 1;
        match store.active_total().await {
            Ok(Some(active)) => metrics::gauge!("active_streams").set(active as f64),
            Ok(None) => {}
            Err(err) => tracing::warn!(error = %err, "counting active streams failed"),
        }
        if ticks.is_multiple_of(30) {
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
