//! studyhall: the activity event log, learning-session stats, grade analytics, a
//! concurrent-stream limiter and social profiles, served from one binary.
//!
//! `main` is thin: it parses settings and calls [`build_app`] and [`serve`], which the
//! integration tests call the same way on a port-0 listener.

pub mod auth;
pub mod batch;
pub mod clock;
pub mod config;
pub mod db;
pub mod error;
pub mod events;
pub mod grades;
pub mod http;
pub mod jobs;
pub mod openapi;
pub mod social;
pub mod stats;
pub mod streams;

use std::future::Future;

use anyhow::Context;
use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use config::{Module, ServeSettings};
use db::Db;

/// A built application: the router plus what must be flushed when it stops.
pub struct App {
    pub router: Router,
    pub db: Db,
    /// Tasks that finish by themselves once the router is dropped (they flush writes).
    flushers: Vec<JoinHandle<()>>,
    /// Tasks that only do periodic housekeeping and are stopped at shutdown.
    housekeeping: Vec<JoinHandle<()>>,
    /// Tells the in-process job worker to stop once its current batch is done.
    stop_worker: tokio::sync::watch::Sender<bool>,
    worker: Option<JoinHandle<()>>,
}

/// The worker settings for `settings`' lease.
pub fn worker_settings(jobs: &config::JobSettings) -> jobs::WorkerSettings {
    jobs::WorkerSettings {
        lease: std::time::Duration::from_secs(u64::from(jobs.job_lease_secs)),
        ..jobs::WorkerSettings::default()
    }
}

/// Every job kind this build knows.
pub fn job_handlers() -> jobs::Handlers {
    let mut handlers = jobs::Handlers::default();
    grades::register(&mut handlers);
    handlers
}

/// Connects to the database, applies migrations and wires the selected modules.
pub async fn build_app(settings: &ServeSettings) -> anyhow::Result<App> {
    build_app_with(settings, job_handlers()).await
}

/// `build_app` with the given job handlers (tests add kinds of their own).
pub async fn build_app_with(
    settings: &ServeSettings,
    handlers: jobs::Handlers,
) -> anyhow::Result<App> {
    settings.validate()?;
    let db = Db::connect(
        &settings.database.database_url,
        settings.database.database_max_connections,
    )
    .await?;
    db.migrate().await?;
    http::telemetry::prometheus();
    let redis = settings
        .redis_url
        .as_ref()
        .map(streams::RedisHandle::open)
        .transpose()?;
    if let (Some(redis), Some(url)) = (&redis, &settings.redis_url) {
        // Starting while Redis is down is allowed (starts answer 503 until it is back),
        // but said, so that an operator is not left guessing.
        match tokio::time::timeout(std::time::Duration::from_secs(2), redis.ping()).await {
            Ok(Ok(())) => tracing::info!(redis = %url, "Redis answers"),
            Ok(Err(err)) => {
                tracing::warn!(redis = %url, error = %err, "Redis cannot be reached; stream starts answer 503 until it can")
            }
            Err(_) => {
                tracing::warn!(redis = %url, "Redis did not answer within 2 s; stream starts answer 503 until it does")
            }
        }
    }

    let openapi = serde_json::to_value(openapi::document_for(settings))
        .context("serialising the OpenAPI document")?;
    let auth = std::sync::Arc::new(
        auth::Auth::from_settings(&settings.auth, &settings.database.database_url)?
            .trusting_identity_headers(settings.identity.trust_identity_headers)
            .with_admin_token(settings.admin_token.clone()),
    );
    let readiness = http::ops::Readiness {
        db: db.clone(),
        redis: redis.clone(),
    };
    let mut router = http::ops::router(readiness, openapi);
    let mut flushers = Vec::new();
    let mut housekeeping = vec![http::telemetry::spawn_metrics_upkeep()];
    if settings.serves(Module::Events) {
        let events = events::start(&db, settings);
        router = router.merge(events.router);
        flushers.push(events.writer);
        housekeeping.push(events.pruner);
    }
    if settings.serves(Module::Stats) {
        let stats = stats::start(&db, settings);
        router = router.merge(stats.router);
        flushers.extend(stats.writer);
    }
    if settings.serves(Module::Streams) {
        let streams = streams::start(&db, settings, redis.as_ref())?;
        router = router.merge(streams.router);
        flushers.extend(streams.writer);
        housekeeping.push(streams.housekeeping);
    }
    if settings.serves(Module::Social) {
        router = router.merge(social::router(&db));
    }
    let (stop_worker, worker_stopped) = tokio::sync::watch::channel(false);
    let mut worker = None;
    if settings.serves(Module::Grades) {
        let (queue, enqueuer) = jobs::Queue::new(&db, settings.jobs.job_max_attempts);
        router = router
            .merge(grades::router(&db, queue.clone()))
            .merge(jobs::router(queue.clone()));
        housekeeping.push(tokio::spawn(jobs::report_depth(
            db.clone(),
            handlers.kinds(),
        )));
        if !settings.no_worker {
            let runner = jobs::Worker::new(queue, handlers, worker_settings(&settings.jobs));
            let concurrency = settings.jobs.concurrency as usize;
            worker = Some(tokio::spawn(runner.run(concurrency, worker_stopped)));
        }
        flushers.extend(enqueuer);
    }
    // Token verification for every route that reads a caller (`auth::Caller`).
    let router = router.layer(axum::Extension(auth));
    Ok(App {
        router: http::finish(router, &settings.cors_origins),
        db,
        flushers,
        housekeeping,
        stop_worker,
        worker,
    })
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish, flushes
/// pending writes and closes the database.
pub async fn serve(
    listener: TcpListener,
    app: App,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let App {
        router,
        db,
        flushers,
        housekeeping,
        stop_worker,
        worker,
    } = app;
    // Peer addresses identify stream viewers when STUDYHALL_TRUST_PEER_ADDR is set.
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
    .context("HTTP server failed")?;
    for task in housekeeping {
        task.abort();
    }
    // The worker finishes its batch; its queue handle then lets the enqueuer drain.
    let _ = stop_worker.send(true);
    if let Some(worker) = worker {
        if let Err(err) = worker.await {
            tracing::error!(error = %err, "the job worker ended abnormally");
        }
    }
    for task in flushers {
        if let Err(err) = task.await {
            tracing::error!(error = %err, "a background writer ended abnormally");
        }
    }
    db.close().await;
    Ok(())
}

/// Resolves on SIGTERM (what ECS sends before stopping a task) or Ctrl-C.
pub async fn shutdown_signal() {
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
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
}
