//! The one shape every module has. A module is a folder with a [`Plugin`] in its
//! `mod.rs`; `lib.rs` lists the plugins and builds each selected one on the shared
//! [`Core`]. Adding a module is its folder and one line in that list.

#![warn(unreachable_pub)]

use std::sync::{Arc, Mutex};

use tokio::task::JoinHandle;
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use studyhall_core::clock::Clock;
use studyhall_core::config::{AuditModules, DatabaseSettings, ServeSettings};
use studyhall_core::db::Db;
use studyhall_core::redis_handle::RedisHandle;
use studyhall_core::sensitive::RedisUrl;
use studyhall_jobs::{Handlers, Queue};
use studyhall_log::Recorder;

pub use studyhall_core::http::document;
pub use studyhall_ui::{ConsolePage, Figure, Section};

/// What the modules share: the database, Redis when configured, the job queue, and
/// the audit log's recorder with the modules whose decisions it records.
#[derive(Clone, Debug)]
pub struct Core {
    pub db: Db,
    pub redis: Option<RedisHandle>,
    /// Enqueue jobs of the kinds a module registers in [`Plugin::jobs`].
    pub queue: Queue,
    /// Records decisions that are not a database write (see [`Recorder`]); a module
    /// records its database writes' decisions in their own transaction.
    pub recorder: Recorder,
    /// `STUDYHALL_AUDIT_MODULES`.
    pub audited: AuditModules,
    /// What every store and periodic task reads the time from.
    pub clock: Clock,
    /// The console pages the modules started so far serve, for the console to mount.
    pub console: ConsolePages,
    /// What `/ready` shows an operator.
    pub notices: studyhall_core::http::ops::Notices,
}

/// What the modules add to the console, in the order the modules start: their pages,
/// their sections of the analytics page and their figures on the overview.
#[derive(Clone, Default)]
pub struct ConsolePages(Arc<Mutex<ConsoleParts>>);

/// The console's parts from the modules, handed over once to the console.
#[derive(Default)]
pub struct ConsoleParts {
    pub pages: Vec<ConsolePage>,
    pub sections: Vec<Arc<dyn Section>>,
    pub figures: Vec<Arc<dyn Figure>>,
}

impl ConsolePages {
    /// Adds `page` to the console (when the server runs one).
    pub fn add(&self, page: ConsolePage) {
        self.parts().pages.push(page);
    }

    /// Adds `section` to the analytics page.
    pub fn add_section(&self, section: impl Section + 'static) {
        self.parts().sections.push(Arc::new(section));
    }

    /// Adds `figure` to the overview.
    pub fn add_figure(&self, figure: impl Figure + 'static) {
        self.parts().figures.push(Arc::new(figure));
    }

    /// The parts added so far, handed over once to the console that serves them.
    pub fn take(&self) -> ConsoleParts {
        std::mem::take(&mut *self.parts())
    }

    fn parts(&self) -> std::sync::MutexGuard<'_, ConsoleParts> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl std::fmt::Debug for ConsolePages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pages = self.0.lock().map_or(0, |parts| parts.pages.len());
        write!(f, "ConsolePages({pages} pages)")
    }
}

impl Core {
    /// Opens the database (applying migrations), Redis when a URL is given, the job
    /// queue and the recorder; with their group-commit tasks, to drain at shutdown.
    pub async fn open(
        database: &DatabaseSettings,
        redis_url: Option<&RedisUrl>,
        job_max_attempts: u32,
        audited: &AuditModules,
        clock: Clock,
    ) -> anyhow::Result<(Core, Vec<JoinHandle<()>>)> {
        let db = Db::open(database).await?;
        db.migrate().await?;
        let redis = match redis_url {
            Some(url) => Some(RedisHandle::connect(url).await?),
            None => None,
        };
        let (queue, enqueuer) =
            Queue::new(&db, job_max_attempts, audited.audits("jobs"), clock.clone());
        let (recorder, recording) = Recorder::start(&db, clock.clone());
        let core = Core {
            db,
            redis,
            queue,
            recorder,
            audited: audited.clone(),
            clock,
            console: ConsolePages::default(),
            notices: Default::default(),
        };
        Ok((core, enqueuer.into_iter().chain([recording]).collect()))
    }
}

