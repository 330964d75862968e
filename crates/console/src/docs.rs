//! The start page at `/` and the API reference at `/docs`: the OpenAPI document
//! rendered on the server as one page (no script), grouped by tag, with every
//! operation's parameters, body, responses and security, and every schema.

use std::sync::Arc;

use axum::extract::Query;
use axum::Extension;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::Value;

use super::layout;

pub(crate) async fn landing(Extension(auth): Extension<Arc<studyhall_auth::Auth>>) -> Markup {
    layout::bare(
        "studyhall",
        html! {
            main.login.landing {
                h1 { "studyhall" }
                p { "Activity events, learning-session stats, grade analytics, stream limits and social profiles, from one service." }
                ul {
                    li { a href="/console" { "Console" } " — the operators' web UI"
                        @if !auth.admin_configured() { " (off until STUDYHALL_ADMIN_TOKEN is set)" } }
                    li { a href="/docs" { "API reference" } " — every route, for people" }
                    li { a href="/openapi.json" { "OpenAPI document" } " — the same, for tools" }
                    li { a href="/health" { "/health" } " — is the process up" }
                    li { a href="/ready" { "/ready" } " — do its database and Redis answer" }
                }
            }
        },
    )
}

/// `path` with a line-break opportunity after each `/`, so a long path wraps between
/// its segments rather than inside one.
fn breakable(path: &str) -> Markup {
    html! {
        @for (n, segment) in path.split('/').enumerate() {
            @if n > 0 { "/" wbr; }
            (segment)
        }
    }
}

/// The reference's search: a text its operations are narrowed to.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Search {
    q: Option<String>,
}

pub(crate) async fn reference(
    Extension(document): Extension<Arc<Value>>,
    Query(search): Query<Search>,
) -> Markup {
    let title = document["info"]["title"].as_str().unwrap_or("API");
    let version = document["info"]["version"].as_str().unwrap_or("");
    let wanted = search
        .q
        .as_deref()
        .map(str::trim)
        .filter(|text| !text.is_empty())
        .map(str::to_lowercase);
    let mut operations = operations(&document);
    if let Some(wanted) = &wanted {
        operations.retain(|operation| operation.mentions(wanted));
    }
    let mut tags: Vec<(String, String)> = document["tags"]
        .as_array()
        .map(|tags| {
            tags.iter()
                .map(|tag| {
                    let name = tag["name"].as_str().unwrap_or("").to_owned();
                    let description = tag["description"].as_str().unwrap_or("").to_owned();
                    (name, description)
                })
                .collect()
        })
        .unwrap_or_default();
    for operation in &operations {
        if !tags.iter().any(|(name, _)| *name == operation.tag) {
            tags.push((operation.tag.clone(), String::new()));
        }
    }
    if wanted.is_some() {
        tags.retain(|(name, _)| operations.iter().any(|operation| operation.tag == *name));
    }
    let schemas = document["components"]["schemas"].as_object();
    layout::bare(
        "API reference",
        html! {
            main.docs {
                h1 { (title) " " span.muted { (version) } }
                p { "The machine-readable document is at " a href="/openapi.json" { "/openapi.json" } ". "
                    a href="/" { "Start page" } " · " a href="/console" { "Console" } }
                form.filters method="get" action="/docs" role="search" {
                    label { "Routes mentioning" input type="search" name="q" value=[wanted.as_deref()] placeholder="a path, a tag, a word of a summary"; }
                    button type="submit" { "Search" }
                    @if wanted.is_some() { a href="/docs" { "Every route" } }
                }
                @if wanted.is_some() && operations.is_empty() {
                    p.muted { "No route mentions that." }
                }
                nav.toc aria-label="Operations" {
                    @for (tag, _) in &tags {
                        h2 { a href={"#tag-" (tag)} { (tag) } }
                        ul {
                            @for operation in operations.iter().filter(|op| op.tag == *tag) {
                                li { a href={"#" (operation.anchor)} { span class={"method " (operation.method)} { (operation.method) } " " span { (breakable(operation.path)) } } }
                            }
                        }
                    }
                }
                @for (tag, description) in &tags {
                    section.card id={"tag-" (tag)} {
                        h2 { (tag) }
                        @if !description.is_empty() { p { (description) } }
                        @for operation in operations.iter().filter(|op| op.tag == *tag) {
                            (operation_section(operation))
                        }
                    }
                }
                @if let Some(schemas) = schemas {
                    section.card #schemas {
                        h2 { "Schemas" }
                        @for (name, schema) in schemas {
                            div.op id={"schema-" (name)} {
                                h3 { (name) }
                                (schema_view(schema))
                            }
                        }
                    }
                }
            }
        },
    )
}

