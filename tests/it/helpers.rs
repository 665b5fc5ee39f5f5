//! The application under test: started for real on port 0 with its own database (a fresh
//! SQLite file, or a fresh PostgreSQL database), a real SMTP listener, and browsers that keep
//! cookies.

use std::net::TcpListener;
use std::sync::Mutex;

use diesel::prelude::*;
use reqwest::redirect::Policy;
use reqwest::{Response, StatusCode};
use vestibule::config::Settings;
use vestibule::db::{DbConnection, Pool};
use vestibule::services::{Actor, orgs};
use vestibule::startup::Application;

use crate::smtp::SmtpSink;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server for tests, when one answers (see [`crate::harness::postgres`]).
pub fn postgres_url() -> Option<String> {
    crate::harness::postgres().as_ref().ok().cloned()
}

/// A fresh, empty database for a test on `db` (files under `dir`): its URL, and the guard that
/// drops a PostgreSQL database when the test ends.
pub fn fresh_database(db: Db, dir: &std::path::Path) -> (Option<PgDatabase>, String) {
    match db {
        Db::Sqlite => (None, format!("sqlite://{}", dir.join("test.db").display())),
        Db::Postgres => {
            let (pg, url) = PgDatabase::create(&postgres_url().expect("PostgreSQL for this test"));
            (Some(pg), url)
        }
    }
}

/// A PostgreSQL database made for one test and dropped after it.
pub struct PgDatabase {
    admin_url: String,
    name: String,
}

impl PgDatabase {
    fn create(admin_url: &str) -> (PgDatabase, String) {
        let name = format!("vt_{}", uuid::Uuid::new_v4().simple());
        let mut conn = diesel::PgConnection::establish(admin_url).expect("connect to VESTIBULE_TEST_POSTGRES_URL");
        diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut conn).expect("create test database");
        let mut url = url::Url::parse(admin_url).expect("postgres url");
        url.set_path(&name);
        (PgDatabase { admin_url: admin_url.to_owned(), name }, url.to_string())
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if let Ok(mut conn) = diesel::PgConnection::establish(&self.admin_url) {
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)).execute(&mut conn);
        }
    }
}

/// A running Vestibule.
pub struct TestApp {
    pub base: String,
    pub pool: Pool,
    pub smtp: SmtpSink,
    pub setup_link: Option<String>,
    /// The settings it was started with (other instances start with them too).
    pub settings: Settings,
    /// The database's own URL (not through the relay), for assertions during an outage.
    pub direct_url: String,
    /// The base URL of the metrics listener, when started with [`Options::metrics_listener`].
    pub metrics_base: Option<String>,
    /// The relay to PostgreSQL, when started with [`Options::db_proxy`].
    pub proxy: Option<crate::proxy::DbProxy>,
    _pg: Option<PgDatabase>,
    _dir: tempfile::TempDir,
}

/// Options for starting the app.
#[derive(Default)]
pub struct Options {
    /// Start without an SMTP listener on the configured port (mail cannot be delivered yet).
    pub smtp_down: bool,
    /// Give the app an `https` public URL (it is still reached over plain http).
    pub https: bool,
    /// PostgreSQL: reach the database through a relay the test can cut ([`TestApp::proxy`]).
    pub db_proxy: bool,
    /// SQLite: how long a statement waits for a lock, in milliseconds (default: the app's).
    pub sqlite_busy_ms: Option<u64>,
    /// Serve `/metrics` on a listener of its own ([`TestApp::metrics_base`]).
    pub metrics_listener: bool,
    /// The bearer token that opens `/metrics` on the main port.
    pub metrics_token: Option<String>,
}

impl TestApp {
    /// Starts the app on `db`, or returns None when that database is not configured.
    pub async fn start(db: Db) -> Option<TestApp> {
        Self::start_with(db, Options::default()).await
    }

