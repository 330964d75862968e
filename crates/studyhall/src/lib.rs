//! studyhall: the activity event log, learning-session stats, grade analytics, a
//! concurrent-stream limiter and social profiles, served from one binary.
//!
//! `main` is thin: it parses settings and calls [`build_app`] and [`serve`], which the
//! integration tests call the same way on a port-0 listener.

#![warn(unreachable_pub)]

pub mod ceiling;
pub mod config;
pub mod openapi;

// The layers, bottom up; each crate's first lines say what it owns.
pub use studyhall_auth as auth;
pub use studyhall_console as console;
pub use studyhall_core::{batch, clock, db, error, http, page, redis_handle, sensitive, sql};
pub use studyhall_events as events;
pub use studyhall_grades as grades;
pub use studyhall_jobs as jobs;
pub use studyhall_log as audit;
pub use studyhall_module as module;
pub use studyhall_social as social;
pub use studyhall_stats as stats;
pub use studyhall_streams as streams;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use tokio::net::TcpListener;

use config::ServeSettings;
use db::Db;
use module::{Core, Plugin, Tasks};

/// A module's [`module::Definition`] as this binary lists it: with the settings it starts
/// with, picked out of the server's (`settings` names them in the expression).
macro_rules! plugin {
    ($definition:path, |$settings:pat_param| $part:expr) => {
        Plugin {
            name: $definition.name,
            api: $definition.api,
            aliases: $definition.aliases,
            jobs: $definition.jobs,
            start: |core, $settings| ($definition.start)(core, &$part),
        }
    };
}

/// Every module, in the order their routes are merged, each with the settings it needs.
/// Adding a module is its crate and one line here.
pub const MODULES: &[Plugin] = &[
    plugin!(events::MODULE, |settings| events::Settings {
        audit: settings.audit.clone(),
        events: settings.events.clone(),
        database_url: settings.database.database_url.clone(),
    }),
    plugin!(stats::MODULE, |_| ()),
    plugin!(streams::MODULE, |settings| settings.streams.clone()),
    plugin!(social::MODULE, |settings| social::Settings {
        images: settings.images.clone(),
        database_url: settings.database.database_url.clone(),
    }),
    plugin!(grades::MODULE, |_| ()),
    plugin!(console::MODULE, |settings| settings.console.clone()),
];

/// A built application: the router plus the background tasks to stop when it stops.
pub struct App {
    pub router: Router,
    pub db: Db,
    /// Set when a SIGTERM starts the drain (`STUDYHALL_SHUTDOWN_DRAIN`).
    pub draining: http::ops::Draining,
    tasks: Tasks,
}

/// Every job kind of the modules `serves` selects.
pub fn job_handlers(serves: impl Fn(&Plugin) -> bool) -> jobs::Handlers {
    let mut handlers = jobs::Handlers::default();
    for plugin in MODULES.iter().filter(|plugin| serves(plugin)) {
        (plugin.jobs)(&mut handlers);
    }
    handlers
}

/// The OpenAPI document of everything this build can serve.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    openapi::document(MODULES)
}

