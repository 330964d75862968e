//! Operational routes: liveness, readiness, metrics and the OpenAPI document.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::db::Db;
use crate::error::{ApiError, Problem};
use crate::redis_handle::RedisHandle;

/// What `/ready` checks.
#[derive(Clone, Debug)]
pub struct Readiness {
    pub db: Db,
    pub redis: Option<RedisHandle>,
    pub draining: Draining,
    pub notices: Notices,
}

/// What a part of the server wants an operator to see on `/ready` without taking the
/// instance out of service (e.g. the audit log refusing to sign): by subject.
#[derive(Clone, Debug, Default)]
pub struct Notices(Arc<std::sync::RwLock<std::collections::BTreeMap<&'static str, String>>>);

impl Notices {
    pub fn set(&self, subject: &'static str, notice: String) {
        if let Ok(mut notices) = self.0.write() {
            notices.insert(subject, notice);
        }
    }

    pub fn clear(&self, subject: &'static str) {
        if let Ok(mut notices) = self.0.write() {
            notices.remove(subject);
        }
    }

    fn all(&self) -> std::collections::BTreeMap<&'static str, String> {
        self.0
            .read()
            .map(|notices| notices.clone())
            .unwrap_or_default()
    }
}

/// Whether the server is draining before it stops: `/ready` then fails at once, so the
/// load balancer stops sending, and every response closes its connection, so clients
/// open their next one elsewhere; requests are still answered until the drain ends.
#[derive(Clone, Debug, Default)]
pub struct Draining(Arc<std::sync::atomic::AtomicBool>);

impl Draining {
    pub fn is_draining(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Starts draining and returns after `period`.
    pub async fn drain_for(&self, period: Duration) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(
            seconds = period.as_secs_f64(),
            "draining: /ready fails, connections close after each response"
        );
        tokio::time::sleep(period).await;
    }
}

/// The operations routes, documented; `/openapi.json` answers the document a
/// [`document_route`] layer gives it.
pub fn routes(readiness: Readiness) -> OpenApiRouter {
    super::recent::answered_by("operations", api_routes().with_state(readiness))
}

fn api_routes() -> OpenApiRouter<Readiness> {
    OpenApiRouter::default()
        .routes(routes!(ready))
        .routes(routes!(health))
        .routes(routes!(metrics))
        .routes(routes!(openapi_document))
}

/// The operations routes' document.
pub fn api() -> utoipa::openapi::OpenApi {
    crate::http::document(api_routes())
}

/// Gives `/openapi.json` the finished document.
pub fn document_route(document: serde_json::Value) -> axum::Extension<Arc<serde_json::Value>> {
    axum::Extension(Arc::new(document))
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
        (status = 200, description = "Every dependency answers; `notices` says what an operator should look at (e.g. the audit log refusing to sign)", body = Object, example = json!({"status": "ready", "database": "ok", "redis": "ok"})),
        (status = 503, description = "A dependency does not answer (`detail` names it), or the server is draining before it stops", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn ready(
    State(readiness): State<Readiness>,
) -> Result<Json<serde_json::Value>, ApiError> {
    if readiness.draining.is_draining() {
        return Err(ApiError::Unavailable {
            detail: "Not ready: shutting down.".into(),
            cause: anyhow::anyhow!("draining before shutdown"),
        });
    }
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
    let notices = readiness.notices.all();
    if !notices.is_empty() {
        body["notices"] = json!(notices);
    }
    Ok(Json(body))
}

/// 503 naming the dependency (its error text goes to the log, not the client).
fn not_ready(dependency: &str, cause: &dyn std::fmt::Display) -> ApiError {
    ApiError::Unavailable {
        detail: format!("Not ready: {dependency} is unreachable."),
        cause: anyhow::anyhow!("{dependency}: {cause}"),
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
pub async fn openapi_document(
    axum::Extension(document): axum::Extension<Arc<serde_json::Value>>,
) -> Json<serde_json::Value> {
    Json(document.as_ref().clone())
}
