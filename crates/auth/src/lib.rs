//! Identity from bearer tokens: `hs256` (a shared secret), `jwks` (RS256/ES256 keys
//! from a JWKS URL such as a Cognito user pool's) or `off`.
//!
//! Every route that knows a caller reads it through [`Caller`]: a token, when one is
//! sent, must verify (401 otherwise); routes then decide whether gateway headers may
//! also speak for the caller.

#![warn(unreachable_pub)]

mod caller;
mod jwks;
mod mint;
mod secret;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use studyhall_core::config::{AuthMode, AuthSettings};
use studyhall_core::error::ApiError;
use studyhall_core::sensitive::{DatabaseUrl, Secret};

pub use caller::{Admin, Caller, IdentityTrust};
pub use mint::{mint_hs256, mint_hs256_with};
pub use secret::hs256_secret;

/// Tokens larger than this are refused unread.
const MAX_TOKEN: usize = 8 * 1024;
/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 60;

/// The verified caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthUser {
    pub id: String,
    pub email: Option<String>,
    /// What the token grants: the words of its `scope` (OAuth 2.0: a space-separated
    /// string, or a list) and of its groups claim (`cognito:groups` by default).
    pub scopes: Vec<String>,
}

impl AuthUser {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|granted| granted == scope)
    }
}

/// Who may use a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Anyone; a caller who identifies itself (the admin token, a valid token) is
    /// known as such.
    Open,
    /// The admin token, or a token granting this scope.
    Scoped(&'static str),
    /// The admin token only.
    Admin,
}

/// Who a [`Rule`] let through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    Anyone,
    Operator,
    User(AuthUser),
}

impl Grant {
    /// The caller as the audit log names them, if they identified themselves.
    pub fn actor(&self) -> Option<studyhall_log::Actor> {
        match self {
            Grant::Anyone => None,
            Grant::Operator => Some(studyhall_log::Actor::operator()),
            Grant::User(user) => Some(studyhall_log::Actor {
                kind: "user",
                id: Some(user.id.clone()),
                email: user.email.clone(),
            }),
        }
    }
}

enum Keys {
    Off,
    /// hs256 without a secret (PostgreSQL and no `STUDYHALL_JWT_SECRET`): every token is
    /// refused, with a message saying why.
    Unconfigured,
    Hs256(DecodingKey),
    Jwks(jwks::Jwks),
}

/// Verifies bearer tokens.
pub struct Auth {
    keys: Keys,
    issuer: Option<String>,
    audience: Option<String>,
    token_use: Option<String>,
    user_claim: String,
    /// The claim that lists the caller's groups (read beside `scope`).
    groups_claim: String,
    /// How far gateway headers and peer addresses may speak for a caller; when headers
    /// may, a token and a header naming someone else are refused on every route.
    trust: IdentityTrust,
    /// The operators' credential (`STUDYHALL_ADMIN_TOKEN`); without one the operator
    /// routes are refused.
    admin_token: Option<Secret>,
    /// Where refused tokens are recorded (`STUDYHALL_AUDIT_MODULES` names `auth`).
    refusals: Option<studyhall_log::Throttled>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

/// The claims a token must carry, as configured: what the server checks and what
/// `studyhall token` puts in, so that a minted token is one the server accepts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequiredClaims {
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub token_use: Option<String>,
}

impl RequiredClaims {
    pub fn from_settings(settings: &AuthSettings) -> anyhow::Result<RequiredClaims> {
        if let Some(token_use) = &settings.jwt_token_use {
            if token_use != "access" && token_use != "id" {
                anyhow::bail!("STUDYHALL_JWT_TOKEN_USE must be `access` or `id`");
            }
        }
        Ok(RequiredClaims {
            issuer: settings.jwt_issuer.clone().or(cognito_pool(settings)?),
            audience: settings.jwt_audience.clone(),
            token_use: settings.jwt_token_use.clone(),
        })
    }
}

