//! Stream types, viewer identity and validation.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use studyhall_auth::Caller;
use studyhall_core::clock::Micros;
use studyhall_core::error::ApiError;
use studyhall_core::http::extract::{read_json, BodyError, Sent};

pub const MAX_ID: usize = 128;
pub const MAX_FIELD: usize = 1024;

/// Who is watching: the token's user; else a user (`X-User-Id`) or a client address
/// (`X-Forwarded-For`) from trusted gateway headers; else, if allowed, the peer address.
pub fn viewer(caller: &Caller) -> Result<String, ApiError> {
    if let Some(user) = &caller.token {
        return Ok(format!("user:{}", user.id));
    }
    if let Some(user) = caller.trusted_user_header() {
        let user = user.to_str().map(str::trim).unwrap_or_default();
        if user.is_empty() || user.chars().count() > MAX_ID || user.chars().any(char::is_control) {
            return Err(ApiError::bad_request(format!(
                "X-User-Id must be 1 to {MAX_ID} printable characters."
            )));
        }
        return Ok(format!("user:{user}"));
    }
    if let Some(forwarded) = caller.trusted_forwarded_for() {
        let first = forwarded
            .to_str()
            .ok()
            .and_then(|list| list.split(',').next())
            .map(str::trim);
        return match first.and_then(|text| text.parse::<IpAddr>().ok()) {
            Some(ip) => Ok(format!("ip:{ip}")),
            None => Err(ApiError::bad_request(
                "The first X-Forwarded-For entry must be an IP address.",
            )),
        };
    }
    match caller.peer() {
        Some(peer) => Ok(format!("ip:{}", peer.ip())),
        None => Err(ApiError::bad_request(if caller.headers_trusted() {
            "No viewer identity: send X-User-Id or X-Forwarded-For."
        } else {
            "No viewer identity: identity headers are not trusted on this deployment."
        })),
    }
}

/// A viewer named in an admin route: a bare user id means that user (`bob` is
/// `user:bob`, as streams show it); `user:ID` and `ip:ADDRESS` are taken as written.
pub fn named_viewer(text: &str) -> Result<String, ApiError> {
    let printable = |id: &str| {
        !id.is_empty() && id.chars().count() <= MAX_ID && !id.chars().any(char::is_control)
    };
    let refused = || {
        ApiError::bad_request(format!(
            "The viewer must be a user id, `user:ID` or `ip:ADDRESS` (IDs of 1 to {MAX_ID} printable characters; write `user:{text}` for a user id with a colon)."
        ))
    };
    match text.split_once(':') {
        Some(("user", id)) if printable(id) => Ok(format!("user:{id}")),
        Some(("ip", address)) => address
            .parse::<IpAddr>()
            .map(|ip| format!("ip:{ip}"))
            .map_err(|_| refused()),
        None if printable(text) => Ok(format!("user:{text}")),
        _ => Err(refused()),
    }
}

/// A client-chosen stream id: printable ASCII without spaces or slashes.
pub fn stream_id(text: &str) -> Result<String, ApiError> {
    client_id("stream_id", text)
}

/// A client's id for itself or its stream (`what` names it in the error): printable
/// ASCII without spaces or slashes.
fn client_id(what: &str, text: &str) -> Result<String, ApiError> {
    let ok = !text.is_empty()
        && text.len() <= MAX_ID
        && text
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b'\\');
    if ok {
        Ok(text.to_owned())
    } else {
        Err(ApiError::bad_request(format!(
            "{what} must be 1 to {MAX_ID} printable ASCII characters without spaces or slashes."
        )))
    }
}

/// What `POST /api/v1/streams` asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct StartRequest {
    pub stream_id: Option<String>,
    /// The device it plays on (`device_id`, or the `X-Device-Id` header): a device's new
    /// stream replaces the device's active one.
    pub device_id: Option<String>,
    /// An active stream of the viewer to end in the same step (`replace`).
    pub replace: Option<String>,
    /// The seed's fields that were sent, as a JSON object.
    pub metadata: String,
    /// `video_ended: true`: end the stream rather than start it.
    pub ends: bool,
}

/// A metadata field's value: the seed's fields are strings, numbers and booleans.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Scalar {
    Bool(bool),
    Number(serde_json::Number),
    Text(String),
}

/// The body of a start, each field as sent.
#[derive(Deserialize, Default)]
#[serde(default)]
struct StartBody {
    stream_id: Sent<String>,
    device_id: Sent<String>,
    replace: Sent<String>,
    video_name: Sent<Scalar>,
    codec_info: Sent<Scalar>,
    file_type: Sent<Scalar>,
    size: Sent<Scalar>,
    src: Sent<Scalar>,
    framerate: Sent<Scalar>,
    video_ended: Sent<Scalar>,
    video_playing: Sent<Scalar>,
    video_start_time: Sent<Scalar>,
    video_end_time: Sent<Scalar>,
}

