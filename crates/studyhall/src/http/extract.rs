//! Extractors that answer malformed input with our problem+json shape instead of axum's
//! plain-text rejections.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::error::ApiError;

/// A JSON object body. The content type is not checked (the seeds' clients do not all
/// send one); the body limit is, and a body that does not parse names the failing field.
pub struct AppJson<T>(pub T);

/// A JSON array body, otherwise like [`AppJson`].
pub struct AppJsonList<T>(pub Vec<T>);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for AppJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, state).await?;
        parse_json(&bytes, b'{', "a JSON object").map(AppJson)
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for AppJsonList<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, state).await?;
        parse_json(&bytes, b'[', "a JSON array").map(AppJsonList)
    }
}

async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Request body is larger than the 1 MiB limit.",
            )
        } else {
            ApiError::bad_request(format!("Could not read the request body: {rejection}"))
        }
    })
}

/// Parses a body whose top level must open with `opening` (serde would otherwise read a
/// struct from an array), naming the failing field on a type error.
pub fn parse_json<T: DeserializeOwned>(
    bytes: &[u8],
    opening: u8,
    shape: &str,
) -> Result<T, ApiError> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => {
            return Err(ApiError::bad_request(format!(
                "Request body must be {shape}; it is empty."
            )))
        }
        Some(b) if *b == opening => {}
        Some(_) => {
            return Err(ApiError::bad_request(format!(
                "Request body must be {shape}."
            )))
        }
    }
    let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::bad_request(format!("Request body is not valid JSON: {inner}"))
        } else {
            let message = format!("{path}: {inner}");
            ApiError::bad_request(message.clone()).with_errors(json!({ path: message }))
        }
    })
}

/// Query parameters, with a problem+json 400 naming the parameter when they do not parse.
pub struct AppQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for AppQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|axum::extract::Query(value)| AppQuery(value))
            .map_err(|rejection| {
                ApiError::bad_request(format!("Invalid query string: {}", rejection.body_text()))
            })
    }
}
