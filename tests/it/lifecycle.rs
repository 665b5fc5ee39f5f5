//! The guest's life after redemption: convert, block, remove and restore, leave, reset
//! redemption, sponsors and end dates (with the clock driven by the test).

use diesel::prelude::*;
use reqwest::StatusCode;
use vestibule::db::schema::{audit_events, memberships, sessions, users};

use crate::helpers::{Browser, PASSWORD, TestApp, location};
use crate::on_both_databases;
use crate::redeem::invite_by_email;

/// Invites `email`, redeems as the guest; returns (membership id, the guest's browser).
async fn accepted_guest(app: &TestApp, admin: &Browser, email: &str) -> (String, Browser) {
    let link = invite_by_email(app, admin, email).await;
    let guest = app.browser();
    guest
        .post(
            &format!("{link}/register"),
            &[("display_name", "Pat Partner"), ("password", PASSWORD), ("confirm", PASSWORD)],
        )
        .await;
    assert_eq!(location(&guest.post(&format!("{link}/accept"), &[]).await), "/o/acme/apps");
    let mid = app.with_conn(|c| {
        memberships::table
            .inner_join(users::table)
            .filter(users::email.eq(email))
            .select(memberships::id)
            .first::<String>(c)
            .unwrap()
    });
    (mid, guest)
}

fn actions(app: &TestApp) -> Vec<String> {
    app.with_conn(|c| audit_events::table.select(audit_events::action).load(c).unwrap())
}

fn live_sessions(app: &TestApp, email: &str) -> i64 {
    app.with_conn(|c| {
        sessions::table.inner_join(users::table).filter(users::email.eq(email)).count().get_result(c).unwrap()
    })
}

async fn convert_block_remove_restore(app: TestApp) {
    let admin = app.admin().await;
    let (mid, guest) = accepted_guest(&app, &admin, "pat@partner.test").await;
    let page = format!("/o/acme/admin/users/{mid}");

    let res = admin.post(&format!("{page}/convert"), &[]).await;
    assert_eq!(location(&res), format!("{page}?done=converted"));
    let t: String = app.with_conn(|c| memberships::table.find(&mid).select(memberships::user_type).first(c).unwrap());
    assert_eq!(t, "Member");
    admin.post(&format!("{page}/convert"), &[]).await;

    let res = admin.post(&format!("{page}/role"), &[("role", "guest_inviter")]).await;
    assert_eq!(location(&res), format!("{page}?done=role"));
    let res = admin.post(&format!("{page}/role"), &[("role", "admin")]).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST, "a guest cannot be admin");

    assert_eq!(guest.get("/o/acme/apps").await.status(), StatusCode::OK);
    admin.post(&format!("{page}/block"), &[]).await;
    assert_eq!(live_sessions(&app, "pat@partner.test"), 0, "blocking ends sessions at once");
    assert_eq!(guest.get("/o/acme/apps").await.status(), StatusCode::SEE_OTHER);
    guest.sign_in("pat@partner.test", PASSWORD).await;
    assert_eq!(guest.get("/o/acme/apps").await.status(), StatusCode::NOT_FOUND, "blocked in this org");
    let (_, list) = admin.get_text("/o/acme/admin/users?state=Blocked").await;
    assert!(list.contains("pat@partner.test"));
    admin.post(&format!("{page}/unblock"), &[]).await;
    assert_eq!(guest.get("/o/acme/apps").await.status(), StatusCode::OK);

    admin.post(&format!("{page}/remove"), &[]).await;
    assert_eq!(guest.get("/o/acme/apps").await.status(), StatusCode::SEE_OTHER);
    let (_, list) = admin.get_text("/o/acme/admin/users").await;
    assert!(!list.contains("pat@partner.test"));
    let (_, removed) = admin.get_text("/o/acme/admin/users?state=Removed").await;
    assert!(removed.contains("pat@partner.test"));
    let res = admin.post(&format!("{page}/restore"), &[]).await;
    assert_eq!(location(&res), format!("{page}?done=restored"));
    guest.sign_in("pat@partner.test", PASSWORD).await;
    assert_eq!(guest.get("/o/acme/apps").await.status(), StatusCode::OK);

    // Removed more than 30 days ago: purged by the daily job, no longer restorable.
    admin.post(&format!("{page}/remove"), &[]).await;
    let later = vestibule::db::now() + time::Duration::days(31);
    let report = app.with_conn(|c| {
        vestibule::services::lifecycle::run_daily(c, later, &url::Url::parse(&app.base).unwrap()).unwrap()
    });
    assert_eq!(report.purged, 1);
    let left: i64 = app.with_conn(|c| memberships::table.find(&mid).count().get_result(c).unwrap());
    assert_eq!(left, 0);
    assert_eq!(admin.post(&format!("{page}/restore"), &[]).await.status(), StatusCode::NOT_FOUND);

    let all = actions(&app);
    for a in [
        "membership.converted",
        "membership.role_changed",
        "membership.blocked",
        "membership.unblocked",
        "membership.removed",
        "membership.restored",
        "membership.purged",
    ] {
        assert!(all.iter().any(|x| x == a), "audit {a}: {all:?}");
    }
}