/// The Cognito user pool's URL (its issuer), when one is configured.
fn cognito_pool(settings: &AuthSettings) -> anyhow::Result<Option<String>> {
    match (&settings.cognito_region, &settings.cognito_pool_id) {
        (Some(region), Some(pool)) => Ok(Some(format!(
            "https://cognito-idp.{region}.amazonaws.com/{pool}"
        ))),
        (None, None) => Ok(None),
        _ => anyhow::bail!("STUDYHALL_COGNITO_REGION and STUDYHALL_COGNITO_POOL_ID go together"),
    }
}

impl Auth {
    pub fn from_settings(settings: &AuthSettings, database: &DatabaseUrl) -> anyhow::Result<Auth> {
        let cognito = cognito_pool(settings)?;
        let required = RequiredClaims::from_settings(settings)?;
        let keys = match settings.auth {
            AuthMode::Off => Keys::Off,
            AuthMode::Hs256 => match hs256_secret(settings, database)? {
                Some(secret) => Keys::Hs256(DecodingKey::from_secret(secret.as_bytes())),
                None => {
                    tracing::warn!("STUDYHALL_AUTH=hs256 without STUDYHALL_JWT_SECRET on PostgreSQL: tokens are refused");
                    Keys::Unconfigured
                }
            },
            AuthMode::Jwks => {
                let url = match (&settings.jwks_url, &cognito) {
                    (Some(url), _) => url.clone(),
                    (None, Some(pool)) => format!("{pool}/.well-known/jwks.json"),
                    (None, None) => anyhow::bail!(
                        "STUDYHALL_AUTH=jwks needs STUDYHALL_JWKS_URL, or STUDYHALL_COGNITO_REGION and STUDYHALL_COGNITO_POOL_ID"
                    ),
                };
                Keys::Jwks(jwks::Jwks::new(
                    url,
                    Duration::from_secs(settings.jwks_refresh_secs),
                )?)
            }
        };
        Ok(Auth {
            keys,
            issuer: required.issuer,
            audience: required.audience,
            token_use: required.token_use,
            user_claim: settings.jwt_user_claim.clone(),
            groups_claim: settings.jwt_groups_claim.clone(),
            trust: IdentityTrust::default(),
            admin_token: None,
            refusals: None,
        })
    }

    pub fn trusting(mut self, trust: IdentityTrust) -> Auth {
        self.trust = trust;
        self
    }

    pub fn with_admin_token(mut self, token: Option<Secret>) -> Auth {
        self.admin_token = token;
        self
    }

    /// Records refused tokens (their reason, never the token) with `recorder`.
    pub fn recording_refusals(mut self, recorder: Option<studyhall_log::Recorder>) -> Auth {
        self.refusals = recorder.map(|recorder| {
            studyhall_log::Throttled::new(recorder, "studyhall.auth", "token.refused")
        });
        self
    }

    /// Whether an admin token is configured (without one the operator routes and the
    /// console are off).
    pub fn admin_configured(&self) -> bool {
        self.admin_token.is_some()
    }

    /// Whether `token` is the admin token (compared in constant time).
    pub fn is_admin_token(&self, token: &str) -> bool {
        self.admin_token
            .as_ref()
            .is_some_and(|admin| admin.matches(token))
    }

