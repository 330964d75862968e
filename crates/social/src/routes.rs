use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::model::{
    self, detail, AcceptBody, FriendCount, FriendRequestBody, Friendship, NewUser, Page,
    UnfriendBody, UserFriendRequest, UserPrivate, UserPublic, UserSummary, UserUpdate,
};
use super::store::{Match, Requested, Search, SocialStore};
use studyhall_auth::{unauthorized, AuthUser, Caller};
use studyhall_core::error::{ApiError, Problem};
use studyhall_core::http::extract::{AppJson, AppJsonList, AppQuery};

type Result<T> = std::result::Result<T, ApiError>;

/// Social routes need a token; gateway headers never speak for the caller here.
pub(super) fn me(caller: Caller) -> Result<AuthUser> {
    caller
        .token
        .ok_or_else(|| unauthorized("Not authenticated"))
}

pub(super) fn user_not_found() -> ApiError {
    detail(StatusCode::NOT_FOUND, "User not found")
}

/// The caller's own profile, which friendship actions need.
pub(super) async fn my_profile(store: &SocialStore, me: &AuthUser) -> Result<model::UserRow> {
    store.user(&me.id, &me.id).await?.ok_or_else(user_not_found)
}

pub(super) fn success() -> Json<Value> {
    Json(json!({"success": true}))
}

/// Liveness, in the user-api's shape.
#[utoipa::path(get, path = "/ping", tag = "social", operation_id = "social_ping",
    responses((status = 200, description = "Alive", body = String, content_type = "application/json", example = json!("pong"))))]
pub(crate) async fn ping() -> Json<&'static str> {
    Json("pong")
}

