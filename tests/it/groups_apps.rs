//! Groups and apps: the admin pages, icon uploads, My Apps, and app URLs as redirect targets.

use diesel::prelude::*;
use reqwest::{Response, StatusCode};
use vestibule::db::schema::{apps, audit_events, group_members, org_groups};
use vestibule::services::{Actor, apps as app_service, groups as group_service, orgs};

use crate::helpers::{Browser, PASSWORD, TestApp, location};
use crate::on_both_databases;
use crate::redeem::invite_by_email;

const BOUNDARY: &str = "vestibule-test-boundary-7MA4YWxkTrZu0gW";

/// A file part of a multipart form: file name, declared type, bytes.
pub type FilePart<'a> = (&'a str, &'a str, &'a [u8]);

/// POSTs a `multipart/form-data` form as a browser does, the CSRF token in the action URL.
pub async fn post_multipart(b: &Browser, path: &str, fields: &[(&str, &str)], icon: Option<FilePart<'_>>) -> Response {
    let token = b.csrf().await;
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes(),
        );
    }
    let (filename, content_type, bytes) = icon.unwrap_or(("", "application/octet-stream", b""));
    body.extend_from_slice(
        format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"icon\"; filename=\"{filename}\"\r\nContent-Type: {content_type}\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    let sep = if path.contains('?') { '&' } else { '?' };
    b.client
        .post(format!("{}{path}{sep}csrf_token={token}", b.base))
        .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"))
        .body(body)
        .send()
        .await
        .unwrap()
}

/// The smallest file our rules take for a PNG: signature and an IHDR chunk header.
fn png() -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    v.extend_from_slice(&[0, 0, 0, 16, 0, 0, 0, 16, 8, 6, 0, 0, 0, 0x1f, 0xf3, 0xff, 0x61]);
    v
}

const SAFE_SVG: &str =
    r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 8 8"><rect width="8" height="8" fill="#36c"/></svg>"##;

/// Creates an app from the admin console; returns its id.
async fn create_app(admin: &Browser, name: &str, url: &str, icon: Option<FilePart<'_>>) -> String {
    let res = post_multipart(
        admin,
        "/o/acme/admin/apps",
        &[("name", name), ("url", url), ("description", "For tests")],
        icon,
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "create app: {}", res.text().await.unwrap());
    let loc = location(&res);
    let id = loc.trim_start_matches("/o/acme/admin/apps/").split('?').next().unwrap().to_owned();
    assert_eq!(id.len(), 36, "{loc}");
    id
}

