//! The guest's redemption flow, from the emailed link to the landing page.

use diesel::prelude::*;
use reqwest::StatusCode;
use vestibule::db::schema::{invitations, memberships, users};

use crate::helpers::{Browser, PASSWORD, TestApp, location, path_of};
use crate::on_both_databases;

/// Invites `email` from the admin console with the email ticked; returns the redeem path from the mail.
pub async fn invite_by_email(app: &TestApp, admin: &Browser, email: &str) -> String {
    let res = admin
        .post(
            "/o/acme/admin/invite",
            &[
                ("email", email),
                ("display_name", "Pat Partner"),
                ("message", "Welcome <b>aboard</b>!\nSee you."),
                ("user_type", "Guest"),
                ("send_email", "on"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "invite failed: {}", res.text().await.unwrap());
    let n = app.smtp.count_for(email) + 1;
    let mail = app.smtp.wait_for_nth(email, n).await;
    path_of(&mail.redeem_link())
}

fn membership_state(app: &TestApp, email: &str) -> String {
    app.with_conn(|c| {
        memberships::table
            .inner_join(users::table)
            .filter(users::email.eq(email))
            .select(memberships::state)
            .first::<String>(c)
            .unwrap()
    })
}

async fn new_guest_redeems_from_the_email(app: TestApp) {
    let admin = app.admin().await;
    let link = invite_by_email(&app, &admin, "pat@partner.test").await;

    // The email is complete and in English.
    let mail = app.smtp.wait_for("pat@partner.test").await;
    assert_eq!(mail.header("Subject").unwrap(), "Acme Corp Admin invited you to Acme Corp");
    assert!(mail.header("From").unwrap().contains("Acme Corp Admin via Acme Corp"), "{:?}", mail.header("From"));
    assert!(mail.header("From").unwrap().contains("no-reply@vestibule.test"));
    assert!(mail.header("Reply-To").unwrap().contains("admin@acme.test"));
    assert!(mail.header("Message-ID").unwrap().starts_with('<'));
    let text = mail.text();
    assert!(text.contains("Welcome <b>aboard</b>!"), "message kept as plain text: {text}");
    assert!(text.contains("expires on"));
    assert!(text.contains("has not provided a privacy statement"));
    assert!(text.contains("Accept only invitations you expected"));
    let html = mail.html();
    assert!(
        html.contains("Welcome &#60;b&#62;aboard&#60;/b&#62;!") && !html.contains("<b>aboard"),
        "message escaped in HTML"
    );
    assert!(html.contains("Get started"));

    // Opening the link changes nothing (GET and HEAD are harmless) and shows the inviter and message.
    let guest = app.browser();
    let (status, body) = guest.get_text(&link).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Acme Corp Admin invited you to join Acme Corp"));
    assert!(body.contains("Welcome &#60;b&#62;aboard&#60;/b&#62;!") && !body.contains("<b>aboard"));
    assert!(body.contains("Create your account"));
    let head = guest.client.head(format!("{}{link}", app.base)).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(membership_state(&app, "pat@partner.test"), "PendingAcceptance");

    // A weak password is refused with the input kept.
    let res = guest
        .post(
            &format!("{link}/register"),
            &[("display_name", "Pat P."), ("password", "password1234"), ("confirm", "password1234")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = res.text().await.unwrap();
    assert!(body.contains("too common"));
    assert!(body.contains("value=\"Pat P.\""));

    // Until consent, the guest has no rights in the org.
    let res = guest
        .post(&format!("{link}/register"), &[("display_name", "Pat P."), ("password", PASSWORD), ("confirm", PASSWORD)])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), format!("{link}/consent"));
    assert_eq!(guest.get("/o/acme/apps").await.status(), StatusCode::NOT_FOUND);

    // Consent page names the org and what it sees.
    let (status, body) = guest.get_text(&format!("{link}/consent")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Review permissions"));
    assert!(body.contains("pat@partner.test"));
    assert!(body.contains("has not provided a privacy statement"));

    // Cancel leaves it pending.
    let res = guest.post(&format!("{link}/cancel"), &[]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(membership_state(&app, "pat@partner.test"), "PendingAcceptance");

    // Accept: redirected to My Apps, membership accepted, token consumed.
    let res = guest.post(&format!("{link}/accept"), &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "/o/acme/apps");
    assert_eq!(membership_state(&app, "pat@partner.test"), "Accepted");
    let (status, body) = guest.get_text("/o/acme/apps").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Acme Corp"));
    assert!(body.contains("Leave organization"));
    let status: String = app.with_conn(|c| invitations::table.select(invitations::status).first(c).unwrap());
    assert_eq!(status, "accepted");

    // The used link is dead, with the friendly page.
    let (status, body) = guest.get_text(&link).await;
    assert_eq!(status, StatusCode::GONE);
    assert!(body.contains("Ask the person who invited you"));

    // The audit trail holds the whole story.
    let actions: Vec<String> = app.with_conn(|c| {
        vestibule::db::schema::audit_events::table.select(vestibule::db::schema::audit_events::action).load(c).unwrap()
    });
    for a in [
        "organization.created",
        "signin.succeeded",
        "invitation.created",
        "account.created",
        "invitation.redeemed",
        "consent.given",
    ] {
        assert!(actions.iter().any(|x| x == a), "missing audit {a}: {actions:?}");
    }
}

async fn existing_account_signs_in_to_redeem(app: TestApp) {
    let admin = app.admin().await;
    app.create_org("Globex", "globex", "boss@globex.test");
    // boss@globex.test already has an account; Acme invites them.
    let link = invite_by_email(&app, &admin, "Boss@Globex.test").await;
    let guest = app.browser();
    let (_, body) = guest.get_text(&link).await;
    assert!(body.contains("Sign in to accept"));
    let res = guest.post(&format!("{link}/signin"), &[("password", "wrong password here")]).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = guest.post(&format!("{link}/signin"), &[("password", PASSWORD)]).await;
    assert_eq!(location(&res), format!("{link}/consent"));
    let res = guest.post(&format!("{link}/accept"), &[]).await;
    assert_eq!(location(&res), "/o/acme/apps");
    let (_, home) = guest.get_text("/").await;
    assert!(home.contains("Acme Corp") && home.contains("Globex"));
}

async fn wrong_account_is_told_and_can_switch(app: TestApp) {
    let admin = app.admin().await;
    let link = invite_by_email(&app, &admin, "pat@partner.test").await;
    // The admin opens the guest's link while signed in as themselves.
    let (_, body) = admin.get_text(&link).await;
    assert!(body.contains("You are signed in as admin@acme.test, but this invitation is for pat@partner.test"));
    // Consent is not reachable as the wrong person, and accept does nothing.
    let res = admin.get(&format!("{link}/consent")).await;
    assert_eq!(location(&res), link);
    let res = admin.post(&format!("{link}/accept"), &[]).await;
    assert_eq!(location(&res), link);
    assert_eq!(membership_state(&app, "pat@partner.test"), "PendingAcceptance");
    // Sign out and continue.
    let res = admin.post(&format!("{link}/switch"), &[]).await;
    assert_eq!(location(&res), link);
    let (_, body) = admin.get_text(&link).await;
    assert!(body.contains("Create your account"));
    assert_eq!(admin.get("/o/acme/admin").await.status(), StatusCode::SEE_OTHER);
}

async fn disclosed_link_needs_a_code(app: TestApp) {
    let admin = app.admin().await;
    let link = invite_disclosed(&app, &admin, "lee@partner.test").await;
    let disclosed: bool = app.with_conn(|c| invitations::table.select(invitations::disclosed).first(c).unwrap());
    assert!(disclosed);
    assert_eq!(app.smtp.count_for("lee@partner.test"), 0, "no invitation email when unticked");

    let guest = app.browser();
    let (_, body) = guest.get_text(&link).await;
    assert!(body.contains("Email me a code"));
    // Registering straight away is not possible.
    let res = guest
        .post(&format!("{link}/register"), &[("display_name", "Lee"), ("password", PASSWORD), ("confirm", PASSWORD)])
        .await;
    assert_eq!(location(&res), link);
    let has_password: Option<String> = app.with_conn(|c| {
        users::table.filter(users::email.eq("lee@partner.test")).select(users::password_hash).first(c).unwrap()
    });
    assert!(has_password.is_none());

    let res = guest.post(&format!("{link}/code/send"), &[]).await;
    assert_eq!(location(&res), link);
    let mail = app.smtp.wait_for("lee@partner.test").await;
    let subject = mail.header("Subject").unwrap();
    let code: String = subject.chars().take_while(char::is_ascii_digit).collect();
    assert!(code.chars().all(|c| c.is_ascii_digit()), "{subject}");
    assert!(mail.text().contains(&code));

    let res = guest.post(&format!("{link}/code"), &[("code", "000000")]).await;
    let wrong_expected = if code == "000000" { StatusCode::SEE_OTHER } else { StatusCode::UNPROCESSABLE_ENTITY };
    assert_eq!(res.status(), wrong_expected);
    let res = guest.post(&format!("{link}/code"), &[("code", &code)]).await;
    assert_eq!(location(&res), link);
    let (_, body) = guest.get_text(&link).await;
    assert!(body.contains("Create your account"));
    let res = guest
        .post(&format!("{link}/register"), &[("display_name", "Lee"), ("password", PASSWORD), ("confirm", PASSWORD)])
        .await;
    assert_eq!(location(&res), format!("{link}/consent"));
    let res = guest.post(&format!("{link}/accept"), &[]).await;
    assert_eq!(location(&res), "/o/acme/apps");
    assert_eq!(membership_state(&app, "lee@partner.test"), "Accepted");
}

/// Invites without email and returns the link shown once to the admin.
pub async fn invite_disclosed(app: &TestApp, admin: &Browser, email: &str) -> String {
    let res = admin.post("/o/acme/admin/invite", &[("email", email), ("user_type", "Guest")]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body = res.text().await.unwrap();
    let start = body.find(&format!("{}/redeem/", app.base)).expect("link shown");
    let link: String = body[start..].chars().take_while(|c| *c != '"').collect();
    path_of(&link)
}

async fn code_dies_after_five_wrong_guesses(app: TestApp) {
    let admin = app.admin().await;
    let link = invite_disclosed(&app, &admin, "lee@partner.test").await;
    let guest = app.browser();
    guest.post(&format!("{link}/code/send"), &[]).await;
    let mail = app.smtp.wait_for("lee@partner.test").await;
    let code: String = mail.header("Subject").unwrap().chars().take_while(char::is_ascii_digit).collect();
    let wrong = if code == "111111" { "222222" } else { "111111" };
    for _ in 0..4 {
        let res = guest.post(&format!("{link}/code"), &[("code", wrong)]).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(res.text().await.unwrap().contains("That code is not correct"));
    }
    let res = guest.post(&format!("{link}/code"), &[("code", wrong)]).await;
    assert!(res.text().await.unwrap().contains("Ask for a new code"));
    // The right code no longer works: a new one is needed.
    let res = guest.post(&format!("{link}/code"), &[("code", &code)]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let (_, body) = guest.get_text(&link).await;
    assert!(body.contains("Email me a code"));
}

async fn expired_link_is_gone(app: TestApp) {
    let admin = app.admin().await;
    let link = invite_by_email(&app, &admin, "pat@partner.test").await;
    app.with_conn(|c| {
        diesel::update(invitations::table)
            .set(invitations::expires_at.eq(vestibule::db::now() - time::Duration::minutes(1)))
            .execute(c)
            .unwrap()
    });
    let guest = app.browser();
    let (status, body) = guest.get_text(&link).await;
    assert_eq!(status, StatusCode::GONE);
    assert!(body.contains("This invitation to Acme Corp has expired"));
    let res = guest
        .post(&format!("{link}/register"), &[("display_name", "Pat"), ("password", PASSWORD), ("confirm", PASSWORD)])
        .await;
    assert_eq!(res.status(), StatusCode::GONE);
}

async fn revoked_link_is_gone(app: TestApp) {
    let admin = app.admin().await;
    let link = invite_by_email(&app, &admin, "pat@partner.test").await;
    let id: String = app.with_conn(|c| invitations::table.select(invitations::id).first(c).unwrap());
    let res = admin.post(&format!("/o/acme/admin/invitations/{id}/revoke"), &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let (status, _) = app.browser().get_text(&link).await;
    assert_eq!(status, StatusCode::GONE);
    // Revoking again is refused, not an error page of the server.
    let res = admin.post(&format!("/o/acme/admin/invitations/{id}/revoke"), &[]).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}

async fn resend_kills_the_old_link(app: TestApp) {
    let admin = app.admin().await;
    let old = invite_by_email(&app, &admin, "pat@partner.test").await;
    let id: String = app.with_conn(|c| invitations::table.select(invitations::id).first(c).unwrap());
    let res = admin.post(&format!("/o/acme/admin/invitations/{id}/resend"), &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let mail = app.smtp.wait_for_nth("pat@partner.test", 2).await;
    let new = path_of(&mail.redeem_link());
    assert_ne!(old, new);
    assert_eq!(app.browser().get(&old).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.browser().get(&new).await.status(), StatusCode::OK);
}

async fn unknown_link_is_not_found(app: TestApp) {
    let b = app.browser();
    for path in ["/redeem/nonsense", "/redeem/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "/redeem/%00%ff"] {
        let (status, body) = b.get_text(path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(body.contains("Ask the person who invited you"));
        assert!(!body.contains("Acme"));
    }
}

async fn fifty_simultaneous_accepts_make_one_membership(app: TestApp) {
    let admin = app.admin().await;
    let link = invite_by_email(&app, &admin, "pat@partner.test").await;
    let guest = std::sync::Arc::new(app.browser());
    guest
        .post(&format!("{link}/register"), &[("display_name", "Pat"), ("password", PASSWORD), ("confirm", PASSWORD)])
        .await;
    let token = guest.csrf().await;
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let g = guest.clone();
        let url = format!("{}{link}/accept", app.base);
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            g.client.post(url).form(&[("csrf_token", token.as_str())]).send().await.unwrap().status()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    let wins = statuses.iter().filter(|s| **s == StatusCode::SEE_OTHER).count();
    let gone = statuses.iter().filter(|s| **s == StatusCode::GONE).count();
    assert_eq!(wins, 1, "{statuses:?}");
    assert_eq!(gone, 49, "{statuses:?}");
    let redeemed: i64 = app.with_conn(|c| {
        vestibule::db::schema::audit_events::table
            .filter(vestibule::db::schema::audit_events::action.eq("invitation.redeemed"))
            .count()
            .get_result(c)
            .unwrap()
    });
    assert_eq!(redeemed, 1);
    assert_eq!(membership_state(&app, "pat@partner.test"), "Accepted");
}

async fn redirect_goes_to_the_allowed_target(app: TestApp) {
    let admin = app.admin().await;
    let res = admin
        .save_settings(&[
            ("name", "Acme Corp"),
            ("privacy_url", "https://acme.test/privacy"),
            ("default_language", "en"),
            ("invite_lifetime_days", "7"),
            ("redirect_allowlist", "https://wiki.acme.test\n"),
        ])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    // Not on the list: refused with the input kept.
    let res = admin
        .post(
            "/o/acme/admin/invite",
            &[("email", "pat@partner.test"), ("redirect_url", "https://evil.test/x"), ("send_email", "on")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = res.text().await.unwrap();
    assert!(body.contains("redirect allow-list") && body.contains("value=\"https://evil.test/x\""));
    let count: i64 = app.with_conn(|c| invitations::table.count().get_result(c).unwrap());
    assert_eq!(count, 0, "nothing half-done stays");
    let res = admin
        .post(
            "/o/acme/admin/invite",
            &[("email", "pat@partner.test"), ("redirect_url", "https://wiki.acme.test/start"), ("send_email", "on")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let mail = app.smtp.wait_for("pat@partner.test").await;
    assert!(mail.text().contains("https://wiki.acme.test/start"));
    assert!(mail.text().contains("https://acme.test/privacy"));
    let link = path_of(&mail.redeem_link());
    let guest = app.browser();
    guest
        .post(&format!("{link}/register"), &[("display_name", "Pat"), ("password", PASSWORD), ("confirm", PASSWORD)])
        .await;
    let (_, consent) = guest.get_text(&format!("{link}/consent")).await;
    assert!(consent.contains("https://acme.test/privacy"));
    let res = guest.post(&format!("{link}/accept"), &[]).await;
    assert_eq!(location(&res), "https://wiki.acme.test/start");
}

on_both_databases!(
    new_guest_redeems_from_the_email,
    existing_account_signs_in_to_redeem,
    wrong_account_is_told_and_can_switch,
    disclosed_link_needs_a_code,
    code_dies_after_five_wrong_guesses,
    expired_link_is_gone,
    revoked_link_is_gone,
    resend_kills_the_old_link,
    unknown_link_is_not_found,
    fifty_simultaneous_accepts_make_one_membership,
    redirect_goes_to_the_allowed_target,
);