/// Sites whose sharing reveals more than the page itself, each with the warning a client
/// shows before the user allows it.
#[utoipa::path(get, path = "/domains/share/warnings", tag = "social", operation_id = "social_share_warnings", security(("bearer" = [])),
    responses((status = 200, description = "A warning per site", body = Object,
                example = json!({"messenger.com": "Allowing messenger.com may result in sharing personal activities"})),
              (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn share_warnings(caller: Caller) -> Result<Json<Value>> {
    me(caller)?;
    let personal =
        |site: &str| format!("Allowing {site} may result in sharing personal activities");
    Ok(Json(json!({
        "google.com": format!("{} (e.g. Gmail, Calendar)", personal("google.com")),
        "messenger.com": personal("messenger.com"),
        "notion.so": personal("notion.so"),
    })))
}

/// Create the caller's profile (email from the token).
#[utoipa::path(post, path = "/users/me", tag = "social", operation_id = "social_create_me", request_body = NewUser,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Created", body = UserPrivate),
        (status = 400, description = "The profile already exists, or the token has no email", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid name", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all)]
pub(crate) async fn create_me(
    State(store): State<SocialStore>,
    caller: Caller,
    AppJson(body): AppJson<NewUser>,
) -> Result<Json<UserPrivate>> {
    let me = me(caller)?;
    let first = model::name("first_name", &body.first_name)?;
    let last = model::name("last_name", &body.last_name)?;
    let email = me
        .email
        .clone()
        .ok_or_else(|| detail(StatusCode::BAD_REQUEST, "The token carries no email claim."))?;
    if !store.create(&me.id, &email, &first, &last).await? {
        return Err(detail(StatusCode::BAD_REQUEST, "User already exists"));
    }
    Ok(Json(my_profile(&store, &me).await?.private()))
}

/// The caller's own profile, private fields included.
#[utoipa::path(get, path = "/users/me", tag = "social", operation_id = "social_get_me", security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's profile", body = UserPrivate),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No profile yet", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn get_me(
    State(store): State<SocialStore>,
    caller: Caller,
) -> Result<Json<UserPrivate>> {
    let me = me(caller)?;
    Ok(Json(my_profile(&store, &me).await?.private()))
}

/// Change the fields sent; the others stay.
#[utoipa::path(put, path = "/users/me", tag = "social", operation_id = "social_update_me", request_body = UserUpdate,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Updated", body = UserPrivate),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No profile yet", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "An invalid field, named in `detail`", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all)]
pub(crate) async fn update_me(
    State(store): State<SocialStore>,
    caller: Caller,
    AppJson(update): AppJson<UserUpdate>,
) -> Result<Json<UserPrivate>> {
    let me = me(caller)?;
    let mut row = my_profile(&store, &me).await?;
    update.apply(&mut row)?;
    store.save(&row).await?;
    Ok(Json(row.private()))
}

/// Replace the allow or deny domain list.
#[utoipa::path(put, path = "/users/me/domain_array/{share_type}", tag = "social", operation_id = "social_domains",
    params(("share_type" = String, Path, pattern = "^(allow|deny)$", description = "`allow` or `deny`")), request_body = Vec<String>,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Updated", body = UserPrivate),
        (status = 400, description = "share_type is neither allow nor deny", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid domains", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn set_domains(
    State(store): State<SocialStore>,
    caller: Caller,
    Path(share_type): Path<String>,
    AppJsonList(list): AppJsonList<String>,
) -> Result<Json<UserPrivate>> {
    let me = me(caller)?;
    let update = match share_type.as_str() {
        "allow" => UserUpdate {
            domain_allow_array: Some(list),
            ..Default::default()
        },
        "deny" => UserUpdate {
            domain_deny_array: Some(list),
            ..Default::default()
        },
        _ => {
            return Err(detail(
                StatusCode::BAD_REQUEST,
                "share_type must be `allow` or `deny`",
            ))
        }
    };
    let mut row = my_profile(&store, &me).await?;
    update.apply(&mut row)?;
    store.save(&row).await?;
    Ok(Json(row.private()))
}

/// A user's public profile (no token needed; with one, `friendship_state` is relative to the caller).
#[utoipa::path(get, path = "/users/id/{user_id}", tag = "social", operation_id = "social_user", security((), ("bearer" = [])),
    params(("user_id" = String, Path, pattern = "^(?=.*\\S)[^\\u0000-\\u001F\\u007F-\\u009F]{1,128}$")),
    responses(
        (status = 200, description = "Public profile", body = UserPublic),
        (status = 404, description = "Unknown user", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn user(
    State(store): State<SocialStore>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<UserPublic>> {
    let caller = caller.token.map(|user| user.id).unwrap_or_default();
    let id = model::user_id(&id)?;
    let row = store.user(&caller, &id).await?.ok_or_else(user_not_found)?;
    Ok(Json(row.public()))
}

/// Public profiles of up to 100 comma-separated ids; unknown ids are left out.
#[utoipa::path(get, path = "/users/ids/{ids}", tag = "social", operation_id = "social_users", security((), ("bearer" = [])),
    params(("ids" = String, Path, description = "Comma-separated user ids, at most 100")),
    responses(
        (status = 200, description = "Profiles that exist", body = Vec<UserPublic>),
        (status = 400, description = "More than 100 ids", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn users(
    State(store): State<SocialStore>,
    caller: Caller,
    Path(ids): Path<String>,
) -> Result<Json<Vec<UserPublic>>> {
    let caller = caller.token.map(|user| user.id).unwrap_or_default();
    let ids = model::user_ids(&ids)?;
    let mut found = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(row) = store.user(&caller, &id).await? {
            found.push(row.public());
        }
    }
    Ok(Json(found))
}

async fn friend_list(
    store: &SocialStore,
    caller: Caller,
    id: &str,
    mutual: bool,
    page: Page,
) -> Result<Json<Vec<UserSummary>>> {
    let me = me(caller)?;
    let id = model::user_id(id)?;
    let (limit, offset) = page.bounds(15)?;
    let rows = store.friends(&me.id, &id, mutual, limit, offset).await?;
    Ok(Json(rows.iter().map(model::UserRow::summary).collect()))
}

async fn friend_count(
    store: &SocialStore,
    caller: Caller,
    id: &str,
    mutual: bool,
) -> Result<Json<FriendCount>> {
    let me = me(caller)?;
    let id = model::user_id(id)?;
    let count_1 = store.friend_count(&me.id, &id, mutual).await?;
    Ok(Json(FriendCount { count_1 }))
}

/// A user's friends, a page at a time.
#[utoipa::path(get, path = "/users/id/{user_id}/friends", tag = "social", operation_id = "social_friends",
    params(("user_id" = String, Path, pattern = "^(?=.*\\S)[^\\u0000-\\u001F\\u007F-\\u009F]{1,128}$"), Page), security(("bearer" = [])),
    responses(
        (status = 200, description = "Friends by first then last name", body = Vec<UserSummary>),
        (status = 400, description = "Negative limit or offset", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn friends(
    State(store): State<SocialStore>,
    caller: Caller,
    Path(id): Path<String>,
    AppQuery(page): AppQuery<Page>,
) -> Result<Json<Vec<UserSummary>>> {
    friend_list(&store, caller, &id, false, page).await
}

/// How many friends a user has.
#[utoipa::path(get, path = "/users/id/{user_id}/friends/count", tag = "social", operation_id = "social_friend_count",
    params(("user_id" = String, Path, pattern = "^(?=.*\\S)[^\\u0000-\\u001F\\u007F-\\u009F]{1,128}$")), security(("bearer" = [])),
    responses((status = 200, description = "How many friends", body = FriendCount),
              (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn friends_count(
    State(store): State<SocialStore>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<FriendCount>> {
    friend_count(&store, caller, &id, false).await
}

/// The friends a user and the caller have in common.
#[utoipa::path(get, path = "/users/id/{user_id}/mutual-friends", tag = "social", operation_id = "social_mutual_friends",
    params(("user_id" = String, Path, pattern = "^(?=.*\\S)[^\\u0000-\\u001F\\u007F-\\u009F]{1,128}$"), Page), security(("bearer" = [])),
    responses(
        (status = 200, description = "Friends of both", body = Vec<UserSummary>),
        (status = 400, description = "Negative limit or offset", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn mutual_friends(
    State(store): State<SocialStore>,
    caller: Caller,
    Path(id): Path<String>,
    AppQuery(page): AppQuery<Page>,
) -> Result<Json<Vec<UserSummary>>> {
    friend_list(&store, caller, &id, true, page).await
}

/// How many friends a user and the caller have in common.
#[utoipa::path(get, path = "/users/id/{user_id}/mutual-friends/count", tag = "social", operation_id = "social_mutual_count",
    params(("user_id" = String, Path, pattern = "^(?=.*\\S)[^\\u0000-\\u001F\\u007F-\\u009F]{1,128}$")), security(("bearer" = [])),
    responses((status = 200, description = "How many mutual friends", body = FriendCount),
              (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn mutual_count(
    State(store): State<SocialStore>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<FriendCount>> {
    friend_count(&store, caller, &id, true).await
}

async fn search(
    store: &SocialStore,
    caller: Caller,
    by: Match,
    text: &str,
    friends_only: bool,
    page: Page,
    default_limit: i64,
) -> Result<Json<Vec<UserSummary>>> {
    let me = me(caller)?;
    let (limit, offset) = page.bounds(default_limit)?;
    if text.trim().is_empty() || text.len() > 254 {
        return Err(detail(
            StatusCode::BAD_REQUEST,
            "The search text must be 1 to 254 characters",
        ));
    }
    let exact = friends_only && page.exact.unwrap_or(false);
    let search = Search {
        by,
        text,
        friends_only,
        exact,
    };
    let rows = store.search(&me.id, &search, limit, offset).await?;
    Ok(Json(rows.iter().map(model::UserRow::summary).collect()))
}

/// Users whose email contains a text (any case).
#[utoipa::path(get, path = "/users/search/email/{email}", tag = "social", operation_id = "social_search_email",
    params(("email" = String, Path, description = "Text the email contains (any case)"), Page), security(("bearer" = [])),
    responses((status = 200, description = "Matching users other than the caller", body = Vec<UserSummary>),
              (status = 400, description = "Negative limit or offset", body = Problem, content_type = "application/problem+json"),
              (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn search_email(
    State(store): State<SocialStore>,
    caller: Caller,
    Path(text): Path<String>,
    AppQuery(page): AppQuery<Page>,
) -> Result<Json<Vec<UserSummary>>> {
    search(&store, caller, Match::Email, &text, false, page, 15).await
}

/// Users whose name contains a text (any case).
#[utoipa::path(get, path = "/users/search/name/{name}", tag = "social", operation_id = "social_search_name",
    params(("name" = String, Path, description = "Text the first name, last name or \"first last\" contains"), Page), security(("bearer" = [])),
    responses((status = 200, description = "Matching users other than the caller", body = Vec<UserSummary>),
              (status = 400, description = "Negative limit or offset", body = Problem, content_type = "application/problem+json"),
              (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn search_name(
    State(store): State<SocialStore>,
    caller: Caller,
    Path(text): Path<String>,
    AppQuery(page): AppQuery<Page>,
) -> Result<Json<Vec<UserSummary>>> {
    search(&store, caller, Match::Name, &text, false, page, 15).await
}

/// The caller's friends whose email contains a text.
#[utoipa::path(get, path = "/friendship/search/email/{email}", tag = "social", operation_id = "social_friends_by_email",
    params(("email" = String, Path), Page), security(("bearer" = [])),
    responses((status = 200, description = "The caller's matching friends", body = Vec<UserSummary>),
              (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn friends_by_email(
    State(store): State<SocialStore>,
    caller: Caller,
    Path(text): Path<String>,
    AppQuery(page): AppQuery<Page>,
) -> Result<Json<Vec<UserSummary>>> {
    search(&store, caller, Match::Email, &text, true, page, 10).await
}

/// The caller's friends whose name contains a text.
#[utoipa::path(get, path = "/friendship/search/name/{name}", tag = "social", operation_id = "social_friends_by_name",
    params(("name" = String, Path), Page), security(("bearer" = [])),
    responses((status = 200, description = "The caller's matching friends", body = Vec<UserSummary>),
              (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn friends_by_name(
    State(store): State<SocialStore>,
    caller: Caller,
    Path(text): Path<String>,
    AppQuery(page): AppQuery<Page>,
) -> Result<Json<Vec<UserSummary>>> {
    search(&store, caller, Match::Name, &text, true, page, 10).await
}

/// The friendship row between the caller and a user, if any.
#[utoipa::path(get, path = "/friendship/check/{user_id}", tag = "social", operation_id = "social_check",
    params(("user_id" = String, Path, pattern = "^(?=.*\\S)[^\\u0000-\\u001F\\u007F-\\u009F]{1,128}$")), security(("bearer" = [])),
    responses((status = 200, description = "The row between the caller and the user, or null", body = Option<Friendship>),
              (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn check(
    State(store): State<SocialStore>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Option<Friendship>>> {
    let me = me(caller)?;
    Ok(Json(store.between(&me.id, &model::user_id(&id)?).await?))
}

/// Send a request; if the user had already asked the caller, this accepts it.
#[utoipa::path(post, path = "/friendship/requests", tag = "social", operation_id = "social_request", request_body = FriendRequestBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Sent (or accepted)", body = Object, example = json!({"success": true})),
        (status = 400, description = "A request to oneself", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown user (or no profile for the caller)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already requested, or already friends", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all)]
pub(crate) async fn request(
    State(store): State<SocialStore>,
    caller: Caller,
    AppJson(body): AppJson<FriendRequestBody>,
) -> Result<Json<Value>> {
    let me = me(caller)?;
    let other = model::user_id(&body.user_id2)?;
    if other == me.id {
        return Err(detail(
            StatusCode::BAD_REQUEST,
            "You cannot send a friend request to yourself",
        ));
    }
    my_profile(&store, &me).await?;
    store
        .user(&me.id, &other)
        .await?
        .ok_or_else(user_not_found)?;
    match store.request(&me.id, &other).await? {
        Requested::Sent | Requested::Accepted => Ok(success()),
        Requested::AlreadyFriends => Err(detail(StatusCode::CONFLICT, "You are already friends")),
        Requested::AlreadySent => Err(detail(StatusCode::CONFLICT, "Friend request already sent")),
    }
}

/// Friend requests the caller has received and not answered.
#[utoipa::path(get, path = "/friendship/requests", tag = "social", operation_id = "social_received", security(("bearer" = [])),
    responses((status = 200, description = "Pending requests received, newest first", body = Vec<UserFriendRequest>),
              (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn received(
    State(store): State<SocialStore>,
    caller: Caller,
) -> Result<Json<Vec<UserFriendRequest>>> {
    let me = me(caller)?;
    Ok(Json(store.received(&me.id).await?))
}

/// The caller's pending request to a user, if any.
#[utoipa::path(get, path = "/friendship/requests/{user_id}", tag = "social", operation_id = "social_sent",
    params(("user_id" = String, Path, pattern = "^(?=.*\\S)[^\\u0000-\\u001F\\u007F-\\u009F]{1,128}$")), security(("bearer" = [])),
    responses((status = 200, description = "The caller's pending request to the user, or null", body = Option<Friendship>),
              (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn sent(
    State(store): State<SocialStore>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Option<Friendship>>> {
    let me = me(caller)?;
    Ok(Json(
        store.sent_request(&me.id, &model::user_id(&id)?).await?,
    ))
}

/// Decline a request received from the user, or withdraw one sent to them.
#[utoipa::path(delete, path = "/friendship/requests/{user_id}", tag = "social", operation_id = "social_decline",
    params(("user_id" = String, Path, pattern = "^(?=.*\\S)[^\\u0000-\\u001F\\u007F-\\u009F]{1,128}$")), security(("bearer" = [])),
    responses((status = 200, description = "Removed, or there was none", body = Object, example = json!({"success": true})),
              (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn decline(
    State(store): State<SocialStore>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let me = me(caller)?;
    // No pending request is a success too, as the original answered: the request is gone.
    store.drop_request(&me.id, &model::user_id(&id)?).await?;
    Ok(success())
}

/// Accept a friend request sent to the caller.
#[utoipa::path(post, path = "/friendship/accept", tag = "social", operation_id = "social_accept", request_body = AcceptBody,
    security(("bearer" = [])),
    responses((status = 200, description = "Now friends, or there was no request to accept", body = Object, example = json!({"success": true})),
              (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn accept(
    State(store): State<SocialStore>,
    caller: Caller,
    AppJson(body): AppJson<AcceptBody>,
) -> Result<Json<Value>> {
    let me = me(caller)?;
    // No pending request is a success too, as the original answered (nothing recorded).
    store
        .accept(&me.id, &model::user_id(&body.user_id1)?)
        .await?;
    Ok(success())
}

/// End a friendship (either friend may).
#[utoipa::path(post, path = "/friendship/delete", tag = "social", operation_id = "social_unfriend", request_body = UnfriendBody,
    security(("bearer" = [])),
    responses((status = 200, description = "No longer friends, or they were not", body = Object, example = json!({"success": true})),
              (status = 400, description = "The same id twice", body = Problem, content_type = "application/problem+json"),
              (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
              (status = 403, description = "The caller is neither of the two", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn unfriend(
    State(store): State<SocialStore>,
    caller: Caller,
    AppJson(body): AppJson<UnfriendBody>,
) -> Result<Json<Value>> {
    let me = me(caller)?;
    let (a, b) = (
        model::user_id(&body.user_id1)?,
        model::user_id(&body.user_id2)?,
    );
    if a == b {
        return Err(detail(
            StatusCode::BAD_REQUEST,
            "user_id1 and user_id2 must differ",
        ));
    }
    if me.id != a && me.id != b {
        return Err(detail(
            StatusCode::FORBIDDEN,
            "You can only end your own friendships",
        ));
    }
    // Not friends is a success too, as the original answered (nothing recorded).
    store.unfriend(&a, &b, &me.id).await?;
    Ok(success())
}

/// Every friend of the caller, as ids.
#[utoipa::path(get, path = "/friendship/all", tag = "social", operation_id = "social_all_friends", security(("bearer" = [])),
    responses((status = 200, description = "Every friend of the caller", body = Vec<Object>, example = json!([{"user_id": "bob"}])),
              (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json")))]
pub(crate) async fn all_friends(
    State(store): State<SocialStore>,
    caller: Caller,
) -> Result<Json<Vec<Value>>> {
    let me = me(caller)?;
    Ok(Json(
        store
            .all_friends(&me.id)
            .await?
            .into_iter()
            .map(|id| json!({"user_id": id}))
            .collect(),
    ))
}
