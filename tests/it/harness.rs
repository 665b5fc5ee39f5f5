//! The test runner of `tests/it` (a `harness = false` target run by libtest-mimic): every test
//! registers itself through [`on_both_databases!`](crate::on_both_databases) or
//! [`plain_tests!`](crate::plain_tests), and the PostgreSQL variants run only when a PostgreSQL
//! server answers; otherwise they are reported as *ignored*, never as passed.
//!
//! PostgreSQL: `VESTIBULE_TEST_POSTGRES_URL` when set (the tests then fail if it does not
//! answer), else the local server at [`DEFAULT_POSTGRES_URL`] when it answers. Set the variable
//! to `none` to leave PostgreSQL out on purpose.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::time::Duration;

use libtest_mimic::{Arguments, Failed, Trial};

use crate::helpers::{Db, TestApp};

/// The local PostgreSQL tried when `VESTIBULE_TEST_POSTGRES_URL` is not set.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A boxed test body.
pub type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What a registered test runs.
pub enum Body {
    /// An async test given the app started on the database.
    App(fn(TestApp) -> BoxFuture),
    /// An async test given the database (it starts what it needs itself).
    Db(fn(Db) -> BoxFuture),
    /// An async test that starts what it needs itself.
    Plain(fn() -> BoxFuture),
    /// A blocking test (drives child processes itself).
    Blocking(fn()),
}

/// One registered test.
pub struct Case {
    /// `module_path!()` of the file that registered it.
    pub module: &'static str,
    pub name: &'static str,
    /// The database it runs on, or None when it chooses itself (SQLite-only tests).
    pub db: Option<Db>,
    pub body: Body,
}

inventory::collect!(Case);

/// Where the PostgreSQL variants run, or why they do not.
pub fn postgres() -> &'static Result<String, String> {
    static PG: OnceLock<Result<String, String>> = OnceLock::new();
    PG.get_or_init(|| match std::env::var("VESTIBULE_TEST_POSTGRES_URL") {
        Ok(v) if v == "none" => Err("VESTIBULE_TEST_POSTGRES_URL=none".into()),
        Ok(v) if !v.is_empty() => Ok(v),
        _ => {
            if answers(DEFAULT_POSTGRES_URL) {
                Ok(DEFAULT_POSTGRES_URL.to_owned())
            } else {
                Err(format!(
                    "no PostgreSQL answers at {DEFAULT_POSTGRES_URL} and VESTIBULE_TEST_POSTGRES_URL is not set"
                ))
            }
        }
    })
}

/// True when a PostgreSQL server accepts a connection at `url` within a couple of seconds.
fn answers(url: &str) -> bool {
    use diesel::Connection;
    let Ok(parsed) = url::Url::parse(url) else { return false };
    let host = parsed.host_str().unwrap_or("127.0.0.1").to_owned();
    let port = parsed.port().unwrap_or(5432);
    let reachable = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|addr| std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok());
    reachable && diesel::PgConnection::establish(url).is_ok()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime")
}

impl Case {
    fn full_name(&self) -> String {
        let module = self.module.split_once("::").map(|(_, m)| m).unwrap_or(self.module);
        match self.db {
            Some(Db::Sqlite) => format!("{module}::{}::sqlite", self.name),
            Some(Db::Postgres) => format!("{module}::{}::postgres", self.name),
            None => format!("{module}::{}", self.name),
        }
    }

    fn trial(&'static self) -> Trial {
        let ignored = self.db == Some(Db::Postgres) && postgres().is_err();
        Trial::test(self.full_name(), move || self.run()).with_ignored_flag(ignored)
    }

    fn run(&'static self) -> Result<(), Failed> {
        match (&self.body, self.db) {
            (Body::App(f), Some(db)) => runtime().block_on(async move {
                let app = TestApp::start(db).await.expect("the database of this test");
                f(app).await
            }),
            (Body::Db(f), Some(db)) => runtime().block_on(f(db)),
            (Body::Plain(f), _) => runtime().block_on(f()),
            (Body::Blocking(f), _) => f(),
            _ => return Err("a test registered without its database".into()),
        }
        Ok(())
    }
}

