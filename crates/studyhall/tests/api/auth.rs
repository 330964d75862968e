//! Bearer tokens: a local JWKS server (RSA and EC keys) stands in for Cognito.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::routing::get;
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use studyhall::config::{AuthMode, ServeSettings};

use crate::helpers::{fixture_path, json, TestApp};

const ISSUER: &str = "https://issuer.test/pool";
const AUDIENCE: &str = "studyhall-client";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(name)).expect("fixture")
}

struct Key {
    kid: &'static str,
    algorithm: Algorithm,
    encoding: EncodingKey,
}

impl Key {
    fn rsa(kid: &'static str, file: &str) -> Key {
        Key {
            kid,
            algorithm: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_pem(&fixture(file)).unwrap(),
        }
    }

    fn ec(kid: &'static str, file: &str) -> Key {
        Key {
            kid,
            algorithm: Algorithm::ES256,
            encoding: EncodingKey::from_ec_pem(&fixture(file)).unwrap(),
        }
    }

    fn jwk(&self) -> Jwk {
        let mut jwk = Jwk::from_encoding_key(&self.encoding, self.algorithm).unwrap();
        jwk.common.key_id = Some(self.kid.to_owned());
        jwk
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.to_owned());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

/// A JWKS endpoint whose keys the test can change, counting fetches.
struct JwksServer {
    url: String,
    keys: Arc<Mutex<Vec<Jwk>>>,
    fetches: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn start(keys: Vec<Jwk>) -> JwksServer {
        let keys = Arc::new(Mutex::new(keys));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (served, counted) = (keys.clone(), fetches.clone());
        let app = Router::new().route(
            "/jwks.json",
            get(move || {
                let (served, counted) = (served.clone(), counted.clone());
                async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    let keys = served.lock().unwrap().clone();
                    axum::Json(JwkSet { keys })
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        JwksServer { url, keys, fetches }
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn claims(sub: &str) -> Value {
    json!({"sub": sub, "email": format!("{sub}@example.com"), "iss": ISSUER, "aud": AUDIENCE,
           "exp": now() + 300, "nbf": now() - 10, "iat": now()})
}

async fn jwks_app(server: &JwksServer, refresh_secs: u64) -> TestApp {
    jwks_app_with(server, |settings| {
        settings.auth.jwt_issuer = Some(ISSUER.into());
        settings.auth.jwt_audience = Some(AUDIENCE.into());
        settings.auth.jwks_refresh_secs = refresh_secs;
    })
    .await
}

/// A server verifying tokens against `server`'s keys, with `configure` applied.
async fn jwks_app_with(server: &JwksServer, configure: impl FnOnce(&mut ServeSettings)) -> TestApp {
    let url = server.url.clone();
    TestApp::sqlite_with(move |settings| {
        settings.auth.auth = AuthMode::Jwks;
        settings.auth.jwks_url = Some(url);
        configure(settings);
    })
    .await
}

/// The two real clients of user-api (the PageNow extension and chat client) send Cognito
/// ID tokens: the user is `cognito:username`, the app client is `aud`, `token_use` is
/// `id`. With the settings README gives for them, their requests are accepted, and an
/// access token of the same pool is refused.
async fn cognito_id_tokens_of_the_user_api_clients_are_accepted() {
    let rsa = Key::rsa("rsa-1", "rsa-1.pem");
    let server = JwksServer::start(vec![rsa.jwk()]).await;
    let app = jwks_app_with(&server, |settings| {
        settings.auth.jwt_issuer = Some(ISSUER.into());
        settings.auth.jwt_audience = Some(AUDIENCE.into());
        settings.auth.jwt_token_use = Some("id".into());
        settings.auth.jwt_user_claim = "cognito:username".into();
    })
    .await;
    let id_token = json!({"sub": "5f0c-uuid", "cognito:username": "alice", "email": "alice@example.com",
        "iss": ISSUER, "aud": AUDIENCE, "token_use": "id", "exp": now() + 300, "iat": now(), "auth_time": now()});
    let created = app
        .client
        .post(app.url("/users/me"))
        .bearer_auth(rsa.sign(&id_token))
        .json(&json!({"first_name": "Alice", "last_name": "Liddell"}))
        .send()
        .await
        .unwrap();
    let (status, profile) = json(created).await;
    assert_eq!(status, 200, "{profile}");
    assert_eq!(
        (profile["user_id"].as_str(), profile["email"].as_str()),
        (Some("alice"), Some("alice@example.com"))
    );
    let access_token = json!({"sub": "5f0c-uuid", "username": "alice", "iss": ISSUER, "client_id": AUDIENCE,
        "token_use": "access", "exp": now() + 300, "iat": now()});
    let refused = app
        .client
        .get(app.url("/users/me"))
        .bearer_auth(rsa.sign(&access_token))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    app.stop().await;
}
crate::case!(cognito_id_tokens_of_the_user_api_clients_are_accepted);

/// Starts a stream with the token; returns the status and the viewer or problem.
async fn probe(app: &TestApp, token: &str) -> (u16, Value) {
    let response = app
        .client
        .post(app.url("/api/v1/streams"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let (status, body) = json(response).await;
    if status == 201 {
        (status, body["stream"]["viewer"].clone())
    } else {
        (status, body)
    }
}

async fn assert_refused(app: &TestApp, token: &str, why: &str) {
    let response = app
        .client
        .post(app.url("/api/v1/streams"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401, "{why}");
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let (_, problem) = json(response).await;
    assert!(
        problem["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{why}: {problem}"
    );
}

async fn valid_rs256_and_es256_tokens_identify_the_caller() {
    let (rsa, ec) = (Key::rsa("rsa-1", "rsa-1.pem"), Key::ec("ec-1", "ec-1.pem"));
    let server = JwksServer::start(vec![rsa.jwk(), ec.jwk()]).await;
    let app = jwks_app(&server, 30).await;
    assert_eq!(
        probe(&app, &rsa.sign(&claims("alice"))).await,
        (201, json!("user:alice"))
    );
    assert_eq!(
        probe(&app, &ec.sign(&claims("bob"))).await,
        (201, json!("user:bob"))
    );
    // A Cognito access token carries the app client in `client_id`, not `aud`.
    let mut access = claims("carol");
    access.as_object_mut().unwrap().remove("aud");
    access["client_id"] = json!(AUDIENCE);
    assert_eq!(
        probe(&app, &rsa.sign(&access)).await,
        (201, json!("user:carol"))
    );
    app.stop().await;
}
crate::case!(valid_rs256_and_es256_tokens_identify_the_caller);

async fn bad_tokens_are_401_with_a_detail() {
    let rsa = Key::rsa("rsa-1", "rsa-1.pem");
    let server = JwksServer::start(vec![rsa.jwk()]).await;
    let app = jwks_app(&server, 30).await;
    // The control: an untouched token from the same key is accepted.
    assert_eq!(probe(&app, &rsa.sign(&claims("mallory"))).await.0, 201);
    let with = |change: &dyn Fn(&mut Value)| {
        let mut c = claims("mallory");
        change(&mut c);
        rsa.sign(&c)
    };
    assert_refused(
        &app,
        &with(&|c| c["exp"] = json!(now() - 120)),
        "expired beyond the leeway",
    )
    .await;
    assert_refused(
        &app,
        &with(&|c| c["nbf"] = json!(now() + 300)),
        "not yet valid",
    )
    .await;
    assert_refused(
        &app,
        &with(&|c| c["iss"] = json!("https://evil.test")),
        "wrong issuer",
    )
    .await;
    assert_refused(
        &app,
        &with(&|c| c["aud"] = json!("another-client")),
        "wrong audience",
    )
    .await;
    assert_refused(
        &app,
        &with(&|c| {
            c.as_object_mut().unwrap().remove("exp");
        }),
        "no expiry",
    )
    .await;
    assert_refused(
        &app,
        &Key::rsa("rsa-unknown", "rsa-2.pem").sign(&claims("mallory")),
        "unknown kid",
    )
    .await;

    let valid = rsa.sign(&claims("mallory"));
    let parts: Vec<&str> = valid.split('.').collect();
    let forged = URL_SAFE_NO_PAD.encode(claims("admin").to_string());
    assert_refused(
        &app,
        &format!("{}.{forged}.{}", parts[0], parts[2]),
        "tampered payload",
    )
    .await;

    let none_header =
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT", "kid": "rsa-1"}).to_string());
    assert_refused(&app, &format!("{none_header}.{}.", parts[1]), "alg none").await;

    // Algorithm confusion: HS256 with the RSA *public* key as the HMAC secret.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa-1".into());
    let confused = jsonwebtoken::encode(
        &header,
        &claims("mallory"),
        &EncodingKey::from_secret(&fixture("rsa-1.pub.pem")),
    )
    .unwrap();
    assert_refused(&app, &confused, "HS256 signed with the RSA public key").await;

    for garbage in ["not-a-token", "a.b.c", &"x".repeat(9000)] {
        assert_refused(&app, garbage, "malformed").await;
    }
    let basic = app
        .client
        .post(app.url("/api/v1/streams"))
        .header("Authorization", "Basic YTpi")
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 401);
    app.stop().await;
}
crate::case!(bad_tokens_are_401_with_a_detail);

async fn a_rotated_in_key_is_accepted_without_restart() {
    let (old, new) = (
        Key::rsa("rsa-1", "rsa-1.pem"),
        Key::rsa("rsa-2", "rsa-2.pem"),
    );
    let server = JwksServer::start(vec![old.jwk()]).await;
    let app = jwks_app(&server, 0).await;
    assert_eq!(probe(&app, &old.sign(&claims("dana"))).await.0, 201);
    assert_eq!(
        probe(&app, &new.sign(&claims("dana"))).await.0,
        401,
        "not published yet"
    );
    server.keys.lock().unwrap().push(new.jwk());
    assert_eq!(
        probe(&app, &new.sign(&claims("erin"))).await,
        (201, json!("user:erin"))
    );
    app.stop().await;
}
crate::case!(a_rotated_in_key_is_accepted_without_restart);

async fn unknown_kids_refetch_the_keys_at_most_once_per_interval() {
    let rsa = Key::rsa("rsa-1", "rsa-1.pem");
    let server = JwksServer::start(vec![rsa.jwk()]).await;
    let app = jwks_app(&server, 30).await;
    assert_eq!(probe(&app, &rsa.sign(&claims("fay"))).await.0, 201);
    assert_eq!(server.fetches.load(Ordering::SeqCst), 1);
    for n in 0..5 {
        let kid: &'static str = Box::leak(format!("made-up-{n}").into_boxed_str());
        let stranger = Key {
            kid,
            ..Key::rsa("x", "rsa-2.pem")
        };
        assert_eq!(probe(&app, &stranger.sign(&claims("fay"))).await.0, 401);
    }
    assert_eq!(
        server.fetches.load(Ordering::SeqCst),
        1,
        "garbage kids must not hammer the JWKS"
    );
    app.stop().await;
}
crate::case!(unknown_kids_refetch_the_keys_at_most_once_per_interval);

async fn a_token_and_an_x_user_id_that_disagree_are_refused_with_403() {
    let rsa = Key::rsa("rsa-1", "rsa-1.pem");
    let server = JwksServer::start(vec![rsa.jwk()]).await;
    let app = jwks_app(&server, 30).await;
    let user = "9c1b2f8e-6d0a-4a2b-8a57-0b7b0e5d8f11";
    let token = rsa.sign(&claims(user));
    let course = uuid::Uuid::new_v4();
    let body = json!({"sessionId": uuid::Uuid::new_v4(), "totalModulesStudied": 1, "averageScore": 50, "timeStudied": 10});
    let disagree = app
        .client
        .post(app.url(&format!("/courses/{course}")))
        .bearer_auth(&token)
        .header("X-User-Id", "1d7e3c2a-5b4f-4e6d-8c9b-0a1b2c3d4e5f")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(disagree.status(), 403);
    // A header sent empty beside a token names nobody: it disagrees too, on every route.
    for path in [format!("/courses/{course}"), "/api/v1/streams".to_owned()] {
        let empty = app
            .client
            .get(app.url(&path))
            .bearer_auth(&token)
            .header("X-User-Id", "")
            .send()
            .await
            .unwrap();
        assert_eq!(empty.status(), 403, "{path}");
    }
    let agree = app
        .client
        .post(app.url(&format!("/courses/{course}")))
        .bearer_auth(&token)
        .header("X-User-Id", user.to_uppercase())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(agree.status(), 201);
    // The token alone is enough, and reads the same user's data.
    let read = app
        .client
        .get(app.url(&format!("/courses/{course}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    let stream = app
        .client
        .post(app.url("/api/v1/streams"))
        .bearer_auth(&token)
        .header("X-User-Id", "someone-else")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 403);
    app.stop().await;
}
crate::case!(a_token_and_an_x_user_id_that_disagree_are_refused_with_403);

async fn with_auth_off_no_token_is_accepted() {
    let app = TestApp::sqlite_with(|settings| settings.auth.auth = AuthMode::Off).await;
    let token = studyhall::auth::mint_hs256(
        "whatever-secret-value",
        "sub",
        "x",
        None,
        std::time::Duration::from_secs(60),
    )
    .unwrap();
    assert_refused(&app, &token, "auth off").await;
    app.stop().await;
}
crate::case!(with_auth_off_no_token_is_accepted);

async fn studyhall_token_mints_a_token_the_server_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    // The server first: it makes the database and the secret beside it.
    let app =
        TestApp::sqlite_with(|settings| settings.database.database_url = url.parse().unwrap())
            .await;
    let token = token_command(
        &[
            "--sub",
            "alice",
            "--email",
            "alice@example.com",
            "--database-url",
            &url,
        ],
        &[],
    )
    .await;
    assert_eq!(probe(&app, &token).await, (201, json!("user:alice")));
    let mut tampered = token.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    assert_refused(&app, &tampered, "signature changed").await;
    app.stop().await;
}
crate::case!(studyhall_token_mints_a_token_the_server_accepts);

async fn a_required_token_use_refuses_the_other_kind_of_token() {
    let rsa = Key::rsa("rsa-1", "rsa-1.pem");
    let server = JwksServer::start(vec![rsa.jwk()]).await;
    let app = jwks_app_with(&server, |settings| {
        settings.auth.jwt_token_use = Some("access".into());
        settings.auth.jwt_user_claim = "username".into();
    })
    .await;
    let mut access = claims("ignored-sub");
    access["token_use"] = json!("access");
    access["username"] = json!("gina");
    assert_eq!(
        probe(&app, &rsa.sign(&access)).await,
        (201, json!("user:gina")),
        "the configured user claim"
    );
    let mut id_token = access.clone();
    id_token["token_use"] = json!("id");
    assert_refused(
        &app,
        &rsa.sign(&id_token),
        "an id token where access tokens are required",
    )
    .await;
    let mut nameless = access.clone();
    nameless.as_object_mut().unwrap().remove("username");
    assert_refused(&app, &rsa.sign(&nameless), "no user claim").await;
    app.stop().await;
}
crate::case!(a_required_token_use_refuses_the_other_kind_of_token);

/// Each required-claim setting in turn: the environment `studyhall token` and the server
/// share, and how the server's settings say it.
type ClaimSetting = (
    &'static str,
    &'static str,
    fn(&mut studyhall::config::AuthSettings),
);

const CLAIM_SETTINGS: [ClaimSetting; 3] = [
    ("STUDYHALL_JWT_ISSUER", ISSUER, |auth| {
        auth.jwt_issuer = Some(ISSUER.into())
    }),
    ("STUDYHALL_JWT_AUDIENCE", AUDIENCE, |auth| {
        auth.jwt_audience = Some(AUDIENCE.into())
    }),
    ("STUDYHALL_JWT_TOKEN_USE", "access", |auth| {
        auth.jwt_token_use = Some("access".into())
    }),
];

const MINT_SECRET: &str = "token-command-secret-0123456789";

/// Runs `studyhall token` (10 minutes) with these arguments and only these
/// `STUDYHALL_JWT_*` settings; returns the token.
async fn token_command(args: &[&str], env: &[(&str, &str)]) -> String {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_studyhall"))
        .args(["token", "--ttl", "10m"])
        .args(args)
        .env_remove("STUDYHALL_JWT_SECRET")
        .envs(env.iter().copied())
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// Mints with the `studyhall token` command against the app's database.
async fn mint_with_command(app: &TestApp, env: &[(&str, &str)]) -> String {
    let url = app.database_url.expose();
    let mut env = env.to_vec();
    env.push(("STUDYHALL_JWT_SECRET", MINT_SECRET));
    token_command(&["--sub", "alice", "--database-url", url], &env).await
}

async fn minted_tokens_carry_each_required_claim(postgres: bool) {
    for (variable, value, require) in CLAIM_SETTINGS {
        let configure = move |settings: &mut studyhall::config::ServeSettings| {
            settings.auth.jwt_secret = Some(MINT_SECRET.parse().unwrap());
            require(&mut settings.auth);
        };
        let app = if postgres {
            let app = TestApp::postgres_with(configure).await;
            app
        } else {
            TestApp::sqlite_with(configure).await
        };
        let token = mint_with_command(&app, &[(variable, value)]).await;
        assert_eq!(
            probe(&app, &token).await,
            (201, json!("user:alice")),
            "a token minted with {variable}"
        );
        let without = mint_with_command(&app, &[]).await;
        assert_refused(
            &app,
            &without,
            &format!("a token minted without {variable}"),
        )
        .await;
        app.stop().await;
    }
}

async fn studyhall_token_puts_in_the_claims_the_sqlite_server_requires() {
    minted_tokens_carry_each_required_claim(false).await;
}
crate::case!(studyhall_token_puts_in_the_claims_the_sqlite_server_requires);

async fn studyhall_token_puts_in_the_claims_the_postgres_server_requires() {
    minted_tokens_carry_each_required_claim(true).await;
}
crate::case!(
    studyhall_token_puts_in_the_claims_the_postgres_server_requires,
    needs = [Postgres]
);

/// In `jwks` mode (issuer and audience configured), a token lacking `claim` is refused
/// while the same token with it is accepted.
async fn jwks_refuses_a_token_without(claim: &str) {
    let rsa = Key::rsa("rsa-1", "rsa-1.pem");
    let server = JwksServer::start(vec![rsa.jwk()]).await;
    let app = jwks_app(&server, 30).await;
    assert_eq!(
        probe(&app, &rsa.sign(&claims("alice"))).await,
        (201, json!("user:alice"))
    );
    let mut missing = claims("alice");
    missing.as_object_mut().unwrap().remove(claim);
    assert_refused(&app, &rsa.sign(&missing), &format!("no `{claim}`")).await;
    app.stop().await;
}

async fn in_jwks_mode_a_token_without_iss_is_refused() {
    jwks_refuses_a_token_without("iss").await;
}
crate::case!(in_jwks_mode_a_token_without_iss_is_refused);

async fn in_jwks_mode_a_token_without_aud_is_refused() {
    jwks_refuses_a_token_without("aud").await;
}
crate::case!(in_jwks_mode_a_token_without_aud_is_refused);

async fn in_jwks_mode_a_token_without_exp_is_refused() {
    jwks_refuses_a_token_without("exp").await;
}
crate::case!(in_jwks_mode_a_token_without_exp_is_refused);

async fn in_jwks_mode_a_token_without_sub_is_refused() {
    jwks_refuses_a_token_without("sub").await;
}
crate::case!(in_jwks_mode_a_token_without_sub_is_refused);

async fn in_jwks_mode_a_critical_header_extension_is_refused() {
    let rsa = Key::rsa("rsa-1", "rsa-1.pem");
    let server = JwksServer::start(vec![rsa.jwk()]).await;
    let app = jwks_app(&server, 30).await;
    // A critical header extension, signed like any other token.
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    let mut value = serde_json::to_value(&header).unwrap();
    value["crit"] = json!(["exp"]);
    let encoded_header = URL_SAFE_NO_PAD.encode(value.to_string());
    let body = URL_SAFE_NO_PAD.encode(claims("alice").to_string());
    let signing_input = format!("{encoded_header}.{body}");
    let signature =
        jsonwebtoken::crypto::sign(signing_input.as_bytes(), &rsa.encoding, Algorithm::RS256)
            .unwrap();
    assert_refused(&app, &format!("{signing_input}.{signature}"), "crit").await;
    app.stop().await;
}
crate::case!(in_jwks_mode_a_critical_header_extension_is_refused);
