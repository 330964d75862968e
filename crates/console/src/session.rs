//! Console sessions. Logging in turns a credential (the admin token, or a bearer token
//! whose groups name the operator or reader group) into a random cookie; only its
//! SHA-256 is stored, with who logged in, their role, the form token every change must
//! send back, and the expiry. Logging out deletes the row, so a copied cookie dies with
//! it. Logins, refused logins and logouts are recorded in the audit log.

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use maud::{html, Markup};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::layout::{self, Failure};
use super::Console;
use futures_util::future::BoxFuture;
use studyhall_auth::Auth;
use studyhall_core::clock::{Clock, Micros};
use studyhall_core::db::Db;
use studyhall_core::sql::Sql;
use studyhall_log::{Actor, Decision};
use studyhall_ui::{Change, FindSession, Nav, Role, Session};

pub(crate) const COOKIE: &str = "studyhall_console";

/// Finds the session a request's cookie names, in `console_sessions`.
pub(crate) struct Stored {
    pub(crate) db: Db,
    pub(crate) clock: Clock,
    /// The pages of this console, for every page's navigation.
    pub(crate) nav: Nav,
}

impl FindSession for Stored {
    fn find<'a>(&'a self, parts: &'a Parts) -> BoxFuture<'a, Result<Session, Response>> {
        Box::pin(async move {
            let auth =
                studyhall_auth::auth_of(parts).map_err(|err| Failure::from(err).into_response())?;
            if !auth.admin_configured() {
                return Err(layout::console_off().into_response());
            }
            let found = match cookie(&parts.headers) {
                Some(secret) => find(&self.db, &secret, self.clock.now())
                    .await
                    .map_err(|err| Failure::from(err).into_response())?,
                None => None,
            };
            let mut session = found.ok_or_else(|| to_login(parts))?;
            session.nav = self.nav.clone();
            Ok(session)
        })
    }
}

/// Sends a visitor without a session to the login page, and back here afterwards; an
/// htmx request is told to load the login page whole.
fn to_login(parts: &Parts) -> Response {
    let here = parts
        .uri
        .path_and_query()
        .map_or("/console", |path| path.as_str());
    let login = format!("/console/login?next={}", layout::urlencoded(here));
    if parts.headers.contains_key("hx-request") {
        let mut response = StatusCode::UNAUTHORIZED.into_response();
        if let Ok(location) = HeaderValue::from_str(&login) {
            response.headers_mut().insert("hx-redirect", location);
        }
        return response;
    }
    Redirect::to(&login).into_response()
}

/// The session cookie's value, if the request has one.
fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

fn digest(secret: &str) -> String {
    studyhall_log::chain::hex(&Sha256::digest(secret.as_bytes()))
}

fn random_token() -> Result<String, Failure> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|err| Failure::internal(anyhow::anyhow!("no randomness for a session: {err}")))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

async fn find(db: &Db, secret: &str, now: Micros) -> Result<Option<Session>, sqlx::Error> {
    let row: Option<(String, String, String, String, i64)> = Sql::new(
        "SELECT id, operator, role, csrf, expires_at FROM console_sessions WHERE id = $1 AND expires_at > $2",
    )
    .bind(digest(secret))
    .bind(now)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|(id, operator, role, csrf, expires_at)| {
        let role = if role == "operator" {
            Role::Operator
        } else {
            Role::Reader
        };
        Session::new(id, operator, role, csrf, Micros(expires_at))
    }))
}

