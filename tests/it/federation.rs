//! Federation: guests of Acme sign in at their home identity provider. That provider is a second,
//! real Vestibule ("Partner", its own database and signing keys) whose OpenID Connect app
//! redirects to Acme's `/auth/oidc/callback`. The guest's browser keeps one cookie jar per site
//! (as browsers do per host; both sites are on 127.0.0.1 here, so two jars stand for them).

use std::time::{Duration, Instant};

use diesel::prelude::*;
use reqwest::StatusCode;
use vestibule::db::schema::{audit_events, idp_bindings, idp_providers, idp_requests, memberships, users};
use vestibule::services::idp::{self, IdpPurpose, providers};
use vestibule::services::oidc::clients;
use vestibule::services::{Actor, apps, orgs};

use crate::helpers::{Browser, Db, PASSWORD, TestApp, location};
use crate::on_both_databases;
use crate::policy::add_person;
use crate::redeem::invite_by_email;

const GUEST: &str = "gina@partner.test";

/// Acme (the app under test), Partner (the guest's home provider) and Acme's admin.
struct World {
    acme: TestApp,
    partner: TestApp,
    admin: Browser,
    /// The id of Acme's provider "Partner".
    idp_id: String,
}

fn db_of(app: &TestApp) -> Db {
    if app.settings.database_url.starts_with("postgres") { Db::Postgres } else { Db::Sqlite }
}

/// Partner's issuer.
fn issuer(partner: &TestApp) -> String {
    format!("{}/o/partner", partner.base)
}

