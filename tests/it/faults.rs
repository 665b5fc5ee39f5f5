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

#[derive(diesel::QueryableByName)]
struct Text {
    #[diesel(sql_type = diesel::sql_types::Text)]
    integrity_check: String,
}

#[derive(diesel::QueryableByName)]
struct Pages {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    page_count: i64,
}

/// Sets SQLite's `max_page_count` on every connection of the app's pool (it is a setting of
/// each connection, not of the file): the file cannot grow past `pages`, as on a full disk.
fn limit_pages(app: &TestApp, pages: i64) {
    let conns: Vec<_> = (0..app.pool.max_size()).map(|_| app.pool.get().unwrap()).collect();
    for mut c in conns {
        diesel::sql_query(format!("PRAGMA max_page_count = {pages}")).execute(&mut *c).unwrap();
    }
}

/// SQLite's disk full (simulated by capping the file's size, see README): a write answers the
/// 503 page and logs `database unavailable … database or disk is full`, rolls back whole, and the
/// file passes `PRAGMA integrity_check`; once there is room again the same request works.
async fn sqlite_disk_full_refuses_cleanly_and_recovers() {
    let app = TestApp::start(Db::Sqlite).await.unwrap();
    let admin = app.admin().await;
    let _ = admin.csrf().await;
    let pages = app.with_conn(|c| diesel::sql_query("PRAGMA page_count").get_result::<Pages>(c).unwrap().page_count);
    limit_pages(&app, pages);
    let message = "A long welcome message. ".repeat(80);
    let mut accepted = 0;
    let mut refused = None;
    for i in 0..200 {
        let email = format!("guest{i:03}@partner.test");
        let fields = [("email", email.as_str()), ("message", message.as_str()), ("send_email", "on")];
        let res = admin.post("/o/acme/admin/invite", &fields).await;
        match res.status() {
            StatusCode::SEE_OTHER => accepted += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(res.headers().get("retry-after").unwrap(), "10");
                assert!(res.text().await.unwrap().contains("Temporarily unavailable"));
                refused = Some(email);
                break;
            }
            other => panic!("{other} for {email}"),
        }
    }
    let refused = refused.expect("the file filled up");
    // Nothing half-written: every invitation has its mail, the refused one is not there.
    let mut direct = app.direct_conn();
    let (inv, mail, _) = written(&mut direct);
    assert_eq!((inv, mail), (accepted, accepted));
    let found: i64 =
        invitations::table.filter(invitations::email.eq(&refused)).count().get_result(&mut direct).unwrap();
    assert_eq!(found, 0);
    let check = diesel::sql_query("PRAGMA integrity_check").load::<Text>(&mut direct).unwrap();
    assert_eq!(check.iter().map(|r| r.integrity_check.as_str()).collect::<Vec<_>>(), ["ok"]);
    // Room again: the same request works, no restart.
    limit_pages(&app, 1_073_741_823);
    let fields = [("email", refused.as_str()), ("message", message.as_str()), ("send_email", "on")];
    assert_eq!(admin.post("/o/acme/admin/invite", &fields).await.status(), StatusCode::SEE_OTHER);
}

crate::plain_tests!(sqlite_disk_full_refuses_cleanly_and_recovers);
