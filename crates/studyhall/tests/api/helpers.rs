//! `TestApp`: a real server on a port-0 listener over a fresh database, and typed
//! request helpers. Every behaviour test runs on SQLite, and on PostgreSQL when
//! `STUDYHALL_TEST_POSTGRES_URL` is set (each test in a database of its own).

use reqwest::{Client, Response};
use serde_json::Value;
use sqlx::{Connection, Executor, PgConnection};
use studyhall::config::{ServeSettings, StreamsBackend};
use studyhall::sensitive::DatabaseUrl;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Runs each test once per backend: `mod sqlite` always, `mod postgres` when
/// `STUDYHALL_TEST_POSTGRES_URL` is set when the tests run (otherwise listed as ignored).
#[macro_export]
macro_rules! on_every_backend {
    ($($tests:tt)*) => {
        $crate::on_every_backend_with! { |_| {}; $($tests)* }
    };
}

/// `on_every_backend!` with `configure` applied to every app's settings.
#[macro_export]
macro_rules! on_every_backend_with {
    ($configure:expr; $(async fn $name:ident($app:ident) $body:block)*) => {
        $crate::on_every_backend_each! { $(async fn $name($app, $configure) $body)* }
    };
}

/// Like `on_every_backend!`, for the stream limiter: SQLite, PostgreSQL and Redis
/// (leases in Redis, everything else in SQLite), each with `configure` applied to the
/// settings.
#[macro_export]
macro_rules! on_every_stream_backend {
    ($(async fn $name:ident($app:ident, $configure:expr) $body:block)*) => {
        $crate::on_every_backend_each! { $(async fn $name($app, $configure) $body)* }
        $crate::backend_tests! { redis, redis_with; [Redis]; $(async fn $name($app, $configure) $body)* }
    };
}

/// SQLite and PostgreSQL, each test with its own `configure`.
#[macro_export]
macro_rules! on_every_backend_each {
    ($(async fn $name:ident($app:ident, $configure:expr) $body:block)*) => {
        $crate::backend_tests! { sqlite, sqlite_with; []; $(async fn $name($app, $configure) $body)* }
        $crate::backend_tests! { postgres, postgres_with; [Postgres]; $(async fn $name($app, $configure) $body)* }
    };
}

/// A module `$module` of tests, each on an app `TestApp::$start(configure)` gives, and
/// each needing `$need` besides SQLite.
#[macro_export]
macro_rules! backend_tests {
    ($module:ident, $start:ident; $needs:tt; $(async fn $name:ident($app:ident, $configure:expr) $body:block)*) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                async fn $name() {
                    #[allow(unused_mut)]
                    let mut $app = $crate::helpers::TestApp::$start($configure).await;
                    $body
                    $app.stop().await;
                }
                $crate::case!($name, needs = $needs);
            )*
        }
    };
}

/// Registers `async fn $name()` as a test, listed as ignored when what it `needs` is
/// missing when the tests run.
#[macro_export]
macro_rules! case {
    ($name:ident) => {
        $crate::case!($name, needs = []);
    };
    ($name:ident, needs = [$($need:ident),*]) => {
        inventory::submit! {
            $crate::helpers::Case {
                module: module_path!(),
                name: stringify!($name),
                needs: &[$($crate::helpers::Need::$need),*],
                run: || Box::pin($name()),
            }
        }
    };
}

/// One registered test.
pub struct Case {
    pub module: &'static str,
    pub name: &'static str,
    pub needs: &'static [Need],
    pub run: fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>,
}

inventory::collect!(Case);

/// The test groups that run alone, one test at a time, with nothing beside them: they
/// kill processes, saturate both cores, take databases away or drive a browser, and
/// nothing timing-sensitive should share the machine with them.
const ALONE: [&str; 9] = [
    "browser",
    "contention",
    "outage",
    "process::audit",
    "process::durability",
    "process::instances",
    "process::redis_outage",
    "process::workers",
    "writers",
];

impl Case {
    /// The test's name as `cargo test` filters it: `events::sqlite::lists_oldest_first`.
    pub fn path(&self) -> String {
        let module = self.module.split_once("::").map_or("", |(_, rest)| rest);
        match module {
            "" => self.name.to_owned(),
            module => format!("{module}::{}", self.name),
        }
    }

    pub fn alone(&self) -> bool {
        let path = self.path();
        ALONE
            .iter()
            .any(|group| path.starts_with(&format!("{group}::")))
    }

    /// Why this test cannot run on this machine now, if it cannot.
    pub fn missing(&self) -> Option<String> {
        self.needs.iter().find_map(|need| need.missing())
    }