/// Starts Partner with an app for Acme and two accepted people given that app; Acme with its
/// admin; and adds Partner as Acme's identity provider for partner.test through the console.
async fn world(acme: TestApp) -> World {
    let partner = TestApp::start(db_of(&acme)).await.unwrap();
    partner.create_org("Partner", "partner", "admin@partner.test");
    let callback = format!("{}/auth/oidc/callback", acme.base);
    let created = partner.with_conn(|c| {
        clients::create_for_cli(c, "partner", "Acme guest access", "https://acme.example", &[callback], false).unwrap()
    });
    let partner_org = partner.with_conn(|c| orgs::find_by_slug(c, "partner").unwrap().unwrap().id);
    for email in [GUEST, "other@partner.test"] {
        let mid = add_person(&partner, "partner", email, "Member", "none");
        partner.with_conn(|c| apps::assign_membership(c, &partner_org, &created.app.id, &mid).unwrap());
    }
    let admin = acme.admin().await;
    let secret = created.secret.unwrap().expose().to_owned();
    let res = admin
        .post(
            "/o/acme/admin/identity-providers",
            &[
                ("kind", "generic"),
                ("name", "Partner"),
                ("issuer", &issuer(&partner)),
                ("client_id", &created.client_id),
                ("client_secret", &secret),
                ("extra_scopes", ""),
                ("domains", "partner.test"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "adding the provider: {}", res.text().await.unwrap());
    let idp_id = acme.with_conn(|c| idp_providers::table.select(idp_providers::id).first::<String>(c).unwrap());
    World { acme, partner, admin, idp_id }
}

/// A browser at Acme and the same person's browser at Partner, signed in there as `email`.
async fn guest_browsers(w: &World, email: &str) -> (Browser, Browser) {
    let at_partner = w.partner.browser();
    at_partner.sign_in(email, PASSWORD).await;
    (w.acme.browser(), at_partner)
}

/// From a start URL at Acme through Partner: returns Acme's callback URL with code and state.
async fn through_partner(w: &World, at_acme: &Browser, at_partner: &Browser, start: &str) -> String {
    let res = at_acme.get(start).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "start: {}", res.text().await.unwrap());
    let authorize = location(&res);
    assert!(authorize.starts_with(&format!("{}/oidc/authorize?", issuer(&w.partner))), "{authorize}");
    for part in ["code_challenge_method=S256", "state=", "nonce=", "scope=openid"] {
        assert!(authorize.contains(part), "{part} in {authorize}");
    }
    let res = at_partner.get(&authorize).await;
    assert_eq!(res.status(), StatusCode::FOUND, "authorize at Partner: {}", res.text().await.unwrap());
    let callback = location(&res);
    assert!(callback.starts_with(&format!("{}/auth/oidc/callback?", w.acme.base)), "{callback}");
    callback
}

fn bindings(app: &TestApp) -> Vec<(String, String, String)> {
    app.with_conn(|c| {
        idp_bindings::table
            .inner_join(users::table)
            .select((idp_bindings::issuer, idp_bindings::subject, users::email))
            .load(c)
            .unwrap()
    })
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

fn actions(app: &TestApp) -> Vec<(String, Option<String>)> {
    app.with_conn(|c| audit_events::table.select((audit_events::action, audit_events::detail)).load(c).unwrap())
}

/// The guest redeems through Partner: invitation → provider → consent → accepted, bound, no password.
async fn redeem_through_partner(w: &World, at_acme: &Browser, at_partner: &Browser, link: &str) {
    let callback = through_partner(w, at_acme, at_partner, &format!("{link}/oidc/{}", w.idp_id)).await;
    let res = at_acme.get(&callback).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "callback: {}", res.text().await.unwrap());
    assert_eq!(location(&res), format!("{link}/consent"));
    let (status, body) = at_acme.get_text(&format!("{link}/consent")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains(GUEST), "{body}");
    at_acme.forget_csrf();
    let res = at_acme.post(&format!("{link}/accept"), &[]).await;
    assert_eq!(location(&res), "/o/acme/apps");
}

async fn new_guest_redeems_then_signs_in_through_the_provider(acme: TestApp) {
    let w = world(acme).await;
    let link = invite_by_email(&w.acme, &w.admin, GUEST).await;
    let (at_acme, at_partner) = guest_browsers(&w, GUEST).await;

    // The redemption page offers the organization's provider for the invited domain.
    let (_, page) = at_acme.get_text(&link).await;
    assert!(page.contains("Continue with Partner"), "{page}");
    assert!(page.contains(&format!("{link}/oidc/{}", w.idp_id)));

    redeem_through_partner(&w, &at_acme, &at_partner, &link).await;
    assert_eq!(membership_state(&w.acme, GUEST), "Accepted");
    let b = bindings(&w.acme);
    assert_eq!(b.len(), 1);
    assert_eq!((b[0].0.as_str(), b[0].2.as_str()), (issuer(&w.partner).as_str(), GUEST));
    let (password, verified, name): (Option<String>, bool, String) = w.acme.with_conn(|c| {
        users::table
            .filter(users::email.eq(GUEST))
            .select((users::password_hash, users::email_verified, users::display_name))
            .first(c)
            .unwrap()
    });
    assert!(password.is_none(), "a federated guest has no Vestibule password");
    assert!(verified);
    assert_eq!(name, "gina", "the provider's name claim is taken");
    let gina = w.acme.with_conn(|c| users_id(c, GUEST));
    assert_eq!(w.acme.with_conn(|c| idp::bound_provider(c, &gina).unwrap()), Some("Partner".to_owned()));
    assert!(actions(&w.acme).iter().any(|(a, _)| a == "idp.bound"));
    assert_eq!(w.acme.with_conn(|c| idp_requests::table.count().get_result::<i64>(c).unwrap()), 0, "single use");

    // Later: a new browser signs in through the provider, found by (issuer, subject).
    let choices = w.acme.with_conn(|c| {
        let email = vestibule::domain::Email::parse(GUEST).unwrap();
        idp::choices_for(c, &email, None, IdpPurpose::SignIn { next: Some("/account") }).unwrap()
    });
    assert_eq!(choices.len(), 1);
    assert_eq!(choices[0].name, "Partner");
    let later = w.acme.browser();
    // Identifier first: /signin, given an address of the provider's domain, goes straight to the
    // provider (the same start URL); an address of another domain gets the password/code step.
    let res = later.post("/signin", &[("email", GUEST), ("next", "/account")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), choices[0].start_url);
    let res = later.post("/signin", &[("email", "someone@elsewhere.test")]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let step2 = res.text().await.unwrap();
    assert!(step2.contains(r#"type="password""#) && !step2.contains("Continue with Partner"));
    let callback = through_partner(&w, &later, &at_partner, &choices[0].start_url).await;
    let res = later.get(&callback).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "/account");
    let (status, body) = later.get_text("/account").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains(GUEST));
    assert_eq!(bindings(&w.acme).len(), 1, "no second binding");
    assert!(
        actions(&w.acme).iter().any(|(a, d)| a == "signin.succeeded" && d.as_deref() == Some("idp: Partner")),
        "the sign-in is audited"
    );
}

fn users_id(c: &mut vestibule::db::DbConnection, email: &str) -> String {
    users::table.filter(users::email.eq(email)).select(users::id).first(c).unwrap()
}

async fn another_address_at_the_provider_is_refused(acme: TestApp) {
    let w = world(acme).await;
    let link = invite_by_email(&w.acme, &w.admin, GUEST).await;
    let (at_acme, at_partner) = guest_browsers(&w, "other@partner.test").await;
    let callback = through_partner(&w, &at_acme, &at_partner, &format!("{link}/oidc/{}", w.idp_id)).await;
    let res = at_acme.get(&callback).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let body = res.text().await.unwrap();
    assert!(
        body.contains("You signed in at Partner as other@partner.test, but this invitation is for gina@partner.test."),
        "{body}"
    );
    assert!(body.contains("Try another account"));
    assert!(body.contains(&format!("{link}/oidc/{}?again=1", w.idp_id)));
    // Nothing changed: not signed in, not bound, still pending.
    assert!(bindings(&w.acme).is_empty());
    assert_eq!(membership_state(&w.acme, GUEST), "PendingAcceptance");
    assert_eq!(at_acme.get("/account").await.status(), StatusCode::SEE_OTHER);

    // "Try another account" asks Partner to sign in afresh; in French the page says the same.
    let res = at_acme.get(&format!("{link}/oidc/{}?again=1", w.idp_id)).await;
    assert!(location(&res).contains("prompt=login"), "{}", location(&res));
    let fr = w.acme.browser();
    let at_partner_fr = w.partner.browser();
    at_partner_fr.sign_in("other@partner.test", PASSWORD).await;
    let callback = through_partner(&w, &fr, &at_partner_fr, &format!("{link}/oidc/{}", w.idp_id)).await;
    let res = fr.client.get(&callback).header("accept-language", "fr").send().await.unwrap();
    let body = res.text().await.unwrap();
    assert!(body.contains("mais cette invitation est pour gina@partner.test"), "{body}");
}

async fn unverified_email_is_refused(acme: TestApp) {
    let w = world(acme).await;
    let link = invite_by_email(&w.acme, &w.admin, GUEST).await;
    // Partner says `email_verified: false` for an account whose address it has not confirmed.
    w.partner.with_conn(|c| {
        diesel::update(users::table.filter(users::email.eq(GUEST)))
            .set(users::email_verified.eq(false))
            .execute(c)
            .unwrap()
    });
    let (at_acme, at_partner) = guest_browsers(&w, GUEST).await;
    let callback = through_partner(&w, &at_acme, &at_partner, &format!("{link}/oidc/{}", w.idp_id)).await;
    let res = at_acme.get(&callback).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(res.text().await.unwrap().contains("does not confirm that gina@partner.test is verified"));
    assert!(bindings(&w.acme).is_empty());
    assert_eq!(membership_state(&w.acme, GUEST), "PendingAcceptance");

    // When the admin trusts the provider's addresses, the same answer is taken.
    w.acme.with_conn(|c| {
        diesel::update(idp_providers::table).set(idp_providers::trust_email.eq(true)).execute(c).unwrap()
    });
    redeem_through_partner(&w, &at_acme, &at_partner, &link).await;
    assert_eq!(bindings(&w.acme).len(), 1);
}

async fn replayed_or_foreign_state_is_refused_and_audited(acme: TestApp) {
    let w = world(acme).await;
    let link = invite_by_email(&w.acme, &w.admin, GUEST).await;
    let (at_acme, at_partner) = guest_browsers(&w, GUEST).await;
    let callback = through_partner(&w, &at_acme, &at_partner, &format!("{link}/oidc/{}", w.idp_id)).await;

    // Another browser brings the answer: refused, and the real one can still use it.
    let thief = w.acme.browser();
    let res = thief.get(&callback).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.text().await.unwrap().contains("not started in this browser"));
    // No state at all.
    assert_eq!(thief.get("/auth/oidc/callback?code=x").await.status(), StatusCode::BAD_REQUEST);

    let res = at_acme.get(&callback).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "the right browser still finishes");
    // The same answer again: refused.
    let res = at_acme.get(&callback).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let refused = actions(&w.acme).into_iter().filter(|(a, _)| a == "idp.refused").count();
    assert_eq!(refused, 3, "{:?}", actions(&w.acme));
    assert_eq!(bindings(&w.acme).len(), 1);

    // An ID token whose nonce is not the request's: the crate's verification refuses it, audited.
    let other = w.acme.browser();
    let callback = through_partner(&w, &other, &at_partner, &format!("{link}/oidc/{}", w.idp_id)).await;
    w.acme.with_conn(|c| diesel::update(idp_requests::table).set(idp_requests::nonce.eq("forged")).execute(c).unwrap());
    let res = other.get(&callback).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(res.text().await.unwrap().contains("failed the security checks"));
    assert_eq!(other.get("/account").await.status(), StatusCode::SEE_OTHER, "not signed in");
    let refused: Vec<Option<String>> =
        actions(&w.acme).into_iter().filter(|(a, _)| a == "idp.refused").map(|(_, d)| d).collect();
    assert_eq!(refused.len(), 4);
    assert!(refused.iter().any(|d| d.as_deref().is_some_and(|d| d.contains("nonce"))));
}

