//! The HTTP layer every module shares: router assembly, middleware, ops routes.

pub mod extract;
pub mod ops;
pub mod recent;
pub mod telemetry;

use axum::extract::DefaultBodyLimit;
use axum::http::{Request, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::error::{method_not_allowed, route_not_found, ApiError, Problem};

pub const BODY_LIMIT: usize = 1024 * 1024;

/// Cross-origin access for browser clients from `origins` (`*`: any), or none.
fn cors(origins: &[String]) -> Option<CorsLayer> {
    use axum::http::{header, HeaderName, HeaderValue, Method};
    if origins.is_empty() {
        return None;
    }
    let allowed = if origins.iter().any(|origin| origin == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|origin| HeaderValue::from_str(origin).ok()),
        )
    };
    Some(
        CorsLayer::new()
            .allow_origin(allowed)
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("idempotency-key"),
                HeaderName::from_static("x-user-id"),
                HeaderName::from_static("x-request-id"),
            ])
            .expose_headers([
                header::LOCATION,
                header::RETRY_AFTER,
                HeaderName::from_static("x-request-id"),
                HeaderName::from_static("idempotent-replayed"),
            ])
            .max_age(std::time::Duration::from_secs(3600)),
    )
}

/// Refuses a URL holding a NUL character (`%00`) in its path or query, once for every
/// route: no parameter accepts one, and PostgreSQL can neither store nor compare it.
async fn refuse_nul(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let uri = request.uri();
    let nul = |text: &str| text.contains("%00");
    if nul(uri.path()) || uri.query().is_some_and(nul) {
        // Every route family's clients find the reason where they look for it: `detail`
        // and `message` (user-api, activity_service), `errors` (Seneca), `error`
        // (ClassConnect).
        let detail = "The URL holds a NUL character (%00), which no parameter accepts.";
        let errors = serde_json::json!([detail]);
        let mut problem = Problem::new(StatusCode::BAD_REQUEST, detail.into(), Some(errors));
        problem.error = Some(detail.into());
        return problem.into_response_with(StatusCode::BAD_REQUEST);
    }
    next.run(request).await
}

/// While the server drains, every response closes its connection.
async fn close_while_draining(
    axum::extract::State(draining): axum::extract::State<ops::Draining>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let mut response = next.run(request).await;
    if draining.is_draining() {
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    response
}

/// Wraps the merged module routers in the shared middleware.
pub fn finish(router: Router, cors_origins: &[String], draining: ops::Draining) -> Router {
    let router = router
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
                .layer(axum::middleware::from_fn(refuse_nul))
                .layer(axum::middleware::from_fn_with_state(draining, close_while_draining))
                .layer(DefaultBodyLimit::max(BODY_LIMIT)),
        );
    // Outermost, so that preflights and every answer (errors included) carry it.
    match cors(cors_origins) {
        Some(layer) => router.layer(layer),
        None => router,
    }
}

/// The OpenAPI document of `routes`: a module's API, the operator routes.
pub fn document<S: Clone + Send + Sync + 'static>(
    routes: utoipa_axum::router::OpenApiRouter<S>,
) -> utoipa::openapi::OpenApi {
    routes.split_for_parts().1
}