/// Every `.rs` file of `tests/it` registers its tests through the macros: a bare `#[test]` or
/// `#[tokio::test]` would never run under this runner, silently.
fn no_unregistered_tests() -> Result<(), Failed> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(|e| e.to_string())? {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
        for (i, line) in text.lines().enumerate() {
            let t = line.trim_start();
            if t.starts_with("#[test]") || t.starts_with("#[tokio::test") {
                found.push(format!("{}:{}", path.display(), i + 1));
            }
        }
    }
    if found.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "tests/it runs with its own runner: register these with on_both_databases! or plain_tests! \
             (tests/it/harness.rs), else they never run: {}",
            found.join(", ")
        )
        .into())
    }
}

/// Runs the registered tests with libtest's command line (name filters, `--exact`,
/// `--ignored`, `--include-ignored`, `--test-threads`, `--list`).
pub fn main() -> std::process::ExitCode {
    let args = Arguments::from_args();
    // The app's log, for debugging a test: VESTIBULE_TEST_LOG=vestibule=debug cargo test …
    if let Ok(filter) = std::env::var("VESTIBULE_TEST_LOG") {
        tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::new(filter)).with_test_writer().init();
    }
    let mut cases: Vec<&'static Case> = inventory::iter::<Case>.into_iter().collect();
    cases.sort_by_key(|c| c.full_name());
    if let Err(reason) = postgres()
        && !args.list
    {
        let n = cases.iter().filter(|c| c.db == Some(Db::Postgres)).count();
        eprintln!("note: {n} PostgreSQL variants are ignored: {reason}");
    }
    let mut trials: Vec<Trial> = cases.into_iter().map(Case::trial).collect();
    trials.push(Trial::test("harness::every_test_is_registered", no_unregistered_tests));
    libtest_mimic::run(&args, trials).exit_code()
}

/// Registers one test per database for each async function taking a [`TestApp`], named
/// `<module>::<function>::sqlite` and `…::postgres`. With `db:` before the names, the function
/// takes the [`Db`] instead and starts what it needs.
#[macro_export]
macro_rules! on_both_databases {
    (db: $($name:ident),* $(,)?) => {
        $(
            ::inventory::submit! { $crate::harness::Case {
                module: module_path!(), name: stringify!($name), db: Some($crate::helpers::Db::Sqlite),
                body: $crate::harness::Body::Db(|db| Box::pin($name(db))),
            } }
            ::inventory::submit! { $crate::harness::Case {
                module: module_path!(), name: stringify!($name), db: Some($crate::helpers::Db::Postgres),
                body: $crate::harness::Body::Db(|db| Box::pin($name(db))),
            } }
        )*
    };
    ($($name:ident),* $(,)?) => {
        $(
            ::inventory::submit! { $crate::harness::Case {
                module: module_path!(), name: stringify!($name), db: Some($crate::helpers::Db::Sqlite),
                body: $crate::harness::Body::App(|app| Box::pin($name(app))),
            } }
            ::inventory::submit! { $crate::harness::Case {
                module: module_path!(), name: stringify!($name), db: Some($crate::helpers::Db::Postgres),
                body: $crate::harness::Body::App(|app| Box::pin($name(app))),
            } }
        )*
    };
}

/// Registers tests that choose their database themselves: async functions without arguments,
/// or, after `blocking:`, plain functions (named `<module>::<function>`).
#[macro_export]
macro_rules! plain_tests {
    (blocking: $($name:ident),* $(,)?) => {
        $(
            ::inventory::submit! { $crate::harness::Case {
                module: module_path!(), name: stringify!($name), db: None,
                body: $crate::harness::Body::Blocking($name),
            } }
        )*
    };
    ($($name:ident),* $(,)?) => {
        $(
            ::inventory::submit! { $crate::harness::Case {
                module: module_path!(), name: stringify!($name), db: None,
                body: $crate::harness::Body::Plain(|| Box::pin($name())),
            } }
        )*
    };
}
