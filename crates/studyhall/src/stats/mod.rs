//! Learning-session stats (Seneca Stats API): post a session's stats when it ends, read
//! one session back, and read the user's lifetime aggregate for a course.

pub mod model;
mod routes;
mod store;

use axum::routing::{get, post};
use axum::Router;
use tokio::task::JoinHandle;
use utoipa::OpenApi;

use crate::config::ServeSettings;
use crate::db::Db;
use store::StatsStore;

/// The module's state: its store, and whether the gateway's `X-User-Id` counts.
#[derive(Clone, Debug)]
pub struct Stats {
    store: StatsStore,
    trust_headers: bool,
}

pub struct Module {
    pub router: Router,
    /// The group-commit task (SQLite), to await at shutdown.
    pub writer: Option<JoinHandle<()>>,
}

pub fn start(db: &Db, settings: &ServeSettings) -> Module {
    let (store, writer) = StatsStore::new(db);
    let stats = Stats {
        store,
        trust_headers: settings.identity.trust_identity_headers,
    };
    let router = Router::new()
        .route(
            "/courses/{course_id}",
            post(routes::post_session).get(routes::get_course),
        )
        .route(
            "/courses/{course_id}/sessions/{session_id}",
            get(routes::get_session),
        )
        .with_state(stats);
    Module { router, writer }
}

#[derive(OpenApi)]
#[openapi(
    paths(routes::post_session, routes::get_course, routes::get_session),
    tags((name = "stats", description = "Learning-session stats (Seneca Stats API compatible)"))
)]
pub struct Api;