async fn a_provider_that_does_not_answer_gives_a_plain_page_in_time(acme: TestApp) {
    let w = world(acme).await;
    let link = invite_by_email(&w.acme, &w.admin, GUEST).await;
    // A socket that accepts connections and never answers, and a closed port.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let key = vestibule::startup::load_or_create_secret(&w.acme.settings.data_dir).unwrap();
    let sealing = vestibule::services::idp::secret::SecretKey::derive(&key);
    let ids: Vec<String> = [silent.local_addr().unwrap().port(), closed]
        .iter()
        .enumerate()
        .map(|(i, port)| {
            let input = providers::ProviderInput {
                kind: "generic".into(),
                name: format!("Down {i}"),
                issuer: format!("http://127.0.0.1:{port}/o/x"),
                client_id: "c".into(),
                client_secret: "s".into(),
                domains: "partner.test".into(),
                ..Default::default()
            };
            let valid = providers::validate(&input).unwrap();
            w.acme.with_conn(|c| {
                let org = orgs::find_by_slug(c, "acme").unwrap().unwrap();
                providers::create(c, &org.id, &valid, &sealing.seal("s").unwrap(), &Actor::default()).unwrap().id
            })
        })
        .collect();
    let guest = w.acme.browser();
    for id in ids {
        let t = Instant::now();
        let res = guest.get(&format!("{link}/oidc/{id}")).await;
        assert!(t.elapsed() < Duration::from_secs(12), "answered in {:?}", t.elapsed());
        assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
        assert!(res.text().await.unwrap().contains("did not answer in time"));
    }
    assert_eq!(w.acme.with_conn(|c| idp_requests::table.count().get_result::<i64>(c).unwrap()), 0);
    drop(silent);
}

