//! The one application error type. Every module answers failures through it, so every
//! error body is RFC 9457 problem+json with the legacy fields the seeds' clients read.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;

pub const PROBLEM_JSON: &str = "application/problem+json";

const UNAVAILABLE: &str = "The service is temporarily unavailable; retry shortly.";

/// A store's failure, in terms its callers act on; the HTTP layer maps it to a status.
/// Stores speak their module's language: expected outcomes (not found, a conflict)
/// are values in their results, and only these two ways of failing are errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database or Redis cannot be reached or will not serve now; nothing was
    /// changed. `detail` says so in words for a client.
    #[error("{detail}")]
    Unavailable {
        detail: &'static str,
        #[source]
        cause: anyhow::Error,
    },
    /// Anything else: a broken invariant or an unexpected database error.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

impl StoreError {
    /// Unavailable, said in the generic words.
    pub fn unavailable(cause: anyhow::Error) -> Self {
        StoreError::Unavailable {
            detail: UNAVAILABLE,
            cause,
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        if is_unavailable(&err) {
            StoreError::unavailable(err.into())
        } else {
            StoreError::Failed(err.into())
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable { detail, cause } => ApiError::Unavailable {
                detail: detail.into(),
                cause,
            },
            StoreError::Failed(cause) => ApiError::Internal(cause),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is refused (a 4xx): its status and a message the client can act on.
    #[error("{detail}")]
    Refused {
        status: StatusCode,
        detail: String,
        /// The per-route-family detail: an object of field → message (events), an array
        /// of messages (stats).
        errors: Option<Value>,
        /// Extra top-level members a route family's clients read (grades: `result`).
        extra: serde_json::Map<String, Value>,
    },
    /// A dependency (database, Redis) is down or overloaded; nothing was changed, and
    /// retrying later may work. `detail` is what the client is told.
    #[error("service unavailable: {cause:#}")]
    Unavailable {
        detail: String,
        #[source]
        cause: anyhow::Error,
    },
    /// Anything else: logged with its cause, answered with a generic body.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        ApiError::Refused {
            status,
            detail: detail.into(),
            errors: None,
            extra: serde_json::Map::new(),
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    /// A dependency is unavailable, said in the generic words.
    pub fn unavailable(cause: anyhow::Error) -> Self {
        StoreError::unavailable(cause).into()
    }

    pub fn with_errors(mut self, errors: Value) -> Self {
        if let ApiError::Refused { errors: slot, .. } = &mut self {
            *slot = Some(errors);
        }
        self
    }

    /// Adds a top-level member to the problem body.
    pub fn with_member(mut self, name: &str, value: Value) -> Self {
        if let ApiError::Refused { extra, .. } = &mut self {
            extra.insert(name.to_owned(), value);
        }
        self
    }

    pub fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Refused { status, .. } => *status,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        if is_unavailable(&err) {
            ApiError::unavailable(err.into())
        } else {
            ApiError::Internal(err.into())
        }
    }
}

/// Whether the database could not be reached or would not serve (down, restarting,
/// out of connections), so that the same request can succeed later: a 503, not a 500.
pub fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        // SQLSTATE class 08 (connection exception), 57P01–57P03 (the server is shutting
        // down or starting), 53300 (too many connections); SQLite 5/6 (busy, locked).
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08")
                || matches!(
                    code.as_ref(),
                    "57P01" | "57P02" | "57P03" | "53300" | "5" | "6"
                )
        }),
        _ => false,
    }
}

/// The problem+json body. `message` repeats `detail` for the activity_service clients,
/// `error` is the stats seed's unknown-route field.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub message: String,
    /// What is wrong, by field (`{"limit": "…"}`), or as a list (the stats routes).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = problem_errors)]
    pub errors: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Route-specific members, e.g. `active_streams` and `limit` on a 429.
    #[serde(flatten)]
    #[schema(ignore)]
    pub extra: serde_json::Map<String, Value>,
}

fn problem_errors() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Type};
    let text = || ObjectBuilder::new().schema_type(Type::String);
    OneOfBuilder::new()
        .item(ObjectBuilder::new().additional_properties(Some(text())))
        .item(ArrayBuilder::new().items(text()))
        .build()
        .into()
}

impl Problem {
    pub fn new(status: StatusCode, detail: String, errors: Option<Value>) -> Self {
        Problem {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            message: detail.clone(),
            detail,
            errors,
            error: None,
            extra: serde_json::Map::new(),
        }
    }

    pub fn into_response_with(self, status: StatusCode) -> Response {
        let mut response = (status, axum::Json(self)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let problem = match self {
            ApiError::Refused {
                detail,
                errors,
                extra,
                ..
            } => {
                let mut problem = Problem::new(status, detail, errors);
                problem.extra = extra;
                problem
            }
            ApiError::Unavailable { detail, cause } => {
                tracing::warn!(error = format!("{cause:#}"), "dependency unavailable");
                Problem::new(status, detail, None)
            }
            ApiError::Internal(cause) => {
                tracing::error!(error = format!("{cause:#}"), "internal error");
                Problem::new(status, "An internal error occurred.".into(), None)
            }
        };
        problem.into_response_with(status)
    }
}

/// Unknown routes: 404 problem+json, keeping the stats seed's `error` field.
pub async fn route_not_found() -> Response {
    let mut problem = Problem::new(StatusCode::NOT_FOUND, "Route not found".into(), None);
    problem.error = Some("Route not found".into());
    problem.into_response_with(StatusCode::NOT_FOUND)
}

pub async fn method_not_allowed() -> Response {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "Method not allowed on this route".into(),
        None,
    )
    .into_response_with(StatusCode::METHOD_NOT_ALLOWED)
}
