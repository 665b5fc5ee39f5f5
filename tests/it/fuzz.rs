//! Bad input never gets a 500 (issue 13 §4): random and hostile bytes (control characters, huge
//! values, invalid UTF-8, wrong types, duplicated and missing fields) to every form, every API
//! endpoint and the query strings of every page, with a valid session, CSRF token and API key.
//! Asserts: no 5xx, no dropped connection, no panic in the app's threads, and nothing stored for
//! a refused request (only the audit of a refusal and the counters of limits may change).
//!
//! Seeded: the seed is printed; `VESTIBULE_FUZZ_SEED=<n>` replays a run. Bounded: it stops after
//! `VESTIBULE_FUZZ_SECS` seconds (default 10) per database, or `VESTIBULE_FUZZ_MAX` requests
//! (default 1 500).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use reqwest::StatusCode;
use vestibule::db::schema::{apps, memberships, org_groups, users};

use crate::helpers::{Browser, TestApp};

/// A small, seedable generator (xorshift64*): the run is the same for the same seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// A hostile value, as raw bytes (not necessarily UTF-8).
fn hostile(rng: &mut Rng) -> Vec<u8> {
    const FIXED: &[&str] = &[
        "",
        " ",
        "\0",
        "a\0b",
        "\t\r\n",
        "\u{0b}\u{0c}\u{7f}",
        "\u{202e}evil\u{202d}",
        "\u{feff}",
        "ﬀ🙂\u{0301}\u{0301}",
        "-1",
        "0",
        "99999999999999999999999999",
        "1e309",
        "NaN",
        "true",
        "null",
        "[]",
        "{}",
        "' OR 1=1 --",
        "\"; DROP TABLE users; --",
        "../../../../etc/passwd",
        "<script>alert(1)</script>",
        "javascript:alert(1)",
        "//evil.test",
        "/\\evil.test",
        "http://[::1]:0/",
        "%00%0d%0a",
        "a@b",
        "@",
        "x@y.z",
        "admin@acme.test",
        "2026-13-45",
        "9999-12-31",
        "role",
        "admin",
        "owner",
        "member",
        "guest",
    ];
    match rng.below(6) {
        0 | 1 => FIXED[rng.below(FIXED.len())].as_bytes().to_vec(),
        // Random bytes, invalid UTF-8 included.
        2 => (0..rng.below(64) + 1).map(|_| rng.next() as u8).collect(),
        // Control characters.
        3 => (0..rng.below(32) + 1).map(|_| (rng.next() % 32) as u8).collect(),
        // Long: near and over the caps.
        4 => {
            let len = *rng.pick(&[255, 256, 1025, 4096, 8191, 8193, 20_000, 70_000]);
            vec![b"ax@.\xff"[rng.below(5)]; len]
        }
        // A plausible value with a hostile tail.
        _ => {
            let mut v = FIXED[rng.below(FIXED.len())].as_bytes().to_vec();
            v.extend((0..rng.below(8)).map(|_| rng.next() as u8));
            v
        }
    }
}

