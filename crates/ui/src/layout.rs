//! The console's page shell, its error pages and the small pieces every page uses.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

use crate::session::{Role, Session};
use studyhall_core::clock::Micros;
use studyhall_core::error::ApiError;

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            // htmx may not add inline styles (the policy forbids them) nor evaluate code.
            meta name="htmx-config" content=r#"{"includeIndicatorStyles": false, "allowEval": false, "allowScriptTags": false}"#;
            title { (title) " · studyhall" }
            link rel="stylesheet" href=(crate::assets::url("console.css"));
            link rel="icon" href=(crate::assets::url("favicon.svg")) type="image/svg+xml";
            script src=(crate::assets::url("htmx.min.js")) defer {}
        }
    }
}

/// A console page: the navigation with `current` marked, who is logged in, and the
/// content.
pub fn page(title: &str, session: &Session, current: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/console" { "studyhall" }
                    nav aria-label="Console" {
                        ul {
                            @for (path, name) in session.nav.iter() {
                                li {
                                    @if *path == current {
                                        a href=(path) aria-current="page" { (name) }
                                    } @else {
                                        a href=(path) { (name) }
                                    }
                                }
                            }
                            li { a href="/docs" { "API" } }
                        }
                    }
                    div.who {
                        span { (session.operator) }
                        @if session.role == Role::Reader {
                            span.badge title="You can look at everything and change nothing." { "read-only" }
                        }
                        form method="post" action="/console/logout" {
                            input type="hidden" name="csrf" value=(session.csrf);
                            button.link type="submit" { "Log out" }
                        }
                    }
                }
                main #main { h1 { (title) } (content) }
            }
        }
    }
}

/// A page outside the console's navigation (login, errors, the landing page).
pub fn bare(title: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body.bare { (content) }
        }
    }
}

/// What `/console` shows while no admin credential exists.
pub fn console_off() -> (StatusCode, Markup) {
    let page = bare(
        "Console off",
        html! {
            main.login {
                h1 { "The console is off" }
                p { "It turns on once an admin credential exists. Start the server with an admin token:" }
                pre { code { "STUDYHALL_ADMIN_TOKEN=$(openssl rand -hex 32) studyhall serve" } }
                p { "Then open " a href="/console" { "/console" } " and log in with that token. Operators with a bearer token whose groups name "
                    code { "studyhall-operators" } " (or "
                    code { "studyhall-readers" } ", read-only) may log in with it too (" code { "STUDYHALL_CONSOLE_OPERATOR_GROUP" } ", "
                    code { "STUDYHALL_CONSOLE_READER_GROUP" } ")." }
                p { a href="/" { "Back to the start page" } }
            }
        },
    );
    (StatusCode::FORBIDDEN, page)
}

/// A console request that could not be answered: its status and a sentence for the
/// operator. Server errors are logged with their cause and shown without it.
#[derive(Debug)]
pub struct Failure {
    status: StatusCode,
    message: String,
}

impl Failure {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
        }
    }

    pub fn forbidden(message: impl Into<String>) -> Failure {
        Failure::new(StatusCode::FORBIDDEN, message)
    }

    pub fn bad_request(message: impl Into<String>) -> Failure {
        Failure::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Failure {
        Failure::new(StatusCode::NOT_FOUND, message)
    }

    pub fn internal(cause: anyhow::Error) -> Failure {
        Failure::from(ApiError::Internal(cause))
    }

    /// The sentence for a refused request, when the request itself was at fault (a
    /// page shows it and stays where the operator is); `None` for any other failure.
    pub fn refusal(&self) -> Option<&str> {
        (self.status == StatusCode::BAD_REQUEST).then_some(self.message.as_str())
    }
}

/// Any `/console/…` path that is no page: the console's own 404, not the API's.
pub async fn no_such_page() -> Failure {
    Failure::not_found("There is no such console page.")
}

impl From<ApiError> for Failure {
    fn from(error: ApiError) -> Failure {
        let status = error.status_code();
        let message = if status.is_server_error() {
            // The API's own response logs the cause; render it through it.
            let _logged = error.into_response();
            match status {
                StatusCode::SERVICE_UNAVAILABLE => {
                    "The database or Redis is not answering just now; nothing was changed. Try again in a moment.".to_owned()
                }
                _ => "Something went wrong on our side; nothing was changed. The server log has the details.".to_owned(),
            }
        } else {
            error.to_string()
        };
        Failure { status, message }
    }
}

impl From<sqlx::Error> for Failure {
    fn from(error: sqlx::Error) -> Failure {
        Failure::from(ApiError::from(error))
    }
}

impl From<studyhall_core::error::StoreError> for Failure {
    fn from(error: studyhall_core::error::StoreError) -> Failure {
        Failure::from(ApiError::from(error))
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error").to_owned();
        let page = bare(
            &title,
            html! {
                main.login {
                    h1 { (title) }
                    p.notice.error role="alert" { (self.message) }
                    p { a href="/console" { "Back to the console" } }
                }
            },
        );
        (self.status, page).into_response()
    }
}

/// A time as the console shows it: UTC to the second.
pub fn at(micros: Micros) -> String {
    let text = micros.rfc3339();
    match text.split_once('.') {
        Some((seconds, _)) => format!("{}Z", seconds.replace('T', " ")),
        None => text.replace('T', " "),
    }
}

/// `at` as a person reads it in a list: how long ago (or how soon) from now, with the
/// exact time on hover and for machines.
pub fn when(at: Micros) -> Markup {
    html! { time datetime=(at.rfc3339()) title=(self::at(at)) { (relative(at, Micros::now())) } }
}

