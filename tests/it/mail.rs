//! Mail delivery: the outbox survives an SMTP outage, and sent bodies are dropped.

use std::time::Duration;

use diesel::prelude::*;
use reqwest::StatusCode;
use vestibule::db::schema::outbox;

use crate::helpers::{Db, Options, PASSWORD, TestApp};
use crate::smtp::SmtpSink;

async fn delivered_once_smtp_is_back(db: Db) {
    let Some(mut app) = TestApp::start_with(db, Options { smtp_down: true, ..Options::default() }).await else {
        return;
    };
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_once_smtp_is_back_sqlite() {
    delivered_once_smtp_is_back(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_once_smtp_is_back_postgres() {
    delivered_once_smtp_is_back(Db::Postgres).await;
}

/// A lease that ran out (a worker died mid-send) is claimed again and the mail goes out;
/// a live lease is respected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
