//! The JSON API: keys, Graph's invitation examples, every field and every error, idempotency,
//! users with $filter and paging, isolation between organizations, and the OpenAPI document.

use diesel::prelude::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use vestibule::db::schema::{api_keys, memberships};
use vestibule::services::Actor;

use crate::helpers::{Browser, TestApp};
use crate::on_both_databases;
use crate::policy::add_person;

/// A key for `slug` made directly by the service, acting as its first admin.
fn make_key(app: &TestApp, slug: &str) -> String {
    app.with_conn(|c| vestibule::services::api_keys::create_for_cli(c, slug, "test key", None).unwrap())
}

/// The acme admin with Graph's example redirect origin allowed, and a key made on the page.
async fn setup(app: &TestApp) -> (Browser, String) {
    let admin = app.admin().await;
    let res = admin.save_settings(&[("redirect_allowlist", "https://myapp.contoso.com")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let res = admin.post("/o/acme/admin/api-keys", &[("name", "CI robot"), ("expires", "")]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let html = res.text().await.unwrap();
    let start = html.find("value=\"vst_").expect("the new key on the page") + "value=\"".len();
    let key: String = html[start..].chars().take_while(|c| *c != '"').collect();
    assert_eq!(key.len(), 4 + 43);
    (admin, key)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

async fn post(app: &TestApp, key: &str, body: &Value) -> (StatusCode, Value) {
    let res =
        client().post(format!("{}/api/v1.0/invitations", app.base)).bearer_auth(key).json(body).send().await.unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn get(app: &TestApp, key: &str, path: &str) -> (StatusCode, Value) {
    let res = client().get(format!("{}{path}", app.base)).bearer_auth(key).send().await.unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Asserts a Graph-shaped error with `status` whose message contains `needle`.
fn assert_error(got: &(StatusCode, Value), status: StatusCode, needle: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    let msg = got.1["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains(needle), "message {msg:?} should mention {needle:?}");
    assert!(got.1["error"]["code"].is_string());
    assert!(got.1["error"]["innerError"]["request-id"].is_string());
}

async fn graph_examples(app: TestApp) {
    let (admin, key) = setup(&app).await;
    // The key is shown once: the list only shows its beginning.
    let (_, page) = admin.get_text("/o/acme/admin/api-keys").await;
    assert!(page.contains("CI robot") && page.contains(&key[..12]) && !page.contains(&key));

    // Microsoft's minimal example.
    let (status, inv) = post(
        &app,
        &key,
        &json!({"invitedUserEmailAddress": "admin@fabrikam.com", "inviteRedirectUrl": "https://myapp.contoso.com"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{inv}");
    assert_eq!(inv["invitedUserEmailAddress"], "admin@fabrikam.com");
    assert_eq!(inv["inviteRedirectUrl"], "https://myapp.contoso.com/");
    assert_eq!(inv["invitedUserType"], "Guest");
    assert_eq!(inv["sendInvitationMessage"], false);
    assert_eq!(inv["resetRedemption"], false);
    assert_eq!(inv["status"], "PendingAcceptance");
    let redeem = inv["inviteRedeemUrl"].as_str().unwrap();
    assert!(redeem.starts_with(&format!("{}/redeem/", app.base)));
    let (id, user_id) = (inv["id"].as_str().unwrap(), inv["invitedUser"]["id"].as_str().unwrap());
    // No mail for a silent invitation; the link counts as disclosed.
    let disclosed: bool = app.with_conn(|c| {
        use vestibule::db::schema::invitations;
        invitations::table.find(id).select(invitations::disclosed).first(c).unwrap()
    });
    assert!(disclosed);
    // GET never shows the link again; invitedUser.id is the user id of the API.
    let (s, again) = get(&app, &key, &format!("/api/v1.0/invitations/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(again["inviteRedeemUrl"], Value::Null);
    assert_eq!(again["invitedUser"]["id"], user_id);
    let (s, user) = get(&app, &key, &format!("/api/v1.0/users/{user_id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(user["mail"], "admin@fabrikam.com");
    assert_eq!(user["externalUserState"], "PendingAcceptance");

    // The fuller example: emailed, personal message in French, one CC.
    let (status, inv) = post(
        &app,
        &key,
        &json!({
            "invitedUserEmailAddress": "lena.okafor@partner-example.org",
            "invitedUserDisplayName": "Lena Okafor (Partner Example)",
            "inviteRedirectUrl": "https://myapp.contoso.com/apps/contracts",
            "sendInvitationMessage": true,
            "invitedUserType": "Guest",
            "invitedUserMessageInfo": {
                "messageLanguage": "fr-FR",
                "customizedMessageBody": "Hi Lena, here is access to the contract workspace.",
                "ccRecipients": [{ "emailAddress": { "name": "Omar Reyes", "address": "omar.reyes@northwind.example" } }]
            }
        }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{inv}");
    assert_eq!(inv["inviteRedeemUrl"], Value::Null);
    assert_eq!(inv["sendInvitationMessage"], true);
    assert_eq!(inv["invitedUserDisplayName"], "Lena Okafor (Partner Example)");
    assert_eq!(inv["invitedUserMessageInfo"]["messageLanguage"], "fr-FR");
    assert_eq!(
        inv["invitedUserMessageInfo"]["customizedMessageBody"],
        "Hi Lena, here is access to the contract workspace."
    );
    assert_eq!(
        inv["invitedUserMessageInfo"]["ccRecipients"][0]["emailAddress"]["address"],
        "omar.reyes@northwind.example"
    );
    let guest_mail = app.smtp.wait_for("lena.okafor@partner-example.org").await;
    assert!(guest_mail.text().contains("/redeem/"));
    assert!(guest_mail.text().contains("contract workspace"));
    let cc_mail = app.smtp.wait_for("omar.reyes@northwind.example").await;
    assert!(!cc_mail.text().contains("/redeem/") && !cc_mail.html().contains("/redeem/"));
    assert!(cc_mail.text().contains("lena.okafor@partner-example.org"));
    assert!(cc_mail.text().contains("Omar Reyes"));
    assert!(cc_mail.header("Subject").unwrap_or_default().starts_with("Copie"));

    // Member type, and the audit trail names the key's creator.
    let (status, inv) = post(
        &app,
        &key,
        &json!({"invitedUserEmailAddress": "m@fabrikam.com", "inviteRedirectUrl": "https://myapp.contoso.com", "invitedUserType": "Member"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(inv["invitedUserType"], "Member");
    let actions: Vec<String> = app.with_conn(|c| {
        let org = vestibule::services::orgs::find_by_slug(c, "acme").unwrap().unwrap();
        vestibule::services::audit::list_for_org(c, &org.id, 50).unwrap().into_iter().map(|e| e.action).collect()
    });
    assert!(actions.iter().any(|a| a == "api_key.created"));
    assert_eq!(actions.iter().filter(|a| *a == "invitation.created").count(), 3);
}

async fn every_error(app: TestApp) {
    let (admin, key) = setup(&app).await;
    let ok_body =
        json!({"invitedUserEmailAddress": "x@fabrikam.com", "inviteRedirectUrl": "https://myapp.contoso.com"});
    let url = format!("{}/api/v1.0/invitations", app.base);

    // 401: no key, a wrong key, a cookie instead of a key.
    let res = client().post(&url).json(&ok_body).send().await.unwrap();
    assert_eq!(res.headers().get("www-authenticate").unwrap(), "Bearer");
    assert_error(&(res.status(), res.json().await.unwrap()), StatusCode::UNAUTHORIZED, "API key");
    assert_error(&post(&app, "vst_nope", &ok_body).await, StatusCode::UNAUTHORIZED, "API key");
    let res = admin.client.post(&url).json(&ok_body).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "a signed-in browser without a key is refused");
    let res = admin.client.get(format!("{}/api/v1.0/users", app.base)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // 415, 413, 400 for broken JSON.
    let res = client().post(&url).bearer_auth(&key).body(ok_body.to_string()).send().await.unwrap();
    assert_error(&(res.status(), res.json().await.unwrap()), StatusCode::UNSUPPORTED_MEDIA_TYPE, "Content-Type");
    let res = client()
        .post(&url)
        .bearer_auth(&key)
        .header("content-type", "text/plain")
        .body(ok_body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let huge = json!({"invitedUserEmailAddress": "x@fabrikam.com", "inviteRedirectUrl": "https://myapp.contoso.com",
        "invitedUserDisplayName": "a".repeat(1024 * 1024 + 10)});
    assert_error(&post(&app, &key, &huge).await, StatusCode::PAYLOAD_TOO_LARGE, "1 MiB");
    let res = client()
        .post(&url)
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body("{\"invitedUserEmailAddress\": ")
        .send()
        .await
        .unwrap();
    let got = (res.status(), res.json().await.unwrap());
    assert_error(&got, StatusCode::BAD_REQUEST, "not valid JSON");
    assert!(!got.1.to_string().contains("line"), "no parser internals: {}", got.1);

    // 400 naming the field.
    let cases = [
        (json!({"inviteRedirectUrl": "https://myapp.contoso.com"}), "'invitedUserEmailAddress' is required"),
        (json!({"invitedUserEmailAddress": "x@fabrikam.com"}), "'inviteRedirectUrl' is required"),
        (
            json!({"invitedUserEmailAddress": "not-an-email", "inviteRedirectUrl": "https://myapp.contoso.com"}),
            "'invitedUserEmailAddress'",
        ),
        (
            json!({"invitedUserEmailAddress": "x@fabrikam.com", "inviteRedirectUrl": "https://evil.example"}),
            "'inviteRedirectUrl'",
        ),
        (
            json!({"invitedUserEmailAddress": "x@fabrikam.com", "inviteRedirectUrl": "https://myapp.contoso.com", "invitedUserType": "Owner"}),
            "'invitedUserType'",
        ),
        (
            json!({"invitedUserEmailAddress": "x@fabrikam.com", "inviteRedirectUrl": "https://myapp.contoso.com", "sendInvitationMessage": "yes"}),
            "'sendInvitationMessage' has the wrong type",
        ),
        (
            json!({"invitedUserEmailAddress": "x@fabrikam.com", "inviteRedirectUrl": "https://myapp.contoso.com", "invitedUserDisplayName": 7}),
            "'invitedUserDisplayName' has the wrong type",
        ),
        (
            json!({"invitedUserEmailAddress": "x@fabrikam.com", "inviteRedirectUrl": "https://myapp.contoso.com", "surprise": 1}),
            "Unknown field 'surprise'",
        ),
        (
            json!({"invitedUserEmailAddress": "x@fabrikam.com", "inviteRedirectUrl": "https://myapp.contoso.com", "invitedUserMessageInfo": {"bcc": []}}),
            "Unknown field 'invitedUserMessageInfo.bcc'",
        ),
        (
            json!({"invitedUserEmailAddress": "x@fabrikam.com", "inviteRedirectUrl": "https://myapp.contoso.com", "invitedUserMessageInfo": {"customizedMessageBody": "a".repeat(2001)}}),
            "'invitedUserMessageInfo.customizedMessageBody'",
        ),
        (
            json!({"invitedUserEmailAddress": "x@fabrikam.com", "inviteRedirectUrl": "https://myapp.contoso.com", "invitedUserMessageInfo": {"ccRecipients": [
            {"emailAddress": {"address": "a@b.example"}}, {"emailAddress": {"address": "c@d.example"}}]}}),
            "at most one",
        ),
        (
            json!({"invitedUserEmailAddress": "x@fabrikam.com", "inviteRedirectUrl": "https://myapp.contoso.com", "invitedUserMessageInfo": {"ccRecipients": [
            {"emailAddress": {"address": "a@b.example", "extra": 1}}]}}),
            "Unknown field 'invitedUserMessageInfo.ccRecipients.emailAddress.extra'",
        ),
        (
            json!({"invitedUserEmailAddress": "x@fabrikam.com", "inviteRedirectUrl": "https://myapp.contoso.com", "resetRedemption": true}),
            "'invitedUser.id' is required",
        ),
        (
            json!({"invitedUserEmailAddress": "x@fabrikam.com", "inviteRedirectUrl": "https://myapp.contoso.com", "invitedUser": {"id": "x"}}),
            "'invitedUser'",
        ),
        (json!(["not", "an", "object"]), "JSON object"),
    ];
    for (body, needle) in cases {
        assert_error(&post(&app, &key, &body).await, StatusCode::BAD_REQUEST, needle);
    }

    // Domain list: a denied domain names the email field.
    admin
        .save_settings(&[
            ("redirect_allowlist", "https://myapp.contoso.com"),
            ("domain_mode", "deny"),
            ("domain_list", "fabrikam.com"),
        ])
        .await;
    assert_error(&post(&app, &key, &ok_body).await, StatusCode::BAD_REQUEST, "'invitedUserEmailAddress'");

    // 429 per inviter: the key uses its creator's hourly allowance.
    // (Leaving deny mode with a non-empty list needs a confirmation: keep the mode, change the list.)
    let deny_other = [
        ("redirect_allowlist", "https://myapp.contoso.com"),
        ("domain_mode", "deny"),
        ("domain_list", "blocked.example"),
    ];
    let res = admin.save_settings(&[deny_other.as_slice(), &[("invites_per_hour", "1")]].concat()).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let created = post(&app, &key, &ok_body).await;
    assert_eq!(created.0, StatusCode::CREATED, "{}", created.1);
    let res = client()
        .post(&url)
        .bearer_auth(&key)
        .json(&json!({"invitedUserEmailAddress": "y@fabrikam.com", "inviteRedirectUrl": "https://myapp.contoso.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().get("retry-after").is_some());

    // 403: the policy turns invitations off.
    let res = admin.save_settings(&[deny_other.as_slice(), &[("invite_policy", "none")]].concat()).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_error(&post(&app, &key, &ok_body).await, StatusCode::FORBIDDEN, "policy");

    // Revoked and expired keys are refused.
    let (s, _) = get(&app, &key, "/api/v1.0/users").await;
    assert_eq!(s, StatusCode::OK);
    let expiring = make_key(&app, "acme");
    app.with_conn(|c| {
        diesel::update(api_keys::table.filter(api_keys::key_hash.eq(vestibule::domain::token::hash_token(&expiring))))
            .set(api_keys::expires_at.eq(Some(vestibule::db::now() - time::Duration::seconds(1))))
            .execute(c)
            .unwrap()
    });
    assert_error(&get(&app, &expiring, "/api/v1.0/users").await, StatusCode::UNAUTHORIZED, "API key");
    let key_id: String = app.with_conn(|c| {
        api_keys::table
            .filter(api_keys::key_hash.eq(vestibule::domain::token::hash_token(&key)))
            .select(api_keys::id)
            .first(c)
            .unwrap()
    });
    let res = admin.post(&format!("/o/acme/admin/api-keys/{key_id}/revoke"), &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_error(&get(&app, &key, "/api/v1.0/users").await, StatusCode::UNAUTHORIZED, "API key");
    let (_, page) = admin.get_text("/o/acme/admin/api-keys").await;
    assert!(page.contains("Revoked"));
}

async fn idempotency(app: TestApp) {
    let (_admin, key) = setup(&app).await;
    let url = format!("{}/api/v1.0/invitations", app.base);
    let body =
        json!({"invitedUserEmailAddress": "idem@fabrikam.com", "inviteRedirectUrl": "https://myapp.contoso.com"});
    let send =
        |b: Value, k: &'static str| client().post(&url).bearer_auth(&key).header("Idempotency-Key", k).json(&b).send();
    let first = send(body.clone(), "abc-1").await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    assert!(first["inviteRedeemUrl"].is_string());
    let replay = send(body.clone(), "abc-1").await.unwrap();
    assert_eq!(replay.status(), StatusCode::CREATED);
    assert_eq!(replay.headers().get("idempotent-replayed").unwrap(), "true");
    let replay: Value = replay.json().await.unwrap();
    assert_eq!(replay["id"], first["id"]);
    assert_eq!(replay["inviteRedeemUrl"], Value::Null, "the link is shown once and never stored");
    let mut other = body.clone();
    other["invitedUserDisplayName"] = json!("Someone else");
    let res = send(other, "abc-1").await.unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // One invitation only.
    let n: i64 = app.with_conn(|c| {
        use vestibule::db::schema::invitations;
        invitations::table.filter(invitations::email.eq("idem@fabrikam.com")).count().get_result(c).unwrap()
    });
    assert_eq!(n, 1);
    // A 400 is replayed too.
    let bad = json!({"invitedUserEmailAddress": "idem2@fabrikam.com"});
    assert_eq!(send(bad.clone(), "abc-2").await.unwrap().status(), StatusCode::BAD_REQUEST);
    assert_eq!(send(bad, "abc-2").await.unwrap().status(), StatusCode::BAD_REQUEST);
}

async fn users_and_isolation(app: TestApp) {
    let (_admin, key) = setup(&app).await;
    for i in 0..5 {
        let (s, _) = post(
            &app,
            &key,
            &json!({"invitedUserEmailAddress": format!("g{i}@fabrikam.com"), "inviteRedirectUrl": "https://myapp.contoso.com"}),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED);
    }
    let accepted = add_person(&app, "acme", "done@partner.test", "Guest", "none");
    add_person(&app, "acme", "colleague@acme.test", "Member", "none");

    let (s, all) = get(&app, &key, "/api/v1.0/users").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(all["value"].as_array().unwrap().len(), 8, "admin, 5 pending, 1 accepted guest, 1 member");
    let u = &all["value"][0];
    for f in [
        "id",
        "displayName",
        "mail",
        "userType",
        "externalUserState",
        "externalUserStateChangeDateTime",
        "createdDateTime",
    ] {
        assert!(!u[f].is_null(), "{f} missing in {u}");
    }
    assert!(u["createdDateTime"].as_str().unwrap().ends_with('Z'));

    let q =
        "/api/v1.0/users?$filter=userType%20eq%20'Guest'%20and%20externalUserState%20eq%20'PendingAcceptance'&$top=2";
    let (s, page) = get(&app, &key, q).await;
    assert_eq!(s, StatusCode::OK);
    let mut seen: Vec<String> =
        page["value"].as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap().to_owned()).collect();
    let mut next = page["@odata.nextLink"].as_str().map(str::to_owned);
    while let Some(link) = next {
        let (s, p) = get(&app, &key, link.trim_start_matches(&app.base)).await;
        assert_eq!(s, StatusCode::OK);
        assert!(p["value"].as_array().unwrap().len() <= 2);
        seen.extend(p["value"].as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap().to_owned()));
        next = p["@odata.nextLink"].as_str().map(str::to_owned);
    }
    assert_eq!(seen.len(), 5, "every pending guest once");
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 5);
    let (_, acc) =
        get(&app, &key, "/api/v1.0/users?$filter=externalUserState%20eq%20'Accepted'%20and%20userType%20eq%20'Guest'")
            .await;
    assert_eq!(acc["value"].as_array().unwrap().len(), 1);
    assert_eq!(acc["value"][0]["id"], accepted.as_str());

    for bad in [
        "$top=0",
        "$top=1000",
        "$top=x",
        "$skiptoken=%%%",
        "$filter=jobTitle%20eq%20'x'",
        "$filter=userType%20ne%20'Guest'",
        "$select=favouriteColour",
        "$orderby=mail",
        "$expand=manager",
    ] {
        assert_eq!(get(&app, &key, &format!("/api/v1.0/users?{bad}")).await.0, StatusCode::BAD_REQUEST, "{bad}");
    }

    // Reset redemption of the accepted guest (invitedUser.id is the membership id).
    let (s, inv) = post(
        &app,
        &key,
        &json!({"invitedUserEmailAddress": "done@newco.test", "inviteRedirectUrl": "https://myapp.contoso.com",
            "sendInvitationMessage": true, "resetRedemption": true, "invitedUser": {"id": accepted}}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{inv}");
    assert_eq!(inv["resetRedemption"], true);
    assert_eq!(inv["invitedUser"]["id"], accepted.as_str());
    assert_eq!(inv["status"], "PendingAcceptance");
    assert!(app.smtp.wait_for("done@newco.test").await.text().contains("/redeem/"));
    let (_, u) = get(&app, &key, &format!("/api/v1.0/users/{accepted}")).await;
    assert_eq!(u["externalUserState"], "PendingAcceptance");
    // Resetting a pending person is refused.
    let again = post(
        &app,
        &key,
        &json!({"invitedUserEmailAddress": "done@newco.test", "inviteRedirectUrl": "https://myapp.contoso.com",
            "resetRedemption": true, "invitedUser": {"id": accepted}}),
    )
    .await;
    assert_error(&again, StatusCode::BAD_REQUEST, "'invitedUser.id'");

    // Another organization's ids are 404 to this key, and its key sees none of acme.
    app.create_org("Globex", "globex", "admin@globex.test");
    let globex_key = make_key(&app, "globex");
    let (s, g) = get(&app, &globex_key, "/api/v1.0/users").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(g["value"].as_array().unwrap().len(), 1);
    let globex_user = g["value"][0]["id"].as_str().unwrap().to_owned();
    assert_error(
        &get(&app, &key, &format!("/api/v1.0/users/{globex_user}")).await,
        StatusCode::NOT_FOUND,
        "organization",
    );
    let inv_id = inv["id"].as_str().unwrap();
    assert_eq!(get(&app, &globex_key, &format!("/api/v1.0/invitations/{inv_id}")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(get(&app, &globex_key, &format!("/api/v1.0/users/{accepted}")).await.0, StatusCode::NOT_FOUND);
    let res = client()
        .delete(format!("{}/api/v1.0/users/{accepted}", app.base))
        .bearer_auth(&globex_key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res =
        client().delete(format!("{}/api/v1.0/users/{globex_user}", app.base)).bearer_auth(&key).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);

    // DELETE removes from the org (soft), once.
    let res =
        client().delete(format!("{}/api/v1.0/users/{accepted}", app.base)).bearer_auth(&key).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let removed: bool = app.with_conn(|c| {
        memberships::table.find(&accepted).select(memberships::removed_at.is_not_null()).first(c).unwrap()
    });
    assert!(removed);
    assert_eq!(get(&app, &key, &format!("/api/v1.0/users/{accepted}")).await.0, StatusCode::NOT_FOUND);
    let res =
        client().delete(format!("{}/api/v1.0/users/{accepted}", app.base)).bearer_auth(&key).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    // The key cannot remove the admin it acts for.
    let admin_id = all["value"].as_array().unwrap().iter().find(|u| u["mail"] == "admin@acme.test").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let res =
        client().delete(format!("{}/api/v1.0/users/{admin_id}", app.base)).bearer_auth(&key).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}

async fn request_rate_and_openapi(app: TestApp) {
    app.create_org("Acme Corp", "acme", "admin@acme.test");
    let key = make_key(&app, "acme");
    // The OpenAPI document lists exactly the registered routes, and each route answers.
    let doc: Value = client().get(format!("{}/api/openapi.json", app.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented: Vec<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(p, ops)| ops.as_object().unwrap().keys().map(move |m| (m.clone(), p.clone())))
        .collect();
    let mut registered: Vec<(String, String)> =
        vestibule::web::api::ROUTES.iter().map(|(m, p)| ((*m).to_owned(), (*p).to_owned())).collect();
    documented.sort();
    registered.sort();
    assert_eq!(documented, registered);
    for (method, path) in vestibule::web::api::ROUTES {
        let url = format!("{}{}", app.base, path.replace("{id}", "x"));
        let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let res = client().request(m, &url).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{method} {path} is registered and needs a key");
    }

    // 600 requests a minute per key, then 429 with Retry-After.
    let shared = client();
    for _ in 0..vestibule::web::api::REQUESTS_PER_MINUTE / 50 {
        let batch = (0..50).map(|_| shared.get(format!("{}/api/v1.0/users?$top=1", app.base)).bearer_auth(&key).send());
        for res in futures_util::future::join_all(batch).await {
            assert_eq!(res.unwrap().status(), StatusCode::OK);
        }
    }
    let res = client().get(format!("{}/api/v1.0/users", app.base)).bearer_auth(&key).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = res.headers().get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait));
    // Another key of the same org is not slowed down.
    let other = make_key(&app, "acme");
    assert_eq!(get(&app, &other, "/api/v1.0/users").await.0, StatusCode::OK);
    let _ = Actor::default();
}

on_both_databases!(graph_examples, every_error, idempotency, users_and_isolation, request_rate_and_openapi);