/// Connects to the database, applies migrations and wires the selected modules on the
/// shared core. The job queue's worker and `/jobs` run when any selected module
/// registers a job kind.
pub async fn build_app(settings: &ServeSettings) -> anyhow::Result<App> {
    settings.validate()?;
    let (core, enqueuer) = Core::open(
        &settings.database,
        settings.redis_url.as_ref(),
        settings.jobs.job_max_attempts,
        &settings.audit.modules,
        settings.clock.clone(),
    )
    .await?;
    http::telemetry::prometheus();
    let db = core.db.clone();
    let mut tasks = Tasks::upkeep(&db);
    let selected: Vec<&Plugin> = MODULES
        .iter()
        .filter(|plugin| settings.serves(plugin.name))
        .collect();
    let draining = http::ops::Draining::default();
    let mut routes = http::ops::routes(http::ops::Readiness {
        db: db.clone(),
        redis: core.redis.clone(),
        draining: draining.clone(),
        notices: core.notices.clone(),
    });
    for plugin in &selected {
        let module = (plugin.start)(&core, settings)
            .with_context(|| format!("starting the {} module", plugin.name))?;
        routes = routes.merge(http::recent::answered_by(plugin.name, module.routes));
        tasks.extend(module.tasks);
    }
    let handlers = job_handlers(|plugin| settings.serves(plugin.name));
    if !handlers.is_empty() {
        routes = routes.merge(jobs::routes(core.queue.clone()));
        tasks.housekeeping(tokio::spawn(jobs::report_depth(
            core.queue.clone(),
            handlers.kinds(),
            settings.jobs.job_retention,
        )));
        if !settings.no_worker {
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let worker = jobs::run_worker(core.queue.clone(), handlers, &settings.jobs, stopped);
            tasks.worker(stop, tokio::spawn(worker));
        }
    }
    let refusals = core.audited.audits("auth").then(|| core.recorder.clone());
    // The enqueuer drains once the last queue handle (the routes', the worker's) is gone.
    drop(core);
    tasks.writer(enqueuer);
    let (router, document) = routes.split_for_parts();
    let aliases: Vec<(&str, &str)> = selected
        .iter()
        .flat_map(|plugin| plugin.aliases.iter().copied())
        .collect();
    let document = serde_json::to_value(openapi::finish(document, &aliases))
        .context("serialising the OpenAPI document")?;
    let auth = Arc::new(
        auth::Auth::from_settings(&settings.auth, &settings.database.database_url)?
            .trusting(auth::IdentityTrust {
                headers: settings.identity.trust_identity_headers,
                peer_addr: settings.identity.trust_peer_addr,
            })
            .with_admin_token(settings.admin_token.clone())
            .recording_refusals(refusals),
    );
    let router = router
        .layer(http::ops::document_route(document))
        // Token verification for every route that reads a caller (`auth::Caller`).
        .layer(axum::Extension(auth));
    Ok(App {
        router: http::finish(router, &settings.cors_origins, draining.clone()),
        db,
        draining,
        tasks,
    })
}

/// Runs the job worker alone (`studyhall worker`) until `shutdown` resolves.
pub async fn work(
    settings: &config::WorkerArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (Core { db, queue, .. }, enqueuer) = Core::open(
        &settings.database,
        None,
        settings.jobs.job_max_attempts,
        &settings.audit,
        clock::Clock::system(),
    )
    .await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut tasks = Tasks::upkeep(&db);
    tasks.writer(enqueuer);
    let worker = jobs::run_worker(queue, job_handlers(|_| true), &settings.jobs, stopped);
    tasks.worker(stop, tokio::spawn(worker));
    tracing::info!(
        concurrency = settings.jobs.concurrency,
        backend = db.backend_name(),
        "studyhall worker is running"
    );
    shutdown.await;
    tasks.stop().await;
    db.close().await;
    Ok(())
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish, flushes
/// pending writes and closes the database.
pub async fn serve(
    listener: TcpListener,
    app: App,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let App {
        router, db, tasks, ..
    } = app;
    // Peer addresses identify stream viewers when STUDYHALL_TRUST_PEER_ADDR is set.
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
    .context("HTTP server failed")?;
    // The server has stopped accepting and answered what was in flight, and dropped
    // the router: the tasks stop in the order `Tasks::stop` states.
    tasks.stop().await;
    db.close().await;
    Ok(())
}

/// What asked the process to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGTERM: what ECS sends before it stops a task; the server drains first.
    Terminate,
    /// Ctrl-C: someone at a terminal; no drain.
    Interrupt,
}

/// Resolves on SIGTERM (what ECS sends before stopping a task) or Ctrl-C.
pub async fn shutdown_signal() {
    stop_signal().await;
}

/// Resolves on SIGTERM or Ctrl-C, saying which.
pub async fn stop_signal() -> Stop {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    let stop = tokio::select! {
        () = ctrl_c => Stop::Interrupt,
        () = terminate => Stop::Terminate,
    };
    tracing::info!(?stop, "shutdown requested");
    stop
}
