//! Learning-session stats (Seneca Stats API): post a session's stats when it ends, read
//! one session back, and read the user's lifetime aggregate for a course.

pub mod model;
mod routes;
mod store;

use axum::routing::{get, post};
use axum::Router;
use tokio::task::JoinHandle;
use utoipa::OpenApi;

use crate::db::Db;
use store::StatsStore;

pub struct Module {
    pub router: Router,
    /// The group-commit task (SQLite), to await at shutdown.
    pub writer: Option<JoinHandle<()>>,
}

pub fn start(db: &Db) -> Module {
    let (store, writer) = StatsStore::new(db);
    let router = Router::new()
        .route(
            "/courses/{course_id}",
            post(routes::post_session).get(routes::get_course),
        )
        .route(
            "/courses/{course_id}/sessions/{session_id}",
            get(routes::get_session),
        )
        .with_state(store);
    Module { router, writer }
}

#[derive(OpenApi)]
#[openapi(
    paths(routes::post_session, routes::get_course, routes::get_session),
    tags((name = "stats", description = "Learning-session stats (Seneca Stats API compatible)"))
)]
pub struct Api;
