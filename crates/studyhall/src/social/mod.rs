//! User profiles and friendships (user-api), behind bearer tokens.

pub mod model;
mod routes;
mod store;

use axum::routing::{delete, get, post, put};
use axum::Router;
use utoipa::OpenApi;

use crate::db::Db;

pub fn router(db: &Db) -> Router {
    Router::new()
        .route("/ping", get(routes::ping))
        .route(
            "/users/me",
            post(routes::create_me)
                .get(routes::get_me)
                .put(routes::update_me),
        )
        .route(
            "/users/me/domain_array/{share_type}",
            put(routes::set_domains),
        )
        .route("/users/id/{user_id}", get(routes::user))
        .route("/users/ids/{ids}", get(routes::users))
        .route("/users/id/{user_id}/friends", get(routes::friends))
        .route(
            "/users/id/{user_id}/friends/count",
            get(routes::friends_count),
        )
        .route(
            "/users/id/{user_id}/mutual-friends",
            get(routes::mutual_friends),
        )
        .route(
            "/users/id/{user_id}/mutual-friends/count",
            get(routes::mutual_count),
        )
        .route("/users/search/email/{email}", get(routes::search_email))
        .route("/users/search/name/{name}", get(routes::search_name))
        .route("/friendship/check/{user_id}", get(routes::check))
        .route(
            "/friendship/requests",
            post(routes::request).get(routes::received),
        )
        .route(
            "/friendship/requests/{user_id}",
            get(routes::sent).merge(delete(routes::decline)),
        )
        .route("/friendship/accept", post(routes::accept))
        .route("/friendship/delete", post(routes::unfriend))
        .route("/friendship/all", get(routes::all_friends))
        .route(
            "/friendship/search/email/{email}",
            get(routes::friends_by_email),
        )
        .route(
            "/friendship/search/name/{name}",
            get(routes::friends_by_name),
        )
        .with_state(store::SocialStore::new(db))
}

#[derive(OpenApi)]
#[openapi(
    paths(
        routes::ping, routes::create_me, routes::get_me, routes::update_me, routes::set_domains, routes::user,
        routes::users, routes::friends, routes::friends_count, routes::mutual_friends, routes::mutual_count,
        routes::search_email, routes::search_name, routes::check, routes::request, routes::received, routes::sent,
        routes::decline, routes::accept, routes::unfriend, routes::all_friends, routes::friends_by_email,
        routes::friends_by_name
    ),
    tags((name = "social", description = "User profiles and friendships (user-api compatible)"))
)]
pub struct Api;
