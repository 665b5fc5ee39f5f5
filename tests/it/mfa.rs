//! The second factor (issue 10): enrolment on `/account/second-factor`, the code step of
//! sign-in, recovery codes, throttling, removal. Codes are computed with `totp-rs` from the
//! key the page shows, as an authenticator app would.

use diesel::prelude::*;
use reqwest::StatusCode;
use vestibule::db::schema::{audit_events, recovery_codes, second_factors};

use crate::helpers::{Browser, PASSWORD, TestApp, location};
use crate::on_both_databases;

const ADMIN: &str = "admin@acme.test";

pub(crate) fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// The code an authenticator app would show at `time` for the base32 `secret`.
pub(crate) fn code_at(secret: &str, time: u64) -> String {
    let totp = totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(30)
        .with_secret(totp_rs::Secret::try_from_base32(secret).unwrap())
        .build()
        .unwrap();
    totp.generate(time).to_string()
}

/// The text between `start` and the next `end` in `body`.
fn between<'a>(body: &'a str, start: &str, end: &str) -> &'a str {
    let i = body.find(start).unwrap_or_else(|| panic!("{start} in the page")) + start.len();
    &body[i..i + body[i..].find(end).unwrap()]
}

/// Enrols the signed-in `b` (the account `email`): returns the key, the time its first code
/// was computed at, and the recovery codes shown.
pub(crate) async fn enrol(app: &TestApp, b: &Browser, email: &str) -> (String, u64, Vec<String>) {
    let (_, body) = b.get_text("/account").await;
    assert!(body.contains("href=\"/account/second-factor\""), "the account page leads to enrolment");
    let res = b.post("/account/second-factor/start", &[]).await;
    assert_eq!(location(&res), "/account/second-factor");
    let (status, body) = b.get_text("/account/second-factor").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("<svg"), "a QR code drawn as SVG");
    let secret = between(&body, "id=\"totp-secret\">", "<").to_owned();
    assert!(secret.len() >= 32, "a 160-bit key in base32: {secret}");
    // A wrong code does not confirm.
    let t0 = now();
    let good = code_at(&secret, t0);
    let bad = if good == "000000" { "111111" } else { "000000" };
    let res = b.post("/account/second-factor/confirm", &[("code", bad)]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.text().await.unwrap().contains("This code is not right"));
    assert!(!app.with_conn(|c| {
        use vestibule::db::schema::users;
        let uid: String = users::table.filter(users::email.eq(email)).select(users::id).first(c).unwrap();
        second_factors::table.find(uid).select(second_factors::confirmed_at.is_not_null()).first::<bool>(c).unwrap()
    }));
    let before = app.smtp.count_for(email);
    let res = b.post("/account/second-factor/confirm", &[("code", &good)]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body = res.text().await.unwrap();
    let list = between(&body, "id=\"recovery-codes\">", "</ul>");
    let codes: Vec<String> =
        list.split("<li>").skip(1).map(|s| s.split("</li>").next().unwrap().trim().to_owned()).collect();
    assert_eq!(codes.len(), 10, "ten recovery codes: {list}");
    // Shown once: the page does not show them again.
    let (_, again) = b.get_text("/account/second-factor").await;
    assert!(!again.contains(&codes[0]) && again.contains("Recovery codes left: 10."));
    // Stored hashed only.
    let stored: Vec<String> = app.with_conn(|c| {
        use vestibule::db::schema::users;
        let uid: String = users::table.filter(users::email.eq(email)).select(users::id).first(c).unwrap();
        recovery_codes::table.filter(recovery_codes::user_id.eq(uid)).select(recovery_codes::code_hash).load(c).unwrap()
    });
    assert_eq!(stored.len(), 10);
    assert!(stored.iter().all(|h| h.len() == 64 && !codes.iter().any(|c| h.contains(c.as_str()))));
    let mail = app.smtp.wait_for_nth(email, before + 1).await;
    assert_eq!(mail.header("Subject").unwrap(), "A second factor was added to your Vestibule account");
    (secret, t0, codes)
}

/// Signs in with the password: the code step is next, and nothing is signed in yet.
pub(crate) async fn password_step(b: &Browser, email: &str) {
    let res = b.post("/signin", &[("email", email), ("password", PASSWORD), ("next", "/account")]).await;
    assert_eq!(location(&res), "/signin/second-factor");
    let res = b.get("/account").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "not signed in before the second factor");
    let (status, body) = b.get_text("/signin/second-factor").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("autocomplete=\"one-time-code\"") && body.contains("Use a recovery code instead"));
}

