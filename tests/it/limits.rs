//! Every input is capped before anything reads it (issue 13 §1): a form field over the general
//! cap is refused by the one place form bodies are read (the CSRF middleware) with a 413 page,
//! a JSON string over its cap by the one place API bodies are parsed, and a password over
//! 1 024 bytes never reaches Argon2. Nothing refused is stored.

use diesel::prelude::*;
use reqwest::StatusCode;
use vestibule::db::schema::{apps, org_groups, users};

use crate::groups_apps::post_multipart;
use crate::helpers::{PASSWORD, TestApp};
use crate::on_both_databases;

/// Every form of the app with its fields (ids filled in by the test).
pub fn forms(group: &str, app_id: &str, uid: &str) -> Vec<(String, Vec<&'static str>)> {
    let o = "/o/acme";
    vec![
        ("/signin".into(), vec!["email", "password", "next"]),
        ("/lang".into(), vec!["lang", "next"]),
        ("/account/profile".into(), vec!["display_name", "language"]),
        ("/account/password".into(), vec!["current_password", "new_password", "confirm_password"]),
        (
            format!("{o}/admin/invite"),
            vec!["email", "display_name", "message", "redirect_url", "user_type", "language"],
        ),
        (format!("{o}/invite"), vec!["email", "display_name", "message", "redirect_url"]),
        (format!("{o}/admin/groups"), vec!["name", "description"]),
        (format!("{o}/admin/groups/{group}"), vec!["name", "description"]),
        (format!("{o}/admin/groups/{group}/members"), vec!["email", "role"]),
        (format!("{o}/admin/apps/{app_id}/assign"), vec!["email"]),
        (format!("{o}/admin/apps/{app_id}/assign-group"), vec!["group_id"]),
        (
            format!("{o}/admin/apps/{app_id}/oidc"),
            vec!["redirect_uris", "post_logout_redirect_uris", "initiate_login_uri", "access_token_ttl"],
        ),
        (
            format!("{o}/admin/settings"),
            vec![
                "name",
                "privacy_url",
                "invite_lifetime_days",
                "redirect_allowlist",
                "domain_list",
                "invites_per_hour",
            ],
        ),
        (format!("{o}/admin/api-keys"), vec!["name", "expires"]),
        (format!("{o}/admin/users/{uid}/end-date"), vec!["access_ends_at"]),
        (format!("{o}/admin/users/{uid}/sponsor"), vec!["sponsor"]),
        (format!("{o}/sponsor/{uid}"), vec!["email"]),
        ("/password/sometoken".into(), vec!["password", "confirm"]),
        ("/setup".into(), vec!["token", "name", "slug", "admin_name", "admin_email", "password", "confirm"]),
        ("/redeem/sometoken/register".into(), vec!["display_name", "password", "confirm"]),
        ("/redeem/sometoken/code".into(), vec!["code"]),
    ]
}

