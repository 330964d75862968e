//! Extractors that answer malformed input with our problem+json shape instead of axum's
//! plain-text rejections.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

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
        parse_object(&bytes).map(AppJson)
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for AppJsonList<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, state).await?;
        read_json(&bytes, b'[', "a JSON array")
            .map(AppJsonList)
            .map_err(ApiError::from)
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

/// How every refusal of a body that is not JSON begins.
const NOT_JSON: &str = "Request body is not valid JSON";

/// The deepest nesting of arrays and objects a request body may have.
pub const MAX_JSON_DEPTH: usize = 64;

/// Reads a whole body as one JSON value, or says in a sentence why it is not one
/// acceptable here: content after the value, nesting deeper than [`MAX_JSON_DEPTH`],
/// invalid UTF-8 or a lone surrogate anywhere (ignored fields included), or a NUL
/// character in any string or key (PostgreSQL text cannot hold one), named by its path.
/// Every route that reads a JSON body checks it here, so both backends refuse the same.
pub fn json_value(bytes: &[u8]) -> Result<Value, String> {
    if nesting(bytes) > MAX_JSON_DEPTH {
        return Err(format!(
            "Request body nests arrays and objects deeper than {MAX_JSON_DEPTH} levels."
        ));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|err| format!("{NOT_JSON}: {err}"))?;
    if let Some(path) = nul_at(&value, String::new()) {
        let place = if path.is_empty() {
            "The body".to_owned()
        } else {
            path
        };
        return Err(format!(
            "{place} contains a NUL character (\\u0000), which is not allowed."
        ));
    }
    Ok(value)
}

/// The deepest nesting of `[` and `{` outside strings.
fn nesting(bytes: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0, false, false);
    for &byte in bytes {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// The path of the first string or key holding a NUL character.
fn nul_at(value: &Value, path: String) -> Option<String> {
    match value {
        Value::String(text) => text.contains('\0').then_some(path),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(n, item)| nul_at(item, format!("{path}[{n}]"))),
        Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            let here = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            if key.contains('\0') {
                Some(here)
            } else {
                nul_at(item, here)
            }
        }),
        _ => None,
    }
}

/// The request body, with a problem+json 413 over the 1 MiB limit (for routes that
/// read their body themselves).
pub struct AppBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for AppBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        read_body(req, state).await.map(AppBody)
    }
}

/// Why a body was refused, in a sentence, sorted so that a route answering in an
/// original's words can pick its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Empty, or another JSON shape than the route takes (an array for an object).
    Shape(String),
    /// Not JSON at all.
    Syntax(String),
    /// JSON that breaks a rule every route keeps: too deep, a NUL character.
    Rule(String),
    /// A field of another type than the route takes (or named twice), at `path`.
    Field { path: String, message: String },
}

impl BodyError {
    pub fn message(&self) -> &str {
        match self {
            BodyError::Shape(message) | BodyError::Syntax(message) | BodyError::Rule(message) => {
                message
            }
            BodyError::Field { message, .. } => message,
        }
    }
}

impl From<BodyError> for ApiError {
    fn from(err: BodyError) -> ApiError {
        match err {
            BodyError::Field { path, message } => {
                ApiError::bad_request(message.clone()).with_errors(json!({ path: message }))
            }
            other => ApiError::bad_request(other.message().to_owned()),
        }
    }
}

/// The one way a body is read: a JSON object (or, with `b'['`, array) parsed into `T`
/// after [`json_value`]'s rules. Serde would otherwise read a struct from an array, so
/// the top level is checked first; a field of the wrong type is named by its path.
/// Routes that answer each mistake in an original's words give their fields the type
/// [`Sent`], which takes any value, and judge them afterwards.
pub fn read_json<T: DeserializeOwned>(
    bytes: &[u8],
    opening: u8,
    shape: &str,
) -> Result<T, BodyError> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => {
            return Err(BodyError::Shape(format!(
                "Request body must be {shape}; it is empty."
            )))
        }
        Some(b) if *b == opening => {}
        Some(_) => return Err(BodyError::Shape(format!("Request body must be {shape}."))),
    }
    json_value(bytes).map_err(|message| {
        if message.starts_with(NOT_JSON) {
            BodyError::Syntax(message)
        } else {
            BodyError::Rule(message)
        }
    })?;
    let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            BodyError::Syntax(format!("{NOT_JSON}: {inner}"))
        } else {
            BodyError::Field {
                message: format!("{path}: {inner}"),
                path,
            }
        }
    })
}

/// [`read_json`] for an object, refused as problem+json.
pub fn parse_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    read_json(bytes, b'{', "a JSON object").map_err(ApiError::from)
}

