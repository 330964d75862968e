//! A NUL character in a URL, on every kind of route. Hostile and malformed bodies on every
//! write route: NUL characters, content after the
//! JSON value, nesting without bound, lone surrogates and invalid UTF-8 in ignored
//! fields, bodies over 1 MiB. Each is a 400 (413) problem that names what is wrong, the
//! same on both backends, and nothing is written.

use reqwest::Method;
use serde_json::Value;
use studyhall::config::ServeSettings;

use crate::helpers::{json, TestApp};
use crate::on_every_backend_with;

const SECRET: &str = "hostile-test-secret-0123456789";
const ADMIN: &str = "hostile-admin-token-0123456789";
const USER: &str = "9c1b2f8e-6d0a-4a2b-8a57-0b7b0e5d8f11";
const COURSE: &str = "2f6a4f2e-3b1c-4d5e-9f70-1a2b3c4d5e6f";

fn configure(settings: &mut ServeSettings) {
    settings.auth.jwt_secret = Some(SECRET.parse().unwrap());
    settings.admin_token = Some(ADMIN.parse().unwrap());
}

fn token() -> String {
    studyhall::auth::mint_hs256(
        SECRET,
        "sub",
        USER,
        Some("h@example.com"),
        std::time::Duration::from_secs(600),
    )
    .unwrap()
}

/// A request to a write route as the caller that route needs (the admin for limits).
fn request(
    app: &TestApp,
    method: Method,
    path: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::RequestBuilder {
    let request = app
        .client
        .request(method, app.url(path))
        .header("Content-Type", "application/json")
        .body(body);
    if path.starts_with("/api/v1/viewers") {
        request.bearer_auth(ADMIN)
    } else {
        request.bearer_auth(token())
    }
}

/// Sends `body` as is to a write route.
async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, Value) {
    json(request(app, method, path, body).send().await.unwrap()).await
}

/// Every write route with a valid body in which `{text}` stands for a string value.
fn routes() -> Vec<(Method, String, &'static str)> {
    vec![
        (
            Method::POST,
            "/api/events".into(),
            r#"{"component": "{text}", "data": {"k": 1}, "email": "a@b.io", "environment": "test", "message": "m"}"#,
        ),
        (
            Method::POST,
            "/users/me".into(),
            r#"{"first_name": "{text}", "last_name": "L"}"#,
        ),
        (
            Method::PUT,
            "/users/me".into(),
            r#"{"description": "{text}"}"#,
        ),
        (
            Method::POST,
            "/friendship/requests".into(),
            r#"{"user_id2": "{text}"}"#,
        ),
        (
            Method::POST,
            format!("/courses/{COURSE}"),
            r#"{"sessionId": "a1b2c3d4-0000-4000-8000-000000000001", "totalModulesStudied": 1, "averageScore": 50, "timeStudied": 10, "note": "{text}"}"#,
        ),
        (
            Method::POST,
            "/stats/student/grade".into(),
            r#"{"student_id": "{text}", "course_id": "c1", "grade": 5}"#,
        ),
        (
            Method::POST,
            "/stats/student/task/grade".into(),
            r#"{"student_id": "s", "course_id": "c1", "task_id": "{text}", "grade": 5}"#,
        ),
        (
            Method::POST,
            "/api/v1/streams".into(),
            r#"{"video_name": "{text}"}"#,
        ),
        (
            Method::POST,
            "/api/v1/stream".into(),
            r#"{"video_name": "{text}"}"#,
        ),
        (
            Method::PUT,
            "/api/v1/viewers/bob/limit".into(),
            r#"{"limit": 5, "note": "{text}"}"#,
        ),
    ]
}

