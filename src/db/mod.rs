//! Database access: one connection type over SQLite and PostgreSQL, the pool, migrations
//! and the write-transaction helper.

pub mod models;
pub mod schema;

use std::time::Duration;

use anyhow::Context;
use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::prelude::*;
use diesel::r2d2::{CustomizeConnection, ManageConnection, R2D2Connection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// A connection to whichever backend the configured URL names.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Postgresql(diesel::PgConnection),
    Sqlite(diesel::SqliteConnection),
}

/// The pool every request and worker draws from.
pub type Pool = r2d2::Pool<DbManager>;
/// A connection checked out of [`Pool`].
pub type PooledConn = r2d2::PooledConnection<DbManager>;

/// Which backend a database URL selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// Picks the backend from the URL scheme; anything else is refused rather than guessed.
    pub fn from_url(url: &str) -> Option<Backend> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else if url.starts_with("sqlite://") {
            Some(Backend::Sqlite)
        } else {
            None
        }
    }
}

/// The file path of a `sqlite://PATH` URL.
pub fn sqlite_path(url: &str) -> &str {
    url.strip_prefix("sqlite://").unwrap_or(url)
}

/// r2d2 manager that dispatches on the URL scheme, so that connection errors keep
/// libpq's or SQLite's own message (the derived `establish` hides them).
#[derive(Debug, Clone)]
pub struct DbManager {
    url: String,
    backend: Backend,
}

impl ManageConnection for DbManager {
    type Connection = DbConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<DbConnection, Self::Error> {
        match self.backend {
            Backend::Postgres => diesel::PgConnection::establish(&self.url)
                .map(DbConnection::Postgresql)
                .map_err(diesel::r2d2::Error::ConnectionError),
            Backend::Sqlite => diesel::SqliteConnection::establish(sqlite_path(&self.url))
                .map(DbConnection::Sqlite)
                .map_err(diesel::r2d2::Error::ConnectionError),
        }
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), Self::Error> {
        conn.ping().map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        // While the database has lately been unreachable, a connection coming back to the pool
        // is checked, so that one cut by the outage is dropped instead of failing again later.
        std::thread::panicking() || conn.is_broken() || (trouble_is_recent() && conn.ping().is_err())
    }
}

/// How long SQLite waits for a lock by default, in milliseconds.
pub const SQLITE_BUSY_MS: u64 = 10_000;

/// When the database last seemed unreachable (milliseconds since the Unix epoch; 0 = never).
static LAST_TROUBLE_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// How long after the last sign of trouble connections are checked on checkout and return.
const TROUBLE_WINDOW_MS: u64 = 60_000;

fn epoch_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Records that the database just seemed unreachable (a lost connection, no connection to be
/// had): for a minute, pooled connections are checked before use and on return, so that those
/// cut by the outage are dropped and, once the database is back, every request works again
/// without a restart. Outside such a minute nothing is checked (a ping per checkout would double
/// the cost of short queries).
pub fn note_trouble() {
    LAST_TROUBLE_MS.store(epoch_ms(), std::sync::atomic::Ordering::Relaxed);
}

fn trouble_is_recent() -> bool {
    let last = LAST_TROUBLE_MS.load(std::sync::atomic::Ordering::Relaxed);
    last != 0 && epoch_ms().saturating_sub(last) < TROUBLE_WINDOW_MS
}

/// Per-connection SQLite settings (they do not persist in the file).
#[derive(Debug)]
struct SqlitePragmas {
    busy_ms: u64,
}

impl CustomizeConnection<DbConnection, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut DbConnection) -> Result<(), diesel::r2d2::Error> {
        if let DbConnection::Sqlite(c) = conn {
            c.batch_execute(&format!(
                "PRAGMA busy_timeout = {}; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
                self.busy_ms
            ))
            .map_err(diesel::r2d2::Error::QueryError)?;
        }
        Ok(())
    }
}