/// One field of a body as sent: absent, `null`, a value of the type the route takes, or
/// another JSON value. Reading it never fails, so the route can say in its own words
/// what is wrong with each field, and all of them at once.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Sent<T> {
    #[default]
    Absent,
    Null,
    Value(T),
    Other(Value),
}

impl<T> Sent<T> {
    /// The value, or `missing` when absent or null, or `invalid` for another value.
    pub fn required<E>(self, missing: E, invalid: E) -> Result<T, E> {
        match self {
            Sent::Value(value) => Ok(value),
            Sent::Absent | Sent::Null => Err(missing),
            Sent::Other(_) => Err(invalid),
        }
    }

    /// The value, `None` when absent or null, or `invalid` for another value.
    pub fn optional<E>(self, invalid: E) -> Result<Option<T>, E> {
        match self {
            Sent::Value(value) => Ok(Some(value)),
            Sent::Absent | Sent::Null => Ok(None),
            Sent::Other(_) => Err(invalid),
        }
    }
}

impl<'de, T: DeserializeOwned> serde::Deserialize<'de> for Sent<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        if value.is_null() {
            return Ok(Sent::Null);
        }
        Ok(match T::deserialize(&value) {
            Ok(typed) => Sent::Value(typed),
            Err(_) => Sent::Other(value),
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_one_json_value_without_nul_shallow_enough() {
        assert!(json_value(br#"{"a": [1, {"b": "x\u0041"}], "s": "a[{"}"#).is_ok());
        for (body, says) in [
            (&br#"{"a": 1}xyz"#[..], "not valid JSON"),
            (br#"{"a": 1} {"b": 2}"#, "not valid JSON"),
            (br#"{"a": "\ud800"}"#, "not valid JSON"),
            (b"{\"a\": \"\xff\"}", "not valid JSON"),
            (
                br#"{"a": {"b": ["ok", "x\u0000y"]}}"#,
                "a.b[1] contains a NUL",
            ),
            (br#"{"k\u0000": 1}"#, "contains a NUL"),
        ] {
            let err = json_value(body).expect_err(&String::from_utf8_lossy(body));
            assert!(err.contains(says), "{err}");
        }
        let deep = format!(
            "{}{}",
            "[".repeat(MAX_JSON_DEPTH + 1),
            "]".repeat(MAX_JSON_DEPTH + 1)
        );
        assert!(json_value(deep.as_bytes())
            .unwrap_err()
            .contains("deeper than 64"));
        let fine = format!(
            "{}{}",
            "[".repeat(MAX_JSON_DEPTH),
            "]".repeat(MAX_JSON_DEPTH)
        );
        assert!(json_value(fine.as_bytes()).is_ok());
        let brackets_in_strings = format!(r#"{{"a": "{}"}}"#, "[".repeat(500));
        assert!(json_value(brackets_in_strings.as_bytes()).is_ok());
    }

    #[derive(serde::Deserialize, Debug)]
    struct Fields {
        #[serde(default)]
        name: Sent<String>,
        #[serde(default)]
        count: Sent<u8>,
    }

    #[test]
    fn sent_fields_take_any_value_and_say_which_it_was() {
        let read = |body: &str| read_json::<Fields>(body.as_bytes(), b'{', "a JSON object");
        let fields = read(r#"{"name": "ada", "count": null}"#).unwrap();
        assert_eq!(fields.name, Sent::Value("ada".to_owned()));
        assert_eq!(fields.count, Sent::Null);
        let fields = read(r#"{"name": 5, "count": 300, "other": [1]}"#).unwrap();
        assert_eq!(fields.name, Sent::Other(json!(5)));
        assert_eq!(fields.count, Sent::Other(json!(300)));
        assert_eq!(fields.name.required("missing", "invalid"), Err("invalid"));
        let fields = read("{}").unwrap();
        assert_eq!(fields.name, Sent::Absent);
        assert_eq!(
            fields.name.clone().required("missing", "invalid"),
            Err("missing")
        );
        assert_eq!(fields.count.optional("invalid"), Ok(None));
    }

    #[test]
    fn a_refused_body_says_why_by_kind() {
        let read = |body: &[u8]| read_json::<Fields>(body, b'{', "a JSON object").unwrap_err();
        assert_eq!(
            read(b"  "),
            BodyError::Shape("Request body must be a JSON object; it is empty.".into())
        );
        assert!(matches!(read(b"[1]"), BodyError::Shape(_)));
        assert!(matches!(read(b"{\"name\": }"), BodyError::Syntax(_)));
        assert!(matches!(
            read(br#"{"name": "a\u0000"}"#),
            BodyError::Rule(_)
        ));
        let BodyError::Field { path, message } = read(br#"{"name": "a", "name": "b"}"#) else {
            panic!("a field named twice is refused")
        };
        assert_eq!(path, ".");
        assert!(message.contains("duplicate field `name`"), "{message}");
    }
}
