//! The activity event log (activity_service): POST an event, GET them back filtered
//! and paged.

#![warn(unreachable_pub)]

mod console;
mod routes;
mod tree;
mod witness;

pub use studyhall_log::events::store::EventStore;
pub use studyhall_log::events::{model, query};
use studyhall_log::events::{store, writer};

use std::time::Duration;

use axum::routing::get;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use studyhall_auth::Rule;
use studyhall_core::config::{AuditSettings, EventSettings, ReadAccess, WriteAccess};
use studyhall_core::sensitive::DatabaseUrl;
use studyhall_log::cosign::Cosigner;
use studyhall_log::key::AuditKey;
use studyhall_log::{Cadence, Signing};
use studyhall_module::{self as module, Core, Definition, Module};
use writer::Writer;

/// Idempotency keys are kept at least this long.
const KEY_RETENTION: Duration = Duration::from_secs(24 * 3600);

#[derive(Clone, Debug)]
pub struct Events {
    store: EventStore,
    writer: Writer,
    /// The key that verifies checkpoints, base64; none when none are signed.
    public_key: Option<String>,
    /// Who may list, export and read checkpoints (`STUDYHALL_EVENTS_READ`).
    read: Rule,
    /// Who may post (`STUDYHALL_EVENTS_WRITE`).
    write: Rule,
    /// This deployment as a witness of other logs, if it is one.
    witness: Option<std::sync::Arc<witness::Witnessing>>,
}

/// What the events module starts with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub audit: AuditSettings,
    pub events: EventSettings,
    /// Where an SQLite database lives, beside which a generated key is kept.
    pub database_url: DatabaseUrl,
}

pub const MODULE: Definition<Settings> = Definition {
    name: "events",
    api: || module::document(routes()),
    aliases: ALIASES,
    jobs: module::no_jobs,
    start,
};

fn start(core: &Core, settings: &Settings) -> anyhow::Result<Module> {
    let audit = &settings.audit;
    let key = AuditKey::load(audit.audit_signing_key.as_ref(), &settings.database_url)?;
    if key.is_none() {
        if settings.events.events_retention.is_some() {
            anyhow::bail!("STUDYHALL_EVENTS_RETENTION needs STUDYHALL_AUDIT_SIGNING_KEY: each removal leaves a signed marker");
        }
        tracing::warn!(
            "no STUDYHALL_AUDIT_SIGNING_KEY: the audit chain is kept but no checkpoints are signed"
        );
    }
    let (store, writer, writer_task) = writer(core);
    core.console
        .add(console::page(store.clone(), core.clock.clone()));
    core.console
        .add_figure(console::EventsToday(core.db.clone()));
    let pruner = tokio::spawn(prune_keys(store.clone(), core.clock.clone()));
    let cadence = Cadence {
        events: i64::from(audit.audit_checkpoint_events),
        every: Duration::from_secs(u64::from(audit.audit_checkpoint_secs)),
        retention: settings.events.events_retention,
    };
    let public_key = key.as_ref().map(AuditKey::public_text);
    let witnesses = audit
        .audit_witnesses
        .iter()
        .filter(|text| !text.trim().is_empty())
        .map(|text| Cosigner::parse(text))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|why| anyhow::anyhow!("STUDYHALL_AUDIT_WITNESSES: {why}"))?;
    let signing = key.map(|key| Signing {
        origin: audit
            .audit_origin
            .clone()
            .unwrap_or_else(|| key.default_origin()),
        key,
        witnesses,
        kept: settings
            .database_url
            .sqlite_file()
            .map(|file| std::path::PathBuf::from(format!("{}.audit-signed", file.display()))),
    });
    let witness = witness::configured(audit, core.clock.clone())?;
    let sealer = tokio::spawn(studyhall_log::seal(
        core.db.clone(),
        signing,
        cadence,
        (core.audited.audit_chain, core.clock.clone()),
        core.notices.clone(),
    ));
    let routes = routes()
        .route("/api/healthz", get(routes::health))
        .route("/api/events/", get(routes::list).post(routes::create))
        .route("/api/events/log/tile/{*tile}", get(tree::tile))
        .route("/api/witness", get(witness::vkey))
        .route(
            "/api/witness/add-checkpoint",
            axum::routing::post(witness::add_checkpoint),
        )
        .with_state(Events {
            store,
            writer,
            public_key,
            witness,
            read: match settings.events.events_read {
                ReadAccess::Open => Rule::Open,
                ReadAccess::Token => Rule::Scoped("events:read"),
                ReadAccess::Admin => Rule::Admin,
            },
            write: match settings.events.events_write {
                WriteAccess::Open => Rule::Open,
                WriteAccess::Token => Rule::Scoped("events:write"),
            },
        });
    Ok(Module::new(routes)
        .with_writer(Some(writer_task))
        .with_housekeeping(pruner)
        .with_housekeeping(sealer))
}

fn routes() -> OpenApiRouter<Events> {
    OpenApiRouter::with_openapi(Api::openapi())
        .routes(routes!(routes::health))
        .routes(routes!(routes::list, routes::create))
        .routes(routes!(routes::checkpoints))
        .routes(routes!(routes::export))
        .routes(routes!(tree::checkpoint))
        .routes(routes!(tree::consistency))
        .routes(routes!(tree::proof))
}

/// The store and its writer, for the module and for the store ceiling
/// (the binary's `ceiling`).
pub fn writer(core: &Core) -> (EventStore, Writer, tokio::task::JoinHandle<()>) {
    let store = EventStore::new(&core.db, core.audited.audit_chain);
    let (writer, task) = Writer::start(store.clone(), core.clock.clone());
    (store, writer, task)
}

async fn prune_keys(store: EventStore, clock: studyhall_core::clock::Clock) {
    loop {
        let before = clock
            .now()
            .plus(-studyhall_core::clock::duration_micros(KEY_RETENTION));
        match store.prune_keys(before.0).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "forgot expired idempotency keys"),
            Err(err) => tracing::warn!(error = %err, "pruning idempotency keys failed"),
        }
        clock.sleep(Duration::from_secs(600)).await;
    }
}

#[derive(OpenApi)]
#[openapi(
    tags((name = "events", description = "Activity event log (activity_service compatible)"))
)]
pub struct Api;

/// Paths served under a second spelling (routed above); the OpenAPI document lists both.
pub const ALIASES: &[(&str, &str)] = &[
    ("/api/events", "/api/events/"),
    ("/api/health", "/api/healthz"),
];