    /// Starts the app with options.
    pub async fn start_with(db: Db, opts: Options) -> Option<TestApp> {
        let dir = tempfile::tempdir().unwrap();
        let mut proxy = None;
        let mut direct_url = String::new();
        let (pg, database_url) = match db {
            Db::Sqlite => (None, format!("sqlite://{}", dir.path().join("test.db").display())),
            Db::Postgres => {
                let admin = postgres_url()?;
                let (pg, url) = PgDatabase::create(&admin);
                direct_url = url.clone();
                let url = if opts.db_proxy {
                    let mut u = url::Url::parse(&url).unwrap();
                    let upstream = std::net::ToSocketAddrs::to_socket_addrs(&(
                        u.host_str().unwrap_or("127.0.0.1"),
                        u.port().unwrap_or(5432),
                    ))
                    .unwrap()
                    .next()
                    .unwrap();
                    let p = crate::proxy::DbProxy::start(upstream).await;
                    u.set_host(Some("127.0.0.1")).unwrap();
                    u.set_port(Some(p.port)).unwrap();
                    proxy = Some(p);
                    u.to_string()
                } else {
                    url
                };
                (Some(pg), url)
            }
        };
        if direct_url.is_empty() {
            direct_url = database_url.clone();
        }
        let smtp_port = if opts.smtp_down {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        } else {
            0
        };
        let smtp = if opts.smtp_down { None } else { Some(SmtpSink::start(0).await) };
        let smtp_port = smtp.as_ref().map(|s| s.port).unwrap_or(smtp_port);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let base = format!("http://127.0.0.1:{port}");
        let values = [
            ("database_url", database_url),
            ("public_url", if opts.https { base.replace("http://", "https://") } else { base.clone() }),
            ("data_dir", dir.path().join("data").display().to_string()),
            ("smtp_url", format!("smtp://127.0.0.1:{smtp_port}")),
            ("mail_from", "Vestibule <no-reply@vestibule.test>".to_string()),
            ("log", "warn".to_string()),
        ];
        let mut settings =
            Settings::from_values(&values.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()).unwrap();
        settings.workers = 2;
        settings.mail_poll_ms = 100;
        settings.oidc_keys_reload_ms = 300;
        if let Some(ms) = opts.sqlite_busy_ms {
            settings.sqlite_busy_ms = ms;
        }
        if opts.metrics_listener {
            settings.metrics_bind = Some("127.0.0.1:0".into());
        }
        settings.metrics_token = opts.metrics_token.clone();
        let app = Application::build_with_listener(settings.clone(), listener).expect("build app");
        let metrics_base = app.metrics_port().map(|p| format!("http://127.0.0.1:{p}"));
        let pool = app.pool.clone();
        let setup_link = app.setup_link.clone();
        tokio::spawn(app.run_until_stopped());
        // The sink for a "down" server is started later by the test, on the same port.
        let smtp = match smtp {
            Some(s) => s,
            None => SmtpSink::placeholder(smtp_port),
        };
        Some(TestApp { base, pool, smtp, setup_link, settings, direct_url, proxy, metrics_base, _pg: pg, _dir: dir })
    }

