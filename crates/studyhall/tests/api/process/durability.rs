//! Durability: every acknowledged write survives `kill -9`; SIGTERM lets in-flight
//! requests finish.

use std::collections::HashSet;

use serde_json::Value;
use tokio::process::Command;

use super::*;

async fn stored_ids(address: &str) -> HashSet<String> {
    let mut ids = HashSet::new();
    let mut cursor = String::new();
    loop {
        let page: Value = get_json(format!("{address}/api/events?limit=1000{cursor}")).await;
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
crate::case!(every_acknowledged_event_survives_kill_9);

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
crate::case!(sigterm_lets_in_flight_requests_finish_and_exits_zero);
