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
/// `STUDYHALL_TEST_POSTGRES_URL` is set.
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
        $crate::backend_tests! {
            redis, redis_with;
            cfg_attr(not(redis_tests), ignore = "needs STUDYHALL_TEST_REDIS_URL (not set when the tests were built)");
            $(async fn $name($app, $configure) $body)*
        }
    };
}

/// SQLite and PostgreSQL, each test with its own `configure`.
#[macro_export]
macro_rules! on_every_backend_each {
    ($(async fn $name:ident($app:ident, $configure:expr) $body:block)*) => {
        $crate::backend_tests! { sqlite, sqlite_on; doc = "SQLite needs nothing: always runs."; $(async fn $name($app, $configure) $body)* }
        $crate::backend_tests! {
            postgres, postgres_with;
            cfg_attr(not(postgres_tests), ignore = "needs STUDYHALL_TEST_POSTGRES_URL (not set when the tests were built)");
            $(async fn $name($app, $configure) $body)*
        }
    };
}

/// A module `$module` of tests, each on an app `TestApp::$start(configure)` gives (none:
/// the backend is not configured, and the test returns), with `$skip` on each: the
/// attribute that ignores them when the backend was not configured at build time.
#[macro_export]
macro_rules! backend_tests {
    ($module:ident, $start:ident; $skip:meta; $(async fn $name:ident($app:ident, $configure:expr) $body:block)*) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[$skip]
                async fn $name() {
                    let Some($app) = $crate::helpers::TestApp::$start($configure).await else { return };
                    $body
                    $app.stop().await;
                }
            )*
        }
    };
}

/// A test URL from the environment, or `None` to skip; CI must run every backend, so
/// there a missing URL fails the test instead.
/// The path of a file in `tests/fixtures`.
pub fn fixture_path(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

pub fn test_url(variable: &str) -> Option<String> {
    match std::env::var(variable) {
        Ok(url) => Some(url),
        Err(_) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but {variable} is not: those tests would be skipped"
            );
            None
        }
    }
}

pub struct TestApp {
    pub address: String,
    pub client: Client,
    pub database_url: DatabaseUrl,
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

    /// `sqlite_with`, in the shape of the backends that may be missing.
    pub async fn sqlite_on(configure: impl FnOnce(&mut ServeSettings)) -> Option<TestApp> {
        Some(TestApp::sqlite_with(configure).await)
    }

    /// A server on a fresh PostgreSQL database, or `None` when no server is configured.
    pub async fn postgres_with(configure: impl FnOnce(&mut ServeSettings)) -> Option<TestApp> {
        let (url, database) = TestDatabase::postgres().await?;
        Some(TestApp::spawn(url, database, configure).await)
    }

    /// A server on this PostgreSQL URL (a database some other `TestApp` owns).
    pub async fn postgres_url_with(
        url: DatabaseUrl,
        configure: impl FnOnce(&mut ServeSettings),
    ) -> TestApp {
        TestApp::spawn(url, TestDatabase::Borrowed, configure).await
    }

    /// A server keeping stream leases in Redis (`STUDYHALL_TEST_REDIS_URL`).
    pub async fn redis_with(configure: impl FnOnce(&mut ServeSettings)) -> Option<TestApp> {
        let redis = test_url("STUDYHALL_TEST_REDIS_URL")?;
        let (url, database) = TestDatabase::sqlite();
        let app = TestApp::spawn(url, database, |settings| {
            settings.redis_url = Some(redis.parse().expect("redis url"));
            settings.streams.streams_backend = StreamsBackend::Redis;
            configure(settings);
        });
        Some(app.await)
    }

    async fn spawn(
        database_url: DatabaseUrl,
        database: TestDatabase,
        configure: impl FnOnce(&mut ServeSettings),
    ) -> TestApp {
        let mut settings = ServeSettings::new(database_url.clone());
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
    Postgres {
        admin_url: String,
        name: String,
    },
}

impl TestDatabase {
    /// A SQLite file in a fresh temporary directory.
    pub fn sqlite() -> (DatabaseUrl, TestDatabase) {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("studyhall.db").display());
        (url.parse().expect("sqlite url"), TestDatabase::Sqlite(dir))
    }

    /// A fresh PostgreSQL database, dropped with the value; `None` without a server.
    pub async fn postgres() -> Option<(DatabaseUrl, TestDatabase)> {
        let admin_url = test_url("STUDYHALL_TEST_POSTGRES_URL")?;
        let name = format!("studyhall_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .expect("connect to STUDYHALL_TEST_POSTGRES_URL");
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create test database");
        admin.close().await.ok();
        let url = with_database(&admin_url, &name);
        Some((
            url.parse().expect("postgres url"),
            TestDatabase::Postgres { admin_url, name },
        ))
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let TestDatabase::Postgres { admin_url, name } = self else {
            return;
        };
        let (admin_url, name) = (admin_url.clone(), name.clone());
        // Drop runs inside the test's runtime; a database round trip needs its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&admin_url).await?;
                admin
                    .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                    .await?;
                admin.close().await
            })?;
            Ok::<_, anyhow::Error>(())
        })
        .join();
        if let Ok(Err(err)) = dropped {
            eprintln!("could not drop test database: {err:#}");
        }
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
