//! A second deployment as the log's witness (C2SP tlog-witness): it cosigns each
//! checkpoint that extends the one it cosigned last, the log publishes the cosignature,
//! and a rewritten history signed with the log's own key is refused.

use std::time::Duration;

use studyhall::audit::key::AuditKey;
use studyhall::audit::note::{self, Checkpoint};
use studyhall::audit::tree::{self, Fetched};
use studyhall::audit::witness::{cosigned_at, AddCheckpoint, Vkey, Witness};
use studyhall::config::ServeSettings;

use crate::audit::{audited, post_events};
use crate::helpers::{json, TestApp};

struct Pair {
    log: TestApp,
    witness: TestApp,
    log_key: AuditKey,
    witness_vkey: Vkey,
}

/// A log and a witness of it, each on its own SQLite database.
async fn pair() -> Pair {
    let log_key = AuditKey::generate().unwrap();
    let log_vkey = note::verifier_key(&log_key.default_origin(), &log_key.public());
    let witness_seed = AuditKey::generate().unwrap().private_text();
    let witness = Witness::configure(&witness_seed, None, &[]).unwrap();
    let witness_vkey = witness.vkey();
    let witness_app = TestApp::sqlite_with(|settings: &mut ServeSettings| {
        settings.audit.witness_key = Some(witness_seed.parse().unwrap());
        settings.audit.witness_logs = vec![log_vkey.clone()];
    })
    .await;
    let submission = format!(
        "{}/api/witness {}",
        witness_app.address,
        witness_vkey.text()
    );
    let log = TestApp::sqlite_with(|settings: &mut ServeSettings| {
        audited(settings);
        settings.audit.audit_signing_key = Some(log_key.private_text().parse().unwrap());
        settings.audit.audit_witnesses = vec![submission];
    })
    .await;
    Pair {
        log,
        witness: witness_app,
        log_key,
        witness_vkey,
    }
}

/// The log's checkpoint once it covers `size` and carries the witness's cosignature.
async fn cosigned(pair: &Pair, size: u64) -> String {
    for _ in 0..200 {
        pair.log.clock.advance(Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let response = pair.log.get("/api/events/log/checkpoint").await;
        if response.status() != 200 {
            continue;
        }
        let note = response.text().await.unwrap();
        let checkpoint = Checkpoint::open(
            &note,
            &pair.log_key.default_origin(),
            &pair.log_key.public(),
        )
        .unwrap();
        let parsed = note::parse(&note).unwrap();
        if checkpoint.size == size
            && cosigned_at(parsed.text, &parsed, &pair.witness_vkey).is_some()
        {
            return note;
        }
    }
    panic!("no cosigned checkpoint of size {size}");
}

async fn add_checkpoint(app: &TestApp, body: String) -> (u16, String, String) {
    let response = app
        .client
        .post(app.url("/api/witness/add-checkpoint"))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let kind = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, kind, response.text().await.unwrap())
}

/// A tree of `size` leaves that is not the log's.
fn forged(size: u64) -> Fetched {
    let mut store = Fetched::default();
    for n in 0..size {
        let first = tree::stored_index(0, n);
        let leaf = tree::leaf_hash(format!("forged {n}").as_bytes());
        for (i, hash) in tree::appended(&store, n, leaf)
            .unwrap()
            .into_iter()
            .enumerate()
        {
            store.0.insert(first + i as u64, hash);
        }
    }
    store
}