/// A module as its crate declares it, with `S`, the settings it starts with: its own,
/// which the binary picks out of the server's settings when it lists the module (a
/// [`Plugin`]). A module never sees the other modules' settings.
pub struct Definition<S: 'static> {
    /// Its name in `--modules` and in logs.
    pub name: &'static str,
    /// Its routes' OpenAPI document, without a running module (`studyhall openapi`).
    pub api: fn() -> OpenApi,
    /// Paths it also answers under a second spelling (see [`Plugin::aliases`]).
    pub aliases: &'static [(&'static str, &'static str)],
    /// The job kinds it enqueues, each with its handler; a worker runs them.
    pub jobs: fn(&mut Handlers),
    /// Builds the module on the core with its settings.
    pub start: fn(&Core, &S) -> anyhow::Result<Module>,
}

/// A module as the binary lists it: its [`Definition`] with the settings it starts
/// with picked out of the server's.
pub struct Plugin {
    /// Its name in `--modules` and in logs.
    pub name: &'static str,
    /// Its routes' OpenAPI document, without a running module (`studyhall openapi`).
    pub api: fn() -> OpenApi,
    /// Paths it also answers under a second spelling (`/api/events/` beside
    /// `/api/events`), routed by the module and listed in the document.
    pub aliases: &'static [(&'static str, &'static str)],
    /// The job kinds it enqueues, each with its handler; a worker runs them.
    pub jobs: fn(&mut Handlers),
    /// Builds the module on the core with its settings picked out of `settings`. What
    /// it adds to the console ([`Core::console`]) reaches the console, listed last.
    pub start: fn(&Core, &ServeSettings) -> anyhow::Result<Module>,
}

/// No job kinds.
pub fn no_jobs(_: &mut Handlers) {}

/// A running module.
pub struct Module {
    /// Its routes, each declared once with its OpenAPI path.
    pub routes: OpenApiRouter,
    pub tasks: Tasks,
}

impl Module {
    pub fn new(routes: OpenApiRouter) -> Module {
        Module {
            routes,
            tasks: Tasks::default(),
        }
    }

    /// Adds a task that writes what requests handed it and ends once the routes are
    /// dropped and its queue is drained.
    pub fn with_writer(mut self, writer: impl IntoIterator<Item = JoinHandle<()>>) -> Module {
        self.tasks.writer(writer);
        self
    }

    /// Adds a periodic task that holds nothing worth flushing.
    pub fn with_housekeeping(mut self, task: JoinHandle<()>) -> Module {
        self.tasks.housekeeping(task);
        self
    }
}

/// Background tasks, by how they stop (see [`Tasks::stop`]).
#[derive(Default)]
pub struct Tasks {
    writers: Vec<JoinHandle<()>>,
    housekeeping: Vec<JoinHandle<()>>,
    /// The job worker, with the switch that asks it to stop after its current batch.
    worker: Option<(tokio::sync::watch::Sender<bool>, JoinHandle<()>)>,
}

impl Tasks {
    pub fn extend(&mut self, other: Tasks) {
        self.writers.extend(other.writers);
        self.housekeeping.extend(other.housekeeping);
        if other.worker.is_some() {
            self.worker = other.worker;
        }
    }

    pub fn housekeeping(&mut self, task: JoinHandle<()>) {
        self.housekeeping.push(task);
    }

    /// The tasks every process that writes runs beside its work: the metrics upkeep,
    /// and on SQLite the WAL checkpointer.
    pub fn upkeep(db: &Db) -> Tasks {
        let mut tasks = Tasks::default();
        tasks.housekeeping(studyhall_core::http::telemetry::spawn_metrics_upkeep());
        tasks.housekeeping.extend(db.checkpointer());
        tasks
    }

    pub fn writer(&mut self, tasks: impl IntoIterator<Item = JoinHandle<()>>) {
        self.writers.extend(tasks);
    }

    pub fn worker(&mut self, stop: tokio::sync::watch::Sender<bool>, task: JoinHandle<()>) {
        self.worker = Some((stop, task));
    }

    /// Stops every task, once the server has stopped accepting requests and finished
    /// the ones in flight (so nothing new reaches a writer). The order:
    /// 1. housekeeping stops at once: it holds nothing;
    /// 2. the job worker finishes its current batch and stops (its queue handle is the
    ///    last user of the job enqueuer);
    /// 3. the writers drain: each commits what requests handed it and ends when its
    ///    queue is empty and every handle to it is gone (the routes were dropped, and
    ///    the worker in step 2).
    ///
    /// Only then may the database close.
    pub async fn stop(self) {
        for task in self.housekeeping {
            task.abort();
        }
        if let Some((stop, worker)) = self.worker {
            let _ = stop.send(true);
            if let Err(err) = worker.await {
                tracing::error!(error = %err, "the job worker ended abnormally");
            }
        }
        for task in self.writers {
            if let Err(err) = task.await {
                tracing::error!(error = %err, "a background writer ended abnormally");
            }
        }
    }
}
