//! The console at `/console`: who may open it, that changes need an operator's session
//! with its form token from the console's own pages, that a read-only session changes
//! nothing, and that each page shows and does what it says, on SQLite and PostgreSQL.

use std::time::{Duration, Instant};

use reqwest::redirect::Policy;
use reqwest::{Client, Response};
use serde_json::{json, Value};
use studyhall::config::ServeSettings;
use studyhall::db::Db;
use studyhall::sql::Sql;

use crate::helpers::{json, TestApp};
use crate::on_every_backend_each;

const ADMIN: &str = "console-admin-token-0123456789";
const SECRET: &str = "console-test-secret-0123456789abcdef";

fn with_admin_kicking_the_oldest(settings: &mut ServeSettings) {
    with_admin(settings);
    settings.streams.stream_policy = studyhall::config::StreamPolicy::KickOldest;
}

fn with_admin(settings: &mut ServeSettings) {
    settings.admin_token = Some(ADMIN.parse().unwrap());
    settings.auth.jwt_secret = Some(SECRET.parse().unwrap());
    // A job dies at its first failure, so tests need not wait for retries.
    settings.jobs.job_max_attempts = 1;
}

fn without_admin(_: &mut ServeSettings) {}

fn stats_alone(settings: &mut ServeSettings) {
    with_admin(settings);
    settings.modules = vec!["stats".into(), "console".into()];
}

fn with_two_attempts(settings: &mut ServeSettings) {
    with_admin(settings);
    settings.jobs.job_max_attempts = 2;
}

/// A bearer token for `sub` in `groups`.
fn token_in(sub: &str, groups: &[&str]) -> String {
    token_with(sub, json!({"cognito:groups": groups}))
}

fn with_roles_claim(settings: &mut ServeSettings) {
    with_admin(settings);
    settings.auth.jwt_groups_claim = "roles".into();
}

fn token_with(sub: &str, extra: Value) -> String {
    crate::helpers::token_with(SECRET, sub, extra)
}

