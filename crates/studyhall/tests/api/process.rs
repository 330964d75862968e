//! Tests of the `studyhall` binary as a process: durability across `kill -9`, graceful
//! shutdown on SIGTERM, and settings errors.

use std::collections::HashSet;
use std::process::Stdio;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::helpers::{fixture_path, test_url, TestDatabase};

pub(crate) const BINARY: &str = env!("CARGO_BIN_EXE_studyhall");

pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) address: String,
}

/// Starts `studyhall ARGS…` and reads its JSON log until a line with `message`; returns
/// the process and that line. The log keeps being drained so the child never blocks.
async fn spawn(args: &[&str], env: &[(&str, &str)], message: &str) -> (Child, Value) {
    let mut child = Command::new(BINARY)
        .args(args)
        .envs(env.iter().copied())
        .env("STUDYHALL_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start studyhall");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let entry = loop {
        let line = lines
            .next_line()
            .await
            .expect("read log")
            .unwrap_or_else(|| panic!("studyhall exited before `{message}`"));
        if let Ok(entry) = serde_json::from_str::<Value>(&line) {
            if entry["message"] == message {
                break entry;
            }
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, entry)
}

/// Starts `studyhall serve` on a free port and waits until it says where it listens.
async fn start(database_url: &str) -> Server {
    start_with(database_url, &[]).await
}

/// The admin token every server started here has, for the operator routes.
pub(crate) const ADMIN_TOKEN: &str = "process-admin-token-0123456789";

pub(crate) async fn start_with(database_url: &str, env: &[(&str, &str)]) -> Server {
    let mut env = env.to_vec();
    env.insert(0, ("STUDYHALL_ADMIN_TOKEN", ADMIN_TOKEN));
    let args = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--database-url",
        database_url,
    ];
    let (child, entry) = spawn(&args, &env, "studyhall is listening").await;
    let address = entry["address"].as_str().expect("address field");
    Server {
        child,
        address: format!("http://{address}"),
    }
}

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn event(n: usize) -> Value {
    json!({"component": "durability", "data": {"n": n}, "email": "d@x.io", "environment": "test", "message": format!("event {n}")})
}

async fn stored_ids(address: &str) -> HashSet<String> {
    let mut ids = HashSet::new();
    let mut cursor = String::new();
    loop {
        let page: Value = client()
            .get(format!("{address}/api/events?limit=1000{cursor}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.extend(
            page["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return ids,
        }
    }
}

/// Fires `n` concurrent POSTs and returns the ids of those answered 201.
async fn post_concurrently(address: &str, n: usize) -> HashSet<String> {
    let posts = (0..n).map(|i| {
        let url = format!("{address}/api/events");
        tokio::spawn(async move {
            let response = client().post(url).json(&event(i)).send().await.ok()?;
            if response.status() != 201 {
                return None;
            }
            let body: Value = response.json().await.ok()?;
            body["id"].as_str().map(str::to_owned)
        })
    });
    let mut acknowledged = HashSet::new();
    for post in posts {
        if let Ok(Some(id)) = post.await {
            acknowledged.insert(id);
        }
    }
    acknowledged
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_event_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("durable.db").display());
    let mut server = start(&url).await;
    let acknowledged = post_concurrently(&server.address, 300).await;
    assert_eq!(acknowledged.len(), 300);
    server.child.start_kill().unwrap(); // SIGKILL: no chance to flush anything
    server.child.wait().await.unwrap();

    let restarted = start(&url).await;
    let stored = stored_ids(&restarted.address).await;
    let lost: Vec<_> = acknowledged.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged events lost after kill -9",
        lost.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_requests_finish_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("graceful.db").display());
    let mut server = start(&url).await;
    let address = server.address.clone();
    let load = tokio::spawn(async move { post_concurrently(&address, 200).await });
    // Let the load start, then ask the server to stop while requests are in flight.
    while stored_ids(&server.address).await.is_empty() {
        tokio::task::yield_now().await;
    }
    let pid = server.child.id().expect("pid").to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let exit = server.child.wait().await.unwrap();
    assert_eq!(exit.code(), Some(0), "studyhall must exit 0 on SIGTERM");
    let acknowledged = load.await.unwrap();

    let restarted = start(&url).await;
    let stored = stored_ids(&restarted.address).await;
    assert!(
        acknowledged.is_subset(&stored),
        "an acknowledged event was lost during shutdown"
    );
}

