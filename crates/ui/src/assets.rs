//! The console's files, embedded in the binary: its stylesheet, its icon, and htmx
//! (2.0.11, vendored with its licence in `assets/console/`).

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

const FILES: [(&str, &str, &[u8]); 3] = [
    (
        "console.css",
        "text/css; charset=utf-8",
        include_bytes!("../assets/console/console.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../assets/console/favicon.svg"),
    ),
    (
        "htmx.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../assets/console/htmx.min.js"),
    ),
];

/// The address of an embedded file, with the build's version so a new build's files
/// are fetched anew.
pub fn url(name: &str) -> String {
    format!("/console/assets/{name}?v={}", env!("CARGO_PKG_VERSION"))
}

pub async fn serve(Path(file): Path<String>) -> Response {
    match FILES.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, body)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "public, max-age=86400"),
            ],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "No such file.").into_response(),
    }
}
