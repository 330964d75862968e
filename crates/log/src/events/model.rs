//! The event: what a client posts, validated, and what it reads back. Once parsed, the
//! rest of the log cannot see invalid input: a `NewEvent` has trimmed, bounded fields
//! and a valid email. (What a read asks for is `query`.)

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use studyhall_core::clock::Micros;
use studyhall_core::error::ApiError;

/// `component` and `environment` are filtered by exact match through an index, whose
/// entries PostgreSQL bounds (about 2.7 kB): 512 characters fit in any script. `message`
/// has no bound but the body's (1 MiB), as the original stored any length.
pub const MAX_COMPONENT: usize = 512;
pub const MAX_ENVIRONMENT: usize = 512;
pub const MAX_EMAIL: usize = 254;

/// A stored event, as every route returns it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Event {
    pub id: Uuid,
    pub component: String,
    /// Any JSON value, returned exactly as it was posted.
    #[schema(value_type = serde_json::Value)]
    pub data: Box<RawValue>,
    pub email: String,
    pub environment: String,
    pub message: String,
    /// Unix time in seconds with microseconds as the fraction, as a string: the
    /// original service's form (Python's `str()` of the timestamp).
    #[serde(serialize_with = "micros_as_seconds")]
    #[schema(value_type = String, example = "1618531200.123456")]
    pub created_at: Micros,
}

fn micros_as_seconds<S: Serializer>(at: &Micros, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&seconds_text(at.0))
}

/// Unix µs as Python writes a float timestamp: the shortest digits that read back as
/// the same number, and `.0` on a whole second.
pub fn seconds_text(micros: i64) -> String {
    let text = (micros as f64 / 1_000_000.0).to_string();
    if text.contains('.') {
        text
    } else {
        format!("{text}.0")
    }
}

/// The POST body as sent. Every field is optional here so that a missing field gets
/// the same clear message as a blank one, and `data: null` can be told from no `data`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct EventBody {
    #[schema(
        required = true,
        nullable = false,
        min_length = 1,
        max_length = 512,
        example = "order"
    )]
    pub component: Option<String>,
    /// Any JSON value, null included; required all the same.
    #[serde(default, deserialize_with = "present")]
    #[schema(required = true, value_type = serde_json::Value)]
    pub data: Option<Box<RawValue>>,
    #[schema(
        required = true,
        nullable = false,
        min_length = 1,
        max_length = 254,
        example = "ade@gmail.com"
    )]
    pub email: Option<String>,
    #[schema(
        required = true,
        nullable = false,
        min_length = 1,
        max_length = 512,
        example = "production"
    )]
    pub environment: Option<String>,
    #[schema(
        required = true,
        nullable = false,
        min_length = 1,
        example = "order failed"
    )]
    pub message: Option<String>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(d).map(Some)
}

/// A validated event waiting to be stored.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub component: String,
    pub data: Box<RawValue>,
    pub email: String,
    pub environment: String,
    pub message: String,
}

impl NewEvent {
    pub fn parse(body: EventBody) -> Result<NewEvent, ApiError> {
        let mut errors = Map::new();
        let component = required_text(&mut errors, "component", body.component, MAX_COMPONENT);
        let environment = required_text(
            &mut errors,
            "environment",
            body.environment,
            MAX_ENVIRONMENT,
        );
        let message = required_text(&mut errors, "message", body.message, usize::MAX);
        let email = match body.email.as_deref().map(str::trim) {
            None => fail(&mut errors, "email", "email is required.".into()),
            Some(email) if is_valid_email(email) => Some(email.to_owned()),
            Some(_) => fail(&mut errors, "email", "Invalid email address.".into()),
        };
        let data = match body.data {
            Some(data) => Some(data),
            None => fail(
                &mut errors,
                "data",
                "data is required (any JSON value, null included).".into(),
            ),
        };
        match (component, environment, message, email, data) {
            (Some(component), Some(environment), Some(message), Some(email), Some(data))
                if errors.is_empty() =>
            {
                Ok(NewEvent {
                    component,
                    data,
                    email,
                    environment,
                    message,
                })
            }
            _ => Err(validation_error(errors)),
        }
    }

    /// What identifies this request for `Idempotency-Key`: the same key with another
    /// body is a client error, so the whole validated content is fingerprinted.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        for part in [
            &self.component,
            self.data.get(),
            &self.email,
            &self.environment,
            &self.message,
        ] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
        hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

pub(super) fn fail<T>(errors: &mut Map<String, Value>, field: &str, message: String) -> Option<T> {
    errors.insert(field.to_owned(), Value::String(message));
    None
}