/// Opens the pool for `url`, switching SQLite to WAL first (on one connection: the switch
/// needs an exclusive lock that parallel pool connections would fight over).
pub fn connect(url: &str, max_size: u32) -> anyhow::Result<Pool> {
    connect_with(url, max_size, SQLITE_BUSY_MS)
}

/// [`connect`] with SQLite's lock wait (`busy_timeout`) in milliseconds.
pub fn connect_with(url: &str, max_size: u32, sqlite_busy_ms: u64) -> anyhow::Result<Pool> {
    let backend = Backend::from_url(url)
        .with_context(|| "unsupported database URL scheme (use sqlite:// or postgres://)".to_string())?;
    if backend == Backend::Sqlite {
        let path = sqlite_path(url);
        if let Some(parent) = std::path::Path::new(path).parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating the database folder {}", parent.display()))?;
        }
        let mut c =
            diesel::SqliteConnection::establish(path).with_context(|| format!("opening SQLite database {path}"))?;
        c.batch_execute("PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL;")?;
    }
    let manager = DbManager { url: url.to_owned(), backend };
    let size = if backend == Backend::Sqlite { max_size.min(8) } else { max_size };
    let pool = r2d2::Pool::builder()
        .max_size(size)
        .min_idle(Some(1))
        // A ping per checkout doubles the cost of short queries; broken connections are
        // noticed on use instead (has_broken).
        .test_on_check_out(false)
        .connection_timeout(Duration::from_secs(5))
        .connection_customizer(Box::new(SqlitePragmas { busy_ms: sqlite_busy_ms }))
        .build(manager)
        .context("connecting to the database")?;
    Ok(pool)
}

/// Runs the embedded migrations of the connection's backend.
pub fn run_migrations(conn: &mut DbConnection) -> anyhow::Result<()> {
    let result = match conn {
        DbConnection::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map(|_| ()),
        DbConnection::Postgresql(c) => c.run_pending_migrations(POSTGRES_MIGRATIONS).map(|_| ()),
    };
    result.map_err(|e| anyhow::anyhow!("running migrations: {e}"))
}

/// Inserts a slice of rows in multi-row `INSERT`s (500 rows each, under SQLite's limit of bound
/// values), on either backend; returns early with `?` on an error. Multi-row inserts exist per
/// backend, not on the multi-backend connection.
macro_rules! insert_all {
    ($conn:expr, $table:expr, $rows:expr) => {
        for chunk in ($rows).chunks(500) {
            match &mut *$conn {
                $crate::db::DbConnection::Sqlite(c) => {
                    diesel::insert_into($table).values(chunk).execute(c)?;
                }
                $crate::db::DbConnection::Postgresql(c) => {
                    diesel::insert_into($table).values(chunk).execute(c)?;
                }
            }
        }
    };
}
pub(crate) use insert_all;

/// Runs `f` in a write transaction: `BEGIN IMMEDIATE` on SQLite (so that a read-then-write
/// transaction never fails to upgrade its lock), a plain transaction on PostgreSQL.
/// Commits when `f` returns `Ok`, rolls back otherwise.
pub fn write_tx<T, E, F>(conn: &mut DbConnection, f: F) -> Result<T, E>
where
    F: FnOnce(&mut DbConnection) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    let depth = match conn {
        DbConnection::Sqlite(c) => AnsiTransactionManager::transaction_manager_status_mut(c).transaction_depth(),
        DbConnection::Postgresql(c) => AnsiTransactionManager::transaction_manager_status_mut(c).transaction_depth(),
    };
    if depth.map_err(E::from)?.is_some() {
        // Already inside a write transaction: the caller's transaction covers this work, and a
        // savepoint lets a refused step roll back alone (PostgreSQL otherwise aborts the whole
        // transaction at the first error, e.g. a unique violation that the step handles).
        // SQLite may have rolled back the whole transaction by itself (disk full, I/O error),
        // so that rolling back to the savepoint fails: the original error is what is answered.
        <DbConnection as Connection>::TransactionManager::begin_transaction(conn)?;
        return match f(conn) {
            Ok(value) => {
                <DbConnection as Connection>::TransactionManager::commit_transaction(conn)?;
                Ok(value)
            }
            Err(e) => {
                let _ = <DbConnection as Connection>::TransactionManager::rollback_transaction(conn);
                Err(e)
            }
        };
    }
    match conn {
        DbConnection::Sqlite(c) => AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?,
        DbConnection::Postgresql(c) => AnsiTransactionManager::begin_transaction(c)?,
    }
    match f(conn) {
        Ok(value) => {
            <DbConnection as Connection>::TransactionManager::commit_transaction(conn)?;
            Ok(value)
        }
        Err(e) => {
            // The original error matters more than a failed rollback.
            let _ = <DbConnection as Connection>::TransactionManager::rollback_transaction(conn);
            Err(e)
        }
    }
}