/// How far `at` is from `now`, in the largest whole unit: `12 s ago`, `in 3 min`.
fn relative(at: Micros, now: Micros) -> String {
    let seconds = (now.0 - at.0) / 1_000_000;
    let (amount, unit) = match seconds.unsigned_abs() {
        0 => return "just now".to_owned(),
        s @ 1..60 => (s, "s"),
        s @ 60..3600 => (s / 60, "min"),
        s @ 3600..172_800 => (s / 3600, "h"),
        s => (s / 86_400, "d"),
    };
    if seconds > 0 {
        format!("{amount} {unit} ago")
    } else {
        format!("in {amount} {unit}")
    }
}

/// A duration in µs in the unit that reads best.
pub fn duration(micros: f64) -> String {
    if micros < 1000.0 {
        format!("{micros:.0} µs")
    } else if micros < 1_000_000.0 {
        format!("{:.1} ms", micros / 1000.0)
    } else if micros < 120_000_000.0 {
        format!("{:.1} s", micros / 1_000_000.0)
    } else {
        format!("{:.0} min", micros / 60_000_000.0)
    }
}

/// A notice above a page's content after an action (`?done=…`): one of the texts
/// the console's own redirects name, never text from the address.
pub fn notice(done: Option<&str>) -> Markup {
    // A bulk retry says how many it queued again.
    if let Some(count) = done
        .and_then(|done| done.strip_prefix("retried-"))
        .and_then(|count| count.parse::<u64>().ok())
    {
        return html! { p.notice role="status" {
            @if count == 0 { "No dead job matched any more; nothing was changed." }
            @else { "Queued " (count) " dead " (if count == 1 { "job" } else { "jobs" }) " again with fresh attempts." }
        } };
    }
    let text = match done {
        Some("retried") => "Queued again with fresh attempts.",
        Some("deleted") => "Deleted.",
        Some("due") => "Due now: a worker runs it next; its attempts so far still count.",
        Some("paused") => "Paused: workers claim no job of this kind until it is resumed.",
        Some("resumed") => "Resumed: workers claim this kind again.",
        Some("ended") => "The stream was ended; its slot is free.",
        Some("limit") => "The viewer's limit was saved.",
        Some("nothing") => "Nothing matched; nothing was changed.",
        _ => return html! {},
    };
    html! { p.notice role="status" { (text) } }
}

/// A text a form sent: trimmed, empty as none, at most [`MAX_TEXT`] characters and no
/// control character (PostgreSQL text cannot hold a NUL).
pub fn field(value: Option<&str>, what: &str) -> Result<Option<String>, Failure> {
    match value.map(str::trim).filter(|value| !value.is_empty()) {
        Some(value) if value.chars().count() > MAX_TEXT || value.chars().any(char::is_control) => {
            Err(Failure::bad_request(format!(
                "The {what} must be up to {MAX_TEXT} printable characters."
            )))
        }
        other => Ok(other.map(str::to_owned)),
    }
}

/// The longest text a form field takes.
pub const MAX_TEXT: usize = 200;

/// A module's store, or a 404 saying the server does not serve that module.
pub fn served<'a, T>(store: &'a Option<T>, module: &str) -> Result<&'a T, Failure> {
    store.as_ref().ok_or_else(|| {
        Failure::not_found(format!(
            "This server does not serve the {module} module (STUDYHALL_MODULES)."
        ))
    })
}

/// `text` for a query string or a path segment.
pub fn urlencoded(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// The hidden form token of a change.
pub fn csrf(session: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(session.csrf); }
}

/// A form posting to `action` with one button, disabled for read-only sessions.
pub fn action_button(
    session: &Session,
    action: &str,
    label: &str,
    confirm: Option<&str>,
) -> Markup {
    button_form(session, action, label, (confirm, None))
}

/// An action that cannot be undone (a delete): styled apart, and always confirmed.
pub fn destructive_button(session: &Session, action: &str, label: &str, confirm: &str) -> Markup {
    button_form(session, action, label, (Some(confirm), Some("danger")))
}

fn button_form(
    session: &Session,
    action: &str,
    label: &str,
    (confirm, class): (Option<&str>, Option<&str>),
) -> Markup {
    // With htmx the browser asks to confirm first (a boosted form); without it the
    // form posts at once.
    html! {
        form.inline method="post" action=(action) hx-boost=[confirm.map(|_| "true")] hx-confirm=[confirm] {
            (csrf(session))
            @if session.role == Role::Operator {
                button type="submit" class=[class] { (label) }
            } @else {
                button type="submit" class=[class] disabled title="Read-only: you cannot change anything." { (label) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_take_the_largest_whole_unit() {
        let now = Micros(1_764_662_400_000_000);
        let ago = |seconds: i64| relative(Micros(now.0 - seconds * 1_000_000), now);
        assert_eq!(ago(0), "just now");
        assert_eq!(ago(12), "12 s ago");
        assert_eq!(ago(59), "59 s ago");
        assert_eq!(ago(60), "1 min ago");
        assert_eq!(ago(3599), "59 min ago");
        assert_eq!(ago(3600), "1 h ago");
        assert_eq!(ago(47 * 3600), "47 h ago");
        assert_eq!(ago(3 * 86_400), "3 d ago");
        assert_eq!(ago(-90), "in 1 min");
    }

    #[test]
    fn times_and_durations_read_well() {
        assert_eq!(at(Micros(1_764_662_400_123_456)), "2025-12-02 08:00:00Z");
        assert_eq!(at(Micros(1_764_662_400_000_000)), "2025-12-02 08:00:00Z");
        assert_eq!(duration(250.0), "250 µs");
        assert_eq!(duration(2500.0), "2.5 ms");
        assert_eq!(duration(2_500_000.0), "2.5 s");
        assert_eq!(duration(600_000_000.0), "10 min");
    }
}
