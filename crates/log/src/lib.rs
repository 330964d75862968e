//! The audit log, the only owner of the events table: the event record and its store
//! (`events`), one hash chain over them (`chain`), signed at intervals with an Ed25519
//! key (`key`) by the sealer below, readable back in chain order (`store`, `export`) and
//! checkable offline (`verify`, `cli`).

#![warn(unreachable_pub)]

pub mod chain;
pub mod cli;
pub mod cosign;
pub mod events;
pub mod export;
pub mod integrate;
pub mod key;
pub mod note;
pub mod policy;
pub mod receipt;
pub mod retention;
pub mod statements;
pub mod store;
pub mod tree;
pub mod verify;
pub mod witness;

use std::time::Duration;

use key::{AuditKey, Statement};
use studyhall_core::clock::{Clock, Micros};
use studyhall_core::db::Db;

/// Events the sequencer places per transaction.
pub(crate) const SEQUENCE_BATCH: i64 = 1000;

/// How often the sealer places, grows the tree and signs what grew (at most; sooner if
/// the checkpoint cadence is shorter): an acknowledged event is in a signed checkpoint
/// about this long after its commit, plus a round's work.
const ROUND: Duration = Duration::from_millis(250);

/// Events added to the tree per transaction.
const TREE_BATCH: i64 = 2000;

/// How often old tree checkpoints are thinned ([`integrate::thin_checkpoints`]).
const THIN_EVERY: Duration = Duration::from_secs(60);

/// Events removed per transaction by the retention policy.
const RETENTION_BATCH: i64 = 1000;

/// When checkpoints are due, and how long events are kept.
#[derive(Debug, Clone, Copy)]
pub struct Cadence {
    /// After this many newly chained events…
    pub events: i64,
    /// …or this long after the last checkpoint, if anything was chained since.
    pub every: Duration,
    /// Events older than this are removed (`STUDYHALL_EVENTS_RETENTION`).
    pub retention: Option<Duration>,
}

/// The key that signs, the name the log signs under (C2SP `origin`), and the
/// witnesses asked to cosign.
#[derive(Debug, Clone)]
pub struct Signing {
    pub key: AuditKey,
    pub origin: String,
    pub witnesses: Vec<cosign::Cosigner>,
    /// A file outside the database where what was signed last is kept across restarts
    /// (beside a SQLite database file; none on PostgreSQL, where witnesses hold it).
    pub kept: Option<std::path::PathBuf>,
}

/// Places what is stored outside the chain, grows the tree, removes what the retention
/// policy no longer keeps, and signs checkpoints when due, until the task is stopped.
/// Any number of instances may run it: one places at a time (the others skip their
/// turn), growing the tree is a compare-and-set, and a second checkpoint for the same
/// position or size is dropped. With `chain` false (`STUDYHALL_AUDIT_CHAIN`), it leaves
/// unchained events as they are.
pub async fn seal(
    db: Db,
    signing: Option<Signing>,
    cadence: Cadence,
    (chain, clock): (bool, Clock),
    notices: studyhall_core::http::ops::Notices,
) {
    if !chain {
        tracing::warn!("STUDYHALL_AUDIT_CHAIN=false: events are stored outside the audit chain");
        return;
    }
    let period = cadence.every.min(ROUND);
    let kept = signing.as_ref().and_then(|signing| signing.kept.clone());
    let mut sealed = kept.as_deref().map(Sealed::read).unwrap_or_default();
    sealed.witnesses = signing
        .as_ref()
        .map(|signing| signing.witnesses.clone())
        .unwrap_or_default();
    loop {
        clock.sleep(period).await;
        match seal_once(&db, signing.as_ref(), cadence, &clock, &mut sealed).await {
            Ok(_) => {
                notices.clear(NOTICE);
                if let Some(path) = &kept {
                    sealed.write(path);
                }
            }
            Err(SealError::Rewritten(why)) => {
                metrics::counter!("audit_rewrites_refused_total").increment(1);
                tracing::error!(error = %why, "refusing to sign: the stored log no longer extends what this process signed");
                notices.set(NOTICE, format!("refusing to sign: {why}"));
                if sealed.alerted.as_deref() != Some(why.as_str()) {
                    alert(&db, &why, clock.now()).await;
                    sealed.alerted = Some(why);
                }
            }
            Err(err) => tracing::warn!(error = %err, "sealing the audit chain failed; retrying"),
        }
    }
}

/// What this process signed last, kept in memory, out of a database writer's reach:
/// nothing is signed that does not extend it.
#[derive(Debug, Default)]
pub struct Sealed {
    /// The tree's size and root.
    tree: Option<(u64, tree::Hash)>,
    /// The chain's position and hash.
    chain: Option<(i64, String)>,
    /// The witnesses, each with the size it cosigned last.
    witnesses: Vec<cosign::Cosigner>,
    client: reqwest::Client,
    /// The refusal last recorded in the log, so each is recorded once.
    alerted: Option<String>,
    /// What was last written to the kept file.
    written: Option<String>,
    /// When the tree's checkpoints were last thinned.
    thinned: Option<Micros>,
}