fn actions(app: &TestApp) -> Vec<(String, Option<String>)> {
    app.with_conn(|c| audit_events::table.select((audit_events::action, audit_events::detail)).load(c).unwrap())
}

async fn enrol_then_sign_in_with_a_code_once_and_a_recovery_code_once(app: TestApp) {
    let admin = app.admin().await;
    let (secret, t0, codes) = enrol(&app, &admin, ADMIN).await;
    assert!(actions(&app).iter().any(|(a, _)| a == "account.mfa_enrolled"));

    // A new browser: password, then the code of the next step (within ±1 step, not used yet).
    let b = app.browser();
    password_step(&b, ADMIN).await;
    let code = code_at(&secret, t0 + 30);
    let res = b.post("/signin/second-factor", &[("code", &code)]).await;
    assert_eq!(location(&res), "/account", "on to where the sign-in was going");
    assert_eq!(b.get("/account").await.status(), StatusCode::OK);
    assert!(actions(&app).iter().any(|(a, d)| a == "signin.succeeded" && d.as_deref() == Some("password+mfa")));

    // The same code again (its window is not over): refused.
    let b2 = app.browser();
    password_step(&b2, ADMIN).await;
    let res = b2.post("/signin/second-factor", &[("code", &code)]).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.text().await.unwrap().contains("This code is not right"));
    assert_eq!(b2.get("/account").await.status(), StatusCode::SEE_OTHER);

    // A recovery code works once, and the page says how many are left.
    let (_, body) = b2.get_text("/signin/second-factor?recovery=1").await;
    assert!(body.contains("Recovery code"));
    let res = b2.post("/signin/second-factor", &[("recovery", "1"), ("code", &codes[3].to_uppercase())]).await;
    assert_eq!(location(&res), "/account/second-factor?recovery_used=1");
    let (_, body) = b2.get_text(&location(&res)).await;
    assert!(body.contains("You signed in with a recovery code. Recovery codes left: 9."), "count shown");
    let b3 = app.browser();
    password_step(&b3, ADMIN).await;
    let res = b3.post("/signin/second-factor", &[("recovery", "1"), ("code", &codes[3])]).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert!(res.text().await.unwrap().contains("This recovery code is not right, or was already used."));

    // New recovery codes need a current code (a used one is refused).
    let res = admin.post("/account/second-factor/recovery", &[("code", &code)]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
}
on_both_databases!(enrol_then_sign_in_with_a_code_once_and_a_recovery_code_once);

