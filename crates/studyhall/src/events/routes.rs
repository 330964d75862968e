use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::model::{health_body, Event, EventBody, EventPage, ListParams, ListQuery, NewEvent};
use super::store::{Inserted, KeyClaim};
use super::Events;
use crate::auth::Caller;
use crate::error::{ApiError, Problem};
use crate::http::extract::{AppJson, AppQuery};

const MAX_KEY: usize = 255;

/// Liveness, in the activity_service's shape.
#[utoipa::path(get, path = "/api/health", tag = "events", operation_id = "events_health",
    responses((status = 200, description = "The service is up", body = Object, example = json!({"status": "healthy"}))))]
pub async fn health() -> Json<serde_json::Value> {
    Json(health_body())
}

/// Store an event.
///
/// A 201 means the event is on disk. With `Idempotency-Key`, a retry with the same body
/// returns the first response and stores nothing; the same key with another body is 422.
#[utoipa::path(post, path = "/api/events", tag = "events", operation_id = "events_create", request_body = EventBody,
    params(("Idempotency-Key" = Option<String>, Header, max_length = 255, pattern = "^[\\t\\x20-\\x7E]*[\\x21-\\x7E][\\t\\x20-\\x7E]*$", description = "Up to 255 visible ASCII characters; kept at least 24 h.")),
    responses(
        (status = 201, description = "Stored", body = Event),
        (status = 400, description = "Invalid body; `message` and `errors` name the field", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Idempotency-Key reused with a different body", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all)]
pub async fn create(
    State(events): State<Events>,
    caller: Caller,
    headers: HeaderMap,
    AppJson(body): AppJson<EventBody>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let event = NewEvent::parse(body)?;
    let Some(key) = key else {
        return match events.writer.insert(event, None).await? {
            Inserted::Created(event) => Ok(created(event, false)),
            Inserted::KeyTaken => Err(anyhow::anyhow!("key conflict without a key").into()),
        };
    };
    let claim = KeyClaim {
        scope: caller.user_id().unwrap_or_default(),
        key,
        fingerprint: event.fingerprint(),
    };
    if let Some(replay) = replay(&events, &claim).await? {
        return Ok(replay);
    }
    match events.writer.insert(event, Some(claim.clone())).await? {
        Inserted::Created(event) => Ok(created(event, false)),
        // A concurrent request with the same key won the race; answer as it was answered.
        Inserted::KeyTaken => replay(&events, &claim)
            .await?
            .ok_or_else(|| anyhow::anyhow!("idempotency key vanished after a conflict").into()),
    }
}

/// The earlier response for this key, or 422 when the key was used for another body.
async fn replay(events: &Events, claim: &KeyClaim) -> Result<Option<Response>, ApiError> {
    let Some(record) = events.store.find_key(&claim.scope, &claim.key).await? else {
        return Ok(None);
    };
    if record.fingerprint != claim.fingerprint {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "This Idempotency-Key was already used with a different request body; use a new key for a new event.",
        ));
    }
    let event = events
        .store
        .get(record.event_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("idempotency key points at a missing event"))?;
    Ok(Some(created(event, true)))
}

fn created(event: Event, replayed: bool) -> Response {
    let mut response = (StatusCode::CREATED, Json(event)).into_response();
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match value.to_str().map(str::trim) {
        Ok(key) if !key.is_empty() && key.len() <= MAX_KEY => Ok(Some(key.to_owned())),
        _ => Err(ApiError::bad_request(format!(
            "Idempotency-Key must be 1 to {MAX_KEY} visible ASCII characters."
        ))),
    }
}

/// List events, newest first, filtered and paged.
///
/// Following `next_cursor` until it is null visits every matching event exactly once,
/// even while new events are being stored.
#[utoipa::path(get, path = "/api/events", tag = "events", operation_id = "events_list", params(ListParams),
    responses(
        (status = 200, description = "A page of matching events", body = EventPage),
        (status = 400, description = "Invalid date, limit, order or cursor; `message` names it", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all)]
pub async fn list(
    State(events): State<Events>,
    AppQuery(params): AppQuery<ListParams>,
) -> Result<Json<EventPage>, ApiError> {
    let query = ListQuery::parse(params)?;
    // One extra row tells whether another page follows.
    let rows = events.store.list(&query, query.limit + 1).await?;
    let (events, next_cursor) = crate::page::page(rows, query.limit as usize, |event| {
        super::model::Cursor {
            created_at: event.created_at,
            id: event.id,
        }
        .encode()
    });
    Ok(Json(EventPage {
        events,
        next_cursor,
    }))
}
