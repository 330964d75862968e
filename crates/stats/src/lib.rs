//! Learning-session stats (Seneca Stats API): post a session's stats when it ends, read
//! one session back, and read the user's lifetime aggregate for a course.

#![warn(unreachable_pub)]

mod console;
pub mod model;
mod routes;
mod store;
pub use store::StatsStore;

use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use studyhall_module::{self as module, Core, Definition, Module};

/// The module's state.
#[derive(Clone, Debug)]
pub struct Stats {
    store: StatsStore,
}

pub const MODULE: Definition<()> = Definition {
    name: "stats",
    api: || module::document(routes()),
    aliases: &[],
    jobs: module::no_jobs,
    start: |core, ()| Ok(start(core)),
};

fn start(core: &Core) -> Module {
    let (store, writer) = store(core);
    core.console
        .add_section(console::StatsSection(store.clone()));
    Module::new(routes().with_state(Stats { store })).with_writer(writer)
}

/// The store and its writer task, for the module and for the store ceiling
/// (the binary's `ceiling`).
pub fn store(core: &Core) -> (StatsStore, Option<tokio::task::JoinHandle<()>>) {
    StatsStore::new(&core.db)
}

fn routes() -> OpenApiRouter<Stats> {
    OpenApiRouter::with_openapi(Api::openapi())
        .routes(routes!(routes::post_session, routes::get_course))
        .routes(routes!(routes::get_session))
}

#[derive(OpenApi)]
#[openapi(
    tags((name = "stats", description = "Learning-session stats (Seneca Stats API compatible)"))
)]
pub struct Api;
