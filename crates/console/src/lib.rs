//! The console: an operator web UI at `/console` for the queue, the event log, streams,
//! analytics and people, server-rendered HTML (`maud`) with htmx for partial updates;
//! every asset is embedded in the binary. Also the landing page at `/` and the API
//! reference at `/docs`.
//!
//! Access: off until `STUDYHALL_ADMIN_TOKEN` is set. An operator logs in with the admin
//! token, or with a bearer token whose groups name the operator or the reader group
//! (readers see everything and change nothing); the session is a cookie naming a row
//! of `console_sessions` (see [`session`]). Every change is a POST carrying the
//! session's form token, refused when it comes from another site; every response
//! carries a strict Content-Security-Policy (see [`secure`]).

#![warn(unreachable_pub)]

mod analytics;
mod docs;
mod overview;
mod session;

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use utoipa_axum::router::OpenApiRouter;

use studyhall_core::config::ConsoleSettings;
use studyhall_core::db::Db;
use studyhall_core::http::ops::Readiness;
use studyhall_jobs::Queue;
use studyhall_module::{self as module, Core, Definition, Module};

use studyhall_ui::{assets, chart, layout, Figure, Section, Sessions};
pub use studyhall_ui::{Failure, Role, Session};

/// The console's own pages that open the navigation, before the queue's and the
/// modules' pages.
const FIRST: [(&str, &str); 1] = [("/console", "Overview")];

/// The console's own pages that close the navigation, after the modules' pages.
const LAST: [(&str, &str); 1] = [("/console/analytics", "Analytics")];

pub const MODULE: Definition<ConsoleSettings> = Definition {
    name: "console",
    api: || module::document(OpenApiRouter::<()>::new()),
    aliases: &[],
    jobs: module::no_jobs,
    start,
};

/// What the console's own pages (login, the overview, analytics) read and change.
#[derive(Clone)]
pub struct Console {
    db: Db,
    queue: Queue,
    readiness: Readiness,
    settings: Arc<ConsoleSettings>,
    /// Logins and logouts are recorded (`STUDYHALL_AUDIT_MODULES` names `console`).
    audited: bool,
    refused_logins: Arc<studyhall_log::Throttled>,
    /// The modules' sections of the analytics page, and their figures on the overview.
    sections: Arc<Vec<Arc<dyn Section>>>,
    figures: Arc<Vec<Arc<dyn Figure>>>,
}

fn start(core: &Core, settings: &ConsoleSettings) -> anyhow::Result<Module> {
    let parts = core.console.take();
    let console = Console {
        db: core.db.clone(),
        queue: core.queue.clone(),
        // The overview pings the dependencies; whether the server drains is not its concern.
        readiness: Readiness {
            db: core.db.clone(),
            redis: core.redis.clone(),
            draining: Default::default(),
            notices: core.notices.clone(),
        },
        settings: Arc::new(settings.clone()),
        audited: core.audited.audits("console"),
        refused_logins: Arc::new(studyhall_log::Throttled::new(
            core.recorder.clone(),
            "studyhall.console",
            "console.login_refused",
        )),
        sections: Arc::new(parts.sections),
        figures: Arc::new(parts.figures),
    };
    let housekeeping = tokio::spawn(session::forget_expired(core.db.clone(), core.clock.clone()));
    // The queue's page first, then the modules' in the order they started.
    let mut pages = vec![studyhall_jobs::console::page(core.queue.clone())];
    pages.extend(parts.pages);
    let nav = FIRST
        .into_iter()
        .chain(pages.iter().map(|page| (page.path, page.title)))
        .chain(LAST)
        .collect();
    let sessions = Sessions(Arc::new(session::Stored {
        db: core.db.clone(),
        clock: core.clock.clone(),
        nav: Arc::new(nav),
    }));
    let routes = pages
        .into_iter()
        .fold(routes().with_state(console), |routes, page| {
            routes.merge(OpenApiRouter::from(page.routes))
        })
        .layer(axum::middleware::from_fn(secure))
        .layer(axum::Extension(sessions));
    Ok(Module::new(routes).with_housekeeping(housekeeping))
}

fn routes() -> OpenApiRouter<Console> {
    OpenApiRouter::new()
        .route("/", get(docs::landing))
        .route("/docs", get(docs::reference))
        .route("/console/assets/{file}", get(assets::serve))
        .route(
            "/console/login",
            get(session::login_page).post(session::login),
        )
        .route("/console/logout", post(session::logout))
        .route("/console", get(overview::page))
        .route("/console/overview/live", get(overview::live))
        .route("/console/analytics", get(analytics::page))
        .route("/console/{*rest}", get(layout::no_such_page))
}

/// The Content-Security-Policy of every console page: scripts, styles and images from
/// this origin only (no inline script or style anywhere), no framing, forms posting
/// back here only.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
    connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Refuses a state change sent from another site (the browser says so in
/// `Sec-Fetch-Site`, or its `Origin` is not this host), and gives every response the
/// security headers.
async fn secure(request: Request, next: Next) -> Response {
    let changes = !matches!(*request.method(), Method::GET | Method::HEAD);
    if changes && from_another_site(request.headers()) {
        return Failure::forbidden(
            "This form was sent from another site. Open the console here and send it again.",
        )
        .into_response();
    }
    let is_asset = request.uri().path().starts_with("/console/assets/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !is_asset {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Whether a request that changes something came from a page of another origin.
fn from_another_site(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return !matches!(site.as_bytes(), b"same-origin" | b"none");
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        // Not a browser's cross-site form (browsers send Origin with every POST); the
        // form token still has to match.
        return false;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|origin| origin.split_once("://"))
        .map(|(_, host)| host);
    match (origin_host, host) {
        (Some(origin), Some(host)) => !origin.eq_ignore_ascii_case(host),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn a_post_from_another_site_is_told_apart_from_one_from_the_console() {
        assert!(!from_another_site(&headers(&[(
            "sec-fetch-site",
            "same-origin"
        )])));
        assert!(from_another_site(&headers(&[(
            "sec-fetch-site",
            "cross-site"
        )])));
        assert!(from_another_site(&headers(&[(
            "sec-fetch-site",
            "same-site"
        )])));
        let host = ("host", "console.example:8080");
        assert!(!from_another_site(&headers(&[
            host,
            ("origin", "http://console.example:8080")
        ])));
        assert!(from_another_site(&headers(&[
            host,
            ("origin", "https://evil.example")
        ])));
        assert!(from_another_site(&headers(&[host, ("origin", "null")])));
        assert!(!from_another_site(&headers(&[host])));
    }
}
