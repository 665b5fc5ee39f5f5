//! The audit log page and its CSV export; `/account`: profile, password change, sessions.

use diesel::prelude::*;
use reqwest::StatusCode;
use time::PrimitiveDateTime;
use time::macros::datetime;
use vestibule::db::models::AuditEvent;
use vestibule::db::schema::{audit_events, org_groups, sessions, users};

use crate::helpers::{Browser, PASSWORD, TestApp, location};
use crate::on_both_databases;

/// A new password that passes the rules.
const NEW_PASSWORD: &str = "orbit lantern meadow quartz";

/// Number of data rows of the first table of a page.
fn table_rows(body: &str) -> usize {
    body.matches("<tr>").count().saturating_sub(1)
}

/// The href of the "Older events" link, unescaped.
fn next_link(body: &str) -> Option<String> {
    let pager = &body[body.find("<nav class=\"pager\"")?..];
    let start = pager.find("/o/acme/admin/audit?")?;
    let href: String = pager[start..].chars().take_while(|c| *c != '"').collect();
    href.contains("after=").then(|| href.replace("&amp;", "&").replace("&#38;", "&"))
}

fn id_of(app: &TestApp, email: &str) -> String {
    app.with_conn(|c| users::table.filter(users::email.eq(email)).select(users::id).first(c).unwrap())
}

fn org_id(app: &TestApp, slug: &str) -> String {
    app.with_conn(|c| vestibule::services::orgs::find_by_slug(c, slug).unwrap().unwrap().id)
}

/// Writes `n` events of `action` at `start`, `start - 1 s`, … straight into the table.
fn add_events(app: &TestApp, org: &str, actor: Option<&str>, action: &str, start: PrimitiveDateTime, n: i64) {
    app.with_conn(|c| {
        for i in 0..n {
            let e = AuditEvent {
                id: vestibule::db::new_id(),
                org_id: Some(org.to_owned()),
                actor_id: actor.map(str::to_owned),
                action: action.to_owned(),
                target: Some(format!("target-{i}")),
                detail: None,
                client_ip: Some("192.0.2.7".into()),
                request_id: Some(format!("req-{i}")),
                created_at: start - time::Duration::seconds(i),
            };
            diesel::insert_into(audit_events::table).values(&e).execute(c).unwrap();
        }
    });
}

/// Writes one event of `action` on `target`, now.
fn add_event(app: &TestApp, org: &str, action: &str, target: &str) {
    app.with_conn(|c| {
        let actor = vestibule::services::Actor::default();
        vestibule::services::audit::record(c, &actor, Some(org), action, Some(target), None).unwrap()
    });
}

fn actions_of(app: &TestApp, user_id: &str) -> Vec<(String, Option<String>)> {
    app.with_conn(|c| {
        audit_events::table
            .filter(audit_events::actor_id.eq(user_id))
            .order(audit_events::created_at.asc())
            .select((audit_events::action, audit_events::detail))
            .load(c)
            .unwrap()
    })
}

