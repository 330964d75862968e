//! What the binary tells its operators: its log lines (one per request, errors with
//! their cause and request id, no colour in pipes), its start-up messages, and the
//! gauges of `/metrics`.

use std::process::Stdio;

use serde_json::{json, Value};
use tokio::process::{Child, Command};

use crate::helpers::test_url;
use crate::process::{client, free_port, post_grades, start_with, start_worker, Server, BINARY};

/// A server whose whole log is kept, for tests of what it logs.
struct Logged {
    child: Child,
    base: String,
    database: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Logged {
    /// Starts a server with `env` on a fresh SQLite file and waits until it answers.
    async fn start(env: &[(&str, &str)]) -> Logged {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("log.db");
        let url = format!("sqlite://{}", database.display());
        let port = free_port();
        let child = Command::new(BINARY)
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--database-url",
                &url,
            ])
            .env("STUDYHALL_SHUTDOWN_DRAIN", "0s")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while client().get(format!("{base}/health")).send().await.is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the server did not start"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Logged {
            child,
            base,
            database,
            _dir: dir,
        }
    }

    /// Stops the server with SIGTERM and returns everything it logged.
    async fn finish(self) -> String {
        let pid = self.child.id().unwrap().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .unwrap();
        let output = self.child.wait_with_output().await.unwrap();
        String::from_utf8_lossy(&output.stderr).into_owned()
    }
}

/// Runs a server with `env`, sends `paths`, and returns its whole log.
async fn log_of(env: &[(&str, &str)], paths: &[&str]) -> String {
    let server = Logged::start(env).await;
    for path in paths {
        client()
            .get(format!("{}{path}", server.base))
            .send()
            .await
            .unwrap();
    }
    server.finish().await
}

