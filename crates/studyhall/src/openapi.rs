//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use utoipa::openapi::OpenApi as Document;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "studyhall", description = "Activity events, learning-session stats, grade analytics, stream limits and social profiles in one service."),
    paths(crate::http::ops::health, crate::http::ops::ready, crate::http::ops::metrics, crate::http::ops::openapi_document),
    components(schemas(crate::error::Problem)),
    modifiers(&AdminToken),
    tags((name = "operations", description = "Health, readiness, metrics, this document"))
)]
struct Root;

pub fn document() -> Document {
    let mut doc = Root::openapi();
    doc.merge(crate::events::Api::openapi());
    doc.merge(crate::stats::Api::openapi());
    doc.merge(crate::streams::Api::openapi());
    doc.merge(crate::social::Api::openapi());
    doc.merge(crate::grades::Api::openapi());
    doc.merge(crate::jobs::Api::openapi());
    for (path, alias) in crate::events::ALIASES.iter().chain(crate::streams::ALIASES) {
        add_alias(&mut doc, path, alias);
    }
    doc
}

/// Lists `alias` as a second path for `path`, with operation ids kept unique.
fn add_alias(doc: &mut Document, path: &str, alias: &str) {
    let Some(item) = doc.paths.paths.get(path) else {
        return;
    };
    let mut item = item.clone();
    for operation in [
        &mut item.get,
        &mut item.post,
        &mut item.put,
        &mut item.delete,
        &mut item.patch,
    ]
    .into_iter()
    .flatten()
    {
        operation.operation_id = operation
            .operation_id
            .take()
            .map(|id| format!("{id}_alias"));
    }
    doc.paths.paths.insert(alias.to_owned(), item);
}

/// The admin routes' bearer token.
struct AdminToken;

impl utoipa::Modify for AdminToken {
    fn modify(&self, doc: &mut Document) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("STUDYHALL_ADMIN_TOKEN"))
                    .build(),
            ),
        );
    }
}