/// Forgets expired sessions, every ten minutes.
pub(crate) async fn forget_expired(db: Db, clock: Clock) {
    loop {
        let forgotten = Sql::new("DELETE FROM console_sessions WHERE expires_at <= $1")
            .bind(clock.now())
            .execute(&db)
            .await;
        if let Err(err) = forgotten {
            tracing::warn!(error = %err, "forgetting expired console sessions failed");
        }
        clock.sleep(Duration::from_secs(600)).await;
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginQuery {
    next: Option<String>,
}

/// Where to go after logging in: a console page, never another site.
fn next_page(next: Option<&str>) -> &str {
    match next {
        Some(next) if next.starts_with("/console") && !next.starts_with("/console/login") => next,
        _ => "/console",
    }
}

pub(crate) async fn login_page(
    Extension(auth): Extension<std::sync::Arc<Auth>>,
    Query(query): Query<LoginQuery>,
) -> Response {
    if !auth.admin_configured() {
        return layout::console_off().into_response();
    }
    login_form(next_page(query.next.as_deref()), None).into_response()
}

fn login_form(next: &str, refused: Option<&str>) -> Markup {
    layout::bare(
        "Log in",
        html! {
            main.login {
                h1 { "studyhall console" }
                @if let Some(refused) = refused {
                    p.notice.error role="alert" { (refused) }
                }
                form method="post" action="/console/login" {
                    input type="hidden" name="next" value=(next);
                    label for="token" { "Admin token, or a bearer token of an operator or reader group" }
                    input #token type="password" name="token" autocomplete="current-password" required autofocus;
                    button type="submit" { "Log in" }
                }
            }
        },
    )
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    token: String,
    next: Option<String>,
}

/// Checks the credential and opens a session, or shows the form again with the reason.
pub(crate) async fn login(
    State(console): State<Console>,
    Extension(auth): Extension<std::sync::Arc<Auth>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, Failure> {
    if !auth.admin_configured() {
        return Ok(layout::console_off().into_response());
    }
    let next = next_page(form.next.as_deref()).to_owned();
    let token = form.token.trim();
    let who = match who_logs_in(&auth, &console, token).await {
        Ok(who) => who,
        Err(reason) => {
            if console.audited {
                let anonymous = Actor::user(None, None);
                console
                    .refused_logins
                    .note(anonymous, serde_json::json!({"reason": reason}));
            }
            let page = login_form(&next, Some(reason));
            return Ok((StatusCode::UNAUTHORIZED, page).into_response());
        }
    };
    let (operator, role) = who;
    let secret = random_token()?;
    let csrf = random_token()?;
    let ttl = studyhall_core::clock::duration_micros(console.settings.console_session_ttl);
    let now = console.queue.clock().now().0;
    let mut tx = console.db.begin_write().await?;
    Sql::new(
        "INSERT INTO console_sessions (id, operator, role, csrf, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(digest(&secret))
    .bind(operator.as_str())
    .bind(role.as_str())
    .bind(csrf.as_str())
    .bind(now)
    .bind(now.saturating_add(ttl))
    .execute(&mut tx)
    .await?;
    let mut decisions = Vec::new();
    if console.audited {
        let data = serde_json::json!({"role": role.as_str()});
        let login = Decision::new(
            "studyhall.console",
            "console.login",
            Actor::operator_named(&operator),
            data,
        );
        decisions.push(login);
    }
    studyhall_log::commit(tx, &decisions, Micros(now)).await?;
    let max_age = console.settings.console_session_ttl.as_secs();
    let cookie = format!(
        "{COOKIE}={secret}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        secure_attribute(&headers)
    );
    let mut response = Redirect::to(&next).into_response();
    if let Ok(cookie) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// `; Secure` when the browser reached us over TLS (a proxy in front says so).
fn secure_attribute(headers: &HeaderMap) -> &'static str {
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|proto| proto.to_str().ok())
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"));
    if https {
        "; Secure"
    } else {
        ""
    }
}

/// Who a credential logs in as, or why it does not (a sentence for the form).
async fn who_logs_in(
    auth: &Auth,
    console: &Console,
    token: &str,
) -> Result<(String, Role), &'static str> {
    if token.is_empty() {
        return Err("Paste the admin token or your bearer token.");
    }
    if auth.is_admin_token(token) {
        return Ok(("admin".to_owned(), Role::Operator));
    }
    let Ok(user) = auth.verify(token).await else {
        return Err("That is neither the admin token nor a valid bearer token.");
    };
    let name = user.email.clone().unwrap_or_else(|| user.id.clone());
    if user.has_scope(&console.settings.console_operator_group) {
        Ok((name, Role::Operator))
    } else if user.has_scope(&console.settings.console_reader_group) {
        Ok((name, Role::Reader))
    } else {
        Err("That token is valid, but its groups name neither the console's operator group nor its reader group.")
    }
}

/// Ends the session: its row is deleted and the cookie cleared.
pub(crate) async fn logout(
    State(console): State<Console>,
    session: Session,
    Form(form): Form<Change>,
) -> Result<Response, Failure> {
    // Read-only sessions may log out too: only the form token is checked.
    use subtle::ConstantTimeEq;
    if !bool::from(form.csrf.as_bytes().ct_eq(session.csrf.as_bytes())) {
        return Err(Failure::forbidden(
            "This form has expired. Reload the page and log out again.",
        ));
    }
    let mut tx = console.db.begin_write().await?;
    Sql::new("DELETE FROM console_sessions WHERE id = $1")
        .bind(session.id())
        .execute(&mut tx)
        .await?;
    let mut decisions = Vec::new();
    if console.audited {
        let logout = Decision::new(
            "studyhall.console",
            "console.logout",
            session.actor(),
            serde_json::json!({}),
        );
        decisions.push(logout);
    }
    studyhall_log::commit(tx, &decisions, console.queue.clock().now()).await?;
    let mut response = Redirect::to("/console/login").into_response();
    let cleared = format!("{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0");
    if let Ok(cleared) = HeaderValue::from_str(&cleared) {
        response.headers_mut().insert(header::SET_COOKIE, cleared);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cookie_is_found_among_others_and_next_stays_on_the_console() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; studyhall_console=abc; b=2"),
        );
        assert_eq!(cookie(&headers).as_deref(), Some("abc"));
        assert_eq!(cookie(&HeaderMap::new()), None);
        assert_eq!(
            next_page(Some("/console/jobs?state=dead")),
            "/console/jobs?state=dead"
        );
        assert_eq!(next_page(Some("https://evil.example/")), "/console");
        assert_eq!(next_page(Some("//evil.example")), "/console");
        assert_eq!(next_page(Some("/console/login")), "/console");
        assert_eq!(next_page(None), "/console");
    }
}