async fn provider_removed_in_between(acme: TestApp) {
    let w = world(acme).await;
    let link = invite_by_email(&w.acme, &w.admin, GUEST).await;
    let (at_acme, at_partner) = guest_browsers(&w, GUEST).await;
    let callback = through_partner(&w, &at_acme, &at_partner, &format!("{link}/oidc/{}", w.idp_id)).await;
    let res = w.admin.post(&format!("/o/acme/admin/identity-providers/{}/remove", w.idp_id), &[]).await;
    assert_eq!(location(&res), "/o/acme/admin/identity-providers?done=removed");
    let res = at_acme.get(&callback).await;
    assert_eq!(res.status(), StatusCode::GONE);
    assert!(res.text().await.unwrap().contains("no longer offered"));
    assert!(bindings(&w.acme).is_empty());
    assert_eq!(membership_state(&w.acme, GUEST), "PendingAcceptance");
    // The page no longer offers it, and its start says so.
    let (_, page) = at_acme.get_text(&link).await;
    assert!(!page.contains("Continue with Partner"));
    assert_eq!(at_acme.get(&format!("{link}/oidc/{}", w.idp_id)).await.status(), StatusCode::GONE);
}

async fn reset_redemption_clears_the_binding(acme: TestApp) {
    let w = world(acme).await;
    let link = invite_by_email(&w.acme, &w.admin, GUEST).await;
    let (at_acme, at_partner) = guest_browsers(&w, GUEST).await;
    redeem_through_partner(&w, &at_acme, &at_partner, &link).await;
    assert_eq!(bindings(&w.acme).len(), 1);
    let mid: String = w.acme.with_conn(|c| {
        memberships::table
            .inner_join(users::table)
            .filter(users::email.eq(GUEST))
            .select(memberships::id)
            .first(c)
            .unwrap()
    });
    let res = w.admin.post(&format!("/o/acme/admin/users/{mid}/reset"), &[("email", GUEST)]).await;
    assert_eq!(location(&res), format!("/o/acme/admin/users/{mid}?done=reset"));
    assert!(bindings(&w.acme).is_empty(), "the reset forgets the provider identity");

    // The guest redeems the new link through the provider again and is bound afresh.
    let mail = w.acme.smtp.wait_for_nth(GUEST, 2).await;
    let link = crate::helpers::path_of(&mail.redeem_link());
    let again = w.acme.browser();
    redeem_through_partner(&w, &again, &at_partner, &link).await;
    assert_eq!(bindings(&w.acme).len(), 1);
}

