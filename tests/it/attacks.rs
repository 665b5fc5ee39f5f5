//! The attack review (issue 13): each finding as a class of inputs, not only the one probe.

use diesel::prelude::*;
use reqwest::StatusCode;

use crate::helpers::{PASSWORD, TestApp, location};
use crate::on_both_databases;

/// `next` values that must never leave Vestibule nor break the `Location` header.
const HOSTILE_NEXT: &[&str] = &[
    "/\t/evil.test",
    "/\u{b}/x",
    "/\u{0}/x",
    "/\u{7f}/x",
    "/\u{85}/x",
    "/\r\nSet-Cookie: x=1",
    "//evil.test",
    "/\\evil.test",
    "\\\\evil.test",
    "/..//evil.test",
    "/.//evil.test",
    "/%2e%2e//evil.test",
    "https://evil.test/",
    "javascript:alert(1)",
    "evil.test",
];

/// A `Location` a browser resolves on our own origin, in plain visible ASCII.
fn assert_local(loc: &str, what: &str) {
    assert!(loc.bytes().all(|b| b.is_ascii_graphic()), "{what}: {loc:?}");
    assert!(loc.starts_with('/') && !loc.starts_with("//"), "{what}: {loc:?}");
    let base = url::Url::parse("https://portal.test/").unwrap();
    assert_eq!(base.join(loc).unwrap().origin(), base.origin(), "{what}: {loc:?}");
}

async fn redirects_after_sign_in_stay_local(app: TestApp) {
    app.create_org("Acme Corp", "acme", "admin@acme.test");
    let b = app.browser();
    for next in HOSTILE_NEXT {
        // Sign-in (POST), already signed in (GET), and the language switch all use one rule.
        let res = b.post("/signin", &[("email", "admin@acme.test"), ("password", PASSWORD), ("next", next)]).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "POST /signin next={next:?}");
        assert_eq!(location(&res), "/", "POST /signin next={next:?}");
        let mut url = url::Url::parse(&format!("{}/signin", app.base)).unwrap();
        url.query_pairs_mut().append_pair("next", next);
        let res = b.get(url.as_str()).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "GET /signin next={next:?}");
        assert_eq!(location(&res), "/", "GET /signin next={next:?}");
        let res = b.post("/lang", &[("lang", "fr"), ("next", next)]).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "/lang next={next:?}");
        assert_eq!(location(&res), "/", "/lang next={next:?}");
        b.post("/signout", &[]).await;
    }
    // Local targets still work, normalized to ASCII.
    let res =
        b.post("/signin", &[("email", "admin@acme.test"), ("password", PASSWORD), ("next", "/o/acme/apps?x=1")]).await;
    assert_eq!(location(&res), "/o/acme/apps?x=1");
    let res = b.post("/lang", &[("lang", "en"), ("next", "/account/café")]).await;
    assert_eq!(location(&res), "/account/caf%C3%A9");
    assert_local(&location(&res), "non-ASCII");
    // A raw query (not form-decoded by a client) with a control character: never a 500.
    for raw in ["/signin?next=/%0B/x", "/signin?next=/%09/evil.test", "/signin?next=/%E2%80%A8/x"] {
        let res = b.get(raw).await;
        assert_eq!(res.status(), StatusCode::SEE_OTHER, "{raw}");
        assert_local(&location(&res), raw);
    }
    // Path segments echoed into a Location never make a 500 either.
    for raw in ["/o/acme/admin/users/%0B/reset", "/o/acme/admin/users/%C3%A9/block"] {
        let res = b.post(raw, &[("email", "x@partner.test")]).await;
        assert_ne!(res.status(), StatusCode::INTERNAL_SERVER_ERROR, "{raw}");
        if res.status().is_redirection() {
            assert_local(&location(&res), raw);
        }
    }
}

