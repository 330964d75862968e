//! The sequencer: events stored outside the chain (while it was off, or by an older
//! version) each get exactly one place in it, whatever the order of commits and however
//! many sequencers believe they may run.

use std::time::Duration;

use serde_json::json;
use studyhall::audit::cli::verify_store;
use studyhall::audit::store::{sequence_batch, SequenceError};
use studyhall::config::ServeSettings;
use studyhall::db::Db;
use studyhall::sql::Sql;

use crate::audit::{audited, checkpointed, post_events};
use crate::helpers::{json, TestApp};
use crate::on_every_backend_with;

/// Every stored event's position and message, in chain order; asserts the positions
/// are 1, 2, … with none missing or given twice and every event placed.
async fn placed(db: &Db) -> Vec<(i64, String)> {
    let rows: Vec<(Option<i64>, String)> =
        Sql::new("SELECT position, message FROM events ORDER BY position")
            .fetch_all(db)
            .await
            .unwrap();
    let positions: Vec<Option<i64>> = rows.iter().map(|(position, _)| *position).collect();
    let expected: Vec<Option<i64>> = (1..=rows.len() as i64).map(Some).collect();
    assert_eq!(
        positions, expected,
        "positions are not one gapless sequence"
    );
    rows.into_iter()
        .map(|(position, message)| (position.unwrap_or_default(), message))
        .collect()
}

/// A server that runs no sequencer: what it stores waits.
fn unsequenced(settings: &mut ServeSettings) {
    settings.audit.modules.audit_chain = false;
}

on_every_backend_with! { unsequenced;
    async fn events_are_read_before_they_are_sequenced_and_said_to_be_waiting(app) {
        post_events(&app, 3).await;
        let (status, page) = json(app.get("/api/events").await).await;
        assert_eq!(status, 200, "{page}");
        let events = page["events"].as_array().unwrap();
        assert_eq!(events.len(), 3, "{page}");
        let id = events[0]["id"].as_str().unwrap().to_owned();
        let (_, page) = json(app.get("/api/events/checkpoints").await).await;
        assert_eq!((&page["head"]["position"], &page["unchained"]), (&json!(0), &json!(3)), "{page}");
        let waiting = app.get(&format!("/api/events/{id}/proof")).await;
        assert_eq!(waiting.status(), 409);
        assert_eq!(waiting.headers()["retry-after"], "1");

        // A server that sequences places them and signs them.
        app.restart(audited).await;
        checkpointed(&app, 3).await;
        let (_, page) = json(app.get("/api/events/checkpoints").await).await;
        assert_eq!(page["unchained"], 0, "{page}");
        let mut proved = false;
        for _ in 0..100 {
            app.clock.advance(Duration::from_secs(1));
            if app.get(&format!("/api/events/{id}/proof")).await.status() == 200 {
                proved = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(proved, "the event never got a receipt");
    }
}

async fn an_export_holds_every_event_stored_before_it_began() {
    let mut app = TestApp::postgres_with(unsequenced).await;
    post_events(&app, 4).await;
    app.restart(audited).await;
    let db = Db::connect(&app.database_url, 2).await.unwrap();
    // The test holds the sequencer's lease: the server's sealer skips its turns.
    let mut lease = db.begin_write().await.unwrap();
    Sql::new("SELECT position FROM event_chain_head WHERE id = 1 FOR UPDATE")
        .execute(&mut lease)
        .await
        .unwrap();
    let url = app.url("/api/events/export");
    let client = app.client.clone();
    let exporting =
        tokio::spawn(async move { client.get(url).send().await.unwrap().text().await.unwrap() });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !exporting.is_finished(),
        "the export did not wait for the events to be placed"
    );
    lease.commit().await.unwrap();
    let text = exporting.await.unwrap();
    let events = text
        .lines()
        .filter(|line| line.contains("\"kind\":\"event\""))
        .count();
    assert_eq!(events, 4, "{text}");
}
crate::case!(
    an_export_holds_every_event_stored_before_it_began,
    needs = [Postgres]
);

async fn two_sequencers_that_both_believe_they_hold_the_lease_never_place_an_event_twice() {
    let mut app = TestApp::postgres_with(unsequenced).await;
    post_events(&app, 6).await;
    let db = Db::connect(&app.database_url, 4).await.unwrap();
    // Neither takes the lease. Both read the same six waiting events; the first places
    // them and holds the head's row until it commits.
    let mut first = db.begin_write().await.unwrap();
    let mut second = db.begin_write().await.unwrap();
    assert_eq!(sequence_batch(&mut first, 100).await.unwrap(), 6);
    let racing = tokio::spawn(async move {
        let outcome = sequence_batch(&mut second, 100).await;
        drop(second);
        outcome
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !racing.is_finished(),
        "the second sequencer did not wait for the head's row"
    );
    first.commit().await.unwrap();
    match racing.await.unwrap() {
        Err(SequenceError::Raced { read: 6, placed: 6 }) => {}
        other => panic!("the second sequencer was not refused: {other:?}"),
    }
    // Its transaction wrote nothing: each event has the one place the first gave it,
    // and the chain goes on from there.
    assert_eq!(placed(&db).await.len(), 6);
    app.restart(audited).await;
    post_events(&app, 2).await;
    let key = checkpointed(&app, 8).await;
    assert_eq!(placed(&db).await.len(), 8);
    verify_store(&app.database_url, &key).await.unwrap();
}
crate::case!(
    two_sequencers_that_both_believe_they_hold_the_lease_never_place_an_event_twice,
    needs = [Postgres]
);
