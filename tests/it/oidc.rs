//! The OpenID Connect provider, driven by an independent relying party (the `openidconnect`
//! crate) against the real server: discovery, authorization with PKCE and nonce through the
//! browser, code exchange, ID token verification against the JWKS, userinfo, refresh with
//! rotation, and everything that must be refused.

use diesel::prelude::*;
use openidconnect::core::{CoreClient, CoreProviderMetadata, CoreResponseType, CoreUserInfoClaims};
use openidconnect::{
    AccessToken, AuthenticationFlow, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, RefreshToken, Scope, TokenResponse,
};
use reqwest::StatusCode;
use vestibule::db::schema::{audit_events, memberships, oidc_codes, oidc_tokens};
use vestibule::services::oidc::{access, clients};
use vestibule::services::{Actor, apps, orgs};

use crate::helpers::{Browser, PASSWORD, TestApp, location};
use crate::on_both_databases;
use crate::policy::add_person;

const REDIRECT: &str = "http://localhost:9999/callback";

/// The error type of the relying party's HTTP client.
#[derive(Debug)]
struct HttpError(String);

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HttpError {}

/// The relying party's HTTP: our rustls-only reqwest 0.13, no redirects followed.
async fn http(req: openidconnect::HttpRequest) -> Result<openidconnect::HttpResponse, HttpError> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| HttpError(e.to_string()))?;
    let res = client
        .request(req.method().clone(), req.uri().to_string())
        .headers(req.headers().clone())
        .body(req.body().clone())
        .send()
        .await
        .map_err(|e| HttpError(e.to_string()))?;
    let mut builder = openidconnect::http::Response::builder().status(res.status());
    for (k, v) in res.headers() {
        builder = builder.header(k, v);
    }
    let body = res.bytes().await.map_err(|e| HttpError(e.to_string()))?.to_vec();
    builder.body(body).map_err(|e| HttpError(e.to_string()))
}

type Rp = CoreClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointMaybeSet, EndpointMaybeSet>;

/// An app with sign-in on, and the relying party configured from discovery.
struct RpApp {
    app_id: String,
    client_id: String,
    secret: Option<String>,
    rp: Rp,
    issuer: String,
}

/// Creates an app "Wiki" in acme with a client, discovers the issuer and builds the RP.
async fn rp_app(app: &TestApp, name: &str, public: bool) -> RpApp {
    let created = app.with_conn(|c| {
        clients::create_for_cli(c, "acme", name, "https://wiki.example", &[REDIRECT.to_owned()], public).unwrap()
    });
    let issuer = format!("{}/o/acme", app.base);
    let metadata =
        CoreProviderMetadata::discover_async(IssuerUrl::new(issuer.clone()).unwrap(), &http).await.expect("discovery");
    let rp = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(created.client_id.clone()),
        created.secret.as_ref().map(|s| ClientSecret::new(s.expose().to_owned())),
    )
    .set_redirect_uri(RedirectUrl::new(REDIRECT.to_owned()).unwrap());
    RpApp {
        app_id: created.app.id,
        client_id: created.client_id,
        secret: created.secret.map(|s| s.expose().to_owned()),
        rp,
        issuer,
    }
}

fn org_id(app: &TestApp) -> String {
    app.with_conn(|c| orgs::find_by_slug(c, "acme").unwrap().unwrap().id)
}

/// An accepted guest with the app given to them; returns their signed-in browser and membership.
async fn entitled_guest(app: &TestApp, rp: &RpApp, email: &str) -> (Browser, String) {
    let mid = add_person(app, "acme", email, "Guest", "none");
    let org = org_id(app);
    app.with_conn(|c| apps::assign_membership(c, &org, &rp.app_id, &mid).unwrap());
    let b = app.browser();
    b.sign_in(email, PASSWORD).await;
    (b, mid)
}

/// One authorization request; returns the request's pieces to check the answer with.
struct Started {
    url: String,
    csrf: CsrfToken,
    nonce: Nonce,
    verifier: PkceCodeVerifier,
}

