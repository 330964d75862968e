//! The audit log: the chain, its checkpoints, exports, and verification that finds
//! every kind of tampering done behind the service's back, on every backend.

use std::time::Duration;

use serde_json::{json, Value};
use studyhall::audit::chain::Entry;
use studyhall::audit::cli::{verify_file, verify_store};
use studyhall::audit::key::{parse_public, AuditKey};
use studyhall::clock::Micros;
use studyhall::config::ServeSettings;
use studyhall::db::Db;
use studyhall::sql::Sql;

use crate::helpers::{json, TestApp};
use crate::on_every_backend_with;

/// A key every test server signs with (PostgreSQL generates none), checkpoints after
/// every event and every second.
pub(crate) fn audited(settings: &mut ServeSettings) {
    let key = AuditKey::generate().unwrap();
    settings.audit.audit_signing_key = Some(key.private_text().parse().unwrap());
    settings.audit.audit_checkpoint_events = 1;
    settings.audit.audit_checkpoint_secs = 1;
}

fn event(n: usize) -> Value {
    json!({"component": "billing", "data": {"n": n, "note": "naïve ✓"}, "email": "ade@gmail.com",
           "environment": "production", "message": format!("invoice {n} paid")})
}

/// Posts `n` events one after another.
pub(crate) async fn post_events(app: &TestApp, n: usize) {
    for i in 1..=n {
        let (status, body) = json(app.post_json("/api/events", &event(i)).await).await;
        assert_eq!(status, 201, "{body}");
    }
}