    /// Checks the operators' bearer token.
    fn check_admin(&self, headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
        let Some(expected) = &self.admin_token else {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "The operator routes are disabled: set STUDYHALL_ADMIN_TOKEN.",
            ));
        };
        let sent = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        let Some(sent) = sent else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "Send the admin token as `Authorization: Bearer TOKEN`.",
            ));
        };
        if !expected.matches(sent.trim()) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "The admin token is not valid.",
            ));
        }
        Ok(())
    }

    /// Who the request `parts` show the caller to be, if `rule` lets them through.
    /// `what` says what they are doing, for the refusal ("Reading events").
    pub async fn grant(
        &self,
        parts: &mut Parts,
        rule: Rule,
        what: &str,
    ) -> Result<Grant, ApiError> {
        let sent = bearer(&parts.headers).map(|token| token.map(str::to_owned));
        let sent = sent.as_ref().map(|token| token.as_deref());
        let needs = match rule {
            Rule::Open => String::new(),
            Rule::Scoped(scope) => format!(
                "{what} needs the admin token or a bearer token whose `scope` or `{}` names `{scope}`.",
                self.groups_claim
            ),
            Rule::Admin => format!("{what} needs the admin token."),
        };
        // An open route refuses no one: a caller whose token does not verify is simply
        // not identified.
        if rule == Rule::Open {
            let Some(Some(token)) = sent else {
                return Ok(Grant::Anyone);
            };
            if self
                .admin_token
                .as_ref()
                .is_some_and(|admin| admin.matches(token))
            {
                return Ok(Grant::Operator);
            }
            return Ok(self
                .verify_once(parts, token)
                .await
                .map_or(Grant::Anyone, Grant::User));
        }
        let token = match sent {
            None => return Err(unauthorized(&needs)),
            Some(None) => {
                return Err(unauthorized(
                    "Send the token as `Authorization: Bearer TOKEN`.",
                ))
            }
            Some(Some(token)) => token,
        };
        if self
            .admin_token
            .as_ref()
            .is_some_and(|admin| admin.matches(token))
        {
            return Ok(Grant::Operator);
        }
        if rule == Rule::Admin {
            // A JWT (dot-separated parts) that does not verify is no credential at all:
            // 401, saying why. One that verifies, or an opaque token, is not the
            // admin's: 403.
            if token.split('.').count() >= 3 {
                self.verify_once(parts, token).await?;
            }
            return Err(ApiError::new(StatusCode::FORBIDDEN, needs));
        }
        let user = self.verify_once(parts, token).await?;
        match rule {
            Rule::Scoped(scope) if !user.has_scope(scope) => {
                Err(ApiError::new(StatusCode::FORBIDDEN, needs))
            }
            _ => Ok(Grant::User(user)),
        }
    }

    /// The user of the request's bearer `token`, verified once per request: a second
    /// extractor of the same request (a route's rule, then its [`Caller`]) reuses the
    /// first one's answer.
    async fn verify_once(&self, parts: &mut Parts, token: &str) -> Result<AuthUser, ApiError> {
        if let Some(Verified(user)) = parts.extensions.get::<Verified>() {
            return Ok(user.clone());
        }
        let user = self.verify(token).await?;
        parts.extensions.insert(Verified(user.clone()));
        Ok(user)
    }

    /// Checks a bearer token and returns its user; a refusal is recorded (see
    /// [`studyhall_log::Throttled`]).
    pub async fn verify(&self, token: &str) -> Result<AuthUser, ApiError> {
        let verified = self.check(token).await;
        if let (Err(ApiError::Refused { detail, .. }), Some(refusals)) = (&verified, &self.refusals)
        {
            let anonymous = studyhall_log::Actor::user(None, None);
            refusals.note(anonymous, serde_json::json!({"reason": detail}));
        }
        verified
    }

    async fn check(&self, token: &str) -> Result<AuthUser, ApiError> {
        if token.len() > MAX_TOKEN {
            return Err(unauthorized("The token is larger than 8 KiB."));
        }
        // Refuses `alg: none` too: it is not an algorithm jsonwebtoken knows.
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| unauthorized("The token is malformed."))?;
        refuse_critical_extensions(token)?;
        let (key, algorithm) = match &self.keys {
            Keys::Off => {
                return Err(unauthorized(
                    "This deployment accepts no tokens (STUDYHALL_AUTH=off).",
                ))
            }
            Keys::Unconfigured => {
                return Err(unauthorized(
                    "Token authentication is not configured: set STUDYHALL_JWT_SECRET.",
                ))
            }
            // One shared secret has no name: a token naming a key names one this
            // deployment does not have.
            Keys::Hs256(_) if header.kid.is_some() => {
                return Err(unauthorized(
                    "The token names a signing key (kid) this deployment does not have.",
                ))
            }
            Keys::Hs256(key) => (key.clone(), Algorithm::HS256),
            Keys::Jwks(jwks) => {
                let kid = header
                    .kid
                    .as_deref()
                    .ok_or_else(|| unauthorized("The token names no signing key (kid)."))?;
                jwks.key(kid).await?
            }
        };
        // Only the key's own algorithm: an HS256 token is never checked against an
        // RSA public key (algorithm confusion), nor an RS256 one against a secret.
        if header.alg != algorithm {
            return Err(unauthorized(
                "The token's algorithm does not match its key.",
            ));
        }
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.required_spec_claims = HashSet::from(["exp".to_owned()]);
        if let Some(issuer) = &self.issuer {
            // Without `iss` among the required claims, a token with none at all passes.
            validation.set_issuer(&[issuer]);
            validation.required_spec_claims.insert("iss".to_owned());
        }
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
            .map_err(|err| unauthorized(&describe(&err)))?
            .claims;
        self.check_claims(&claims)
    }

    fn check_claims(&self, claims: &Map<String, Value>) -> Result<AuthUser, ApiError> {
        // RFC 7519 makes `iss` one string; a list holding the issuer is not that issuer.
        if let Some(issuer) = &self.issuer {
            if claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str()) {
                return Err(unauthorized(
                    "The token's issuer is not the configured one.",
                ));
            }
        }
        if let Some(audience) = &self.audience {
            let in_aud = match claims.get("aud") {
                Some(Value::String(aud)) => aud == audience,
                Some(Value::Array(auds)) => auds.iter().any(|aud| aud.as_str() == Some(audience)),
                _ => false,
            };
            let client_id = claims.get("client_id").and_then(Value::as_str) == Some(audience);
            if !in_aud && !client_id {
                return Err(unauthorized("The token is for another audience."));
            }
        }
        if let Some(token_use) = &self.token_use {
            if claims.get("token_use").and_then(Value::as_str) != Some(token_use) {
                return Err(unauthorized(&format!("A `{token_use}` token is required.")));
            }
        }
        let id = claims
            .get(&self.user_claim)
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty() && id.len() <= 128)
            .ok_or_else(|| {
                unauthorized(&format!("The token has no `{}` claim.", self.user_claim))
            })?;
        let email = claims
            .get("email")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let mut scopes = Vec::new();
        for claim in ["scope", self.groups_claim.as_str()] {
            match claims.get(claim) {
                Some(Value::String(words)) => {
                    scopes.extend(words.split_whitespace().map(str::to_owned));
                }
                Some(Value::Array(words)) => {
                    scopes.extend(words.iter().filter_map(Value::as_str).map(str::to_owned));
                }
                _ => {}
            }
        }
        Ok(AuthUser {
            id: id.to_owned(),
            email,
            scopes,
        })
    }
}