impl StartBody {
    /// The seed's metadata fields, stored as given.
    fn metadata(&self) -> [(&'static str, &Sent<Scalar>); 10] {
        [
            ("video_name", &self.video_name),
            ("codec_info", &self.codec_info),
            ("file_type", &self.file_type),
            ("size", &self.size),
            ("src", &self.src),
            ("framerate", &self.framerate),
            ("video_ended", &self.video_ended),
            ("video_playing", &self.video_playing),
            ("video_start_time", &self.video_start_time),
            ("video_end_time", &self.video_end_time),
        ]
    }
}

/// Parses the optional body (empty, or a JSON object of the seed's fields) and the
/// `X-Device-Id` header's value, if sent.
pub fn start_request(body: &[u8], device_header: Option<&[u8]>) -> Result<StartRequest, ApiError> {
    let body: StartBody = if body.iter().all(u8::is_ascii_whitespace) {
        StartBody::default()
    } else {
        read_json(body, b'{', "a JSON object").map_err(|err| match err {
            BodyError::Shape(_) => {
                ApiError::bad_request("Request body must be empty or a JSON object.")
            }
            other => other.into(),
        })?
    };
    let stream_id = body
        .stream_id
        .clone()
        .optional(ApiError::bad_request("stream_id must be a string."))?
        .map(|id| stream_id(&id))
        .transpose()?;
    let sent_device = body
        .device_id
        .clone()
        .optional(ApiError::bad_request("device_id must be a string."))?
        .map(|id| client_id("device_id", &id))
        .transpose()?;
    let header_device = device_header
        .map(|value| {
            client_id(
                "X-Device-Id",
                std::str::from_utf8(value).unwrap_or_default(),
            )
        })
        .transpose()?;
    let device_id =
        match (sent_device, header_device) {
            (Some(sent), Some(header)) if sent != header => return Err(ApiError::bad_request(
                "device_id and X-Device-Id name different devices; send one, or the same in both.",
            )),
            (sent, header) => sent.or(header),
        };
    let replace = body
        .replace
        .clone()
        .optional(ApiError::bad_request(
            "replace must be the id of a stream, a string.",
        ))?
        .map(|id| client_id("replace", &id))
        .transpose()?;
    let mut metadata = Map::new();
    for (name, sent) in body.metadata() {
        let value = match sent {
            Sent::Absent => continue,
            Sent::Null => Value::Null,
            Sent::Value(Scalar::Text(text)) if text.chars().count() > MAX_FIELD => {
                return Err(ApiError::bad_request(format!(
                    "{name} must be at most {MAX_FIELD} characters."
                )));
            }
            Sent::Value(Scalar::Text(text)) => Value::String(text.clone()),
            Sent::Value(Scalar::Number(number)) => Value::Number(number.clone()),
            Sent::Value(Scalar::Bool(flag)) => Value::Bool(*flag),
            Sent::Other(_) => {
                return Err(ApiError::bad_request(format!(
                    "{name} must be a string, number or boolean."
                )))
            }
        };
        metadata.insert(name.to_owned(), value);
    }
    let ends = matches!(body.video_ended, Sent::Value(Scalar::Bool(true)));
    if ends && stream_id.is_none() {
        return Err(ApiError::bad_request(
            "video_ended: true needs the stream_id of the stream to end.",
        ));
    }
    Ok(StartRequest {
        stream_id,
        device_id,
        replace,
        metadata: Value::Object(metadata).to_string(),
        ends,
    })
}

/// A stream lease as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Stream {
    pub id: String,
    pub viewer: String,
    pub started_at: Micros,
    pub expires_at: Micros,
    /// JSON object of the seed's fields.
    pub metadata: String,
    pub device_id: Option<String>,
}

impl Stream {
    /// `{"id", "viewer", "started_at", "expires_at", …metadata}`.
    pub fn to_json(&self) -> Value {
        let mut object = match serde_json::from_str::<Value>(&self.metadata) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        object.insert("id".into(), Value::String(self.id.clone()));
        object.insert("viewer".into(), Value::String(self.viewer.clone()));
        object.insert(
            "started_at".into(),
            Value::String(self.started_at.rfc3339_millis()),
        );
        object.insert(
            "expires_at".into(),
            Value::String(self.expires_at.rfc3339_millis()),
        );
        if let Some(device) = &self.device_id {
            object.insert("device_id".into(), Value::String(device.clone()));
        }
        Value::Object(object)
    }
}