    /// Runs the test on a runtime of its own, alone when it must be.
    pub fn run(&self) -> Result<(), libtest_mimic::Failed> {
        static TURN: std::sync::RwLock<()> = std::sync::RwLock::new(());
        let (_alone, _shared);
        if self.alone() {
            _alone = TURN
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        } else {
            _shared = TURN
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|err| format!("test runtime: {err}"))?;
        let started = std::time::Instant::now();
        let group = self
            .path()
            .split("::")
            .next()
            .unwrap_or_default()
            .to_owned();
        runtime.block_on(GROUP.scope(group, (self.run)()));
        let took = started.elapsed();
        if took > SLOW {
            eprintln!("slow: {} took {:.1} s", self.path(), took.as_secs_f64());
        }
        Ok(())
    }
}

tokio::task_local! {
    /// The running test's group: the first part of its path (`events`, `queue`, …).
    static GROUP: String;
}

/// The modules a test server of the running test starts when its settings name none:
/// a test of one module (its group is the module's name) gets that module and the
/// events module, the audit log's face, which tests read records through; any other
/// test gets every module.
fn lean_modules() -> Vec<String> {
    let group = GROUP.try_with(String::clone).unwrap_or_default();
    let module = studyhall::MODULES
        .iter()
        .find(|plugin| plugin.name == group && plugin.name != "console");
    match module {
        Some(plugin) => std::iter::once(plugin.name)
            .chain((plugin.name != "events").then_some("events"))
            .map(str::to_owned)
            .collect(),
        None => Vec::new(),
    }
}

/// A test that takes longer says so, to be made faster.
const SLOW: std::time::Duration = std::time::Duration::from_secs(5);

/// What a test may need besides SQLite; each is decided when the tests run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    Postgres,
    /// PostgreSQL whose server offers TLS (`ssl = on`), to observe connections use it.
    PostgresTls,
    Redis,
    Browser,
}

impl Need {
    pub const ALL: [Need; 4] = [
        Need::Postgres,
        Need::PostgresTls,
        Need::Redis,
        Need::Browser,
    ];

    /// Why it is missing, or `None` when it is there. Under `CI` the databases are never
    /// missing: a test whose database is absent there runs, and fails saying what it
    /// needs. The browser is found on the `PATH`; `STUDYHALL_TEST_BROWSER=required`
    /// runs its test even when it is not there, so that its absence fails.
    pub fn missing(self) -> Option<String> {
        match self {
            Need::Postgres | Need::Redis => {
                let variable = self.variable();
                let set = std::env::var(variable).is_ok_and(|value| !value.is_empty());
                (!set && std::env::var_os("CI").is_none()).then(|| format!("{variable} is not set"))
            }
            Need::PostgresTls => Need::Postgres.missing().or_else(postgres_tls_off),
            Need::Browser => {
                let required =
                    std::env::var("STUDYHALL_TEST_BROWSER").is_ok_and(|value| value == "required");
                let found = ["chromedriver"].iter().all(|tool| on_path(tool))
                    && ["chromium", "chromium-browser", "google-chrome"]
                        .iter()
                        .any(|tool| on_path(tool));
                (!required && !found).then(|| {
                    "chromium and chromedriver are not on the PATH (apt-get install chromium chromium-driver)".to_owned()
                })
            }
        }
    }

    pub fn variable(self) -> &'static str {
        match self {
            Need::Postgres | Need::PostgresTls => "STUDYHALL_TEST_POSTGRES_URL",
            Need::Redis => "STUDYHALL_TEST_REDIS_URL",
            Need::Browser => "STUDYHALL_TEST_BROWSER",
        }
    }
}

/// Why the test PostgreSQL server cannot show TLS in use, asked once: `Some` when it has
/// TLS off. A server that cannot be reached is not a reason: its tests run and fail.
fn postgres_tls_off() -> Option<String> {
    static OFF: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    OFF.get_or_init(|| {
        use sqlx::Connection;
        let url = std::env::var("STUDYHALL_TEST_POSTGRES_URL").ok()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        let ssl: String = runtime.block_on(async {
            let mut connection = sqlx::PgConnection::connect(&url).await.ok()?;
            sqlx::query_scalar("SHOW ssl")
                .fetch_one(&mut connection)
                .await
                .ok()
        })?;
        (ssl != "on").then(|| {
            "the PostgreSQL server of STUDYHALL_TEST_POSTGRES_URL has TLS off (ssl = off)"
                .to_owned()
        })
    })
    .clone()
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
}

