//! Durability: every acknowledged write survives `kill -9`; SIGTERM lets in-flight
//! requests finish, and drains kept-alive clients so that none is left unanswered.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::process::Command;

use super::*;

/// Sends SIGTERM to `child`, as ECS does before it stops a task.
async fn sigterm(child: &tokio::process::Child) {
    let pid = child.id().expect("pid").to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(status.success());
}

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
    sigterm(&server.child).await;
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

/// Clients on kept-alive connections keep sending through a SIGTERM, as a load balancer
/// does until it has deregistered the task: every request is answered (a connection is
/// only closed after a response that says so), `/ready` fails at once so the balancer
/// stops sending, and the server stops, exit 0, once the drain period is over.
async fn sigterm_drains_so_no_request_on_a_kept_alive_connection_goes_unanswered() {
    const DRAIN: Duration = Duration::from_secs(3);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("drain.db").display());
    let mut server = start_with(&url, &[("STUDYHALL_SHUTDOWN_DRAIN", "3s")]).await;
    let signalled = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|client_number| {
            let (address, signalled) = (server.address.clone(), signalled.clone());
            tokio::spawn(async move {
                let client = client();
                let (mut answered, mut closed_after, mut unanswered) = (0, 0, Vec::new());
                let mut stop_at = None;
                for n in (client_number..).step_by(8) {
                    match stop_at {
                        Some(at) if Instant::now() > at => break,
                        None if signalled.load(Ordering::SeqCst) => {
                            // Well inside the drain: the balancer's last requests.
                            stop_at = Some(Instant::now() + Duration::from_secs(1));
                        }
                        _ => {}
                    }
                    match client
                        .post(format!("{address}/api/events"))
                        .json(&event(n))
                        .send()
                        .await
                    {
                        Ok(response) => {
                            assert_eq!(response.status(), 201);
                            answered += 1;
                            if response
                                .headers()
                                .get("connection")
                                .is_some_and(|v| v == "close")
                            {
                                closed_after += 1;
                            }
                        }
                        Err(err) => unanswered.push(format!("{err:?}")),
                    }
                }
                (answered, closed_after, unanswered)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    signalled.store(true, Ordering::SeqCst);
    let signalled_at = Instant::now();
    sigterm(&server.child).await;
    let mut ready = 200;
    while ready != 503 && signalled_at.elapsed() < Duration::from_secs(1) {
        ready = client()
            .get(format!("{}/ready", server.address))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
    }
    assert_eq!(
        ready, 503,
        "/ready still answered 200 a second into the drain"
    );
    let (mut answered, mut closed_after) = (0, 0);
    for client in clients {
        let (client_answered, client_closed, unanswered) = client.await.unwrap();
        assert!(
            unanswered.is_empty(),
            "requests left unanswered: {unanswered:?}"
        );
        answered += client_answered;
        closed_after += client_closed;
    }
    assert!(
        answered > 0 && closed_after > 0,
        "{answered} answered, {closed_after} closed after"
    );
    let exit = server.child.wait().await.unwrap();
    assert_eq!(exit.code(), Some(0), "studyhall must exit 0 after draining");
    assert!(
        signalled_at.elapsed() >= DRAIN,
        "stopped {:?} after the signal, before the drain ended",
        signalled_at.elapsed()
    );
}
crate::case!(sigterm_drains_so_no_request_on_a_kept_alive_connection_goes_unanswered);