/// Why blocking database work could not run: no connection to be had, or the task died.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    #[error("database pool exhausted or unreachable: {0}")]
    Pool(#[from] r2d2::Error),
    #[error("blocking task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// The one way to run database work from async code: on the blocking thread pool, with a
/// connection checked out for the closure alone, never on an async worker thread.
pub async fn with_conn<T, E, F>(pool: &Pool, f: F) -> Result<T, E>
where
    T: Send + 'static,
    E: From<Unavailable> + Send + 'static,
    F: FnOnce(&mut DbConnection) -> Result<T, E> + Send + 'static,
{
    let pool = pool.clone();
    tokio::task::spawn_blocking(move || {
        let mut conn = checkout(&pool)?;
        f(&mut conn)
    })
    .await
    .map_err(Unavailable::Task)?
}

/// Checks a connection out of the pool; while the database has lately been unreachable, one
/// that no longer answers is dropped and another taken (see [`note_trouble`]).
pub fn checkout(pool: &Pool) -> Result<PooledConn, Unavailable> {
    let mut conn = pool.get().map_err(|e| {
        note_trouble();
        Unavailable::Pool(e)
    })?;
    if trouble_is_recent() {
        for _ in 0..pool.max_size() {
            if conn.ping().is_ok() {
                break;
            }
            // Dropped as broken on return (`has_broken` pings it too); take another.
            drop(conn);
            conn = pool.get().map_err(|e| {
                note_trouble();
                Unavailable::Pool(e)
            })?;
        }
    }
    Ok(conn)
}

#[derive(diesel::QueryableByName)]
struct BusyTimeout {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    timeout: i64,
}

/// Readiness: the database answers and, on SQLite, its write lock can be had within half a
/// second (another process holding it keeps every write waiting, then failing, while reads go on).
pub fn probe_ready(conn: &mut DbConnection) -> QueryResult<()> {
    match conn {
        DbConnection::Postgresql(_) => diesel::sql_query("SELECT 1").execute(conn).map(|_| ()),
        DbConnection::Sqlite(c) => {
            let before = diesel::sql_query("PRAGMA busy_timeout").get_result::<BusyTimeout>(c)?.timeout;
            c.batch_execute("PRAGMA busy_timeout = 500")?;
            let probe = c.batch_execute("BEGIN IMMEDIATE").and_then(|_| c.batch_execute("ROLLBACK"));
            c.batch_execute(&format!("PRAGMA busy_timeout = {before}"))?;
            probe
        }
    }
}

/// Which backend a live connection talks to.
pub fn backend_of(conn: &DbConnection) -> Backend {
    match conn {
        DbConnection::Sqlite(_) => Backend::Sqlite,
        DbConnection::Postgresql(_) => Backend::Postgres,
    }
}

/// Current UTC time truncated to microseconds, so SQLite and PostgreSQL store the same value.
pub fn now() -> time::PrimitiveDateTime {
    let t = time::OffsetDateTime::now_utc();
    let t = t.replace_nanosecond(t.nanosecond() / 1000 * 1000).unwrap_or(t);
    time::PrimitiveDateTime::new(t.date(), t.time())
}

/// A new random id (UUID v4 as text).
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
