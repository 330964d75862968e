//! `TestApp`: a real server on a port-0 listener over a fresh database, and typed
//! request helpers. Every behaviour test runs on SQLite, and on PostgreSQL when
//! `STUDYHALL_TEST_POSTGRES_URL` is set (each test in a database of its own).

use reqwest::{Client, Response};
use serde_json::Value;
use sqlx::{Connection, Executor, PgConnection};
use studyhall::config::ServeSettings;
use studyhall::db::DatabaseUrl;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Runs each test once per backend: `mod sqlite` always, `mod postgres` when
/// `STUDYHALL_TEST_POSTGRES_URL` is set.
#[macro_export]
macro_rules! on_every_backend {
    ($(async fn $name:ident($app:ident) $body:block)*) => {
        mod sqlite {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let $app = $crate::helpers::TestApp::sqlite().await;
                    $body
                    $app.stop().await;
                }
            )*
        }
        mod postgres {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some($app) = $crate::helpers::TestApp::postgres().await else { return };
                    $body
                    $app.stop().await;
                }
            )*
        }
    };
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
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("studyhall.db").display());
        TestApp::spawn(url.parse().expect("sqlite url"), TestDatabase::Sqlite(dir)).await
    }

    /// A server on a fresh PostgreSQL database, or `None` when no server is configured.
    /// CI must test PostgreSQL, so there a missing URL is a failure, not a skip.
    pub async fn postgres() -> Option<TestApp> {
        let Ok(admin_url) = std::env::var("STUDYHALL_TEST_POSTGRES_URL") else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but STUDYHALL_TEST_POSTGRES_URL is not: PostgreSQL tests would be skipped"
            );
            return None;
        };
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
        Some(
            TestApp::spawn(
                url.parse().expect("postgres url"),
                TestDatabase::Postgres { admin_url, name },
            )
            .await,
        )
    }

    async fn spawn(database_url: DatabaseUrl, database: TestDatabase) -> TestApp {
        let settings = ServeSettings::new(database_url.clone());
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

enum TestDatabase {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, name: String },
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
