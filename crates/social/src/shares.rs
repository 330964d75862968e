//! Share notifications (`/notifications/share…`): a user shares the page they are on
//! with every friend, or with one, and each recipient sees it until they read it.
//! The user-api's routes and fields, answered for the caller of the token.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::model::{detail, invalid, Page};
use super::routes::{me, my_profile, success, user_not_found};
use super::store::SocialStore;
use super::store::{friends_of, PAIR};
use studyhall_auth::Caller;
use studyhall_core::clock::rfc3339;
use studyhall_core::error::{ApiError, Problem};
use studyhall_core::http::extract::{AppJson, AppJsonList, AppQuery};
use studyhall_core::sql::Sql;

type Result<T> = std::result::Result<T, ApiError>;

/// Longest URL kept (browsers' own limits are of this order).
const MAX_URL: usize = 8192;
/// Longest page title kept.
const MAX_TITLE: usize = 1000;

/// A page to share: with every friend, or with `sent_to` on the personal route.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct ShareBody {
    #[schema(max_length = 8192)]
    pub url: String,
    #[schema(max_length = 1000)]
    pub title: String,
    /// The friend to share with (`/notifications/share/personal` only).
    pub sent_to: Option<String>,
}

/// One notification to mark read.
#[derive(Debug, Deserialize, ToSchema)]
pub(crate) struct ShareRead {
    pub event_id: String,
}

/// A share the caller received.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ShareReceived {
    pub event_id: String,
    /// Who shared it.
    pub user_id: String,
    pub sent_at: String,
    pub url: String,
    pub title: String,
    /// When the caller marked it read; null while unread.
    pub seen_at: Option<String>,
    pub first_name: String,
    pub last_name: String,
    pub profile_image_extension: Option<String>,
}