/// The path of a file in `tests/fixtures`.
pub fn fixture_path(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A test URL from the environment. A test that asks for one runs only when it is set
/// (it is listed as ignored otherwise), except under `CI`, where its absence fails the
/// test here instead of letting it be skipped.
pub fn test_url(variable: &str) -> String {
    match std::env::var(variable) {
        Ok(url) if !url.is_empty() => url,
        _ => panic!("this test needs {variable}, which is not set"),
    }
}

pub struct TestApp {
    pub address: String,
    pub client: Client,
    pub database_url: DatabaseUrl,
    /// Moves the server's clock: leases, retention, checkpoints and backoff without
    /// waiting.
    pub clock: studyhall::clock::Hand,
    /// Where its profile images are stored.
    pub images: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    _database: TestDatabase,
}

impl TestApp {
    pub async fn sqlite() -> TestApp {
        TestApp::sqlite_with(|_| {}).await
    }

    pub async fn sqlite_with(configure: impl FnOnce(&mut ServeSettings)) -> TestApp {
        let (url, database) = TestDatabase::sqlite();
        TestApp::spawn(url, database, configure).await
    }

    /// A server on a fresh PostgreSQL database (`STUDYHALL_TEST_POSTGRES_URL`).
    pub async fn postgres_with(configure: impl FnOnce(&mut ServeSettings)) -> TestApp {
        let (url, database) = TestDatabase::postgres().await;
        TestApp::spawn(url, database, configure).await
    }

    /// A server on this PostgreSQL URL (a database some other `TestApp` owns).
    pub async fn postgres_url_with(
        url: DatabaseUrl,
        configure: impl FnOnce(&mut ServeSettings),
    ) -> TestApp {
        TestApp::spawn(url, TestDatabase::Borrowed, configure).await
    }

    /// A server keeping stream leases in Redis (`STUDYHALL_TEST_REDIS_URL`).
    pub async fn redis_with(configure: impl FnOnce(&mut ServeSettings)) -> TestApp {
        let redis = test_url("STUDYHALL_TEST_REDIS_URL");
        let (url, database) = TestDatabase::sqlite();
        let app = TestApp::spawn(url, database, |settings| {
            settings.redis_url = Some(redis.parse().expect("redis url"));
            settings.streams.streams_backend = StreamsBackend::Redis;
            configure(settings);
        });
        app.await
    }

    async fn spawn(
        database_url: DatabaseUrl,
        database: TestDatabase,
        configure: impl FnOnce(&mut ServeSettings),
    ) -> TestApp {
        let mut settings = ServeSettings::new(database_url.clone());
        let (clock, hand) = studyhall::clock::Clock::adjustable();
        settings.clock = clock;
        settings.modules = lean_modules();
        let images = tempfile::tempdir().expect("an images folder");
        settings.images.images_dir = Some(images.path().to_owned());
        configure(&mut settings);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let address = format!("http://{}", listener.local_addr().expect("local addr"));
        let app = studyhall::build_app(&settings).await.expect("build app");
        let (shutdown, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(studyhall::serve(listener, app, async {
            stopped.await.ok();
        }));
        let client = Client::builder().no_proxy().build().expect("http client");
        TestApp {
            address,
            client,
            database_url,
            clock: hand,
            images,
            shutdown: Some(shutdown),
            server: Some(server),
            _database: database,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.expect("GET")
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("POST")
    }

    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> Response {
        self.client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("POST")
    }

    /// Stops the server the way SIGTERM does and waits for it to flush.
    pub async fn stop(mut self) {
        self.stop_server().await;
    }

    async fn stop_server(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server stopped cleanly");
        }
    }

    /// Stops the server and starts a new one on the same database, as a restart does:
    /// nothing the old process held in memory survives.
    pub async fn restart(&mut self, configure: impl FnOnce(&mut ServeSettings)) {
        self.stop_server().await;
        let database = std::mem::replace(&mut self._database, TestDatabase::Borrowed);
        *self = TestApp::spawn(self.database_url.clone(), database, configure).await;
    }
}

/// The status and JSON body of a response.
pub async fn json(response: Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let value =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
    (status, value)
}

fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let root = match base.rfind('/') {
        Some(slash) if slash > base.find("://").map_or(0, |i| i + 2) => &base[..slash],
        _ => base,
    };
    match query {
        Some(query) => format!("{root}/{name}?{query}"),
        None => format!("{root}/{name}"),
    }
}

pub enum TestDatabase {
    /// Owned by someone else; nothing to remove.
    Borrowed,
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    /// Dropped in the background once the test is done with it.
    Postgres(String),
}

impl TestDatabase {
    /// A SQLite file in a fresh temporary directory.
    pub fn sqlite() -> (DatabaseUrl, TestDatabase) {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("studyhall.db").display());
        (url.parse().expect("sqlite url"), TestDatabase::Sqlite(dir))
    }

    /// A fresh PostgreSQL database, copied from the run's migrated template (tens of
    /// milliseconds, where creating and migrating one takes seconds on a busy machine).
    /// Dropping a database waits for a checkpoint, so no test waits for it: one thread
    /// drops them in the background as tests finish (`Dropper`).
    pub async fn postgres() -> (DatabaseUrl, TestDatabase) {
        let admin_url = test_url("STUDYHALL_TEST_POSTGRES_URL");
        let template = TEMPLATE.get_or_init(|| migrated_template(&admin_url)).await;
        let name = format!(
            "{TEST_DATABASE_PREFIX}{}_{}",
            run_started(),
            uuid::Uuid::new_v4().simple()
        );
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .expect("connect to STUDYHALL_TEST_POSTGRES_URL");
        // A template of an earlier run may still take connections (and autovacuum's).
        for attempt in 1.. {
            let created = admin
                .execute(format!("CREATE DATABASE {name} TEMPLATE {template}").as_str())
                .await;
            match created {
                Ok(_) => break,
                Err(err) if attempt >= 100 => panic!("create test database: {err}"),
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        }
        admin.close().await.ok();
        let url = with_database(&admin_url, &name);
        (
            url.parse().expect("postgres url"),
            TestDatabase::Postgres(name),
        )
    }
}

const TEST_DATABASE_PREFIX: &str = "studyhall_test_";
const TEMPLATE_PREFIX: &str = "studyhall_template_";
/// Databases a run left (it died, or its drops had not caught up when it ended) are
/// dropped by a later run once they are this old.
const STALE_AFTER_SECS: u64 = 30 * 60;
/// How long the end of a run waits for the drops to catch up. On a machine whose CPUs
/// are saturated a drop can take a second (it waits for a checkpoint); what is left
/// then is dropped by a later run.
const DROPS_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

static TEMPLATE: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let TestDatabase::Postgres(name) = self {
            Dropper::drop_later(std::mem::take(name));
        }
    }
}

