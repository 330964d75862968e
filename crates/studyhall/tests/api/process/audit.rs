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
    for _ in 0..600 {
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

/// The settings of servers that sign checkpoints every second with one new key.
async fn signing_every_second() -> [(&'static str, String); 2] {
    let (made, key, _) = run(&["audit", "new-key"], &[]).await;
    assert!(made);
    [
        ("STUDYHALL_AUDIT_SIGNING_KEY", key.trim().to_owned()),
        ("STUDYHALL_AUDIT_CHECKPOINT_SECS", "1".to_owned()),
    ]
}

/// Stores `n` events as an older instance did: outside the chain, waiting for a place.
async fn store_unplaced(pool: &sqlx::PgPool, n: i64) {
    sqlx::query(
        "INSERT INTO events (id, component, data, email, environment, message, created_at)
         SELECT gen_random_uuid(), 'legacy', '{}', '', 'production', 'legacy ' || n, n
         FROM generate_series(1, $1) AS n",
    )
    .bind(n)
    .execute(pool)
    .await
    .unwrap();
}

/// How many events are stored, once it is asserted that every one of them has a place
/// in one gapless sequence of positions and that the chain verifies.
async fn placed_gaplessly(server: &Server, url: &str, pool: &sqlx::PgPool) -> i64 {
    let page = checkpointed(server).await;
    let public_key = page["public_key"].as_str().unwrap().to_owned();
    let (verified, out, err) = verify(url, &public_key).await;
    assert!(verified, "{out}{err}");
    let (count, placed, lowest, highest): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(position), min(position), max(position) FROM events",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(
        (placed, lowest, highest),
        (count, 1, count),
        "positions are not one gapless sequence over every event"
    );
    assert!(out.contains(&format!("verified: {count} events")), "{out}");
    count
}

async fn two_servers_appending_at_once_keep_one_chain() {
    // Both servers append events and stream decisions to one database at once, each
    // in its own batches and each after the head it last saw (stale as soon as the
    // other appends), while both place events an older instance stored outside the
    // chain: the chain's one row lock makes them one sequence, with no position given
    // twice or skipped.
    let (url, _database) = TestDatabase::postgres().await;
    let settings = signing_every_second().await;
    let env = settings
        .each_ref()
        .map(|(name, value)| (*name, value.as_str()));
    let a = start_with(url.expose(), &env).await;
    let b = start_with(url.expose(), &env).await;
    let pool = sqlx::PgPool::connect(url.expose()).await.unwrap();
    store_unplaced(&pool, 3000).await;
    let (first, second) = tokio::join!(load(&a.address, 400, "a"), load(&b.address, 400, "b"));
    assert_eq!((first, second), (400, 400));
    let count = placed_gaplessly(&a, url.expose(), &pool).await;
    assert!(count >= 3800, "{count}");
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
    placed_gaplessly(&a, url.expose(), &pool).await;
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

/// Events stored and not yet placed in the chain.
async fn waiting(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events WHERE position IS NULL")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn another_instance_sequences_on_after_the_sequencer_is_killed_mid_batch() {
    // Each round, twenty thousand events wait (stored by an older instance) while
    // clients post more, and one server sequences them, a thousand per transaction;
    // once it has placed some, it is killed with -9 at a moment of its own choosing,
    // and the next server takes over. In the end every event, acknowledged or stored,
    // has one place in one gapless chain that verifies.
    let (url, _database) = TestDatabase::postgres().await;
    let settings = signing_every_second().await;
    let env = settings
        .each_ref()
        .map(|(name, value)| (*name, value.as_str()));
    let pool = sqlx::PgPool::connect(url.expose()).await.unwrap();
    let mut acknowledged = 0;
    let mut interrupted = 0;
    for round in 0..3 {
        store_unplaced(&pool, 20_000).await;
        let before = waiting(&pool).await;
        let mut server = start_with(url.expose(), &env).await;
        let address = server.address.clone();
        let tag = format!("k{round}");
        let posting = tokio::spawn(async move { load(&address, 200, &tag).await });
        for _ in 0..2000 {
            if waiting(&pool).await < before {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let pause = u64::from(uuid::Uuid::new_v4().as_bytes()[0]) / 8;
        tokio::time::sleep(Duration::from_millis(pause)).await;
        server.child.start_kill().unwrap();
        server.child.wait().await.unwrap();
        if waiting(&pool).await > 0 {
            interrupted += 1;
        }
        acknowledged += posting.await.unwrap();
    }
    assert!(
        interrupted >= 1,
        "every kill came after the sequencer had finished"
    );
    let server = start_with(url.expose(), &env).await;
    let count = placed_gaplessly(&server, url.expose(), &pool).await;
    assert!(
        count as usize >= 60_000 + acknowledged,
        "{count} stored, {acknowledged} acknowledged"
    );
}
crate::case!(
    another_instance_sequences_on_after_the_sequencer_is_killed_mid_batch,
    needs = [Postgres]
);

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