/// Creates a group from the admin console; returns its id.
async fn create_group(admin: &Browser, name: &str) -> String {
    let res = admin.post("/o/acme/admin/groups", &[("name", name), ("description", "")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    location(&res).trim_start_matches("/o/acme/admin/groups/").split('?').next().unwrap().to_owned()
}

/// Invites `email` and lets them register; with `accept`, they also accept. Returns their browser.
async fn guest(app: &TestApp, admin: &Browser, email: &str, accept: bool) -> Browser {
    let link = invite_by_email(app, admin, email).await;
    let b = app.browser();
    let res = b
        .post(
            &format!("{link}/register"),
            &[("display_name", "Gil Guest"), ("password", PASSWORD), ("confirm", PASSWORD)],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    if accept {
        let res = b.post(&format!("{link}/accept"), &[]).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER);
    }
    b
}

fn app_count(app: &TestApp) -> i64 {
    app.with_conn(|c| apps::table.count().get_result(c).unwrap())
}

fn actions(app: &TestApp) -> Vec<String> {
    app.with_conn(|c| audit_events::table.select(audit_events::action).load(c).unwrap())
}

async fn groups_are_created_renamed_filled_and_deleted(app: TestApp) {
    let admin = app.admin().await;
    let (status, body) = admin.get_text("/o/acme/admin/groups").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("No groups yet") && body.contains("href=\"/o/acme/admin/groups\" aria-current=\"page\""));

    let id = create_group(&admin, "Partners").await;
    // Same name in another case: refused, input kept, error tied to the field.
    let res = admin.post("/o/acme/admin/groups", &[("name", "  PARTNERS "), ("description", "dup")]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = res.text().await.unwrap();
    assert!(body.contains("already has this name") && body.contains("aria-describedby=\"e-name\""));
    assert!(body.contains("value=\"  PARTNERS \"") && body.contains(">dup</textarea>"));

    // Rename.
    let res = admin
        .post(&format!("/o/acme/admin/groups/{id}"), &[("name", "Key partners"), ("description", "Our best")])
        .await;
    assert_eq!(location(&res), format!("/o/acme/admin/groups/{id}?done=renamed"));
    let res = admin.post(&format!("/o/acme/admin/groups/{id}"), &[("name", ""), ("description", "")]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Members: the admin (a member), a pending guest as owner; unknown addresses are refused.
    invite_by_email(&app, &admin, "pat@partner.test").await;
    let add = format!("/o/acme/admin/groups/{id}/members");
    let res = admin.post(&add, &[("email", "admin@acme.test"), ("role", "member")]).await;
    assert_eq!(location(&res), format!("/o/acme/admin/groups/{id}?done=added"));
    let res = admin.post(&add, &[("email", "PAT@partner.test"), ("role", "owner")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let res = admin.post(&add, &[("email", "nobody@else.test"), ("role", "member")]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = res.text().await.unwrap();
    assert!(body.contains("Nobody with this address belongs") && body.contains("value=\"nobody@else.test\""));
    // Adding twice changes nothing.
    admin.post(&add, &[("email", "admin@acme.test"), ("role", "member")]).await;
    let (status, body) = admin.get_text(&format!("/o/acme/admin/groups/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("<h1>Key partners</h1>") && body.contains("pat@partner.test"));
    assert!(body.contains("Pending acceptance") && body.contains("Make owner"));
    let n: i64 = app.with_conn(|c| group_members::table.count().get_result(c).unwrap());
    assert_eq!(n, 2);

    // Owners: the guest owns the group; the toggle takes it back.
    let (org_id, pat) = app.with_conn(|c| {
        let org = orgs::find_by_slug(c, "acme").unwrap().unwrap();
        let email = vestibule::domain::Email::parse("pat@partner.test").unwrap();
        let m = group_service::membership_by_email(c, &org.id, &email).unwrap().unwrap();
        (org.id, m.id)
    });
    let owned = app.with_conn(|c| group_service::owned_by(c, &org_id, &pat).unwrap());
    assert_eq!(owned.iter().map(|g| g.name.as_str()).collect::<Vec<_>>(), ["Key partners"]);
    let res = admin.post(&format!("/o/acme/admin/groups/{id}/members/{pat}/owner"), &[("owner", "false")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(app.with_conn(|c| group_service::owned_by(c, &org_id, &pat).unwrap()).is_empty());
    let res = admin.post(&format!("/o/acme/admin/groups/{id}/members/{pat}/remove"), &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let n: i64 = app.with_conn(|c| group_members::table.count().get_result(c).unwrap());
    assert_eq!(n, 1);

    // Delete, after a confirmation page.
    let (status, body) = admin.get_text(&format!("/o/acme/admin/groups/{id}/delete")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Delete the group Key partners?"));
    let res = admin.post(&format!("/o/acme/admin/groups/{id}/delete"), &[]).await;
    assert_eq!(location(&res), "/o/acme/admin/groups?done=deleted");
    let left: i64 = app.with_conn(|c| org_groups::table.count().get_result(c).unwrap());
    assert_eq!(left, 0);
    let all = actions(&app);
    for a in [
        "group.created",
        "group.renamed",
        "group.member_added",
        "group.owner_changed",
        "group.member_removed",
        "group.deleted",
    ] {
        assert!(all.iter().any(|x| x == a), "missing audit {a}: {all:?}");
    }
}

async fn another_orgs_groups_and_apps_are_not_found(app: TestApp) {
    let admin = app.admin().await;
    app.create_org("Beta Ltd", "beta", "boss@beta.test");
    let (group_b, app_b) = app.with_conn(|c| {
        let beta = orgs::find_by_slug(c, "beta").unwrap().unwrap();
        let input = group_service::GroupInput { name: "Beta team".into(), description: String::new() };
        let g = group_service::create(c, &beta.id, &input, &Actor::default()).unwrap();
        let valid = app_service::validate(&app_service::AppInput {
            name: "Beta wiki".into(),
            url: "https://wiki.beta.test".into(),
            icon: Some(png()),
            ..Default::default()
        })
        .unwrap();
        let a = app_service::create(c, &beta.id, &valid, &Actor::default()).unwrap();
        (g.id, a.id)
    });
    let acme_app = create_app(&admin, "Acme wiki", "https://wiki.acme.test", None).await;
    for path in [
        format!("/o/acme/admin/groups/{group_b}"),
        format!("/o/acme/admin/groups/{group_b}/delete"),
        format!("/o/acme/admin/apps/{app_b}"),
        format!("/o/acme/admin/apps/{app_b}/delete"),
        format!("/o/acme/apps/{app_b}/icon"),
        format!("/o/beta/admin/groups/{group_b}"),
    ] {
        assert_eq!(admin.get(&path).await.status(), StatusCode::NOT_FOUND, "GET {path}");
    }
    for (path, fields) in [
        (format!("/o/acme/admin/groups/{group_b}"), vec![("name", "Mine now")]),
        (format!("/o/acme/admin/groups/{group_b}/delete"), vec![]),
        (format!("/o/acme/admin/groups/{group_b}/members"), vec![("email", "admin@acme.test")]),
        (format!("/o/acme/admin/apps/{app_b}/delete"), vec![]),
        (format!("/o/acme/admin/apps/{app_b}/assign"), vec![("email", "admin@acme.test")]),
    ] {
        assert_eq!(admin.post(&path, &fields).await.status(), StatusCode::NOT_FOUND, "POST {path}");
    }
    let res = post_multipart(
        &admin,
        &format!("/o/acme/admin/apps/{app_b}"),
        &[("name", "x"), ("url", "https://x.test")],
        None,
    )
    .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    // Beta's group cannot receive Acme's app, and Beta's admin is nobody in Acme.
    let res = admin.post(&format!("/o/acme/admin/apps/{acme_app}/assign-group"), &[("group_id", &group_b)]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let res = admin.post(&format!("/o/acme/admin/apps/{acme_app}/assign"), &[("email", "boss@beta.test")]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // Nothing of Beta's changed.
    let name: String = app.with_conn(|c| org_groups::table.find(&group_b).select(org_groups::name).first(c).unwrap());
    assert_eq!(name, "Beta team");
    assert_eq!(app_count(&app), 2);
}

async fn icons_are_checked_by_content_and_served_safely(app: TestApp) {
    let admin = app.admin().await;
    let png = png();
    let id = create_app(
        &admin,
        "Wiki",
        "https://wiki.partner.test/start",
        Some(("logo.bin", "application/octet-stream", &png)),
    )
    .await;
    let res = admin.get(&format!("/o/acme/apps/{id}/icon")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "image/png");
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    assert_eq!(res.bytes().await.unwrap().as_ref(), png.as_slice());

    // Refused: a text file calling itself PNG, a PNG over 256 KiB, an SVG with a script.
    let mut big = png.clone();
    big.resize(256 * 1024 + 1, 0);
    let script = br#"<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>"#;
    for (file, message) in [
        (("fake.png", "image/png", b"GIF89a not really a png".as_slice()), "must be a PNG, JPEG or SVG"),
        (("big.png", "image/png", big.as_slice()), "larger than 256 KiB"),
        (("evil.svg", "image/svg+xml", script.as_slice()), "contains scripts"),
    ] {
        let res = post_multipart(
            &admin,
            "/o/acme/admin/apps",
            &[("name", "Bad icon"), ("url", "https://bad.test"), ("description", "kept")],
            Some(file),
        )
        .await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{}", file.0);
        let body = res.text().await.unwrap();
        assert!(body.contains(message), "{}: {body}", file.0);
        assert!(body.contains("aria-describedby=\"e-icon h-icon\"") && body.contains("value=\"Bad icon\""));
        assert!(body.contains(">kept</textarea>"));
    }
    assert_eq!(app_count(&app), 1, "nothing stored");

    // Editing with a bad icon keeps the old one; a safe SVG replaces it and is served locked down.
    let edit = format!("/o/acme/admin/apps/{id}");
    let res = post_multipart(
        &admin,
        &edit,
        &[("name", "Wiki"), ("url", "https://wiki.partner.test/start")],
        Some(("x.svg", "image/svg+xml", script)),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let ct: Option<String> = app.with_conn(|c| apps::table.find(&id).select(apps::icon_type).first(c).unwrap());
    assert_eq!(ct.as_deref(), Some("image/png"));
    let res = post_multipart(
        &admin,
        &edit,
        &[("name", "Wiki 2"), ("url", "https://wiki.partner.test/start")],
        Some(("logo.png", "image/png", SAFE_SVG.as_bytes())),
    )
    .await;
    assert_eq!(location(&res), format!("/o/acme/admin/apps/{id}?done=saved"));
    let res = admin.get(&format!("/o/acme/apps/{id}/icon")).await;
    assert_eq!(res.headers()["content-type"], "image/svg+xml");
    assert_eq!(res.headers()["content-security-policy"], "default-src 'none'; style-src 'unsafe-inline'");
    assert_eq!(res.headers()["content-disposition"], "inline");
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");

    // Removing the icon brings the initial back.
    let res = post_multipart(
        &admin,
        &edit,
        &[("name", "Wiki 2"), ("url", "https://wiki.partner.test/"), ("remove_icon", "on")],
        None,
    )
    .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(admin.get(&format!("/o/acme/apps/{id}/icon")).await.status(), StatusCode::NOT_FOUND);
    let (_, body) = admin.get_text("/o/acme/admin/apps").await;
    assert!(body.contains("class=\"initial tint-") && body.contains(">W</span>") && body.contains("Wiki 2"));

    // Without the token in the action URL, the upload is refused before anything is read.
    let res = admin
        .client
        .post(format!("{}/o/acme/admin/apps", admin.base))
        .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"))
        .body(format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nX\r\n--{BOUNDARY}--\r\n"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let all = actions(&app);
    assert!(all.iter().any(|a| a == "app.created") && all.iter().any(|a| a == "app.updated"));
}

async fn my_apps_shows_apps_given_directly_or_through_a_group(app: TestApp) {
    let admin = app.admin().await;
    let accepted = guest(&app, &admin, "ann@partner.test", true).await;
    let pending = guest(&app, &admin, "pia@partner.test", false).await;
    let png = png();
    let wiki = create_app(&admin, "Wiki", "https://wiki.partner.test/", Some(("w.png", "image/png", &png))).await;
    let chat = create_app(&admin, "Chat", "https://chat.partner.test/", None).await;
    create_app(&admin, "Payroll", "https://pay.acme.test/", None).await;
    let team = create_group(&admin, "Partners").await;

    // Wiki directly to both guests; Chat to a group holding both.
    for email in ["ann@partner.test", "pia@partner.test"] {
        let res = admin.post(&format!("/o/acme/admin/apps/{wiki}/assign"), &[("email", email)]).await;
        assert_eq!(location(&res), format!("/o/acme/admin/apps/{wiki}?done=assigned"));
        admin.post(&format!("/o/acme/admin/groups/{team}/members"), &[("email", email), ("role", "member")]).await;
    }
    let res = admin.post(&format!("/o/acme/admin/apps/{chat}/assign-group"), &[("group_id", &team)]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let res = admin.post(&format!("/o/acme/admin/apps/{chat}/assign"), &[("email", "nobody@else.test")]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let (_, body) = admin.get_text(&format!("/o/acme/admin/apps/{chat}")).await;
    assert!(body.contains("Partners") && body.contains("Take back"));

    // The accepted guest sees both tiles, with the icon or the initial, and not Payroll.
    let (status, body) = accepted.get_text("/o/acme/apps").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("href=\"https://wiki.partner.test/\"") && body.contains(&format!("/o/acme/apps/{wiki}/icon"))
    );
    assert!(body.contains("href=\"https://chat.partner.test/\"") && body.contains(">C</span>"));
    assert!(!body.contains("Payroll"));
    assert!(body.contains("Leave organization"));
    assert_eq!(accepted.get(&format!("/o/acme/apps/{wiki}/icon")).await.status(), StatusCode::OK);

    // The pending guest sees nothing at all.
    assert_eq!(pending.get("/o/acme/apps").await.status(), StatusCode::NOT_FOUND);
    assert_eq!(pending.get(&format!("/o/acme/apps/{wiki}/icon")).await.status(), StatusCode::NOT_FOUND);

    // Taking the group's assignment back removes Chat.
    let assignment: String = app.with_conn(|c| {
        vestibule::db::schema::app_assignments::table
            .filter(vestibule::db::schema::app_assignments::group_id.eq(&team))
            .select(vestibule::db::schema::app_assignments::id)
            .first(c)
            .unwrap()
    });
    let res = admin.post(&format!("/o/acme/admin/apps/{chat}/assignments/{assignment}/remove"), &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let (_, body) = accepted.get_text("/o/acme/apps").await;
    assert!(body.contains("wiki.partner.test") && !body.contains("chat.partner.test"));

    // Deleting an app takes its tile away; the service functions others call agree.
    let res = admin.post(&format!("/o/acme/admin/apps/{wiki}/delete"), &[]).await;
    assert_eq!(location(&res), "/o/acme/admin/apps?done=deleted");
    let (_, body) = accepted.get_text("/o/acme/apps").await;
    assert!(body.contains("No applications are assigned to you yet"));
    let all = actions(&app);
    assert!(["app.assigned", "app.unassigned", "app.deleted"].iter().all(|a| all.iter().any(|x| x == a)), "{all:?}");
}

async fn my_apps_links_my_other_organizations(app: TestApp) {
    let admin = app.admin().await;
    // The same account also administers Globex.
    app.create_org("Globex", "globex", "admin@acme.test");
    let (status, body) = admin.get_text("/o/acme/apps").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Your organizations"));
    assert!(body.contains("<a href=\"/o/acme/apps\" aria-current=\"page\">Acme Corp</a>"));
    assert!(body.contains("<a href=\"/o/globex/apps\">Globex</a>"));
    let (_, body) = admin.get_text("/o/globex/apps").await;
    assert!(body.contains("<a href=\"/o/acme/apps\">Acme Corp</a>"));
}

async fn app_urls_are_allowed_redirects(app: TestApp) {
    let admin = app.admin().await;
    create_app(&admin, "Wiki", "https://wiki.partner.test/start", None).await;
    let origins = app.with_conn(|c| {
        let org = orgs::find_by_slug(c, "acme").unwrap().unwrap();
        app_service::origins(c, &org.id).unwrap()
    });
    assert_eq!(origins, ["https://wiki.partner.test"]);
    let res = admin
        .post(
            "/o/acme/admin/invite",
            &[("email", "pat@partner.test"), ("redirect_url", "https://other.partner.test/"), ("send_email", "on")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let res = admin
        .post(
            "/o/acme/admin/invite",
            &[
                ("email", "pat@partner.test"),
                ("redirect_url", "https://wiki.partner.test/page?x=1"),
                ("send_email", "on"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    // The guest lands there after accepting.
    let mail = app.smtp.wait_for("pat@partner.test").await;
    let link = crate::helpers::path_of(&mail.redeem_link());
    let b = app.browser();
    b.post(&format!("{link}/register"), &[("display_name", "Pat"), ("password", PASSWORD), ("confirm", PASSWORD)])
        .await;
    let res = b.post(&format!("{link}/accept"), &[]).await;
    assert_eq!(location(&res), "https://wiki.partner.test/page?x=1");
}

async fn app_form_errors_keep_input(app: TestApp) {
    let admin = app.admin().await;
    let (status, body) = admin.get_text("/o/acme/admin/apps/new").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("enctype=\"multipart/form-data\"") && body.contains("?csrf_token="));
    assert!(body.contains("<label for=\"f-icon\">"));
    let res = post_multipart(
        &admin,
        "/o/acme/admin/apps",
        &[("name", ""), ("url", "http://intranet.partner.test/"), ("description", "Team wiki")],
        None,
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = res.text().await.unwrap();
    assert!(body.contains("aria-describedby=\"e-name\"") && body.contains("must use https://"));
    assert!(body.contains("value=\"http://intranet.partner.test/\"") && body.contains(">Team wiki</textarea>"));
    // http is fine for local development.
    create_app(&admin, "Local", "http://localhost:3000/", None).await;
    assert_eq!(app_count(&app), 1);
}

on_both_databases!(
    groups_are_created_renamed_filled_and_deleted,
    another_orgs_groups_and_apps_are_not_found,
    icons_are_checked_by_content_and_served_safely,
    my_apps_shows_apps_given_directly_or_through_a_group,
    my_apps_links_my_other_organizations,
    app_urls_are_allowed_redirects,
    app_form_errors_keep_input,
);
