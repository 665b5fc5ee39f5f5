//! Who may invite whom: the policy matrix, domain lists, the rate limit, self-service
//! invitations into groups and apps, and isolation between organizations.

use diesel::prelude::*;
use reqwest::StatusCode;
use vestibule::db::schema::{invitations, memberships, users};
use vestibule::services::{Actor, apps, groups};

use crate::helpers::{Browser, PASSWORD, TestApp, location, path_of};
use crate::on_both_databases;

/// Adds an accepted person with a password to `slug`; returns their membership id.
pub fn add_person(app: &TestApp, slug: &str, email: &str, user_type: &str, role: &str) -> String {
    app.with_conn(|c| {
        let org = vestibule::services::orgs::find_by_slug(c, slug).unwrap().unwrap();
        let e = vestibule::domain::Email::parse(email).unwrap();
        let user = vestibule::services::accounts::find_or_create(c, &e, email.split('@').next().unwrap()).unwrap();
        let hash = vestibule::auth::password::hash_password(PASSWORD).unwrap();
        vestibule::services::accounts::set_initial_password(c, &user.id, &user.display_name, &hash, None).unwrap();
        let m = vestibule::db::models::Membership {
            id: vestibule::db::new_id(),
            org_id: org.id,
            user_id: user.id,
            user_type: vestibule::domain::UserType::parse(user_type).unwrap(),
            role: vestibule::domain::Role::parse(role).unwrap(),
            state: vestibule::domain::MembershipState::Accepted,
            blocked: false,
            invited_by: None,
            accepted_at: Some(vestibule::db::now()),
            removed_at: None,
            created_at: vestibule::db::now(),
            sponsor_id: None,
            access_ends_at: None,
            end_reminder_sent_at: None,
            left_at: None,
        };
        diesel::insert_into(memberships::table).values(&m).execute(c).unwrap();
        m.id
    })
}

async fn signed_in(app: &TestApp, email: &str) -> Browser {
    let b = app.browser();
    b.sign_in(email, PASSWORD).await;
    b
}

fn invitation_count(app: &TestApp) -> i64 {
    app.with_conn(|c| invitations::table.count().get_result(c).unwrap())
}

async fn policy_matrix(app: TestApp) {
    let admin = app.admin().await;
    add_person(&app, "acme", "mia@acme.test", "Member", "none");
    add_person(&app, "acme", "gil@partner.test", "Guest", "guest_inviter");
    add_person(&app, "acme", "gus@partner.test", "Guest", "none");
    let member = signed_in(&app, "mia@acme.test").await;
    let inviter = signed_in(&app, "gil@partner.test").await;
    let guest = signed_in(&app, "gus@partner.test").await;
    let cases = [
        ("none", [false, false, false, false]),
        ("adminsAndGuestInviters", [true, true, false, false]),
        ("adminsGuestInvitersAndAllMembers", [true, true, true, false]),
        ("everyone", [true, true, true, true]),
    ];
    let mut n = 0;
    for (policy, allowed) in cases {
        let res = admin.save_settings(&[("invite_policy", policy)]).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{policy}");
        let people: [(&Browser, &str); 4] = [
            (&admin, "/o/acme/admin/invite"),
            (&inviter, "/o/acme/invite"),
            (&member, "/o/acme/invite"),
            (&guest, "/o/acme/invite"),
        ];
        for ((browser, path), allow) in people.into_iter().zip(allowed) {
            let page = browser.get(path).await.status();
            n += 1;
            let email = format!("p{n}@outside.test");
            let before = invitation_count(&app);
            let post = browser.post(path, &[("email", &email), ("send_email", "on")]).await.status();
            if allow {
                assert_eq!(page, StatusCode::OK, "{policy} {path}");
                assert_eq!(post, StatusCode::SEE_OTHER, "{policy} {path}");
                assert_eq!(invitation_count(&app), before + 1);
            } else {
                assert_eq!(page, StatusCode::FORBIDDEN, "{policy} {path}");
                assert_eq!(post, StatusCode::FORBIDDEN, "{policy} {path}");
                assert_eq!(invitation_count(&app), before, "a forbidden POST changes nothing");
            }
        }
        // The invite links appear only for people allowed to use them.
        let (_, apps_page) = member.get_text("/o/acme/apps").await;
        assert_eq!(apps_page.contains("/o/acme/invite\""), allowed[2], "{policy}: member's My Apps link");
        let (_, console) = admin.get_text("/o/acme/admin").await;
        assert_eq!(console.contains("/o/acme/admin/invite\""), allowed[0], "{policy}: console link");
    }
}