    /// Starts another instance on the same database, data directory (so the same secret key)
    /// and SMTP listener, as a second machine behind a load balancer; returns its base URL.
    /// It runs until the test ends.
    pub fn start_instance(&self) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = Application::build_with_listener(self.settings.clone(), listener).expect("build instance");
        tokio::spawn(app.run_until_stopped());
        format!("http://127.0.0.1:{port}")
    }

    /// A fresh browser with its own cookie jar.
    pub fn browser(&self) -> Browser {
        Browser::new(&self.base)
    }

    /// A database connection for assertions.
    pub fn conn(&self) -> r2d2::PooledConnection<vestibule::db::DbManager> {
        self.pool.get().unwrap()
    }

    /// Creates an organization with an admin who has `password`; returns the admin's email.
    pub fn create_org(&self, name: &str, slug: &str, admin_email: &str) -> String {
        let valid = orgs::validate_new_org(&orgs::NewOrg {
            name: name.into(),
            slug: slug.into(),
            admin_email: admin_email.into(),
            admin_name: format!("{name} Admin"),
        })
        .unwrap_or_else(|_| panic!("valid org"));
        let hash = vestibule::auth::password::hash_password(PASSWORD).unwrap();
        let mut conn = self.conn();
        orgs::create_org(&mut conn, &valid, Some(&hash), &Actor::default()).unwrap();
        admin_email.to_owned()
    }

    /// A browser signed in as the admin of a new org `acme`.
    pub async fn admin(&self) -> Browser {
        self.create_org("Acme Corp", "acme", "admin@acme.test");
        let b = self.browser();
        b.sign_in("admin@acme.test", PASSWORD).await;
        b
    }

    /// Waits until the mail worker has recorded every queued mail as sent (mail can reach the
    /// SMTP listener a moment before the worker marks it).
    pub async fn wait_mail_settled(&self) {
        self.wait_mail_settled_within(std::time::Duration::from_secs(20)).await
    }

    /// [`wait_mail_settled`](Self::wait_mail_settled) with a longer allowance (much mail, a busy machine).
    pub async fn wait_mail_settled_within(&self, limit: std::time::Duration) {
        use vestibule::db::schema::outbox;
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let busy: i64 = self.with_conn(|c| {
                outbox::table.filter(outbox::status.eq_any(["queued", "sending"])).count().get_result(c).unwrap()
            });
            if busy == 0 {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "mail still queued");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// A connection of its own to the database, not through the app's pool (nor the relay).
    pub fn direct_conn(&self) -> DbConnection {
        match self.direct_url.strip_prefix("sqlite://") {
            Some(path) => DbConnection::Sqlite(diesel::SqliteConnection::establish(path).unwrap()),
            None => DbConnection::Postgresql(diesel::PgConnection::establish(&self.direct_url).unwrap()),
        }
    }

    /// Runs a closure with a connection.
    pub fn with_conn<T>(&self, f: impl FnOnce(&mut DbConnection) -> T) -> T {
        let mut conn = self.conn();
        f(&mut conn)
    }
}

impl SmtpSink {
    /// Stands for a listener not started yet on `port`.
    pub fn placeholder(port: u16) -> SmtpSink {
        // A sink whose accept loop has already ended: nothing listens on the port.
        SmtpSink::dead(port)
    }
}

/// The password every test account uses.
pub const PASSWORD: &str = "plum tractor velvet harbor";

/// A person's browser: keeps cookies, does not follow redirects, fills CSRF tokens in.
pub struct Browser {
    pub client: reqwest::Client,
    pub base: String,
    csrf: Mutex<Option<String>>,
}

impl Browser {
    pub fn new(base: &str) -> Browser {
        // reqwest is built without a TLS provider of its own (see Cargo.toml).
        vestibule::services::idp::install_tls_provider();
        let client = reqwest::Client::builder().cookie_store(true).redirect(Policy::none()).build().unwrap();
        Browser { client, base: base.to_owned(), csrf: Mutex::new(None) }
    }

    /// The same browser (cookie jar, client) talking to another instance at `base`.
    pub fn at(&self, base: &str) -> Browser {
        Browser {
            client: self.client.clone(),
            base: base.to_owned(),
            csrf: Mutex::new(self.csrf.lock().unwrap().clone()),
        }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") { path.to_owned() } else { format!("{}{path}", self.base) }
    }

    /// GET a path (or a full URL).
    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    /// GET and return status and body text.
    pub async fn get_text(&self, path: &str) -> (StatusCode, String) {
        let res = self.get(path).await;
        let status = res.status();
        (status, res.text().await.unwrap())
    }

    /// The CSRF token for this browser (read once from a page).
    pub async fn csrf(&self) -> String {
        if let Some(t) = self.csrf.lock().unwrap().clone() {
            return t;
        }
        // The sign-in page when signed out; any page (the language switch) when signed in.
        let (_, body) = self.get_text("/signin").await;
        let body = if extract_csrf(&body).is_some() { body } else { self.get_text("/account").await.1 };
        let token = extract_csrf(&body).expect("csrf token on the sign-in or account page");
        *self.csrf.lock().unwrap() = Some(token.clone());
        token
    }

    /// Forgets the CSRF token read before (after a request sent by hand that changed the
    /// session's identity: the token changes with it).
    pub fn forget_csrf(&self) {
        *self.csrf.lock().unwrap() = None;
    }

    /// POST a form with the CSRF token added.
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Response {
        let token = self.csrf().await;
        let mut form: Vec<(&str, &str)> = fields.to_vec();
        form.push(("csrf_token", &token));
        self.post_raw(path, &form).await
    }

