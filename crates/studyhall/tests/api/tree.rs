//! The log's Merkle tree over HTTP: signed C2SP checkpoints, tiles, receipts and
//! consistency proofs, each checked here from the events alone with an independent
//! computation of the tree, and a rewritten tree the server refuses to sign.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use studyhall::audit::export::{read, Record};
use studyhall::audit::key::parse_public;
use studyhall::audit::note::Checkpoint;
use studyhall::audit::tree::{self, Hash};

use crate::audit::{audited, export, post_events, tamper};
use crate::helpers::{json, TestApp};
use crate::on_every_backend_with;

/// The public key and the newest checkpoint note, once one covers `size` events.
pub(crate) async fn signed(
    app: &TestApp,
    size: u64,
) -> (ed25519_dalek::VerifyingKey, Checkpoint, String) {
    for _ in 0..200 {
        app.clock.advance(Duration::from_secs(1));
        let response = app.get("/api/events/log/checkpoint").await;
        if response.status() == 200 {
            assert_eq!(
                response.headers()["content-type"],
                "text/plain; charset=utf-8"
            );
            assert_eq!(response.headers()["cache-control"], "no-cache");
            let note = response.text().await.unwrap();
            let (_, page) = json(app.get("/api/events/checkpoints").await).await;
            let key = parse_public(page["public_key"].as_str().unwrap()).unwrap();
            let origin = note.lines().next().unwrap().to_owned();
            let checkpoint =
                Checkpoint::open(&note, &origin, &key).expect("the log's key signed it");
            if checkpoint.size == size {
                return (key, checkpoint, note);
            }
            assert!(checkpoint.size < size, "{note}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no checkpoint reached size {size}");
}

/// Each exported event's leaf hash, computed here from its fields.
async fn leaves(app: &TestApp) -> Vec<Hash> {
    let text = export(app, "").await;
    read(std::io::Cursor::new(text.into_bytes()))
        .unwrap()
        .filter_map(|record| match record.unwrap() {
            Record::Event(event) => Some(tree::leaf_hash(&event.entry().canonical())),
            Record::Statement(_) => None,
        })
        .collect()
}

/// RFC 6962's MTH, straight from its definition.
fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => tree::empty_root(),
        1 => leaves[0],
        n => {
            let k = 1 << (usize::BITS - 1 - (n - 1).leading_zeros());
            tree::node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

/// The ids of the events, in position order.
async fn ids(app: &TestApp) -> Vec<String> {
    let (_, page) = json(app.get("/api/events?limit=1000").await).await;
    crate::events::ids(&page)
}

on_every_backend_with! {
    audited;

    async fn the_signed_checkpoint_is_the_tree_of_the_events_as_stored(app) {
        post_events(&app, 11).await;
        let (_, checkpoint, note) = signed(&app, 11).await;
        assert_eq!(checkpoint.root, mth(&leaves(&app).await), "{note}");
        assert!(note.starts_with("studyhall.invalid/log/"), "the default origin: {note}");
        // Another key does not open it.
        let stranger = studyhall::audit::key::AuditKey::generate().unwrap().public();
        assert!(Checkpoint::open(&note, &checkpoint.origin, &stranger).is_err());
    }

    async fn checkpoints_older_than_an_hour_are_thinned_to_the_last_of_each_minute(app) {
        // Four checkpoints, a few seconds apart: one minute, or two at most (after the
        // empty tree's, which a sealer may sign before the first event).
        let mut key = None;
        for size in 1..=4 {
            post_events(&app, 1).await;
            key = Some(signed(&app, size).await.0);
        }
        let db = studyhall::db::Db::connect(&app.database_url, 1).await.unwrap();
        let sizes = || async {
            studyhall::sql::Sql::new("SELECT size FROM log_tree_checkpoints WHERE size > 0 ORDER BY size")
                .fetch_all::<(i64,)>(&db)
                .await
                .unwrap()
                .into_iter()
                .map(|(size,)| size)
                .collect::<Vec<i64>>()
        };
        assert_eq!(sizes().await, [1, 2, 3, 4], "recent checkpoints are all kept");
        app.clock.advance(Duration::from_secs(2 * 3600));
        let mut kept = sizes().await;
        for _ in 0..100 {
            if kept.len() < 4 {
                break;
            }
            app.clock.advance(Duration::from_secs(1));
            tokio::time::sleep(Duration::from_millis(50)).await;
            kept = sizes().await;
        }
        assert!(kept.len() <= 2 && kept.last() == Some(&4), "{kept:?}");
        studyhall::audit::cli::verify_store(&app.database_url, &key.unwrap())
            .await
            .unwrap();
        let (_, checkpoint, _) = signed(&app, 4).await;
        assert_eq!(checkpoint.size, 4);
    }

    async fn every_event_has_a_receipt_that_verifies_offline(app) {
        post_events(&app, 6).await;
        let (key, _, _) = signed(&app, 6).await;
        for (n, id) in ids(&app).await.iter().enumerate() {
            let response = app.get(&format!("/api/events/{id}/proof")).await;
            assert_eq!(response.status(), 200);
            let text = response.text().await.unwrap();
            let (proof, note) = text.split_once("\n\n").unwrap();
            let mut lines = proof.lines();
            assert_eq!(lines.next(), Some("c2sp.org/tlog-proof@v1"));
            let entry = STANDARD.decode(lines.next().unwrap().strip_prefix("extra ").unwrap()).unwrap();
            let index: u64 = lines.next().unwrap().strip_prefix("index ").unwrap().parse().unwrap();
            assert_eq!(index, n as u64);
            let path: Vec<Hash> = lines.map(|line| STANDARD.decode(line).unwrap().try_into().unwrap()).collect();
            let origin = note.lines().next().unwrap();
            let checkpoint = Checkpoint::open(note, origin, &key).unwrap();
            tree::check_inclusion(&path, index, checkpoint.size, &tree::leaf_hash(&entry), &checkpoint.root)
                .unwrap_or_else(|err| panic!("event {index}: {err}"));
            // The entry is the event's own canonical form.
            assert!(String::from_utf8_lossy(&entry).contains(id), "{id}");
            // `studyhall audit verify --proof` says the same offline, and refuses an edit.
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("event.tlog-proof");
            std::fs::write(&file, &text).unwrap();
            let said = studyhall::audit::cli::verify_proof(&file, &key, None).unwrap();
            assert!(said.contains(id.as_str()) && said.contains("size 6"), "{said}");
            let moved = text.replacen(&format!("index {index}\n"), &format!("index {}\n", (index + 1) % 6), 1);
            std::fs::write(&file, &moved).unwrap();
            assert!(studyhall::audit::cli::verify_proof(&file, &key, None).is_err(), "a receipt moved to another index");
        }
        let (status, problem) = json(app.get("/api/events/0195d6f0-0000-7000-8000-000000000000/proof").await).await;
        assert_eq!(status, 404, "{problem}");
        let (status, _) = json(app.get("/api/events/not-an-id/proof").await).await;
        assert_eq!(status, 404);
    }

    async fn tiles_hold_the_leaf_hashes_and_appear_only_once_complete(app) {
        post_events(&app, 5).await;
        signed(&app, 5).await;
        let leaves = leaves(&app).await;
        let response = app.get("/api/events/log/tile/0/000.p/5").await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["cache-control"], "public, max-age=31536000, immutable");
        assert_eq!(response.bytes().await.unwrap().to_vec(), leaves.concat());
        let response = app.get("/api/events/log/tile/0/000.p/3").await;
        assert_eq!(response.bytes().await.unwrap().to_vec(), leaves[..3].concat());
        for missing in ["0/000.p/6", "0/000", "1/000.p/1", "0/001.p/1", "0/1", "x/000", "0/000.p/0"] {
            let (status, problem) = json(app.get(&format!("/api/events/log/tile/{missing}")).await).await;
            assert_eq!(status, 404, "{missing}: {problem}");
        }
    }

    async fn a_later_checkpoint_is_proved_consistent_with_an_earlier_one(app) {
        post_events(&app, 3).await;
        let (_, old, _) = signed(&app, 3).await;
        post_events(&app, 6).await;
        let (_, new, _) = signed(&app, 9).await;
        let (status, body) = json(app.get("/api/events/log/consistency?old=3&new=9").await).await;
        assert_eq!(status, 200, "{body}");
        let proof: Vec<Hash> = body["proof"].as_array().unwrap().iter()
            .map(|h| STANDARD.decode(h.as_str().unwrap()).unwrap().try_into().unwrap()).collect();
        tree::check_consistency(&proof, 3, 9, &old.root, &new.root).unwrap();
        for bad in ["old=9&new=3", "old=1&new=99", "old=x&new=3", "new=3"] {
            let (status, problem) = json(app.get(&format!("/api/events/log/consistency?{bad}")).await).await;
            assert_eq!(status, 400, "{bad}: {problem}");
        }
    }

    async fn a_tree_rewritten_behind_the_servers_back_is_never_signed(app) {
        post_events(&app, 4).await;
        let (_, before, _) = signed(&app, 4).await;
        // A database writer rewrites the tree's stored hashes.
        tamper(&app, "UPDATE log_tree_hashes SET hash = (SELECT hash FROM log_tree_hashes WHERE idx = 0) WHERE idx > 0").await;
        post_events(&app, 3).await;
        for _ in 0..10 {
            app.clock.advance(Duration::from_secs(1));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let note = app.get("/api/events/log/checkpoint").await.text().await.unwrap();
        let origin = note.lines().next().unwrap();
        let (_, page) = json(app.get("/api/events/checkpoints").await).await;
        let key = parse_public(page["public_key"].as_str().unwrap()).unwrap();
        let latest = Checkpoint::open(&note, origin, &key).unwrap();
        assert_eq!(latest, before, "the server signed a tree that does not extend its last checkpoint");
    }

    async fn an_event_altered_after_it_was_logged_no_longer_verifies_against_its_receipt(app) {
        post_events(&app, 4).await;
        signed(&app, 4).await;
        tamper(&app, "UPDATE events SET message = 'invoice 2 void' WHERE position = 2").await;
        let id = &ids(&app).await[1];
        let (status, problem) = json(app.get(&format!("/api/events/{id}/proof")).await).await;
        assert_eq!(status, 409, "{problem}");
        assert!(problem["detail"].as_str().unwrap().contains("altered"), "{problem}");
        // The others still prove themselves.
        let first = &ids(&app).await[0];
        assert_eq!(app.get(&format!("/api/events/{first}/proof")).await.status(), 200);
    }
}

/// Three instances on one PostgreSQL database, each growing the tree while all three
/// take posts: every event becomes exactly one leaf, and the signed root is the tree of
/// the events as stored.
async fn instances_growing_one_tree_integrate_each_event_once() {
    let key = studyhall::audit::key::AuditKey::generate().unwrap();
    let with_key = |settings: &mut studyhall::config::ServeSettings| {
        audited(settings);
        settings.audit.audit_signing_key = Some(key.private_text().parse().unwrap());
    };
    let first = TestApp::postgres_with(with_key).await;
    let others = [
        TestApp::postgres_url_with(first.database_url.clone(), with_key).await,
        TestApp::postgres_url_with(first.database_url.clone(), with_key).await,
    ];
    let apps = [&first, &others[0], &others[1]];
    let posts = apps.iter().enumerate().map(|(n, app)| async move {
        for i in 0..40 {
            let body = serde_json::json!({"component": "c", "data": {"i": i}, "email": "a@b.io",
                                          "environment": "e", "message": format!("instance {n} event {i}")});
            assert_eq!(app.post_json("/api/events", &body).await.status(), 201);
            if i % 10 == 0 {
                app.clock.advance(Duration::from_secs(1));
            }
        }
    });
    futures_util::future::join_all(posts).await;
    let mut size = 0;
    for _ in 0..200 {
        for app in apps {
            app.clock.advance(Duration::from_secs(1));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let response = first.get("/api/events/log/checkpoint").await;
        if response.status() == 200 {
            let note = response.text().await.unwrap();
            size = Checkpoint::open(&note, note.lines().next().unwrap(), &key.public())
                .unwrap()
                .size;
            if size == 120 {
                let checkpoint =
                    Checkpoint::open(&note, note.lines().next().unwrap(), &key.public()).unwrap();
                assert_eq!(checkpoint.root, mth(&leaves(&first).await));
                break;
            }
        }
    }
    assert_eq!(size, 120, "the tree did not grow over every event");
    let db = studyhall::db::Db::connect(&first.database_url, 1)
        .await
        .unwrap();
    let stored: Option<i64> = studyhall::sql::Sql::new("SELECT COUNT(*) FROM log_tree_hashes")
        .fetch_scalar(&db)
        .await
        .unwrap();
    assert_eq!(
        stored,
        Some(tree::stored_count(120) as i64),
        "each hash stored once"
    );
    db.close().await;
    for app in others {
        app.stop().await;
    }
    first.stop().await;
}
crate::case!(
    instances_growing_one_tree_integrate_each_event_once,
    needs = [Postgres]
);