/// A browser: follows no redirect, so each answer is seen as sent.
fn browser() -> Client {
    Client::builder()
        .no_proxy()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

/// A logged-in browser: its cookie and the session's form token.
struct Login {
    client: Client,
    cookie: String,
    csrf: String,
}

impl Login {
    async fn get(&self, app: &TestApp, path: &str) -> Response {
        self.client
            .get(app.url(path))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap()
    }

    /// A form post from the console's own page (the browser says same-origin).
    async fn post(&self, app: &TestApp, path: &str, form: &[(&str, &str)]) -> Response {
        let mut fields = vec![("csrf", self.csrf.as_str())];
        fields.extend_from_slice(form);
        self.client
            .post(app.url(path))
            .header("cookie", &self.cookie)
            .header("sec-fetch-site", "same-origin")
            .form(&fields)
            .send()
            .await
            .unwrap()
    }

    async fn page(&self, app: &TestApp, path: &str) -> String {
        let response = self.get(app, path).await;
        assert_eq!(response.status(), 200, "{path}");
        response.text().await.unwrap()
    }
}

async fn try_login(app: &TestApp, token: &str) -> Response {
    browser()
        .post(app.url("/console/login"))
        .form(&[("token", token), ("next", "/console/jobs")])
        .send()
        .await
        .unwrap()
}

async fn login(app: &TestApp, token: &str) -> Login {
    let response = try_login(app, token).await;
    assert_eq!(response.status(), 303, "login refused");
    let set_cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let client = browser();
    let page = client
        .get(app.url("/console"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = form_token(&page);
    Login {
        client,
        cookie,
        csrf,
    }
}

fn form_token(page: &str) -> String {
    let marker = r#"name="csrf" value=""#;
    let start = page
        .find(marker)
        .unwrap_or_else(|| panic!("a form token on the page: {page}"))
        + marker.len();
    page[start..].split('"').next().unwrap().to_owned()
}

async fn db(app: &TestApp) -> Db {
    Db::connect(&app.database_url, 1).await.unwrap()
}

/// A job of a real kind whose payload does not decode: the worker fails it (dead at
/// once with one attempt allowed).
async fn broken_job(app: &TestApp, id: &str) {
    let db = db(app).await;
    let now = studyhall::clock::now_micros();
    Sql::new(
        "INSERT INTO jobs (id, kind, payload, state, attempts, max_attempts, run_at, created_at)
         VALUES ($1, 'grades.course_grade', '{\"not\": \"a grade\"}', 'queued', 0, $2, $3, $3)",
    )
    .bind(id)
    .bind(1i64)
    .bind(now)
    .execute(&db)
    .await
    .unwrap();
    db.close().await;
}

async fn job_state(app: &TestApp, id: &str) -> Option<String> {
    let db = db(app).await;
    let state: Option<String> = Sql::new("SELECT state FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_scalar(&db)
        .await
        .unwrap();
    db.close().await;
    state
}

async fn wait_for_state(app: &TestApp, id: &str, state: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if job_state(app, id).await.as_deref() == Some(state) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} never became {state}: {:?}",
            job_state(app, id).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The console's records, oldest first.
async fn console_records(app: &TestApp, component: &str) -> Vec<Value> {
    let response = app
        .client
        .get(app.url(&format!(
            "/api/events?component={component}&order=asc&limit=1000"
        )))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    let (status, body) = json(response).await;
    assert_eq!(status, 200, "{body}");
    body["events"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| body.as_array().cloned().unwrap_or_default())
}

fn messages(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|record| record["message"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Every page, as an operator would open them.
const PAGES: [&str; 9] = [
    "/console",
    "/console/overview/live",
    "/console/jobs",
    "/console/jobs?state=dead",
    "/console/events",
    "/console/events?live=1",
    "/console/streams",
    "/console/analytics?course=c1&student=s1",
    "/console/people?q=someone",
];

/// Every change, with a form that would otherwise be accepted.
fn changes(job: &str) -> Vec<(String, Vec<(&'static str, &'static str)>)> {
    vec![
        (format!("/console/jobs/{job}/retry"), vec![]),
        (format!("/console/jobs/{job}/delete"), vec![]),
        ("/console/jobs/retry-dead".to_owned(), vec![]),
        (
            "/console/jobs/kinds/grades.course_grade/pause".to_owned(),
            vec![],
        ),
        (
            "/console/jobs/kinds/grades.course_grade/resume".to_owned(),
            vec![],
        ),
        (
            "/console/streams/end".to_owned(),
            vec![("viewer", "user:v1"), ("id", "s1")],
        ),
        (
            "/console/streams/limit".to_owned(),
            vec![("viewer", "user:v1"), ("limit", "7")],
        ),
    ]
}

on_every_backend_each! {
    async fn without_an_admin_token_the_console_says_how_to_turn_it_on(app, without_admin) {
        for path in ["/console", "/console/jobs", "/console/login"] {
            let response = browser().get(app.url(path)).send().await.unwrap();
            assert_eq!(response.status(), 403, "{path}");
            assert!(response.text().await.unwrap().contains("STUDYHALL_ADMIN_TOKEN"), "{path}");
        }
        let login = try_login(&app, "anything").await;
        assert_eq!(login.status(), 403);
        assert!(login.headers().get("set-cookie").is_none());
        // The start page and the reference need no login.
        let landing = browser().get(app.url("/")).send().await.unwrap();
        assert_eq!(landing.status(), 200);
        assert!(landing.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
        let landing = landing.text().await.unwrap();
        for link in ["/console", "/docs", "/health", "/ready"] {
            assert!(landing.contains(&format!("href=\"{link}\"")), "the start page links {link}");
        }
        let docs = browser().get(app.url("/docs")).send().await.unwrap();
        assert_eq!(docs.status(), 200);
        let docs = docs.text().await.unwrap();
        for text in ["/api/events", "/api/v1/streams", "/stats/student/grade", "/users/me", "/jobs/{id}", "Schemas", "admin_token"] {
            assert!(docs.contains(text), "the reference shows {text}");
        }
        // The reference narrows to the routes a text mentions (path, tag or summary).
        let found = browser().get(app.url("/docs?q=Heartbeat")).send().await.unwrap().text().await.unwrap();
        assert!(found.contains("/api/v1/streams/{id}/heartbeat"), "{found}");
        assert!(!found.contains("href=\"#tag-social\""), "only the streams routes: {found}");
        let none = browser().get(app.url("/docs?q=no-route-says-this")).send().await.unwrap().text().await.unwrap();
        assert!(none.contains("No route mentions that."));
    }

    async fn a_visitor_without_a_session_is_sent_to_log_in_and_changes_nothing(app, with_admin) {
        broken_job(&app, "job-nosession").await;
        wait_for_state(&app, "job-nosession", "dead").await;
        for path in PAGES {
            let response = browser().get(app.url(path)).send().await.unwrap();
            assert_eq!(response.status(), 303, "{path}");
            let location = response.headers()["location"].to_str().unwrap();
            assert!(location.starts_with("/console/login?next="), "{path} → {location}");
            let forged = browser().get(app.url(path)).header("cookie", "studyhall_console=forged").send().await.unwrap();
            assert_eq!(forged.status(), 303, "{path} with a made-up cookie");
            let htmx = browser().get(app.url(path)).header("hx-request", "true").send().await.unwrap();
            assert_eq!(htmx.status(), 401, "{path} from htmx");
            assert!(htmx.headers()["hx-redirect"].to_str().unwrap().starts_with("/console/login"));
        }
        for (path, form) in changes("job-nosession") {
            let response = browser().post(app.url(&path)).form(&form).send().await.unwrap();
            assert_eq!(response.status(), 303, "{path} without a session");
        }
        assert_eq!(job_state(&app, "job-nosession").await.as_deref(), Some("dead"));
        assert_eq!(browser().get(app.url("/console/assets/htmx.min.js")).send().await.unwrap().status(), 200);
    }

    async fn logging_in_takes_the_admin_token_and_opens_a_strict_http_only_session(app, with_admin) {
        for (token, what) in [("", "empty"), ("not-the-admin-token", "wrong"), (&token_in("nobody", &["other-group"]), "no console group")] {
            let refused = try_login(&app, token).await;
            assert_eq!(refused.status(), 401, "{what}");
            assert!(refused.headers().get("set-cookie").is_none(), "{what}");
        }
        let response = try_login(&app, ADMIN).await;
        assert_eq!(response.status(), 303);
        assert_eq!(response.headers()["location"], "/console/jobs");
        let cookie = response.headers()["set-cookie"].to_str().unwrap().to_owned();
        for attribute in ["HttpOnly", "SameSite=Strict", "Path=/console", "Max-Age="] {
            assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
        }
        assert!(!cookie.contains("Secure"), "no TLS here: {cookie}");
        let behind_tls = browser().post(app.url("/console/login"))
            .header("x-forwarded-proto", "https")
            .form(&[("token", ADMIN), ("next", "https://evil.example/")])
            .send().await.unwrap();
        assert_eq!(behind_tls.headers()["location"], "/console", "never to another site");
        assert!(behind_tls.headers()["set-cookie"].to_str().unwrap().contains("; Secure"));
        // Logging out ends the session for good: the same cookie is refused after.
        let session = login(&app, ADMIN).await;
        assert_eq!(session.get(&app, "/console").await.status(), 200);
        let forged = session.client.post(app.url("/console/logout")).header("cookie", &session.cookie)
            .form(&[("csrf", "not-the-token")]).send().await.unwrap();
        assert_eq!(forged.status(), 403);
        assert_eq!(session.post(&app, "/console/logout", &[]).await.status(), 303);
        assert_eq!(session.get(&app, "/console").await.status(), 303, "a logged-out cookie is dead");
        // Each login, refusal and logout is in the audit log, the token never.
        let records = console_records(&app, "studyhall.console").await;
        let messages = messages(&records);
        assert_eq!(messages.iter().filter(|m| *m == "console.login_refused").count(), 3, "{messages:?}");
        assert_eq!(messages.iter().filter(|m| *m == "console.login").count(), 3, "{messages:?}");
        assert_eq!(messages.iter().filter(|m| *m == "console.logout").count(), 1, "{messages:?}");
        let login = records.iter().find(|r| r["message"] == "console.login").unwrap();
        assert_eq!(login["data"]["actor"]["id"], "admin");
        assert!(!serde_json::to_string(&records).unwrap().contains(ADMIN));
    }

    async fn every_page_renders_with_a_strict_content_security_policy(app, with_admin) {
        let session = login(&app, ADMIN).await;
        for path in PAGES {
            let response = session.get(&app, path).await;
            assert_eq!(response.status(), 200, "{path}");
            let headers = response.headers().clone();
            let csp = headers["content-security-policy"].to_str().unwrap();
            assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
            assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{path}: {csp}");
            assert_eq!(headers["x-frame-options"], "DENY");
            assert_eq!(headers["referrer-policy"], "same-origin");
            assert_eq!(headers["cache-control"], "no-store");
            let page = response.text().await.unwrap();
            assert!(!page.contains("style="), "{path} has an inline style");
            assert!(!page.contains("<script>"), "{path} has an inline script");
            assert!(!page.contains(ADMIN), "{path} shows the admin token");
        }
        let docs = browser().get(app.url("/docs")).send().await.unwrap();
        assert!(docs.headers()["content-security-policy"].to_str().unwrap().contains("default-src 'none'"));
    }

    async fn the_overview_counts_requests_under_the_module_whose_router_answered(app, with_admin) {
        let session = login(&app, ADMIN).await;
        let client = browser();
        let posted = client.get(app.url("/courses/not-a-course/sessions/nope")).send().await.unwrap();
        assert!(posted.status().is_client_error());
        assert_eq!(client.get(app.url("/no/such/route")).send().await.unwrap().status(), 404);
        assert_eq!(client.get(app.url("/health")).send().await.unwrap().status(), 200);
        let page = session.page(&app, "/console").await;
        for module in ["stats", "unmatched", "operations", "console"] {
            assert!(page.contains(&format!("<td>{module}</td>")), "the overview has a {module} row");
        }
    }

    async fn the_overview_and_navigation_show_what_each_served_module_adds(app, with_admin) {
        let session = login(&app, ADMIN).await;
        let overview = session.page(&app, "/console/overview/live").await;
        for figure in ["Active streams", "Events today (UTC)", "Jobs waiting"] {
            assert!(overview.contains(figure), "the overview shows {figure}: {overview}");
        }
        assert!(overview.contains("<div class=\"value ok\">"), "the database's state is coloured: {overview}");
        for path in ["/console", "/console/overview/live", "/console/jobs", "/console/events", "/console/streams", "/console/people", "/console/analytics"] {
            let page = session.page(&app, path).await;
            let twice = page.split('<').find(|tag| tag.matches(" class=").count() > 1);
            assert!(twice.is_none(), "{path}: an element with two class attributes (the second is ignored): <{}", twice.unwrap_or_default());
        }
        let page = session.page(&app, "/console").await;
        for (path, title) in [("/console/jobs", "Jobs"), ("/console/events", "Events"), ("/console/streams", "Streams"), ("/console/people", "People"), ("/console/analytics", "Analytics")] {
            assert!(page.contains(&format!("<a href=\"{path}\">{title}</a>")), "the navigation links {title}");
        }
    }

    async fn a_console_beside_one_module_shows_that_modules_parts_only(app, stats_alone) {
        let session = login(&app, ADMIN).await;
        let overview = session.page(&app, "/console/overview/live").await;
        assert!(overview.contains("Jobs waiting"), "{overview}");
        for figure in ["Active streams", "Events today (UTC)"] {
            assert!(!overview.contains(figure), "no {figure} without its module: {overview}");
        }
        let page = session.page(&app, "/console").await;
        for path in ["/console/events", "/console/streams", "/console/people"] {
            assert!(!page.contains(&format!("href=\"{path}\"")), "no link to {path}");
            assert_eq!(session.get(&app, path).await.status(), 404, "{path}");
        }
        let analytics = session.page(&app, "/console/analytics?course=c1&user=u1").await;
        assert!(analytics.contains("No session of this learner in this course."), "{analytics}");
        assert!(!analytics.contains("Grades"), "no grades section without grades: {analytics}");
    }

    async fn lists_say_how_long_ago_with_the_exact_time_on_hover(app, with_admin) {
        broken_job(&app, "job-when").await;
        wait_for_state(&app, "job-when", "dead").await;
        let session = login(&app, ADMIN).await;
        for path in ["/console/jobs", "/console/events"] {
            let page = session.page(&app, path).await;
            let at = page.find("<time datetime=\"").unwrap_or_else(|| panic!("{path} has no time element: {page}"));
            let element = &page[at..at + page[at..].find("</time>").unwrap()];
            assert!(element.contains(" title=\"20") && element.contains("Z\""), "{path}: the exact time on hover: {element}");
            assert!(element.ends_with(" ago") || element.ends_with("just now"), "{path}: how long ago: {element}");
        }
    }

    async fn a_change_needs_the_sessions_form_token_and_a_same_site_request(app, with_admin) {
        broken_job(&app, "job-csrf").await;
        wait_for_state(&app, "job-csrf", "dead").await;
        let session = login(&app, ADMIN).await;
        let path = app.url("/console/jobs/job-csrf/retry");
        let without = session.client.post(&path).header("cookie", &session.cookie).form(&[("x", "y")]).send().await.unwrap();
        assert_eq!(without.status(), 403, "no form token");
        let wrong = session.client.post(&path).header("cookie", &session.cookie).form(&[("csrf", "guess")]).send().await.unwrap();
        assert_eq!(wrong.status(), 403, "another form token");
        let cross_site = session.client.post(&path).header("cookie", &session.cookie)
            .header("sec-fetch-site", "cross-site").form(&[("csrf", session.csrf.as_str())]).send().await.unwrap();
        assert_eq!(cross_site.status(), 403, "a form on another site");
        let other_origin = session.client.post(&path).header("cookie", &session.cookie)
            .header("origin", "https://evil.example").form(&[("csrf", session.csrf.as_str())]).send().await.unwrap();
        assert_eq!(other_origin.status(), 403, "another origin");
        assert_eq!(job_state(&app, "job-csrf").await.as_deref(), Some("dead"), "nothing changed");
        let done = session.post(&app, "/console/jobs/job-csrf/retry", &[]).await;
        assert_eq!(done.status(), 303);
        assert_eq!(done.headers()["location"], "/console/jobs/job-csrf?done=retried");
    }

    async fn the_groups_claim_that_names_console_roles_is_configurable(app, with_roles_claim) {
        for (extra, what) in [
            (json!({"cognito:groups": ["studyhall-operators"]}), "the default claim, no longer read"),
            (json!({"roles": "studyhall-operatorsX"}), "a near miss"),
            (json!({"roles": {"studyhall-operators": true}}), "an object, not a list"),
        ] {
            assert_eq!(try_login(&app, &token_with("gus", extra)).await.status(), 401, "{what}");
        }
        let operator = login(&app, &token_with("olga", json!({"roles": ["staff", "studyhall-operators"]}))).await;
        assert!(!operator.page(&app, "/console").await.contains("read-only"));
        let reader = login(&app, &token_with("rita", json!({"roles": "studyhall-readers"}))).await;
        assert!(reader.page(&app, "/console").await.contains("read-only"));
        // `scope` still grants beside the configured claim.
        login(&app, &token_with("sam", json!({"scope": "openid studyhall-operators"}))).await;
    }

    async fn jobs_made_in_the_same_moment_are_told_apart_by_kind_arguments_and_id(app, with_admin) {
        // Two UUIDv7s of one millisecond share their first eight hex digits.
        let ids = ["01a24e00-0000-7000-8000-00000000aaaa", "01a24e00-0000-7000-8000-00000000bbbb"];
        let db = db(&app).await;
        let now = studyhall::clock::now_micros();
        for (id, student) in ids.iter().zip(["s-1", "s-2"]) {
            Sql::new("INSERT INTO jobs (id, kind, payload, state, attempts, max_attempts, run_at, created_at)
                      VALUES ($1, 'grades.course_grade', $2, 'dead', 1, 1, $3, $3)")
                .bind(*id)
                .bind(json!({"student_id": student, "course_id": "c9", "nested": {"x": 1}, "on_time": true}).to_string())
                .bind(now)
                .execute(&db)
                .await
                .unwrap();
        }
        db.close().await;
        let session = login(&app, ADMIN).await;
        for path in ["/console/jobs?state=dead", "/console/jobs/retry-dead?kind=grades.course_grade"] {
            let page = session.page(&app, path).await;
            assert!(page.contains("<code>0000aaaa</code>") && page.contains("<code>0000bbbb</code>"), "{path}: {page}");
            assert!(!page.contains("<code>01a24e00</code>"), "{path} shows the ids' shared time");
            assert!(page.contains("course_id c9 · on_time true · student_id s-1"), "{path}: {page}");
        }
        let detail = session.page(&app, &format!("/console/jobs/{}", ids[0])).await;
        assert!(detail.contains("Job grades.course_grade 0000aaaa"), "{detail}");
        assert!(detail.contains(r#"<button type="submit" class="danger">Delete</button>"#), "Delete looks unlike Retry: {detail}");
        assert!(detail.contains(r#"<button type="submit">Retry</button>"#), "{detail}");
        assert!(detail.contains(&format!("<code>{}</code>", ids[0])), "the full id");
    }

    async fn the_services_own_records_name_their_actor_not_a_placeholder_address(app, with_admin) {
        let started = app.client.post(app.url("/api/v1/streams")).header("X-User-Id", "v9")
            .json(&json!({"stream_id": "s9"})).send().await.unwrap();
        assert_eq!(started.status(), 201);
        let session = login(&app, ADMIN).await;
        let mut page = String::new();
        for _ in 0..100 {
            page = session.page(&app, "/console/events?component=studyhall.streams").await;
            if page.contains("stream.started") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(page.contains("viewer user:v9"), "{page}");
        assert!(!page.contains("@studyhall.invalid"), "{page}");
    }

    async fn a_wrong_filter_or_path_keeps_the_operator_in_the_console(app, with_admin) {
        let session = login(&app, ADMIN).await;
        for (path, said) in [("/console/jobs?q=ab", "Search for at least 3 characters"), ("/console/jobs?state=zombie", "`zombie` is not a job state")] {
            let response = session.get(&app, path).await;
            assert_eq!(response.status(), 400, "{path}");
            let page = response.text().await.unwrap();
            assert!(page.contains("<h1>Jobs</h1>") && page.contains(said) && page.contains("Showing every job instead"), "{path}: {page}");
        }
        for path in ["/console/nope", "/console/jobs/x/y/z"] {
            let response = session.get(&app, path).await;
            assert_eq!(response.status(), 404, "{path}");
            assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/html"), "{path}");
            assert!(response.text().await.unwrap().contains("There is no such console page."), "{path}");
        }
    }

    async fn a_read_only_session_sees_every_page_and_changes_nothing(app, with_admin) {
        broken_job(&app, "job-reader").await;
        wait_for_state(&app, "job-reader", "dead").await;
        let started = app.client.post(app.url("/api/v1/streams")).header("X-User-Id", "v1")
            .json(&json!({"stream_id": "s1"})).send().await.unwrap();
        assert_eq!(started.status(), 201);
        let reader = login(&app, &token_in("rita", &["studyhall-readers"])).await;
        for path in PAGES {
            let page = reader.page(&app, path).await;
            // A refreshing fragment has no page header to say it in.
            assert!(path.ends_with("/live") || page.contains("read-only"), "{path} says so");
        }
        for (path, form) in changes("job-reader") {
            let response = reader.post(&app, &path, &form).await;
            assert_eq!(response.status(), 403, "{path} as a reader");
        }
        assert_eq!(job_state(&app, "job-reader").await.as_deref(), Some("dead"));
        let db = db(&app).await;
        let paused: Option<i64> = Sql::new("SELECT CAST(count(*) AS BIGINT) FROM job_kinds_paused").fetch_scalar(&db).await.unwrap();
        assert_eq!(paused, Some(0));
        db.close().await;
        let (_, streams) = json(app.client.get(app.url("/api/v1/streams")).header("X-User-Id", "v1").send().await.unwrap()).await;
        assert_eq!(streams["limit"], 3, "{streams}");
        assert_eq!(streams["active_streams"], 1, "{streams}");
        // The operator group may change things.
        let operator = login(&app, &token_in("olga", &["studyhall-operators"])).await;
        assert_eq!(operator.post(&app, "/console/jobs/job-reader/retry", &[]).await.status(), 303);
        let retried = console_records(&app, "studyhall.jobs").await;
        let record = retried.iter().find(|r| r["message"] == "job.retried").expect("the retry is recorded");
        assert_eq!(record["data"]["actor"]["id"], "olga@example.com");
    }

    async fn operators_find_dead_jobs_by_error_retry_them_all_delete_and_pause_a_kind(app, with_admin) {
        for n in 0..3 {
            broken_job(&app, &format!("job-bulk-{n}")).await;
        }
        for n in 0..3 {
            wait_for_state(&app, &format!("job-bulk-{n}"), "dead").await;
        }
        let session = login(&app, ADMIN).await;
        let list = session.page(&app, "/console/jobs?state=dead&kind=grades.course_grade").await;
        for n in 0..3 {
            assert!(list.contains(&format!("/console/jobs/job-bulk-{n}")), "job {n} listed");
        }
        // The three died of one error: one row of the grouping, counting 3.
        let grouped = session.page(&app, "/console/jobs").await;
        assert!(grouped.contains("Dead jobs by error"));
        assert!(grouped.contains(r#"<td class="num"><a href="/console/jobs?state=dead&amp;kind=grades.course_grade&amp;q="#), "{grouped}");
        assert!(grouped.contains(">3</a></td>"), "{grouped}");
        let searched = session.page(&app, "/console/jobs?q=job-bulk-1").await;
        assert!(!searched.contains("/console/jobs/job-bulk-1\""), "ids are not payload: nothing matches");
        let by_error = session.page(&app, "/console/jobs?q=GRADE").await;
        assert!(by_error.contains("/console/jobs/job-bulk-0"), "the payload or error matches in any case");
        let detail = session.page(&app, "/console/jobs/job-bulk-0").await;
        assert!(detail.contains("a grade") && detail.contains("Lease holder"), "payload and worker shown");
        let confirm = session.page(&app, "/console/jobs/retry-dead?kind=grades.course_grade").await;
        assert!(confirm.contains("<strong>3</strong> dead jobs match"), "{confirm}");
        let bulk = session.post(&app, "/console/jobs/retry-dead", &[("kind", "grades.course_grade")]).await;
        // Post, redirect, get: the result is a page of its own, which a reload only reads.
        assert_eq!(bulk.status(), 303);
        let result = bulk.headers()["location"].to_str().unwrap().to_owned();
        assert!(result.starts_with("/console/jobs?"), "{result}");
        assert!(session.page(&app, &result).await.contains("Queued 3 dead jobs again"));
        for n in 0..3 {
            wait_for_state(&app, &format!("job-bulk-{n}"), "dead").await;
        }
        assert_eq!(session.post(&app, "/console/jobs/job-bulk-0/delete", &[]).await.status(), 303);
        assert_eq!(job_state(&app, "job-bulk-0").await, None);
        assert_eq!(session.post(&app, "/console/jobs/job-bulk-0/delete", &[]).await.status(), 404);
        // A paused kind is not claimed until resumed.
        assert_eq!(session.post(&app, "/console/jobs/kinds/grades.course_grade/pause", &[]).await.status(), 303);
        broken_job(&app, "job-paused").await;
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(job_state(&app, "job-paused").await.as_deref(), Some("queued"), "paused: not claimed");
        assert!(session.page(&app, "/console/jobs").await.contains("paused"));
        assert_eq!(session.post(&app, "/console/jobs/kinds/grades.course_grade/resume", &[]).await.status(), 303);
        wait_for_state(&app, "job-paused", "dead").await;
        let records = messages(&console_records(&app, "studyhall.jobs").await);
        for message in ["job.bulk_retried", "job.deleted", "job.kind_paused", "job.kind_resumed"] {
            assert_eq!(records.iter().filter(|m| *m == message).count(), 1, "{message} in {records:?}");
        }
        assert_eq!(session.get(&app, "/console/jobs?state=exploded").await.status(), 400);
        assert_eq!(session.get(&app, "/console/jobs/no-such-job").await.status(), 404);
    }

    async fn the_job_search_finds_text_in_payloads_and_errors_through_its_index_and_pages(app, with_admin) {
        let session = login(&app, ADMIN).await;
        // A paused kind keeps the jobs queued as written.
        assert_eq!(session.post(&app, "/console/jobs/kinds/grades.course_grade/pause", &[]).await.status(), 303);
        let db = db(&app).await;
        let now = studyhall::clock::now_micros();
        for n in 0..130i64 {
            let (payload, error) = match n % 2 {
                0 => (format!(r#"{{"note": "NeedLe-{n}"}}"#), None),
                _ if n == 1 => (r#"{"note": "100%_done"}"#.to_owned(), Some("Connection RESET by peer")),
                _ => (format!(r#"{{"note": "hay-{n} 100 done"}}"#), None),
            };
            // Some share a creation time, as a batch's jobs do.
            Sql::new("INSERT INTO jobs (id, kind, payload, state, attempts, max_attempts, run_at, created_at, last_error)
                      VALUES ($1, 'grades.course_grade', $2, 'queued', 0, 1, $3, $3, $4)")
                .bind(format!("job-search-{n:03}")).bind(payload).bind(now - 1000 + n / 3).bind(error)
                .execute(&db).await.unwrap();
        }
        let ids = |page: &str| -> Vec<String> {
            page.match_indices(r#"href="/console/jobs/job-search-"#)
                .map(|(at, _)| page[at + 20..at + 34].to_owned())
                .collect()
        };
        let next = |page: &str| -> Option<String> {
            let at = page[..page.find("before=")?].rfind(r#"href=""#)?;
            Some(page[at + 6..].split('"').next()?.replace("&amp;", "&"))
        };
        for first in ["/console/jobs?q=needle-", "/console/jobs?state=queued&q=NEEDLE-", "/console/jobs?state=queued&kind=grades.course_grade&q=needle"] {
            let mut found = Vec::new();
            let mut path = Some(first.to_owned());
            while let Some(at) = path {
                let page = session.page(&app, &at).await;
                found.extend(ids(&page));
                path = next(&page).filter(|_| found.len() < 200);
            }
            let mut expected: Vec<String> = (0..130).step_by(2).map(|n| format!("job-search-{n:03}")).collect();
            expected.reverse();
            assert_eq!(found, expected, "{first}: every match once, newest first, over pages");
        }
        let only = |page: &str| ids(page);
        // The pattern's own characters are literal: `%` and `_` match themselves.
        assert_eq!(only(&session.page(&app, "/console/jobs?q=100%25_").await), vec!["job-search-001"]);
        assert_eq!(only(&session.page(&app, "/console/jobs?state=queued&q=0%25_d").await), vec!["job-search-001"]);
        assert_eq!(only(&session.page(&app, "/console/jobs?q=reset+BY").await), vec!["job-search-001"], "error text");
        assert!(only(&session.page(&app, "/console/jobs?q=nothing-like-it").await).is_empty());
        // A text changed or removed behind the console is found as it is now.
        Sql::new("UPDATE jobs SET payload = '{\"note\": \"moved\"}', last_error = 'Timed out' WHERE id = 'job-search-001'")
            .execute(&db).await.unwrap();
        Sql::new("DELETE FROM jobs WHERE id = 'job-search-128'").execute(&db).await.unwrap();
        assert!(only(&session.page(&app, "/console/jobs?q=reset+by").await).is_empty(), "the old error");
        assert_eq!(only(&session.page(&app, "/console/jobs?q=timed+OUT").await), vec!["job-search-001"]);
        assert_eq!(only(&session.page(&app, "/console/jobs?q=MOVED").await), vec!["job-search-001"]);
        assert_eq!(only(&session.page(&app, "/console/jobs?q=needle-12").await),
                   vec!["job-search-126", "job-search-124", "job-search-122", "job-search-120", "job-search-012"]);
        db.close().await;
        // Too short a text is a clear 400, for the list (still the jobs page) and for a
        // bulk retry alike.
        let short = session.get(&app, "/console/jobs?q=ne").await;
        assert_eq!(short.status(), 400);
        assert!(short.text().await.unwrap().contains("at least 3 characters"));
        assert_eq!(session.get(&app, "/console/jobs/retry-dead?q=ne").await.status(), 400);
    }

    async fn a_job_waiting_out_its_backoff_runs_now_when_an_operator_says_so(app, with_two_attempts) {
        let db = db(&app).await;
        let now = studyhall::clock::now_micros();
        let hour = 3_600_000_000i64;
        Sql::new("INSERT INTO jobs (id, kind, payload, state, attempts, max_attempts, run_at, created_at, last_error)
                  VALUES ('job-later', 'grades.course_grade', '[1]', 'failed', 1, 2, $1, $2, 'the first attempt failed')")
            .bind(now + hour).bind(now).execute(&db).await.unwrap();
        db.close().await;
        let session = login(&app, ADMIN).await;
        // The retrying view: failed jobs with when each runs next.
        let retrying = session.page(&app, "/console/jobs?state=failed").await;
        assert!(retrying.contains("<th>Runs</th>") && retrying.contains(">in 59 min</time>"), "{retrying}");
        let detail = session.page(&app, "/console/jobs/job-later").await;
        assert!(detail.contains("action=\"/console/jobs/job-later/run-now\""), "a waiting job offers Run now: {detail}");
        let reader = login(&app, &token_in("rita", &["studyhall-readers"])).await;
        assert_eq!(reader.post(&app, "/console/jobs/job-later/run-now", &[]).await.status(), 403, "read-only");
        assert_eq!(job_state(&app, "job-later").await.as_deref(), Some("failed"), "a refused change changes nothing");
        let hastened = session.post(&app, "/console/jobs/job-later/run-now", &[]).await;
        assert_eq!(hastened.status(), 303);
        assert!(hastened.headers()["location"].to_str().unwrap().ends_with("done=due"));
        // Due now, the job runs its second and last attempt at once instead of in an hour.
        wait_for_state(&app, "job-later", "dead").await;
        let dead = session.post(&app, "/console/jobs/job-later/run-now", &[]).await;
        assert_eq!(dead.status(), 409, "a dead job is retried, not hastened");
        assert_eq!(session.post(&app, "/console/jobs/no-such-job/run-now", &[]).await.status(), 404);
        let records = console_records(&app, "studyhall.jobs").await;
        assert!(records.iter().any(|record| record["message"] == "job.run_now" && record["data"]["job"] == "job-later"), "{records:?}");
    }

    async fn a_jobs_detail_shows_every_failed_attempt_with_its_worker(app, with_two_attempts) {
        let db = db(&app).await;
        let now = studyhall::clock::now_micros();
        Sql::new("INSERT INTO jobs (id, kind, payload, state, attempts, max_attempts, run_at, created_at)
                  VALUES ('job-twice', 'grades.course_grade', '[1]', 'queued', 0, 2, $1, $1)")
            .bind(now).execute(&db).await.unwrap();
        db.close().await;
        wait_for_state(&app, "job-twice", "dead").await;
        let session = login(&app, ADMIN).await;
        let detail = session.page(&app, "/console/jobs/job-twice").await;
        assert_eq!(detail.matches("<td class=\"num\">1</td>").count() + detail.matches("<td class=\"num\">2</td>").count(), 2, "two attempts listed");
        let host = std::env::var("HOSTNAME").ok();
        if let Some(host) = host.filter(|host| !host.is_empty()) {
            assert!(detail.contains(&host), "the worker is named");
        }
        // Finished attempts count in the kind's last hour.
        let jobs = session.page(&app, "/console/jobs").await;
        assert!(jobs.contains("grades.course_grade: jobs finished per minute"), "the kind's chart");
        assert!(jobs.contains("1 failed, 1 died"), "{jobs}");
        assert!(jobs.contains("<th class=\"num\">Error rate (1 h)</th>"), "{jobs}");
        assert!(jobs.contains("<td class=\"num bad\">100 %</td>"), "both attempts failed: {jobs}");
    }

    async fn the_streams_page_names_the_policy_and_counts_kicks_and_replacements(app, with_admin_kicking_the_oldest) {
        let start = |id: &'static str, device: &'static str| app.client.post(app.url("/api/v1/streams"))
            .header("X-User-Id", "v7").json(&json!({"stream_id": id, "device_id": device})).send();
        for (id, device) in [("s1", "tv"), ("s2", "phone"), ("s3", "laptop"), ("s4", "tv"), ("s5", "tablet")] {
            assert_eq!(start(id, device).await.unwrap().status(), 201);
        }
        let session = login(&app, ADMIN).await;
        let mut page = String::new();
        for _ in 0..50 {
            page = session.page(&app, "/console/streams").await;
            if page.contains("5 started") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(page.contains("handled by the policy <code>kick_oldest</code>"), "{page}");
        assert!(page.contains("Streams ended to admit another per minute"), "{page}");
        assert!(page.contains("5 started, 0 refused, 1 kicked as the oldest, 1 replaced"), "{page}");
    }

    async fn operators_end_streams_and_set_and_reset_a_viewers_limit(app, with_admin) {
        let start = |id: &'static str| app.client.post(app.url("/api/v1/streams")).header("X-User-Id", "v1").json(&json!({"stream_id": id})).send();
        assert_eq!(start("s1").await.unwrap().status(), 201);
        assert_eq!(start("s2").await.unwrap().status(), 201);
        let session = login(&app, ADMIN).await;
        let page = session.page(&app, "/console/streams").await;
        assert!(page.contains("user:v1") && page.contains("s1") && page.contains("s2"), "active streams by viewer");
        let viewer = session.page(&app, "/console/streams?viewer=v1").await;
        assert!(viewer.contains("<strong>2</strong> of <strong>3</strong>"), "{viewer}");
        let ended = session.post(&app, "/console/streams/end", &[("viewer", "user:v1"), ("id", "s1")]).await;
        assert_eq!(ended.status(), 303);
        assert_eq!(session.post(&app, "/console/streams/end", &[("viewer", "user:v1"), ("id", "s1")]).await.status(), 404, "ended already");
        assert_eq!(session.post(&app, "/console/streams/limit", &[("viewer", "v1"), ("limit", "7")]).await.status(), 303);
        let (_, streams) = json(app.client.get(app.url("/api/v1/streams")).header("X-User-Id", "v1").send().await.unwrap()).await;
        assert_eq!((streams["active_streams"].as_i64(), streams["limit"].as_i64()), (Some(1), Some(7)), "{streams}");
        for bad in ["0", "1001", "many"] {
            assert_eq!(session.post(&app, "/console/streams/limit", &[("viewer", "v1"), ("limit", bad)]).await.status(), 400, "{bad}");
        }
        assert_eq!(session.post(&app, "/console/streams/limit", &[("viewer", "v1"), ("limit", "")]).await.status(), 303);
        let (_, streams) = json(app.client.get(app.url("/api/v1/streams")).header("X-User-Id", "v1").send().await.unwrap()).await;
        assert_eq!(streams["limit"], 3, "reset to the default");
        let records = console_records(&app, "studyhall.streams").await;
        let ended = records.iter().find(|r| r["message"] == "stream.ended").unwrap();
        assert_eq!(ended["data"]["actor"], json!({"kind": "operator", "id": "admin"}));
        let changed: Vec<_> = records.iter().filter(|r| r["message"] == "stream.limit_changed").collect();
        assert_eq!(changed.len(), 2);
        assert_eq!(changed[0]["data"]["limit"], 7);
        assert!(session.page(&app, "/console/streams").await.contains("Streams started per minute"));
    }

    async fn the_events_page_filters_shows_an_event_tails_and_downloads(app, with_admin) {
        for (n, component) in ["billing", "billing", "search"].iter().enumerate() {
            let body = json!({"component": component, "email": "ops@example.com", "environment": "prod",
                              "message": format!("event number {n}"), "data": {"n": n}});
            assert_eq!(app.post_json("/api/events", &body).await.status(), 201);
        }
        let session = login(&app, ADMIN).await;
        let billing = session.page(&app, "/console/events?component=billing").await;
        assert!(billing.contains("event number 0") && billing.contains("event number 1"));
        assert!(!billing.contains("event number 2"));
        let searched = session.page(&app, "/console/events?message=number+2").await;
        assert!(searched.contains("event number 2") && !searched.contains("event number 1"));
        let link = searched
            .split("href=\"/console/events/")
            .filter_map(|rest| rest.split('"').next())
            .find(|id| uuid::Uuid::try_parse(id).is_ok())
            .expect("a link to the event")
            .to_owned();
        let detail = session.page(&app, &format!("/console/events/{link}")).await;
        assert!(detail.contains("&quot;n&quot;: 2") || detail.contains("\"n\": 2"), "{detail}");
        // Its place in the audit chain, once the sealer (on the server's clock) chained it.
        let mut detail = detail;
        for _ in 0..100 {
            if detail.contains("<dt>Hash</dt>") {
                break;
            }
            app.clock.advance(Duration::from_secs(1));
            tokio::time::sleep(Duration::from_millis(50)).await;
            detail = session.page(&app, &format!("/console/events/{link}")).await;
        }
        let hash = detail.split("<dt>Hash</dt><dd><code>").nth(1).and_then(|rest| rest.split('<').next()).unwrap_or_default();
        assert!(hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()), "{detail}");
        assert!(detail.contains("<dt>Log position</dt><dd>"), "{detail}");
        assert_eq!(session.get(&app, "/console/events/not-a-uuid").await.status(), 400);
        let bad = session.get(&app, "/console/events?from_date=yesterday").await;
        assert_eq!(bad.status(), 400);
        assert!(bad.text().await.unwrap().contains("from_date"));
        // The tail shows an event posted after the page was opened, marked new.
        let since = studyhall::clock::now_micros();
        let body = json!({"component": "billing", "email": "ops@example.com", "environment": "prod", "message": "late arrival", "data": {}});
        assert_eq!(app.post_json("/api/events", &body).await.status(), 201);
        let tail = session.page(&app, &format!("/console/events/tail?component=billing&since={since}")).await;
        assert!(tail.contains("late arrival"));
        assert_eq!(tail.matches("class=\"new\"").count(), 1, "{tail}");
        let csv = session.get(&app, "/console/events/download?component=billing&format=csv").await;
        assert_eq!(csv.status(), 200);
        assert!(csv.headers()["content-disposition"].to_str().unwrap().contains("events.csv"));
        let csv = csv.text().await.unwrap();
        assert_eq!(csv.lines().filter(|line| line.contains("billing")).count(), 3, "{csv}");
        let exports = console_records(&app, "studyhall.events").await;
        let export = exports.iter().find(|r| r["message"] == "events.exported").expect("the download is recorded");
        assert_eq!(export["data"]["actor"]["id"], "admin");
    }

    async fn people_search_looks_in_emails_and_names_alike(app, with_admin) {
        let token = token_in("cleo", &[]);
        let signed_up = app.client.post(app.url("/users/me")).bearer_auth(&token)
            .json(&json!({"first_name": "Cleo", "last_name": "Vance"})).send().await.unwrap();
        assert_eq!(signed_up.status(), 200);
        let me = app.client.get(app.url("/users/me")).bearer_auth(&token).send().await.unwrap();
        let (_, me) = json(me).await;
        let email = me["email"].as_str().unwrap().to_owned();
        let domain = email.split_once('@').unwrap().1.to_owned();
        let session = login(&app, ADMIN).await;
        for (text, by) in [(domain.as_str(), "an email's domain, without @"), ("vance", "a last name"), ("cleo vance", "a whole name"), (email.as_str(), "a whole email")] {
            let found = session.page(&app, &format!("/console/people?q={}", text.replace('@', "%40").replace(' ', "+"))).await;
            assert!(found.contains("/console/people?id=cleo"), "{by}: {found}");
        }
        let none = session.page(&app, "/console/people?q=nobody-has-this").await;
        assert!(!none.contains("/console/people?id=cleo"), "{none}");
        // With nothing asked, the page opens on the newest profiles, newest first.
        let later = app.client.post(app.url("/users/me")).bearer_auth(token_in("dora", &[]))
            .json(&json!({"first_name": "Dora", "last_name": "Quinn"})).send().await.unwrap();
        assert_eq!(later.status(), 200);
        let opening = session.page(&app, "/console/people").await;
        assert!(opening.contains("Newest profiles"), "{opening}");
        let (dora, cleo) = (opening.find("/console/people?id=dora"), opening.find("/console/people?id=cleo"));
        assert!(matches!((dora, cleo), (Some(dora), Some(cleo)) if dora < cleo), "the newest first: {opening}");
    }

    async fn people_and_analytics_look_up_a_profile_and_a_courses_grades(app, with_admin) {
        let signed_up = |name: &'static str| {
            let token = token_in(name, &[]);
            let request = app.client.post(app.url("/users/me")).bearer_auth(token)
                .json(&json!({"first_name": name, "last_name": "Tester"}));
            async move { assert_eq!(request.send().await.unwrap().status(), 200) }
        };
        signed_up("ana").await;
        signed_up("ben").await;
        let ask = app.client.post(app.url("/friendship/requests")).bearer_auth(token_in("ana", &[])).json(&json!({"user_id2": "ben"})).send().await.unwrap();
        assert_eq!(ask.status(), 200);
        let accept = app.client.post(app.url("/friendship/accept")).bearer_auth(token_in("ben", &[])).json(&json!({"user_id1": "ana"})).send().await.unwrap();
        assert_eq!(accept.status(), 200);
        let session = login(&app, ADMIN).await;
        let ana = session.page(&app, "/console/people?id=ana").await;
        assert!(ana.contains("ana Tester") && ana.contains("<dt>Friends</dt><dd><strong>1</strong></dd>"), "{ana}");
        let found = session.page(&app, "/console/people?q=ben%40example.com").await;
        assert!(found.contains("/console/people?id=ben"), "{found}");
        assert!(session.page(&app, "/console/people?id=nobody").await.contains("No profile with this id."));
        for (grade, on_time, at) in [(8.0, true, "2024-01-10T00:00:00Z"), (6.0, false, "2024-01-20T00:00:00Z"), (9.0, true, "2024-02-05T00:00:00Z")] {
            let body = json!({"student_id": "65a1b2c3d4e5f6a7b8c9d0e1", "course_id": "c1", "grade": grade, "on_time": on_time});
            let posted = app.client.post(app.url("/stats/student/grade")).header("x-graded-at", at).json(&body).send().await.unwrap();
            assert_eq!(posted.status(), 200);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        let graded = loop {
            let page = session.page(&app, "/console/analytics?course=c1").await;
            if page.contains("3 grades") {
                break page;
            }
            assert!(Instant::now() < deadline, "the grades were never processed: {page}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert!(graded.contains("average <strong>7.67</strong>"), "{graded}");
        assert!(graded.contains("<td>2024-01</td><td class=\"num\">2</td><td class=\"num\">7.00</td><td class=\"num\">50.0 %</td>"), "{graded}");
        assert!(graded.contains("Average grade by month"));
        let analytics = session.page(&app, "/console/analytics?course=c1&user=u1").await;
        assert!(analytics.contains("No session of this learner in this course."));
        let long = "x".repeat(300);
        assert_eq!(session.get(&app, &format!("/console/people?id={long}")).await.status(), 400);
        assert_eq!(session.get(&app, &format!("/console/analytics?course={long}")).await.status(), 400);
    }
}