impl Sealed {
    /// What a previous run kept in `path` (nothing if it is missing or unreadable).
    fn read(path: &std::path::Path) -> Sealed {
        let Ok(text) = std::fs::read_to_string(path) else {
            return Sealed::default();
        };
        let mut sealed = Sealed::default();
        for line in text.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            match fields.as_slice() {
                ["tree", size, root] => {
                    let root = chain::decode_hex(root).ok();
                    sealed.tree = size.parse().ok().zip(root);
                }
                ["chain", position, hash] => {
                    sealed.chain = position
                        .parse()
                        .ok()
                        .map(|position| (position, (*hash).to_owned()));
                }
                _ => {}
            }
        }
        sealed
    }

    /// Keeps what was signed last in `path` (replaced whole, so a crash leaves the old
    /// or the new, never half).
    fn write(&mut self, path: &std::path::Path) {
        let mut text = String::new();
        if let Some((size, root)) = &self.tree {
            text.push_str(&format!("tree {size} {}\n", chain::hex(root)));
        }
        if let Some((position, hash)) = &self.chain {
            text.push_str(&format!("chain {position} {hash}\n"));
        }
        if text.is_empty() || self.written.as_deref() == Some(text.as_str()) {
            return;
        }
        let temporary = path.with_extension("signed-tmp");
        let written =
            std::fs::write(&temporary, &text).and_then(|()| std::fs::rename(&temporary, path));
        match written {
            Ok(()) => self.written = Some(text),
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "keeping what was signed last failed")
            }
        }
    }
}

/// The subject of the sealer's notice on `/ready`.
const NOTICE: &str = "audit_log";

/// Records in the log itself that signing stopped, and why: an event anyone reading
/// the log sees (`studyhall.audit`, `audit.signing_refused`).
async fn alert(db: &Db, why: &str, now: Micros) {
    let decision = Decision::new(
        "studyhall.audit",
        "audit.signing_refused",
        Actor::system(),
        serde_json::json!({ "reason": why }),
    );
    let recorded = match db.begin_write().await {
        Ok(tx) => commit(tx, &[decision], now).await,
        Err(err) => Err(err),
    };
    if let Err(err) = recorded {
        tracing::error!(error = %err, "recording that signing stopped failed");
    }
}

/// Why a round of sealing stopped.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// The stored log no longer extends what this process signed: nothing is signed.
    #[error("{0}")]
    Rewritten(String),
    /// Placing events outside the chain failed (another sequencer raced this one: the
    /// next round places what still waits).
    #[error(transparent)]
    Sequence(#[from] store::SequenceError),
}

impl From<retention::RetentionError> for SealError {
    fn from(err: retention::RetentionError) -> SealError {
        match err {
            retention::RetentionError::Database(err) => SealError::Database(err),
            altered => SealError::Rewritten(altered.to_string()),
        }
    }
}

impl From<integrate::SignError> for SealError {
    fn from(err: integrate::SignError) -> SealError {
        match err {
            integrate::SignError::Database(err) => SealError::Database(err),
            inconsistent => SealError::Rewritten(inconsistent.to_string()),
        }
    }
}

