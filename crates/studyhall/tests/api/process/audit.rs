//! The audit chain as processes see it: one chain across instances on PostgreSQL, a
//! chain that verifies after `kill -9` in the middle of appending, and the
//! `studyhall audit` commands' exit codes.

use std::time::Duration;

use serde_json::Value;

use super::*;
use crate::helpers::TestDatabase;

/// Posts `n` events and `n / 10` stream starts through `server` at once; how many
/// events were acknowledged.
async fn load(address: &str, n: usize, tag: &str) -> usize {
    let mut sent = Vec::new();
    for i in 0..n {
        let url = format!("{address}/api/events");
        sent.push(tokio::spawn(async move {
            let response = client().post(url).json(&event(i)).send().await.ok()?;
            Some(response.status() == 201)
        }));
        if i % 10 == 0 {
            let url = format!("{address}/api/v1/streams");
            let viewer = format!("{tag}-{}", i % 7);
            tokio::spawn(async move {
                let _ = client().post(url).header("X-User-Id", viewer).send().await;
            });
        }
    }
    let mut acknowledged = 0;
    for post in sent {
        if let Ok(Some(true)) = post.await {
            acknowledged += 1;
        }
    }
    acknowledged
}

/// Waits until a checkpoint covers the chain's head, as `server` reports it.
async fn checkpointed(server: &Server) -> Value {
    for _ in 0..100 {
        let page = get_json(format!(
            "{}/api/events/checkpoints?limit=1000",
            server.address
        ))
        .await;
        let head = page["head"]["position"].as_i64().unwrap();
        let signed = page["checkpoints"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["position"].as_i64() == Some(head));
        if head > 0 && signed && page["unchained"] == 0 {
            return page;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no checkpoint reached the head");
}

async fn verify(database_url: &str, public_key: &str) -> (bool, String, String) {
    run(
        &[
            "audit",
            "verify",
            "--database-url",
            database_url,
            "--public-key",
            public_key,
        ],
        &[],
    )
    .await
}

async fn two_servers_appending_at_once_keep_one_chain() {
    // Both servers append events and stream decisions to one database at once, each
    // in its own batches and each after the head it last saw (stale as soon as the
    // other appends), while both chain events an older instance stored outside the
    // chain: the chain's one row lock makes them one sequence, with no position given
    // twice or skipped.
    let (url, _database) = TestDatabase::postgres().await;
    let (made, key, _) = run(&["audit", "new-key"], &[]).await;
    assert!(made);
    let env = [
        ("STUDYHALL_AUDIT_SIGNING_KEY", key.trim()),
        ("STUDYHALL_AUDIT_CHECKPOINT_SECS", "1"),
    ];
    let a = start_with(url.expose(), &env).await;
    let b = start_with(url.expose(), &env).await;
    let pool = sqlx::PgPool::connect(url.expose()).await.unwrap();
    sqlx::query(
        "INSERT INTO events (id, component, data, email, environment, message, created_at)
         SELECT gen_random_uuid(), 'legacy', '{}', '', 'production', 'legacy ' || n, n
         FROM generate_series(1, 3000) AS n",
    )
    .execute(&pool)
    .await
    .unwrap();
    let (first, second) = tokio::join!(load(&a.address, 400, "a"), load(&b.address, 400, "b"));
    assert_eq!((first, second), (400, 400));
    let page = checkpointed(&a).await;
    let public_key = page["public_key"].as_str().unwrap().to_owned();
    let (verified, out, err) = verify(url.expose(), &public_key).await;
    assert!(verified, "{out}{err}");
    let (count, lowest, highest): (i64, i64, i64) =
        sqlx::query_as("SELECT count(*), min(position), max(position) FROM events")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(count >= 3800, "{count}");
    assert_eq!(
        (lowest, highest),
        (1, count),
        "positions are not one gapless sequence"
    );
    assert!(out.contains(&format!("verified: {count} events")), "{out}");
    // Each instance's first batch, with no head seen yet, reserved; once the other
    // stops appending, an instance's batches append after the head it saw, in one
    // statement, and the chain still verifies.
    for server in [&a, &b] {
        assert!(appends(server, "reserved").await >= 1.0);
    }
    let before = appends(&a, "seen").await;
    for n in 0..3 {
        let response = client()
            .post(format!("{}/api/events", a.address))
            .json(&event(n))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
    assert!(appends(&a, "seen").await >= before + 2.0);
    let (verified, out, err) = verify(url.expose(), &public_key).await;
    assert!(verified, "{out}{err}");
}
crate::case!(
    two_servers_appending_at_once_keep_one_chain,
    needs = [Postgres]
);

/// How many batches `server` appended to the chain by the `head` path.
async fn appends(server: &Server, head: &str) -> f64 {
    let label = format!("head=\"{head}\"");
    crate::observability::metric(server, "audit_chain_appends_total", &[&label])
        .await
        .unwrap_or(0.0)
}

async fn the_chain_verifies_after_kill_9_in_the_middle_of_appending() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("chain.db").display());
    let env = [("STUDYHALL_AUDIT_CHECKPOINT_SECS", "1")];
    let mut server = start_with(&url, &env).await;
    checkpoint_some(&server).await;
    // Kill it at a moment of its own choosing while 600 posts are in flight.
    let pause = Duration::from_millis(50 + u64::from(uuid::Uuid::new_v4().as_bytes()[0]));
    let address = server.address.clone();
    let posting = tokio::spawn(async move { load(&address, 600, "k").await });
    tokio::time::sleep(pause).await;
    server.child.start_kill().unwrap();
    server.child.wait().await.unwrap();
    let acknowledged = posting.await.unwrap();

    let restarted = start_with(&url, &env).await;
    let page = checkpointed(&restarted).await;
    let public_key = page["public_key"].as_str().unwrap().to_owned();
    let (printed, key, _) = run(&["audit", "public-key", "--database-url", &url], &[]).await;
    assert!(printed);
    assert_eq!(key.trim(), public_key);
    let (verified, out, err) = verify(&url, &public_key).await;
    assert!(
        verified,
        "after kill -9 with {acknowledged} acknowledged: {out}{err}"
    );
    let chained = page["head"]["position"].as_i64().unwrap();
    assert!(
        chained as usize > acknowledged,
        "{chained} chained, {acknowledged} acknowledged"
    );
}
crate::case!(the_chain_verifies_after_kill_9_in_the_middle_of_appending);

/// Posts one event and waits for its checkpoint.
async fn checkpoint_some(server: &Server) {
    let response = client()
        .post(format!("{}/api/events", server.address))
        .json(&event(0))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    checkpointed(server).await;
}

async fn verify_exits_non_zero_naming_the_first_broken_position() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.db");
    let url = format!("sqlite://{}", file.display());
    let env = [("STUDYHALL_AUDIT_CHECKPOINT_SECS", "1")];
    let server = start_with(&url, &env).await;
    assert_eq!(load(&server.address, 20, "v").await, 20);
    let page = checkpointed(&server).await;
    let public_key = page["public_key"].as_str().unwrap().to_owned();
    // The export, through the command line, verifies on its own.
    let export = dir.path().join("events.ndjson");
    let export_path = export.display().to_string();
    let (exported, _, err) = run(
        &[
            "audit",
            "export",
            "--database-url",
            &url,
            "--output",
            &export_path,
        ],
        &[],
    )
    .await;
    assert!(exported, "{err}");
    let (verified, out, err) = run(
        &[
            "audit",
            "verify",
            "--file",
            &export_path,
            "--public-key",
            &public_key,
        ],
        &[],
    )
    .await;
    assert!(verified, "{out}{err}");
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query("UPDATE events SET message = 'rewritten' WHERE position = 7")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let (verified, _, err) = verify(&url, &public_key).await;
    assert!(!verified, "a rewritten event verified");
    assert!(err.contains("broken at position 7"), "{err}");
    // A missing source or a bad key is a clear error, not a panic.
    let (ok, _, err) = run(&["audit", "verify", "--public-key", &public_key], &[]).await;
    assert!(!ok && err.contains("--database-url"), "{err}");
    let (ok, _, err) = verify(&url, "not-a-key").await;
    assert!(!ok && err.contains("public key"), "{err}");
}
crate::case!(verify_exits_non_zero_naming_the_first_broken_position);
