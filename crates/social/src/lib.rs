//! User profiles and friendships (user-api), behind bearer tokens.

#![warn(unreachable_pub)]

mod console;
mod images;
pub mod model;
mod routes;
mod s3;
mod shares;
mod store;
pub use store::{Match, Search, SocialStore};

use axum::extract::{DefaultBodyLimit, FromRef};
use images::Images;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use studyhall_core::config::ImageSettings;
use studyhall_core::sensitive::DatabaseUrl;
use studyhall_module::{self as module, Definition, Module};

/// What the social module starts with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub images: ImageSettings,
    /// Where an SQLite database lives, beside which images are kept by default.
    pub database_url: DatabaseUrl,
}

pub const MODULE: Definition<Settings> = Definition {
    name: "social",
    api: || module::document(routes()),
    aliases: &[],
    jobs: module::no_jobs,
    start: |core, settings| {
        let social = Social {
            store: SocialStore::new(&core.db, core.audited.audits("social"), core.clock.clone()),
            images: Images::new(&settings.images, &settings.database_url, &core.clock)?,
        };
        core.console.add(console::page(social.store.clone()));
        Ok(Module::new(routes().with_state(social)))
    },
};

/// The module's state: the profiles' store and the image files.
#[derive(Clone, Debug)]
pub struct Social {
    store: SocialStore,
    images: Images,
}

impl FromRef<Social> for SocialStore {
    fn from_ref(social: &Social) -> SocialStore {
        social.store.clone()
    }
}

impl FromRef<Social> for Images {
    fn from_ref(social: &Social) -> Images {
        social.images.clone()
    }
}

fn routes() -> OpenApiRouter<Social> {
    // An image upload may be larger than the 1 MiB every other body is held to.
    let upload = OpenApiRouter::new()
        .routes(routes!(images::upload))
        .layer(DefaultBodyLimit::max(images::MAX_IMAGE_BYTES));
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
        .routes(routes!(images::upload_url))
        .routes(routes!(images::image_url_of))
        .routes(routes!(images::image_urls_of))
        .routes(routes!(images::delete))
        .routes(routes!(images::image))
        .merge(upload)
}

#[derive(OpenApi)]
#[openapi(
    tags((name = "social", description = "User profiles and friendships (user-api compatible)"))
)]
pub struct Api;