/// Percent-encodes every byte outside the unreserved set (so invalid UTF-8 travels as `%FF`).
fn encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(b) {
                (*b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A form body for `fields`: each field hostile, sometimes missing, sometimes repeated, sometimes
/// an extra unknown field; the CSRF token always there.
fn form_body(rng: &mut Rng, fields: &[&str], csrf: &str) -> String {
    let mut parts = Vec::new();
    for f in fields {
        if rng.chance(10) {
            continue;
        }
        for _ in 0..if rng.chance(15) { 2 + rng.below(3) } else { 1 } {
            parts.push(format!("{}={}", encode(f.as_bytes()), encode(&hostile(rng))));
        }
    }
    if rng.chance(10) {
        parts.push(format!("{}={}", encode(&hostile(rng)), encode(&hostile(rng))));
    }
    parts.push(format!("csrf_token={csrf}"));
    if rng.chance(5) {
        parts.push("csrf_token=".into());
    }
    parts.join("&")
}

/// A JSON body: the invitation's fields with hostile values of any type, or not JSON at all.
fn json_body(rng: &mut Rng) -> Vec<u8> {
    if rng.chance(10) {
        return hostile(rng);
    }
    let names = [
        "invitedUserEmailAddress",
        "inviteRedirectUrl",
        "sendInvitationMessage",
        "invitedUserDisplayName",
        "invitedUserType",
        "invitedUserMessageInfo",
        "ccRecipients",
        "customizedMessageBody",
        "messageLanguage",
        "x",
    ];
    let mut obj = Vec::new();
    for _ in 0..rng.below(6) + 1 {
        let name = rng.pick(&names).to_string();
        let value = match rng.below(7) {
            0 => serde_json::Value::Null,
            1 => serde_json::json!(rng.next() as i64),
            2 => serde_json::json!(rng.chance(50)),
            3 => serde_json::json!([String::from_utf8_lossy(&hostile(rng))]),
            4 => serde_json::json!({ "customizedMessageBody": String::from_utf8_lossy(&hostile(rng)),
                "ccRecipients": [{ "emailAddress": { "address": String::from_utf8_lossy(&hostile(rng)) } }] }),
            5 => serde_json::json!(1.5e300),
            _ => serde_json::json!(String::from_utf8_lossy(&hostile(rng))),
        };
        // Written by hand so that a key may be repeated.
        obj.push(format!("{}:{}", serde_json::json!(name), value));
    }
    format!("{{{}}}", obj.join(",")).into_bytes()
}

static APP_PANICS: AtomicUsize = AtomicUsize::new(0);

/// Counts panics on the app's threads (HTTP workers, the blocking pool), keeping the usual report.
fn count_app_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let name = std::thread::current().name().unwrap_or("").to_owned();
            if name.starts_with("actix") || name.starts_with("tokio-runtime-worker") {
                APP_PANICS.fetch_add(1, Ordering::SeqCst);
            }
            previous(info);
        }));
    });
}

/// Tables that a refused request may still change: the audit of a refusal, the counters of
/// limits (a failed sign-in counts), sessions.
const MAY_CHANGE_ON_REFUSAL: &[&str] = &["audit_events", "rate_counters", "idempotency_keys"];

