//! Building the application: data folder, secret key, database, first-run link, HTTP server
//! and mail worker.

use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use actix_session::SessionMiddleware;
use actix_session::config::{BrowserSession, CookieContentSecurity, TtlExtensionPolicy};
use actix_web::cookie::{Key, SameSite};
use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, watch};

use crate::config::Settings;
use crate::db::{self, Pool};
use crate::mail::transport::Transport;
use crate::mail::worker::{self, WorkerConfig};
use crate::services::orgs::{self, link_purpose};
use crate::state::AppState;
use crate::web::csrf::csrf_middleware;
use crate::web::middleware::{refuse_nul, render_errors, request_id_and_log, security_headers};
use crate::web::session_store::DbSessionStore;

/// Reads `DATA_DIR/secret.key` (64 random bytes, hex), creating it on first run.
pub fn load_or_create_secret(data_dir: &Path) -> anyhow::Result<Vec<u8>> {
    let path = data_dir.join("secret.key");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let bytes: Option<Vec<u8>> = (0..text.trim().len())
            .step_by(2)
            .map(|i| text.trim().get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
            .collect();
        return bytes
            .filter(|b| b.len() >= 64)
            .with_context(|| format!("{} is not 128 hex characters", path.display()));
    }
    let mut key = vec![0u8; 64];
    rand::fill(&mut key[..]);
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    write_private(&path, &hex).with_context(|| format!("writing {}", path.display()))?;
    tracing::info!(file = %path.display(), "created a new secret key");
    Ok(key)
}

fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)?.write_all(content.as_bytes())
}

/// Opens the database and runs migrations (the `migrate` command and every start).
pub fn prepare_database(settings: &Settings) -> anyhow::Result<Pool> {
    let pool = db::connect_with(&settings.database_url, 16, settings.sqlite_busy_ms)?;
    let mut conn = pool.get().context("connecting to the database")?;
    db::run_migrations(&mut conn)?;
    // The OpenID Connect signing key is made at first start (never logged).
    crate::services::oidc::keys::ensure_signing_key(&mut conn)?;
    Ok(pool)
}

/// When no organization exists yet, creates a one-time setup link and returns it.
pub fn first_run_link(pool: &Pool, settings: &Settings) -> anyhow::Result<Option<String>> {
    use diesel::prelude::*;
    let mut conn = pool.get()?;
    if orgs::count(&mut conn)? > 0 {
        return Ok(None);
    }
    // Only the newest setup link works.
    diesel::delete(
        crate::db::schema::one_time_links::table
            .filter(crate::db::schema::one_time_links::purpose.eq(link_purpose::SETUP)),
    )
    .execute(&mut conn)?;
    let token = orgs::create_link(&mut conn, link_purpose::SETUP, None, time::Duration::hours(24))?;
    Ok(Some(format!("{}/setup?token={}", settings.base_url(), token.expose())))
}

/// A bound, not yet running, Vestibule.
pub struct Application {
    port: u16,
    server: Server,
    /// The `/metrics` listener, when `VESTIBULE_METRICS_BIND` is set.
    metrics_server: Option<Server>,
    metrics_port: Option<u16>,
    worker: tokio::task::JoinHandle<()>,
    lifecycle: tokio::task::JoinHandle<()>,
    bulk: tokio::task::JoinHandle<()>,
    shutdown: watch::Sender<bool>,
    /// The pool (tests read the database through it).
    pub pool: Pool,
    /// The first-run setup link, when there is no organization yet.
    pub setup_link: Option<String>,
}

impl Application {
    /// Binds `settings.bind` and builds everything.
    pub fn build(settings: Settings) -> anyhow::Result<Application> {
        let listener = TcpListener::bind(&settings.bind)
            .with_context(|| format!("VESTIBULE_BIND: cannot listen on {}", settings.bind))?;
        Application::build_with_listener(settings, listener)
    }

