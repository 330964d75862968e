//! The database handle: SQLite or PostgreSQL, chosen once from the URL scheme. Each
//! module's store matches on it to pick its backend implementation.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, PgPool, SqliteConnection, SqlitePool};

use crate::dialect::Dialect;
use crate::sensitive::DatabaseUrl;

const MIB: u64 = 1024 * 1024;

/// `--sqlite-memory-mib`'s default.
pub const DEFAULT_SQLITE_MEMORY_MIB: u64 = 1024;

/// How a SQLite database spends its memory budget.
///
/// Mapped pages are read in place from the operating system's page cache, shared by
/// every connection, without a system call or a copy per page; a file read through
/// small private caches instead spends its reads in `pread` once it outgrows them. So
/// the mapping comes first: the whole file and room for it to double, up to the budget
/// (and at least 64 MiB, so a new database need not reopen to grow). What the mapping
/// leaves is shared out as the connections' page caches, which serve the pages that are
/// still in the WAL and whatever lies beyond the mapping: each 2 MiB (SQLite's default)
/// to 16 MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqliteMemory {
    pub mmap_bytes: u64,
    /// Per connection, in KiB (a negative `cache_size`).
    pub cache_kib: u64,
}

impl SqliteMemory {
    pub fn plan(file_size: u64, budget: u64, connections: u32) -> SqliteMemory {
        let wanted = file_size.saturating_mul(2).max(64 * MIB);
        let mmap_bytes = wanted.min(budget);
        let left = budget - mmap_bytes;
        let cache = (left / u64::from(connections.max(1))).clamp(2 * MIB, 16 * MIB);
        SqliteMemory {
            mmap_bytes,
            cache_kib: cache / 1024,
        }
    }
}

/// A transaction on either backend.
pub enum Tx {
    Sqlite(SqliteTx),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl Tx {
    pub fn dialect(&self) -> Dialect {
        match self {
            Tx::Sqlite(_) => Dialect::Sqlite,
            Tx::Postgres(_) => Dialect::Postgres,
        }
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await,
            Tx::Postgres(tx) => tx.commit().await,
        }
    }
}

#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(SqliteDb),
    Postgres(PgPool),
}

/// A SQLite database: its pool, and the turn its writers take.
///
/// SQLite lets one transaction write at a time. Writers of one process that met at
/// SQLite's lock would wait in its busy handler, which sleeps and polls (up to 100 ms
/// a turn), so a writer behind another could wait far longer than the other took.
/// Writers here queue for their turn on a fair async lock instead, and each begins as
/// soon as the one before it has committed. (Other processes on the same file still
/// meet at SQLite's lock and its busy timeout.)
#[derive(Clone, Debug)]
pub struct SqliteDb {
    pub pool: SqlitePool,
    pub(crate) turn: Arc<tokio::sync::Mutex<()>>,
}

impl SqliteDb {
    pub fn new(pool: SqlitePool) -> SqliteDb {
        SqliteDb {
            pool,
            turn: Arc::default(),
        }
    }

    /// Waits for this process's turn to write, then begins `BEGIN IMMEDIATE` (taking
    /// SQLite's write lock up front, so a read-then-write never has to upgrade).
    pub async fn begin_write(&self) -> Result<SqliteTx, sqlx::Error> {
        let turn = self.turn.clone().lock_owned().await;
        let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        Ok(SqliteTx { tx, _turn: turn })
    }
}

/// A SQLite write transaction, holding its process's turn to write until it ends.
pub struct SqliteTx {
    tx: sqlx::Transaction<'static, sqlx::Sqlite>,
    _turn: tokio::sync::OwnedMutexGuard<()>,
}

impl SqliteTx {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }
}

impl std::ops::Deref for SqliteTx {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for SqliteTx {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.tx
    }
}

impl Db {
    /// Opens the database `settings` name, SQLite within its memory budget.
    pub async fn open(settings: &crate::config::DatabaseSettings) -> anyhow::Result<Db> {
        Db::connect_within(
            &settings.database_url,
            settings.database_max_connections,
            settings.sqlite_memory_mib.saturating_mul(MIB),
        )
        .await
    }

    /// Opens the database at `url`, SQLite within the default memory budget.
    pub async fn connect(url: &DatabaseUrl, max_connections: u32) -> anyhow::Result<Db> {
        Db::connect_within(url, max_connections, DEFAULT_SQLITE_MEMORY_MIB * MIB).await
    }

