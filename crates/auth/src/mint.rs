//! Minting hs256 tokens: `studyhall token`, and the tests.

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value};

use crate::RequiredClaims;

/// Mints an hs256 token (for tests).
pub fn mint_hs256(
    secret: &str,
    user_claim: &str,
    sub: &str,
    email: Option<&str>,
    ttl: Duration,
) -> anyhow::Result<String> {
    mint_hs256_with(
        secret,
        &RequiredClaims::default(),
        user_claim,
        sub,
        email,
        None,
        ttl,
    )
}

/// Mints an hs256 token carrying the configured required claims (`studyhall token`).
pub fn mint_hs256_with(
    secret: &str,
    required: &RequiredClaims,
    user_claim: &str,
    sub: &str,
    email: Option<&str>,
    scope: Option<&str>,
    ttl: Duration,
) -> anyhow::Result<String> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut claims = Map::new();
    for (name, value) in [
        ("iss", &required.issuer),
        ("aud", &required.audience),
        ("token_use", &required.token_use),
    ] {
        if let Some(value) = value {
            claims.insert(name.into(), Value::String(value.clone()));
        }
    }
    claims.insert(user_claim.to_owned(), Value::String(sub.to_owned()));
    if user_claim != "sub" {
        claims.insert("sub".into(), Value::String(sub.to_owned()));
    }
    if let Some(email) = email {
        claims.insert("email".into(), Value::String(email.to_owned()));
    }
    if let Some(scope) = scope {
        claims.insert("scope".into(), Value::String(scope.to_owned()));
    }
    claims.insert("iat".into(), Value::from(now));
    claims.insert(
        "exp".into(),
        Value::from(now.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2))),
    );
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )?)
}