fn required_text(
    errors: &mut Map<String, Value>,
    field: &str,
    value: Option<String>,
    max: usize,
) -> Option<String> {
    // Stored exactly as sent, surrounding spaces included, as the original stored it.
    match value.as_deref() {
        None => fail(errors, field, format!("{field} is required.")),
        Some(text) if text.trim().is_empty() => {
            fail(errors, field, format!("{field} must not be blank."))
        }
        Some(text) if text.chars().count() > max => fail(
            errors,
            field,
            format!("{field} must be at most {max} characters."),
        ),
        Some(text) => Some(text.to_owned()),
    }
}

/// One 400 naming every invalid field: `message` joins them, `errors` maps field → message.
pub(super) fn validation_error(errors: Map<String, Value>) -> ApiError {
    let message = errors
        .values()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join(" ");
    ApiError::bad_request(message).with_errors(Value::Object(errors))
}

/// `local@domain.tld`: a practical check (what clients mean by "valid"), not the full
/// RFC 5322 grammar, which accepts addresses no mail system delivers to.
pub fn is_valid_email(email: &str) -> bool {
    if email.len() > MAX_EMAIL {
        return false;
    }
    let Some((local, domain)) = email.rsplit_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        && labels.last().is_some_and(|tld| {
            // Letters, or an internationalised TLD in its ASCII form (`xn--p1ai`).
            tld.len() >= 2
                && (tld.chars().all(|c| c.is_ascii_alphabetic())
                    || tld
                        .strip_prefix("xn--")
                        .is_some_and(|rest| !rest.is_empty()))
        });
    local_ok && domain_ok
}

pub fn health_body() -> Value {
    json!({"status": "healthy"})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(value: Value) -> EventBody {
        serde_json::from_value(value).unwrap()
    }

    fn valid() -> Value {
        json!({"component": "order", "data": {"age": 20}, "email": "ade@gmail.com",
               "environment": "production", "message": "order failed"})
    }

    #[test]
    fn a_valid_body_is_kept_exactly_as_sent() {
        let mut v = valid();
        v["component"] = json!("  order ");
        v["message"] = json!(format!("trace\n{}", "  at frame\n".repeat(10_000)));
        let event = NewEvent::parse(body(v.clone())).unwrap();
        assert_eq!(event.component, "  order ");
        assert_eq!(
            event.message,
            v["message"].as_str().unwrap(),
            "a long message, whole"
        );
        assert_eq!(event.data.get(), r#"{"age":20}"#);
        v["environment"] = json!(" \t ");
        assert!(
            NewEvent::parse(body(v.clone())).is_err(),
            "blank is still refused"
        );
        v["environment"] = json!("e".repeat(MAX_ENVIRONMENT + 1));
        assert!(NewEvent::parse(body(v)).is_err());
    }

    #[test]
    fn null_data_is_accepted_but_missing_data_is_not() {
        let mut v = valid();
        v["data"] = Value::Null;
        assert_eq!(NewEvent::parse(body(v)).unwrap().data.get(), "null");
        let mut v = valid();
        v.as_object_mut().unwrap().remove("data");
        assert!(NewEvent::parse(body(v)).is_err());
    }

    #[test]
    fn every_invalid_field_is_named() {
        let err = NewEvent::parse(body(json!({"component": " ", "email": "nope", "data": 1})))
            .unwrap_err();
        let ApiError::Refused {
            errors: Some(errors),
            detail,
            ..
        } = err
        else {
            panic!()
        };
        for field in ["component", "email", "environment", "message"] {
            assert!(errors.get(field).is_some(), "{field} missing from {errors}");
        }
        assert!(detail.contains("Invalid email address."));
    }

    #[test]
    fn emails() {
        for ok in [
            "ade@gmail.com",
            "a.b+c@sub.example.co",
            "x_y@d-1.io",
            "user@example.xn--p1ai",
        ] {
            assert!(is_valid_email(ok), "{ok}");
        }
        for bad in [
            "",
            "ade",
            "ade@",
            "@gmail.com",
            "ade@gmail",
            "ade@gmail.c",
            "a b@x.com",
            "ade@@x.com",
            "ade@-x.com",
            ".a@x.com",
            "a..b@x.com",
            "ade@x..com",
            "ade@x.c0m",
            "ade@x.xn--",
            "ade@x.xy--p1ai",
        ] {
            assert!(!is_valid_email(bad), "{bad}");
        }
    }

    #[test]
    fn timestamps_read_as_the_original_wrote_them() {
        assert_eq!(seconds_text(1_795_448_726_673_523), "1795448726.673523");
        assert_eq!(seconds_text(1_795_448_726_670_000), "1795448726.67");
        assert_eq!(seconds_text(1_795_448_726_000_000), "1795448726.0");
    }
}