/// RFC 7515 §4.1.11: a `crit` header names extensions the recipient must understand or
/// refuse the token; studyhall understands none.
fn refuse_critical_extensions(token: &str) -> Result<(), ApiError> {
    use base64::Engine;
    let encoded = token.split('.').next().unwrap_or_default();
    let header: Map<String, Value> = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| unauthorized("The token is malformed."))?;
    if header.contains_key("crit") {
        return Err(unauthorized(
            "The token's header names critical extensions (crit) this service does not understand.",
        ));
    }
    Ok(())
}

fn describe(err: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match err.kind() {
        ErrorKind::ExpiredSignature => "The token has expired.".into(),
        ErrorKind::ImmatureSignature => "The token is not valid yet (nbf).".into(),
        ErrorKind::InvalidIssuer => "The token is from another issuer.".into(),
        ErrorKind::InvalidSignature => "The token's signature does not verify.".into(),
        ErrorKind::InvalidAlgorithm => "The token's algorithm is not accepted.".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("The token has no `{claim}` claim."),
        _ => "The token is malformed.".into(),
    }
}

pub fn unauthorized(detail: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, detail)
}

/// The user whose token this request carried, once verified (see `Auth::verify_once`).
#[derive(Clone)]
struct Verified(AuthUser);

/// The `Authorization` header's bearer token: `None` without the header, `Some(None)`
/// when it holds something else.
fn bearer(headers: &HeaderMap) -> Option<Option<&str>> {
    headers.get(header::AUTHORIZATION).map(|value| {
        value
            .to_str()
            .ok()
            .and_then(|value| {
                value
                    .strip_prefix("Bearer ")
                    .or_else(|| value.strip_prefix("bearer "))
            })
            .map(str::trim)
    })
}

