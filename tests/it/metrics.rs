//! `/metrics` (issue 13 §5): off by default; on its own listener, or on the main port with the
//! bearer token; requests by route pattern and status, latency, sign-in failures, the mail queue
//! and its oldest message, bulk rows.

use reqwest::StatusCode;

use crate::helpers::{Db, Options, TestApp};

const TOKEN: &str = "scrape-token-0123456789";

/// The value of the series `name{labels}` in an exposition.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().split(' ').next()?.parse().ok()))
}

async fn metrics_are_off_unless_configured(app: TestApp) {
    let res = app.browser().get("/metrics").await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = reqwest::Client::new().get(format!("{}/metrics", app.base)).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND, "no token configured: nothing there");
}

async fn metrics_count_what_operators_watch(db: Db) {
    let opts =
        Options { smtp_down: true, metrics_listener: true, metrics_token: Some(TOKEN.into()), ..Options::default() };
    let app = TestApp::start_with(db, opts).await.expect("database");
    app.create_org("Acme Corp", "acme", "admin@acme.test");
    let b = app.browser();
    for _ in 0..2 {
        let res = b.post("/signin", &[("email", "admin@acme.test"), ("password", "wrong password here")]).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    b.sign_in("admin@acme.test", crate::helpers::PASSWORD).await;
    let res = b.post("/o/acme/admin/invite", &[("email", "pat@partner.test"), ("send_email", "on")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(b.get("/no/such/page/4711").await.status(), StatusCode::NOT_FOUND);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    // The main port wants the token.
    let client = reqwest::Client::new();
    let url = format!("{}/metrics", app.base);
    assert_eq!(client.get(&url).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let wrong = client.get(&url).bearer_auth("scrape-token-0123456780").send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.headers().get("www-authenticate").map(|v| v.to_str().unwrap()), Some("Bearer"), "RFC 6750");
    let res = client.get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().get("content-type").unwrap().to_str().unwrap().starts_with("application/openmetrics-text"));
    let text = res.text().await.unwrap();
    // The metrics listener serves the same without a token, and nothing else.
    let listener = app.metrics_base.clone().unwrap();
    let res = client.get(format!("{listener}/metrics")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let from_listener = res.text().await.unwrap();
    assert_eq!(client.get(format!("{listener}/signin")).send().await.unwrap().status(), StatusCode::NOT_FOUND);

    for t in [&text, &from_listener] {
        assert_eq!(value(t, r#"vestibule_http_requests_total{method="POST",route="/signin",status="401"}"#), Some(2.0));
        assert_eq!(value(t, r#"vestibule_http_requests_total{method="POST",route="/signin",status="303"}"#), Some(1.0));
        assert_eq!(
            value(t, r#"vestibule_http_requests_total{method="POST",route="/o/{org}/admin/invite",status="303"}"#),
            Some(1.0)
        );
        assert_eq!(value(t, r#"vestibule_signin_failures_total{method="POST",route="/signin"}"#), Some(2.0));
        assert_eq!(
            value(t, r#"vestibule_http_request_duration_seconds_count{method="POST",route="/signin"}"#),
            Some(3.0)
        );
        assert!(
            t.contains(r#"vestibule_http_request_duration_seconds_bucket{le="+Inf",method="POST",route="/signin"} 3"#)
                || t.contains(
                    r#"vestibule_http_request_duration_seconds_bucket{method="POST",route="/signin",le="+Inf"} 3"#
                )
        );
        assert_eq!(value(t, r#"vestibule_mail_queue{status="queued"}"#), Some(1.0), "the SMTP server is down");
        assert!(value(t, "vestibule_mail_oldest_queued_age_seconds").unwrap() > 0.0);
        assert_eq!(value(t, r#"vestibule_bulk_rows{status="created"}"#), Some(0.0), "no bulk job yet");
        // Unknown paths are one series, never the path itself.
        assert!(t.contains(r#"route="unmatched",status="404""#));
        assert!(!t.contains("4711"));
    }
}

crate::on_both_databases!(metrics_are_off_unless_configured);
crate::on_both_databases!(db: metrics_count_what_operators_watch);
