//! Operational routes: liveness, readiness, metrics and the OpenAPI document.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::db::Db;
use crate::error::{ApiError, Problem};
use crate::streams::RedisHandle;

/// What `/ready` checks.
#[derive(Clone, Debug)]
pub struct Readiness {
    pub db: Db,
    pub redis: Option<RedisHandle>,
}

pub fn router(readiness: Readiness, openapi: serde_json::Value) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .with_state(readiness)
        .route("/metrics", get(metrics))
        .route(
            "/openapi.json",
            get(move || async move { Json(openapi.clone()) }),
        )
}

/// Liveness: answers without touching any dependency.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "The process is up", body = Object, example = json!({"status": "healthy"}))))]
pub async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "healthy"}))
}

/// Readiness: the database, and Redis when configured, answer within 2 s.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses(
        (status = 200, description = "Every dependency answers", body = Object, example = json!({"status": "ready", "database": "ok", "redis": "ok"})),
        (status = 503, description = "A dependency does not answer; `detail` names it", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn ready(
    State(readiness): State<Readiness>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = Duration::from_secs(2);
    match tokio::time::timeout(limit, readiness.db.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => return Err(not_ready("database", &err)),
        Err(_) => return Err(not_ready("database", &"no answer within 2 s")),
    }
    let mut body = json!({"status": "ready", "database": "ok"});
    if let Some(redis) = &readiness.redis {
        match tokio::time::timeout(limit, redis.ping()).await {
            Ok(Ok(())) => body["redis"] = json!("ok"),
            Ok(Err(err)) => return Err(not_ready("redis", &err)),
            Err(_) => return Err(not_ready("redis", &"no answer within 2 s")),
        }
    }
    Ok(Json(body))
}

/// 503 naming the dependency (its error text goes to the log, not the client).
fn not_ready(dependency: &str, cause: &dyn std::fmt::Display) -> ApiError {
    tracing::warn!(dependency, error = %cause, "not ready");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("Not ready: {dependency} is unreachable."),
    )
}

/// Prometheus text exposition: `http_requests_total` and
/// `http_request_duration_seconds` by method, route and status.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn metrics() -> Response {
    let handle = super::telemetry::prometheus();
    handle.run_upkeep();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response()
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1 document", body = Object)))]
pub async fn openapi_document() {}
