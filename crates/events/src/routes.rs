use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::model::{health_body, Event, EventBody, NewEvent};
use super::query::{
    CheckpointPage, CheckpointParams, EventPage, ExportParams, ExportQuery, FilterParams,
    ListParams, ListQuery,
};
use super::store::{Inserted, KeyClaim};
use super::Events;
use serde_json::Value;
use studyhall_auth::{Caller, Grant, Rule};
use studyhall_core::error::{ApiError, Problem};
use studyhall_core::http::extract::{AppJson, AppQuery};
use studyhall_log::store::Filter;
use studyhall_log::Decision;

const MAX_KEY: usize = 255;

/// A caller `STUDYHALL_EVENTS_READ` lets read.
pub(crate) struct Reader(Grant);

impl FromRequestParts<Events> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, events: &Events) -> Result<Self, ApiError> {
        let auth = studyhall_auth::auth_of(parts)?.clone();
        let grant = auth.grant(parts, events.read, "Reading events").await?;
        Ok(Reader(grant))
    }
}

/// A caller `STUDYHALL_EVENTS_WRITE` lets post.
pub(crate) struct Poster;

impl FromRequestParts<Events> for Poster {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, events: &Events) -> Result<Self, ApiError> {
        if events.write == Rule::Open {
            return Ok(Poster);
        }
        let auth = studyhall_auth::auth_of(parts)?.clone();
        auth.grant(parts, events.write, "Posting events").await?;
        Ok(Poster)
    }
}

/// Records that an identified caller read the log (`message`), and how they filtered
/// it, before they are answered. Anonymous reads (`STUDYHALL_EVENTS_READ=open`) are not
/// recorded: there is no one to record.
async fn record_read(
    events: &Events,
    reader: &Reader,
    message: &'static str,
    filter: &Filter,
    extra: Value,
) -> Result<(), ApiError> {
    let Some(actor) = reader.0.actor() else {
        return Ok(());
    };
    let mut data = serde_json::json!({
        "filter": {
            "email": filter.email, "environment": filter.environment, "component": filter.component,
            "message": filter.message, "from_us": filter.from, "to_us": filter.to,
        },
    });
    if let (Value::Object(data), Value::Object(extra)) = (&mut data, extra) {
        data.extend(extra);
    }
    let event = Decision::new("studyhall.events", message, actor, data)
        .event()
        .map_err(anyhow::Error::from)?;
    events.writer.store(event).await?;
    Ok(())
}

/// Liveness, in the activity_service's shape.
#[utoipa::path(get, path = "/api/health", tag = "events", operation_id = "events_health",
    responses((status = 200, description = "The service is up", body = Object, example = json!({"status": "healthy"}))))]
pub(crate) async fn health() -> Json<serde_json::Value> {
    Json(health_body())
}

