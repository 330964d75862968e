//! Tests of the `studyhall` binary as a process: durability across `kill -9`, graceful
//! shutdown on SIGTERM, and settings errors.

use std::collections::HashSet;
use std::process::Stdio;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BINARY: &str = env!("CARGO_BIN_EXE_studyhall");

struct Server {
    child: Child,
    address: String,
}

/// Starts `studyhall serve` on a free port and waits until it says where it listens.
async fn start(database_url: &str) -> Server {
    let mut child = Command::new(BINARY)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            database_url,
        ])
        .env("STUDYHALL_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start studyhall");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let address = loop {
        let line = lines
            .next_line()
            .await
            .expect("read log")
            .expect("studyhall exited before listening");
        let Ok(entry) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if entry["message"] == "studyhall is listening" {
            break entry["address"].as_str().expect("address field").to_owned();
        }
    };
    // Keep draining the log so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Server {
        child,
        address: format!("http://{address}"),
    }
}

fn client() -> reqwest::Client {
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
    let (ok, _, stderr) = run(&["serve", "--modules", "events,nope"], &[]).await;
    assert!(!ok);
    assert!(stderr.contains("nope"), "{stderr}");
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
