//! The console in a real browser (Debian's chromium, driven through chromedriver): an
//! operator logs in, opens every page, retries a dead job and sees it succeed, sees a
//! new event arrive in the live tail, ends a stream and logs out. A screenshot of each
//! page is saved under `target/console-screenshots/`.
//!
//! Listed as ignored unless chromium and `chromedriver` are on the PATH when the tests
//! run; CI sets `STUDYHALL_TEST_BROWSER=required`, so there a missing browser fails.

use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use studyhall::config::ServeSettings;
use studyhall::db::Db;
use studyhall::sql::Sql;
use tokio::process::{Child, Command};

use crate::helpers::TestApp;

const ADMIN: &str = "browser-admin-token-0123456789";

fn settings(settings: &mut ServeSettings) {
    settings.admin_token = Some(ADMIN.parse().unwrap());
    settings.jobs.job_max_attempts = 1;
}

/// The first of `names` on the PATH.
fn on_path(names: &[&str]) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// chromedriver on a free port, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    async fn start() -> Driver {
        let binary = on_path(&["chromedriver"]).expect(
            "chromedriver is not on the PATH: install Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)",
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|address| address.port())
            .unwrap();
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while reqwest::get(format!("{url}/status")).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not answer within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Driver { child, url }
    }

    async fn browser(&self) -> Client {
        let chromium = on_path(&["chromium", "chromium-browser", "google-chrome"])
            .expect("chromium is not on the PATH (apt-get install chromium)");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,1000", "--lang=en-US"],
            }),
        );
        // chromedriver is on this machine: plain HTTP, no TLS.
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("a browser session")
    }
}

/// Saves a screenshot of the page as `target/console-screenshots/NAME.png`.
async fn screenshot(browser: &Client, name: &str) {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = browser.screenshot().await.unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// Waits until the page's source contains `text`, reloading when `reload`.
async fn wait_for_text(browser: &Client, text: &str, reload: bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if browser.source().await.unwrap().contains(text) {
            return;
        }
        assert!(Instant::now() < deadline, "the page never showed {text:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
        if reload {
            browser.refresh().await.unwrap();
        }
    }
}

async fn click(browser: &Client, css: &str) {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|err| panic!("no {css}: {err}"))
        .click()
        .await
        .unwrap();
}

