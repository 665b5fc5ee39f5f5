//! CSRF, sessions, throttling, headers.

use diesel::prelude::*;
use reqwest::StatusCode;
use vestibule::db::schema::{invitations, sessions};

use crate::helpers::{PASSWORD, TestApp, location};
use crate::on_both_databases;

async fn post_without_or_with_wrong_csrf_is_refused(app: TestApp) {
    let admin = app.admin().await;
    let fields = [("email", "pat@partner.test"), ("send_email", "on")];
    let res = admin.post_raw("/o/acme/admin/invite", &fields).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let body = res.text().await.unwrap();
    assert!(body.contains("The form expired") && body.contains("Request id"));
    let res = admin.post_raw("/o/acme/admin/invite", &[("email", "pat@partner.test"), ("csrf_token", "forged")]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    // A right token from a foreign origin is refused too.
    let token = admin.csrf().await;
    let res = admin
        .client
        .post(format!("{}/o/acme/admin/invite", app.base))
        .header("Origin", "https://evil.test")
        .form(&[("email", "pat@partner.test"), ("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let n: i64 = app.with_conn(|c| invitations::table.count().get_result(c).unwrap());
    assert_eq!(n, 0, "nothing changed");
    // `Origin: null` is judged by the token alone.
    let res = admin
        .client
        .post(format!("{}/o/acme/admin/invite", app.base))
        .header("Origin", "null")
        .form(&[("email", "pat@partner.test"), ("csrf_token", token.as_str()), ("send_email", "on")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
}

async fn sign_in_answers_alike_and_throttles(app: TestApp) {
    app.create_org("Acme Corp", "acme", "admin@acme.test");
    let b = app.browser();
    let unknown = b.post("/signin", &[("email", "nobody@acme.test"), ("password", "whatever password")]).await;
    let (s1, body1) = (unknown.status(), unknown.text().await.unwrap());
    let known = b.post("/signin", &[("email", "admin@acme.test"), ("password", "whatever password")]).await;
    let (s2, body2) = (known.status(), known.text().await.unwrap());
    assert_eq!(s1, StatusCode::UNAUTHORIZED);
    assert_eq!(s1, s2);
    assert_eq!(
        body1.replace("nobody@acme.test", "X"),
        body2.replace("admin@acme.test", "X"),
        "same page for unknown and known accounts"
    );
    for _ in 0..4 {
        b.post("/signin", &[("email", "admin@acme.test"), ("password", "whatever password")]).await;
    }
    let res = b.post("/signin", &[("email", "admin@acme.test"), ("password", PASSWORD)]).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS, "paused after 5 failures, even with the right password");
    let retry: u64 = res.headers().get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
    assert!(retry > 0 && retry <= 900);
    // Another account from another client is unaffected.
    let other = app.browser();
    let res = other.post("/signin", &[("email", "someone@acme.test"), ("password", "whatever password")]).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let failures: i64 = app.with_conn(|c| {
        vestibule::db::schema::audit_events::table
            .filter(vestibule::db::schema::audit_events::action.eq("signin.failed"))
            .count()
            .get_result(c)
            .unwrap()
    });
    assert_eq!(failures, 7);
}

async fn sessions_are_server_side_and_end_at_sign_out(app: TestApp) {
    let admin = app.admin().await;
    assert_eq!(admin.get("/o/acme/admin").await.status(), StatusCode::OK);
    let n: i64 = app.with_conn(|c| sessions::table.count().get_result(c).unwrap());
    assert_eq!(n, 1);
    // A stolen cookie stops working once the row is gone (idle timeout, sign-out elsewhere...).
    app.with_conn(|c| {
        diesel::update(sessions::table)
            .set(sessions::expires_at.eq(vestibule::db::now() - time::Duration::seconds(1)))
            .execute(c)
            .unwrap()
    });
    assert_eq!(admin.get("/o/acme/admin").await.status(), StatusCode::SEE_OTHER);
    admin.sign_in("admin@acme.test", PASSWORD).await;
    // Absolute timeout: 12 hours after sign-in, however active.
    app.with_conn(|c| {
        diesel::update(sessions::table)
            .set(sessions::created_at.eq(vestibule::db::now() - time::Duration::hours(13)))
            .execute(c)
            .unwrap()
    });
    assert_eq!(admin.get("/o/acme/admin").await.status(), StatusCode::SEE_OTHER);
    admin.sign_in("admin@acme.test", PASSWORD).await;
    let res = admin.post("/signout", &[]).await;
    assert_eq!(location(&res), "/signin");
    let live: i64 = app.with_conn(|c| {
        sessions::table
            .filter(sessions::expires_at.gt(vestibule::db::now()))
            .filter(sessions::created_at.gt(vestibule::db::now() - time::Duration::hours(12)))
            .count()
            .get_result(c)
            .unwrap()
    });
    assert_eq!(live, 0);
    assert_eq!(admin.get("/o/acme/admin").await.status(), StatusCode::SEE_OTHER);
}

async fn headers_and_error_pages(app: TestApp) {
    let b = app.browser();
    let res = b.get("/signin").await;
    let h = res.headers();
    assert!(h.get("content-security-policy").unwrap().to_str().unwrap().contains("frame-ancestors 'none'"));
    assert_eq!(h.get("x-content-type-options").unwrap(), "nosniff");
    assert_eq!(h.get("cache-control").unwrap(), "no-store");
    assert!(h.get("x-request-id").is_some());
    let cookie = h.get("set-cookie").unwrap().to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"));
    let res = b.get("/redeem/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").await;
    assert_eq!(res.headers().get("referrer-policy").unwrap(), "no-referrer");
    let (status, body) = b.get_text("/no/such/page").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("Page not found") && body.contains("Request id"));
    let (status, body) = b.get_text("/healthz").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    let (status, body) = b.get_text("/readyz").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("\"database\":\"ok\""));
    // Open redirects through ?next= are refused.
    app.create_org("Acme Corp", "acme", "admin@acme.test");
    let res =
        b.post("/signin", &[("email", "admin@acme.test"), ("password", PASSWORD), ("next", "//evil.test/x")]).await;
    assert_eq!(location(&res), "/");
}

async fn language_switch_is_remembered(app: TestApp) {
    let admin = app.admin().await;
    let res = admin.post("/lang", &[("lang", "fr"), ("next", "/o/acme/admin")]).await;
    assert_eq!(location(&res), "/o/acme/admin");
    let (_, body) = admin.get_text("/o/acme/admin").await;
    assert!(body.contains("lang=\"fr\"") && body.contains("Vue d"), "{body}");
    let lang: Option<String> = app.with_conn(|c| {
        vestibule::db::schema::users::table
            .filter(vestibule::db::schema::users::email.eq("admin@acme.test"))
            .select(vestibule::db::schema::users::language)
            .first(c)
            .unwrap()
    });
    assert_eq!(lang.as_deref(), Some("fr"));
    // Accept-Language decides for a newcomer.
    let b = app.browser();
    let body = b
        .client
        .get(format!("{}/signin", app.base))
        .header("Accept-Language", "fr-CA, en;q=0.5")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("Connexion") && body.contains("Continuer"), "step 1 of sign-in in French");
}

on_both_databases!(
    post_without_or_with_wrong_csrf_is_refused,
    sign_in_answers_alike_and_throttles,
    sessions_are_server_side_and_end_at_sign_out,
    headers_and_error_pages,
    language_switch_is_remembered,
);

/// A session revoked while one of its requests was still running is not signed back in when
/// that request saves its state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_session_is_not_resurrected() {
    use actix_session::storage::SessionStore;
    let app = TestApp::start(crate::helpers::Db::Sqlite).await.unwrap();
    let store = vestibule::web::session_store::DbSessionStore::new(app.pool.clone());
    let ttl = actix_web::cookie::time::Duration::minutes(30);
    app.create_org("Acme Corp", "acme", "admin@acme.test");
    let uid: String = app
        .with_conn(|c| vestibule::db::schema::users::table.select(vestibule::db::schema::users::id).first(c).unwrap());
    let mut state = std::collections::HashMap::new();
    state.insert("uid".to_string(), format!("\"{uid}\""));
    state.insert("user".to_string(), "{}".to_string());
    state.insert("lang".to_string(), "\"fr\"".to_string());
    let key = store.save(state.clone(), &ttl).await.unwrap();
    app.with_conn(|c| diesel::delete(sessions::table).execute(c).unwrap());
    let new_key = store.update(key, state, &ttl).await.unwrap();
    let loaded = store.load(&new_key).await.unwrap().expect("a fresh session");
    assert!(!loaded.contains_key("uid") && !loaded.contains_key("user"), "identity dropped: {loaded:?}");
    assert_eq!(loaded.get("lang").map(String::as_str), Some("\"fr\""));
    let owned: i64 =
        app.with_conn(|c| sessions::table.filter(sessions::user_id.is_not_null()).count().get_result(c).unwrap());
    assert_eq!(owned, 0);
}

async fn header_injection_and_parameter_pollution_are_refused(app: TestApp) {
    let admin = app.admin().await;
    let res = admin
        .post(
            "/o/acme/admin/invite",
            &[("email", "pat@partner.test"), ("display_name", "Pat\r\nBcc: spy@evil.test"), ("send_email", "on")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let res = admin
        .post(
            "/o/acme/admin/invite",
            &[("email", "pat@partner.test"), ("email", "evil@evil.test"), ("send_email", "on")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let n: i64 = app.with_conn(|c| invitations::table.count().get_result(c).unwrap());
    assert_eq!(n, 0);
    // Script in the message and name is escaped in the email's HTML part, plain in its text part.
    let res = admin
        .post(
            "/o/acme/admin/invite",
            &[
                ("email", "pat@partner.test"),
                ("display_name", "<img src=x onerror=alert(1)>"),
                ("message", "<a href=\"https://evil.test\">click</a><script>x</script>"),
                ("send_email", "on"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let mail = app.smtp.wait_for("pat@partner.test").await;
    assert_eq!(mail.rcpt, vec!["pat@partner.test".to_string()], "exactly one recipient");
    let html = mail.html();
    assert!(!html.contains("<script>") && !html.contains("<img src=x") && !html.contains("href=\"https://evil.test"));
    assert!(mail.text().contains("<script>x</script>"), "the text part is the message as typed");
    let (_, list) = admin.get_text("/o/acme/admin/users").await;
    assert!(!list.contains("<img src=x"), "escaped in the console");
}

on_both_databases!(header_injection_and_parameter_pollution_are_refused);