    /// POST a form exactly as given (no CSRF token added).
    pub async fn post_raw(&self, path: &str, fields: &[(&str, &str)]) -> Response {
        let res = self.client.post(self.url(path)).form(fields).send().await.unwrap();
        // The CSRF cookie, and so the token, changes with the session's identity.
        let new_csrf_cookie = res.headers().get_all("set-cookie").iter().any(|v| {
            v.to_str().is_ok_and(|c| c.starts_with("vestibule_csrf=") || c.starts_with("__Host-vestibule_csrf="))
        });
        if new_csrf_cookie {
            self.forget_csrf();
        }
        res
    }

    /// POST a form with the CSRF token added, as a future that owns what it needs (to send many
    /// at once); the answer's status, or the error when no answer came.
    pub fn post_raw_owned(
        &self,
        path: &str,
        fields: Vec<(&'static str, String)>,
    ) -> impl std::future::Future<Output = Result<StatusCode, String>> + Send + 'static {
        let client = self.client.clone();
        let url = self.url(path);
        let token = self.csrf.lock().unwrap().clone().expect("csrf() first");
        async move {
            let mut form = fields;
            form.push(("csrf_token", token));
            client.post(url).form(&form).send().await.map(|r| r.status()).map_err(|e| e.to_string())
        }
    }

    /// Saves the acme org's settings: the defaults of a new org, with `changes` applied.
    pub async fn save_settings(&self, changes: &[(&str, &str)]) -> Response {
        let mut fields: Vec<(&str, &str)> = vec![
            ("name", "Acme Corp"),
            ("privacy_url", ""),
            ("default_language", "en"),
            ("invite_lifetime_days", "14"),
            ("redirect_allowlist", ""),
            ("invite_policy", "adminsGuestInvitersAndAllMembers"),
            ("domain_mode", "none"),
            ("domain_list", ""),
            ("invites_per_hour", "50"),
            ("guest_access_days", ""),
            ("email_codes", "on"),
        ];
        for (k, v) in changes {
            match fields.iter_mut().find(|(fk, _)| fk == k) {
                Some(f) => f.1 = v,
                None => fields.push((k, v)),
            }
        }
        self.post("/o/acme/admin/settings", &fields).await
    }

    /// Signs in and asserts success.
    pub async fn sign_in(&self, email: &str, password: &str) {
        let res = self.post("/signin", &[("email", email), ("password", password), ("next", "/")]).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "sign-in of {email} failed");
    }
}

/// The value of the first `csrf_token` hidden field of a page.
pub fn extract_csrf(html: &str) -> Option<String> {
    let i = html.find("name=\"csrf_token\" value=\"")?;
    let rest = &html[i + "name=\"csrf_token\" value=\"".len()..];
    Some(rest[..rest.find('"')?].to_owned()).filter(|t| !t.is_empty())
}

/// The `Location` header of a redirect.
pub fn location(res: &Response) -> String {
    res.headers().get("location").expect("a Location header").to_str().unwrap().to_owned()
}

/// Path of a redeem link.
pub fn path_of(link: &str) -> String {
    let u = url::Url::parse(link).unwrap();
    u.path().to_owned()
}

/// Every table of the schema (read from src/db/schema.rs, so tables added later are counted too).
pub fn all_tables() -> Vec<String> {
    let schema = include_str!("../../src/db/schema.rs");
    let lines: Vec<&str> = schema.lines().collect();
    lines
        .windows(2)
        .filter(|w| w[0].trim_start().starts_with("diesel::table!"))
        .filter_map(|w| w[1].split_whitespace().next().map(str::to_owned))
        .collect()
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

impl TestApp {
    /// The number of rows of every table, to show that a refused request stored nothing.
    /// `sessions` is left out: any visit may start a session.
    pub fn row_counts(&self) -> Vec<(String, i64)> {
        self.with_conn(|c| {
            all_tables()
                .into_iter()
                .filter(|t| t != "sessions")
                .map(|t| {
                    let n = diesel::sql_query(format!("SELECT COUNT(*) AS n FROM {t}"))
                        .get_result::<Count>(c)
                        .unwrap_or_else(|e| panic!("counting {t}: {e}"))
                        .n;
                    (t, n)
                })
                .collect()
        })
    }
}