struct Operation<'a> {
    tag: String,
    method: &'static str,
    path: &'a str,
    anchor: String,
    body: &'a Value,
}

impl Operation<'_> {
    /// Whether its method, path, tag, summary or description mention `wanted` (lowercase).
    fn mentions(&self, wanted: &str) -> bool {
        let text = |value: &Value| value.as_str().unwrap_or("").to_lowercase();
        [
            self.method.to_owned(),
            self.path.to_lowercase(),
            self.tag.to_lowercase(),
            text(&self.body["summary"]),
            text(&self.body["description"]),
        ]
        .iter()
        .any(|field| field.contains(wanted))
    }
}

fn operations(document: &Value) -> Vec<Operation<'_>> {
    let mut operations = Vec::new();
    let Some(paths) = document["paths"].as_object() else {
        return operations;
    };
    for (path, item) in paths {
        for method in ["get", "post", "put", "patch", "delete"] {
            let body = &item[method];
            if body.is_null() {
                continue;
            }
            let tag = body["tags"][0].as_str().unwrap_or("other").to_owned();
            let anchor = body["operationId"]
                .as_str()
                .map_or_else(|| format!("{method}-{path}"), str::to_owned);
            operations.push(Operation {
                tag,
                method,
                path,
                anchor,
                body,
            });
        }
    }
    operations
}

fn operation_section(operation: &Operation<'_>) -> Markup {
    let body = operation.body;
    let parameters = body["parameters"].as_array();
    let security = body["security"]
        .as_array()
        .filter(|security| !security.is_empty());
    html! {
        div.op id=(operation.anchor) {
            h3 { span class={"method " (operation.method)} { (operation.method) } " " code { (operation.path) } }
            @if let Some(summary) = body["summary"].as_str() { p { strong { (summary) } } }
            @if let Some(description) = body["description"].as_str() { p { (description) } }
            @if let Some(security) = security {
                p { "Authorization: "
                    @for (index, scheme) in security.iter().enumerate() {
                        @if index > 0 { " or " }
                        @for (name, _) in scheme.as_object().into_iter().flatten() { code { (name) } }
                    }
                }
            }
            @if let Some(parameters) = parameters {
                table {
                    thead { tr { th { "Parameter" } th { "In" } th { "Type" } th { "Description" } } }
                    tbody {
                        @for parameter in parameters {
                            tr {
                                td { code { (parameter["name"].as_str().unwrap_or("")) }
                                     @if parameter["required"].as_bool() == Some(true) { " " span.badge { "required" } } }
                                td { (parameter["in"].as_str().unwrap_or("")) }
                                td { (type_of(&parameter["schema"])) }
                                td { (parameter["description"].as_str().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
            @if let Some(content) = body["requestBody"]["content"].as_object() {
                p { "Body: "
                    @for (media, value) in content { code { (media) } " " (type_of(&value["schema"])) " " }
                }
            }
            @if let Some(responses) = body["responses"].as_object() {
                ul {
                    @for (status, response) in responses {
                        li {
                            strong { (status) } " " (response["description"].as_str().unwrap_or(""))
                            @if let Some(content) = response["content"].as_object() {
                                @for (media, value) in content { " · " code { (media) } " " (type_of(&value["schema"])) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A schema in a few words, a link for a named one.
fn type_of(schema: &Value) -> Markup {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap_or(reference);
        return html! { a href={"#schema-" (name)} { (name) } };
    }
    if let Some(items) = schema.get("items") {
        return html! { "array of " (type_of(items)) };
    }
    for combined in ["oneOf", "anyOf", "allOf"] {
        if let Some(options) = schema[combined].as_array() {
            return html! {
                @for (index, option) in options.iter().enumerate() {
                    @if index > 0 { " | " }
                    (type_of(option))
                }
            };
        }
    }
    let kind = match &schema["type"] {
        Value::String(kind) => kind.clone(),
        Value::Array(kinds) => kinds
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" | "),
        _ => String::new(),
    };
    let format = schema["format"]
        .as_str()
        .map(|format| format!(" ({format})"));
    html! { (kind) @if let Some(format) = format { (format) } }
}

fn schema_view(schema: &Value) -> Markup {
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    html! {
        @if let Some(description) = schema["description"].as_str() { p { (description) } }
        @if let Some(properties) = schema["properties"].as_object() {
            table {
                thead { tr { th { "Field" } th { "Type" } th { "Description" } } }
                tbody {
                    @for (name, property) in properties {
                        tr {
                            td { code { (name) } @if required.contains(&name.as_str()) { " " span.badge { "required" } } }
                            td { (type_of(property)) }
                            td { (property["description"].as_str().unwrap_or("")) }
                        }
                    }
                }
            }
        } @else {
            p { (type_of(schema)) }
        }
    }
}