    /// Builds everything on an already bound listener (tests bind port 0).
    pub fn build_with_listener(settings: Settings, listener: TcpListener) -> anyhow::Result<Application> {
        std::fs::create_dir_all(&settings.data_dir)
            .with_context(|| format!("VESTIBULE_DATA_DIR: cannot create {}", settings.data_dir.display()))?;
        let secret = load_or_create_secret(&settings.data_dir)?;
        let pool = prepare_database(&settings)?;
        let setup_link = first_run_link(&pool, &settings)?;
        let port = listener.local_addr()?.port();

        let transport = Transport::from_settings(&settings)?;
        let mail_wake = Arc::new(Notify::new());
        let (shutdown, shutdown_rx) = watch::channel(false);
        let worker_cfg = WorkerConfig {
            pool: pool.clone(),
            transport,
            from: settings.mail_from.clone(),
            poll: Duration::from_millis(settings.mail_poll_ms),
            retry_base: Duration::from_millis(settings.mail_poll_ms.max(200) * 5),
        };
        let lifecycle = tokio::spawn(crate::services::lifecycle::run_periodically(
            pool.clone(),
            settings.public_url.clone(),
            shutdown_rx.clone(),
        ));
        let bulk_wake = Arc::new(Notify::new());
        let bulk = tokio::spawn(crate::services::bulk::worker::run(
            pool.clone(),
            settings.public_url.clone(),
            mail_wake.clone(),
            bulk_wake.clone(),
            Duration::from_millis(settings.mail_poll_ms.max(1000)),
            shutdown_rx.clone(),
        ));
        let worker = tokio::spawn(worker::run(worker_cfg, mail_wake.clone(), shutdown_rx));

        let session_key = Key::try_from(&secret[..64]).context("secret key")?;
        let csrf_key = Sha256::digest([b"vestibule-csrf:".as_slice(), &secret].concat()).to_vec();
        let https = settings.https();
        let session_cookie = settings.cookie_name("vestibule_session");
        let workers = settings.workers;
        let oidc = crate::services::oidc::Provider::new(Duration::from_millis(settings.oidc_keys_reload_ms));
        let metrics_bind = settings.metrics_bind.clone();
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let mut idp = crate::services::idp::Federation::new(&secret, &settings.base_url())?;
        idp.throttle = settings.throttle_enabled;
        let state = web::Data::new(AppState {
            settings,
            pool: pool.clone(),
            csrf_key,
            mail_wake,
            bulk_wake,
            oidc,
            idp,
            metrics,
        });
        let metrics_state = state.clone();
        let store = DbSessionStore::new(pool.clone());

        let mut server = HttpServer::new(move || {
            let sessions = SessionMiddleware::builder(store.clone(), session_key.clone())
                .cookie_name(session_cookie.clone())
                .cookie_secure(https)
                .cookie_http_only(true)
                .cookie_same_site(SameSite::Lax)
                .cookie_path("/".into())
                .cookie_content_security(CookieContentSecurity::Signed)
                .session_lifecycle(
                    BrowserSession::default()
                        .state_ttl(actix_web::cookie::time::Duration::minutes(30))
                        .state_ttl_extension_policy(TtlExtensionPolicy::OnEveryRequest),
                )
                .build();
            App::new()
                .app_data(state.clone())
                .app_data(web::FormConfig::default().limit(256 * 1024))
                .configure(crate::web::routes)
                .wrap(from_fn(csrf_middleware))
                .wrap(sessions)
                .wrap(from_fn(refuse_nul))
                .wrap(from_fn(render_errors))
                .wrap(from_fn(security_headers))
                .wrap(from_fn(request_id_and_log))
        })
        .shutdown_timeout(20)
        .listen(listener)?;
        if workers > 0 {
            server = server.workers(workers);
        }
        // `/metrics` on a listener of its own, when configured: nothing else is served there.
        let (metrics_server, metrics_port) = match metrics_bind {
            None => (None, None),
            Some(addr) => {
                let listener = TcpListener::bind(&addr)
                    .with_context(|| format!("VESTIBULE_METRICS_BIND: cannot listen on {addr}"))?;
                let port = listener.local_addr()?.port();
                let state = metrics_state;
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(state.clone())
                        .route("/metrics", web::get().to(crate::web::metrics::on_metrics_listener))
                })
                .workers(1)
                .shutdown_timeout(5)
                .listen(listener)?
                .run();
                (Some(server), Some(port))
            }
        };
        Ok(Application {
            port,
            server: server.run(),
            metrics_server,
            metrics_port,
            worker,
            lifecycle,
            bulk,
            shutdown,
            pool,
            setup_link,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The bound port of the metrics listener, when there is one.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_port
    }

    /// Serves until SIGTERM/SIGINT: in-flight requests finish, then the mail worker stops.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let metrics = self.metrics_server.map(|s| {
            let handle = s.handle();
            (handle, tokio::spawn(s))
        });
        let result = self.server.await;
        if let Some((handle, task)) = metrics {
            handle.stop(true).await;
            let _ = task.await;
        }
        let _ = self.shutdown.send(true);
        let _ = self.worker.await;
        let _ = self.lifecycle.await;
        let _ = self.bulk.await;
        result
    }
}