async fn a_password_account_is_not_taken_over_by_email(acme: TestApp) {
    let w = world(acme).await;
    // gina already has a Vestibule password (and access) at Acme.
    add_person(&w.acme, "acme", GUEST, "Guest", "none");
    let (at_acme, at_partner) = guest_browsers(&w, GUEST).await;
    let start = w.acme.with_conn(|c| {
        let email = vestibule::domain::Email::parse(GUEST).unwrap();
        idp::choices_for(c, &email, None, IdpPurpose::SignIn { next: None }).unwrap().remove(0).start_url
    });
    let callback = through_partner(&w, &at_acme, &at_partner, &start).await;
    let res = at_acme.get(&callback).await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let body = res.text().await.unwrap();
    assert!(body.contains("already has its own way to sign in"), "{body}");
    assert!(bindings(&w.acme).is_empty());

    // Signed in with the password first, the same person links the provider.
    at_acme.sign_in(GUEST, PASSWORD).await;
    let callback = through_partner(&w, &at_acme, &at_partner, &start).await;
    assert_eq!(at_acme.get(&callback).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(bindings(&w.acme).len(), 1);
}

async fn admin_page_adds_with_discovery_and_removes(acme: TestApp) {
    let w = world(acme).await;
    let page = "/o/acme/admin/identity-providers";
    let (status, body) = w.admin.get_text(page).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains(&format!("{}/auth/oidc/callback", w.acme.base)), "the callback URL is shown");
    assert!(body.contains("Partner") && body.contains("partner.test"));
    assert!(body.contains("Microsoft Entra ID") && body.contains("Google"));
    // The secret is stored sealed, never as typed, and never shown.
    let sealed: String =
        w.acme.with_conn(|c| idp_providers::table.select(idp_providers::client_secret).first(c).unwrap());
    assert!(sealed.starts_with("v1:"));
    assert!(!body.contains(&sealed));

    let form = |issuer: String, name: &'static str| {
        vec![
            ("kind", "generic".to_owned()),
            ("name", name.to_owned()),
            ("issuer", issuer),
            ("client_id", "client-1".to_owned()),
            ("client_secret", "typed secret".to_owned()),
            ("extra_scopes", "groups".to_owned()),
            ("domains", "partner.test, partner.fr".to_owned()),
        ]
    };
    async fn post(admin: &Browser, page: &str, fields: Vec<(&'static str, String)>) -> (StatusCode, String) {
        let f: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let res = admin.post(page, &f).await;
        (res.status(), res.text().await.unwrap())
    }
    // Plain http to another host, a closed port, another issuer's document, a taken name.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let partner_port = w.partner.base.rsplit(':').next().unwrap().to_owned();
    for (issuer, name, message) in [
        ("http://idp.partner.test".to_owned(), "Other", "must use https"),
        (format!("http://127.0.0.1:{closed}"), "Other", "did not answer in time"),
        (format!("http://localhost:{partner_port}/o/partner"), "Other", "names another issuer"),
        (format!("{}/o/nope", w.partner.base), "Other", "No OpenID Connect discovery document"),
        (issuer(&w.partner), "Partner", "already has an identity provider with that name"),
    ] {
        let (status, body) = post(&w.admin, page, form(issuer.clone(), name)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{issuer}");
        assert!(body.contains(message), "{message}: {body}");
        assert!(body.contains(&format!("value=\"{issuer}\"")), "input kept");
        assert!(body.contains("value=\"partner.test, partner.fr\""));
        assert!(!body.contains("typed secret"), "the secret is not echoed");
    }
    assert_eq!(w.acme.with_conn(|c| idp_providers::table.count().get_result::<i64>(c).unwrap()), 1);

    // A second provider through the same Partner issuer, then removed.
    let (status, _) = post(&w.admin, page, form(issuer(&w.partner), "Partner FR")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, body) = w.admin.get_text(page).await;
    assert!(body.contains("Partner FR") && body.contains("partner.fr"));
    let id: String = w.acme.with_conn(|c| {
        idp_providers::table.filter(idp_providers::name.eq("Partner FR")).select(idp_providers::id).first(c).unwrap()
    });
    let res = w.admin.post(&format!("{page}/{id}/remove"), &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(w.acme.with_conn(|c| idp_providers::table.count().get_result::<i64>(c).unwrap()), 1);
    let acts: Vec<String> = actions(&w.acme).into_iter().map(|(a, _)| a).collect();
    assert_eq!(acts.iter().filter(|a| *a == "idp.added").count(), 2);
    assert_eq!(acts.iter().filter(|a| *a == "idp.removed").count(), 1);

    // Only the org's admins see the page.
    let guest = w.acme.browser();
    add_person(&w.acme, "acme", "mia@acme.test", "Member", "none");
    guest.sign_in("mia@acme.test", PASSWORD).await;
    assert_eq!(guest.get(page).await.status(), StatusCode::NOT_FOUND, "for others the page does not exist");
}

async fn cli_adds_lists_and_removes(acme: TestApp) {
    let w = world(acme).await;
    let created = w.partner.with_conn(|c| {
        clients::create_for_cli(c, "partner", "CLI app", "https://acme.example", &["http://127.0.0.1/cb".into()], false)
            .unwrap()
    });
    let run = |args: Vec<String>, stdin: &'static str| {
        let settings = w.acme.settings.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                use std::io::Write;
                let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vestibule"))
                    .args(&args)
                    .env("VESTIBULE_DATABASE_URL", &settings.database_url)
                    .env("VESTIBULE_DATA_DIR", &settings.data_dir)
                    .env("VESTIBULE_PUBLIC_URL", settings.public_url.as_str())
                    .env("VESTIBULE_LOG", "warn")
                    .env_remove("VESTIBULE_CONFIG")
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
                let out = child.wait_with_output().unwrap();
                (
                    out.status.success(),
                    String::from_utf8_lossy(&out.stdout).into_owned(),
                    String::from_utf8_lossy(&out.stderr).into_owned(),
                )
            })
            .await
            .unwrap()
        }
    };
    let add = |issuer: String, secret_flag: bool| {
        let mut args: Vec<String> = [
            "idp",
            "add",
            "--org",
            "acme",
            "--name",
            "Partner CLI",
            "--issuer",
            &issuer,
            "--client-id",
            &created.client_id,
            "--domains",
            "partner.test,partner.fr",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if secret_flag {
            args.push("--client-secret-stdin".into());
        }
        args
    };
    let (ok, _, err) = run(add(issuer(&w.partner), false), "").await;
    assert!(!ok && err.contains("--client-secret-stdin"), "{err}");
    let (ok, _, err) = run(add("http://idp.partner.test".into(), true), "secret\n").await;
    assert!(!ok && err.contains("--issuer: The issuer must use https"), "{err}");
    let secret: &'static str = Box::leak(format!("{}\n", created.secret.unwrap().expose()).into_boxed_str());
    let (ok, out, err) = run(add(issuer(&w.partner), true), secret).await;
    assert!(ok, "{err}");
    assert!(out.contains(&format!("{}/auth/oidc/callback", w.acme.base)), "{out}");

    let (ok, out, _) = run(vec!["idp".into(), "list".into(), "--org".into(), "acme".into()], "").await;
    assert!(ok);
    assert!(
        out.lines().any(|l| l.starts_with("Partner CLI\tgeneric\t") && l.contains("domains=partner.fr,partner.test")),
        "{out}"
    );
    assert!(!out.contains(created.client_id.as_str()) || out.contains("client_id="), "{out}");

    let remove = |name: &str| {
        vec!["idp".into(), "remove".into(), "--org".into(), "acme".into(), "--name".into(), name.to_owned()]
    };
    let (ok, _, _) = run(remove("Partner CLI"), "").await;
    assert!(ok);
    let (ok, _, err) = run(remove("Partner CLI"), "").await;
    assert!(!ok && err.contains("no identity provider"), "{err}");
    let names: Vec<String> = w.acme.with_conn(|c| idp_providers::table.select(idp_providers::name).load(c).unwrap());
    assert_eq!(names, vec!["Partner".to_owned()]);
}

