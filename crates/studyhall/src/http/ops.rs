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

pub fn router(db: Db, openapi: serde_json::Value) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .with_state(db)
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

/// Readiness: the database answers a query within 2 s.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses(
        (status = 200, description = "Every dependency answers", body = Object, example = json!({"status": "ready", "database": "ok"})),
        (status = 503, description = "A dependency does not answer", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn ready(State(db): State<Db>) -> Result<Json<serde_json::Value>, ApiError> {
    match tokio::time::timeout(Duration::from_secs(2), db.ping()).await {
        Ok(Ok(())) => Ok(Json(json!({"status": "ready", "database": "ok"}))),
        Ok(Err(err)) => Err(ApiError::Unavailable(
            anyhow::anyhow!(err).context("database ping"),
        )),
        Err(_) => Err(ApiError::Unavailable(anyhow::anyhow!(
            "database ping timed out"
        ))),
    }
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
