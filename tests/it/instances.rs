//! Several identical instances on one database, requests spread round-robin as a load balancer
//! would: every limit is counted once for all of them.

use reqwest::StatusCode;

use crate::helpers::{PASSWORD, TestApp};
use crate::on_both_databases;

/// The app's base URL and two more instances'.
fn three_instances(app: &TestApp) -> Vec<String> {
    vec![app.base.clone(), app.start_instance(), app.start_instance()]
}

async fn signin_throttle_trips_after_five_failures_across_instances(app: TestApp) {
    app.create_org("Acme Corp", "acme", "admin@acme.test");
    let bases = three_instances(&app);
    let first = app.browser();
    let browsers: Vec<_> = bases.iter().map(|b| first.at(b)).collect();
    let mut statuses = Vec::new();
    for i in 0..9 {
        let fields = [("email", "admin@acme.test"), ("password", "wrong password guess")];
        statuses.push(browsers[i % 3].post("/signin", &fields).await.status());
    }
    let failed = statuses.iter().take_while(|s| **s == StatusCode::UNAUTHORIZED).count();
    assert_eq!(failed, 5, "five failures in all, as with one instance: {statuses:?}");
    assert!(statuses[5..].iter().all(|s| *s == StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
    // Even the right password waits, on any instance, with a Retry-After within the window.
    let res = browsers[1].post("/signin", &[("email", "admin@acme.test"), ("password", PASSWORD)]).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = res.headers().get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
    assert!((1..=15 * 60).contains(&wait), "{wait}");
}

async fn api_rate_is_shared_by_instances(app: TestApp) {
    app.create_org("Acme Corp", "acme", "admin@acme.test");
    let key = app.with_conn(|c| vestibule::services::api_keys::create_for_cli(c, "acme", "k", None).unwrap());
    let bases = three_instances(&app);
    let client = reqwest::Client::new();
    let per_minute = usize::try_from(vestibule::web::api::REQUESTS_PER_MINUTE).unwrap();
    for batch in 0..per_minute / 60 {
        let sends = (0..60).map(|i| {
            let url = format!("{}/api/v1.0/users?$top=1", bases[(batch * 60 + i) % 3]);
            client.get(url).bearer_auth(&key).send()
        });
        for res in futures_util::future::join_all(sends).await {
            assert_eq!(res.unwrap().status(), StatusCode::OK);
        }
    }
    for base in &bases {
        let res = client.get(format!("{base}/api/v1.0/users")).bearer_auth(&key).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS, "the allowance is used up on every instance");
        let wait: u64 = res.headers().get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&wait));
    }
}

on_both_databases!(signin_throttle_trips_after_five_failures_across_instances, api_rate_is_shared_by_instances);