/// One round of [`seal`], reading `clock` when each step needs the time (a checkpoint's
/// time is read after its head, so it is never before the commit of an event it
/// covers, which retention relies on): the chain checkpoint it signed, if one was due. The
/// tree's checkpoint is signed every round the tree grew.
pub async fn seal_once(
    db: &Db,
    signing: Option<&Signing>,
    cadence: Cadence,
    clock: &Clock,
    sealed: &mut Sealed,
) -> Result<Option<Statement>, SealError> {
    let placed = store::sequence(db, SEQUENCE_BATCH, store::Lease::Skip).await?;
    if placed > 0 {
        tracing::info!(
            placed,
            "gave events stored outside the chain their place in it"
        );
    }
    while integrate::grow(db, TREE_BATCH).await? == TREE_BATCH as u64 {}
    let Some(Signing { key, origin, .. }) = signing else {
        return Ok(None);
    };
    if integrate::sign(db, key, origin, clock, &mut sealed.tree)
        .await?
        .is_some()
    {
        let size = sealed.tree.map_or(0, |(size, _)| size);
        for witness in &mut sealed.witnesses {
            if let Err(err) = cosign::ask(db, &sealed.client, witness, size).await {
                tracing::warn!(witness = %witness.vkey.name, error = %err, "a witness did not cosign");
            }
        }
    }
    let now = clock.now();
    if sealed
        .thinned
        .is_none_or(|at| now.0 - at.0 >= THIN_EVERY.as_micros() as i64)
    {
        integrate::thin_checkpoints(db, now).await?;
        sealed.thinned = Some(now);
    }
    if let Some(retention) = cadence.retention {
        let now = clock.now();
        let cutoff = now.plus(-studyhall_core::clock::duration_micros(retention));
        let removed = retention::remove_before(db, key, (cutoff, now), RETENTION_BATCH).await?;
        if removed > 0 {
            metrics::counter!("audit_events_removed_total").increment(removed);
            tracing::info!(
                removed,
                "removed events past the retention period, leaving signed markers"
            );
        }
    }
    let head = store::head(db).await?;
    let now = clock.now();
    metrics::gauge!("audit_chain_position").set(head.position as f64);
    if head.position == 0 {
        return Ok(None);
    }
    let due = match statements::last_checkpoint(db).await? {
        None => true,
        Some((position, at)) => {
            let waited = Duration::from_micros(now.0.saturating_sub(at.0).max(0) as u64);
            head.position > position
                && (head.position - position >= cadence.events || waited >= cadence.every)
        }
    };
    if !due {
        return Ok(None);
    }
    if let Some((position, hash)) = &sealed.chain {
        let kept = match store::hash_at(db, *position).await? {
            Some(stored) => stored == *hash,
            None => retention::removed_by_retention(db, *position).await?,
        };
        if !kept {
            return Err(SealError::Rewritten(format!(
                "the chain hash at position {position}, which this process signed, was changed or removed"
            )));
        }
    }
    let checkpoint = key.checkpoint(head.position, &head.hash, now);
    statements::insert_statement(db, &checkpoint).await?;
    sealed.chain = Some((head.position, head.hash.clone()));
    Ok(Some(checkpoint))
}

/// Who made a decision the log records.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Actor {
    /// `operator` (the admin token), `user` (a verified token), `viewer` (a stream
    /// viewer as the deployment identifies them) or `system` (the service itself).
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

impl Actor {
    pub fn operator() -> Actor {
        Actor {
            kind: "operator",
            id: None,
            email: None,
        }
    }

    /// An operator known by name (a console session).
    pub fn operator_named(name: &str) -> Actor {
        Actor {
            kind: "operator",
            id: Some(name.to_owned()),
            email: None,
        }
    }

    pub fn system() -> Actor {
        Actor {
            kind: "system",
            id: None,
            email: None,
        }
    }

    pub fn user(id: Option<String>, email: Option<String>) -> Actor {
        Actor {
            kind: if id.is_some() { "user" } else { "anonymous" },
            id,
            email,
        }
    }

    /// The event's `email`: the actor's own, else `KIND@studyhall.invalid` (a domain
    /// that never receives mail).
    fn email_field(&self) -> String {
        self.email
            .clone()
            .filter(|email| crate::events::model::is_valid_email(email))
            .unwrap_or_else(|| format!("{}@studyhall.invalid", self.kind))
    }
}

/// The `environment` of every event the service records about itself.
pub const ENVIRONMENT: &str = "studyhall";

/// A decision a module records in the audit log: component `studyhall.MODULE`, a
/// message from the README's vocabulary, who, and what (`data`, an object to which
/// the actor is added).
#[derive(Debug, Clone)]
pub struct Decision {
    pub component: &'static str,
    pub message: &'static str,
    pub actor: Actor,
    pub data: serde_json::Value,
}

impl Decision {
    pub fn new(
        component: &'static str,
        message: &'static str,
        actor: Actor,
        data: serde_json::Value,
    ) -> Decision {
        Decision {
            component,
            message,
            actor,
            data,
        }
    }

    /// The event that records it.
    pub fn event(&self) -> Result<crate::events::model::NewEvent, serde_json::Error> {
        let mut data = match &self.data {
            serde_json::Value::Object(fields) => fields.clone(),
            serde_json::Value::Null => serde_json::Map::new(),
            other => serde_json::Map::from_iter([("value".to_owned(), other.clone())]),
        };
        data.insert("actor".into(), serde_json::to_value(&self.actor)?);
        Ok(crate::events::model::NewEvent {
            component: self.component.to_owned(),
            data: serde_json::value::to_raw_value(&data)?,
            email: self.actor.email_field(),
            environment: ENVIRONMENT.to_owned(),
            message: self.message.to_owned(),
        })
    }
}

/// Commits `tx`, the transaction of the decisions themselves, with `decisions`, made at
/// `at`, recorded at the end of the chain as its last statements. The chain's head is
/// then always the last lock a transaction takes, whatever else it locked, so two
/// writers never wait on each other through it; this is the only way to record inside
/// a transaction.
pub async fn commit(
    mut tx: studyhall_core::db::Tx,
    decisions: &[Decision],
    at: Micros,
) -> Result<(), sqlx::Error> {
    record(&mut tx, decisions, at).await?;
    tx.commit().await
}