/// Signs in with a given User-Agent (the test browsers send none by default).
async fn sign_in_as(b: &Browser, email: &str, user_agent: &str) {
    let token = b.csrf().await;
    let res = b
        .client
        .post(format!("{}/signin", b.base))
        .header("User-Agent", user_agent)
        .form(&[("email", email), ("password", PASSWORD), ("next", "/"), ("csrf_token", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "sign-in of {email} failed");
    b.forget_csrf();
}

/// Parses an export: checks the byte-order mark and returns the header and the rows.
fn parse_csv(bytes: &[u8]) -> (Vec<String>, Vec<Vec<String>>) {
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF".as_slice()).expect("a UTF-8 byte-order mark");
    let mut reader = csv::Reader::from_reader(body);
    let header = reader.headers().unwrap().iter().map(str::to_owned).collect();
    let rows = reader.records().map(|r| r.unwrap().iter().map(str::to_owned).collect()).collect();
    (header, rows)
}

async fn audit_page_filters_and_pages(app: TestApp) {
    let admin = app.admin().await;
    let (org, admin_id) = (org_id(&app, "acme"), id_of(&app, "admin@acme.test"));
    add_events(&app, &org, Some(&admin_id), "invitation.resent", datetime!(2026-01-20 12:00), 55);
    add_events(&app, &org, None, "membership.removed", datetime!(2026-02-01 08:00), 5);
    crate::redeem::invite_by_email(&app, &admin, "pat@partner.test").await;
    // 55 + 5 + the invitation + the organization's creation.
    let (status, body) = admin.get_text("/o/acme/admin/audit").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(table_rows(&body), 50, "first page holds 50 events");
    assert!(body.contains("Invitation created") && body.contains("Pat Partner"), "names, not just ids");
    let first_row = &body[body.find("<tbody>").unwrap()..];
    let first_row = &first_row[..first_row.find("</tr>").unwrap()];
    assert!(first_row.contains("Invitation created") && first_row.contains("admin@acme.test"), "newest first");
    assert!(first_row.contains("127.0.0.1"), "client address shown");
    let next = next_link(&body).expect("a link to older events");
    let (_, page2) = admin.get_text(&next).await;
    assert_eq!(table_rows(&page2), 12);
    assert!(page2.matches(">Invitation resent</td>").count() == 12 && next_link(&page2).is_none());
    assert!(page2.contains("Newest events"));

    let (_, body) = admin.get_text("/o/acme/admin/audit?action=membership.removed").await;
    assert_eq!(table_rows(&body), 5);
    assert!(body.contains("<option value=\"membership.removed\" selected>"), "filter kept in the form");
    let (_, body) = admin.get_text("/o/acme/admin/audit?actor=ADMIN@acme.test&action=invitation.created").await;
    assert_eq!(table_rows(&body), 1);
    let (_, body) = admin.get_text("/o/acme/admin/audit?actor=nobody@acme.test").await;
    assert_eq!(table_rows(&body), 0);
    assert!(body.contains("No event matches."));
    let (_, body) = admin.get_text("/o/acme/admin/audit?from=2026-02-01&to=2026-02-01").await;
    assert_eq!(table_rows(&body), 5);
    let (_, body) = admin.get_text("/o/acme/admin/audit?from=2026-01-01&to=2026-01-31").await;
    assert_eq!(table_rows(&body), 50);
    let next = next_link(&body).expect("the date range pages too");
    assert!(next.contains("from=2026-01-01") && next.contains("to=2026-01-31"));
    assert_eq!(table_rows(&admin.get_text(&next).await.1), 5);
    // An email address as target finds the events about that person's invitation.
    let (_, body) = admin.get_text("/o/acme/admin/audit?target=pat%40partner.test").await;
    assert_eq!(table_rows(&body), 1);
    let (_, body) = admin.get_text("/o/acme/admin/audit?target=target-3").await;
    assert_eq!(table_rows(&body), 2, "exact target text: one resent and one removed event");

    let res = admin.get("/o/acme/admin/audit?from=2026-02-30&actor=not-an-email").await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = res.text().await.unwrap();
    assert!(body.contains("Enter a date like 2026-03-31") && body.contains("aria-describedby=\"e-from"));
    assert!(body.contains("value=\"not-an-email\""), "input kept");

    // In French, times and labels follow the page.
    admin.post("/lang", &[("lang", "fr"), ("next", "/")]).await;
    let (_, body) = admin.get_text("/o/acme/admin/audit?action=membership.removed").await;
    assert!(body.contains("Retiré de l&#39;organisation") || body.contains("Retiré de l'organisation"), "{body}");
    assert!(body.contains("1er février 2026 à 08 h 00 UTC"));
}

async fn audit_log_is_isolated_between_organizations(app: TestApp) {
    let acme = app.admin().await;
    app.create_org("Beta Ltd", "beta", "admin@beta.test");
    let beta = app.browser();
    beta.sign_in("admin@beta.test", PASSWORD).await;
    let res = beta
        .post(
            "/o/beta/admin/invite",
            &[("email", "secret@beta-partner.test"), ("user_type", "Guest"), ("send_email", "on")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);

    for path in ["/o/acme/admin/audit", "/o/acme/admin/audit.csv"] {
        assert_eq!(beta.get(path).await.status(), StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(acme.get("/o/beta/admin/audit").await.status(), StatusCode::NOT_FOUND);
    let anonymous = app.browser().get("/o/acme/admin/audit").await;
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
    assert!(location(&anonymous).starts_with("/signin"));

    let (_, body) = acme.get_text("/o/acme/admin/audit").await;
    assert!(!body.contains("Beta Ltd") && !body.contains("secret@beta-partner.test"));
    let (_, body) = acme.get_text("/o/acme/admin/audit?target=secret%40beta-partner.test").await;
    assert_eq!(table_rows(&body), 0);
    let csv = acme.get("/o/acme/admin/audit.csv").await.bytes().await.unwrap();
    let text = String::from_utf8_lossy(&csv);
    assert!(!text.contains("beta") && !text.contains("Beta"), "{text}");
    let (_, body) = beta.get_text("/o/beta/admin/audit").await;
    assert!(body.contains("secret@beta-partner.test") && !body.contains("Acme Corp"));

    // Targets are named from the event's own organization only.
    let group = vestibule::db::new_id();
    app.with_conn(|c| {
        diesel::insert_into(org_groups::table)
            .values((
                org_groups::id.eq(&group),
                org_groups::org_id.eq(org_id(&app, "beta")),
                org_groups::name.eq("Beta Secret Group"),
                org_groups::description.eq(""),
                org_groups::created_at.eq(vestibule::db::now()),
            ))
            .execute(c)
            .unwrap()
    });
    for org in ["acme", "beta"] {
        add_event(&app, &org_id(&app, org), "group.created", &group);
    }
    let (_, body) = beta.get_text("/o/beta/admin/audit").await;
    assert!(body.contains("Beta Secret Group") && body.contains("Group created"));
    let (_, body) = acme.get_text("/o/acme/admin/audit").await;
    assert!(body.contains(&group) && !body.contains("Beta Secret Group"));
}

async fn csv_export_is_complete_and_inert(app: TestApp) {
    let admin = app.admin().await;
    let res = admin
        .post(
            "/o/acme/admin/invite",
            &[
                ("email", "mallory@partner.test"),
                ("display_name", "=cmd|' /C calc'!A0"),
                ("message", "@x"),
                ("user_type", "Guest"),
                ("send_email", "on"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let org = org_id(&app, "acme");
    add_events(&app, &org, None, "membership.left", datetime!(2026-01-01 12:00), 1203);

    let res = admin.get("/o/acme/admin/audit.csv").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/csv; charset=utf-8");
    let disposition = res.headers()["content-disposition"].to_str().unwrap().to_owned();
    assert!(disposition.starts_with("attachment; filename=\"audit-acme-"), "{disposition}");
    let (header, rows) = parse_csv(&res.bytes().await.unwrap());
    assert_eq!(
        header,
        [
            "time",
            "action",
            "actor_name",
            "actor_email",
            "actor_id",
            "target",
            "target_name",
            "target_email",
            "detail",
            "client_ip",
            "request_id",
            "event_id"
        ]
    );
    assert_eq!(rows.len(), 1203 + 2, "every event, across export batches");
    let ids: std::collections::HashSet<&String> = rows.iter().map(|r| &r[11]).collect();
    assert_eq!(ids.len(), rows.len(), "no event twice");
    let invited = &rows[0];
    assert_eq!(invited[1], "invitation.created", "newest first");
    assert_eq!(invited[2], "Acme Corp Admin");
    assert_eq!(invited[3], "admin@acme.test");
    assert_eq!(invited[6], "'=cmd|' /C calc'!A0", "formula made inert");
    assert_eq!(invited[7], "mallory@partner.test");
    assert!(invited[0].ends_with('Z') && invited[9] == "127.0.0.1" && !invited[10].is_empty());
    assert!(rows.iter().all(|r| r.iter().all(|cell| !cell.starts_with(['=', '+', '-', '@']))));

    let res = admin.get("/o/acme/admin/audit.csv?action=organization.created").await;
    let (_, rows) = parse_csv(&res.bytes().await.unwrap());
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][5], "acme");
    let (_, rows) = parse_csv(&admin.get("/o/acme/admin/audit.csv?to=2025-12-31").await.bytes().await.unwrap());
    assert!(rows.is_empty());
    let res = admin.get("/o/acme/admin/audit.csv?from=someday").await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

async fn account_name_and_language(app: TestApp) {
    let admin = app.admin().await;
    let (status, body) = admin.get_text("/account").await;
    assert_eq!(status, StatusCode::OK);
    for field in ["display_name", "language", "current_password", "new_password", "confirm_password"] {
        assert!(body.contains(&format!("<label for=\"f-{field}\">")), "label for {field}");
    }
    assert!(body.contains("name=\"csrf_token\""));
    let long = "x".repeat(201);
    let res = admin.post("/account/profile", &[("display_name", &long), ("language", "de")]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = res.text().await.unwrap();
    assert!(body.contains(&format!("value=\"{long}\"")), "input kept");
    assert!(body.contains("aria-describedby=\"e-display_name\"") && body.contains("Choose one of the languages"));

    let res = admin.post("/account/profile", &[("display_name", "  Ada Admin "), ("language", "fr")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "/account?done=profile");
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("vestibule_lang=fr"), "{cookie}");
    let (_, body) = admin.get_text("/account?done=profile").await;
    assert!(body.contains("Votre profil a été enregistré.") && body.contains("Ada Admin"), "{body}");
    let (name, lang): (String, Option<String>) = app.with_conn(|c| {
        users::table
            .filter(users::email.eq("admin@acme.test"))
            .select((users::display_name, users::language))
            .first(c)
            .unwrap()
    });
    assert_eq!((name.as_str(), lang.as_deref()), ("Ada Admin", Some("fr")));
    let events = actions_of(&app, &id_of(&app, "admin@acme.test"));
    assert!(events.contains(&("account.profile_changed".into(), Some("display_name,language".into()))), "{events:?}");
}

async fn password_change_ends_other_sessions(app: TestApp) {
    app.create_org("Acme Corp", "acme", "admin@acme.test");
    let (here, elsewhere) = (app.browser(), app.browser());
    sign_in_as(&here, "admin@acme.test", "TestBrowser/Here").await;
    sign_in_as(&elsewhere, "admin@acme.test", "TestBrowser/Elsewhere").await;
    let (_, body) = here.get_text("/account").await;
    assert!(body.contains("TestBrowser/Here") && body.contains("TestBrowser/Elsewhere") && body.contains("127.0.0.1"));
    assert_eq!(body.matches("This session").count(), 1);
    let this = &body[body.find("This session").unwrap()..];
    assert!(this[..this.find("</tr>").unwrap()].contains("TestBrowser/Here"), "the marker is on this browser");
    let hash_before: Option<String> = app.with_conn(|c| {
        users::table.filter(users::email.eq("admin@acme.test")).select(users::password_hash).first(c).unwrap()
    });

    let wrong = "not my password at all";
    let res = here
        .post(
            "/account/password",
            &[("current_password", wrong), ("new_password", NEW_PASSWORD), ("confirm_password", NEW_PASSWORD)],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = res.text().await.unwrap();
    assert!(
        body.contains("This is not your current password.") && body.contains("aria-describedby=\"e-current_password\"")
    );
    assert!(!body.contains(wrong) && !body.contains(NEW_PASSWORD), "passwords never echoed");
    let res = here
        .post(
            "/account/password",
            &[("current_password", PASSWORD), ("new_password", "short"), ("confirm_password", "short")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.text().await.unwrap().contains("Use at least 12 characters."));
    let hash_after: Option<String> = app.with_conn(|c| {
        users::table.filter(users::email.eq("admin@acme.test")).select(users::password_hash).first(c).unwrap()
    });
    assert_eq!(hash_before, hash_after, "nothing changed");
    assert_eq!(elsewhere.get("/account").await.status(), StatusCode::OK);

    let res = here
        .post(
            "/account/password",
            &[("current_password", PASSWORD), ("new_password", NEW_PASSWORD), ("confirm_password", NEW_PASSWORD)],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "/account?done=password");
    let res = elsewhere.get("/account").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "the other session is dead");
    assert!(location(&res).starts_with("/signin"));
    let (status, body) = here.get_text("/account?done=password").await;
    assert_eq!(status, StatusCode::OK, "this session goes on");
    assert!(body.contains("Your password was changed.") && body.contains("You are not signed in anywhere else."));

    let mail = app.smtp.wait_for("admin@acme.test").await;
    assert_eq!(mail.header("Subject").unwrap(), "Your Vestibule password was changed");
    assert!(mail.text().contains("127.0.0.1") && mail.text().contains("/account"), "{}", mail.text());
    let uid = id_of(&app, "admin@acme.test");
    let events = actions_of(&app, &uid);
    assert!(events.contains(&("account.password_changed".into(), Some("{\"sessions_ended\":1}".into()))), "{events:?}");

    let fresh = app.browser();
    let res = fresh.post("/signin", &[("email", "admin@acme.test"), ("password", PASSWORD)]).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "the old password is gone");
    fresh.sign_in("admin@acme.test", NEW_PASSWORD).await;
}

async fn sign_out_everywhere_else(app: TestApp) {
    app.create_org("Acme Corp", "acme", "admin@acme.test");
    let (here, elsewhere) = (app.browser(), app.browser());
    sign_in_as(&here, "admin@acme.test", "TestBrowser/Here").await;
    sign_in_as(&elsewhere, "admin@acme.test", "TestBrowser/Elsewhere").await;
    // A session started before sessions carried a marker is still told apart from the others.
    app.with_conn(|c| {
        let (hash, state): (String, String) = sessions::table
            .filter(sessions::user_agent.eq("TestBrowser/Here"))
            .select((sessions::id_hash, sessions::state))
            .first(c)
            .unwrap();
        let mut map: std::collections::HashMap<String, String> = serde_json::from_str(&state).unwrap();
        map.remove("sid");
        diesel::update(sessions::table.find(hash))
            .set(sessions::state.eq(serde_json::to_string(&map).unwrap()))
            .execute(c)
            .unwrap();
    });
    let (_, body) = here.get_text("/account").await;
    assert!(body.contains("Sign out everywhere else"));

    let res = here.post("/account/sessions/end-others", &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "/account?done=sessions");
    assert_eq!(elsewhere.get("/account").await.status(), StatusCode::SEE_OTHER, "the other session is dead");
    let (status, body) = here.get_text("/account?done=sessions").await;
    assert_eq!(status, StatusCode::OK, "this session goes on");
    assert!(body.contains("You were signed out everywhere else.") && body.contains("This session"));
    let uid = id_of(&app, "admin@acme.test");
    let left: i64 =
        app.with_conn(|c| sessions::table.filter(sessions::user_id.eq(&uid)).count().get_result(c).unwrap());
    assert_eq!(left, 1);
    let events = actions_of(&app, &uid);
    assert!(events.contains(&("account.sessions_ended".into(), Some("{\"sessions_ended\":2}".into()))), "{events:?}");
}

on_both_databases!(
    audit_page_filters_and_pages,
    audit_log_is_isolated_between_organizations,
    csv_export_is_complete_and_inert,
    account_name_and_language,
    password_change_ends_other_sessions,
    sign_out_everywhere_else,
);