fn start(rp: &RpApp, scopes: &[&str]) -> Started {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut req = rp.rp.authorize_url(
        AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
        CsrfToken::new_random,
        Nonce::new_random,
    );
    for s in scopes {
        req = req.add_scope(Scope::new((*s).to_owned()));
    }
    let (url, csrf, nonce) = req.set_pkce_challenge(challenge).url();
    Started { url: url.to_string(), csrf, nonce, verifier }
}

/// Follows the browser to the redirect URI and returns its query parameters.
async fn authorize(b: &Browser, url: &str) -> std::collections::HashMap<String, String> {
    let res = b.get(url).await;
    assert_eq!(res.status(), StatusCode::FOUND, "authorize: {}", res.text().await.unwrap());
    let loc = location(&res);
    assert!(loc.starts_with(REDIRECT), "{loc}");
    url::Url::parse(&loc).unwrap().query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

/// The JSON payload of a JWT (after the library verified it), for our custom claims.
fn payload(jwt: &str) -> serde_json::Value {
    use base64::Engine;
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// POSTs a form to the token endpoint as a raw client would; returns status, headers' no-store, JSON.
async fn token_post(
    app: &TestApp,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> (StatusCode, bool, serde_json::Value) {
    let mut req = reqwest::Client::new().post(format!("{}/o/acme/oidc/token", app.base)).form(form);
    if let Some((u, p)) = basic {
        req = req.basic_auth(u, Some(p));
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let no_store = res.headers().get("cache-control").is_some_and(|v| v.to_str().unwrap().contains("no-store"));
    (status, no_store, res.json().await.unwrap_or(serde_json::Value::Null))
}

async fn userinfo_status(app: &TestApp, access: &str) -> StatusCode {
    reqwest::Client::new()
        .get(format!("{}/o/acme/oidc/userinfo", app.base))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .status()
}

/// The full flow for a confidential client: discovery, authorize with PKCE and nonce, code
/// exchange, ID token against the JWKS, userinfo, refresh with rotation, replay detection.
async fn oidc_code_flow_with_pkce_refresh_and_replay(app: TestApp) {
    let admin = app.admin().await;
    let rp = rp_app(&app, "Wiki", false).await;
    let (b, mid) = entitled_guest(&app, &rp, "gil@partner.test").await;
    let org = org_id(&app);
    let gid = app.with_conn(|c| {
        let g = vestibule::services::groups::create(
            c,
            &org,
            &vestibule::services::groups::GroupInput { name: "Partners".into(), description: String::new() },
            &Actor::default(),
        )
        .unwrap();
        vestibule::services::groups::add_member(c, &org, &g.id, &mid, false).unwrap();
        g.id
    });
    assert!(!gid.is_empty());

    let s = start(&rp, &["email", "profile", "groups", "offline_access"]);
    let q = authorize(&b, &s.url).await;
    assert_eq!(q.get("state").map(String::as_str), Some(s.csrf.secret().as_str()));
    assert_eq!(q.get("iss").map(String::as_str), Some(rp.issuer.as_str()), "RFC 9207 iss");
    let code = q.get("code").unwrap().clone();

    let tokens = rp
        .rp
        .exchange_code(AuthorizationCode::new(code.clone()))
        .unwrap()
        .set_pkce_verifier(s.verifier)
        .request_async(&http)
        .await
        .expect("code exchange");
    let id_token = tokens.id_token().expect("an ID token");
    let claims = id_token.claims(&rp.rp.id_token_verifier(), &s.nonce).expect("ID token verifies against the JWKS");
    assert_eq!(claims.issuer().as_str(), rp.issuer);
    assert_eq!(claims.email().map(|e| e.as_str()), Some("gil@partner.test"));
    assert!(!claims.subject().as_str().contains('@'), "sub is not the email");
    assert!(claims.auth_time().is_some());
    let raw = payload(&id_token.to_string());
    assert_eq!(raw["user_type"], "Guest");
    assert_eq!(raw["groups"], serde_json::json!(["Partners"]));
    assert_eq!(raw["aud"], rp.client_id);
    assert_eq!(raw["amr"], serde_json::json!(["pwd"]), "signed in with a password alone");

    let info: CoreUserInfoClaims =
        rp.rp.user_info(tokens.access_token().clone(), None).unwrap().request_async(&http).await.expect("userinfo");
    assert_eq!(info.subject(), claims.subject());
    assert_eq!(info.email().map(|e| e.as_str()), Some("gil@partner.test"));

    // Refresh rotates: the new refresh token differs and works; the old one is refused.
    let first_refresh = tokens.refresh_token().expect("offline_access gives a refresh token").clone();
    let refreshed = rp.rp.exchange_refresh_token(&first_refresh).unwrap().request_async(&http).await.expect("refresh");
    let second_refresh = refreshed.refresh_token().unwrap().clone();
    assert_ne!(first_refresh.secret(), second_refresh.secret());
    assert_eq!(userinfo_status(&app, refreshed.access_token().secret()).await, StatusCode::OK);
    // Replaying the used one revokes the whole chain, the newest refresh token included.
    assert!(rp.rp.exchange_refresh_token(&first_refresh).unwrap().request_async(&http).await.is_err());
    assert!(rp.rp.exchange_refresh_token(&second_refresh).unwrap().request_async(&http).await.is_err());
    assert_eq!(userinfo_status(&app, refreshed.access_token().secret()).await, StatusCode::UNAUTHORIZED);

    // A replayed code is refused and revokes what it issued.
    let s2 = start(&rp, &["email"]);
    let code2 = authorize(&b, &s2.url).await.remove("code").unwrap();
    let verifier = s2.verifier.secret().clone();
    let secret = rp.secret.clone().unwrap();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", &code2),
        ("redirect_uri", REDIRECT),
        ("code_verifier", &verifier),
    ];
    let (status, no_store, body) = token_post(&app, &form, Some((&rp.client_id, &secret))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(no_store, "token answers are never cached");
    let access = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(userinfo_status(&app, &access).await, StatusCode::OK);
    let (status, no_store, body) = token_post(&app, &form, Some((&rp.client_id, &secret))).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    assert!(no_store);
    assert_eq!(userinfo_status(&app, &access).await, StatusCode::UNAUTHORIZED, "replay revoked the first tokens");
    let replays: i64 = app.with_conn(|c| {
        audit_events::table.filter(audit_events::action.eq("oidc.replay_detected")).count().get_result(c).unwrap()
    });
    assert_eq!(replays, 2);
    drop(admin);
}

/// Blocking, removal, an end date passing, leaving and unassigning revoke refresh tokens at once.
async fn oidc_refresh_refused_after_lifecycle_changes(app: TestApp) {
    let _admin = app.admin().await;
    let rp = rp_app(&app, "Wiki", false).await;
    let org = app.with_conn(|c| orgs::find_by_slug(c, "acme").unwrap().unwrap());
    let mut held = Vec::new();
    for who in ["blocked", "removed", "ended", "left", "unassigned"] {
        let (b, mid) = entitled_guest(&app, &rp, &format!("{who}@partner.test")).await;
        let s = start(&rp, &["offline_access"]);
        let code = authorize(&b, &s.url).await.remove("code").unwrap();
        let t = rp
            .rp
            .exchange_code(AuthorizationCode::new(code))
            .unwrap()
            .set_pkce_verifier(s.verifier)
            .request_async(&http)
            .await
            .expect("code exchange");
        held.push((who, mid, t.refresh_token().unwrap().clone(), b));
    }
    let admin_actor = Actor::default();
    for (who, mid, _, _) in &held {
        app.with_conn(|c| match *who {
            "blocked" => vestibule::services::lifecycle::set_blocked(c, &org, mid, true, &admin_actor).unwrap(),
            "removed" => vestibule::services::users::remove(c, &org, mid, &admin_actor).unwrap(),
            "ended" => {
                // The end date passes: the daily job blocks the membership and revokes its tokens.
                diesel::update(memberships::table.find(mid))
                    .set(memberships::access_ends_at.eq(Some(vestibule::db::now() - time::Duration::minutes(1))))
                    .execute(c)
                    .unwrap();
                vestibule::services::lifecycle::run_daily(
                    c,
                    vestibule::db::now(),
                    &url::Url::parse(&app.base).unwrap(),
                )
                .unwrap();
            }
            "left" => {
                let uid: String = memberships::table.find(mid).select(memberships::user_id).first(c).unwrap();
                vestibule::services::users::leave(c, &org, &uid, &admin_actor).unwrap()
            }
            _ => {
                let a = apps::assignments(c, &org.id, &rp.app_id).unwrap();
                let row = a
                    .iter()
                    .find(
                        |r| matches!(&r.assignee, apps::Assignee::Person { membership_id, .. } if membership_id == mid),
                    )
                    .unwrap();
                apps::unassign(c, &org.id, &rp.app_id, &row.id, &admin_actor).unwrap()
            }
        });
    }
    for (who, _, refresh, _) in &held {
        let live: i64 = app.with_conn(|c| {
            oidc_tokens::table
                .filter(oidc_tokens::token_hash.eq(vestibule::domain::token::hash_token(refresh.secret())))
                .filter(oidc_tokens::revoked_at.is_null())
                .count()
                .get_result(c)
                .unwrap()
        });
        assert_eq!(live, 0, "{who}: the refresh token is revoked at once");
        let err = rp.rp.exchange_refresh_token(refresh).unwrap().request_async(&http).await;
        assert!(err.is_err(), "{who}: refresh refused");
    }
    // And the raw answer is RFC 6749 invalid_grant.
    let (_, _, refresh, _) = &held[0];
    let secret = rp.secret.clone().unwrap();
    let form = [("grant_type", "refresh_token"), ("refresh_token", refresh.secret().as_str())];
    let (status, _, body) = token_post(&app, &form, Some((&rp.client_id, &secret))).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    // Unassigned people get the no-access page at the next authorization.
    let (_, _, _, b) = &held[4];
    let res = b.get(&start(&rp, &[]).url).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let _ = RefreshToken::new(String::new());
}

/// What an attacker tries: PKCE mismatch, wrong redirect URI, unknown client, another client's
/// code, wrong secrets (throttled in the database), a public client without PKCE.
async fn oidc_refuses_attacks(app: TestApp) {
    let _admin = app.admin().await;
    let rp = rp_app(&app, "Wiki", false).await;
    let public = rp_app(&app, "Board", true).await;
    let (b, mid) = entitled_guest(&app, &rp, "gil@partner.test").await;
    let org = org_id(&app);
    app.with_conn(|c| apps::assign_membership(c, &org, &public.app_id, &mid).unwrap());

    // Wrong redirect URI and unknown client: an error page, never a redirect.
    let s = start(&rp, &[]);
    for bad in [
        s.url.replace("localhost%3A9999%2Fcallback", "localhost%3A9999%2Fcallback%2F"),
        s.url.replace("localhost%3A9999", "evil.example"),
        s.url.replace(&rp.client_id, "nope"),
    ] {
        assert_ne!(bad, s.url);
        let res = b.get(&bad).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert!(res.headers().get("location").is_none());
    }

    // PKCE mismatch.
    let code = authorize(&b, &s.url).await.remove("code").unwrap();
    let wrong = PkceCodeVerifier::new("x".repeat(50));
    let res =
        rp.rp.exchange_code(AuthorizationCode::new(code)).unwrap().set_pkce_verifier(wrong).request_async(&http).await;
    assert!(res.is_err(), "a wrong verifier is refused");

    // Another client's code: refused even with the right verifier.
    let s = start(&rp, &[]);
    let code = authorize(&b, &s.url).await.remove("code").unwrap();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", s.verifier.secret().as_str()),
        ("client_id", public.client_id.as_str()),
    ];
    let (status, _, body) = token_post(&app, &form, None).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));

    // A public client works with PKCE and no secret ...
    let s = start(&public, &[]);
    let code = authorize(&b, &s.url).await.remove("code").unwrap();
    let t = public
        .rp
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(s.verifier)
        .request_async(&http)
        .await
        .expect("public client exchange");
    assert!(t.id_token().is_some());
    // ... and must use PKCE: without it the app gets an error at its redirect URI.
    let mut no_pkce = url::Url::parse(&start(&public, &[]).url).unwrap();
    let kept: Vec<(String, String)> = no_pkce
        .query_pairs()
        .filter(|(k, _)| !k.starts_with("code_challenge"))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    no_pkce.query_pairs_mut().clear().extend_pairs(kept);
    let no_pkce = no_pkce.to_string();
    let q = authorize(&b, &no_pkce).await;
    assert_eq!(q.get("error").map(String::as_str), Some("invalid_request"));
    assert_eq!(q.get("iss").map(String::as_str), Some(public.issuer.as_str()));

    // Wrong secrets: 401 invalid_client, counted in the database; the 11th in the window is throttled.
    let form = [("grant_type", "authorization_code"), ("code", "x"), ("redirect_uri", REDIRECT)];
    for _ in 0..10 {
        let (status, no_store, body) = token_post(&app, &form, Some((&rp.client_id, "vsc_wrong"))).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")));
        assert!(no_store);
    }
    let failures: i64 = app.with_conn(|c| {
        use vestibule::db::schema::oidc_clients;
        oidc_clients::table.find(&rp.app_id).select(oidc_clients::failed_auths).first(c).unwrap()
    });
    assert_eq!(failures, 10);
    let secret = rp.secret.clone().unwrap();
    let (status, _, _) = token_post(&app, &form, Some((&rp.client_id, &secret))).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "even the right secret waits out the window");
    // Unsupported grant types and malformed requests are RFC 6749 JSON too.
    let (status, _, body) = token_post(&app, &[("grant_type", "password")], Some((&public.client_id, ""))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "unsupported_grant_type");
}