/// Active streams against the viewer's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub active: i64,
    pub limit: i64,
}

/// What a start did.
#[derive(Debug, Clone, PartialEq)]
pub enum Started {
    Created(Stream, Counts),
    /// Admitted after ending other streams of the viewer: the device's own active
    /// stream, and at the limit under `kick_oldest` the oldest (one, unless the limit
    /// was lowered below the active count).
    Replacing(Stream, Counts, Vec<Ended>),
    /// Admitted at the limit in a dry run (after the replacements it asked for, in
    /// `Vec<Ended>`): what the policy would have done instead.
    OverLimit(Stream, Counts, Vec<Ended>, Would),
    /// The stream id was already active for this viewer: its lease was renewed.
    Renewed(Stream, Counts),
    /// The viewer is at the limit; `retry_after_us` until the earliest lease expires.
    Refused {
        counts: Counts,
        retry_after_us: i64,
    },
}

/// What a heartbeat found.
#[derive(Debug, Clone, PartialEq)]
pub enum Beat {
    Renewed(Stream),
    /// Ended to admit a newer stream of the viewer (`kick_oldest`).
    Replaced(Replacement),
    /// Expired, ended by its viewer, or never started.
    NotActive,
}

/// What the policy would have done with a start a dry run admitted.
#[derive(Debug, Clone, PartialEq)]
pub enum Would {
    Refuse,
    Ask,
    /// End these streams, the oldest.
    Kick(Vec<String>),
}

impl Would {
    pub fn name(&self) -> &'static str {
        match self {
            Would::Refuse => "refuse",
            Would::Ask => "ask",
            Would::Kick(_) => "kick_oldest",
        }
    }

    /// The streams it would have ended.
    pub fn ends(&self) -> &[String] {
        match self {
            Would::Kick(ids) => ids,
            _ => &[],
        }
    }
}

/// A stream a start ended to make room.
#[derive(Debug, Clone, PartialEq)]
pub struct Ended {
    pub stream: Stream,
    pub why: Why,
}

/// Why a start ended another stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// The start asked for it (`replace`).
    Asked,
    /// The new stream plays on the same device.
    SameDevice,
    /// It was the oldest, at the limit under `kick_oldest`.
    Oldest,
}

impl Why {
    /// The audit log's message and the reply's code for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Why::Asked => "asked",
            Why::SameDevice => "same_device",
            Why::Oldest => "oldest",
        }
    }

    pub fn from_code(code: &str) -> Option<Why> {
        [Why::Asked, Why::SameDevice, Why::Oldest]
            .into_iter()
            .find(|why| why.as_str() == code)
    }
}

/// When a stream was ended to admit another, and which (with its device, if any).
#[derive(Debug, Clone, PartialEq)]
pub struct Replacement {
    pub at: Micros,
    pub by: String,
    pub device: Option<String>,
}

/// Response of the start, heartbeat and end routes.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamResponse {
    /// `{id, viewer, started_at, expires_at, …the seed's metadata fields}`
    #[schema(value_type = Object)]
    pub stream: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_streams: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// The ids of the viewer's streams this start ended to make room: the device's own
    /// earlier stream, or under `kick_oldest` the oldest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaced_streams: Option<Vec<String>>,
    /// With `STUDYHALL_STREAM_DRY_RUN`, on a start admitted at the limit: what the policy
    /// would have done (`would`: `refuse`, `ask` or `kick_oldest`, and `would_end`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub dry_run: Option<Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StreamList {
    /// Active streams, oldest first.
    #[schema(value_type = Vec<Object>)]
    pub streams: Vec<Value>,
    pub active_streams: i64,
    pub limit: i64,
    /// What a start at the limit does: `reject`, `ask` or `kick_oldest`.
    pub policy: &'static str,
}

#[derive(Debug, serde::Deserialize, ToSchema)]
pub struct LimitBody {
    /// Concurrent streams this viewer may watch, 1 to 1000.
    #[schema(minimum = 1, maximum = 1000)]
    #[serde(deserialize_with = "whole_number")]
    pub limit: i64,
}