async fn every_form_refuses_a_huge_field_and_stores_nothing(app: TestApp) {
    let admin = app.admin().await;
    let res = admin.post("/o/acme/admin/groups", &[("name", "Team"), ("description", "")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let app_fields = [("name", "Wiki"), ("url", "https://wiki.acme.test"), ("description", "")];
    let res = post_multipart(&admin, "/o/acme/admin/apps", &app_fields, None).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let (group, app_id, uid) = app.with_conn(|c| {
        let g: String = org_groups::table.select(org_groups::id).first(c).unwrap();
        let a: String = apps::table.select(apps::id).first(c).unwrap();
        let u: String = users::table.select(users::id).first(c).unwrap();
        (g, a, u)
    });
    let before = app.row_counts();
    let huge = "x".repeat(100_000);
    let just_over = "é".repeat(vestibule::web::csrf::MAX_FIELD_BYTES / 2 + 1);
    for (path, fields) in forms(&group, &app_id, &uid) {
        for (i, field) in fields.iter().enumerate() {
            for value in [huge.as_str(), just_over.as_str()] {
                let form: Vec<(&str, &str)> =
                    fields.iter().enumerate().map(|(j, f)| (*f, if i == j { value } else { "a" })).collect();
                let res = admin.post(&path, &form).await;
                let status = res.status();
                let body = res.text().await.unwrap();
                // Lists (one item a line) may be longer than other fields, but not huge: a long
                // one is the form shown again with its field error.
                let is_list = field.contains("redirect_uris") || ["redirect_allowlist", "domain_list"].contains(field);
                let expected = if is_list && value.len() < 60_000 {
                    StatusCode::UNPROCESSABLE_ENTITY
                } else {
                    StatusCode::PAYLOAD_TOO_LARGE
                };
                assert_eq!(status, expected, "{path} with {} bytes in {field}", value.len());
                assert!(body.contains("<html"), "a page, not a bare error, for {path}");
            }
        }
    }
    // The forms with a file (multipart) have the same cap on their text fields.
    for path in ["/o/acme/admin/apps".to_owned(), format!("/o/acme/admin/apps/{app_id}")] {
        for field in ["name", "url", "description"] {
            for value in [huge.as_str(), just_over.as_str()] {
                let form: Vec<(&str, &str)> =
                    app_fields.iter().map(|(f, v)| (*f, if *f == field { value } else { *v })).collect();
                let res = post_multipart(&admin, &path, &form, None).await;
                assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE, "{path} with {} bytes in {field}", value.len());
            }
        }
    }
    // Many fields (a repeated name counts each time).
    let many: Vec<(&str, &str)> = (0..vestibule::web::csrf::MAX_FIELDS + 1).map(|_| ("groups", "g")).collect();
    assert_eq!(admin.post("/o/acme/admin/invite", &many).await.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // A NUL character anywhere (form field, URL, JSON string) is refused with 400.
    let res = admin.post("/o/acme/admin/groups", &[("name", "Te\0am"), ("description", "")]).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(admin.get("/o/acme/admin/users?q=%00").await.status(), StatusCode::BAD_REQUEST);
    assert_eq!(admin.get("/o/acme/admin/users/a%00b").await.status(), StatusCode::NOT_FOUND);
    assert_eq!(admin.get("/api/v1.0/users/a%00b").await.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.row_counts(), before, "nothing stored for refused input");
    // The admin's session still works.
    assert_eq!(admin.get("/o/acme/admin").await.status(), StatusCode::OK);
}

async fn long_passwords_are_refused_before_argon2(app: TestApp) {
    app.create_org("Acme Corp", "acme", "admin@acme.test");
    let b = app.browser();
    // Under the form cap but over the password cap: simply wrong, quickly.
    let long = "p".repeat(vestibule::auth::password::MAX_PASSWORD_BYTES + 1);
    let started = std::time::Instant::now();
    let res = b.post("/signin", &[("email", "admin@acme.test"), ("password", &long)]).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // The right password still works (one failure counted, below the limit).
    b.sign_in("admin@acme.test", PASSWORD).await;
    // A new password that long is a field error, the form shown again.
    let res = b
        .post(
            "/account/password",
            &[("current_password", PASSWORD), ("new_password", &long), ("confirm_password", &long)],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.text().await.unwrap().contains("aria-invalid=\"true\""));
    let b2 = app.browser();
    b2.sign_in("admin@acme.test", PASSWORD).await;
}

async fn api_strings_are_capped_before_use(app: TestApp) {
    use vestibule::db::schema::invitations;
    app.create_org("Acme Corp", "acme", "admin@acme.test");
    let key = app.with_conn(|c| vestibule::services::api_keys::create_for_cli(c, "acme", "k", None).unwrap());
    let client = reqwest::Client::new();
    let url = format!("{}/api/v1.0/invitations", app.base);
    let long = "m".repeat(vestibule::web::api::MAX_JSON_STRING_BYTES + 1);
    let bodies = [
        serde_json::json!({ "invitedUserEmailAddress": "pat\u{0}@partner.test", "inviteRedirectUrl": "https://x.test" }),
        serde_json::json!({ "invitedUserEmailAddress": format!("{long}@partner.test"), "inviteRedirectUrl": "https://x.test" }),
        serde_json::json!({ "invitedUserEmailAddress": "pat@partner.test", "inviteRedirectUrl": "https://x.test",
            "invitedUserMessageInfo": { "customizedMessageBody": long } }),
        serde_json::json!({ "invitedUserEmailAddress": "pat@partner.test", "inviteRedirectUrl": "https://x.test", long.clone(): 1 }),
    ];
    let before = app.row_counts();
    for body in bodies {
        let res = client.post(&url).bearer_auth(&key).json(&body).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        let err: serde_json::Value = res.json().await.unwrap();
        assert!(err["error"]["message"].as_str().unwrap().contains("longer than"), "{err}");
    }
    let res = client
        .post(&url)
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(vec![b' '; 2 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let after = app.row_counts();
    // The API rate counter counts requests; nothing else changes.
    let changed: Vec<_> = before.iter().zip(&after).filter(|(b, a)| b != a).map(|(b, _)| b.0.clone()).collect();
    assert!(changed.iter().all(|t| t == "rate_counters"), "{changed:?}");
    assert_eq!(app.with_conn(|c| invitations::table.count().get_result::<i64>(c).unwrap()), 0);
}

on_both_databases!(
    every_form_refuses_a_huge_field_and_stores_nothing,
    long_passwords_are_refused_before_argon2,
    api_strings_are_capped_before_use
);
