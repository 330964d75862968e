//! The HTTP layer every module shares: router assembly, middleware, ops routes.

pub mod extract;
pub mod ops;
pub mod telemetry;

use axum::extract::DefaultBodyLimit;
use axum::http::Request;
use axum::response::IntoResponse;
use axum::Router;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::error::{method_not_allowed, route_not_found, ApiError};

pub const BODY_LIMIT: usize = 1024 * 1024;

/// Wraps the merged module routers in the shared middleware.
pub fn finish(router: Router) -> Router {
    router
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(|request: &Request<_>| {
                            let request_id = request
                                .headers()
                                .get("x-request-id")
                                .and_then(|id| id.to_str().ok())
                                .unwrap_or_default();
                            tracing::info_span!("request", method = %request.method(), uri = %request.uri(), request_id)
                        })
                        // One line per request, when asked (`RUST_LOG=studyhall=debug`):
                        // 5xx at error, everything else at debug; the latency a number.
                        .on_request(())
                        .on_failure(())
                        .on_response(
                            |response: &axum::http::Response<_>,
                             latency: std::time::Duration,
                             _: &tracing::Span| {
                                let status = response.status().as_u16();
                                let latency_ms = latency.as_secs_f64() * 1000.0;
                                if status >= 500 {
                                    tracing::error!(status, latency_ms, "request failed");
                                } else {
                                    tracing::debug!(status, latency_ms, "request finished");
                                }
                            },
                        ),
                )
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(CatchPanicLayer::custom(|_| {
                    ApiError::Internal(anyhow::anyhow!("request handler panicked")).into_response()
                }))
                .layer(axum::middleware::from_fn(telemetry::track_requests))
                .layer(DefaultBodyLimit::max(BODY_LIMIT)),
        )
}