async fn guest_leaves_and_shows_as_left(app: TestApp) {
    let admin = app.admin().await;
    let (_, guest) = accepted_guest(&app, &admin, "pat@partner.test").await;
    let (status, page) = guest.get_text("/o/acme/leave").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Leave Acme Corp?"));
    let res = guest.post("/o/acme/leave", &[]).await;
    assert_eq!(location(&res), "/");
    assert_eq!(guest.get("/o/acme/apps").await.status(), StatusCode::NOT_FOUND);
    let (_, list) = admin.get_text("/o/acme/admin/users?state=Left").await;
    assert!(list.contains("pat@partner.test") && list.contains("Left"));
    assert!(actions(&app).contains(&"membership.left".to_string()));
    // Invited again, the person redeems again.
    let link = invite_by_email(&app, &admin, "pat@partner.test").await;
    let res = guest.post(&format!("{link}/accept"), &[]).await;
    assert_eq!(location(&res), "/o/acme/apps");
}

async fn reset_redemption_rebinds_to_a_new_address(app: TestApp) {
    let admin = app.admin().await;
    let (mid, old) = accepted_guest(&app, &admin, "pat@partner.test").await;
    let group = app.with_conn(|c| {
        let org = vestibule::services::orgs::find_by_slug(c, "acme").unwrap().unwrap();
        let g = vestibule::services::groups::create(
            c,
            &org.id,
            &vestibule::services::groups::GroupInput { name: "Project".into(), description: String::new() },
            &vestibule::services::Actor::default(),
        )
        .unwrap();
        vestibule::services::groups::add_member(c, &org.id, &g.id, &mid, false).unwrap();
        g.id
    });
    let page = format!("/o/acme/admin/users/{mid}");
    let res = admin.post(&format!("{page}/reset"), &[("email", "not an address")]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.text().await.unwrap().contains("value=\"not an address\""));
    let res = admin.post(&format!("{page}/reset"), &[("email", "pat@newco.test")]).await;
    assert_eq!(location(&res), format!("{page}?done=reset"));
    assert_eq!(old.get("/o/acme/apps").await.status(), StatusCode::SEE_OTHER, "the old address loses access at once");
    let (state, owner): (String, String) = app.with_conn(|c| {
        memberships::table
            .inner_join(users::table)
            .filter(memberships::id.eq(&mid))
            .select((memberships::state, users::email))
            .first(c)
            .unwrap()
    });
    assert_eq!((state.as_str(), owner.as_str()), ("PendingAcceptance", "pat@newco.test"));
    let mail = app.smtp.wait_for("pat@newco.test").await;
    let link = crate::helpers::path_of(&mail.redeem_link());
    let fresh = app.browser();
    fresh
        .post(&format!("{link}/register"), &[("display_name", "Pat"), ("password", PASSWORD), ("confirm", PASSWORD)])
        .await;
    assert_eq!(location(&fresh.post(&format!("{link}/accept"), &[]).await), "/o/acme/apps");
    let kept: i64 = app.with_conn(|c| {
        vestibule::db::schema::group_members::table
            .filter(vestibule::db::schema::group_members::membership_id.eq(&mid))
            .filter(vestibule::db::schema::group_members::group_id.eq(&group))
            .count()
            .get_result(c)
            .unwrap()
    });
    assert_eq!(kept, 1, "groups are kept");
    assert!(actions(&app).contains(&"invitation.reset".to_string()));
}

