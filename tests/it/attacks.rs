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