async fn the_witness_cosigns_each_extension_and_the_log_publishes_it() {
    let pair = pair().await;
    post_events(&pair.log, 3).await;
    cosigned(&pair, 3).await;
    post_events(&pair.log, 4).await;
    let note = cosigned(&pair, 7).await;
    // What the witness holds is that checkpoint.
    let vkey = pair.witness.get("/api/witness").await.text().await.unwrap();
    assert_eq!(vkey.trim(), pair.witness_vkey.text());
    assert!(
        note.lines()
            .filter(|line| line.starts_with('\u{2014}'))
            .count()
            >= 2,
        "{note}"
    );
    // An event's receipt carries the cosigned checkpoint: an auditor's policy that
    // requires this witness accepts it, one that requires another witness does not.
    let (_, page) = json(pair.log.get("/api/events?limit=1").await).await;
    let id = page["events"][0]["id"].as_str().unwrap().to_owned();
    let receipt = pair
        .log
        .get(&format!("/api/events/{id}/proof"))
        .await
        .text()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (proof, policy) = (
        dir.path().join("event.tlog-proof"),
        dir.path().join("policy"),
    );
    std::fs::write(&proof, &receipt).unwrap();
    let log_vkey = note::verifier_key(&pair.log_key.default_origin(), &pair.log_key.public());
    std::fs::write(
        &policy,
        format!(
            "log {log_vkey}\nwitness W {}\nquorum W\n",
            pair.witness_vkey.text()
        ),
    )
    .unwrap();
    let policy_of = |path: &std::path::Path| {
        studyhall::audit::policy::Policy::parse(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let said = studyhall::audit::cli::verify_proof(
        &proof,
        &pair.log_key.public(),
        Some(&policy_of(&policy)),
    )
    .unwrap();
    assert!(said.contains("cosigned as the policy requires"), "{said}");
    let absent = Witness::configure(
        &AuditKey::generate().unwrap().private_text(),
        Some("absent.example".into()),
        &[],
    )
    .unwrap();
    std::fs::write(
        &policy,
        format!(
            "log {log_vkey}\nwitness W {}\nwitness V {}\ngroup both all W V\nquorum both\n",
            pair.witness_vkey.text(),
            absent.vkey().text()
        ),
    )
    .unwrap();
    let err = studyhall::audit::cli::verify_proof(
        &proof,
        &pair.log_key.public(),
        Some(&policy_of(&policy)),
    )
    .unwrap_err();
    assert!(err.to_string().contains("quorum"), "{err}");
    pair.log.stop().await;
    pair.witness.stop().await;
}
crate::case!(the_witness_cosigns_each_extension_and_the_log_publishes_it);

async fn the_witness_refuses_a_rewritten_history_signed_with_the_logs_own_key() {
    let pair = pair().await;
    post_events(&pair.log, 5).await;
    cosigned(&pair, 5).await;
    // Whoever holds the log's key signs another history of 9 entries, with a proof of
    // its own from size 5.
    let store = forged(9);
    let origin = pair.log_key.default_origin();
    let checkpoint = Checkpoint {
        origin: origin.clone(),
        size: 9,
        root: tree::root(&store, 9).unwrap(),
    };
    let request = AddCheckpoint {
        old: 5,
        proof: tree::consistency_proof(&store, 5, 9).unwrap(),
        note: pair.log_key.sign_checkpoint(&checkpoint),
    };
    let (status, _, body) = add_checkpoint(&pair.witness, request.text()).await;
    assert_eq!(status, 422, "{body}");
    // A fork at the same size: 409 with the size held.
    let fork = AddCheckpoint {
        old: 5,
        proof: vec![],
        note: pair.log_key.sign_checkpoint(&Checkpoint {
            origin: origin.clone(),
            size: 5,
            root: tree::root(&forged(5), 5).unwrap(),
        }),
    };
    let (status, kind, body) = add_checkpoint(&pair.witness, fork.text()).await;
    assert_eq!(
        (status, kind.as_str(), body.as_str()),
        (409, "text/x.tlog.size", "5\n")
    );
    // A stale old size: 409 with the size held.
    let stale = AddCheckpoint {
        old: 2,
        ..request.clone()
    };
    let (status, _, body) = add_checkpoint(&pair.witness, stale.text()).await;
    assert_eq!((status, body.as_str()), (409, "5\n"));
    // Another key, another origin, nonsense.
    let stranger = AuditKey::generate().unwrap();
    let unsigned = AddCheckpoint {
        note: stranger.sign_checkpoint(&checkpoint),
        ..request.clone()
    };
    assert_eq!(add_checkpoint(&pair.witness, unsigned.text()).await.0, 403);
    let elsewhere = AddCheckpoint {
        old: 0,
        proof: vec![],
        note: pair.log_key.sign_checkpoint(&Checkpoint {
            origin: "example.com/other".into(),
            ..checkpoint.clone()
        }),
    };
    assert_eq!(add_checkpoint(&pair.witness, elsewhere.text()).await.0, 404);
    assert_eq!(
        add_checkpoint(&pair.witness, "old x\n\nnothing".into())
            .await
            .0,
        400
    );
    // Still at 5 for the log's real history: the next honest extension is cosigned.
    post_events(&pair.log, 2).await;
    cosigned(&pair, 7).await;
    // A deployment that is no witness says so.
    let (status, problem) = json(
        pair.log
            .client
            .post(pair.log.url("/api/witness/add-checkpoint"))
            .body(request.text())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404, "{problem}");
    pair.log.stop().await;
    pair.witness.stop().await;
}
crate::case!(the_witness_refuses_a_rewritten_history_signed_with_the_logs_own_key);

/// Rounds of concurrent requests that all extend the size the witness holds: in each,
/// exactly one is cosigned and the others are told the size it moved to, so the held
/// size never goes back (the spec's race, where a later write rolls a checkpoint back).
async fn concurrent_extensions_never_roll_the_witness_back(witness: TestApp, log_key: AuditKey) {
    let store = forged(64);
    let origin = log_key.default_origin();
    let request = |old: u64, size: u64| AddCheckpoint {
        old,
        proof: tree::consistency_proof(&store, old, size).unwrap(),
        note: log_key.sign_checkpoint(&Checkpoint {
            origin: origin.clone(),
            size,
            root: tree::root(&store, size).unwrap(),
        }),
    };
    let mut held = 0;
    for _ in 0..6 {
        let sizes: Vec<u64> = (1..=8).map(|n| held + n).collect();
        let answers = futures_util::future::join_all(
            sizes
                .iter()
                .map(|size| add_checkpoint(&witness, request(held, *size).text())),
        )
        .await;
        let cosigned: Vec<u64> = sizes
            .iter()
            .zip(&answers)
            .filter(|(_, answer)| answer.0 == 200)
            .map(|(size, _)| *size)
            .collect();
        assert_eq!(cosigned.len(), 1, "{answers:?}");
        let now_held = cosigned[0];
        for (size, (status, _, body)) in sizes.iter().zip(&answers) {
            if *size != now_held {
                assert_eq!(
                    (*status, body.as_str()),
                    (409, format!("{now_held}\n").as_str()),
                    "size {size}"
                );
            }
        }
        let (status, _, body) = add_checkpoint(&witness, request(0, 1).text()).await;
        assert_eq!((status, body), (409, format!("{now_held}\n")));
        held = now_held;
    }
    witness.stop().await;
}

fn witnessing(log_key: &AuditKey) -> impl FnOnce(&mut ServeSettings) + '_ {
    move |settings: &mut ServeSettings| {
        settings.audit.witness_key = Some(
            AuditKey::generate()
                .unwrap()
                .private_text()
                .parse()
                .unwrap(),
        );
        settings.audit.witness_logs = vec![note::verifier_key(
            &log_key.default_origin(),
            &log_key.public(),
        )];
    }
}

async fn concurrent_extensions_never_roll_the_witness_back_on_sqlite() {
    let log_key = AuditKey::generate().unwrap();
    let witness = TestApp::sqlite_with(witnessing(&log_key)).await;
    concurrent_extensions_never_roll_the_witness_back(witness, log_key).await;
}
crate::case!(concurrent_extensions_never_roll_the_witness_back_on_sqlite);

async fn concurrent_extensions_never_roll_the_witness_back_on_postgres() {
    let log_key = AuditKey::generate().unwrap();
    let witness = TestApp::postgres_with(witnessing(&log_key)).await;
    concurrent_extensions_never_roll_the_witness_back(witness, log_key).await;
}
crate::case!(
    concurrent_extensions_never_roll_the_witness_back_on_postgres,
    needs = [Postgres]
);