/// The organization requires a second factor of everyone. A guest who passed one at the home
/// provider (its ID token's `amr` holds `mfa`) is not asked for another; one who signed in there
/// with a password alone is led to enrolment before consent.
async fn a_second_factor_passed_at_home_meets_the_policy(acme: TestApp) {
    let w = world(acme).await;
    let strong_link = invite_by_email(&w.acme, &w.admin, GUEST).await;
    let weak_link = invite_by_email(&w.acme, &w.admin, "other@partner.test").await;
    let res = w.admin.save_settings(&[("mfa_policy", "everyone")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);

    // At Partner, the guest enrols a second factor and signs in with it.
    let (_, enrolling) = guest_browsers(&w, GUEST).await;
    let (secret, t0, _) = crate::mfa::enrol(&w.partner, &enrolling, GUEST).await;
    let home = w.partner.browser();
    crate::mfa::password_step(&home, GUEST).await;
    let res = home.post("/signin/second-factor", &[("code", &crate::mfa::code_at(&secret, t0 + 30))]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);

    // At Acme: straight to consent and on to My Apps, no local enrolment.
    let at_acme = w.acme.browser();
    redeem_through_partner(&w, &at_acme, &home, &strong_link).await;
    assert_eq!(at_acme.get("/o/acme/apps").await.status(), StatusCode::OK);
    assert_eq!(membership_state(&w.acme, GUEST), "Accepted");

    // A password alone at Partner: Acme asks for its own second factor before consent.
    let (at_acme2, at_partner2) = guest_browsers(&w, "other@partner.test").await;
    let callback = through_partner(&w, &at_acme2, &at_partner2, &format!("{weak_link}/oidc/{}", w.idp_id)).await;
    let res = at_acme2.get(&callback).await;
    assert_eq!(location(&res), format!("{weak_link}/consent"));
    let res = at_acme2.get(&format!("{weak_link}/consent")).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(location(&res).starts_with("/account/second-factor?next="), "{}", location(&res));
    assert_eq!(membership_state(&w.acme, "other@partner.test"), "PendingAcceptance");
}

on_both_databases!(
    a_second_factor_passed_at_home_meets_the_policy,
    new_guest_redeems_then_signs_in_through_the_provider,
    another_address_at_the_provider_is_refused,
    unverified_email_is_refused,
    replayed_or_foreign_state_is_refused_and_audited,
    a_provider_that_does_not_answer_gives_a_plain_page_in_time,
    provider_removed_in_between,
    reset_redemption_clears_the_binding,
    a_password_account_is_not_taken_over_by_email,
    admin_page_adds_with_discovery_and_removes,
    cli_adds_lists_and_removes,
);
