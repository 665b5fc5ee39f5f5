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

async fn thousand_invitations_round_robin_each_mailed_once(app: TestApp) {
    use diesel::prelude::*;
    use vestibule::db::schema::memberships;
    const N: usize = 1000;
    let admin = app.admin().await;
    let allow = [("redirect_allowlist", "https://app.example"), ("invites_per_hour", "10000")];
    assert_eq!(admin.save_settings(&allow).await.status(), StatusCode::SEE_OTHER);
    let bases = three_instances(&app);
    // Two keys: each stays under the per-key rate of 600 requests a minute.
    let keys: Vec<String> = (0..2)
        .map(|_| app.with_conn(|c| vestibule::services::api_keys::create_for_cli(c, "acme", "k", None).unwrap()))
        .collect();
    let client = reqwest::Client::new();
    for chunk in (0..N).collect::<Vec<_>>().chunks(50) {
        let sends = chunk.iter().map(|&i| {
            let body = serde_json::json!({
                "invitedUserEmailAddress": format!("guest{i}@partner.test"),
                "inviteRedirectUrl": "https://app.example",
                "sendInvitationMessage": true,
            });
            client.post(format!("{}/api/v1.0/invitations", bases[i % 3])).bearer_auth(&keys[i % 2]).json(&body).send()
        });
        for res in futures_util::future::join_all(sends).await {
            assert_eq!(res.unwrap().status(), StatusCode::CREATED);
        }
    }
    app.wait_mail_settled_within(std::time::Duration::from_secs(90)).await;
    let mails = app.smtp.all();
    let invitations: Vec<_> = mails
        .iter()
        .filter(|m| m.rcpt.iter().any(|r| r.starts_with("guest") && r.ends_with("@partner.test")))
        .collect();
    assert_eq!(invitations.len(), N, "each invitation reached the SMTP listener once");
    let mut ids: Vec<String> = invitations.iter().filter_map(|m| m.header("Message-ID")).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), N, "one Message-ID per invitation");
    for i in [0, 1, 2, 499, N - 1] {
        assert_eq!(app.smtp.count_for(&format!("guest{i}@partner.test")), 1);
    }

    // The daily job, run by the three instances at once, reminds the sponsor once per end date.
    const ENDING: usize = 150;
    let soon = vestibule::db::now() + time::Duration::days(10);
    app.with_conn(|c| {
        let ids: Vec<String> = memberships::table
            .filter(memberships::invited_by.is_not_null())
            .select(memberships::id)
            .order(memberships::id)
            .limit(ENDING as i64)
            .load(c)
            .unwrap();
        diesel::update(memberships::table.filter(memberships::id.eq_any(ids)))
            .set(memberships::access_ends_at.eq(Some(soon)))
            .execute(c)
            .unwrap();
    });
    let before = app.smtp.all().len();
    let public = url::Url::parse(&app.base).unwrap();
    let now = vestibule::db::now();
    let runs = (0..3).map(|_| {
        let (pool, public) = (app.pool.clone(), public.clone());
        tokio::task::spawn_blocking(move || {
            let mut c = pool.get().unwrap();
            vestibule::services::lifecycle::run_daily(&mut c, now, &public).unwrap().reminders
        })
    });
    let reminded: usize = futures_util::future::join_all(runs).await.into_iter().map(|r| r.unwrap()).sum();
    assert_eq!(reminded, ENDING, "each reminder claimed by one run");
    // Wake the instances' mail workers (they also poll).
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    app.wait_mail_settled_within(std::time::Duration::from_secs(90)).await;
    let after = app.smtp.all();
    assert_eq!(after.len() - before, ENDING, "each reminder sent once");
    let mut ids: Vec<String> = after[before..].iter().filter_map(|m| m.header("Message-ID")).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), ENDING);
}

on_both_databases!(thousand_invitations_round_robin_each_mailed_once);