/// Nothing any of the write routes could have stored is there.
async fn nothing_written(app: &TestApp) {
    let (_, events) = json(app.get("/api/events").await).await;
    assert_eq!(
        events["events"],
        serde_json::json!([]),
        "an event was stored"
    );
    let me = app
        .client
        .get(app.url("/users/me"))
        .bearer_auth(token())
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 404, "a profile was created");
    let (status, _) = json(
        app.client
            .get(app.url(&format!("/courses/{COURSE}")))
            .header("X-User-Id", USER)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404, "a session was stored");
    let (_, jobs) = json(
        app.client
            .get(app.url("/jobs"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(jobs["jobs"], serde_json::json!([]), "a grade was queued");
    let (_, streams) = json(
        app.client
            .get(app.url("/api/v1/streams"))
            .bearer_auth(token())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(streams["active_streams"], 0, "a stream was started");
    let (_, bob) = json(
        app.client
            .get(app.url("/api/v1/streams"))
            .header("X-User-Id", "bob")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(bob["limit"], 3, "a viewer limit was set");
}

on_every_backend_with! {
    configure;

    async fn a_nul_character_in_any_string_is_a_400_naming_the_field(app) {
        for (method, path, template) in routes() {
            let body = template.replace("{text}", "a\\u0000b");
            let (status, problem) = send(&app, method.clone(), &path, body.clone()).await;
            assert_eq!(status, 400, "{method} {path}: {problem}");
            let text = problem.to_string();
            assert!(text.contains("NUL") || text.contains("Invalid input"), "{method} {path}: {problem}");
        }
        let (_, problem) = send(&app, Method::POST, "/api/events", r#"{"component": "c", "data": {"deep": ["ok", "a\u0000"]}, "email": "a@b.io", "environment": "e", "message": "m"}"#).await;
        assert!(problem["detail"].as_str().unwrap().contains("data.deep[1]"), "{problem}");
        nothing_written(&app).await;
    }

    async fn a_nul_character_in_a_url_is_a_400_on_every_route(app) {
        let urls = [
            (Method::GET, "/api/events?component=a%00b"),
            (Method::GET, "/api/events?email=a%00b"),
            (Method::GET, "/api/events?environment=a%00b"),
            (Method::GET, "/api/events?message=a%00b"),
            (Method::GET, "/api/events/export?message=a%00b"),
            (Method::GET, "/users/search/email/a%00b"),
            (Method::GET, "/users/search/name/a%00b"),
            (Method::GET, "/friendship/search/email/a%00b"),
            (Method::GET, "/friendship/search/name/a%00b"),
            (Method::GET, "/jobs/%00"),
            (Method::POST, "/jobs/%00/retry"),
            (Method::GET, "/no/such/route%00"),
        ];
        for (method, url) in urls {
            let credential = if url.starts_with("/jobs") || url.contains("export") { ADMIN.to_owned() } else { token() };
            let request = app.client.request(method.clone(), app.url(url)).bearer_auth(credential);
            let (status, problem) = json(request.send().await.unwrap()).await;
            assert_eq!(status, 400, "{method} {url}: {problem}");
            assert!(problem["detail"].as_str().unwrap().contains("NUL"), "{method} {url}: {problem}");
        }
        nothing_written(&app).await;
    }

    async fn content_after_the_json_value_is_refused(app) {
        for (method, path, template) in routes() {
            let body = template.replace("{text}", "x");
            for tail in ["xyz", " {\"again\": 1}", "]"] {
                let (status, problem) = send(&app, method.clone(), &path, format!("{body}{tail}")).await;
                assert_eq!(status, 400, "{method} {path} + {tail}: {problem}");
            }
        }
        nothing_written(&app).await;
    }

    async fn a_body_naming_a_field_twice_is_refused_by_name_on_every_route(app) {
        for (method, path, template) in routes() {
            let valid = template.replace("{text}", "x");
            let key = valid.split('"').nth(1).unwrap().to_owned();
            let value = serde_json::from_str::<serde_json::Value>(&valid).unwrap()[&key].to_string();
            let twice = valid.replacen('{', &format!(r#"{{"{key}": {value}, "#), 1);
            let (status, problem) = send(&app, method.clone(), &path, twice).await;
            assert_eq!(status, 400, "{method} {path}: {problem}");
            let detail = problem["detail"].as_str().unwrap();
            assert!(detail.contains(&format!("duplicate field `{key}`")), "{method} {path}: {problem}");
        }
        nothing_written(&app).await;
    }

    async fn a_lone_surrogate_or_invalid_utf8_even_in_an_ignored_field_is_refused(app) {
        for (method, path, template) in routes() {
            let valid = template.replace("{text}", "x");
            let surrogate = valid.replacen('{', r#"{"ignored": "\ud800", "#, 1);
            let (status, problem) = send(&app, method.clone(), &path, surrogate).await;
            assert_eq!(status, 400, "{method} {path} (surrogate): {problem}");
            let mut invalid = valid.replacen('{', "{\"ignored\": \"", 1).into_bytes();
            let at = "{\"ignored\": \"".len();
            invalid.splice(at..at, [0xff, b'"', b',', b' ']);
            let (status, problem) = send(&app, method.clone(), &path, invalid).await;
            assert_eq!(status, 400, "{method} {path} (invalid UTF-8): {problem}");
        }
        nothing_written(&app).await;
    }

    async fn nesting_deeper_than_64_levels_is_refused(app) {
        let nested = |levels: usize| format!("{}1{}", "[".repeat(levels), "]".repeat(levels));
        let event = |data: String| format!(r#"{{"component": "c", "data": {data}, "email": "a@b.io", "environment": "e", "message": "m"}}"#);
        let (status, problem) = send(&app, Method::POST, "/api/events", event(nested(500_000))).await;
        assert_eq!(status, 400, "{problem}");
        assert!(problem["detail"].as_str().unwrap().contains("deeper than 64"), "{problem}");
        nothing_written(&app).await;
        // The event object is one level, so its data may nest 63 more.
        let (status, stored) = send(&app, Method::POST, "/api/events", event(nested(63))).await;
        assert_eq!(status, 201, "{stored}");
    }

    async fn a_body_over_one_mebibyte_is_a_413_problem_on_every_write_route(app) {
        let big = format!(r#"{{"pad": "{}"}}"#, "x".repeat(1024 * 1024 + 10));
        for (method, path, _) in routes() {
            let response = request(&app, method.clone(), &path, big.clone()).send().await.unwrap();
            assert_eq!(response.status(), 413, "{method} {path}");
            assert_eq!(response.headers()["content-type"], "application/problem+json", "{method} {path}");
        }
    }
}