async fn random_and_hostile_input_never_gets_a_5xx(app: TestApp) {
    count_app_panics();
    let seed: u64 = std::env::var("VESTIBULE_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    }) | 1;
    let secs: u64 = std::env::var("VESTIBULE_FUZZ_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let max: usize = std::env::var("VESTIBULE_FUZZ_MAX").ok().and_then(|s| s.parse().ok()).unwrap_or(1500);
    eprintln!("fuzz seed {seed} (replay with VESTIBULE_FUZZ_SEED={seed})");
    let mut rng = Rng(seed);

    let admin = app.admin().await;
    assert_eq!(
        crate::groups_apps::post_multipart(
            &admin,
            "/o/acme/admin/apps",
            &[("name", "Wiki"), ("url", "https://wiki.acme.test"), ("description", "")],
            None
        )
        .await
        .status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        admin.post("/o/acme/admin/groups", &[("name", "Team"), ("description", "")]).await.status(),
        StatusCode::SEE_OTHER
    );
    crate::redeem::invite_by_email(&app, &admin, "pat@partner.test").await;
    let key = app.with_conn(|c| vestibule::services::api_keys::create_for_cli(c, "acme", "k", None).unwrap());
    let (group, app_id, guest) = app.with_conn(|c| {
        let g: String = org_groups::table.select(org_groups::id).first(c).unwrap();
        let a: String = apps::table.select(apps::id).first(c).unwrap();
        // The invited guest (not the admin: the fuzz must not block its own session).
        let u: String = users::table
            .inner_join(memberships::table)
            .filter(users::email.eq("pat@partner.test"))
            .select(users::id)
            .first(c)
            .unwrap();
        (g, a, u)
    });
    let csrf = admin.csrf().await;
    let o = "/o/acme";
    let mut forms = crate::limits::forms(&group, &app_id, &guest);
    // Forms without fields of their own (the ids are in the path).
    for (path, fields) in [
        (format!("{o}/admin/users/{guest}/role"), vec!["role"]),
        (format!("{o}/admin/users/{guest}/block"), vec![]),
        (format!("{o}/admin/users/{guest}/extend"), vec![]),
        (format!("{o}/admin/groups/{group}/members/x/owner"), vec!["owner"]),
        (format!("{o}/admin/invitations/x/resend"), vec![]),
        (format!("{o}/admin/bulk/x/start"), vec![]),
        (format!("{o}/nope/admin/settings"), vec!["name"]),
    ] {
        forms.push((path, fields));
    }
    let pages = [
        "/signin?next=",
        "/o/acme/admin/users?q=",
        "/o/acme/admin/users?status=",
        "/o/acme/admin/users?cursor=",
        "/o/acme/admin/audit?action=",
        "/o/acme/admin/audit?cursor=",
        "/o/acme/admin/audit.csv?from=",
        "/o/acme/admin/invite?email=",
        "/o/acme/admin/groups?q=",
        "/o/acme/admin/bulk/",
        "/o/acme/admin/users/",
        "/o/acme/apps?q=",
        "/redeem/",
        "/password/",
        "/setup?token=",
        "/o/acme/oidc/authorize?client_id=",
    ];
    let api = reqwest::Client::new();
    let started = Instant::now();
    let mut sent = 0;
    let mut refused = 0;
    while started.elapsed() < Duration::from_secs(secs) && sent < max {
        let before = app.row_counts();
        let kind = rng.below(10);
        let (what, result) = if kind < 6 {
            let (path, fields) = rng.pick(&forms).clone();
            let body = form_body(&mut rng, &fields, &csrf);
            let res = admin
                .client
                .post(format!("{}{path}", app.base))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body.clone())
                .send()
                .await;
            (format!("POST {path} {}", &body[..body.len().min(300)]), res)
        } else if kind < 8 {
            let page = rng.pick(&pages).to_string();
            // URLs stay under 8 KiB (a client's and a proxy's usual limit).
            let mut v = hostile(&mut rng);
            v.truncate(2000);
            let url = format!("{}{page}{}", app.base, encode(&v));
            (format!("GET {}", &url[..url.len().min(300)]), admin.client.get(url).send().await)
        } else {
            let mut v = hostile(&mut rng);
            v.truncate(2000);
            let v = encode(&v);
            let choices = [
                ("POST", "/api/v1.0/invitations".to_string()),
                ("GET", format!("/api/v1.0/users?$top={v}")),
                ("GET", format!("/api/v1.0/users?$filter={v}")),
                ("GET", format!("/api/v1.0/users?$select={v}")),
                ("GET", format!("/api/v1.0/users/{v}")),
                ("GET", format!("/api/v1.0/invitations/{v}")),
                ("DELETE", format!("/api/v1.0/users/{v}")),
            ];
            let (method, path) = rng.pick(&choices).clone();
            let url = format!("{}{path}", app.base);
            let body = json_body(&mut rng);
            let mut req = match method {
                "POST" => api.post(&url),
                "DELETE" => api.delete(&url),
                _ => api.get(&url),
            }
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(body.clone());
            if rng.chance(20) {
                req = req.header("idempotency-key", encode(&hostile(&mut rng)));
            }
            (format!("{method} {path} {}", String::from_utf8_lossy(&body[..body.len().min(300)])), req.send().await)
        };
        sent += 1;
        let res = result.unwrap_or_else(|e| panic!("no answer (seed {seed}) to {what}: {}", e.without_url()));
        let status = res.status();
        if status.is_server_error() {
            let body = res.text().await.unwrap_or_default();
            panic!("{status} (seed {seed}) for {what}: {}", &body[..body.len().min(500)]);
        }
        if status.is_client_error() {
            refused += 1;
            let after = app.row_counts();
            for ((table, b), (_, a)) in before.iter().zip(&after) {
                assert!(
                    a == b || MAY_CHANGE_ON_REFUSAL.contains(&table.as_str()),
                    "{table}: {b} → {a} rows after a refused request (seed {seed}): {what}"
                );
            }
        }
        // The session must survive (an accepted request may have been valid).
        if rng.chance(5) {
            let res = admin.get("/o/acme/admin").await;
            assert!(res.status() == StatusCode::OK, "the admin's session is gone (seed {seed}) after {what}");
        }
    }
    assert_eq!(APP_PANICS.load(Ordering::SeqCst), 0, "panics in the app's threads (seed {seed})");
    eprintln!("fuzz: {sent} requests, {refused} refused, in {:?}", started.elapsed());
    assert!(sent >= 50, "too few requests to mean anything: {sent}");
    let _ = Browser::new(&app.base);
}

crate::on_both_databases!(random_and_hostile_input_never_gets_a_5xx);
