//! Who is calling: the verified token's user, and the gateway's identity headers and
//! the peer address as far as the deployment trusts them; and the operator.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};

use crate::{auth_of, bearer, unauthorized, AuthUser};
use studyhall_core::error::ApiError;

/// Who is calling, resolved once for every route family: the verified token's user if
/// a token was sent, and the gateway's identity headers and the peer address as far as
/// this deployment trusts them (`STUDYHALL_TRUST_IDENTITY_HEADERS`,
/// `STUDYHALL_TRUST_PEER_ADDR`). A malformed `Authorization` header or a token that does
/// not verify is a 401; a token and a trusted `X-User-Id` naming someone else is a 403.
/// Each route family reads its caller from this (`user_id` here, the stats user and the
/// streams viewer in their modules) with its own rules and words.
#[derive(Debug, Default)]
pub struct Caller {
    pub token: Option<AuthUser>,
    user_header: Option<HeaderValue>,
    forwarded_for: Option<HeaderValue>,
    trust_headers: bool,
    /// The peer address, only where it may identify a caller.
    peer: Option<SocketAddr>,
}

impl Caller {
    /// The caller of a request with `headers` from `peer`, its token already verified.
    pub fn new(
        token: Option<AuthUser>,
        headers: &HeaderMap,
        trust: &IdentityTrust,
        peer: Option<SocketAddr>,
    ) -> Caller {
        Caller {
            token,
            user_header: headers.get("x-user-id").cloned(),
            forwarded_for: headers.get("x-forwarded-for").cloned(),
            trust_headers: trust.headers,
            peer: peer.filter(|_| trust.peer_addr),
        }
    }

    /// Whether `X-User-Id` and `X-Forwarded-For` may speak for the caller here.
    pub fn headers_trusted(&self) -> bool {
        self.trust_headers
    }

    /// `X-User-Id` as sent, when trusted.
    pub fn trusted_user_header(&self) -> Option<&HeaderValue> {
        self.user_header.as_ref().filter(|_| self.trust_headers)
    }

    /// `X-User-Id` was sent (trusted or not).
    pub fn sent_user_header(&self) -> bool {
        self.user_header.is_some()
    }

    /// `X-Forwarded-For` as sent, when trusted.
    pub fn trusted_forwarded_for(&self) -> Option<&HeaderValue> {
        self.forwarded_for.as_ref().filter(|_| self.trust_headers)
    }

    /// The peer address, when it may identify a caller.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// The caller's user id, if known: the token's user, else the trusted `X-User-Id`.
    /// UUIDs come back lowercase, so one caller has one id however it is written.
    pub fn user_id(&self) -> Option<String> {
        let header = self
            .trusted_user_header()
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
            .filter(|value| !value.is_empty());
        let id = self
            .token
            .as_ref()
            .map(|user| user.id.as_str())
            .or(header)?;
        Some(
            uuid::Uuid::try_parse(id)
                .map_or_else(|_| id.to_owned(), |uuid| uuid.hyphenated().to_string()),
        )
    }
}

/// How far a deployment trusts what a request says about its caller.
#[derive(Debug, Clone, Copy, Default)]
pub struct IdentityTrust {
    /// Gateway headers (`X-User-Id`, `X-Forwarded-For`) identify the caller.
    pub headers: bool,
    /// The connection's peer address identifies a stream viewer.
    pub peer_addr: bool,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let auth = auth_of(parts)?.clone();
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0);
        let sent = bearer(&parts.headers).map(|token| token.map(str::to_owned));
        let token = match sent.as_ref().map(|token| token.as_deref()) {
            None => None,
            Some(sent) => {
                let token = sent.ok_or_else(|| {
                    unauthorized("Send the token as `Authorization: Bearer TOKEN`.")
                })?;
                // The admin token is no user's: the operator is an unnamed caller here
                // (routes that need the operator check it with `Admin` or a `Rule`).
                if auth
                    .admin_token
                    .as_ref()
                    .is_some_and(|admin| admin.matches(token))
                {
                    None
                } else {
                    Some(auth.verify_once(parts, token).await?)
                }
            }
        };
        let caller = Caller::new(token, &parts.headers, &auth.trust, peer);
        // The one place of the rule for every route family: a trusted header naming
        // someone other than the token's user is a 403, never silently ignored. A
        // header that is sent but empty or unreadable names nobody, so it disagrees too.
        if let (Some(user), Some(header)) = (&caller.token, caller.trusted_user_header()) {
            if !same_user(&user.id, header.to_str().map_or("", str::trim)) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "The token's user and the X-User-Id header disagree.",
                ));
            }
        }
        Ok(caller)
    }
}

/// An operator: the request carries the admin token (401 without a token, 403 with
/// another one or when none is configured).
pub struct Admin;

impl<S: Send + Sync> FromRequestParts<S> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        auth_of(parts)?.check_admin(&parts.headers).map(|()| Admin)
    }
}

/// Whether a gateway header names the same user as the token (UUIDs compare in any case).
fn same_user(token_user: &str, header_user: &str) -> bool {
    match (
        uuid::Uuid::try_parse(token_user),
        uuid::Uuid::try_parse(header_user),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => token_user == header_user,
    }
}

#[cfg(test)]
mod tests {
    use super::same_user;

    #[test]
    fn uuids_match_in_any_case_other_ids_exactly() {
        assert!(same_user(
            "9C1B2F8E-6D0A-4A2B-8A57-0B7B0E5D8F11",
            "9c1b2f8e-6d0a-4a2b-8a57-0b7b0e5d8f11"
        ));
        assert!(!same_user("Alice", "alice"));
    }
}