async fn run(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut command = Command::new(BINARY);
    command.args(args).env_remove("STUDYHALL_DATABASE_URL");
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().await.unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn an_invalid_setting_stops_the_program_naming_it() {
    let (ok, _, stderr) = run(&["serve"], &[("STUDYHALL_LISTEN", "not-an-address")]).await;
    assert!(!ok);
    assert!(stderr.contains("--listen"), "{stderr}");
    let (ok, _, stderr) = run(&["serve"], &[("STUDYHALL_DATABASE_URL", "mysql://db")]).await;
    assert!(!ok);
    assert!(stderr.contains("mysql"), "{stderr}");
    let (ok, _, stderr) = run(&["serve"], &[("STUDYHALL_LISTN", "127.0.0.1:1")]).await;
    assert!(!ok);
    assert!(stderr.contains("STUDYHALL_LISTN"), "{stderr}");
    assert!(
        stderr.contains("did you mean STUDYHALL_LISTEN?"),
        "{stderr}"
    );
    let (ok, _, stderr) = run(
        &["serve"],
        &[("STUDYHALL_CORS_ORIGINS", "https://app.example.com/path")],
    )
    .await;
    assert!(!ok);
    assert!(stderr.contains("not an origin"), "{stderr}");
    let (ok, _, stderr) = run(&["serve", "--modules", "events,nope"], &[]).await;
    assert!(!ok);
    assert!(stderr.contains("nope"), "{stderr}");
}

#[tokio::test]
async fn a_database_that_cannot_be_opened_is_named_with_the_reason_at_once() {
    let started = std::time::Instant::now();
    let (ok, _, stderr) = run(
        &[
            "serve",
            "--database-url",
            "postgres://postgres@127.0.0.1:1/none",
        ],
        &[],
    )
    .await;
    assert!(!ok);
    assert!(
        stderr.contains("127.0.0.1:1") && stderr.contains("Connection refused"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "it waited {:?}",
        started.elapsed()
    );
    assert_eq!(
        stderr.matches("Connection refused").count(),
        1,
        "a cause said twice: {stderr}"
    );
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir").join("x.db");
    let url = format!("sqlite://{}", missing.display());
    let (ok, _, stderr) = run(&["serve", "--database-url", &url], &[]).await;
    assert!(!ok);
    assert!(
        stderr.contains(&missing.display().to_string()),
        "the absolute path: {stderr}"
    );
    assert!(stderr.contains("No such file or directory"), "{stderr}");
}

#[tokio::test]
async fn studyhall_token_without_a_database_there_refuses_to_invent_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("absent.db").display());
    let (ok, stdout, stderr) = run(&["token", "--sub", "alice", "--database-url", &url], &[]).await;
    assert!(!ok, "{stdout}");
    assert!(
        stderr.contains("there is no studyhall database at"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("absent.db.jwt-secret").exists(),
        "a secret was made up"
    );
}

#[tokio::test]
async fn openapi_into_a_reader_that_stops_early_does_not_panic() {
    let mut child = Command::new(BINARY)
        .arg("openapi")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 16];
    tokio::io::AsyncReadExt::read_exact(&mut stdout, &mut first)
        .await
        .unwrap();
    drop(stdout);
    let output = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(output.status.success(), "{stderr}");
}

#[tokio::test]
async fn migrate_creates_the_schema_and_openapi_prints_the_document() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("m.db").display());
    let (ok, _, stderr) = run(&["migrate", "--database-url", &url], &[]).await;
    assert!(ok, "{stderr}");
    assert!(dir.path().join("m.db").exists());
    let (ok, stdout, _) = run(&["openapi"], &[]).await;
    assert!(ok);
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    assert!(doc["paths"]["/api/events"].is_object());
}