/// An integer, written as one (`5`) or as a number with no fraction (`5.0`): JSON Schema,
/// and so a client generated from the document, counts both as integers.
fn whole_number<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    use serde::de::Error;
    let number = <serde_json::Number as serde::Deserialize>::deserialize(deserializer)?;
    number
        .as_i64()
        .or_else(|| {
            // Within ±2^53 every whole f64 is exact.
            number
                .as_f64()
                .filter(|value| value.fract() == 0.0 && value.abs() <= 9_007_199_254_740_992.0)
                .map(|value| value as i64)
        })
        .ok_or_else(|| D::Error::custom("limit must be an integer from 1 to 1000"))
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use axum::http::HeaderMap;

    use super::*;
    use studyhall_auth::IdentityTrust;

    /// The caller of a request with `pairs` as headers, from `peer`, with no token.
    fn caller(
        pairs: &[(&'static str, &'static str)],
        peer: Option<SocketAddr>,
        headers: bool,
        peer_addr: bool,
    ) -> Caller {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        Caller::new(None, &map, &IdentityTrust { headers, peer_addr }, peer)
    }

    #[test]
    fn the_viewer_is_the_user_then_the_first_forwarded_address() {
        let both = [("x-user-id", "alice"), ("x-forwarded-for", "10.0.0.1")];
        assert_eq!(
            viewer(&caller(&both, None, true, false)).unwrap(),
            "user:alice"
        );
        let chain = [("x-forwarded-for", "203.0.113.7, 10.0.0.1")];
        assert_eq!(
            viewer(&caller(&chain, None, true, false)).unwrap(),
            "ip:203.0.113.7"
        );
        let nonsense = [("x-forwarded-for", "nonsense")];
        assert!(viewer(&caller(&nonsense, None, true, false)).is_err());
        assert!(viewer(&caller(&[], None, true, false)).is_err());
        let peer = Some(SocketAddr::from(([192, 0, 2, 1], 5000)));
        assert_eq!(
            viewer(&caller(&[], peer, true, true)).unwrap(),
            "ip:192.0.2.1"
        );
        assert!(
            viewer(&caller(&[], peer, true, false)).is_err(),
            "an untrusted peer address names nobody"
        );
        assert!(
            viewer(&caller(&both, None, false, false)).is_err(),
            "untrusted headers are ignored"
        );
    }

    #[test]
    fn an_admin_viewer_is_a_user_by_default() {
        assert_eq!(named_viewer("bob").unwrap(), "user:bob");
        assert_eq!(named_viewer("user:bob").unwrap(), "user:bob");
        assert_eq!(named_viewer("user:a:b").unwrap(), "user:a:b");
        assert_eq!(named_viewer("ip:203.0.113.7").unwrap(), "ip:203.0.113.7");
        assert_eq!(named_viewer("ip:::1").unwrap(), "ip:::1");
        for bad in [
            "",
            "ip:nonsense",
            "user:",
            "team:x",
            "a\u{7}b",
            &"x".repeat(MAX_ID + 1),
        ] {
            assert!(named_viewer(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bodies_are_optional_objects_of_the_seeds_fields() {
        assert_eq!(start_request(b"", None).unwrap().metadata, "{}");
        let request = start_request(
            br#"{"video_name": "intro", "size": 3, "other": 1, "stream_id": "tab-1"}"#,
            None,
        )
        .unwrap();
        assert_eq!(request.stream_id.as_deref(), Some("tab-1"));
        assert_eq!(request.metadata, r#"{"size":3,"video_name":"intro"}"#);
        for bad in [
            &b"[1]"[..],
            b"nope",
            br#"{"video_name": {"x": 1}}"#,
            br#"{"stream_id": 5}"#,
            br#"{"stream_id": "has space"}"#,
            br#"{"video_ended": true}"#,
            br#"{"device_id": 7}"#,
            br#"{"device_id": ""}"#,
        ] {
            assert!(
                start_request(bad, None).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = format!(r#"{{"src": "{}"}}"#, "x".repeat(MAX_FIELD + 1));
        assert!(start_request(long.as_bytes(), None).is_err());
        assert!(stream_id(&"x".repeat(MAX_ID + 1)).is_err());
    }

    #[test]
    fn the_device_comes_from_the_body_or_the_header_and_both_must_agree() {
        let device = |body: &[u8], header: Option<&[u8]>| {
            start_request(body, header).map(|request| request.device_id)
        };
        assert_eq!(
            device(br#"{"device_id": "tv"}"#, None).unwrap().as_deref(),
            Some("tv")
        );
        assert_eq!(device(b"", Some(b"tv")).unwrap().as_deref(), Some("tv"));
        assert_eq!(
            device(br#"{"device_id": "tv"}"#, Some(b"tv"))
                .unwrap()
                .as_deref(),
            Some("tv")
        );
        assert_eq!(device(b"", None).unwrap(), None);
        assert!(device(br#"{"device_id": "tv"}"#, Some(b"phone")).is_err());
        assert!(device(b"", Some(b"two words")).is_err());
        assert!(device(b"", Some(&[0xff, 0xfe])).is_err());
    }
}