async fn an_invitation_cannot_chain_into_an_open_redirect(app: TestApp) {
    let admin = app.admin().await;
    // Vestibule's own sign-in page is a same-origin landing URL; its `next` is judged again.
    let landing = format!("{}/signin?next=/%09/evil.test", app.base);
    let res = admin
        .post(
            "/o/acme/admin/invite",
            &[("email", "pat@partner.test"), ("redirect_url", &landing), ("send_email", "on")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let link = crate::helpers::path_of(&app.smtp.wait_for("pat@partner.test").await.redeem_link());
    let guest = app.browser();
    guest
        .post(&format!("{link}/register"), &[("display_name", "Pat"), ("password", PASSWORD), ("confirm", PASSWORD)])
        .await;
    let res = guest.post(&format!("{link}/accept"), &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let hop = location(&res);
    assert!(hop.starts_with(&app.base), "{hop}");
    let res = guest.get(&hop).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "/");
    // Landing URLs with control characters or backslashes are refused when inviting.
    for bad in [format!("{}/\t/evil.test", app.base), format!("{}\\@evil.test/", app.base)] {
        let res = admin
            .post(
                "/o/acme/admin/invite",
                &[("email", "sam@partner.test"), ("redirect_url", &bad), ("send_email", "on")],
            )
            .await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}");
    }
    let n: i64 = app.with_conn(|c| vestibule::db::schema::invitations::table.count().get_result(c).unwrap());
    assert_eq!(n, 1);
}

on_both_databases!(redirects_after_sign_in_stay_local, an_invitation_cannot_chain_into_an_open_redirect);

/// A key of the acme org made by the service, acting as its first admin.
fn api_key(app: &TestApp) -> String {
    app.with_conn(|c| vestibule::services::api_keys::create_for_cli(c, "acme", "attack key", None).unwrap())
}

fn membership(app: &TestApp, mid: &str) -> (String, String, String) {
    use vestibule::db::schema::{memberships, users};
    app.with_conn(|c| {
        memberships::table
            .inner_join(users::table)
            .filter(memberships::id.eq(mid))
            .select((memberships::role, memberships::state, users::email))
            .first(c)
            .unwrap()
    })
}

async fn reset_redemption_drops_the_role_and_spares_admins_from_keys(app: TestApp) {
    use crate::policy::add_person;
    let admin = app.admin().await;
    let ada = add_person(&app, "acme", "ada@acme.test", "Member", "admin");
    let gil = add_person(&app, "acme", "gil@partner.test", "Guest", "guest_inviter");
    let key = api_key(&app);
    let reset = |mid: &str, to: &str| {
        reqwest::Client::new()
            .post(format!("{}/api/v1.0/invitations", app.base))
            .bearer_auth(&key)
            .json(&serde_json::json!({
                "invitedUserEmailAddress": to,
                "inviteRedirectUrl": format!("{}/o/acme/apps", app.base),
                "resetRedemption": true,
                "invitedUser": {"id": mid},
            }))
            .send()
    };
    // A key cannot reset another admin's account: nothing changes, nothing is sent.
    let res = reset(&ada, "attacker@evil.test").await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(membership(&app, &ada), ("admin".into(), "Accepted".into(), "ada@acme.test".into()));
    // A non-admin with a role loses it on reset (the new address may be someone else).
    let res = reset(&gil, "gil@newco.test").await.unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(membership(&app, &gil), ("none".into(), "PendingAcceptance".into(), "gil@newco.test".into()));
    // An admin of the console may reset an admin; the role is dropped there too.
    let res = admin.post(&format!("/o/acme/admin/users/{ada}/reset"), &[("email", "ada@newco.test")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(membership(&app, &ada), ("none".into(), "PendingAcceptance".into(), "ada@newco.test".into()));
    let link = crate::helpers::path_of(&app.smtp.wait_for("ada@newco.test").await.redeem_link());
    let b = app.browser();
    b.post(&format!("{link}/register"), &[("display_name", "Ada"), ("password", PASSWORD), ("confirm", PASSWORD)])
        .await;
    assert_eq!(location(&b.post(&format!("{link}/accept"), &[]).await), "/o/acme/apps");
    assert_eq!(b.get("/o/acme/admin").await.status(), StatusCode::NOT_FOUND, "redeeming a reset gives no admin role");
    app.wait_mail_settled().await;
    assert_eq!(app.smtp.count_for("attacker@evil.test"), 0);
}

on_both_databases!(reset_redemption_drops_the_role_and_spares_admins_from_keys);

async fn concurrent_wrong_codes_get_five_guesses_in_all(app: TestApp) {
    use vestibule::db::schema::invitations;
    let admin = app.admin().await;
    let link = crate::redeem::invite_disclosed(&app, &admin, "lee@partner.test").await;
    let guest = app.browser();
    guest.post(&format!("{link}/code/send"), &[]).await;
    let mail = app.smtp.wait_for("lee@partner.test").await;
    let code: String = mail.header("Subject").unwrap().chars().take_while(char::is_ascii_digit).collect();
    let wrong = if code == "111111" { "222222" } else { "111111" };
    let token = guest.csrf().await;
    let url = format!("{}{link}/code", app.base);
    let tries = (0..60).map(|_| {
        let (client, url, token) = (guest.client.clone(), url.clone(), token.clone());
        async move {
            let res = client.post(url).form(&[("code", wrong), ("csrf_token", token.as_str())]).send().await.unwrap();
            (res.status(), res.text().await.unwrap())
        }
    });
    let answers = futures_util::future::join_all(tries).await;
    assert!(answers.iter().all(|(s, _)| *s == StatusCode::UNPROCESSABLE_ENTITY), "{:?}", answers.iter().map(|a| a.0));
    let checked = answers.iter().filter(|(_, body)| body.contains("That code is not correct")).count();
    assert_eq!(checked, 4, "four wrong guesses answered as such, the fifth kills the code");
    let attempts: i64 = app.with_conn(|c| invitations::table.select(invitations::code_attempts).first(c).unwrap());
    assert_eq!(attempts, 5);
    // The right code no longer works.
    let res = guest.post(&format!("{link}/code"), &[("code", &code)]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

on_both_databases!(concurrent_wrong_codes_get_five_guesses_in_all);

async fn concurrent_invitations_never_pass_the_hourly_limit(app: TestApp) {
    use vestibule::db::schema::invitations;
    let admin = app.admin().await;
    assert_eq!(admin.save_settings(&[("invites_per_hour", "3")]).await.status(), StatusCode::SEE_OTHER);
    let token = admin.csrf().await;
    let sends = (0..12).map(|i| {
        let (client, url, token) = (admin.client.clone(), format!("{}/o/acme/admin/invite", app.base), token.clone());
        async move {
            let email = format!("g{i}@partner.test");
            let fields = [("email", email.as_str()), ("send_email", "on"), ("csrf_token", token.as_str())];
            client.post(url).form(&fields).send().await.unwrap().status()
        }
    });
    let statuses = futures_util::future::join_all(sends).await;
    let created = statuses.iter().filter(|s| **s == StatusCode::SEE_OTHER).count();
    let refused = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!((created, refused), (3, 9), "{statuses:?}");
    let n: i64 = app.with_conn(|c| invitations::table.count().get_result(c).unwrap());
    assert_eq!(n, 3);
    app.wait_mail_settled().await;
    let mails =
        app.smtp.all().iter().filter(|m| m.header("Subject").is_some_and(|s| s.contains("invited you"))).count();
    assert_eq!(mails, 3);
}

async fn concurrent_wrong_passwords_get_five_tries(app: TestApp) {
    app.create_org("Acme Corp", "acme", "admin@acme.test");
    let b = app.browser();
    let token = b.csrf().await;
    let tries = (0..20).map(|_| {
        let (client, url, token) = (b.client.clone(), format!("{}/signin", app.base), token.clone());
        async move {
            let fields = [("email", "admin@acme.test"), ("password", "wrong password guess"), ("csrf_token", &token)];
            client.post(url).form(&fields).send().await.unwrap().status()
        }
    });
    let statuses = futures_util::future::join_all(tries).await;
    let checked = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    let paused = statuses.iter().filter(|s| **s == StatusCode::TOO_MANY_REQUESTS).count();
    assert_eq!((checked, paused), (5, 15), "{statuses:?}");
}

on_both_databases!(concurrent_invitations_never_pass_the_hourly_limit, concurrent_wrong_passwords_get_five_tries);

async fn concurrent_requests_with_one_idempotency_key_act_once(app: TestApp) {
    use vestibule::db::schema::{idempotency_keys, invitations};
    let _admin = app.admin().await;
    let key = api_key(&app);
    let url = format!("{}/api/v1.0/invitations", app.base);
    let body = |name: &str| {
        serde_json::json!({
            "invitedUserEmailAddress": "idem@partner.test",
            "inviteRedirectUrl": format!("{}/o/acme/apps", app.base),
            "invitedUserDisplayName": name,
            "sendInvitationMessage": true,
        })
    };
    let send = |b: serde_json::Value, idem: &'static str| {
        let (client, url, key) = (reqwest::Client::new(), url.clone(), key.clone());
        async move {
            let res = client.post(url).bearer_auth(key).header("Idempotency-Key", idem).json(&b).send().await.unwrap();
            let status = res.status();
            (status, res.json::<serde_json::Value>().await.unwrap_or_default())
        }
    };
    // Ten identical requests at once: one acts, the others replay its answer.
    let answers = futures_util::future::join_all((0..10).map(|_| send(body("Pat"), "same-key"))).await;
    assert!(answers.iter().all(|(s, _)| *s == StatusCode::CREATED), "{answers:?}");
    let ids: std::collections::HashSet<String> =
        answers.iter().map(|(_, v)| v["id"].as_str().unwrap_or_default().to_owned()).collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let n: i64 = app.with_conn(|c| invitations::table.count().get_result(c).unwrap());
    assert_eq!(n, 1);
    app.wait_mail_settled().await;
    assert_eq!(app.smtp.count_for("idem@partner.test"), 1, "one email");
    // The same key with another body, at once or later: 422, nothing more created.
    let answers = futures_util::future::join_all(
        (0..6).map(|i| send(body(if i % 2 == 0 { "Pat" } else { "Someone else" }), "same-key")),
    )
    .await;
    for (i, (s, _)) in answers.iter().enumerate() {
        let want = if i % 2 == 0 { StatusCode::CREATED } else { StatusCode::UNPROCESSABLE_ENTITY };
        assert_eq!(*s, want, "{answers:?}");
    }
    let mixed =
        futures_util::future::join_all((0..6).map(|i| send(body(if i % 2 == 0 { "Kim" } else { "Lou" }), "other-key")))
            .await;
    let ok = mixed.iter().filter(|(s, _)| *s == StatusCode::CREATED).count();
    let refused = mixed.iter().filter(|(s, _)| *s == StatusCode::UNPROCESSABLE_ENTITY).count();
    assert_eq!((ok, refused), (3, 3), "{mixed:?}");
    assert!(mixed.iter().all(|(s, _)| !s.is_server_error()));
    let n: i64 = app.with_conn(|c| invitations::table.count().get_result(c).unwrap());
    assert_eq!(n, 1, "other-key found the pending invitation of the same address");
    let stored: Vec<i64> = app.with_conn(|c| idempotency_keys::table.select(idempotency_keys::status).load(c).unwrap());
    assert_eq!(stored, [201, 201], "both keys hold an answer, none is left in progress");
}

on_both_databases!(concurrent_requests_with_one_idempotency_key_act_once);

async fn csrf_token_changes_with_the_identity(app: TestApp) {
    use crate::helpers::extract_csrf;
    let admin = app.admin().await;
    let before = admin.csrf().await;
    // Sign-out: the signed-in token dies with the session.
    assert_eq!(admin.post("/signout", &[]).await.status(), StatusCode::SEE_OTHER);
    let anonymous = admin.csrf().await;
    assert_ne!(anonymous, before);
    let res = admin.post_raw("/lang", &[("lang", "en"), ("csrf_token", &before)]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN, "the old token is refused");
    // Sign-in: the anonymous token (which a planted cookie could have fixed) is replaced.
    admin.sign_in("admin@acme.test", PASSWORD).await;
    let signed_in = extract_csrf(&admin.get_text("/account").await.1).unwrap();
    assert_ne!(signed_in, anonymous);
    let res = admin.post_raw("/lang", &[("lang", "en"), ("csrf_token", &anonymous)]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = admin.post_raw("/lang", &[("lang", "en"), ("csrf_token", &signed_in)]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    // Redemption renews the session: new token again.
    let link = crate::redeem::invite_by_email(&app, &admin, "pat@partner.test").await;
    let guest = app.browser();
    guest
        .post(&format!("{link}/register"), &[("display_name", "Pat"), ("password", PASSWORD), ("confirm", PASSWORD)])
        .await;
    let registered = guest.csrf().await;
    assert_eq!(location(&guest.post(&format!("{link}/accept"), &[]).await), "/o/acme/apps");
    let redeemed = guest.csrf().await;
    assert_ne!(redeemed, registered);
    let res = guest.post_raw("/lang", &[("lang", "en"), ("csrf_token", &registered)]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsts_only_when_the_public_url_is_https() {
    use crate::helpers::{Db, Options};
    let https = TestApp::start_with(Db::Sqlite, Options { https: true, ..Options::default() }).await.unwrap();
    let res = https.browser().get("/signin").await;
    assert_eq!(res.headers().get("strict-transport-security").unwrap(), "max-age=31536000");
    let http = TestApp::start(Db::Sqlite).await.unwrap();
    assert!(http.browser().get("/signin").await.headers().get("strict-transport-security").is_none());
}

on_both_databases!(csrf_token_changes_with_the_identity);

async fn oversized_input_is_cut_before_it_is_stored_or_counted(app: TestApp) {
    use vestibule::db::schema::audit_events;
    app.create_org("Acme Corp", "acme", "admin@acme.test");
    let b = app.browser();
    let huge = format!("{}@{}.test", "a".repeat(125_000), "b".repeat(125_000));
    for _ in 0..5 {
        let res = b.post("/signin", &[("email", &huge), ("password", "whatever password")]).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    // The five failures were counted against one (cut) address.
    let res = b.post("/signin", &[("email", &huge), ("password", "whatever password")]).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    // A forged X-Forwarded-For is not an address: it reaches neither the audit nor a key.
    let res = b
        .client
        .post(format!("{}/signin", app.base))
        .header("X-Forwarded-For", "x".repeat(6000))
        .form(&[("email", "nobody@acme.test"), ("password", "whatever"), ("csrf_token", &b.csrf().await)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let rows: Vec<(Option<String>, Option<String>, Option<String>)> = app.with_conn(|c| {
        audit_events::table
            .filter(audit_events::action.eq("signin.failed"))
            .select((audit_events::target, audit_events::detail, audit_events::client_ip))
            .load(c)
            .unwrap()
    });
    assert_eq!(rows.len(), 6);
    for (target, detail, ip) in rows {
        let size = target.map_or(0, |t| t.len()) + detail.map_or(0, |d| d.len());
        assert!(size <= 300, "{size} bytes stored for one failed sign-in");
        assert_eq!(ip.as_deref(), Some("127.0.0.1"));
    }
}

on_both_databases!(oversized_input_is_cut_before_it_is_stored_or_counted);

async fn svg_icons_are_allow_listed_by_namespace(app: TestApp) {
    use crate::groups_apps::post_multipart;
    let admin = app.admin().await;
    let refused: [&[u8]; 4] = [
        br#"<svg xmlns="http://www.w3.org/2000/svg" xmlns:s="http://www.w3.org/2000/svg"><s:script>alert(1)</s:script></svg>"#,
        br#"<svg xmlns="http://www.w3.org/2000/svg" xmlns:h="http://www.w3.org/1999/xhtml"><h:iframe src="https://evil.test"/></svg>"#,
        br#"<svg xmlns="http://www.w3.org/2000/svg"><scr&#105;pt>alert(1)</scr&#105;pt></svg>"#,
        br#"<svg xmlns="http://www.w3.org/2000/svg"><image href="https://evil.test/t.png"/></svg>"#,
    ];
    for svg in refused {
        let res = post_multipart(
            &admin,
            "/o/acme/admin/apps",
            &[("name", "Bad icon"), ("url", "https://bad.test"), ("description", "")],
            Some(("evil.svg", "image/svg+xml", svg)),
        )
        .await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{}", String::from_utf8_lossy(svg));
        assert!(res.text().await.unwrap().contains("only shapes, text and styles"));
    }
    let n: i64 = app.with_conn(|c| vestibule::db::schema::apps::table.count().get_result(c).unwrap());
    assert_eq!(n, 0, "nothing stored");
}

on_both_databases!(svg_icons_are_allow_listed_by_namespace);