    async fn connect_within(
        url: &DatabaseUrl,
        max_connections: u32,
        sqlite_memory: u64,
    ) -> anyhow::Result<Db> {
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
            let file_size = url
                .sqlite_file()
                .and_then(|file| std::fs::metadata(file).ok())
                .map_or(0, |metadata| metadata.len());
            let memory = SqliteMemory::plan(file_size, sqlite_memory, max_connections);
            tracing::debug!(?memory, file_size, "SQLite memory");
            let options = SqliteConnectOptions::from_str(url.expose())
                .with_context(|| format!("invalid SQLite URL {url}"))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // FULL: a commit is on disk before it is acknowledged. Group commit keeps
                // this to one fsync per batch rather than one per request.
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
                // Reads through a mapping of the file, and a page cache per connection
                // for the rest, within the memory budget (see `SqliteMemory`).
                .pragma("mmap_size", memory.mmap_bytes.to_string())
                .pragma("cache_size", format!("-{}", memory.cache_kib))
                // No checkpoint in a committing writer's path: by default the commit that
                // grows the WAL past 1000 pages copies it into the database and fsyncs
                // it, and every request in that batch waits. `checkpointer` does it from
                // its own connection instead (a process that runs none, such as
                // `studyhall migrate`, checkpoints when it closes the database).
                .pragma("wal_autocheckpoint", "0")
                // After a checkpoint lets the WAL start over, its file is cut back to
                // this size (bytes) rather than keeping its largest size.
                .pragma("journal_size_limit", "67108864");
            let pool = SqlitePoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await
                .with_context(|| format!("cannot open SQLite database {url}"))?;
            Ok(Db::Sqlite(SqliteDb::new(pool)))
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
            Db::Sqlite(db) => sqlx::migrate!("./migrations/sqlite").run(&db.pool).await,
            Db::Postgres(pool) => sqlx::migrate!("./migrations/postgres").run(pool).await,
        }
        .context("applying database migrations")
    }

    /// A round trip to the database, for `/ready`.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        match self {
            Db::Sqlite(db) => sqlx::query("SELECT 1").execute(&db.pool).await.map(drop),
            Db::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop),
        }
    }

    pub async fn close(&self) {
        match self {
            Db::Sqlite(db) => db.pool.close().await,
            Db::Postgres(pool) => pool.close().await,
        }
    }

    /// Begins a write transaction (SQLite: in this process's turn, `BEGIN IMMEDIATE`;
    /// see [`SqliteDb`]).
    pub async fn begin_write(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            Db::Sqlite(db) => Tx::Sqlite(db.begin_write().await?),
            Db::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        })
    }

    /// On SQLite, the task that copies the WAL into the database from a connection of
    /// its own, so no writer waits for it; `None` on PostgreSQL.
    pub fn checkpointer(&self) -> Option<tokio::task::JoinHandle<()>> {
        match self {
            Db::Sqlite(db) => Some(tokio::spawn(checkpoint_continuously(db.pool.clone()))),
            Db::Postgres(_) => None,
        }
    }

    pub fn dialect(&self) -> Dialect {
        match self {
            Db::Sqlite(_) => Dialect::Sqlite,
            Db::Postgres(_) => Dialect::Postgres,
        }
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }
}

/// How often the checkpointer looks at the WAL while it keeps up.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// What `PRAGMA wal_checkpoint` answers: whether it was kept from finishing, the WAL's
/// frames, and how many of them are in the database now.
#[derive(Debug, sqlx::FromRow)]
struct Checkpoint {
    busy: i64,
    log: i64,
    checkpointed: i64,
}

/// PASSIVE checkpoints, which never wait for a reader or block a writer, for as long
/// as the pool is open. A checkpoint that could not copy everything (readers still on
/// old frames) is simply tried again at the next tick; when one has copied the whole
/// WAL, the next writer starts it over from the beginning.
async fn checkpoint_continuously(pool: SqlitePool) {
    let mut connection: Option<sqlx::SqliteConnection> = None;
    let mut every = tokio::time::interval(CHECKPOINT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !pool.is_closed() {
        every.tick().await;
        let conn = match &mut connection {
            Some(conn) => conn,
            None => match pool.connect_options().connect().await {
                Ok(conn) => connection.insert(conn),
                Err(err) => {
                    tracing::warn!(error = %err, "the WAL checkpointer cannot open the database");
                    continue;
                }
            },
        };
        match sqlx::query_as::<_, Checkpoint>("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&mut *conn)
            .await
        {
            Ok(done) => {
                metrics::gauge!("sqlite_wal_frames").set(done.log as f64);
                metrics::gauge!("sqlite_wal_frames_checkpointed").set(done.checkpointed as f64);
                tracing::trace!(
                    busy = done.busy,
                    log = done.log,
                    checkpointed = done.checkpointed,
                    "checkpoint"
                );
            }
            Err(err) => {
                tracing::warn!(error = %err, "WAL checkpoint failed");
                connection = None;
            }
        }
    }
    if let Some(conn) = connection {
        conn.close().await.ok();
    }
}

#[cfg(test)]
mod tests {
    use super::{SqliteMemory, MIB};

    #[test]
    fn the_mapping_covers_the_file_first_and_caches_take_what_is_left() {
        // A new database: 64 MiB mapped, the rest of 1 GiB over 10 connections, capped.
        let new = SqliteMemory::plan(0, 1024 * MIB, 10);
        assert_eq!(new.mmap_bytes, 64 * MIB);
        assert_eq!(new.cache_kib, 16 * 1024);
        // A 450 MiB file: room to double, 124 MiB left for 10 caches.
        let grown = SqliteMemory::plan(450 * MIB, 1024 * MIB, 10);
        assert_eq!(grown.mmap_bytes, 900 * MIB);
        assert_eq!(grown.cache_kib, 124 * 1024 / 10);
        // Larger than the budget: all of it mapped, each cache at SQLite's default.
        let large = SqliteMemory::plan(5000 * MIB, 1024 * MIB, 10);
        assert_eq!(large.mmap_bytes, 1024 * MIB);
        assert_eq!(large.cache_kib, 2 * 1024);
        // No budget: nothing mapped.
        assert_eq!(SqliteMemory::plan(5000 * MIB, 0, 10).mmap_bytes, 0);
    }
}