async fn job_state(app: &TestApp, id: &str) -> Option<String> {
    let db = Db::connect(&app.database_url, 1).await.unwrap();
    let state = Sql::new("SELECT state FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_scalar::<String>(&db)
        .await
        .unwrap();
    db.close().await;
    state
}

async fn an_operator_fixes_a_dead_job_watches_the_tail_ends_a_stream_and_logs_out() {
    let app = TestApp::sqlite_with(settings).await;
    let driver = Driver::start().await;
    let browser = driver.browser().await;

    // A grade whose job the worker cannot read: it dies at its first attempt.
    let posted = app.post_json("/stats/student/grade",
        &json!({"student_id": "65a1b2c3d4e5f6a7b8c9d0e1", "course_id": "c1", "grade": 8.0, "on_time": true, "created_at": "2024-01-10T00:00:00Z"})).await;
    assert_eq!(posted.status(), 200);
    let db = Db::connect(&app.database_url, 1).await.unwrap();
    let good: Option<String> =
        Sql::new("SELECT payload FROM jobs WHERE kind = 'grades.course_grade' LIMIT 1")
            .fetch_scalar(&db)
            .await
            .unwrap();
    let now = studyhall::clock::now_micros();
    Sql::new("INSERT INTO jobs (id, kind, payload, state, attempts, max_attempts, run_at, created_at)
              VALUES ('job-in-browser', 'grades.course_grade', '{\"garbled\": true}', 'queued', 0, 1, $1, $1)")
        .bind(now).execute(&db).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while job_state(&app, "job-in-browser").await.as_deref() != Some("dead") {
        assert!(Instant::now() < deadline, "the broken job never died");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = app
        .client
        .post(app.url("/api/v1/streams"))
        .header("X-User-Id", "viewer-1")
        .json(&json!({"stream_id": "tv"}))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 201);

    // Logging in from the page the console sends a visitor to.
    browser.goto(&app.url("/console/jobs")).await.unwrap();
    assert!(browser
        .current_url()
        .await
        .unwrap()
        .path()
        .starts_with("/console/login"));
    screenshot(&browser, "login").await;
    browser
        .find(Locator::Css("#token"))
        .await
        .unwrap()
        .send_keys(ADMIN)
        .await
        .unwrap();
    click(&browser, "main.login button[type=submit]").await;
    wait_for_text(&browser, "Find jobs", false).await;
    assert_eq!(browser.current_url().await.unwrap().path(), "/console/jobs");

    for (path, name, shows) in [
        ("/console", "overview", "Requests in the last hour"),
        ("/console/jobs", "jobs", "Dead jobs by error"),
        ("/console/events", "events", "Live tail"),
        ("/console/streams", "streams", "viewer-1"),
        (
            "/console/analytics?course=c1",
            "analytics",
            "Average grade by month",
        ),
        ("/console/people", "people", "Email or name contains"),
        ("/docs", "docs", "Schemas"),
        ("/", "start", "API reference"),
    ] {
        browser.goto(&app.url(path)).await.unwrap();
        wait_for_text(&browser, shows, false).await;
        screenshot(&browser, name).await;
        if name == "overview" {
            // The six figures fill their rows evenly (the window is 1280 px wide).
            let script = "return [...document.querySelectorAll('#live .stat')].map(e => Math.round(e.getBoundingClientRect().top));";
            let tops: Vec<i64> =
                serde_json::from_value(browser.execute(script, vec![]).await.unwrap()).unwrap();
            let mut rows = std::collections::BTreeMap::<i64, usize>::new();
            for top in &tops {
                *rows.entry(*top).or_default() += 1;
            }
            assert_eq!(tops.len(), 6, "{tops:?}");
            assert!(
                rows.values().all(|cards| *cards == tops.len() / rows.len()),
                "uneven rows: {rows:?}"
            );
        }
        if name == "docs" {
            // The route index's entries never run into each other, however long a path.
            let script = "const boxes = [...document.querySelectorAll('nav.toc li')].map(e => { const r = e.getBoundingClientRect(); const a = e.querySelector('a').getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom, a.right]; }); \
                return boxes.flatMap((b, i) => boxes.slice(i + 1).filter(c => b[0] < c[2] - 1 && c[0] < b[2] - 1 && b[1] < c[3] - 1 && c[1] < b[3] - 1).map(c => [b, c])) \
                    .concat(boxes.filter(b => b[4] > b[2] + 1).map(b => [b, b]));";
            let overlaps: Vec<serde_json::Value> =
                serde_json::from_value(browser.execute(script, vec![]).await.unwrap()).unwrap();
            assert!(
                overlaps.is_empty(),
                "route index entries overlap or overflow: {overlaps:?}"
            );
        }
    }

    // The dead job: its payload is mended (the cause fixed), then retried from its page.
    Sql::new("UPDATE jobs SET payload = $1 WHERE id = 'job-in-browser'")
        .bind(good.expect("a good grade payload"))
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
    browser
        .goto(&app.url("/console/jobs?state=dead"))
        .await
        .unwrap();
    click(&browser, "a[href='/console/jobs/job-in-browser']").await;
    wait_for_text(&browser, "Lease holder", false).await;
    screenshot(&browser, "job").await;
    click(
        &browser,
        "form[action='/console/jobs/job-in-browser/retry'] button",
    )
    .await;
    wait_for_text(&browser, "Queued again with fresh attempts.", false).await;
    wait_for_text(&browser, "state-succeeded", true).await;
    assert_eq!(
        job_state(&app, "job-in-browser").await.as_deref(),
        Some("succeeded")
    );

    // The live tail shows an event posted after the page opened.
    browser
        .goto(&app.url("/console/events?live=1"))
        .await
        .unwrap();
    wait_for_text(&browser, "Live:", false).await;
    let event = json!({"component": "browser", "email": "ops@example.com", "environment": "test",
                       "message": "arrived while watching", "data": {}});
    assert_eq!(app.post_json("/api/events", &event).await.status(), 201);
    wait_for_text(&browser, "arrived while watching", false).await;
    screenshot(&browser, "tail").await;

    // Ending the stream asks first, then frees the slot.
    browser.goto(&app.url("/console/streams")).await.unwrap();
    click(&browser, "form[action='/console/streams/end'] button").await;
    browser.accept_alert().await.unwrap();
    wait_for_text(&browser, "The stream was ended", false).await;
    let (_, streams) = crate::helpers::json(
        app.client
            .get(app.url("/api/v1/streams"))
            .header("X-User-Id", "viewer-1")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(streams["active_streams"], 0, "{streams}");

    click(&browser, "header .who button").await;
    wait_for_text(&browser, "Log in", false).await;
    assert!(browser
        .current_url()
        .await
        .unwrap()
        .path()
        .starts_with("/console/login"));
    browser.goto(&app.url("/console")).await.unwrap();
    assert!(
        browser
            .current_url()
            .await
            .unwrap()
            .path()
            .starts_with("/console/login"),
        "logged out"
    );

    browser.close().await.unwrap();
    drop(driver.child);
    app.stop().await;
}
crate::case!(
    an_operator_fixes_a_dead_job_watches_the_tail_ends_a_stream_and_logs_out,
    needs = [Browser]
);