async fn domain_lists_at_invite_and_redemption(app: TestApp) {
    let admin = app.admin().await;
    let res =
        admin.save_settings(&[("domain_mode", "allow"), ("domain_list", "partner.test\n*.eu.partner.test")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let res = admin.post("/o/acme/admin/invite", &[("email", "eve@other.test"), ("send_email", "on")]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = res.text().await.unwrap();
    assert!(
        body.contains("allow-list") && !body.contains("eu.partner.test"),
        "the refusal names the rule, not the list"
    );
    let pending = crate::redeem::invite_by_email(&app, &admin, "pat@partner.test").await;
    let accepted = crate::redeem::invite_by_email(&app, &admin, "ann@x.eu.partner.test").await;
    let ann = app.browser();
    ann.post(
        &format!("{accepted}/register"),
        &[("display_name", "Ann"), ("password", PASSWORD), ("confirm", PASSWORD)],
    )
    .await;
    assert_eq!(location(&ann.post(&format!("{accepted}/accept"), &[]).await), "/o/acme/apps");

    // Switching to a deny-list asks for confirmation, then clears the list.
    let res = admin.save_settings(&[("domain_mode", "deny"), ("domain_list", "partner.test")]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.text().await.unwrap().contains("clears the current domain list"));
    let res = admin.save_settings(&[("domain_mode", "deny"), ("confirm_domain_switch", "on")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let org = app.with_conn(|c| vestibule::services::orgs::find_by_slug(c, "acme").unwrap().unwrap());
    assert_eq!((org.domain_mode.as_str(), org.domain_list.as_str()), ("deny", ""));
    let res = admin.save_settings(&[("domain_mode", "deny"), ("domain_list", "partner.test")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);

    // The pending invitation is checked again at redemption; the accepted guest is unaffected.
    let pat = app.browser();
    let (status, body) = pat.get_text(&pending).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("domain policy has changed"));
    let res = pat
        .post(&format!("{pending}/register"), &[("display_name", "Pat"), ("password", PASSWORD), ("confirm", PASSWORD)])
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(ann.get("/o/acme/apps").await.status(), StatusCode::OK);
    let res = admin.post("/o/acme/admin/invite", &[("email", "zed@partner.test"), ("send_email", "on")]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.text().await.unwrap().contains("deny-list"));
}

async fn invitations_per_hour_are_limited(app: TestApp) {
    let admin = app.admin().await;
    admin.save_settings(&[("invites_per_hour", "2")]).await;
    for i in 0..2 {
        let res = admin.post("/o/acme/admin/invite", &[("email", &format!("g{i}@p.test")), ("send_email", "on")]).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
    }
    let res = admin.post("/o/acme/admin/invite", &[("email", "g3@p.test"), ("send_email", "on")]).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().get("retry-after").is_some());
    let body = res.text().await.unwrap();
    assert!(body.contains("limit of invitations per hour") && body.contains("value=\"g3@p.test\""));
    assert_eq!(invitation_count(&app), 2);
}

async fn member_invites_into_owned_group_and_app(app: TestApp) {
    let admin = app.admin().await;
    let mia = add_person(&app, "acme", "mia@acme.test", "Member", "none");
    let (group, other_group, app_id) = app.with_conn(|c| {
        let org = vestibule::services::orgs::find_by_slug(c, "acme").unwrap().unwrap();
        let actor = Actor::default();
        let g = groups::create(
            c,
            &org.id,
            &groups::GroupInput { name: "Project X".into(), description: String::new() },
            &actor,
        )
        .unwrap();
        let other = groups::create(
            c,
            &org.id,
            &groups::GroupInput { name: "Board".into(), description: String::new() },
            &actor,
        )
        .unwrap();
        groups::add_member(c, &org.id, &g.id, &mia, true).unwrap();
        let input = apps::AppInput {
            name: "Wiki".into(),
            url: "https://wiki.acme.test/home".into(),
            description: "Docs".into(),
            icon: None,
            remove_icon: false,
        };
        let valid = apps::validate(&input).unwrap_or_else(|_| panic!("valid app"));
        let a = apps::create(c, &org.id, &valid, &actor).unwrap();
        apps::assign_group(c, &org.id, &a.id, &g.id, &actor).unwrap();
        (g.id, other.id, a.id)
    });
    let member = signed_in(&app, "mia@acme.test").await;
    let (status, page) = member.get_text("/o/acme/invite").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Project X") && !page.contains("Board"), "only groups the member owns");
    // A group the member does not own is refused, input kept.
    let res = member.post("/o/acme/invite", &[("email", "pat@partner.test"), ("groups", &other_group)]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.text().await.unwrap().contains("value=\"pat@partner.test\""));
    let res = member
        .post(
            "/o/acme/invite",
            &[("email", "pat@partner.test"), ("display_name", "Pat"), ("groups", &group), ("app", &app_id)],
        )
        .await;
    assert_eq!(location(&res), "/o/acme/invite?done=sent");
    let (_, page) = member.get_text("/o/acme/invite").await;
    assert!(page.contains("pat@partner.test") && page.contains("Pending"));

    let mail = app.smtp.wait_for("pat@partner.test").await;
    assert!(mail.header("From").unwrap().contains("mia via Acme Corp"));
    let link = path_of(&mail.redeem_link());
    let guest = app.browser();
    guest
        .post(&format!("{link}/register"), &[("display_name", "Pat"), ("password", PASSWORD), ("confirm", PASSWORD)])
        .await;
    let res = guest.post(&format!("{link}/accept"), &[]).await;
    assert_eq!(location(&res), "https://wiki.acme.test/home", "lands on the app");
    let (_, apps_page) = guest.get_text("/o/acme/apps").await;
    assert!(apps_page.contains("Wiki"), "the app shows as a tile");
    let in_group: i64 = app.with_conn(|c| {
        vestibule::db::schema::group_members::table
            .inner_join(memberships::table.inner_join(users::table))
            .filter(users::email.eq("pat@partner.test"))
            .filter(vestibule::db::schema::group_members::group_id.eq(&group))
            .count()
            .get_result(c)
            .unwrap()
    });
    assert_eq!(in_group, 1);
    let _ = admin;
}

async fn own_invitations_only(app: TestApp) {
    let admin = app.admin().await;
    add_person(&app, "acme", "mia@acme.test", "Member", "none");
    add_person(&app, "acme", "max@acme.test", "Member", "none");
    let mia = signed_in(&app, "mia@acme.test").await;
    let max = signed_in(&app, "max@acme.test").await;
    mia.post("/o/acme/invite", &[("email", "pat@partner.test")]).await;
    let id: String = app.with_conn(|c| invitations::table.select(invitations::id).first(c).unwrap());
    assert_eq!(max.post(&format!("/o/acme/invite/{id}/revoke"), &[]).await.status(), StatusCode::NOT_FOUND);
    let (_, page) = max.get_text("/o/acme/invite").await;
    assert!(!page.contains("pat@partner.test"));
    let res = mia.post(&format!("/o/acme/invite/{id}/resend"), &[]).await;
    assert_eq!(location(&res), "/o/acme/invite?done=resent");
    app.smtp.wait_for_nth("pat@partner.test", 2).await;
    let res = mia.post(&format!("/o/acme/invite/{id}/revoke"), &[]).await;
    assert_eq!(location(&res), "/o/acme/invite?done=revoked");
    let status: String = app.with_conn(|c| invitations::table.select(invitations::status).first(c).unwrap());
    assert_eq!(status, "revoked");
    let _ = admin;
}

async fn other_orgs_ids_are_not_found(app: TestApp) {
    let admin = app.admin().await;
    app.create_org("Globex", "globex", "boss@globex.test");
    let foreign = add_person(&app, "globex", "gina@globex.test", "Guest", "none");
    let before: Vec<(String, bool, Option<time::PrimitiveDateTime>)> = app.with_conn(|c| {
        memberships::table
            .filter(memberships::id.eq(&foreign))
            .select((memberships::user_type, memberships::blocked, memberships::removed_at))
            .load(c)
            .unwrap()
    });
    assert_eq!(admin.get(&format!("/o/acme/admin/users/{foreign}")).await.status(), StatusCode::NOT_FOUND);
    for action in ["block", "unblock", "convert", "restore", "remove", "extend"] {
        let res = admin.post(&format!("/o/acme/admin/users/{foreign}/{action}"), &[]).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{action}");
    }
    for (action, field, value) in [
        ("role", "role", "guest_inviter"),
        ("reset", "email", "x@y.test"),
        ("sponsor", "sponsor", "admin@acme.test"),
        ("end-date", "access_ends_at", "2099-01-01"),
    ] {
        let res = admin.post(&format!("/o/acme/admin/users/{foreign}/{action}"), &[(field, value)]).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{action}");
        assert!(!res.text().await.unwrap().contains("gina"), "nothing leaks");
    }
    let globex_inv = {
        let boss = signed_in(&app, "boss@globex.test").await;
        boss.post("/o/globex/admin/invite", &[("email", "pat@partner.test"), ("send_email", "on")]).await;
        app.with_conn(|c| invitations::table.select(invitations::id).first::<String>(c).unwrap())
    };
    for action in ["resend", "revoke"] {
        let res = admin.post(&format!("/o/acme/admin/invitations/{globex_inv}/{action}"), &[]).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{action}");
    }
    let after: Vec<(String, bool, Option<time::PrimitiveDateTime>)> = app.with_conn(|c| {
        memberships::table
            .filter(memberships::id.eq(&foreign))
            .select((memberships::user_type, memberships::blocked, memberships::removed_at))
            .load(c)
            .unwrap()
    });
    assert_eq!(before, after, "nothing changed in the other organization");
}

on_both_databases!(
    policy_matrix,
    domain_lists_at_invite_and_redemption,
    invitations_per_hour_are_limited,
    member_invites_into_owned_group_and_app,
    own_invitations_only,
    other_orgs_ids_are_not_found,
);
