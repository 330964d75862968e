//! User profiles and friendships (user-api), behind bearer tokens.

pub mod model;
mod routes;
mod shares;
mod store;
pub use store::{Match, Search, SocialStore};

use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::module::{self, Module, Plugin};

pub const PLUGIN: Plugin = Plugin {
    name: "social",
    api: || module::document(routes()),
    aliases: &[],
    jobs: module::no_jobs,
    start: |core, _| {
        let store = SocialStore::new(&core.db, core.audited.audits("social"), core.clock.clone());
        Ok(Module::new(routes().with_state(store)))
    },
};

fn routes() -> OpenApiRouter<SocialStore> {
    OpenApiRouter::with_openapi(Api::openapi())
        .routes(routes!(routes::ping))
        .routes(routes!(
            routes::create_me,
            routes::get_me,
            routes::update_me
        ))
        .routes(routes!(routes::set_domains))
        .routes(routes!(routes::share_warnings))
        .routes(routes!(routes::user))
        .routes(routes!(routes::users))
        .routes(routes!(routes::friends))
        .routes(routes!(routes::friends_count))
        .routes(routes!(routes::mutual_friends))
        .routes(routes!(routes::mutual_count))
        .routes(routes!(routes::search_email))
        .routes(routes!(routes::search_name))
        .routes(routes!(routes::check))
        .routes(routes!(routes::request, routes::received))
        .routes(routes!(routes::sent, routes::decline))
        .routes(routes!(routes::accept))
        .routes(routes!(routes::unfriend))
        .routes(routes!(routes::all_friends))
        .routes(routes!(routes::friends_by_email))
        .routes(routes!(routes::friends_by_name))
        .routes(routes!(shares::received, shares::share))
        .routes(routes!(shares::sent))
        .routes(routes!(shares::share_personal))
        .routes(routes!(shares::read))
}

#[derive(OpenApi)]
#[openapi(
    tags((name = "social", description = "User profiles and friendships (user-api compatible)"))
)]
pub struct Api;