pub fn auth_of(parts: &Parts) -> Result<&Arc<Auth>, ApiError> {
    parts
        .extensions
        .get::<Arc<Auth>>()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("no Auth in request extensions")))
}

#[cfg(test)]
mod tests {
    use axum::extract::FromRequestParts;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use jsonwebtoken::{EncodingKey, Header};

    use super::*;

    fn hs256(secret: &str) -> Auth {
        Auth {
            keys: Keys::Hs256(DecodingKey::from_secret(secret.as_bytes())),
            issuer: None,
            audience: None,
            token_use: None,
            user_claim: "sub".into(),
            groups_claim: "cognito:groups".into(),
            trust: IdentityTrust::default(),
            admin_token: None,
            refusals: None,
        }
    }

    /// A request whose token `auth` is to verify.
    fn request_with(auth: Auth, token: &str) -> Parts {
        let (mut parts, ()) = axum::http::Request::builder()
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(())
            .unwrap()
            .into_parts();
        parts.extensions.insert(Arc::new(auth));
        parts
    }

    #[tokio::test]
    async fn a_request_verifies_its_token_once_for_its_rule_and_its_caller() {
        let secret = "a-secret-of-some-length";
        let token = mint_hs256(secret, "sub", "alice", None, Duration::from_secs(60)).unwrap();
        let mut parts = request_with(hs256(secret), &token);
        let auth = auth_of(&parts).unwrap().clone();
        let grant = auth
            .grant(&mut parts, Rule::Open, "Posting events")
            .await
            .unwrap();
        assert!(matches!(grant, Grant::User(ref user) if user.id == "alice"));
        // Keys that would refuse the token: the caller must come from the first
        // verification, not a second one.
        parts
            .extensions
            .insert(Arc::new(hs256("another-secret-entirely")));
        let caller = Caller::from_request_parts(&mut parts, &()).await.unwrap();
        assert_eq!(caller.user_id().as_deref(), Some("alice"));
        // The same keys on a request not yet verified do refuse it.
        let mut fresh = request_with(hs256("another-secret-entirely"), &token);
        assert!(Caller::from_request_parts(&mut fresh, &()).await.is_err());
    }

    #[tokio::test]
    async fn a_minted_token_verifies_and_a_foreign_one_does_not() {
        let token = mint_hs256(
            "a-secret-of-some-length",
            "sub",
            "alice",
            Some("a@x.io"),
            Duration::from_secs(60),
        )
        .unwrap();
        let user = hs256("a-secret-of-some-length")
            .verify(&token)
            .await
            .unwrap();
        assert_eq!(
            user,
            AuthUser {
                id: "alice".into(),
                email: Some("a@x.io".into()),
                scopes: Vec::new(),
            }
        );
        assert!(hs256("another-secret-entirely")
            .verify(&token)
            .await
            .is_err());
    }