/// Waits until a checkpoint covers the chain's head at `position`; the public key. It
/// moves the server's clock a second at a time, so the sealer's next round comes at once.
pub(crate) async fn checkpointed(app: &TestApp, position: i64) -> ed25519_dalek::VerifyingKey {
    for _ in 0..200 {
        app.clock.advance(Duration::from_secs(1));
        let (status, page) = json(app.get("/api/events/checkpoints?limit=1000").await).await;
        assert_eq!(status, 200, "{page}");
        let signed = page["checkpoints"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["kind"] == "checkpoint" && c["position"] == position);
        if signed {
            assert_eq!(page["head"]["position"], position, "{page}");
            return parse_public(page["public_key"].as_str().unwrap()).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no checkpoint reached position {position}");
}

async fn db(app: &TestApp) -> Db {
    Db::connect(&app.database_url, 1).await.unwrap()
}

/// Runs one statement behind the service's back.
pub(crate) async fn tamper(app: &TestApp, statement: &str) {
    let db = db(app).await;
    let changed = Sql::new(statement).execute(&db).await.unwrap();
    assert!(changed > 0, "the tampering changed nothing: {statement}");
    db.close().await;
}

/// The first broken position verification reports.
async fn broken_at(app: &TestApp, key: &ed25519_dalek::VerifyingKey) -> i64 {
    let err = verify_store(&app.database_url, key)
        .await
        .expect_err("verification passed a tampered log");
    let broken = err
        .downcast_ref::<studyhall::audit::verify::Broken>()
        .unwrap_or_else(|| panic!("not a broken chain: {err:#}"));
    broken.position
}

pub(crate) async fn export(app: &TestApp, query: &str) -> String {
    let response = app.get(&format!("/api/events/export{query}")).await;
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

/// The admin token of the tests that configure one.
const ADMIN: &str = "audit-admin-token-0123456789";

/// Events the service recorded with `component` and `message` (read with the admin
/// token, which reads whatever `STUDYHALL_EVENTS_READ` says).
async fn recorded_in(app: &TestApp, component: &str, message: &str) -> Vec<Value> {
    let response = app
        .client
        .get(app.url(&format!("/api/events?component={component}&limit=1000")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    let (status, page) = json(response).await;
    assert_eq!(status, 200, "{page}");
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["message"] == message)
        .cloned()
        .collect()
}

/// Changes the message at `at` and recomputes every chain hash from there on, as a
/// database writer who knows the canonical form can.
async fn rewrite(app: &TestApp, at: i64, new_message: &str) {
    let db = db(app).await;
    let mut previous: String = Sql::new("SELECT hash FROM events WHERE position = $1")
        .bind(at - 1)
        .fetch_scalar(&db)
        .await
        .unwrap()
        .unwrap();
    type Row = (i64, String, i64, String, String, String, String, String);
    let rows: Vec<Row> = Sql::new(
        "SELECT position, CAST(id AS TEXT), created_at, component, environment, email, message, data
         FROM events WHERE position >= $1 ORDER BY position",
    )
    .bind(at)
    .fetch_all(&db)
    .await
    .unwrap();
    for (position, id, created_at, component, environment, email, message, data) in rows {
        let message = if position == at {
            new_message.to_owned()
        } else {
            message
        };
        let hash = Entry {
            position,
            id: id.parse().unwrap(),
            created_at: Micros(created_at),
            component: &component,
            environment: &environment,
            email: &email,
            message: &message,
            data: &data,
        }
        .link(&previous)
        .unwrap();
        Sql::new("UPDATE events SET message = $1, hash = $2 WHERE position = $3")
            .bind(&message)
            .bind(&hash)
            .bind(position)
            .execute(&db)
            .await
            .unwrap();
        previous = hash;
    }
    Sql::new("UPDATE event_chain_head SET hash = $1")
        .bind(&previous)
        .execute(&db)
        .await
        .unwrap();
    db.close().await;
}

on_every_backend_with! {
    audited;

    async fn an_untouched_log_verifies_with_the_public_key_alone(app) {
        post_events(&app, 5).await;
        let key = checkpointed(&app, 5).await;
        let verified = verify_store(&app.database_url, &key).await.unwrap();
        assert_eq!((verified.events, verified.first, verified.last), (5, Some(1), Some(5)));
        assert!(verified.checkpoints >= 1);
        assert_eq!(verified.unsigned, 0);
        // Another key does not verify it.
        let stranger = AuditKey::generate().unwrap().public();
        assert!(verify_store(&app.database_url, &stranger).await.is_err());
    }

    async fn a_changed_message_is_found_at_its_position(app) {
        post_events(&app, 5).await;
        let key = checkpointed(&app, 5).await;
        tamper(&app, "UPDATE events SET message = 'invoice 3 refunded' WHERE position = 3").await;
        assert_eq!(broken_at(&app, &key).await, 3);
    }

    async fn a_deleted_event_is_found_at_its_position(app) {
        post_events(&app, 5).await;
        let key = checkpointed(&app, 5).await;
        tamper(&app, "DELETE FROM events WHERE position = 2").await;
        assert_eq!(broken_at(&app, &key).await, 2);
    }

    async fn two_swapped_events_are_found(app) {
        post_events(&app, 5).await;
        let key = checkpointed(&app, 5).await;
        tamper(&app, "UPDATE events SET position = -2 WHERE position = 2").await;
        tamper(&app, "UPDATE events SET position = 2 WHERE position = 4").await;
        tamper(&app, "UPDATE events SET position = 4 WHERE position = -2").await;
        assert_eq!(broken_at(&app, &key).await, 2);
    }

    async fn a_forged_or_altered_checkpoint_is_found(app) {
        post_events(&app, 5).await;
        let key = checkpointed(&app, 5).await;
        // A checkpoint signed by someone else's key, at a position not yet signed.
        let forger = AuditKey::generate().unwrap();
        let db = db(&app).await;
        let (hash,): (String,) = Sql::new("SELECT hash FROM events WHERE position = 2")
            .fetch_one(&db)
            .await
            .unwrap();
        Sql::new("DELETE FROM event_checkpoints WHERE position = 2").execute(&db).await.unwrap();
        let forged = forger.checkpoint(2, &hash, Micros::now());
        studyhall::audit::statements::insert_statement(&db, &forged).await.unwrap();
        db.close().await;
        assert_eq!(broken_at(&app, &key).await, 2);
        tamper(&app, "DELETE FROM event_checkpoints WHERE position = 2").await;
        verify_store(&app.database_url, &key).await.unwrap();
        // A real checkpoint whose signed hash was edited.
        tamper(
            &app,
            "UPDATE event_checkpoints SET hash = CASE WHEN substr(hash, 1, 1) = 'f' THEN '0' ELSE 'f' END || substr(hash, 2)
             WHERE position = 5",
        )
        .await;
        assert_eq!(broken_at(&app, &key).await, 5);
    }

    async fn a_rewritten_and_rehashed_chain_is_caught_by_its_checkpoint(app) {
        // Whoever can write the database can recompute every hash after a change; the
        // signed checkpoint is what they cannot recompute.
        post_events(&app, 5).await;
        let key = checkpointed(&app, 5).await;
        rewrite(&app, 3, "invoice 3 refunded").await;
        let position = broken_at(&app, &key).await;
        assert!((1..=3).contains(&position), "reported {position}, the change is at 3");
    }

    async fn events_removed_from_the_end_are_found(app) {
        post_events(&app, 5).await;
        let key = checkpointed(&app, 5).await;
        tamper(&app, "DELETE FROM events WHERE position = 5").await;
        assert_eq!(broken_at(&app, &key).await, 5);
    }

    async fn an_export_verifies_on_its_own_and_an_edited_one_does_not(app) {
        post_events(&app, 7).await;
        let key = checkpointed(&app, 7).await;
        let dir = tempfile::tempdir().unwrap();
        for format in ["ndjson", "csv"] {
            let text = export(&app, &format!("?format={format}")).await;
            let file = dir.path().join(format!("events.{format}"));
            std::fs::write(&file, &text).unwrap();
            let verified = verify_file(&file, &key).unwrap();
            assert_eq!(verified.events, 7, "{format}");
            assert!(verified.checkpoints >= 1, "{format}");
            let edited = text.replacen("invoice 4 paid", "invoice 4 void", 1);
            assert_ne!(edited, text);
            std::fs::write(&file, &edited).unwrap();
            let err = verify_file(&file, &key).unwrap_err();
            let broken = err.downcast_ref::<studyhall::audit::verify::Broken>().unwrap();
            assert_eq!(broken.position, 4, "{format}: {err}");
            // A line removed is a gap.
            let lines: Vec<&str> = text.lines().filter(|line| !line.contains("invoice 6 paid")).collect();
            std::fs::write(&file, lines.join("\n")).unwrap();
            let err = verify_file(&file, &key).unwrap_err();
            assert_eq!(err.downcast_ref::<studyhall::audit::verify::Broken>().unwrap().position, 6, "{format}");
        }
    }

    async fn an_export_carries_each_event_as_listed_and_resumes_after_a_position(app) {
        post_events(&app, 12).await;
        let key = checkpointed(&app, 12).await;
        let text = export(&app, "").await;
        let records: Vec<Value> = text.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
        let events: Vec<&Value> = records.iter().filter(|r| r["kind"] == "event").collect();
        assert_eq!(events.len(), 12);
        let (_, listed) = json(app.get("/api/events?order=asc&limit=100").await).await;
        for (exported, listed) in events.iter().zip(listed["events"].as_array().unwrap()) {
            for field in ["id", "component", "data", "email", "environment", "message", "created_at"] {
                assert_eq!(exported[field], listed[field], "{field}");
            }
        }
        let positions: Vec<i64> = events.iter().map(|e| e["position"].as_i64().unwrap()).collect();
        assert_eq!(positions, (1..=12).collect::<Vec<_>>());
        // Interrupted after position 5: the rest, and the two pieces verify as one file.
        let rest = export(&app, "?after=5").await;
        let rest_events: Vec<Value> = rest
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).unwrap())
            .filter(|r| r["kind"] == "event")
            .collect();
        assert_eq!(rest_events.first().unwrap()["position"], 6);
        assert_eq!(rest_events.len(), 7);
        let head: Vec<&str> = text.lines().take_while(|line| !line.contains("\"position\":6,")).collect();
        let joined = format!("{}\n{rest}", head.join("\n"));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("joined.ndjson");
        std::fs::write(&file, joined).unwrap();
        assert_eq!(verify_file(&file, &key).unwrap().events, 12);
    }

    async fn a_filtered_export_holds_the_matches_and_no_statements(app) {
        post_events(&app, 3).await;
        let other = json!({"component": "auth", "data": null, "email": "kim@example.com",
                           "environment": "staging", "message": "login"});
        assert_eq!(app.post_json("/api/events", &other).await.status(), 201);
        checkpointed(&app, 4).await;
        let text = export(&app, "?component=auth").await;
        let records: Vec<Value> = text.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
        assert_eq!(records.len(), 1, "{text}");
        assert_eq!(records[0]["email"], "kim@example.com");
        assert_eq!(records[0]["data"], Value::Null);
        let text = export(&app, "?message=invoice%202&format=csv").await;
        let rows: Vec<&str> = text.lines().collect();
        assert_eq!(rows.len(), 2, "{text}");
        assert!(rows[0].starts_with("kind,position,hash,id,"), "{text}");
        assert!(rows[1].contains("invoice 2 paid"), "{text}");
        // Verifying it says plainly that a selection is not a log, not that it was altered.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("filtered.ndjson");
        std::fs::write(&file, export(&app, "?message=invoice%202").await).unwrap();
        let key = checkpointed(&app, 4).await;
        let err = verify_file(&file, &key).unwrap_err().to_string();
        assert!(err.contains("is not a whole log") && err.contains("A filtered export"), "{err}");
    }

    async fn events_stored_outside_the_chain_are_chained_in_the_background(app) {
        // As an older version's instance would store them during a rolling deploy.
        post_events(&app, 2).await;
        let db = db(&app).await;
        for n in 0..700i64 {
            Sql::new("INSERT INTO events (id, component, data, email, environment, message, created_at) VALUES ($1, 'legacy', '{}', 'old@example.com', 'production', $2, $3)")
                .bind(uuid::Uuid::now_v7())
                .bind(format!("legacy {n}"))
                .bind(Micros::now().0)
                .execute(&db)
                .await
                .unwrap();
        }
        db.close().await;
        let key = checkpointed(&app, 702).await;
        let (_, page) = json(app.get("/api/events/checkpoints").await).await;
        assert_eq!(page["unchained"], 0, "{page}");
        let verified = verify_store(&app.database_url, &key).await.unwrap();
        assert_eq!(verified.events, 702);
    }

    async fn a_rewrite_with_every_checkpoint_deleted_is_caught_and_the_server_signs_none_of_it(app) {
        post_events(&app, 5).await;
        let key = checkpointed(&app, 5).await;
        crate::tree::signed(&app, 5).await;
        rewrite(&app, 3, "invoice 3 refunded").await;
        tamper(&app, "DELETE FROM event_checkpoints").await;
        // The tree checkpoint still signs the honest root.
        let err = verify_store(&app.database_url, &key).await.unwrap_err();
        assert!(format!("{err:#}").contains("tree root"), "{err:#}");
        // The running server signs nothing over the rewritten chain.
        post_events(&app, 2).await;
        for _ in 0..10 {
            app.clock.advance(Duration::from_secs(1));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (_, page) = json(app.get("/api/events/checkpoints").await).await;
        assert_eq!(page["checkpoints"], json!([]), "signed over a rewritten chain: {page}");
        // It says so on /ready (still ready: the service keeps taking events) and in
        // the log itself, once.
        let (status, ready) = json(app.get("/ready").await).await;
        assert_eq!(status, 200, "{ready}");
        assert!(ready["notices"]["audit_log"].as_str().unwrap().contains("refusing to sign"), "{ready}");
        let alerts = recorded_in(&app, "studyhall.audit", "audit.signing_refused").await;
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert!(alerts[0]["data"]["reason"].as_str().unwrap().contains("position 5"), "{alerts:?}");
        // With the tree's checkpoints gone too (and no server to sign the tree again),
        // nothing signs the log: that proves nothing.
        app.restart(|settings| settings.audit.modules.audit_chain = false).await;
        tamper(&app, "DELETE FROM log_tree_checkpoints").await;
        let err = verify_store(&app.database_url, &key).await.unwrap_err();
        assert!(format!("{err:#}").contains("no checkpoint signs"), "{err:#}");
    }

    async fn a_kept_checkpoint_catches_a_log_cut_off_below_it_with_its_checkpoints(app) {
        post_events(&app, 3).await;
        checkpointed(&app, 3).await;
        crate::tree::signed(&app, 3).await;
        post_events(&app, 2).await;
        let key = checkpointed(&app, 5).await;
        let (_, _, note) = crate::tree::signed(&app, 5).await;
        let dir = tempfile::tempdir().unwrap();
        let kept = dir.path().join("checkpoint");
        std::fs::write(&kept, &note).unwrap();
        // No sequencer from here on: the server's own record of the cut (it refuses to
        // sign) would otherwise end up after it.
        app.restart(|settings| settings.audit.modules.audit_chain = false).await;
        // The end cut off with every checkpoint that covered it: what is left verifies
        // on its own, as a shorter log…
        for statement in [
            "DELETE FROM events WHERE position > 3",
            "DELETE FROM event_checkpoints WHERE position > 3",
            "DELETE FROM log_tree_checkpoints WHERE size > 3",
        ] {
            tamper(&app, statement).await;
        }
        verify_store(&app.database_url, &key).await.unwrap();
        // …but not against the checkpoint the auditor kept.
        let trusted = studyhall::audit::note::Checkpoint::open(&note, note.lines().next().unwrap(), &key).unwrap();
        let err = studyhall::audit::cli::verify_store_trusting(&app.database_url, &key, Some(trusted)).await.unwrap_err();
        assert!(format!("{err:#}").contains("removed from its end"), "{err:#}");
    }

    async fn an_export_with_an_edited_created_at_or_an_unknown_field_does_not_verify(app) {
        post_events(&app, 3).await;
        let key = checkpointed(&app, 3).await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("events.ndjson");
        let text = export(&app, "").await;
        let line = text.lines().find(|line| line.contains("invoice 2 paid")).unwrap();
        let record: Value = serde_json::from_str(line).unwrap();
        let mut edited = record.clone();
        edited["created_at"] = json!("1000000000.0");
        std::fs::write(&file, text.replacen(line, &edited.to_string(), 1)).unwrap();
        let err = verify_file(&file, &key).unwrap_err();
        assert!(format!("{err:#}").contains("created_at"), "{err:#}");
        let mut extra = record.clone();
        extra["approved_by"] = json!("mallory");
        std::fs::write(&file, text.replacen(line, &extra.to_string(), 1)).unwrap();
        let err = verify_file(&file, &key).unwrap_err();
        assert!(format!("{err:#}").contains("approved_by"), "{err:#}");
        let csv = export(&app, "?format=csv").await;
        let csv_file = dir.path().join("events.csv");
        let (header, rest) = csv.split_once('\n').unwrap();
        std::fs::write(&csv_file, format!("{header},approved_by\n{}", rest.replace('\n', ",x\n"))).unwrap();
        assert!(verify_file(&csv_file, &key).is_err(), "an unknown CSV column");
    }

    async fn bad_export_and_checkpoint_parameters_are_refused_by_name(app) {
        for (query, field) in [
            ("/api/events/export?format=xml", "format"),
            ("/api/events/export?format=", "format"),
            ("/api/events/export?after=", "after"),
            ("/api/events/checkpoints?limit=", "limit"),
            ("/api/events/export?after=-1", "after"),
            ("/api/events/export?after=ten", "after"),
            ("/api/events/export?from_date=yesterday", "from_date"),
            ("/api/events/checkpoints?limit=0", "limit"),
            ("/api/events/checkpoints?after=x", "after"),
        ] {
            let (status, problem) = json(app.get(query).await).await;
            assert_eq!(status, 400, "{query}: {problem}");
            assert!(problem["errors"][field].is_string(), "{query}: {problem}");
        }
    }
}

/// A SQLite server keeps what it signed last beside the database file: restarted
/// after a database writer rewrote the chain and deleted every checkpoint, it still
/// signs none of the rewrite.
async fn a_restarted_server_still_refuses_to_sign_over_what_was_rewritten() {
    let key = AuditKey::generate().unwrap().private_text();
    let configure = |settings: &mut ServeSettings| {
        audited(settings);
        settings.audit.audit_signing_key = Some(key.parse().unwrap());
    };
    let mut app = TestApp::sqlite_with(configure).await;
    post_events(&app, 5).await;
    checkpointed(&app, 5).await;
    crate::tree::signed(&app, 5).await;
    rewrite(&app, 3, "invoice 3 refunded").await;
    tamper(&app, "DELETE FROM event_checkpoints").await;
    tamper(&app, "DELETE FROM log_tree_checkpoints").await;
    app.restart(configure).await;
    post_events(&app, 2).await;
    for _ in 0..10 {
        app.clock.advance(Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, page) = json(app.get("/api/events/checkpoints").await).await;
    assert_eq!(
        page["checkpoints"],
        json!([]),
        "signed over a rewritten chain after a restart: {page}"
    );
    let (_, ready) = json(app.get("/ready").await).await;
    assert!(ready["notices"]["audit_log"].is_string(), "{ready}");
    app.stop().await;
}
crate::case!(a_restarted_server_still_refuses_to_sign_over_what_was_rewritten);

/// Who may read and post.
mod access {
    use super::*;
    use crate::on_every_backend_each;

    const SECRET: &str = "audit-test-secret-0123456789abcdef";

    fn token_with(sub: &str, extra: Value) -> String {
        crate::helpers::token_with(SECRET, sub, extra)
    }

    fn with_tokens(settings: &mut ServeSettings) {
        settings.auth.jwt_secret = Some(SECRET.parse().unwrap());
        settings.admin_token = Some(ADMIN.parse().unwrap());
    }

    fn reads_by_token(settings: &mut ServeSettings) {
        with_tokens(settings);
        settings.events.events_read = studyhall::config::ReadAccess::Token;
    }

    fn reads_by_token_in_roles(settings: &mut ServeSettings) {
        reads_by_token(settings);
        settings.auth.jwt_groups_claim = "roles".into();
    }

    fn reads_by_admin(settings: &mut ServeSettings) {
        with_tokens(settings);
        settings.events.events_read = studyhall::config::ReadAccess::Admin;
    }

    fn writes_by_token(settings: &mut ServeSettings) {
        with_tokens(settings);
        settings.events.events_write = studyhall::config::WriteAccess::Token;
    }

    const READ_ROUTES: [&str; 3] = [
        "/api/events",
        "/api/events/export",
        "/api/events/checkpoints",
    ];

    async fn get_as(app: &TestApp, path: &str, token: Option<&str>) -> u16 {
        let mut request = app.client.get(app.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap().status().as_u16()
    }

    /// Events the service recorded about its event log with `message`.
    async fn recorded(app: &TestApp, message: &str) -> Vec<Value> {
        recorded_in(app, "studyhall.events", message).await
    }

    on_every_backend_each! {
        async fn with_token_reads_each_claim_is_needed_and_the_admin_token_passes(app, reads_by_token) {
            post_events(&app, 2).await;
            let reader = token_with("reader", json!({"scope": "profile events:read"}));
            let grouped = token_with("grouped", json!({"cognito:groups": ["events:read", "staff"]}));
            let plain = token_with("plain", json!({}));
            let writer = token_with("writer", json!({"scope": "events:write"}));
            let expired = {
                let mut claims = json!({"sub": "late", "scope": "events:read", "exp": 1_000_000_000i64});
                claims["email"] = json!("late@example.com");
                jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
            };
            for path in READ_ROUTES {
                assert_eq!(get_as(&app, path, None).await, 401, "{path} without a token");
                assert_eq!(get_as(&app, path, Some("not.a.token")).await, 401, "{path}");
                assert_eq!(get_as(&app, path, Some(&expired)).await, 401, "{path} expired");
                assert_eq!(get_as(&app, path, Some(&plain)).await, 403, "{path} without the scope");
                assert_eq!(get_as(&app, path, Some(&writer)).await, 403, "{path} with another scope");
                assert_eq!(get_as(&app, path, Some(&reader)).await, 200, "{path} with scope");
                assert_eq!(get_as(&app, path, Some(&grouped)).await, 200, "{path} with the group");
                assert_eq!(get_as(&app, path, Some(ADMIN)).await, 200, "{path} as admin");
            }
            let response = app.client.get(app.url("/api/events")).send().await.unwrap();
            let (_, problem) = json(response).await;
            assert!(problem["message"].as_str().unwrap().contains("events:read"), "{problem}");
            // Posting stays open.
            assert_eq!(app.post_json("/api/events", &event(9)).await.status(), 201);
        }

        async fn a_configured_groups_claim_grants_and_the_refusal_names_it(app, reads_by_token_in_roles) {
            let roles = token_with("roles", json!({"roles": ["events:read"]}));
            let cognito = token_with("cognito", json!({"cognito:groups": ["events:read"]}));
            assert_eq!(get_as(&app, "/api/events", Some(&roles)).await, 200);
            let response = app.client.get(app.url("/api/events")).bearer_auth(&cognito).send().await.unwrap();
            let (status, problem) = json(response).await;
            assert_eq!(status, 403, "{problem}");
            let message = problem["message"].as_str().unwrap();
            assert!(message.contains("`roles`") && !message.contains("cognito"), "{message}");
        }

        async fn reads_and_exports_by_an_identified_caller_are_recorded(app, reads_by_token) {
            post_events(&app, 2).await;
            let reader = token_with("reader", json!({"scope": "events:read"}));
            assert_eq!(get_as(&app, "/api/events?component=billing", Some(&reader)).await, 200);
            assert_eq!(get_as(&app, "/api/events/export?format=csv", Some(&reader)).await, 200);
            let reads = recorded(&app, "events.read").await;
            let by_reader: Vec<&Value> = reads.iter().filter(|e| e["data"]["actor"]["id"] == "reader").collect();
            assert_eq!(by_reader.len(), 1, "{reads:?}");
            assert_eq!(by_reader[0]["email"], "reader@example.com");
            assert_eq!(by_reader[0]["data"]["filter"]["component"], "billing");
            assert_eq!(by_reader[0]["data"]["actor"]["kind"], "user");
            let exports = recorded(&app, "events.exported").await;
            assert_eq!(exports.len(), 1, "{exports:?}");
            assert_eq!(exports[0]["data"]["format"], "csv");
            // The admin's own reads are recorded too, as the operator's.
            let reads = recorded(&app, "events.read").await;
            assert!(reads.iter().any(|e| e["data"]["actor"]["kind"] == "operator" && e["email"] == "operator@studyhall.invalid"), "{reads:?}");
        }

        async fn with_admin_reads_only_the_admin_token_reads(app, reads_by_admin) {
            let reader = token_with("reader", json!({"scope": "events:read"}));
            for path in READ_ROUTES {
                assert_eq!(get_as(&app, path, None).await, 401, "{path}");
                assert_eq!(get_as(&app, path, Some(&reader)).await, 403, "{path}");
                assert_eq!(get_as(&app, path, Some("wrong-admin-token")).await, 403, "{path}");
                assert_eq!(get_as(&app, path, Some(ADMIN)).await, 200, "{path}");
            }
        }

        async fn with_admin_reads_a_token_that_does_not_verify_is_a_401_not_a_403(app, reads_by_admin) {
            let expired = token_with("reader", json!({"scope": "events:read", "exp": 1_000_000_000}));
            let forged = crate::helpers::token_with("another-secret-entirely-32-bytes!", "reader", json!({}));
            let malformed = format!("{}.x", token_with("reader", json!({})));
            for path in READ_ROUTES {
                for (token, what) in [(&expired, "expired"), (&forged, "badly signed"), (&malformed, "malformed")] {
                    let response = app.client.get(app.url(path)).bearer_auth(token).send().await.unwrap();
                    let (status, problem) = json(response).await;
                    assert_eq!(status, 401, "{path}, {what}: {problem}");
                    assert!(!problem["detail"].as_str().unwrap().contains("admin token"), "says why the token failed: {problem}");
                }
            }
        }

        async fn with_token_writes_a_post_needs_the_write_scope_and_a_refusal_stores_nothing(app, writes_by_token) {
            let post = |token: Option<String>| {
                let mut request = app.client.post(app.url("/api/events")).json(&event(1));
                if let Some(token) = token {
                    request = request.bearer_auth(token);
                }
                async move { request.send().await.unwrap().status().as_u16() }
            };
            assert_eq!(post(None).await, 401);
            assert_eq!(post(Some(token_with("r", json!({"scope": "events:read"})))).await, 403);
            assert_eq!(post(Some("garbage".into())).await, 401);
            let (_, page) = json(app.get("/api/events?component=billing").await).await;
            assert_eq!(page["events"].as_array().unwrap().len(), 0, "a refused post stored something");
            assert_eq!(post(Some(token_with("w", json!({"scope": "events:write"})))).await, 201);
            assert_eq!(post(Some(ADMIN.into())).await, 201);
            let (_, page) = json(app.get("/api/events?component=billing").await).await;
            assert_eq!(page["events"].as_array().unwrap().len(), 2);
        }

        async fn refused_tokens_are_recorded_by_reason_at_most_ten_a_minute(app, with_tokens) {
            let expired = {
                let claims = json!({"sub": "late", "exp": 1_000_000_000i64});
                jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
            };
            for n in 0..15 {
                let token = if n % 2 == 0 { expired.clone() } else { format!("garbage-{n}") };
                let response = app.client.post(app.url("/api/events")).bearer_auth(&token).json(&event(n)).send().await.unwrap();
                assert_eq!(response.status(), 401);
            }
            let mut refused = Vec::new();
            for _ in 0..50 {
                refused = recorded_in(&app, "studyhall.auth", "token.refused").await;
                if refused.len() >= 10 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            let refused_now = recorded_in(&app, "studyhall.auth", "token.refused").await;
            assert_eq!((refused.len(), refused_now.len()), (10, 10), "the flood was not held to ten a minute");
            let reasons: Vec<&str> = refused_now.iter().map(|e| e["data"]["reason"].as_str().unwrap()).collect();
            assert!(reasons.contains(&"The token has expired."), "{reasons:?}");
            assert!(reasons.contains(&"The token is malformed."), "{reasons:?}");
            let text = serde_json::to_string(&refused_now).unwrap();
            assert!(!text.contains(&expired) && !text.contains("garbage-"), "a token reached the log");
        }

        async fn open_reads_by_anonymous_callers_are_not_recorded(app, with_tokens) {
            post_events(&app, 1).await;
            assert_eq!(get_as(&app, "/api/events", None).await, 200);
            // A token that does not verify identifies no one on an open route.
            assert_eq!(get_as(&app, "/api/events", Some("not.a.token")).await, 200);
            let (_, page) = json(app.get("/api/events?component=studyhall.events").await).await;
            assert_eq!(page["events"].as_array().unwrap().len(), 0, "{page}");
        }
    }
}

/// The retention policy.
mod retention {
    use super::*;

    const KEPT: Duration = Duration::from_secs(30 * 24 * 3600);

    fn kept_thirty_days(settings: &mut ServeSettings) {
        audited(settings);
        settings.events.events_retention = Some(KEPT);
    }

    async fn listed(app: &TestApp) -> usize {
        let (_, page) = json(app.get("/api/events?limit=1000").await).await;
        page["events"].as_array().unwrap().len()
    }

    on_every_backend_with! {
        kept_thirty_days;

        async fn events_past_retention_go_under_a_signed_marker_and_the_rest_still_verifies(app) {
            post_events(&app, 5).await;
            checkpointed(&app, 5).await;
            app.clock.advance(KEPT);
            post_events(&app, 2).await;
            for _ in 0..60 {
                if listed(&app).await == 2 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if listed(&app).await != 2 {
                let (_, ready) = json(app.get("/ready").await).await;
                let (_, page) = json(app.get("/api/events/checkpoints").await).await;
                panic!("the old events were not removed: {} listed; {ready}; {page}", listed(&app).await);
            }
            let key = checkpointed(&app, 7).await;
            let verified = verify_store(&app.database_url, &key).await.unwrap();
            assert_eq!((verified.removed, verified.events, verified.first), (5, 2, Some(6)));
            let (_, page) = json(app.get("/api/events/checkpoints").await).await;
            let markers: Vec<&Value> = page["checkpoints"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| s["kind"] == "retention")
                .collect();
            assert_eq!(markers.len(), 1, "{page}");
            assert_eq!((markers[0]["first_position"].as_i64(), markers[0]["position"].as_i64()), (Some(1), Some(5)));
            // The marker names the cutoff and when a signed checkpoint says the removed
            // events were chained by, both under its signature.
            let (cutoff, chained_by) = (markers[0]["cutoff_us"].as_i64().unwrap(), markers[0]["chained_by_us"].as_i64().unwrap());
            assert!(chained_by <= cutoff, "{page}");
            // The export carries the marker and verifies alone.
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("events.ndjson");
            std::fs::write(&file, export(&app, "").await).unwrap();
            assert_eq!(verify_file(&file, &key).unwrap().removed, 5);
            // Without the marker, the removal is tampering.
            tamper(&app, "DELETE FROM event_checkpoints WHERE kind = 'retention'").await;
            assert_eq!(broken_at(&app, &key).await, 1);
        }

        async fn back_dated_rows_are_not_removed_before_their_time(app) {
            post_events(&app, 5).await;
            checkpointed(&app, 5).await;
            // A database writer makes the events look years old.
            tamper(&app, "UPDATE events SET created_at = 1000000").await;
            for _ in 0..10 {
                app.clock.advance(Duration::from_secs(1));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert_eq!(listed(&app).await, 5, "seconds-old events were removed as if past retention");
            let (_, page) = json(app.get("/api/events/checkpoints").await).await;
            assert!(page["checkpoints"].as_array().unwrap().iter().all(|s| s["kind"] != "retention"), "{page}");
        }

        async fn a_changed_event_is_never_removed_under_a_valid_marker(app) {
            post_events(&app, 5).await;
            checkpointed(&app, 5).await;
            rewrite(&app, 3, "invoice 3 refunded").await;
            app.clock.advance(KEPT);
            post_events(&app, 2).await;
            for _ in 0..10 {
                app.clock.advance(Duration::from_secs(1));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let (_, billing) = json(app.get("/api/events?component=billing&limit=1000").await).await;
            assert_eq!(billing["events"].as_array().unwrap().len(), 7, "the changed range was removed");
            let (_, page) = json(app.get("/api/events/checkpoints").await).await;
            assert!(page["checkpoints"].as_array().unwrap().iter().all(|s| s["kind"] != "retention"), "{page}");
            // The refusal is on /ready and in the log.
            let (_, ready) = json(app.get("/ready").await).await;
            assert!(ready["notices"]["audit_log"].as_str().unwrap().contains("retention refused"), "{ready}");
            assert_eq!(recorded_in(&app, "studyhall.audit", "audit.signing_refused").await.len(), 1);
        }
    }
}
