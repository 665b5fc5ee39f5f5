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
        std::thread::panicking() || conn.is_broken()
    }
}

/// Per-connection SQLite settings (they do not persist in the file).
#[derive(Debug)]
struct SqlitePragmas;

impl CustomizeConnection<DbConnection, diesel::r2d2::Error> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut DbConnection) -> Result<(), diesel::r2d2::Error> {
        if let DbConnection::Sqlite(c) = conn {
            c.batch_execute("PRAGMA busy_timeout = 10000; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
                .map_err(diesel::r2d2::Error::QueryError)?;
        }
        Ok(())
    }
}

/// Opens the pool for `url`, switching SQLite to WAL first (on one connection: the switch
/// needs an exclusive lock that parallel pool connections would fight over).
pub fn connect(url: &str, max_size: u32) -> anyhow::Result<Pool> {
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
        .connection_customizer(Box::new(SqlitePragmas))
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
        return conn.transaction(f);
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
        let mut conn = pool.get().map_err(Unavailable::Pool)?;
        f(&mut conn)
    })
    .await
    .map_err(Unavailable::Task)?
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