async fn sponsor_reminder_extend_and_end_date(app: TestApp) {
    let admin = app.admin().await;
    admin.save_settings(&[("guest_access_days", "30")]).await;
    let (mid, guest) = accepted_guest(&app, &admin, "pat@partner.test").await;
    let ends: Option<time::PrimitiveDateTime> =
        app.with_conn(|c| memberships::table.find(&mid).select(memberships::access_ends_at).first(c).unwrap());
    let ends = ends.expect("an end date 30 days after redemption");
    assert!(ends > vestibule::db::now() + time::Duration::days(29));
    let (_, list) = admin.get_text("/o/acme/admin/users?state=EndingSoon").await;
    assert!(list.contains("pat@partner.test"), "upcoming end dates on the users list");

    // Sixteen days on: nothing yet. Seventeen days on: the sponsor (the inviter) is reminded, once.
    let public = url::Url::parse(&app.base).unwrap();
    let now = vestibule::db::now();
    let r = app
        .with_conn(|c| vestibule::services::lifecycle::run_daily(c, now + time::Duration::days(15), &public).unwrap());
    assert_eq!(r.reminders, 0);
    let r = app
        .with_conn(|c| vestibule::services::lifecycle::run_daily(c, now + time::Duration::days(17), &public).unwrap());
    assert_eq!(r.reminders, 1);
    let r = app
        .with_conn(|c| vestibule::services::lifecycle::run_daily(c, now + time::Duration::days(18), &public).unwrap());
    assert_eq!(r.reminders, 0, "one reminder per end date");
    let mail = app.smtp.wait_for("admin@acme.test").await;
    assert!(mail.header("Subject").unwrap().contains("Pat Partner"));
    let text = mail.text();
    let start = text.find(&format!("{}/o/acme/sponsor/", app.base)).expect("extend link");
    let extend: String = text[start..].chars().take_while(|c| !c.is_whitespace()).collect();

    // The one-click page extends by the org's period.
    let (status, page) = admin.get_text(&extend).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Extend by 30 days"));
    let res = admin.post(&extend.replace(&app.base, ""), &[]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await.unwrap().contains("Access now ends on"));
    let extended: Option<time::PrimitiveDateTime> =
        app.with_conn(|c| memberships::table.find(&mid).select(memberships::access_ends_at).first(c).unwrap());
    assert!(extended.unwrap() >= ends + time::Duration::days(30));
    // Nobody else may use that page.
    let stranger = app.browser();
    crate::policy::add_person(&app, "acme", "mia@acme.test", "Member", "none");
    stranger.sign_in("mia@acme.test", PASSWORD).await;
    assert_eq!(stranger.get(&extend).await.status(), StatusCode::NOT_FOUND);

    // On the end date the membership is blocked and the guest's sessions end.
    let r = app.with_conn(|c| {
        vestibule::services::lifecycle::run_daily(c, extended.unwrap() + time::Duration::minutes(1), &public).unwrap()
    });
    assert_eq!(r.ended, 1);
    assert_eq!(guest.get("/o/acme/apps").await.status(), StatusCode::SEE_OTHER);
    let blocked: bool = app.with_conn(|c| memberships::table.find(&mid).select(memberships::blocked).first(c).unwrap());
    assert!(blocked);
    for a in ["access.end_reminder_sent", "access.extended", "access.ended"] {
        assert!(actions(&app).contains(&a.to_string()), "{a}");
    }
}

