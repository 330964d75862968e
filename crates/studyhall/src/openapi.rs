//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::schema::{Schema, SchemaType, Type};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, RefOr, Response, ResponseBuilder};
use utoipa::OpenApi;

use crate::jobs::Handlers;
use crate::module::Plugin;

#[derive(OpenApi)]
#[openapi(
    info(title = "studyhall", description = "Activity events, learning-session stats, grade analytics, stream limits and social profiles in one service."),
    components(schemas(crate::error::Problem)),
    modifiers(&AdminToken),
    tags((name = "operations", description = "Health, readiness, metrics, this document"))
)]
struct Root;

/// The document of everything `plugins` serve, with the operations routes (and the job
/// queue's when a plugin registers a job kind), without starting anything.
pub fn document<'a>(plugins: impl IntoIterator<Item = &'a Plugin>) -> Document {
    let mut paths = crate::http::ops::api();
    let mut handlers = Handlers::default();
    let mut aliases = Vec::new();
    for plugin in plugins {
        paths.merge((plugin.api)());
        (plugin.jobs)(&mut handlers);
        aliases.extend_from_slice(plugin.aliases);
    }
    if !handlers.is_empty() {
        paths.merge(crate::jobs::api());
    }
    finish(paths, &aliases)
}

/// The served document: the routes' own paths, under studyhall's title and shared
/// components, with each alias listed and the statuses whole kinds of routes answer.
pub fn finish(paths: Document, aliases: &[(&str, &str)]) -> Document {
    let mut doc = Root::openapi();
    doc.merge(paths);
    for (path, alias) in aliases {
        add_alias(&mut doc, path, alias);
    }
    add_common_responses(&mut doc);
    for item in doc.paths.paths.values_mut() {
        for operation in operations_mut(item) {
            for parameter in operation.parameters.iter_mut().flatten() {
                not_null(&mut parameter.schema);
            }
        }
    }
    doc
}

/// An optional parameter is one that may be left out; sent, it must hold a value (an
/// empty `?limit=` is refused), so its schema does not admit null.
fn not_null(schema: &mut Option<RefOr<Schema>>) {
    let Some(RefOr::T(Schema::Object(object))) = schema else {
        return;
    };
    if let SchemaType::Array(types) = &object.schema_type {
        let types: Vec<Type> = types
            .iter()
            .filter(|t| **t != Type::Null)
            .cloned()
            .collect();
        object.schema_type = match types.as_slice() {
            [one] => SchemaType::Type(one.clone()),
            _ => SchemaType::Array(types),
        };
    }
}

fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.post,
        &mut item.put,
        &mut item.delete,
        &mut item.patch,
    ]
    .into_iter()
    .flatten()
}

/// The routes that answer without the database or Redis: the only ones that never
/// answer 503.
const WITHOUT_DEPENDENCIES: [&str; 8] = [
    "/health",
    "/api/health",
    "/api/healthz",
    "/stats/health",
    "/ping",
    "/metrics",
    "/openapi.json",
    "/domains/share/warnings",
];

/// Statuses that whole kinds of routes answer, added where a handler's annotation does
/// not list them: 400 wherever there is input to refuse, 401 wherever a token is read,
/// 403 where a token and `X-User-Id` can disagree, 413 for a body over 1 MiB, and 503
/// wherever the database (or Redis) is read or written, while it does not answer.
fn add_common_responses(doc: &mut Document) {
    for (path, item) in doc.paths.paths.iter_mut() {
        let uses_dependencies = !WITHOUT_DEPENDENCIES.contains(&path.as_str());
        for operation in operations_mut(item) {
            let parameters = operation.parameters.as_deref().unwrap_or_default();
            let header_identity = parameters
                .iter()
                .any(|p| p.name.eq_ignore_ascii_case("x-user-id"));
            let has_input = !parameters.is_empty() || operation.request_body.is_some();
            let reads_token = operation.security.is_some() || header_identity;
            let common = [
                (
                    has_input,
                    "400",
                    "The request is malformed; `detail` says how",
                ),
                (
                    reads_token,
                    "401",
                    "The bearer token is missing or does not verify",
                ),
                (
                    header_identity,
                    "403",
                    "The token's user and the `X-User-Id` header disagree",
                ),
                (
                    operation.request_body.is_some(),
                    "413",
                    "The body is over 1 MiB",
                ),
                (
                    uses_dependencies,
                    "503",
                    "The database (or Redis) does not answer; retry later",
                ),
            ];
            for (applies, status, description) in common {
                if applies && !operation.responses.responses.contains_key(status) {
                    operation
                        .responses
                        .responses
                        .insert(status.to_owned(), problem_response(description));
                }
            }
        }
    }
}

fn problem_response(description: &str) -> RefOr<Response> {
    let content = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("Problem")))
        .build();
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content("application/problem+json", content)
            .build(),
    )
}

/// Lists `alias` as a second path for `path`, with operation ids kept unique.
fn add_alias(doc: &mut Document, path: &str, alias: &str) {
    let Some(item) = doc.paths.paths.get(path) else {
        return;
    };
    let mut item = item.clone();
    for operation in operations_mut(&mut item) {
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
