//! Faults and what each one costs (issue 13 §3): the database unreachable (PostgreSQL behind a
//! relay the test cuts; the SQLite file locked by another connection past the busy timeout).

use std::time::Duration;

use diesel::prelude::*;
use reqwest::StatusCode;
use vestibule::db::DbConnection;
use vestibule::db::schema::{audit_events, invitations, outbox};

use crate::helpers::{Db, Options, TestApp};

/// Invitations, mail and audit rows, read without the app's pool.
fn written(conn: &mut DbConnection) -> (i64, i64, i64) {
    (
        invitations::table.count().get_result(conn).unwrap(),
        outbox::table.count().get_result(conn).unwrap(),
        audit_events::table.count().get_result(conn).unwrap(),
    )
}

/// An outage of the test's database, until `end`.
enum Outage {
    /// The relay to PostgreSQL is cut.
    Cut,
    /// Another connection holds SQLite's exclusive lock, released when the sender is dropped.
    Locked(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>),
}

impl Outage {
    fn start(app: &TestApp, db: Db) -> Outage {
        match db {
            Db::Postgres => {
                app.proxy.as_ref().unwrap().cut();
                Outage::Cut
            }
            Db::Sqlite => {
                let path = app.direct_url.trim_start_matches("sqlite://").to_owned();
                let (tx, rx) = std::sync::mpsc::channel::<()>();
                let (ready_tx, ready_rx) = std::sync::mpsc::channel();
                let holder = std::thread::spawn(move || {
                    let mut other = diesel::SqliteConnection::establish(&path).unwrap();
                    diesel::sql_query("BEGIN EXCLUSIVE").execute(&mut other).unwrap();
                    ready_tx.send(()).unwrap();
                    let _ = rx.recv();
                    diesel::sql_query("ROLLBACK").execute(&mut other).unwrap();
                });
                ready_rx.recv().unwrap();
                Outage::Locked(tx, holder)
            }
        }
    }

    fn end(self, app: &TestApp) {
        match self {
            Outage::Cut => app.proxy.as_ref().unwrap().restore(),
            Outage::Locked(tx, holder) => {
                drop(tx);
                holder.join().unwrap();
            }
        }
    }
}

async fn database_outage_answers_503_then_recovers(db: Db) {
    let opts = Options { db_proxy: true, sqlite_busy_ms: Some(1000), ..Options::default() };
    let app = TestApp::start_with(db, opts).await.expect("database");
    let admin = app.admin().await;
    let key = app.with_conn(|c| vestibule::services::api_keys::create_for_cli(c, "acme", "k", None).unwrap());
    let api = reqwest::Client::new();
    let api_invite = |email: &str| {
        api.post(format!("{}/api/v1.0/invitations", app.base)).bearer_auth(&key).json(&serde_json::json!({
            "invitedUserEmailAddress": email, "inviteRedirectUrl": format!("{}/", app.base), "sendInvitationMessage": true
        }))
    };
    let french = app.browser();
    let french_signin = |token: &str| {
        french.client.post(format!("{}/signin", french.base)).header("accept-language", "fr").form(&[
            ("email", "admin@acme.test"),
            ("password", "not the password at all"),
            ("csrf_token", token),
        ])
    };
    let _ = french.csrf().await;
    let _ = admin.csrf().await;
    let before = written(&mut app.direct_conn());

    let outage = Outage::start(&app, db);
    // A signed-in page: on PostgreSQL the session cannot even be loaded; a locked SQLite file
    // still serves reads.
    let res = admin.get("/o/acme/admin/users").await;
    if db == Db::Postgres {
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers().get("retry-after").unwrap(), "10");
        assert!(res.text().await.unwrap().contains("Temporarily unavailable"), "the friendly page");
    } else {
        assert_eq!(res.status(), StatusCode::OK);
    }
    // A write: 503, Retry-After, the friendly page.
    let res = admin.post("/o/acme/admin/invite", &[("email", "pat@partner.test"), ("send_email", "on")]).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers().get("retry-after").unwrap(), "10");
    let page = res.text().await.unwrap();
    assert!(page.contains("Temporarily unavailable") && page.contains("<html"), "the friendly page");
    // In French too.
    let token = french.csrf().await;
    let res = french_signin(&token).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.text().await.unwrap().contains("temporairement indisponible"));
    // The API: Graph-shaped JSON 503.
    let res = api_invite("api@partner.test").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers().get("retry-after").unwrap(), "10");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "ServiceUnavailable");
    // Not ready.
    let res = app.browser().get("/readyz").await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(written(&mut app.direct_conn()), before, "nothing half-written");

    outage.end(&app);
    // Back: everything works at the first try, without a restart.
    assert_eq!(app.browser().get("/readyz").await.status(), StatusCode::OK);
    assert_eq!(admin.get("/o/acme/admin/users").await.status(), StatusCode::OK);
    let res = admin.post("/o/acme/admin/invite", &[("email", "pat@partner.test"), ("send_email", "on")]).await;
    let status = res.status();
    assert_eq!(status, StatusCode::SEE_OTHER, "{}", res.text().await.unwrap());
    let res = api_invite("api@partner.test").send().await.unwrap();
    let status = res.status();
    assert_eq!(status, StatusCode::CREATED, "{}", res.text().await.unwrap());
    app.wait_mail_settled().await;
    assert_eq!(app.smtp.count_for("pat@partner.test"), 1);
    assert_eq!(app.smtp.count_for("api@partner.test"), 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
}

crate::on_both_databases!(db: database_outage_answers_503_then_recovers);