/// Records `decisions`, made at `at`, inside `tx` at the end of the chain.
async fn record(
    tx: &mut studyhall_core::db::Tx,
    decisions: &[Decision],
    at: Micros,
) -> Result<(), sqlx::Error> {
    let events = decisions
        .iter()
        .map(Decision::event)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| sqlx::Error::Encode(Box::new(err)))?;
    let mut at = at;
    let mut stamped = Vec::with_capacity(events.len());
    for event in &events {
        stamped.push((uuid::Uuid::now_v7(), at, event));
        at = at.plus(1);
    }
    let entries: Vec<chain::Entry<'_>> = stamped
        .iter()
        .map(|(id, at, event)| chain::Entry {
            position: 0,
            id: *id,
            created_at: *at,
            component: &event.component,
            environment: &event.environment,
            email: &event.email,
            message: &event.message,
            data: event.data.get(),
        })
        .collect();
    store::append(tx, &entries).await
}

/// Records decisions in transactions of their own, group-committed: for decisions that
/// are not a database write of this service (a Redis stream lease, a refused token).
#[derive(Clone, Debug)]
pub struct Recorder {
    batcher: studyhall_core::batch::Batcher<Decision, ()>,
}

struct RecordBatch(Db, Clock);

impl studyhall_core::batch::Batched for RecordBatch {
    type Write = Decision;
    type Outcome = ();

    async fn apply(&mut self, decisions: &[Decision]) -> Result<Vec<()>, sqlx::Error> {
        let tx = self.0.begin_write().await?;
        commit(tx, decisions, self.1.now()).await?;
        Ok(vec![(); decisions.len()])
    }
}

impl Recorder {
    /// The recorder, and its task to await at shutdown.
    pub fn start(db: &Db, clock: Clock) -> (Recorder, tokio::task::JoinHandle<()>) {
        let (batcher, task) = studyhall_core::batch::Batcher::start(RecordBatch(db.clone(), clock));
        (Recorder { batcher }, task)
    }

    /// Records `decision` once it is durable.
    pub async fn record(
        &self,
        decision: Decision,
    ) -> Result<(), studyhall_core::error::StoreError> {
        self.batcher.submit(decision).await
    }

    /// Hands `decision` to the recorder without waiting for it to be durable (see
    /// `Batcher::hand_over`): for a decision already made and kept elsewhere, whose
    /// record a crash could lose in any case.
    pub async fn record_later(
        &self,
        decision: Decision,
    ) -> Result<(), studyhall_core::error::StoreError> {
        self.batcher.hand_over(decision).await
    }
}

/// Records one kind of refusal (a bad token, a refused console login) at most
/// [`Throttled::PER_MINUTE`] times a minute, so a flood cannot flood the log; the next
/// record counts the refusals left out before it (`suppressed_before`). The refusal is
/// answered at once and its record follows.
pub struct Throttled {
    recorder: Recorder,
    component: &'static str,
    message: &'static str,
    /// The minute's start, the refusals recorded in it, and those left out since the
    /// last record.
    window: std::sync::Mutex<(std::time::Instant, u32, u64)>,
}

impl Throttled {
    pub const PER_MINUTE: u32 = 10;

    pub fn new(recorder: Recorder, component: &'static str, message: &'static str) -> Throttled {
        Throttled {
            recorder,
            component,
            message,
            window: std::sync::Mutex::new((std::time::Instant::now(), 0, 0)),
        }
    }

    /// Records a refusal of `actor` with `data` (an object), unless this minute's
    /// records are spent.
    pub fn note(&self, actor: Actor, mut data: serde_json::Value) {
        let suppressed = {
            let Ok(mut window) = self.window.lock() else {
                return;
            };
            let (started, recorded, suppressed) = &mut *window;
            if started.elapsed() >= std::time::Duration::from_secs(60) {
                *started = std::time::Instant::now();
                *recorded = 0;
            }
            if *recorded >= Self::PER_MINUTE {
                *suppressed += 1;
                metrics::counter!("audit_refusals_suppressed_total").increment(1);
                return;
            }
            *recorded += 1;
            std::mem::take(suppressed)
        };
        if let Some(fields) = data.as_object_mut() {
            fields.insert("suppressed_before".into(), serde_json::json!(suppressed));
        }
        let decision = Decision::new(self.component, self.message, actor, data);
        let recorder = self.recorder.clone();
        tokio::spawn(async move {
            if let Err(err) = recorder.record(decision).await {
                tracing::warn!(error = %err, "recording a refusal failed");
            }
        });
    }
}
