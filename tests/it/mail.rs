//! Mail delivery: the outbox survives an SMTP outage, and sent bodies are dropped.

use std::time::Duration;

use diesel::prelude::*;
use reqwest::StatusCode;
use vestibule::db::schema::outbox;

use crate::helpers::{Db, Options, PASSWORD, TestApp};
use crate::smtp::SmtpSink;

async fn delivered_once_smtp_is_back(db: Db) {
    let mut app = TestApp::start_with(db, Options { smtp_down: true, ..Options::default() }).await.expect("database");
    app.create_org("Acme Corp", "acme", "admin@acme.test");
    let admin = app.browser();
    admin.sign_in("admin@acme.test", PASSWORD).await;
    let res = admin.post("/o/acme/admin/invite", &[("email", "pat@partner.test"), ("send_email", "on")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "the request does not wait on SMTP");

    // The worker tries, fails, and schedules a retry with the error recorded.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, attempts, error): (String, i64, Option<String>) = app.with_conn(|c| {
            outbox::table.select((outbox::status, outbox::attempts, outbox::last_error)).first(c).unwrap()
        });
        if attempts >= 1 && error.is_some() {
            assert_eq!(status, "queued", "a connection failure is transient");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no delivery attempt recorded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mid: String = app.with_conn(|c| {
        vestibule::db::schema::invitations::table
            .select(vestibule::db::schema::invitations::membership_id)
            .first(c)
            .unwrap()
    });
    let (_, page) = admin.get_text(&format!("/o/acme/admin/users/{mid}")).await;
    assert!(page.contains("Last delivery error"), "the guest page shows the failure: {page}");

    // The server comes back on the same port: the invitation arrives, once.
    app.smtp = SmtpSink::start(app.smtp.port).await;
    let mail = app.smtp.wait_for("pat@partner.test").await;
    assert!(mail.redeem_link().contains("/redeem/"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let (text, html) = loop {
        let (status, text, html): (String, Option<String>, Option<String>) = app.with_conn(|c| {
            outbox::table.select((outbox::status, outbox::body_text, outbox::body_html)).first(c).unwrap()
        });
        if status == "sent" {
            break (text, html);
        }
        assert!(tokio::time::Instant::now() < deadline, "still {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(text.is_none() && html.is_none(), "the body holding the token is dropped once sent");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.smtp.count_for("pat@partner.test"), 1);
}

crate::on_both_databases!(db: delivered_once_smtp_is_back);

/// A lease that ran out (a worker died mid-send) is claimed again and the mail goes out;
/// a live lease is respected.
async fn expired_lease_is_reclaimed() {
    let app = TestApp::start(Db::Sqlite).await.unwrap();
    let admin = app.admin().await;
    crate::redeem::invite_by_email(&app, &admin, "pat@partner.test").await;
    // The mail has arrived; wait until the worker has also recorded it as sent.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.with_conn(|c| outbox::table.select(outbox::status).first::<String>(c).unwrap()) != "sent" {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Pretend another worker claimed the row and is still sending it.
    app.with_conn(|c| {
        diesel::update(outbox::table)
            .set((
                outbox::status.eq("sending"),
                outbox::lease_until.eq(Some(vestibule::db::now() + time::Duration::minutes(5))),
                outbox::body_text.eq(Some("Lease test")),
                outbox::body_html.eq(Some("<p>Lease test</p>")),
            ))
            .execute(c)
            .unwrap();
        assert!(vestibule::mail::worker::claim(c, 10).unwrap().is_empty(), "a live lease is respected");
    });
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(app.smtp.count_for("pat@partner.test"), 1, "nobody else sends a leased row");
    // That worker died: its lease runs out and the running worker sends the mail.
    app.with_conn(|c| {
        diesel::update(outbox::table)
            .set(outbox::lease_until.eq(Some(vestibule::db::now() - time::Duration::seconds(1))))
            .execute(c)
            .unwrap()
    });
    let mail = app.smtp.wait_for_nth("pat@partner.test", 2).await;
    assert!(mail.text().contains("Lease test"));
    let message_ids: Vec<String> = app.smtp.all().iter().filter_map(|m| m.header("Message-ID")).collect();
    assert_eq!(message_ids[0], message_ids[1], "a retried mail keeps its Message-ID");
}

/// A worker holds a row by a short lease in its name: only it renews the lease, and when it
/// stops it releases the row at once (not counted as an attempt), so a running worker sends it
/// again within moments, with the same Message-ID.
async fn short_leases_renewed_by_their_holder_and_released_at_stop(app: TestApp) {
    use vestibule::mail::worker;
    let admin = app.admin().await;
    crate::redeem::invite_by_email(&app, &admin, "pat@partner.test").await;
    app.wait_mail_settled().await;
    let attempts_before: i64 = app.with_conn(|c| outbox::table.select(outbox::attempts).first(c).unwrap());
    // Pretend worker "a" claimed the row and is sending it.
    app.with_conn(|c| {
        diesel::update(outbox::table)
            .set((
                outbox::status.eq("sending"),
                outbox::claimed_by.eq(Some("worker-a")),
                outbox::lease_until.eq(Some(vestibule::db::now() + worker::LEASE)),
                outbox::attempts.eq(attempts_before + 1),
                outbox::body_text.eq(Some("Lease test")),
                outbox::body_html.eq(Some("<p>Lease test</p>")),
            ))
            .execute(c)
            .unwrap();
    });
    assert!(worker::LEASE <= time::Duration::seconds(30), "a dead worker's rows are taken over within seconds");
    app.with_conn(|c| {
        assert!(worker::claim(c, 10).unwrap().is_empty(), "a live lease is respected");
        assert_eq!(worker::renew(c, "worker-b").unwrap(), 0, "only the holder renews");
        assert_eq!(worker::renew(c, "worker-a").unwrap(), 1);
        let lease: Option<time::PrimitiveDateTime> = outbox::table.select(outbox::lease_until).first(c).unwrap();
        assert!(lease.unwrap() <= vestibule::db::now() + worker::LEASE);
        assert_eq!(worker::release(c, "worker-b").unwrap(), 0);
        assert_eq!(worker::release(c, "worker-a").unwrap(), 1, "worker a stops: its row is released at once");
    });
    let mail = app.smtp.wait_for_nth("pat@partner.test", 2).await;
    assert!(mail.text().contains("Lease test"));
    let message_ids: Vec<String> = app.smtp.all().iter().filter_map(|m| m.header("Message-ID")).collect();
    assert_eq!(message_ids[0], message_ids[1], "sent again with the same Message-ID");
    app.wait_mail_settled().await;
    let (attempts, holder): (i64, Option<String>) =
        app.with_conn(|c| outbox::table.select((outbox::attempts, outbox::claimed_by)).first(c).unwrap());
    assert_eq!(attempts, attempts_before + 1, "the released claim was not counted as an attempt");
    assert_eq!(holder, None);
}

crate::on_both_databases!(short_leases_renewed_by_their_holder_and_released_at_stop);

/// The SQLite file locked by another process: a write answers 503 with Retry-After and the
/// friendly page, nothing is half-written; once the lock is gone the same request works,
/// without a restart.
async fn locked_database_answers_503_then_recovers() {
    use diesel::Connection;
    use vestibule::db::schema::invitations;
    let app = TestApp::start(Db::Sqlite).await.unwrap();
    let admin = app.admin().await;
    let path = app.settings.database_url.trim_start_matches("sqlite://").to_owned();
    let mut other = diesel::SqliteConnection::establish(&path).unwrap();
    diesel::sql_query("BEGIN IMMEDIATE").execute(&mut other).unwrap();
    let res = admin.post("/o/acme/admin/invite", &[("email", "pat@partner.test"), ("send_email", "on")]).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers().get("retry-after").unwrap(), "10");
    assert!(res.text().await.unwrap().contains("Temporarily unavailable"), "the friendly page");
    let n: i64 = app.with_conn(|c| invitations::table.count().get_result(c).unwrap());
    assert_eq!(n, 0, "nothing half-written");
    diesel::sql_query("COMMIT").execute(&mut other).unwrap();
    let res = admin.post("/o/acme/admin/invite", &[("email", "pat@partner.test"), ("send_email", "on")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "works again without a restart");
    assert_eq!(app.browser().get("/readyz").await.status(), StatusCode::OK);
}

crate::plain_tests!(expired_lease_is_reclaimed, locked_database_answers_503_then_recovers);
