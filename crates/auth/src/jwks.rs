//! A JWKS key cache: fetched on first use, refetched when a token names an unknown key
//! (at most once per refresh interval, so garbage `kid`s cannot hammer the issuer).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::sync::{Mutex, RwLock};

use super::unauthorized;
use studyhall_core::error::ApiError;

pub(crate) struct Jwks {
    url: String,
    client: reqwest::Client,
    refresh: Duration,
    keys: RwLock<HashMap<String, (DecodingKey, Algorithm)>>,
    /// When the set was last fetched; held while fetching so one request fetches.
    fetched: Mutex<Option<Instant>>,
}

impl Jwks {
    pub(crate) fn new(url: String, refresh: Duration) -> anyhow::Result<Jwks> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|err| anyhow::anyhow!("cannot build the JWKS HTTP client: {err}"))?;
        Ok(Jwks {
            url,
            client,
            refresh,
            keys: RwLock::new(HashMap::new()),
            fetched: Mutex::new(None),
        })
    }

    pub(crate) async fn key(&self, kid: &str) -> Result<(DecodingKey, Algorithm), ApiError> {
        if let Some(key) = self.keys.read().await.get(kid) {
            return Ok(key.clone());
        }
        let mut fetched = self.fetched.lock().await;
        if let Some(key) = self.keys.read().await.get(kid) {
            return Ok(key.clone());
        }
        if fetched.is_none_or(|at| at.elapsed() >= self.refresh) {
            let keys = self.fetch().await?;
            *fetched = Some(Instant::now());
            *self.keys.write().await = keys;
        }
        self.keys
            .read()
            .await
            .get(kid)
            .cloned()
            .ok_or_else(|| unauthorized("The token's signing key (kid) is unknown."))
    }

    async fn fetch(&self) -> Result<HashMap<String, (DecodingKey, Algorithm)>, ApiError> {
        let unavailable = |err: reqwest::Error| {
            tracing::warn!(url = %self.url, error = %err, "fetching the JWKS failed");
            ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "The token signing keys cannot be fetched; retry shortly.",
            )
        };
        let set: JwkSet = self
            .client
            .get(&self.url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(unavailable)?
            .json()
            .await
            .map_err(unavailable)?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            // RS256 for RSA keys and ES256 for P-256 keys; anything else is ignored.
            let algorithm = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Algorithm::RS256,
                AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
                    Algorithm::ES256
                }
                _ => continue,
            };
            let (Some(kid), Ok(key)) = (&jwk.common.key_id, DecodingKey::from_jwk(jwk)) else {
                continue;
            };
            keys.insert(kid.clone(), (key, algorithm));
        }
        tracing::info!(url = %self.url, keys = keys.len(), "fetched the JWKS");
        Ok(keys)
    }
}