/// The no-access page (no assignment; no invitation at all), and a pending guest who comes
/// through the app: the consent page first, then the code.
async fn oidc_no_access_page_and_pending_consent(app: TestApp) {
    let admin = app.admin().await;
    let rp = rp_app(&app, "Wiki", false).await;
    // Accepted but the app was not given: the page names whom to ask.
    add_person(&app, "acme", "nora@partner.test", "Guest", "none");
    let b = app.browser();
    b.sign_in("nora@partner.test", PASSWORD).await;
    let res = b.get(&start(&rp, &[]).url).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let body = res.text().await.unwrap();
    assert!(body.contains("You do not have access to Wiki at Acme Corp"), "{body}");
    let denied: i64 = app.with_conn(|c| {
        audit_events::table.filter(audit_events::action.eq("oidc.access_denied")).count().get_result(c).unwrap()
    });
    assert_eq!(denied, 1);

    // Someone of another organization with no invitation here: the same page.
    app.create_org("Other", "other", "olga@other.test");
    let b = app.browser();
    b.sign_in("olga@other.test", PASSWORD).await;
    let res = b.get(&start(&rp, &[]).url).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    // A pending guest with an account, invited to the app: consent first, then the code.
    let link = crate::redeem::invite_by_email(&app, &admin, "pia@partner.test").await;
    let g = app.browser();
    let res = g
        .post(&format!("{link}/register"), &[("display_name", "Pia"), ("password", PASSWORD), ("confirm", PASSWORD)])
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let org = org_id(&app);
    let mid: String = app.with_conn(|c| {
        use vestibule::db::schema::users;
        memberships::table
            .inner_join(users::table)
            .filter(users::email.eq("pia@partner.test"))
            .select(memberships::id)
            .first(c)
            .unwrap()
    });
    app.with_conn(|c| apps::assign_membership(c, &org, &rp.app_id, &mid).unwrap());
    let s = start(&rp, &[]);
    let res = g.get(&s.url).await;
    assert_eq!(res.status(), StatusCode::OK);
    let page = res.text().await.unwrap();
    assert!(page.contains("Review") || page.contains("consent"), "{page}");
    assert!(page.contains("/o/acme/oidc/consent"));
    let res = g.post("/o/acme/oidc/consent", &[("decision", "accept")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let back = location(&res);
    let q = authorize(&g, &back).await;
    assert!(q.contains_key("code"));
    let state: String = app.with_conn(|c| memberships::table.find(&mid).select(memberships::state).first(c).unwrap());
    assert_eq!(state, "Accepted", "accepting through the app completes the redemption");
    assert!(matches!(
        app.with_conn(|c| {
            let o = orgs::find_by_slug(c, "acme").unwrap().unwrap();
            let uid: String = memberships::table.find(&mid).select(memberships::user_id).first(c).unwrap();
            access::decide(c, &o, &rp.app_id, &uid).unwrap()
        }),
        access::Decision::Allowed { .. }
    ));
}

/// `keys rotate`: a new key signs; the old public key stays in the JWKS, so an ID token
/// signed before the rotation still verifies.
async fn oidc_key_rotation_keeps_old_tokens_verifiable(app: TestApp) {
    let _admin = app.admin().await;
    let rp = rp_app(&app, "Wiki", true).await;
    let (b, _) = entitled_guest(&app, &rp, "gil@partner.test").await;
    let s = start(&rp, &[]);
    let code = authorize(&b, &s.url).await.remove("code").unwrap();
    let old = rp
        .rp
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(s.verifier)
        .request_async(&http)
        .await
        .unwrap();
    let old_id = old.id_token().unwrap().clone();
    let old_kid = payload_header_kid(&old_id.to_string());

    let new_kid = app.with_conn(|c| vestibule::services::oidc::keys::rotate(c).unwrap());
    assert_ne!(new_kid, old_kid);
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let jwks: serde_json::Value =
        reqwest::get(format!("{}/o/acme/oidc/jwks", app.base)).await.unwrap().json().await.unwrap();
    let kids: Vec<&str> = jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert!(kids.contains(&old_kid.as_str()) && kids.contains(&new_kid.as_str()), "{kids:?}");
    assert!(jwks.to_string().find("\"d\"").is_none(), "no private part is ever published");

    // A fresh RP (fresh JWKS) still verifies the old token, and new tokens carry the new kid.
    let rp2 = rp_app_existing(&app, &rp).await;
    old_id.claims(&rp2.id_token_verifier(), &s.nonce).expect("the old token still verifies");
    let s = start(&rp, &[]);
    let code = authorize(&b, &s.url).await.remove("code").unwrap();
    let new = rp2
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(s.verifier)
        .request_async(&http)
        .await
        .unwrap();
    let id = new.id_token().unwrap();
    assert_eq!(payload_header_kid(&id.to_string()), new_kid);
    id.claims(&rp2.id_token_verifier(), &s.nonce).expect("the new token verifies");
    let _ = AccessToken::new(String::new());
}

fn payload_header_kid(jwt: &str) -> String {
    use base64::Engine;
    let part = jwt.split('.').next().unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap();
    v["kid"].as_str().unwrap().to_owned()
}

async fn rp_app_existing(app: &TestApp, rp: &RpApp) -> Rp {
    let metadata = CoreProviderMetadata::discover_async(IssuerUrl::new(format!("{}/o/acme", app.base)).unwrap(), &http)
        .await
        .unwrap();
    CoreClient::from_provider_metadata(metadata, ClientId::new(rp.client_id.clone()), None)
        .set_redirect_uri(RedirectUrl::new(REDIRECT.to_owned()).unwrap())
}

/// The daily job deletes codes and tokens a day after they expire, and keeps live ones.
async fn oidc_expired_codes_and_tokens_are_purged(app: TestApp) {
    let _admin = app.admin().await;
    let rp = rp_app(&app, "Wiki", false).await;
    let (b, _) = entitled_guest(&app, &rp, "purge@partner.test").await;
    let s = start(&rp, &["offline_access"]);
    let code = authorize(&b, &s.url).await.remove("code").unwrap();
    rp.rp
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(s.verifier)
        .request_async(&http)
        .await
        .expect("code exchange");
    let count = |app: &TestApp| {
        app.with_conn(|c| {
            let codes: i64 = oidc_codes::table.count().get_result(c).unwrap();
            let tokens: i64 = oidc_tokens::table.count().get_result(c).unwrap();
            (codes, tokens)
        })
    };
    let (codes, tokens) = count(&app);
    assert!(codes >= 1 && tokens >= 2, "a spent code, an access and a refresh token: {codes} {tokens}");
    let public = url::Url::parse(&app.base).unwrap();
    app.with_conn(|c| vestibule::services::lifecycle::run_daily(c, vestibule::db::now(), &public).unwrap());
    assert_eq!(count(&app), (codes, tokens), "nothing has been expired a day yet");
    // A year on, every code and token (the refresh token lives longest) expired long ago.
    let later = vestibule::db::now() + time::Duration::days(400);
    app.with_conn(|c| vestibule::services::lifecycle::run_daily(c, later, &public).unwrap());
    assert_eq!(count(&app), (0, 0));
}

/// A guest who created a password while redeeming is signed in by that: apps see `amr` `pwd`
/// (account creation starts the session through the same function as every sign-in).
async fn oidc_amr_after_registering_at_redemption(app: TestApp) {
    let admin = app.admin().await;
    let rp = rp_app(&app, "Wiki", false).await;
    let link = crate::redeem::invite_by_email(&app, &admin, "rae@partner.test").await;
    let b = app.browser();
    let res = b
        .post(&format!("{link}/register"), &[("display_name", "Rae"), ("password", PASSWORD), ("confirm", PASSWORD)])
        .await;
    assert_eq!(location(&res), format!("{link}/consent"));
    let res = b.post(&format!("{link}/accept"), &[]).await;
    assert_eq!(location(&res), "/o/acme/apps");
    let org = org_id(&app);
    let mid: String = app.with_conn(|c| {
        use vestibule::db::schema::users;
        memberships::table
            .inner_join(users::table)
            .filter(users::email.eq("rae@partner.test"))
            .select(memberships::id)
            .first(c)
            .unwrap()
    });
    app.with_conn(|c| apps::assign_membership(c, &org, &rp.app_id, &mid).unwrap());
    let s = start(&rp, &[]);
    let code = authorize(&b, &s.url).await.remove("code").unwrap();
    let tokens = rp
        .rp
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(s.verifier)
        .request_async(&http)
        .await
        .expect("code exchange");
    let raw = payload(&tokens.id_token().expect("an ID token").to_string());
    assert_eq!(raw["amr"], serde_json::json!(["pwd"]));
}

on_both_databases!(
    oidc_amr_after_registering_at_redemption,
    oidc_expired_codes_and_tokens_are_purged,
    oidc_code_flow_with_pkce_refresh_and_replay,
    oidc_refresh_refused_after_lifecycle_changes,
    oidc_refuses_attacks,
    oidc_no_access_page_and_pending_consent,
    oidc_key_rotation_keeps_old_tokens_verifiable,
);

/// The console: turning sign-in on shows the secret once; bad URIs come back with the input kept.
async fn oidc_console_turns_sign_in_on(app: TestApp) {
    let admin = app.admin().await;
    let app_id = app.with_conn(|c| {
        let org = orgs::find_by_slug(c, "acme").unwrap().unwrap();
        let valid = apps::validate(&apps::AppInput {
            name: "Wiki".into(),
            url: "https://wiki.example".into(),
            ..Default::default()
        })
        .unwrap();
        apps::create(c, &org.id, &valid, &Actor::default()).unwrap().id
    });
    let path = format!("/o/acme/admin/apps/{app_id}/oidc");
    let res = admin.post(&path, &[("redirect_uris", "http://wiki.example/cb"), ("access_token_ttl", "")]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = res.text().await.unwrap();
    assert!(body.contains("http://wiki.example/cb") && body.contains("Use https"), "input kept, error shown");

    let res = admin.post(&path, &[("redirect_uris", "https://wiki.example/cb\nhttp://localhost:8000/cb")]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body = res.text().await.unwrap();
    let secret = body.split("value=\"vsc_").nth(1).map(|r| r[..r.find('"').unwrap()].to_owned()).expect("secret shown");
    let (_, again) = admin.get_text(&format!("/o/acme/admin/apps/{app_id}")).await;
    assert!(!again.contains(&secret), "the secret is shown only once");
    assert!(again.contains("/o/acme/.well-known/openid-configuration"));
    let stored: Option<String> = app.with_conn(|c| {
        use vestibule::db::schema::oidc_clients;
        oidc_clients::table.find(&app_id).select(oidc_clients::secret_hash).first(c).unwrap()
    });
    assert_eq!(stored, Some(vestibule::domain::token::hash_token(&format!("vsc_{secret}"))));
}

on_both_databases!(oidc_console_turns_sign_in_on);

/// prompt=none and prompt=login, login_hint, revocation (RFC 7009) and RP-initiated logout.
async fn oidc_prompts_revocation_and_logout(app: TestApp) {
    let _admin = app.admin().await;
    let rp = rp_app(&app, "Wiki", false).await;
    let org = org_id(&app);
    app.with_conn(|c| {
        use vestibule::db::schema::oidc_clients;
        diesel::update(oidc_clients::table.find(&rp.app_id))
            .set(oidc_clients::post_logout_redirect_uris.eq("http://localhost:9999/bye"))
            .execute(c)
            .unwrap();
    });
    // Not signed in: prompt=none answers login_required at the redirect URI; otherwise the
    // sign-in page, prefilled from login_hint, coming back to the request.
    let anon = app.browser();
    let q = authorize(&anon, &format!("{}&prompt=none", start(&rp, &[]).url)).await;
    assert_eq!(q.get("error").map(String::as_str), Some("login_required"));
    let res = anon.get(&format!("{}&login_hint=gil%40partner.test", start(&rp, &[]).url)).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let signin = location(&res);
    assert!(signin.starts_with("/signin?next=%2Fo%2Facme%2Foidc%2Fauthorize"), "{signin}");
    let (_, page) = anon.get_text(&signin).await;
    assert!(page.contains("value=\"gil@partner.test\""), "login_hint prefills the address");

    // Signed in: prompt=login asks for the password again.
    let (b, mid) = entitled_guest(&app, &rp, "gil@partner.test").await;
    let res = b.get(&format!("{}&prompt=login", start(&rp, &[]).url)).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert!(location(&res).starts_with("/signin?"));
    b.sign_in("gil@partner.test", PASSWORD).await;

    // Revocation of a refresh token takes its access token along.
    let s = start(&rp, &["offline_access"]);
    let code = authorize(&b, &s.url).await.remove("code").unwrap();
    let t = rp
        .rp
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(s.verifier)
        .request_async(&http)
        .await
        .unwrap();
    let secret = rp.secret.clone().unwrap();
    let res = reqwest::Client::new()
        .post(format!("{}/o/acme/oidc/revoke", app.base))
        .basic_auth(&rp.client_id, Some(&secret))
        .form(&[("token", t.refresh_token().unwrap().secret().as_str()), ("token_type_hint", "refresh_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(userinfo_status(&app, t.access_token().secret()).await, StatusCode::UNAUTHORIZED);

    // RP-initiated logout with the ID token as hint: the session ends, back to the registered URI only.
    let id_token = t.id_token().unwrap().to_string();
    let res = b
        .get(&format!(
            "/o/acme/oidc/end_session?id_token_hint={id_token}&post_logout_redirect_uri=http%3A%2F%2Flocalhost%3A9999%2Fbye&state=xyz"
        ))
        .await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), "http://localhost:9999/bye?state=xyz");
    let res = b.get("/account").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "signed out");
    // An unregistered post-logout URI is never followed.
    let res = app
        .browser()
        .get("/o/acme/oidc/end_session?client_id=x&post_logout_redirect_uri=https%3A%2F%2Fevil.example%2F")
        .await;
    assert_eq!(location(&res), "/signin");
    let _ = (org, mid);
}

on_both_databases!(oidc_prompts_revocation_and_logout);
