use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::model::{self, Beat, LimitBody, Started, StreamList, StreamResponse};
use super::Streams;
use studyhall_auth::{Admin, Caller};
use studyhall_core::config::StreamPolicy;
use studyhall_core::error::{ApiError, Problem};
use studyhall_core::http::extract::{AppBody, AppJson};
use studyhall_log::Actor;

fn counted(stream: &model::Stream, counts: model::Counts) -> Json<StreamResponse> {
    Json(StreamResponse {
        stream: stream.to_json(),
        active_streams: Some(counts.active),
        limit: Some(counts.limit),
        replaced_streams: None,
        dry_run: None,
    })
}

/// Start watching a stream (or, with `video_ended: true` and `stream_id`, stop).
///
/// Starting a `stream_id` that is already active for this viewer renews its lease and
/// counts once.
#[utoipa::path(post, path = "/api/v1/streams", tag = "streams", operation_id = "streams_start", security((), ("bearer" = [])),
    params(
        ("X-User-Id" = Option<String>, Header, pattern = "^(?=.*\\S)[^\\u0000-\\u001F\\u007F-\\u009F]{1,128}$", description = "The viewer (trusted gateway header)"),
        ("X-Forwarded-For" = Option<String>, Header, description = "The viewer's address when there is no user (first entry)"),
        ("X-Device-Id" = Option<String>, Header, pattern = "^[\\x21-\\x2E\\x30-\\x5B\\x5D-\\x7E]{1,128}$", description = "The device the stream plays on, as the body's `device_id`: a device's new stream replaces its active one"),
    ),
    request_body(content = Object, description = "Optional: `stream_id`, `device_id` and `replace` (≤ 128 printable ASCII characters, no spaces or slashes; a device's new stream replaces the device's active one; `replace` names an active stream to end in the same step) and the seed's metadata fields `video_name, codec_info, file_type, size, src, framerate, video_ended, video_playing, video_start_time, video_end_time`"),
    responses(
        (status = 201, description = "Started (or renewed); `replaced_streams` names the streams ended to make room: the device's own active stream, or under `kick_oldest` at the limit the oldest", body = StreamResponse),
        (status = 200, description = "Ended (`video_ended: true`)", body = StreamResponse),
        (status = 400, description = "Bad body, id or no viewer identity", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`video_ended` for a stream that is not active", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Limit reached under `ask`: `streams` lists the active streams, each with `end` (the request that ends it) and `replace` (the body field that ends it and starts this one at once)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Limit reached; `Retry-After` is the seconds until the earliest lease expires", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The lease store is unreachable; nothing was started", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all)]
pub(crate) async fn start(
    State(streams): State<Streams>,
    caller: Caller,
    headers: axum::http::HeaderMap,
    AppBody(body): AppBody,
) -> Result<Response, ApiError> {
    let viewer = model::viewer(&caller)?;
    let device = headers.get("x-device-id").map(|value| value.as_bytes());
    let request = model::start_request(&body, device)?;
    if request.ends {
        let id = request.stream_id.as_deref().unwrap_or_default();
        return match streams.store.end(&viewer, id).await? {
            Some((stream, counts)) => {
                metrics::counter!("stream_ends_total").increment(1);
                Ok(counted(&stream, counts).into_response())
            }
            None => Err(not_active()),
        };
    }
    match streams.store.start(&viewer, &request).await? {
        Started::Created(stream, counts) => {
            metrics::counter!("stream_starts_total", "outcome" => "allowed").increment(1);
            Ok((StatusCode::CREATED, counted(&stream, counts)).into_response())
        }
        Started::Replacing(stream, counts, ended) => {
            let outcome = if ended.iter().any(|old| old.why == model::Why::Oldest) {
                "kicked_oldest"
            } else {
                "replaced"
            };
            metrics::counter!("stream_starts_total", "outcome" => outcome).increment(1);
            let mut body = counted(&stream, counts);
            body.replaced_streams = Some(ended.into_iter().map(|old| old.stream.id).collect());
            Ok((StatusCode::CREATED, body).into_response())
        }
        Started::OverLimit(stream, counts, ended, would) => {
            metrics::counter!("stream_dry_run_total", "would" => would.name()).increment(1);
            let mut body = counted(&stream, counts);
            if !ended.is_empty() {
                body.replaced_streams = Some(ended.into_iter().map(|old| old.stream.id).collect());
            }
            body.dry_run = Some(json!({"would": would.name(), "would_end": would.ends()}));
            Ok((StatusCode::CREATED, body).into_response())
        }
        Started::Renewed(stream, counts) => {
            metrics::counter!("stream_starts_total", "outcome" => "renewed").increment(1);
            Ok((StatusCode::CREATED, counted(&stream, counts)).into_response())
        }
        Started::Refused {
            counts,
            retry_after_us,
        } => {
            if streams.store.policy().on_limit == StreamPolicy::Ask {
                metrics::counter!("stream_starts_total", "outcome" => "asked").increment(1);
                let (active, counts) = streams.store.list(&viewer).await?;
                return Ok(ask(&active, counts));
            }
            metrics::counter!("stream_starts_total", "outcome" => "refused").increment(1);
            Ok(limit_reached(counts, retry_after_us))
        }
    }
}

fn limit_reached(counts: model::Counts, retry_after_us: i64) -> Response {
    let retry_after = ((retry_after_us + 999_999) / 1_000_000).max(1);
    let mut problem = Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!("This viewer is already watching {} of {} allowed streams; end one or retry in {retry_after} s.", counts.active, counts.limit),
        None,
    );
    problem
        .extra
        .insert("active_streams".into(), json!(counts.active));
    problem.extra.insert("limit".into(), json!(counts.limit));
    let mut response = problem.into_response_with(StatusCode::TOO_MANY_REQUESTS);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    response
}

/// 409 under `ask`: the active streams, each with how to end it, so the application
/// can ask the viewer which one to stop.
fn ask(active: &[model::Stream], counts: model::Counts) -> Response {
    let mut problem = Problem::new(
        StatusCode::CONFLICT,
        format!(
            "This viewer is already watching {} of {} allowed streams. Choose one to stop: end it (DELETE its href) and start again, or start again with \"replace\": its id to do both at once.",
            counts.active, counts.limit
        ),
        None,
    );
    let streams: Vec<serde_json::Value> = active
        .iter()
        .map(|stream| {
            let mut listed = stream.to_json();
            if let Some(fields) = listed.as_object_mut() {
                let href = format!("/api/v1/streams/{}", stream.id);
                fields.insert("end".into(), json!({"method": "DELETE", "href": href}));
                fields.insert("replace".into(), json!({"replace": stream.id}));
            }
            listed
        })
        .collect();
    problem
        .extra
        .insert("active_streams".into(), json!(counts.active));
    problem.extra.insert("limit".into(), json!(counts.limit));
    problem.extra.insert("streams".into(), json!(streams));
    problem.into_response_with(StatusCode::CONFLICT)
}

fn not_active() -> ApiError {
    ApiError::not_found("No active stream with this id for this viewer; start it again.")
}

/// The viewer's active streams, oldest first.
#[utoipa::path(get, path = "/api/v1/streams", tag = "streams", operation_id = "streams_list", security((), ("bearer" = [])),
    params(
        ("X-User-Id" = Option<String>, Header, pattern = "^(?=.*\\S)[^\\u0000-\\u001F\\u007F-\\u009F]{1,128}$", description = "The viewer (trusted gateway header)"),
        ("X-Forwarded-For" = Option<String>, Header, description = "The viewer's address when there is no user (first entry)"),
    ),
    responses(
        (status = 200, description = "Active streams", body = StreamList),
        (status = 400, description = "No viewer identity", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The lease store is unreachable", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all)]
pub(crate) async fn list(
    State(streams): State<Streams>,
    caller: Caller,
) -> Result<Json<StreamList>, ApiError> {
    let viewer = model::viewer(&caller)?;
    let (active, counts) = streams.store.list(&viewer).await?;
    Ok(Json(StreamList {
        streams: active.iter().map(model::Stream::to_json).collect(),
        active_streams: counts.active,
        limit: counts.limit,
        policy: streams.store.policy().on_limit.name(),
    }))
}

/// Renew a stream's lease.
#[utoipa::path(post, path = "/api/v1/streams/{id}/heartbeat", tag = "streams", operation_id = "streams_heartbeat", security((), ("bearer" = [])),
    params(("id" = String, Path, pattern = "^[\\x21-\\x2E\\x30-\\x5B\\x5D-\\x7E]{1,128}$", description = "The stream id")),
    responses(
        (status = 200, description = "Renewed", body = StreamResponse),
        (status = 400, description = "Bad id or no viewer identity", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Expired, ended or unknown: start it again", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "Ended to admit a newer stream of this viewer (its device's, or any under `kick_oldest`): stop playing; `ended_at` and `replaced_by` (`stream`, `device`) say when and by which", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all, fields(id = %id))]
pub(crate) async fn heartbeat(
    State(streams): State<Streams>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let viewer = model::viewer(&caller)?;
    let id = model::stream_id(&id)?;
    match streams.store.heartbeat(&viewer, &id).await? {
        Beat::Renewed(stream) => Ok(Json(StreamResponse {
            stream: stream.to_json(),
            active_streams: None,
            limit: None,
            replaced_streams: None,
            dry_run: None,
        })
        .into_response()),
        Beat::Replaced(replacement) => Ok(replaced(&replacement)),
        Beat::NotActive => Err(not_active()),
    }
}

/// 410: the stream was ended to admit a newer one, so the player should stop.
fn replaced(replacement: &model::Replacement) -> Response {
    let at = replacement.at.rfc3339_millis();
    let mut problem = Problem::new(
        StatusCode::GONE,
        format!(
            "This stream was ended at {at}: replaced by a newer stream of this viewer ({}{}). Stop playing; starting it again takes a slot.",
            replacement.by,
            replacement
                .device
                .as_ref()
                .map_or(String::new(), |device| format!(" on device {device}"))
        ),
        None,
    );
    problem.extra.insert("ended_at".into(), json!(at));
    problem.extra.insert(
        "replaced_by".into(),
        json!({"stream": replacement.by, "device": replacement.device}),
    );
    problem.into_response_with(StatusCode::GONE)
}

/// End a stream; its slot is free at once.
#[utoipa::path(delete, path = "/api/v1/streams/{id}", tag = "streams", operation_id = "streams_end", security((), ("bearer" = [])),
    params(("id" = String, Path, pattern = "^[\\x21-\\x2E\\x30-\\x5B\\x5D-\\x7E]{1,128}$", description = "The stream id")),
    responses(
        (status = 204, description = "Ended"),
        (status = 400, description = "Bad id or no viewer identity", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not an active stream of this viewer", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all, fields(id = %id))]
pub(crate) async fn end(
    State(streams): State<Streams>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let viewer = model::viewer(&caller)?;
    let id = model::stream_id(&id)?;
    match streams.store.end(&viewer, &id).await? {
        Some(_) => {
            metrics::counter!("stream_ends_total").increment(1);
            Ok(StatusCode::NO_CONTENT)
        }
        None => Err(not_active()),
    }
}

/// Set a viewer's concurrent-stream limit (admin token).
#[utoipa::path(put, path = "/api/v1/viewers/{viewer}/limit", tag = "streams", operation_id = "streams_set_limit",
    params(("viewer" = String, Path, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]{1,132}$", description = "The viewer: a user id (`alice`), or as streams show it (`user:alice`, `ip:203.0.113.7`)")),
    request_body = LimitBody,
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Set", body = Object, example = json!({"viewer": "user:alice", "limit": 5})),
        (status = 400, description = "Not a viewer, or the limit is not an integer from 1 to 1000", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No admin token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Wrong admin token, or the admin API is disabled", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all, fields(viewer = %viewer))]
pub(crate) async fn set_limit(
    State(streams): State<Streams>,
    _admin: Admin,
    Path(viewer): Path<String>,
    AppJson(body): AppJson<LimitBody>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let viewer = model::named_viewer(&viewer)?;
    if !(1..=1000).contains(&body.limit) {
        return Err(ApiError::bad_request(
            "limit must be an integer from 1 to 1000.",
        ));
    }
    streams
        .store
        .set_limit(&viewer, Some(body.limit), Actor::operator())
        .await?;
    Ok(Json(json!({"viewer": viewer, "limit": body.limit})))
}

/// Reset a viewer's limit to the default (admin token).
#[utoipa::path(delete, path = "/api/v1/viewers/{viewer}/limit", tag = "streams", operation_id = "streams_reset_limit",
    params(("viewer" = String, Path, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]{1,132}$", description = "The viewer: a user id (`alice`), or as streams show it (`user:alice`, `ip:203.0.113.7`)")),
    security(("admin_token" = [])),
    responses(
        (status = 204, description = "Reset"),
        (status = 401, description = "No admin token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Wrong admin token, or the admin API is disabled", body = Problem, content_type = "application/problem+json"),
    ))]
#[tracing::instrument(skip_all, fields(viewer = %viewer))]
pub(crate) async fn reset_limit(
    State(streams): State<Streams>,
    _admin: Admin,
    Path(viewer): Path<String>,
) -> Result<StatusCode, ApiError> {
    let viewer = model::named_viewer(&viewer)?;
    streams
        .store
        .set_limit(&viewer, None, Actor::operator())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