/// A share the caller sent.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ShareSent {
    pub event_id: String,
    pub url: String,
    pub title: String,
    pub sent_at: String,
    /// Recipients who have not read it yet.
    pub not_seen_count: i64,
    /// The friend it was sent to; null when it went to every friend.
    pub sent_to: Option<String>,
    /// The recipient's name and image, when sent to one friend.
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub profile_image_extension: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ReceivedQuery {
    /// `true`: read ones only; `false`: unread ones only; absent: all.
    pub is_read: Option<bool>,
    /// Newest first, at most this many (default 100; more than 1000 gives 1000).
    #[param(minimum = 0)]
    pub limit: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SentQuery {
    /// Newest first, this many (default 10; more than 100 gives 100).
    #[param(minimum = 0)]
    pub limit: Option<i64>,
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}

/// What a share says, checked: the URL and title as sent, within bounds.
fn page(body: &ShareBody) -> Result<(&str, &str)> {
    let bounded = |field: &str, value: &str, max: usize| {
        if value.chars().count() > max || value.chars().any(char::is_control) {
            Err(invalid(format!(
                "{field} must be at most {max} characters, without control characters."
            )))
        } else {
            Ok(())
        }
    };
    if body.url.trim().is_empty() {
        return Err(invalid("url must not be empty."));
    }
    bounded("url", &body.url, MAX_URL)?;
    bounded("title", &body.title, MAX_TITLE)?;
    Ok((&body.url, &body.title))
}

/// Shares received, newest first.
#[utoipa::path(get, path = "/notifications/share", tag = "social", operation_id = "social_shares_received",
    params(ReceivedQuery), security(("bearer" = [])),
    responses(
        (status = 200, description = "Shares received, newest first", body = [ShareReceived]),
        (status = 400, description = "Bad query", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn received(
    State(store): State<SocialStore>,
    caller: Caller,
    AppQuery(query): AppQuery<ReceivedQuery>,
) -> Result<Json<Vec<ShareReceived>>> {
    let me = me(caller)?;
    let limit = bounded_limit(query.limit, 100, 1000)?;
    let read = match query.is_read {
        None => "",
        Some(true) => " AND s.seen_at IS NOT NULL",
        Some(false) => " AND s.seen_at IS NULL",
    };
    let sql = format!(
        "SELECT n.event_id, n.user_id, n.sent_at, n.url, n.title, s.seen_at, u.first_name, u.last_name,
                u.profile_image_extension
         FROM share_notifications_seen s
         JOIN share_notifications n ON n.event_id = s.event_id
         JOIN social_users u ON u.user_id = n.user_id
         WHERE s.user_id = $1{read}
         ORDER BY s.sent_at DESC, s.event_id DESC LIMIT $2"
    );
    type Row = (
        String,
        String,
        i64,
        String,
        String,
        Option<i64>,
        String,
        String,
        Option<String>,
    );
    let rows: Vec<Row> = Sql::new(&sql)
        .bind(&me.id)
        .bind(limit)
        .fetch_all(store.db())
        .await?;
    Ok(Json(
        rows.into_iter()
            .map(
                |(
                    event_id,
                    user_id,
                    sent_at,
                    url,
                    title,
                    seen_at,
                    first_name,
                    last_name,
                    image,
                )| {
                    ShareReceived {
                        event_id,
                        user_id,
                        sent_at: rfc3339(sent_at),
                        url,
                        title,
                        seen_at: seen_at.map(rfc3339),
                        first_name,
                        last_name,
                        profile_image_extension: image,
                    }
                },
            )
            .collect(),
    ))
}

/// Shares sent, newest first, with how many recipients have not read each.
#[utoipa::path(get, path = "/notifications/share/sent", tag = "social", operation_id = "social_shares_sent",
    params(SentQuery), security(("bearer" = [])),
    responses(
        (status = 200, description = "Shares sent, newest first", body = [ShareSent]),
        (status = 400, description = "Bad query", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn sent(
    State(store): State<SocialStore>,
    caller: Caller,
    AppQuery(query): AppQuery<SentQuery>,
) -> Result<Json<Vec<ShareSent>>> {
    let me = me(caller)?;
    let page = Page {
        limit: query.limit,
        offset: query.offset,
        exact: None,
    };
    let (limit, offset) = page.bounds(10)?;
    let sql = "SELECT n.event_id, n.url, n.title, n.sent_at,
                      CAST((SELECT count(*) FROM share_notifications_seen s
                            WHERE s.event_id = n.event_id AND s.seen_at IS NULL) AS BIGINT),
                      n.sent_to, u.first_name, u.last_name, u.profile_image_extension
               FROM share_notifications n LEFT JOIN social_users u ON u.user_id = n.sent_to
               WHERE n.user_id = $1
               ORDER BY n.sent_at DESC, n.event_id DESC LIMIT $2 OFFSET $3";
    type Row = (
        String,
        String,
        String,
        i64,
        i64,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let rows: Vec<Row> = Sql::new(sql)
        .bind(&me.id)
        .bind(limit)
        .bind(offset)
        .fetch_all(store.db())
        .await?;
    Ok(Json(
        rows.into_iter()
            .map(
                |(event_id, url, title, sent_at, not_seen_count, sent_to, first, last, image)| {
                    ShareSent {
                        event_id,
                        url,
                        title,
                        sent_at: rfc3339(sent_at),
                        not_seen_count,
                        sent_to,
                        first_name: first,
                        last_name: last,
                        profile_image_extension: image,
                    }
                },
            )
            .collect(),
    ))
}

/// Share a page with every friend; the share's id.
#[utoipa::path(post, path = "/notifications/share", tag = "social", operation_id = "social_share",
    request_body = ShareBody, security(("bearer" = [])),
    responses(
        (status = 200, description = "Shared with every friend the caller has now; its id", body = String, content_type = "application/json"),
        (status = 400, description = "Not a JSON object", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The caller has no profile", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid body", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn share(
    State(store): State<SocialStore>,
    caller: Caller,
    AppJson(body): AppJson<ShareBody>,
) -> Result<Json<String>> {
    let me = me(caller)?;
    let (url, title) = page(&body)?;
    my_profile(&store, &me).await?;
    let friends = format!(
        "SELECT friend AS recipient FROM ({}) friends",
        friends_of("$1")
    );
    Ok(Json(
        store
            .store_share(&me.id, (url, title), None, &friends)
            .await?,
    ))
}

/// Share a page with one friend; the share's id.
#[utoipa::path(post, path = "/notifications/share/personal", tag = "social", operation_id = "social_share_personal",
    request_body = ShareBody, security(("bearer" = [])),
    responses(
        (status = 200, description = "Shared with the friend; its id", body = String, content_type = "application/json"),
        (status = 400, description = "Not a JSON object", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`sent_to` is not the caller's friend", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The caller or `sent_to` has no profile", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid body, or no `sent_to`", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn share_personal(
    State(store): State<SocialStore>,
    caller: Caller,
    AppJson(body): AppJson<ShareBody>,
) -> Result<Json<String>> {
    let me = me(caller)?;
    let (url, title) = page(&body)?;
    let Some(to) = body.sent_to.as_deref() else {
        return Err(invalid("sent_to is required."));
    };
    my_profile(&store, &me).await?;
    if store.user(&me.id, to).await?.is_none() {
        return Err(user_not_found());
    }
    // The recipient only while a friend: checked in the statement that stores it.
    let friend =
        format!("SELECT $2 AS recipient FROM friendships WHERE {PAIR} AND accepted_at IS NOT NULL");
    let shared = store.store_share(&me.id, (url, title), Some(to), &friend);
    Ok(Json(shared.await?))
}

/// Mark shares the caller received as read.
#[utoipa::path(post, path = "/notifications/share/read", tag = "social", operation_id = "social_shares_read",
    request_body = [ShareRead], security(("bearer" = [])),
    responses(
        (status = 200, description = "Marked read (those the caller did not receive are left alone)", body = Object, example = json!({"success": true})),
        (status = 400, description = "Not a JSON array", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a list of `{event_id}` with UUIDs", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn read(
    State(store): State<SocialStore>,
    caller: Caller,
    AppJsonList(read): AppJsonList<ShareRead>,
) -> Result<Json<serde_json::Value>> {
    let me = me(caller)?;
    if read.len() > 1000 {
        return Err(invalid("At most 1000 notifications at once."));
    }
    let ids = read
        .iter()
        .map(|one| {
            Uuid::parse_str(&one.event_id)
                .map(|id| id.to_string())
                .map_err(|_| invalid(format!("event_id {:?} is not a UUID.", one.event_id)))
        })
        .collect::<Result<Vec<String>>>()?;
    store.mark_read(&me.id, &ids).await?;
    Ok(success())
}

fn bounded_limit(limit: Option<i64>, default: i64, max: i64) -> Result<i64> {
    match limit.unwrap_or(default) {
        limit if limit < 0 => Err(detail(
            StatusCode::BAD_REQUEST,
            "Limit and offset cannot be negative",
        )),
        limit => Ok(limit.min(max)),
    }
}

/// Why a share was not stored.
#[derive(Debug)]
pub enum ShareError {
    /// A personal share's recipient is not a friend.
    NoRecipient,
    Database(sqlx::Error),
}

impl From<sqlx::Error> for ShareError {
    fn from(err: sqlx::Error) -> Self {
        ShareError::Database(err)
    }
}

impl From<ShareError> for ApiError {
    fn from(err: ShareError) -> Self {
        match err {
            ShareError::NoRecipient => detail(
                StatusCode::FORBIDDEN,
                "You can share a page only with a friend",
            ),
            ShareError::Database(err) => err.into(),
        }
    }
}

impl SocialStore {
    /// Stores a share from `from` and its unread row for each `recipient` that
    /// `recipients` selects (`$1` the sender, `$2` the one addressed), in one
    /// transaction; its id. A personal share that selects no one is not stored.
    async fn store_share(
        &self,
        from: &str,
        (url, title): (&str, &str),
        to: Option<&str>,
        recipients: &str,
    ) -> std::result::Result<String, ShareError> {
        let event_id = Uuid::now_v7().to_string();
        let now = self.clock().now();
        let mut tx = self.db().begin_write().await?;
        Sql::new(
            "INSERT INTO share_notifications (event_id, user_id, sent_at, url, title, sent_to)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&event_id)
        .bind(from)
        .bind(now)
        .bind(url)
        .bind(title)
        .bind(to)
        .execute(&mut tx)
        .await?;
        let fan_out = format!(
            "INSERT INTO share_notifications_seen (user_id, event_id, sent_at)
             SELECT recipient, $3, $4 FROM ({recipients}) AS recipients"
        );
        let reached = Sql::new(&fan_out)
            .bind(from)
            .bind(to.unwrap_or_default())
            .bind(&event_id)
            .bind(now)
            .execute(&mut tx)
            .await?;
        if to.is_some() && reached == 0 {
            return Err(ShareError::NoRecipient);
        }
        tx.commit().await?;
        Ok(event_id)
    }

    /// Marks `events` read for `user`, keeping the first time each was read.
    async fn mark_read(
        &self,
        user: &str,
        events: &[String],
    ) -> std::result::Result<(), sqlx::Error> {
        if events.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "UPDATE share_notifications_seen SET seen_at = $2
             WHERE user_id = $1 AND seen_at IS NULL AND event_id IN ({})",
            studyhall_core::sql::params(3, events.len())
        );
        let mut update = Sql::new(&sql).bind(user).bind(self.clock().now());
        for event in events {
            update = update.bind(event);
        }
        let mut tx = self.db().begin_write().await?;
        update.execute(&mut tx).await?;
        tx.commit().await
    }
}