async fn admin_sets_sponsor_and_end_date(app: TestApp) {
    let admin = app.admin().await;
    let (mid, _) = accepted_guest(&app, &admin, "pat@partner.test").await;
    crate::policy::add_person(&app, "acme", "mia@acme.test", "Member", "none");
    let page = format!("/o/acme/admin/users/{mid}");
    let res = admin.post(&format!("{page}/sponsor"), &[("sponsor", "nobody@acme.test")]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.text().await.unwrap().contains("value=\"nobody@acme.test\""));
    let res = admin.post(&format!("{page}/sponsor"), &[("sponsor", "mia@acme.test")]).await;
    assert_eq!(location(&res), format!("{page}?done=sponsor"));
    let res = admin.post(&format!("{page}/end-date"), &[("access_ends_at", "2001-01-01")]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let res = admin.post(&format!("{page}/end-date"), &[("access_ends_at", "2099-06-30")]).await;
    assert_eq!(location(&res), format!("{page}?done=end_date"));
    let (_, body) = admin.get_text(&page).await;
    assert!(body.contains("June 30, 2099") && body.contains("mia@acme.test"));
    let res = admin.post(&format!("{page}/end-date"), &[("access_ends_at", "")]).await;
    assert_eq!(location(&res), format!("{page}?done=end_date"));
    let ends: Option<time::PrimitiveDateTime> =
        app.with_conn(|c| memberships::table.find(&mid).select(memberships::access_ends_at).first(c).unwrap());
    assert!(ends.is_none());
    assert!(actions(&app).contains(&"membership.sponsor_changed".to_string()));
}

async fn removed_admin_comes_back_without_a_role(app: TestApp) {
    let admin = app.admin().await;
    let bob = crate::policy::add_person(&app, "acme", "bob@acme.test", "Member", "admin");
    admin.post(&format!("/o/acme/admin/users/{bob}/remove"), &[]).await;
    // Anyone allowed to invite brings the address back...
    crate::policy::add_person(&app, "acme", "mia@acme.test", "Member", "none");
    let mia = app.browser();
    mia.sign_in("mia@acme.test", PASSWORD).await;
    assert_eq!(mia.post("/o/acme/invite", &[("email", "bob@acme.test")]).await.status(), StatusCode::SEE_OTHER);
    let mail = app.smtp.wait_for("bob@acme.test").await;
    let link = crate::helpers::path_of(&mail.redeem_link());
    let bob_browser = app.browser();
    bob_browser.sign_in("bob@acme.test", PASSWORD).await;
    assert_eq!(location(&bob_browser.post(&format!("{link}/accept"), &[]).await), "/o/acme/apps");
    // ...but not the admin role.
    let role: String = app.with_conn(|c| memberships::table.find(&bob).select(memberships::role).first(c).unwrap());
    assert_eq!(role, "none");
    assert_eq!(bob_browser.get("/o/acme/admin").await.status(), StatusCode::NOT_FOUND);
}

async fn resends_count_toward_the_hourly_limit(app: TestApp) {
    let admin = app.admin().await;
    admin.save_settings(&[("invites_per_hour", "3")]).await;
    invite_by_email(&app, &admin, "pat@partner.test").await;
    let id: String = app.with_conn(|c| {
        vestibule::db::schema::invitations::table.select(vestibule::db::schema::invitations::id).first(c).unwrap()
    });
    for _ in 0..2 {
        let res = admin.post(&format!("/o/acme/admin/invitations/{id}/resend"), &[]).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
    }
    let res = admin.post(&format!("/o/acme/admin/invitations/{id}/resend"), &[]).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS, "no flooding an address with resends");
    assert!(res.headers().get("retry-after").is_some());
}

async fn extension_never_lifts_an_admin_block(app: TestApp) {
    let admin = app.admin().await;
    let (mid, _) = accepted_guest(&app, &admin, "pat@partner.test").await;
    let page = format!("/o/acme/admin/users/{mid}");
    admin.post(&format!("{page}/end-date"), &[("access_ends_at", "2099-01-01")]).await;
    admin.post(&format!("{page}/block"), &[]).await;
    // The end date passes while the person is blocked by the admin; then access is extended.
    app.with_conn(|c| {
        diesel::update(memberships::table.find(&mid))
            .set(memberships::access_ends_at.eq(Some(vestibule::db::now() - time::Duration::days(1))))
            .execute(c)
            .unwrap()
    });
    assert_eq!(admin.post(&format!("{page}/extend"), &[]).await.status(), StatusCode::SEE_OTHER);
    let blocked: bool = app.with_conn(|c| memberships::table.find(&mid).select(memberships::blocked).first(c).unwrap());
    assert!(blocked, "the admin's block stays");
}

on_both_databases!(
    removed_admin_comes_back_without_a_role,
    resends_count_toward_the_hourly_limit,
    extension_never_lifts_an_admin_block,
    convert_block_remove_restore,
    guest_leaves_and_shows_as_left,
    reset_redemption_rebinds_to_a_new_address,
    sponsor_reminder_extend_and_end_date,
    admin_sets_sponsor_and_end_date,
);