async fn a_server_error_is_logged_at_error_with_its_cause_and_the_request_id() {
    let server = Logged::start(&[("STUDYHALL_LOG_FORMAT", "json")]).await;
    // Break the store behind the server's back: the read can only fail.
    let url = format!("sqlite://{}", server.database.display());
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    sqlx::Executor::execute(&mut conn, "DROP TABLE stats_course_totals")
        .await
        .unwrap();
    let response = client()
        .get(format!(
            "{}/courses/2f6a4f2e-3b1c-4d5e-9f70-1a2b3c4d5e6f",
            server.base
        ))
        .header("X-User-Id", "9c1b2f8e-6d0a-4a2b-8a57-0b7b0e5d8f11")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = response.text().await.unwrap();
    assert!(
        !body.contains("stats_course_totals"),
        "internal text in the body: {body}"
    );
    let log = server.finish().await;
    let lines: Vec<Value> = log
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let cause = lines
        .iter()
        .find(|line| {
            line["level"] == "ERROR"
                && line["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("stats_course_totals"))
        })
        .unwrap_or_else(|| panic!("no error line with the cause: {log}"));
    assert_eq!(cause["span"]["request_id"], request_id.as_str(), "{cause}");
    let failed = lines
        .iter()
        .find(|line| line["message"] == "request failed")
        .unwrap_or_else(|| panic!("{log}"));
    assert_eq!(
        (failed["level"].as_str(), failed["status"].as_i64()),
        (Some("ERROR"), Some(500))
    );
}
crate::case!(a_server_error_is_logged_at_error_with_its_cause_and_the_request_id);

async fn asked_for_request_logs_there_is_one_json_line_per_request_with_a_numeric_latency() {
    let log = log_of(
        &[
            ("STUDYHALL_LOG_FORMAT", "json"),
            ("RUST_LOG", "info,studyhall=debug"),
        ],
        &["/no-such-route", "/jobs", "/stats/health"],
    )
    .await;
    let lines: Vec<Value> = log
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let finished: Vec<&Value> = lines
        .iter()
        .filter(|line| line["message"] == "request finished")
        .collect();
    // The readiness polls (/health) are requests too.
    let of = |path: &str| {
        finished
            .iter()
            .filter(|line| line["span"]["uri"] == path)
            .collect::<Vec<_>>()
    };
    for (path, status) in [
        ("/no-such-route", 404),
        ("/jobs", 403),
        ("/stats/health", 200),
    ] {
        let mine = of(path);
        assert_eq!(mine.len(), 1, "one line for {path}: {log}");
        assert_eq!(mine[0]["status"], status, "{path}");
        assert!(
            mine[0]["latency_ms"].is_f64(),
            "latency as a number: {}",
            mine[0]
        );
    }
    assert!(
        !lines
            .iter()
            .any(|line| line["message"] == "started processing request"),
        "two lines per request"
    );
}
crate::case!(asked_for_request_logs_there_is_one_json_line_per_request_with_a_numeric_latency);

async fn text_logs_written_to_a_pipe_have_no_colour_codes() {
    let log = log_of(&[("STUDYHALL_LOG_FORMAT", "text")], &["/health"]).await;
    assert!(log.contains("studyhall is listening"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escape codes in a piped log: {log:?}"
    );
}
crate::case!(text_logs_written_to_a_pipe_have_no_colour_codes);

async fn starting_with_redis_down_says_so_and_names_each_backend() {
    let log = log_of(
        &[
            ("STUDYHALL_STREAMS_BACKEND", "redis"),
            ("STUDYHALL_REDIS_URL", "redis://127.0.0.1:1"),
            ("STUDYHALL_LOG_FORMAT", "json"),
        ],
        &[],
    )
    .await;
    let lines: Vec<Value> = log
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let warning = lines.iter().find(|line| {
        line["level"] == "WARN"
            && line["message"]
                .as_str()
                .is_some_and(|m| m.contains("Redis cannot be reached"))
    });
    assert!(warning.is_some(), "no warning about Redis: {log}");
    let listening = lines
        .iter()
        .find(|line| line["message"] == "studyhall is listening")
        .unwrap();
    assert_eq!(listening["backend"], "sqlite");
    assert_eq!(listening["streams_backend"], "Redis");
    assert_eq!(listening["redis"], "redis://127.0.0.1:1");
}
crate::case!(starting_with_redis_down_says_so_and_names_each_backend);

/// The value of the metric line `name{…}` whose labels include every one of `labels`.
pub(crate) async fn metric(server: &Server, name: &str, labels: &[&str]) -> Option<f64> {
    let text = client()
        .get(format!("{}/metrics", server.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|line| {
            line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} "))
        })
        .find(|line| labels.iter().all(|label| line.contains(label)))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

/// Waits until the metric reads `value`.
async fn metric_reaches(server: &Server, name: &str, labels: &[&str], value: f64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let now = metric(server, name, labels).await;
        if now == Some(value) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name} {labels:?} is {now:?}, not {value}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn stream_gauge_follows_starts_and_ends(server: &Server) {
    let viewer = format!("gauge-{}", uuid::Uuid::new_v4().simple());
    let start = |id: &str| {
        client()
            .post(format!("{}/api/v1/streams", server.address))
            .header("X-User-Id", &viewer)
            .json(&json!({"stream_id": id}))
            .send()
    };
    // The gauge is there within a second of the start; other viewers' leases may be
    // counted in it already.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let before = loop {
        if let Some(value) = metric(server, "active_streams", &[]).await {
            break value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no active_streams gauge"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(start("a").await.unwrap().status(), 201);
    assert_eq!(start("b").await.unwrap().status(), 201);
    metric_reaches(server, "active_streams", &[], before + 2.0).await;
    let ended = client()
        .delete(format!("{}/api/v1/streams/a", server.address))
        .header("X-User-Id", &viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), 204);
    metric_reaches(server, "active_streams", &[], before + 1.0).await;
}

async fn queue_depth_reads_every_kind_and_state_and_falls_to_zero_when_drained() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("metrics.db").display());
    let server = start_with(&url, &[("STUDYHALL_NO_WORKER", "true")]).await;
    for kind in ["grades.course_grade", "grades.task_grade"] {
        for state in ["queued", "running", "failed", "dead"] {
            let labels = [
                &format!("kind=\"{kind}\"")[..],
                &format!("state=\"{state}\""),
            ];
            metric_reaches(&server, "job_queue_depth", &labels, 0.0).await;
        }
    }
    post_grades(&server, "c-metrics", 3).await;
    let queued = ["kind=\"grades.course_grade\"", "state=\"queued\""];
    metric_reaches(&server, "job_queue_depth", &queued, 3.0).await;
    let _worker = start_worker(&url, &[]).await;
    metric_reaches(&server, "job_queue_depth", &queued, 0.0).await;
    stream_gauge_follows_starts_and_ends(&server).await;
}
crate::case!(queue_depth_reads_every_kind_and_state_and_falls_to_zero_when_drained);

async fn active_streams_is_reported_with_the_redis_backend() {
    let redis = test_url("STUDYHALL_TEST_REDIS_URL");
    // A database of its own, emptied first: the gauge counts every viewer's leases, and
    // other tests' streams in database 0 would move it.
    let (scheme, rest) = redis.split_once("://").unwrap();
    let authority = rest.split('/').next().unwrap();
    let redis = format!("{scheme}://{authority}/7");
    let mut own = redis::Client::open(redis.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let () = redis::cmd("FLUSHDB").query_async(&mut own).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("metrics.db").display());
    let env = [
        ("STUDYHALL_STREAMS_BACKEND", "redis"),
        ("STUDYHALL_REDIS_URL", redis.as_str()),
    ];
    let server = start_with(&url, &env).await;
    stream_gauge_follows_starts_and_ends(&server).await;
}
crate::case!(
    active_streams_is_reported_with_the_redis_backend,
    needs = [Redis]
);

async fn the_sqlite_wal_is_checkpointed_in_the_background_while_the_server_runs() {
    // Writers never checkpoint (a checkpoint in a commit's path stalls every request of
    // its batch); the background checkpointer must copy the WAL into the database
    // while the server runs, or the WAL would only grow until shutdown.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("wal.db").display());
    let server = start_with(&url, &[]).await;
    let message = "x".repeat(4000);
    for n in 0..300 {
        let response = client()
            .post(format!("{}/api/events", server.address))
            .json(&serde_json::json!({
                "component": "wal", "environment": "test", "email": "wal@example.com",
                "message": format!("{n} {message}"), "data": {"n": n},
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let frames = metric(&server, "sqlite_wal_frames", &[]).await;
        let copied = metric(&server, "sqlite_wal_frames_checkpointed", &[]).await;
        // Once a checkpoint has copied the whole WAL, the next commit starts it over, so
        // the frame count may be small by now; what matters is that all are copied.
        if frames.is_some_and(|frames| frames > 0.0) && copied == frames {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the WAL was not checkpointed: {copied:?} of {frames:?} frames"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
crate::case!(the_sqlite_wal_is_checkpointed_in_the_background_while_the_server_runs);
