//! The database handle: SQLite or PostgreSQL, chosen once from the URL scheme. Each
//! module's store matches on it to pick its backend implementation.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, PgPool, SqlitePool};

use crate::sensitive::DatabaseUrl;

/// A transaction on either backend.
pub enum Tx {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl Tx {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await,
            Tx::Postgres(tx) => tx.commit().await,
        }
    }
}

#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Db {
    pub async fn connect(url: &DatabaseUrl, max_connections: u32) -> anyhow::Result<Db> {
        if url.is_sqlite() {
            // Create the file ourselves first: SQLite says only "unable to open database
            // file", where the operating system says why, and of which path.
            if let Some(file) = url.sqlite_file().filter(|file| !file.exists()) {
                let absolute = std::path::absolute(&file).unwrap_or_else(|_| file.clone());
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&file)
                    .with_context(|| {
                        format!("cannot create the SQLite database {}", absolute.display())
                    })?;
            }
            let options = SqliteConnectOptions::from_str(url.expose())
                .with_context(|| format!("invalid SQLite URL {url}"))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // FULL: a commit is on disk before it is acknowledged. Group commit keeps
                // this to one fsync per batch rather than one per request.
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
                // 1 MiB of page cache per connection (SQLite's default is 2 MiB): the
                // operating system caches the file too, and memory stays small and bounded.
                .pragma("cache_size", "-1024");
            let pool = SqlitePoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await
                .with_context(|| format!("cannot open SQLite database {url}"))?;
            Ok(Db::Sqlite(pool))
        } else {
            let options = PgConnectOptions::from_str(url.expose())
                .with_context(|| format!("invalid PostgreSQL URL {url}"))?;
            // One connection first, so that an unreachable server is reported at once
            // with its own words (connection refused, unknown host, bad password).
            let probe = tokio::time::timeout(Duration::from_secs(10), options.connect())
                .await
                .map_err(|_| anyhow::anyhow!("no answer within 10 s"))
                .and_then(|connected| connected.map_err(anyhow::Error::from))
                .with_context(|| format!("cannot connect to PostgreSQL at {url}"))?;
            probe.close().await.ok();
            // A database that cannot be reached is a 503 within about 2 s, not a request
            // held for the pool's patience.
            let pool = PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(Duration::from_secs(2))
                .connect_with(options)
                .await
                .with_context(|| format!("cannot connect to PostgreSQL at {url}"))?;
            Ok(Db::Postgres(pool))
        }
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        match self {
            Db::Sqlite(pool) => sqlx::migrate!("./migrations/sqlite").run(pool).await,
            Db::Postgres(pool) => sqlx::migrate!("./migrations/postgres").run(pool).await,
        }
        .context("applying database migrations")
    }

    /// A round trip to the database, for `/ready`.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        match self {
            Db::Sqlite(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop),
            Db::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop),
        }
    }

    pub async fn close(&self) {
        match self {
            Db::Sqlite(pool) => pool.close().await,
            Db::Postgres(pool) => pool.close().await,
        }
    }

    /// Begins a write transaction (SQLite: `BEGIN IMMEDIATE`, taking the write lock up front).
    pub async fn begin_write(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            Db::Sqlite(pool) => Tx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?),
            Db::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        })
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }
}
