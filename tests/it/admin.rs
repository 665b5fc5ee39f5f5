//! The admin console: invite form, users list, guest page, settings, removal.

use diesel::prelude::*;
use reqwest::StatusCode;
use vestibule::db::schema::{invitations, memberships, sessions};

use crate::helpers::{PASSWORD, TestApp, location};
use crate::on_both_databases;
use crate::redeem::invite_by_email;

async fn invite_form_keeps_input_on_errors(app: TestApp) {
    let admin = app.admin().await;
    let long = "x".repeat(2001);
    let res = admin
        .post(
            "/o/acme/admin/invite",
            &[("email", "not-an-address"), ("display_name", "Dana"), ("message", &long), ("send_email", "on")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = res.text().await.unwrap();
    assert!(body.contains("Enter a valid email address"));
    assert!(body.contains("longer than 2,000 characters"));
    assert!(body.contains("value=\"not-an-address\"") && body.contains("value=\"Dana\""));
    assert!(body.contains("aria-describedby=\"e-email\""), "errors tied to fields");
    let n: i64 = app.with_conn(|c| invitations::table.count().get_result(c).unwrap());
    assert_eq!(n, 0);
}

async fn inviting_twice_returns_the_pending_invitation(app: TestApp) {
    let admin = app.admin().await;
    invite_by_email(&app, &admin, "pat@partner.test").await;
    let res = admin.post("/o/acme/admin/invite", &[("email", "  PAT@Partner.TEST "), ("send_email", "on")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(location(&res).ends_with("?done=existing"));
    let n: i64 = app.with_conn(|c| invitations::table.count().get_result(c).unwrap());
    assert_eq!(n, 1);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(app.smtp.count_for("pat@partner.test"), 1, "no second email unless asked");
    // Inviting an accepted member is refused.
    let res = admin.post("/o/acme/admin/invite", &[("email", "admin@acme.test"), ("send_email", "on")]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.text().await.unwrap().contains("already a member"));
}

async fn users_list_filters_searches_and_pages(app: TestApp) {
    let admin = app.admin().await;
    // 60 guests created directly, plus one through the form.
    app.with_conn(|c| {
        for i in 0..60 {
            let org = vestibule::services::orgs::find_by_slug(c, "acme").unwrap().unwrap();
            let email = vestibule::domain::Email::parse(&format!("guest{i:02}@bulk.test")).unwrap();
            let user = vestibule::services::accounts::find_or_create(c, &email, &format!("Guest {i:02}")).unwrap();
            let m = vestibule::db::models::Membership {
                id: vestibule::db::new_id(),
                org_id: org.id,
                user_id: user.id,
                user_type: vestibule::domain::UserType::Guest,
                role: vestibule::domain::Role::None,
                state: vestibule::domain::MembershipState::PendingAcceptance,
                blocked: false,
                invited_by: None,
                accepted_at: None,
                removed_at: None,
                created_at: vestibule::db::now() - time::Duration::seconds(i),
                sponsor_id: None,
                access_ends_at: None,
                end_reminder_sent_at: None,
                left_at: None,
            };
            diesel::insert_into(memberships::table).values(&m).execute(c).unwrap();
        }
    });
    invite_by_email(&app, &admin, "zoe@partner.test").await;
    let (status, body) = admin.get_text("/o/acme/admin/users").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.matches("<tr>").count() - 1, 50, "first page holds 50 rows");
    assert!(body.contains("zoe@partner.test"), "newest first");
    assert!(body.contains("Next page"));
    let start = body.find("/o/acme/admin/users?after=").unwrap();
    let next: String = body[start..].chars().take_while(|c| *c != '"').collect();
    let (_, page2) = admin.get_text(&next.replace("&amp;", "&")).await;
    assert_eq!(page2.matches("<tr>").count() - 1, 12, "61 guests + 1 admin = 62 rows");
    assert!(!page2.contains("Next page"));

    let (_, body) = admin.get_text("/o/acme/admin/users?q=guest0").await;
    assert_eq!(body.matches("<tr>").count() - 1, 10);
    let (_, body) = admin.get_text("/o/acme/admin/users?q=GUEST 07").await;
    assert_eq!(body.matches("<tr>").count() - 1, 1);
    let (_, body) = admin.get_text("/o/acme/admin/users?type=Member").await;
    assert_eq!(body.matches("<tr>").count() - 1, 1);
    assert!(body.contains("admin@acme.test"));
    let (_, body) = admin.get_text("/o/acme/admin/users?state=Accepted").await;
    assert_eq!(body.matches("<tr>").count() - 1, 1);
    let (_, body) = admin.get_text("/o/acme/admin/users?q=zoe@").await;
    assert!(body.contains("Acme Corp Admin"), "invited by");
    assert!(body.contains("Sent") || body.contains("Queued") || body.contains("Sending"));
}

async fn guest_page_shows_delivery_and_removal_ends_sessions(app: TestApp) {
    let admin = app.admin().await;
    let link = invite_by_email(&app, &admin, "pat@partner.test").await;
    app.wait_mail_settled().await;
    let mid: String = app.with_conn(|c| invitations::table.select(invitations::membership_id).first(c).unwrap());
    let (status, body) = admin.get_text(&format!("/o/acme/admin/users/{mid}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("Pending acceptance") && body.contains("Resend invitation") && body.contains("Revoke invitation")
    );
    assert!(body.contains("Sent"), "delivery state shown");

    let guest = app.browser();
    guest
        .post(&format!("{link}/register"), &[("display_name", "Pat"), ("password", PASSWORD), ("confirm", PASSWORD)])
        .await;
    guest.post(&format!("{link}/accept"), &[]).await;
    assert_eq!(guest.get("/o/acme/apps").await.status(), StatusCode::OK);
    let res = admin.post(&format!("/o/acme/admin/users/{mid}/remove"), &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    // The guest's session ended at once.
    assert_eq!(guest.get("/o/acme/apps").await.status(), StatusCode::SEE_OTHER);
    let n: i64 = app.with_conn(|c| {
        sessions::table
            .inner_join(vestibule::db::schema::users::table)
            .filter(vestibule::db::schema::users::email.eq("pat@partner.test"))
            .count()
            .get_result(c)
            .unwrap()
    });
    assert_eq!(n, 0);
    // Removed people stay restorable for 30 days.
    let (status, body) = admin.get_text(&format!("/o/acme/admin/users/{mid}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("can be restored until"));
}

async fn settings_validate_and_save(app: TestApp) {
    let admin = app.admin().await;
    let (status, body) = admin.get_text("/o/acme/admin/settings").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("value=\"14\""));
    let res = admin
        .save_settings(&[
            ("name", "Acme"),
            ("privacy_url", "ftp://x"),
            ("default_language", "fr"),
            ("invite_lifetime_days", "91"),
            ("redirect_allowlist", "http://partner.test"),
        ])
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = res.text().await.unwrap();
    assert!(body.contains("from 1 to 90") && body.contains("https://") && body.contains("value=\"91\""));
    let res = admin
        .save_settings(&[
            ("name", "Acme Europe"),
            ("privacy_url", ""),
            ("default_language", "fr"),
            ("invite_lifetime_days", "30"),
            ("redirect_allowlist", "https://a.test/path\nhttps://a.test\nhttp://localhost:3000"),
        ])
        .await;
    assert_eq!(location(&res), "/o/acme/admin/settings?saved=1");
    let org = app.with_conn(|c| vestibule::services::orgs::find_by_slug(c, "acme").unwrap().unwrap());
    assert_eq!(org.name, "Acme Europe");
    assert_eq!(org.invite_lifetime_days, 30);
    assert_eq!(org.default_language, "fr");
    assert_eq!(org.redirect_allowlist, "https://a.test\nhttp://localhost:3000");
    let actions: Vec<String> = app.with_conn(|c| {
        vestibule::db::schema::audit_events::table.select(vestibule::db::schema::audit_events::action).load(c).unwrap()
    });
    assert!(actions.contains(&"organization.settings_changed".to_string()));
}

async fn french_org_sends_french_email(app: TestApp) {
    let admin = app.admin().await;
    admin
        .save_settings(&[
            ("name", "Acme Corp"),
            ("privacy_url", ""),
            ("default_language", "fr"),
            ("invite_lifetime_days", "14"),
            ("redirect_allowlist", ""),
        ])
        .await;
    invite_by_email(&app, &admin, "jean@partenaire.test").await;
    let mail = app.smtp.wait_for("jean@partenaire.test").await;
    let subject = mail.header("Subject").unwrap();
    assert!(subject.contains("Acme Corp Admin vous invite à rejoindre Acme Corp"), "{subject}");
    assert!(mail.text().contains("Commencer") || mail.text().contains("commencer"), "{}", mail.text());
    // A guest whose browser prefers French sees the landing page in French.
    let guest = app.browser();
    let link = crate::helpers::path_of(&mail.redeem_link());
    let body = guest
        .client
        .get(format!("{}{link}", app.base))
        .header("Accept-Language", "fr-FR,fr;q=0.9")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("lang=\"fr\""));
    assert!(body.contains("Créer votre compte") || body.contains("Créez votre compte"), "{body}");
}

async fn other_orgs_console_is_not_found(app: TestApp) {
    let admin = app.admin().await;
    app.create_org("Globex", "globex", "boss@globex.test");
    for path in [
        "/o/globex/admin",
        "/o/globex/admin/users",
        "/o/globex/admin/invite",
        "/o/globex/admin/settings",
        "/o/nope/admin",
    ] {
        assert_eq!(admin.get(path).await.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let res = admin.post("/o/globex/admin/invite", &[("email", "x@y.test")]).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    // Anonymous visitors are sent to sign in.
    let res = app.browser().get("/o/acme/admin").await;
    assert_eq!(location(&res), "/signin?next=%2Fo%2Facme%2Fadmin");
}

on_both_databases!(
    invite_form_keeps_input_on_errors,
    inviting_twice_returns_the_pending_invitation,
    users_list_filters_searches_and_pages,
    guest_page_shows_delivery_and_removal_ends_sessions,
    settings_validate_and_save,
    french_org_sends_french_email,
    other_orgs_console_is_not_found,
);