/// Store an event.
///
/// A 201 means the event is on disk. With `Idempotency-Key`, a retry with the same body
/// returns the first response and stores nothing; the same key with another body is 422.
#[utoipa::path(post, path = "/api/events", tag = "events", operation_id = "events_create", security((), ("bearer" = []), ("admin_token" = [])), request_body = EventBody,
    params(("Idempotency-Key" = Option<String>, Header, max_length = 255, pattern = "^[\\t\\x20-\\x7E]*[\\x21-\\x7E][\\t\\x20-\\x7E]*$", description = "Up to 255 visible ASCII characters; kept at least 24 h.")),
    responses(
        (status = 201, description = "Stored", body = Event),
        (status = 400, description = "Invalid body; `message` and `errors` name the field", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Idempotency-Key reused with a different body", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all)]
pub(crate) async fn create(
    State(events): State<Events>,
    _: Poster,
    caller: Caller,
    headers: HeaderMap,
    AppJson(body): AppJson<EventBody>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let event = NewEvent::parse(body)?;
    let Some(key) = key else {
        return Ok(created(events.writer.store(event).await?, false));
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
#[utoipa::path(get, path = "/api/events", tag = "events", operation_id = "events_list", security((), ("bearer" = []), ("admin_token" = [])), params(FilterParams, ListParams),
    responses(
        (status = 200, description = "A page of matching events", body = EventPage),
        (status = 400, description = "Invalid date, limit, order or cursor; `message` names it", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all)]
pub(crate) async fn list(
    State(events): State<Events>,
    reader: Reader,
    AppQuery(filter): AppQuery<FilterParams>,
    AppQuery(params): AppQuery<ListParams>,
) -> Result<Json<EventPage>, ApiError> {
    let query = ListQuery::parse(filter, params)?;
    record_read(
        &events,
        &reader,
        "events.read",
        &query.filter,
        serde_json::json!({}),
    )
    .await?;
    // One extra row tells whether another page follows.
    let rows = events.store.list(&query, query.limit + 1).await?;
    let (events, next_cursor) = studyhall_core::page::page(rows, query.limit as usize, |event| {
        super::query::Cursor {
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

/// The audit chain's head and its signed checkpoints and retention markers.
///
/// A checkpoint signs the chain hash at its position with the deployment's Ed25519 key
/// (`studyhall audit public-key`); `studyhall audit verify` checks them offline.
#[utoipa::path(get, path = "/api/events/checkpoints", tag = "events", operation_id = "events_checkpoints", security((), ("bearer" = []), ("admin_token" = [])), params(CheckpointParams),
    responses(
        (status = 200, description = "The head and a page of statements", body = CheckpointPage),
        (status = 400, description = "Invalid `after` or `limit`", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all)]
pub(crate) async fn checkpoints(
    State(events): State<Events>,
    _: Reader,
    AppQuery(params): AppQuery<CheckpointParams>,
) -> Result<Json<CheckpointPage>, ApiError> {
    use studyhall_log::store;
    let (after, limit) = params.parse()?;
    let db = events.store.db();
    // Read in this order while the sealer may chain and sign in between: the head read
    // after the checkpoints is never behind one of them (the chain only grows), and the
    // events not yet chained are counted after the head.
    let mut checkpoints =
        studyhall_log::statements::statements(&db, after, i64::MAX, i64::from(limit) + 1).await?;
    let head = store::head(&db).await?;
    let unchained = store::unchained(&db).await?;
    let next_after = (checkpoints.len() > limit as usize).then(|| {
        checkpoints.truncate(limit as usize);
        checkpoints.last().map(|statement| statement.position())
    });
    Ok(Json(CheckpointPage {
        head,
        unchained,
        public_key: events.public_key.clone(),
        checkpoints,
        next_after: next_after.flatten(),
    }))
}

/// Every matching event, streamed in chain order as NDJSON (default) or CSV.
///
/// Takes the list route's filters. Without filters the export includes the signed
/// checkpoints and retention markers, so the file verifies on its own
/// (`studyhall audit verify --file`). An interrupted download resumes with
/// `after` = the `position` of the last event received.
#[utoipa::path(get, path = "/api/events/export", tag = "events", operation_id = "events_export", security((), ("bearer" = []), ("admin_token" = [])), params(FilterParams, ExportParams),
    responses(
        (status = 200, description = "The export, streamed", content(
            (String = "application/x-ndjson"),
            (String = "text/csv"),
        )),
        (status = 400, description = "Invalid filter, format or `after`", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all)]
pub(crate) async fn export(
    State(events): State<Events>,
    reader: Reader,
    AppQuery(filter): AppQuery<FilterParams>,
    AppQuery(params): AppQuery<ExportParams>,
) -> Result<Response, ApiError> {
    let query = ExportQuery::parse(filter, params)?;
    let format = serde_json::json!({"format": query.format.extension(), "after": query.after});
    record_read(&events, &reader, "events.exported", &query.filter, format).await?;
    events.store.place_waiting().await?;
    Ok(studyhall_log::export::download(
        events.store.db(),
        query.filter,
        query.after,
        query.format,
    ))
}