/// 200 concurrent starts for one viewer, alternating between two servers: exactly the
/// limit may succeed.
async fn split_starts(a: &Server, b: &Server) -> (usize, usize) {
    let viewer = format!("split-{}", uuid::Uuid::new_v4().simple());
    let attempts: Vec<_> = (0..200)
        .map(|n| {
            let url = format!(
                "{}/api/v1/streams",
                if n % 2 == 0 { &a.address } else { &b.address }
            );
            let viewer = viewer.clone();
            tokio::spawn(async move {
                client()
                    .post(url)
                    .header("X-User-Id", viewer)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let (mut allowed, mut refused) = (0, 0);
    for attempt in attempts {
        match attempt.await.unwrap() {
            201 => allowed += 1,
            429 => refused += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    (allowed, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(postgres_tests),
    ignore = "needs STUDYHALL_TEST_POSTGRES_URL (not set when the tests were built)"
)]
async fn two_servers_sharing_postgresql_allow_exactly_the_limit() {
    let Some((url, _database)) = TestDatabase::postgres().await else {
        return;
    };
    let a = start(url.expose()).await;
    let b = start(url.expose()).await;
    assert_eq!(split_starts(&a, &b).await, (3, 197));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(redis_tests),
    ignore = "needs STUDYHALL_TEST_REDIS_URL (not set when the tests were built)"
)]
async fn two_servers_sharing_redis_allow_exactly_the_limit() {
    let Some(redis) = test_url("STUDYHALL_TEST_REDIS_URL") else {
        return;
    };
    let env = [
        ("STUDYHALL_STREAMS_BACKEND", "redis"),
        ("STUDYHALL_REDIS_URL", redis.as_str()),
    ];
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start_with(
        &format!("sqlite://{}", dir_a.path().join("a.db").display()),
        &env,
    )
    .await;
    let b = start_with(
        &format!("sqlite://{}", dir_b.path().join("b.db").display()),
        &env,
    )
    .await;
    assert_eq!(split_starts(&a, &b).await, (3, 197));
}

/// A port nothing listens on now.
pub(crate) fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("local addr").port()
}

/// A private Redis on a free port, so the test can stop and restart it.
struct PrivateRedis {
    child: Child,
    port: u16,
}

impl PrivateRedis {
    async fn start(port: u16) -> PrivateRedis {
        PrivateRedis::start_with(port, &["--port", &port.to_string()]).await
    }

    /// TLS only (as ElastiCache with in-transit encryption), with a password.
    async fn start_tls(port: u16, password: &str) -> PrivateRedis {
        let args = [
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            &fixture_path("tls-server.pem"),
            "--tls-key-file",
            &fixture_path("tls-server-key.pem"),
            "--tls-ca-cert-file",
            &fixture_path("tls-ca.pem"),
            "--tls-auth-clients",
            "no",
            "--requirepass",
            password,
        ];
        PrivateRedis::start_with(port, &args).await
    }

    async fn start_with(port: u16, args: &[&str]) -> PrivateRedis {
        let child = Command::new("redis-server")
            .args(args)
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server");
        let redis = PrivateRedis { child, port };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        redis
    }

    async fn stop(mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(redis_tests),
    ignore = "needs STUDYHALL_TEST_REDIS_URL (not set when the tests were built)"
)]
async fn while_redis_is_down_starts_fail_with_503_and_service_recovers_without_restart() {
    if test_url("STUDYHALL_TEST_REDIS_URL").is_none() {
        return;
    }
    let port = free_port();
    let redis = PrivateRedis::start(port).await;
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("STUDYHALL_STREAMS_BACKEND", "redis"),
        ("STUDYHALL_REDIS_URL", url.as_str()),
    ];
    let server = start_with(
        &format!("sqlite://{}", dir.path().join("r.db").display()),
        &env,
    )
    .await;
    let start_stream = || async {
        client()
            .post(format!("{}/api/v1/streams", server.address))
            .header("X-User-Id", "outage")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    let ready = || async {
        client()
            .get(format!("{}/ready", server.address))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(start_stream().await, 201);
    assert_eq!(ready().await, 200);

    redis.stop().await;
    assert_eq!(
        start_stream().await,
        503,
        "a start must never be allowed blind"
    );
    assert_eq!(ready().await, 503);

    let _redis = PrivateRedis::start(port).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        if start_stream().await == 201 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no recovery after Redis came back"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(ready().await, 200);
}

/// `rediss://` verifies the server against the system's roots (`SSL_CERT_FILE` here), and
/// sends the password, as with ElastiCache's in-transit encryption and auth token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(redis_tests),
    ignore = "needs STUDYHALL_TEST_REDIS_URL (not set when the tests were built)"
)]
async fn redis_over_tls_with_a_password_verifies_the_server_certificate() {
    if test_url("STUDYHALL_TEST_REDIS_URL").is_none() {
        return;
    }
    let port = free_port();
    let _redis = PrivateRedis::start_tls(port, "s3cret-token").await;
    let url = format!("rediss://:s3cret-token@localhost:{port}");
    let trusted = fixture_path("tls-ca.pem");
    let untrusted = fixture_path("rsa-1.pub.pem");
    let dir = tempfile::tempdir().unwrap();
    for (roots, expected) in [(trusted.as_str(), 201), (untrusted.as_str(), 503)] {
        let env = [
            ("STUDYHALL_STREAMS_BACKEND", "redis"),
            ("STUDYHALL_REDIS_URL", url.as_str()),
            ("SSL_CERT_FILE", roots),
        ];
        let database = format!(
            "sqlite://{}",
            dir.path().join(format!("{expected}.db")).display()
        );
        let server = start_with(&database, &env).await;
        let started = client()
            .post(format!("{}/api/v1/streams", server.address))
            .header("X-User-Id", "tls")
            .send()
            .await
            .unwrap();
        assert_eq!(started.status().as_u16(), expected, "roots {roots}");
        let ready = client()
            .get(format!("{}/ready", server.address))
            .send()
            .await
            .unwrap();
        let ready_status = if expected == 201 { 200 } else { 503 };
        assert_eq!(ready.status().as_u16(), ready_status, "roots {roots}");
    }
}

/// Starts `studyhall worker` and waits until it says it runs.
pub(crate) async fn start_worker(database_url: &str, env: &[(&str, &str)]) -> Child {
    let args = [
        "worker",
        "--concurrency",
        "2",
        "--database-url",
        database_url,
    ];
    spawn(&args, env, "studyhall worker is running").await.0
}

/// Posts `n` grades (values n % 11) for `course` through `server`; returns the sum.
pub(crate) async fn post_grades(server: &Server, course: &str, n: usize) -> i64 {
    let student = "44444444-4444-4444-8444-444444444444";
    let mut sum = 0;
    for chunk in (0..n).collect::<Vec<_>>().chunks(50) {
        let posts: Vec<_> = chunk
            .iter()
            .map(|i| {
                let url = format!("{}/stats/student/grade", server.address);
                let body = json!({"student_id": student, "course_id": course, "grade": i % 11, "created_at": "2024-06-01T10:00:00Z"});
                tokio::spawn(async move { client().post(url).json(&body).send().await.unwrap().status().as_u16() })
            })
            .collect();
        for post in posts {
            assert_eq!(post.await.unwrap(), 200);
        }
        sum += chunk.iter().map(|i| (i % 11) as i64).sum::<i64>();
    }
    sum
}

/// The course's yearly tally: (grade count, grade sum).
async fn course_tally(server: &Server, course: &str) -> (i64, f64) {
    let response = client()
        .get(format!(
            "{}/stats/course/{course}/average?group_by=year",
            server.address
        ))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    body["averages"]
        .as_array()
        .unwrap()
        .iter()
        .fold((0, 0.0), |(count, sum), p| {
            let n = p["grade_count"].as_i64().unwrap();
            (
                count + n,
                sum + p["average_grade"].as_f64().unwrap() * n as f64,
            )
        })
}

async fn jobs_in(server: &Server, state: &str) -> Vec<Value> {
    let page: Value = client()
        .get(format!("{}/jobs?state={state}&limit=1000", server.address))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    page["jobs"].as_array().unwrap().clone()
}

async fn wait_for_tally(server: &Server, course: &str, count: i64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while course_tally(server, course).await.0 < count {
        assert!(
            std::time::Instant::now() < deadline,
            "the workers did not finish"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_queue_loses_nothing_and_applies_each_job_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("kill.db").display());
    let server = start_with(&url, &[("STUDYHALL_NO_WORKER", "true")]).await;
    let sum = post_grades(&server, "c-kill", 2000).await;
    let lease = [("STUDYHALL_JOB_LEASE_SECS", "1")];
    // Kill workers mid-queue until one dies holding a claimed batch (a kill can land
    // between batches; each round it very likely does not).
    let mut stranded: Vec<String> = Vec::new();
    for round in 1..=5 {
        let mut worker = start_worker(&url, &lease).await;
        let target = course_tally(&server, "c-kill").await.0 + 150;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while course_tally(&server, "c-kill").await.0 < target.min(1800) {
            assert!(
                std::time::Instant::now() < deadline,
                "the worker made no progress"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        worker.start_kill().unwrap(); // SIGKILL
        worker.wait().await.unwrap();
        stranded = jobs_in(&server, "running")
            .await
            .iter()
            .map(|j| j["id"].as_str().unwrap().to_owned())
            .collect();
        if !stranded.is_empty() || round == 5 {
            break;
        }
        // Nothing was held: the lease has no part in this round; wait it out and retry.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    }
    assert!(!stranded.is_empty(), "no kill landed mid-batch in 5 rounds");

    let _worker = start_worker(&url, &lease).await;
    wait_for_tally(&server, "c-kill", 2000).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (count, total) = course_tally(&server, "c-kill").await;
    assert_eq!(count, 2000, "every job applied exactly once");
    assert!((total - sum as f64).abs() < 1e-6, "{total} vs {sum}");
    for id in stranded {
        let job: Value = client()
            .get(format!("{}/jobs/{id}", server.address))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(job["state"], "succeeded");
        assert!(
            job["attempts"].as_i64().unwrap() >= 2,
            "a stranded job is reclaimed after its lease: {job}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(postgres_tests),
    ignore = "needs STUDYHALL_TEST_POSTGRES_URL (not set when the tests were built)"
)]
async fn two_worker_processes_on_postgresql_apply_each_job_exactly_once() {
    let Some((url, _database)) = TestDatabase::postgres().await else {
        return;
    };
    let server = start_with(url.expose(), &[("STUDYHALL_NO_WORKER", "true")]).await;
    let sum = post_grades(&server, "c-pg", 2000).await;
    let _a = start_worker(url.expose(), &[]).await;
    let _b = start_worker(url.expose(), &[]).await;
    wait_for_tally(&server, "c-pg", 2000).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (count, total) = course_tally(&server, "c-pg").await;
    assert_eq!(count, 2000, "a job ran twice or not at all");
    assert!((total - sum as f64).abs() < 1e-6, "{total} vs {sum}");
    for state in ["queued", "running", "failed", "dead"] {
        assert!(
            jobs_in(&server, state).await.is_empty(),
            "jobs left {state}"
        );
    }
}

/// One scenario touching every module, run with requests alternating between `servers`;
/// returns what a client observes (ids and timestamps left out).
async fn scenario(servers: &[&Server], secret: &str) -> Value {
    let at = |n: usize| &servers[n % servers.len()].address;
    let c = client();
    let mut seen = serde_json::Map::new();

    // Events: written through both, listed by both; an idempotent retry lands elsewhere.
    for n in 0..10 {
        let status = c
            .post(format!("{}/api/events", at(n)))
            .json(&event(n))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 201);
    }
    let keyed = |n: usize| {
        c.post(format!("{}/api/events", at(n)))
            .header("Idempotency-Key", "smoke")
            .json(&event(99))
            .send()
    };
    let first: Value = keyed(0).await.unwrap().json().await.unwrap();
    let retry: Value = keyed(1).await.unwrap().json().await.unwrap();
    assert_eq!(
        first["id"], retry["id"],
        "an idempotent retry on another instance"
    );
    for n in 0..2 {
        let page: Value = c
            .get(format!("{}/api/events?limit=1000", at(n)))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        seen.insert(
            format!("events via {n}"),
            json!(page["events"].as_array().unwrap().len()),
        );
    }

    // Stats: sessions and a re-post through alternating servers.
    let (user, course) = (
        "55555555-5555-4555-8555-555555555555",
        "66666666-6666-4666-8666-666666666666",
    );
    for (n, (modules, score)) in [(10, 50.0), (30, 90.0), (20, 70.0)].into_iter().enumerate() {
        let body = json!({"sessionId": format!("77777777-7777-4777-8777-77777777777{n}"), "totalModulesStudied": modules, "averageScore": score, "timeStudied": 1000});
        let status = c
            .post(format!("{}/courses/{course}", at(n)))
            .header("X-User-Id", user)
            .json(&body)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 201);
    }
    let repost = json!({"sessionId": "77777777-7777-4777-8777-777777777770", "totalModulesStudied": 40, "averageScore": 80.0, "timeStudied": 500});
    c.post(format!("{}/courses/{course}", at(1)))
        .header("X-User-Id", user)
        .json(&repost)
        .send()
        .await
        .unwrap();
    for n in 0..2 {
        let stats: Value = c
            .get(format!("{}/courses/{course}", at(n)))
            .header("X-User-Id", user)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        seen.insert(format!("course via {n}"), stats);
    }

    // Streams: the limit holds across servers; an end on one frees a slot on the other.
    let start = |n: usize| {
        c.post(format!("{}/api/v1/streams", at(n)))
            .header("X-User-Id", "smoke-viewer")
            .send()
    };
    let mut statuses = Vec::new();
    let mut first_id = String::new();
    for n in 0..4 {
        let response = start(n).await.unwrap();
        statuses.push(response.status().as_u16());
        let body: Value = response.json().await.unwrap();
        if n == 0 {
            first_id = body["stream"]["id"].as_str().unwrap().to_owned();
        }
    }
    let ended = c
        .delete(format!("{}/api/v1/streams/{first_id}", at(1)))
        .header("X-User-Id", "smoke-viewer")
        .send()
        .await
        .unwrap();
    statuses.push(ended.status().as_u16());
    statuses.push(start(0).await.unwrap().status().as_u16());
    seen.insert("stream statuses".into(), json!(statuses));

    // Social: profiles, a request on one server accepted on the other.
    let token = |sub: &str| {
        studyhall::auth::mint_hs256(
            secret,
            "sub",
            sub,
            Some(&format!("{sub}@example.com")),
            std::time::Duration::from_secs(600),
        )
        .unwrap()
    };
    for (n, who) in ["ann", "ben"].into_iter().enumerate() {
        let status = c
            .post(format!("{}/users/me", at(n)))
            .bearer_auth(token(who))
            .json(&json!({"first_name": who, "last_name": "Smoke"}))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
    }
    c.post(format!("{}/friendship/requests", at(0)))
        .bearer_auth(token("ann"))
        .json(&json!({"user_id2": "ben"}))
        .send()
        .await
        .unwrap();
    let accepted = c
        .post(format!("{}/friendship/accept", at(1)))
        .bearer_auth(token("ben"))
        .json(&json!({"user_id1": "ann"}))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 200);
    let friends: Value = c
        .get(format!("{}/friendship/all", at(0)))
        .bearer_auth(token("ann"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    seen.insert("ann's friends".into(), friends);

    // Grades: queued through both servers, stored by whichever worker runs.
    for n in 0..6 {
        let body = json!({"student_id": "88888888-8888-4888-8888-888888888888", "course_id": "smoke", "grade": n, "on_time": n % 2 == 0, "created_at": "2024-03-10T10:00:00Z"});
        assert_eq!(
            c.post(format!("{}/stats/student/grade", at(n)))
                .json(&body)
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    wait_for_tally(servers[0], "smoke", 6).await;
    for n in 0..2 {
        let averages: Value = c
            .get(format!(
                "{}/stats/course/smoke/average?group_by=year&end_date=2030-01-01",
                at(n)
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        seen.insert(format!("grades via {n}"), averages["averages"].clone());
    }
    Value::Object(seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(all(postgres_tests, redis_tests)),
    ignore = "needs STUDYHALL_TEST_POSTGRES_URL and STUDYHALL_TEST_REDIS_URL (not set when the tests were built)"
)]
async fn two_servers_and_a_worker_answer_as_one_server_does() {
    let Some(redis) = test_url("STUDYHALL_TEST_REDIS_URL") else {
        return;
    };
    let secret = "smoke-test-secret-0123456789";
    let env = |worker: bool| {
        let mut env = vec![
            ("STUDYHALL_STREAMS_BACKEND", "redis"),
            ("STUDYHALL_REDIS_URL", redis.as_str()),
            ("STUDYHALL_JWT_SECRET", secret),
        ];
        if !worker {
            env.push(("STUDYHALL_NO_WORKER", "true"));
        }
        env
    };
    // Redis keys are per viewer; each setup flushes the smoke viewer's keys first.
    let forget_viewer = || async {
        let client = redis::Client::open(redis.as_str()).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        for suffix in ["active", "started", "meta", "limit"] {
            let _: () = redis::cmd("DEL")
                .arg(format!("studyhall:streams:{{user:smoke-viewer}}:{suffix}"))
                .query_async(&mut connection)
                .await
                .unwrap();
        }
    };

    let Some((single_url, _single_db)) = TestDatabase::postgres().await else {
        return;
    };
    forget_viewer().await;
    let single = start_with(single_url.expose(), &env(true)).await;
    let one = scenario(&[&single], secret).await;

    let Some((shared_url, _shared_db)) = TestDatabase::postgres().await else {
        return;
    };
    forget_viewer().await;
    let a = start_with(shared_url.expose(), &env(false)).await;
    let b = start_with(shared_url.expose(), &env(false)).await;
    let _worker = start_worker(shared_url.expose(), &[]).await;
    let many = scenario(&[&a, &b], secret).await;

    assert_eq!(
        one, many,
        "two servers and a worker must answer as one server does"
    );
    assert_eq!(
        one["stream statuses"],
        json!([201, 201, 201, 429, 204, 201])
    );
    assert_eq!(one["events via 0"], json!(11));
}