/// The thread that drops the run's PostgreSQL databases, one after another, while the
/// other tests run.
struct Dropper {
    names: std::sync::mpsc::Sender<String>,
    thread: std::thread::JoinHandle<()>,
    /// How many names were sent and are not dropped yet.
    pending: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

static DROPPER: std::sync::Mutex<Option<Dropper>> = std::sync::Mutex::new(None);

impl Dropper {
    fn drop_later(name: String) {
        let mut dropper = DROPPER
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let dropper = dropper.get_or_insert_with(|| {
            let (names, queue) = std::sync::mpsc::channel::<String>();
            let pending = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let left = pending.clone();
            let thread = std::thread::spawn(move || Dropper::run(queue, &left));
            Dropper {
                names,
                thread,
                pending,
            }
        });
        dropper
            .pending
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        dropper.names.send(name).ok();
    }

    fn run(queue: std::sync::mpsc::Receiver<String>, pending: &std::sync::atomic::AtomicUsize) {
        let Ok(admin_url) = std::env::var("STUDYHALL_TEST_POSTGRES_URL") else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        let mut admin = None;
        while let Ok(name) = queue.recv() {
            runtime.block_on(async {
                if admin.is_none() {
                    match PgConnection::connect(&admin_url).await {
                        Ok(connection) => admin = Some(connection),
                        Err(err) => eprintln!("could not drop test database {name}: {err}"),
                    }
                }
                if let Some(admin) = admin.as_mut() {
                    drop_database(admin, &name).await;
                }
            });
            pending.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// When this run started, in Unix seconds: part of each database's name, so that a
/// later run can tell a dead run's databases from a live one's.
fn run_started() -> u64 {
    static STARTED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *STARTED.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs())
    })
}

/// The template database for the migrations in this tree, named by their digest: made
/// once (under an advisory lock, so concurrent runs make it once between them) and
/// reused by every later run until a migration changes. Each run notes on its template
/// when it last used it; templates of other migration sets unused for half an hour (a
/// run of another tree may be using its own right now) and databases of runs that died
/// long ago are dropped here.
async fn migrated_template(admin_url: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut files: Vec<_> = std::fs::read_dir(format!(
        "{}/../core/migrations/postgres",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("migrations directory")
    .map(|entry| entry.expect("migration file").path())
    .collect();
    files.sort();
    let mut digest = Sha256::new();
    for file in &files {
        digest.update(file.file_name().expect("file name").as_encoded_bytes());
        digest.update(std::fs::read(file).expect("read migration"));
    }
    let digest: String = digest
        .finalize()
        .iter()
        .take(8)
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let name = format!("{TEMPLATE_PREFIX}{digest}");

    let mut admin = PgConnection::connect(admin_url)
        .await
        .expect("connect to STUDYHALL_TEST_POSTGRES_URL");
    admin
        .execute("SELECT pg_advisory_lock(736251)")
        .await
        .expect("take the template lock");
    let listed: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database")
            .fetch_all(&mut admin)
            .await
            .expect("list databases");
    let databases: Vec<String> = listed.iter().map(|(name, _)| name.clone()).collect();
    let stale_before = run_started().saturating_sub(STALE_AFTER_SECS);
    let old = |stamp: Option<&str>| {
        stamp
            .and_then(|stamp| stamp.parse::<u64>().ok())
            .is_none_or(|stamp| stamp < stale_before)
    };
    for (database, used) in &listed {
        let stale = if let Some(rest) = database.strip_prefix(TEST_DATABASE_PREFIX) {
            old(rest.split('_').next())
        } else {
            database.starts_with(TEMPLATE_PREFIX) && *database != name && old(used.as_deref())
        };
        if stale {
            drop_database(&mut admin, database).await;
        }
    }
    if !databases.contains(&name) {
        let building = format!("{name}_building");
        drop_database(&mut admin, &building).await;
        admin
            .execute(format!("CREATE DATABASE {building}").as_str())
            .await
            .expect("create the template database");
        let url: DatabaseUrl = with_database(admin_url, &building)
            .parse()
            .expect("template url");
        let db = studyhall::db::Db::connect(&url, 1)
            .await
            .expect("connect to the template");
        db.migrate().await.expect("migrate the template");
        db.close().await;
        // Renaming (and copying) a database needs every other session gone: a closed
        // connection's server process may linger a moment, and autovacuum may visit a
        // new database. No one else has a use for it (the lock above is held).
        for attempt in 1.. {
            sqlx::query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
            )
            .bind(&building)
            .execute(&mut admin)
            .await
            .expect("end the template's other sessions");
            let renamed = admin
                .execute(format!("ALTER DATABASE {building} RENAME TO {name}").as_str())
                .await;
            match renamed {
                Ok(_) => {
                    // Nothing connects to the template again, autovacuum included,
                    // so copying it never finds it in use.
                    admin
                        .execute(
                            format!("ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false").as_str(),
                        )
                        .await
                        .expect("close the template to connections");
                    break;
                }
                Err(err) if attempt >= 200 => panic!("name the template: {err}"),
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        }
    }
    admin
        .execute(format!("COMMENT ON DATABASE {name} IS '{}'", run_started()).as_str())
        .await
        .expect("note when the template was used");
    admin
        .execute("SELECT pg_advisory_unlock(736251)")
        .await
        .expect("release the template lock");
    admin.close().await.ok();
    name
}

async fn drop_database(admin: &mut PgConnection, name: &str) {
    if let Err(err) = admin
        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
        .await
    {
        eprintln!("could not drop test database {name}: {err}");
    }
}

/// Waits, for `DROPS_WAIT` at most, until every database this run made is dropped;
/// called once, when the run is over.
pub fn drop_test_databases() {
    let dropper = DROPPER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    let Some(Dropper {
        names,
        thread,
        pending,
    }) = dropper
    else {
        return;
    };
    let started = std::time::Instant::now();
    drop(names);
    while !thread.is_finished() && started.elapsed() < DROPS_WAIT {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let left = pending.load(std::sync::atomic::Ordering::SeqCst);
    if thread.is_finished() {
        eprintln!(
            "the last test databases were dropped {:.1} s after the run",
            started.elapsed().as_secs_f64()
        );
    } else {
        eprintln!("{left} test databases are left for a later run to drop (the machine is busy)");
    }
}

/// An hs256 token signed with `secret` for `sub` (e-mail `sub@example.com`, expiring in
/// 2100) whose claims add `extra` (a `scope`, `cognito:groups`…).
pub fn token_with(secret: &str, sub: &str, extra: Value) -> String {
    let mut claims = serde_json::json!({"sub": sub, "email": format!("{sub}@example.com"), "exp": 4_102_444_800i64});
    if let (Value::Object(claims), Value::Object(extra)) = (&mut claims, extra) {
        claims.extend(extra);
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}