    #[tokio::test]
    async fn expired_oversized_and_garbage_tokens_are_refused() {
        let expired = {
            let claims = serde_json::json!({"sub": "a", "exp": 1_000_000_000});
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(b"a-secret-of-some-length"),
            )
            .unwrap()
        };
        let auth = hs256("a-secret-of-some-length");
        for token in [
            expired,
            "x".repeat(MAX_TOKEN + 1),
            "not.a.token".into(),
            String::new(),
        ] {
            assert!(auth.verify(&token).await.is_err());
        }
    }

    fn sign(claims: &Value, header: &Header) -> String {
        jsonwebtoken::encode(
            header,
            claims,
            &EncodingKey::from_secret(b"a-secret-of-some-length"),
        )
        .unwrap()
    }

    /// An hs256 verifier requiring an issuer, an audience and `token_use`, and a token
    /// with every claim but `missing`: whether it is accepted.
    async fn accepted_without(missing: Option<&str>) -> bool {
        let mut auth = hs256("a-secret-of-some-length");
        auth.issuer = Some("https://issuer.test".into());
        auth.audience = Some("client".into());
        auth.token_use = Some("access".into());
        let mut claims = serde_json::json!({
            "sub": "a", "exp": 4_000_000_000_u64, "iss": "https://issuer.test",
            "aud": "client", "token_use": "access",
        });
        if let Some(claim) = missing {
            claims.as_object_mut().unwrap().remove(claim);
        }
        auth.verify(&sign(&claims, &Header::new(Algorithm::HS256)))
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_token_with_every_required_claim_is_accepted() {
        assert!(accepted_without(None).await);
    }

    #[tokio::test]
    async fn an_hs256_token_naming_any_key_is_refused() {
        let auth = hs256("a-secret-of-some-length");
        let claims = serde_json::json!({"sub": "a", "exp": 4_000_000_000_u64});
        assert!(auth
            .verify(&sign(&claims, &Header::new(Algorithm::HS256)))
            .await
            .is_ok());
        for kid in ["nope", "../../dev/null", ""] {
            let mut header = Header::new(Algorithm::HS256);
            header.kid = Some(kid.to_owned());
            let refused = auth.verify(&sign(&claims, &header)).await;
            assert!(refused.is_err(), "kid {kid:?} was accepted");
        }
    }

    #[tokio::test]
    async fn an_issuer_given_as_a_list_is_refused() {
        let mut auth = hs256("a-secret-of-some-length");
        auth.issuer = Some("https://issuer.test".into());
        let claims =
            |iss: Value| serde_json::json!({"sub": "a", "exp": 4_000_000_000_u64, "iss": iss});
        let token = |iss| sign(&claims(iss), &Header::new(Algorithm::HS256));
        assert!(auth
            .verify(&token(Value::from("https://issuer.test")))
            .await
            .is_ok());
        for iss in [
            serde_json::json!(["https://issuer.test"]),
            serde_json::json!(["https://issuer.test", "x"]),
        ] {
            assert!(
                auth.verify(&token(iss.clone())).await.is_err(),
                "iss {iss} was accepted"
            );
        }
    }

    #[tokio::test]
    async fn a_token_without_iss_is_refused_when_an_issuer_is_configured() {
        assert!(!accepted_without(Some("iss")).await);
    }

    #[tokio::test]
    async fn a_token_without_aud_is_refused_when_an_audience_is_configured() {
        assert!(!accepted_without(Some("aud")).await);
    }

    #[tokio::test]
    async fn a_token_without_token_use_is_refused_when_one_is_required() {
        assert!(!accepted_without(Some("token_use")).await);
    }

    #[tokio::test]
    async fn a_token_without_exp_is_refused() {
        assert!(!accepted_without(Some("exp")).await);
    }

    #[tokio::test]
    async fn a_token_without_its_user_claim_is_refused() {
        assert!(!accepted_without(Some("sub")).await);
    }

    #[tokio::test]
    async fn a_critical_header_extension_is_refused() {
        let auth = hs256("a-secret-of-some-length");
        let claims = serde_json::json!({"sub": "a", "exp": 4_000_000_000_u64});
        let plain = sign(&claims, &Header::new(Algorithm::HS256));
        assert!(auth.verify(&plain).await.is_ok());
        // The same token with `crit` added to its header (re-signed).
        let header =
            URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT","crit":["exp"],"exp":1}"#);
        let body = plain.split('.').nth(1).unwrap();
        let signing_input = format!("{header}.{body}");
        let signature = jsonwebtoken::crypto::sign(
            signing_input.as_bytes(),
            &EncodingKey::from_secret(b"a-secret-of-some-length"),
            Algorithm::HS256,
        )
        .unwrap();
        let critical = format!("{signing_input}.{signature}");
        let refused = auth.verify(&critical).await.expect_err("crit accepted");
        assert!(format!("{refused}").contains("crit"), "{refused}");
    }
}