async fn wrong_codes_are_throttled_and_removal_needs_a_code_or_the_password(app: TestApp) {
    let admin = app.admin().await;
    let (secret, t0, _) = enrol(&app, &admin, ADMIN).await;
    let b = app.browser();
    password_step(&b, ADMIN).await;
    let right = code_at(&secret, t0 + 30);
    let wrong = if right == "123456" { "654321" } else { "123456" };
    for _ in 0..5 {
        let res = b.post("/signin/second-factor", &[("code", wrong)]).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    // Paused: even the right code waits.
    let res = b.post("/signin/second-factor", &[("code", &right)]).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().get("retry-after").is_some());
    assert!(res.text().await.unwrap().contains("Too many wrong codes"));
    assert_eq!(b.get("/account").await.status(), StatusCode::SEE_OTHER);
    let failed = actions(&app).iter().filter(|(a, _)| a == "signin.mfa_failed").count();
    assert_eq!(failed, 5);
    // Counted in the database: the pause holds for the account's own page too.
    let res = admin.post("/account/second-factor/remove", &[("password", PASSWORD)]).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    app.with_conn(|c| {
        diesel::delete(vestibule::db::schema::rate_counters::table).execute(c).unwrap();
    });

    // Removal: a wrong password is refused, the right one removes factor and codes.
    let res = admin.post("/account/second-factor/remove", &[("code", ""), ("password", "not the password")]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let before = app.smtp.count_for(ADMIN);
    let res = admin.post("/account/second-factor/remove", &[("code", ""), ("password", PASSWORD)]).await;
    assert_eq!(location(&res), "/account?done=mfa_removed");
    let left: (i64, i64) = app.with_conn(|c| {
        (second_factors::table.count().get_result(c).unwrap(), recovery_codes::table.count().get_result(c).unwrap())
    });
    assert_eq!(left, (0, 0));
    let mail = app.smtp.wait_for_nth(ADMIN, before + 1).await;
    assert_eq!(mail.header("Subject").unwrap(), "The second factor of your Vestibule account was removed");
    assert!(actions(&app).iter().any(|(a, _)| a == "account.mfa_removed"));
    // The password alone signs in again.
    app.browser().sign_in(ADMIN, PASSWORD).await;
}
on_both_databases!(wrong_codes_are_throttled_and_removal_needs_a_code_or_the_password);

/// An OpenID Connect code flow by hand (public client, PKCE) for the signed-in `b`: the claims
/// of the ID token (its payload; the RP tests in oidc.rs verify signatures).
async fn id_token_claims(app: &TestApp, b: &Browser) -> serde_json::Value {
    use base64::Engine;
    use sha2::Digest;
    use vestibule::services::oidc::clients;
    const REDIRECT: &str = "http://localhost:9999/callback";
    let created = app.with_conn(|c| {
        clients::create_for_cli(c, "acme", "Wiki", "https://wiki.example", &[REDIRECT.to_owned()], true).unwrap()
    });
    let org = app.with_conn(|c| vestibule::services::orgs::find_by_slug(c, "acme").unwrap().unwrap().id);
    let mid: String = app.with_conn(|c| {
        use vestibule::db::schema::{memberships, users};
        memberships::table
            .inner_join(users::table)
            .filter(users::email.eq(ADMIN))
            .select(memberships::id)
            .first(c)
            .unwrap()
    });
    app.with_conn(|c| vestibule::services::apps::assign_membership(c, &org, &created.app.id, &mid).unwrap());
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let verifier = "a-verifier-long-enough-for-rfc-7636-pkce-0123456789";
    let challenge = b64.encode(sha2::Sha256::digest(verifier.as_bytes()));
    let url = format!(
        "/o/acme/oidc/authorize?response_type=code&client_id={}&redirect_uri={}&scope=openid&state=s1&nonce=n1&code_challenge={challenge}&code_challenge_method=S256",
        created.client_id,
        url::form_urlencoded::byte_serialize(REDIRECT.as_bytes()).collect::<String>()
    );
    let res = b.get(&url).await;
    assert_eq!(res.status(), StatusCode::FOUND, "authorize: {}", res.text().await.unwrap());
    let loc = url::Url::parse(&location(&res)).unwrap();
    let code = loc.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    let res = reqwest::Client::new()
        .post(format!("{}/o/acme/oidc/token", app.base))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
            ("client_id", &created.client_id),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let json: serde_json::Value = res.json().await.unwrap();
    let jwt = json["id_token"].as_str().unwrap();
    serde_json::from_slice(&b64.decode(jwt.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

async fn id_tokens_say_how_the_person_signed_in(app: TestApp) {
    let admin = app.admin().await;
    let (secret, t0, _) = enrol(&app, &admin, ADMIN).await;
    // The enrolling session signed in with the password alone.
    let claims = id_token_claims(&app, &admin).await;
    assert_eq!(claims["amr"], serde_json::json!(["pwd"]));
    // With the second factor: pwd, otp and mfa.
    let b = app.browser();
    password_step(&b, ADMIN).await;
    let res = b.post("/signin/second-factor", &[("code", &code_at(&secret, t0 + 30))]).await;
    assert_eq!(location(&res), "/account");
    let claims = id_token_claims(&app, &b).await;
    assert_eq!(claims["amr"], serde_json::json!(["pwd", "otp", "mfa"]));
    let (_, discovery) = b.get_text("/o/acme/.well-known/openid-configuration").await;
    assert!(discovery.contains("\"amr\""), "amr is among claims_supported");
}
on_both_databases!(id_tokens_say_how_the_person_signed_in);

async fn an_admin_sees_and_resets_a_second_factor(app: TestApp) {
    let admin = app.admin().await;
    let mid = crate::policy::add_person(&app, "acme", "pat@partner.test", "Guest", "none");
    let pat = app.browser();
    pat.sign_in("pat@partner.test", PASSWORD).await;
    assert!(
        admin.get_text("/o/acme/admin/users?mfa=none").await.1.contains("pat@partner.test"),
        "listed without a second factor"
    );
    let page = format!("/o/acme/admin/users/{mid}");
    let (_, body) = admin.get_text(&page).await;
    assert!(between(&body, "id=\"second-factor\">", "</dd>").contains("None"));
    enrol(&app, &pat, "pat@partner.test").await;
    assert!(
        !admin.get_text("/o/acme/admin/users?mfa=none").await.1.contains("pat@partner.test"),
        "no longer listed once enrolled"
    );
    let (_, body) = admin.get_text(&page).await;
    assert!(between(&body, "id=\"second-factor\">", "</dd>").contains("Set up"));

    let before = app.smtp.count_for("pat@partner.test");
    let res = admin.post(&format!("{page}/second-factor/reset"), &[]).await;
    assert_eq!(location(&res), format!("{page}?done=mfa_reset"));
    let (_, body) = admin.get_text(&location(&res)).await;
    assert!(body.contains("The second factor was reset"));
    assert_eq!(app.with_conn(|c| second_factors::table.count().get_result::<i64>(c).unwrap()), 0);
    let mail = app.smtp.wait_for_nth("pat@partner.test", before + 1).await;
    assert_eq!(mail.header("Subject").unwrap(), "An administrator reset your second factor");
    assert!(actions(&app).iter().any(|(a, _)| a == "account.mfa_reset"));
    // The password alone signs Pat in again.
    app.browser().sign_in("pat@partner.test", PASSWORD).await;
}
on_both_databases!(an_admin_sees_and_resets_a_second_factor);

async fn the_org_policy_leads_to_enrolment_before_the_console_and_before_consent(app: TestApp) {
    let admin = app.admin().await;
    crate::policy::add_person(&app, "acme", "gus@partner.test", "Guest", "none");
    let gus = app.browser();
    gus.sign_in("gus@partner.test", PASSWORD).await;

    // Admins: the admin is led to enrolment, coming back to the console; guests are not asked.
    let res = admin.save_settings(&[("mfa_policy", "admins")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let res = admin.get("/o/acme/admin/users").await;
    assert_eq!(location(&res), "/account/second-factor?next=%2Fo%2Facme%2Fadmin%2Fusers");
    assert_eq!(gus.get("/o/acme/apps").await.status(), StatusCode::OK);
    let (_, body) = admin.get_text(&location(&res)).await;
    assert!(body.contains("This organization requires a second factor."));
    let res = admin.post("/account/second-factor/start", &[("next", "/o/acme/admin/users")]).await;
    assert_eq!(location(&res), "/account/second-factor?next=%2Fo%2Facme%2Fadmin%2Fusers");
    let (_, body) = admin.get_text(&location(&res)).await;
    let secret = between(&body, "id=\"totp-secret\">", "<").to_owned();
    let res = admin
        .post("/account/second-factor/confirm", &[("code", &code_at(&secret, now())), ("next", "/o/acme/admin/users")])
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body = res.text().await.unwrap();
    assert!(body.contains("id=\"codes-done\" href=\"/o/acme/admin/users\""), "back to where the admin was going");
    assert_eq!(admin.get("/o/acme/admin/users").await.status(), StatusCode::OK);
    let (_, settings) = admin.get_text("/o/acme/admin/settings").await;
    assert!(settings.contains("name=\"mfa_policy\" value=\"admins\" checked"));

    // Everyone: the guest too; a new guest sets it up before consenting.
    let res = admin.save_settings(&[("mfa_policy", "everyone")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&gus.get("/o/acme/apps").await), "/account/second-factor?next=%2Fo%2Facme%2Fapps");
    let res = admin.save_settings(&[("mfa_policy", "sometimes")]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let link = crate::redeem::invite_by_email(&app, &admin, "pat@partner.test").await;
    let pat = app.browser();
    pat.get_text(&link).await;
    let before = app.smtp.count_for("pat@partner.test");
    pat.post(&format!("{link}/code/send"), &[]).await;
    let mail = app.smtp.wait_for_nth("pat@partner.test", before + 1).await;
    let code: String = mail.header("Subject").unwrap().chars().take_while(char::is_ascii_digit).collect();
    let res = pat.post(&format!("{link}/code"), &[("display_name", "Pat Partner"), ("code", &code)]).await;
    let consent = format!("{link}/consent");
    assert_eq!(location(&res), consent);
    let to_enrol = format!(
        "/account/second-factor?next={}",
        url::form_urlencoded::byte_serialize(consent.as_bytes()).collect::<String>()
    );
    assert_eq!(location(&pat.get(&consent).await), to_enrol, "enrolment before consent");
    assert_eq!(location(&pat.post(&format!("{link}/accept"), &[]).await), to_enrol, "no accepting around it");
    enrol(&app, &pat, "pat@partner.test").await;
    let (status, body) = pat.get_text(&consent).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Acme Corp"));
    let res = pat.post(&format!("{link}/accept"), &[]).await;
    assert_eq!(location(&res), "/o/acme/apps");
    assert_eq!(pat.get("/o/acme/apps").await.status(), StatusCode::OK);
}
on_both_databases!(the_org_policy_leads_to_enrolment_before_the_console_and_before_consent);
