//! Microsoft Graph's documented request and response examples, replayed against Vestibule and
//! compared field by field. The examples are copied from Microsoft's documentation:
//!
//! - Create invitation, v1.0: <https://learn.microsoft.com/graph/api/invitation-post?view=graph-rest-1.0>
//!   (Example 1 "Invite a guest user", Example 2 "Reset the redemption status of a guest user").
//! - The request with `@odata.type` on every object, as the SDKs serialize it:
//!   <https://learn.microsoft.com/graph/api/invitation-post?view=graph-rest-beta> (older page).
//! - Reset with `invitedUserMessageInfo`:
//!   <https://learn.microsoft.com/entra/external-id/reset-redemption-status>.
//! - List users: <https://learn.microsoft.com/graph/api/user-list?view=graph-rest-1.0>
//!   (Example 1 "Get all users", Example 4 `$filter`, `$orderby`, `$count`, `$top`).
//! - Get a user: <https://learn.microsoft.com/graph/api/user-get?view=graph-rest-1.0>
//!   (Example 1, Example 3 `$select`).
//! - `$count` without `ConsistencyLevel` is ignored, filters with `$orderby` need the advanced
//!   parameters: <https://learn.microsoft.com/graph/aad-advanced-queries>.
//!
//! How a documented value is compared with ours: ids, dates and URLs by shape (they are made
//! by each server); addresses without regard to case (Vestibule keeps them in lower case);
//! properties Vestibule does not keep must come back null (or `[]` for collections); every
//! other field must be equal, except the deviations each example lists with its reason.

use diesel::prelude::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use vestibule::db::schema::{memberships, organizations, users};

use crate::helpers::TestApp;
use crate::on_both_databases;
use crate::policy::add_person;

/// Graph `user` properties Vestibule does not keep.
const NOT_KEPT: &[&str] =
    &["givenName", "surname", "jobTitle", "mobilePhone", "officeLocation", "postalCode", "mailNickname"];
const NOT_KEPT_LISTS: &[&str] = &["businessPhones", "identities"];
/// Properties holding an address.
const ADDRESSES: &[&str] = &["invitedUserEmailAddress", "mail", "userPrincipalName", "address"];

/// A documented value that Vestibule answers differently on purpose: (path, our value, why).
type Deviation<'a> = (&'a str, Value, &'a str);

/// The property a path ends with (`a.b[0].c` → `c`; `@odata.context` stays whole).
fn last_key(path: &str) -> &str {
    let path = path.trim_end_matches(|c: char| c == ']' || c.is_ascii_digit()).trim_end_matches('[');
    if let Some(i) = path.find("@odata.") {
        return &path[i..];
    }
    path.rsplit('.').next().unwrap_or(path)
}

/// Compares `doc` (Graph's documented answer) with `got` (ours), collecting the differences.
fn compare(path: &str, doc: &Value, got: Option<&Value>, base: &str, deviations: &[Deviation], out: &mut Vec<String>) {
    if let Some((_, ours, _)) = deviations.iter().find(|(p, _, _)| *p == path) {
        if got != Some(ours) {
            out.push(format!("{path}: expected Vestibule's documented deviation {ours}, got {got:?}"));
        }
        return;
    }
    let key = last_key(path);
    if NOT_KEPT.contains(&key) {
        if !matches!(got, None | Some(Value::Null)) {
            out.push(format!("{path}: not kept by Vestibule, should be null, got {got:?}"));
        }
        return;
    }
    if NOT_KEPT_LISTS.contains(&key) {
        if got != Some(&json!([])) {
            out.push(format!("{path}: not kept by Vestibule, should be [], got {got:?}"));
        }
        return;
    }
    let Some(got) = got else {
        out.push(format!("{path}: missing (Graph documents {doc})"));
        return;
    };
    match (doc, got) {
        (Value::Object(d), Value::Object(g)) => {
            for (k, v) in d {
                compare(&join(path, k), v, g.get(k), base, deviations, out);
            }
        }
        (Value::Array(d), Value::Array(g)) => {
            if d.len() != g.len() {
                out.push(format!("{path}: {} items documented, {} answered", d.len(), g.len()));
            }
            for (i, v) in d.iter().enumerate() {
                compare(&format!("{path}[{i}]"), v, g.get(i), base, deviations, out);
            }
        }
        (Value::String(d), Value::String(g)) if key == "id" => {
            if g.is_empty() || d.is_empty() {
                out.push(format!("{path}: an id is expected, got {g:?}"));
            }
        }
        (Value::String(_), Value::String(g)) if key.ends_with("DateTime") => {
            if time::OffsetDateTime::parse(g, &time::format_description::well_known::Rfc3339).is_err() {
                out.push(format!("{path}: not an RFC 3339 date: {g:?}"));
            }
        }
        (Value::String(d), Value::String(g)) if key == "@odata.context" => {
            let fragment = |u: &str| u.split_once("$metadata").map(|(_, f)| f.to_owned());
            if fragment(d) != fragment(g) || !g.starts_with(&format!("{base}/api/v1.0/$metadata#")) {
                out.push(format!("{path}: {g:?} does not match {d:?}"));
            }
        }
        (Value::String(_), Value::String(g)) if key == "inviteRedeemUrl" => {
            if !g.starts_with(&format!("{base}/redeem/")) {
                out.push(format!("{path}: not a redeem link of this server: {g:?}"));
            }
        }
        (Value::String(d), Value::String(g)) if key == "inviteRedirectUrl" => {
            if url::Url::parse(d).ok() != url::Url::parse(g).ok() {
                out.push(format!("{path}: {g:?} is not the URL {d:?}"));
            }
        }
        (Value::String(d), Value::String(g)) if ADDRESSES.contains(&key) => {
            if !d.eq_ignore_ascii_case(g) {
                out.push(format!("{path}: {g:?} is not the address {d:?}"));
            }
        }
        (d, g) if d == g => {}
        (d, g) => out.push(format!("{path}: Graph documents {d}, Vestibule answered {g}")),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

/// Asserts that `got` answers like Graph's documented `doc`.
fn assert_like_graph(example: &str, doc: &Value, got: &Value, base: &str, deviations: &[Deviation]) {
    let mut problems = Vec::new();
    compare("", doc, Some(got), base, deviations, &mut problems);
    assert!(problems.is_empty(), "{example}:\n  {}\nanswer: {got:#}", problems.join("\n  "));
}

struct Api {
    base: String,
    key: String,
    client: reqwest::Client,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        eventual: bool,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.base)).bearer_auth(&self.key);
        if eventual {
            req = req.header("ConsistencyLevel", "eventual");
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, None, false).await
    }

    async fn get_eventual(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, None, true).await
    }

    async fn post(&self, body: &Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, "/api/v1.0/invitations", Some(body), false).await
    }
}

/// Contoso, as in Microsoft's examples: its admin is "MOD Administrator" <admin@contoso.com>,
/// and its apps live at myapp.contoso.com and myapps.microsoft.com.
fn contoso(app: &TestApp) -> Api {
    app.create_org("Contoso", "contoso", "admin@contoso.com");
    app.with_conn(|c| {
        diesel::update(organizations::table.filter(organizations::slug.eq("contoso")))
            .set(organizations::redirect_allowlist.eq("https://myapp.contoso.com\nhttps://myapps.microsoft.com"))
            .execute(c)
            .unwrap();
    });
    rename(app, "admin@contoso.com", "MOD Administrator");
    set_language(app, "admin@contoso.com", "en");
    let key =
        app.with_conn(|c| vestibule::services::api_keys::create_for_cli(c, "contoso", "Graph SDK", None).unwrap());
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    Api { base: app.base.clone(), key, client }
}

fn rename(app: &TestApp, email: &str, name: &str) {
    let (email, name) = (email.to_owned(), name.to_owned());
    app.with_conn(move |c| {
        diesel::update(users::table.filter(users::email.eq(email)))
            .set(users::display_name.eq(name))
            .execute(c)
            .unwrap();
    });
}

fn set_language(app: &TestApp, email: &str, lang: &str) {
    let (email, lang) = (email.to_owned(), lang.to_owned());
    app.with_conn(move |c| {
        diesel::update(users::table.filter(users::email.eq(email)))
            .set(users::language.eq(Some(lang)))
            .execute(c)
            .unwrap();
    });
}

/// A person of Contoso named as in the examples; returns their id (membership id).
fn person(app: &TestApp, email: &str, name: &str, user_type: &str) -> String {
    let id = add_person(app, "contoso", email, user_type, "none");
    rename(app, email, name);
    id
}

async fn user_examples(app: TestApp) {
    let api = contoso(&app);
    let base = app.base.clone();
    person(&app, "adams@contoso.com", "Conf Room Adams", "Member");

    // user-list, Example 1: Get all users.
    let doc = json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users",
        "value": [
            {
                "businessPhones": [],
                "displayName": "Conf Room Adams",
                "givenName": null,
                "jobTitle": null,
                "mail": "Adams@contoso.com",
                "mobilePhone": null,
                "officeLocation": null,
                "preferredLanguage": null,
                "surname": null,
                "userPrincipalName": "Adams@contoso.com",
                "id": "6ea91a8d-e32e-41a1-b7bd-d2d185eed0e0"
            },
            {
                "businessPhones": ["425-555-0100"],
                "displayName": "MOD Administrator",
                "givenName": "MOD",
                "jobTitle": null,
                "mail": null,
                "mobilePhone": "425-555-0101",
                "officeLocation": null,
                "preferredLanguage": "en-US",
                "surname": "Administrator",
                "userPrincipalName": "admin@contoso.com",
                "id": "4562bcc8-c436-4f95-b7c0-4f8ce89dca5e"
            }
        ]
    });
    let (status, mut got) = api.get("/api/v1.0/users").await;
    assert_eq!(status, StatusCode::OK, "{got}");
    // Graph's example lists Adams first; Vestibule lists by id unless asked: put ours in the
    // documented order before comparing.
    got["value"].as_array_mut().unwrap().sort_by_key(|u| u["mail"] != "adams@contoso.com");
    assert_like_graph(
        "user-list Example 1",
        &doc,
        &got,
        &base,
        &[
            ("value[1].mail", json!("admin@contoso.com"), "every Vestibule person has an address"),
            ("value[1].preferredLanguage", json!("en"), "Vestibule keeps the language, not the region"),
        ],
    );

    // user-list, Example 4: $filter and $top to get one user whose name starts with 'a', with
    // the count; it needs ConsistencyLevel: eventual and $count=true ($filter with $orderby).
    person(&app, "a@contoso.com", "a", "Guest");
    let query = "/api/v1.0/users?$filter=startswith(displayName,'a')&$orderby=displayName&$count=true&$top=1";
    let doc = json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users",
        "@odata.count": 1,
        "value": [{
            "displayName": "a",
            "mail": "a@contoso.com",
            "mailNickname": "a_contoso.com#EXT#",
            "userPrincipalName": "a_contoso.com#EXT#@microsoft.onmicrosoft.com"
        }]
    });
    let (status, got) = api.get_eventual(query).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_like_graph(
        "user-list Example 4",
        &doc,
        &got,
        &base,
        &[(
            "value[0].userPrincipalName",
            json!("a@contoso.com"),
            "a Vestibule person's user principal name is their address",
        )],
    );
    // Without the advanced query parameters, Graph refuses $filter with $orderby.
    let (status, err) = api.get(query).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(err["error"]["code"], "Request_UnsupportedQuery");
    assert!(err["error"]["message"].as_str().unwrap().contains("ConsistencyLevel: eventual"));

    // aad-advanced-queries: $count=true without the header is silently ignored.
    let (status, got) = api.get("/api/v1.0/users?$count=true").await;
    assert_eq!(status, StatusCode::OK);
    assert!(got.get("@odata.count").is_none(), "{got}");
    let (_, got) = api.get_eventual("/api/v1.0/users?$count=true").await;
    assert_eq!(got["@odata.count"], 3);

    // user-get, Example 1: standard user request, by id and by user principal name.
    let adele = person(&app, "adelev@contoso.com", "Adele Vance", "Member");
    set_language(&app, "adelev@contoso.com", "en");
    let doc = json!({
        "businessPhones": ["+1 425 555 0109"],
        "displayName": "Adele Vance",
        "givenName": "Adele",
        "jobTitle": "Retail Manager",
        "mail": "AdeleV@contoso.com",
        "mobilePhone": "+1 425 555 0109",
        "officeLocation": "18/2111",
        "preferredLanguage": "en-US",
        "surname": "Vance",
        "userPrincipalName": "AdeleV@contoso.com",
        "id": "87d349ed-44d7-43e1-9a83-5f2406dee5bd"
    });
    let lang = [("preferredLanguage", json!("en"), "Vestibule keeps the language, not the region")];
    let (status, by_id) = api.get(&format!("/api/v1.0/users/{adele}")).await;
    assert_eq!(status, StatusCode::OK, "{by_id}");
    assert_like_graph("user-get Example 1", &doc, &by_id, &base, &lang);
    assert_eq!(by_id["id"], adele);
    assert!(by_id["@odata.context"].as_str().unwrap().ends_with("/api/v1.0/$metadata#users/$entity"));
    let (status, by_upn) = api.get("/api/v1.0/users/AdeleV@contoso.com").await;
    assert_eq!(status, StatusCode::OK, "{by_upn}");
    assert_eq!(by_upn, by_id);
    assert_eq!(api.get("/api/v1.0/users/nobody@contoso.com").await.0, StatusCode::NOT_FOUND);

    // user-get, Example 3: $select.
    let doc = json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users(displayName,givenName,postalCode,identities)/$entity",
        "displayName": "Adele Vance",
        "givenName": "Adele",
        "postalCode": "98004",
        "identities": [{ "signInType": "userPrincipalName", "issuer": "contoso.com", "issuerAssignedId": "AdeleV@contoso.com" }]
    });
    let (status, got) =
        api.get(&format!("/api/v1.0/users/{adele}?$select=displayName,givenName,postalCode,identities")).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_like_graph("user-get Example 3", &doc, &got, &base, &[]);
    let keys: Vec<&String> = got.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 5, "only the selected properties: {got}");
    let (status, err) = api.get(&format!("/api/v1.0/users/{adele}?$select=displayName,favouriteColour")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(err["error"]["message"].as_str().unwrap().contains("'favouriteColour'"));
}

/// What scripts do most: look a guest up by address, with `and`, OData quoting, `$select`,
/// `$orderby` and paging.
async fn user_queries(app: TestApp) {
    let api = contoso(&app);
    let obrien = person(&app, "pat.obrien@fabrikam.com", "Pat O'Brien", "Guest");
    person(&app, "lee@fabrikam.com", "Lee Chen", "Guest");
    person(&app, "ana@contoso.com", "Ana Ruiz", "Member");
    let ids = |v: &Value| -> Vec<String> {
        v["value"].as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap().to_owned()).collect()
    };
    let q = |f: &str| format!("/api/v1.0/users?$filter={}", urlencoding(f));

    let (status, got) = api.get(&q("mail eq 'Pat.OBrien@Fabrikam.com'")).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(ids(&got), vec![obrien.clone()]);
    assert_eq!(ids(&api.get(&q("userPrincipalName eq 'pat.obrien@fabrikam.com'")).await.1), vec![obrien.clone()]);
    let (_, got) = api.get(&q("startswith(mail,'pat.') and userType eq 'Guest'")).await;
    assert_eq!(ids(&got), vec![obrien.clone()]);
    assert_eq!(ids(&api.get(&q("startswith(mail,'pat.') and userType eq 'Member'")).await.1), Vec::<String>::new());
    let (_, got) = api.get(&q("startswith(displayName,'pat o''b')")).await;
    assert_eq!(ids(&got), vec![obrien.clone()]);
    assert_eq!(api.get(&q("startswith(mail,'%')")).await.1["value"], json!([]), "wildcards are literal");
    let (_, got) = api.get(&q("startswith(mail,'fab') or startswith(mail,'lee')")).await;
    assert_eq!(got["error"]["code"], "Request_UnsupportedQuery");
    let (status, got) = api.get(&q("mail eq 'unterminated")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(got["error"]["code"], "Request_BadRequest");

    // $select trims every user of a list.
    let (_, got) = api.get("/api/v1.0/users?$select=id,mail").await;
    assert!(got["@odata.context"].as_str().unwrap().ends_with("$metadata#users(id,mail)"));
    for u in got["value"].as_array().unwrap() {
        assert_eq!(u.as_object().unwrap().len(), 2, "{u}");
    }

    // $orderby displayName works by default; createdDateTime needs the advanced parameters.
    let (status, got) = api.get("/api/v1.0/users?$orderby=displayName desc&$select=displayName").await;
    assert_eq!(status, StatusCode::OK, "{got}");
    let names: Vec<&str> =
        got["value"].as_array().unwrap().iter().map(|u| u["displayName"].as_str().unwrap()).collect();
    assert_eq!(names, ["Pat O'Brien", "MOD Administrator", "Lee Chen", "Ana Ruiz"]);
    let (status, got) = api.get("/api/v1.0/users?$orderby=createdDateTime").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(got["error"]["code"], "Request_UnsupportedQuery");
    assert_eq!(api.get("/api/v1.0/users?$orderby=mail").await.0, StatusCode::BAD_REQUEST);

    // Sorted pages of 3, followed through @odata.nextLink, count on every page.
    let mut seen = Vec::new();
    let mut next = Some(format!("{}/api/v1.0/users?$orderby=displayName&$count=true&$top=3", app.base));
    while let Some(url) = next {
        let path = url.strip_prefix(&app.base).unwrap().to_owned();
        let (status, page) = api.get_eventual(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["@odata.count"], 4);
        seen.extend(page["value"].as_array().unwrap().iter().map(|u| u["displayName"].as_str().unwrap().to_owned()));
        next = page["@odata.nextLink"].as_str().map(str::to_owned);
    }
    assert_eq!(seen, ["Ana Ruiz", "Lee Chen", "MOD Administrator", "Pat O'Brien"]);
    let mut seen = Vec::new();
    let mut next = Some(format!("{}/api/v1.0/users?$orderby=createdDateTime desc&$count=true&$top=1", app.base));
    while let Some(url) = next {
        let (_, page) = api.get_eventual(url.strip_prefix(&app.base).unwrap()).await;
        seen.extend(ids(&page));
        next = page["@odata.nextLink"].as_str().map(str::to_owned);
    }
    assert_eq!(seen.len(), 4);
    assert_eq!(seen.iter().collect::<std::collections::HashSet<_>>().len(), 4, "no row twice");
}

/// Percent-encodes a query value.
fn urlencoding(v: &str) -> String {
    url::form_urlencoded::byte_serialize(v.as_bytes()).collect()
}

async fn invitation_examples(app: TestApp) {
    let api = contoso(&app);
    let base = app.base.clone();

    // invitation-post, Example 1: invite a guest user.
    let request = json!({
        "invitedUserEmailAddress": "admin@fabrikam.com",
        "inviteRedirectUrl": "https://myapp.contoso.com"
    });
    let doc = json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#invitations/$entity",
        "id": "9071bfde-35e0-47d2-a582-d244ab1b4af6",
        "inviteRedeemUrl": "https://login.microsoftonline.com/redeem?rd=https%3a%2f%2finvitations.microsoft.com%2fredeem%2f%3ftenant%3d69997834-fa40-45da-xxxx-382c3bdc66c3%26user%3d9071bfde-35e0-47d2-a582-d244ab1b4af6%26ticket%3dwCFIFW%25252frzl2A%25252fpZFZk5fCLJprpDxtcjR8s%25252fo1QZA0yQ%25253d%26ver%3d2.0",
        "invitedUserDisplayName": null,
        "invitedUserType": "Guest",
        "invitedUserEmailAddress": "admin@fabrikam.com",
        "sendInvitationMessage": false,
        "resetRedemption": false,
        "inviteRedirectUrl": "https://myapp.contoso.com",
        "status": "PendingAcceptance",
        "invitedUserMessageInfo": {
            "messageLanguage": null,
            "customizedMessageBody": null,
            "ccRecipients": [{ "emailAddress": { "name": null, "address": null } }]
        },
        "invitedUser": {
            "id": "cbb896f9-8306-49d0-b56b-b8e39cd28825",
            "userPrincipalName": "admin_fabrikam.com#EXT#@doc.onmicrosoft.com"
        }
    });
    let upn = "a Vestibule person's user principal name is their address";
    let (status, got) = api.post(&request).await;
    assert_eq!(status, StatusCode::CREATED, "{got}");
    assert_like_graph(
        "invitation-post Example 1",
        &doc,
        &got,
        &base,
        &[("invitedUser.userPrincipalName", json!("admin@fabrikam.com"), upn)],
    );
    // GET answers the same invitation (without the link, shown once).
    let (status, again) = api.get(&format!("/api/v1.0/invitations/{}", got["id"].as_str().unwrap())).await;
    assert_eq!(status, StatusCode::OK);
    assert_like_graph(
        "GET of invitation-post Example 1",
        &doc,
        &again,
        &base,
        &[
            ("invitedUser.userPrincipalName", json!("admin@fabrikam.com"), upn),
            ("inviteRedeemUrl", Value::Null, "the link is a secret shown once"),
        ],
    );

    // The request as the SDKs serialize it, with @odata.type on every object (the beta page's
    // request), and a French message with a CC recipient.
    let request = json!({
        "@odata.type": "#microsoft.graph.invitation",
        "invitedUserDisplayName": "Lena Okafor",
        "invitedUserType": "guest",
        "invitedUserEmailAddress": "lena@fabrikam.com",
        "invitedUserMessageInfo": {
            "@odata.type": "microsoft.graph.invitedUserMessageInfo",
            "ccRecipients": [{
                "@odata.type": "microsoft.graph.recipient",
                "emailAddress": { "@odata.type": "microsoft.graph.emailAddress", "name": "Omar Reyes", "address": "omar@contoso.com" }
            }],
            "messageLanguage": "fr-FR",
            "customizedMessageBody": "Bienvenue !"
        },
        "sendInvitationMessage": true,
        "inviteRedirectUrl": "https://myapp.contoso.com/",
        "resetRedemption": false
    });
    let (status, created) = api.post(&request).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    // Graph echoes what was sent: the answer holds the request's fields as sent.
    let mut echoed = request.clone();
    echoed["invitedUserMessageInfo"].as_object_mut().unwrap().remove("@odata.type");
    echoed.as_object_mut().unwrap().remove("@odata.type");
    echoed["invitedUserMessageInfo"]["ccRecipients"] =
        json!([{ "emailAddress": { "name": "Omar Reyes", "address": "omar@contoso.com" } }]);
    let case = [("invitedUserType", json!("Guest"), "Graph reads the type in any case and answers it capitalized")];
    assert_like_graph("create with invitedUserMessageInfo", &echoed, &created, &base, &case);
    assert_eq!(created["inviteRedeemUrl"], Value::Null, "mailed, so not returned");
    let (_, stored) = api.get(&format!("/api/v1.0/invitations/{}", created["id"].as_str().unwrap())).await;
    assert_like_graph("GET after create with invitedUserMessageInfo", &echoed, &stored, &base, &case);

    // A wrong @odata.type is refused, as is a truly unknown field.
    let mut wrong = request.clone();
    wrong["invitedUserEmailAddress"] = json!("other@fabrikam.com");
    wrong["@odata.type"] = json!("#microsoft.graph.user");
    let (status, err) = api.post(&wrong).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(err["error"]["message"].as_str().unwrap().contains("'@odata.type'"), "{err}");
    let mut unknown = request.clone();
    unknown["invitedUserEmailAddress"] = json!("other@fabrikam.com");
    unknown["favouriteColour"] = json!("blue");
    let (status, err) = api.post(&unknown).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(err["error"]["message"].as_str().unwrap().contains("Unknown field 'favouriteColour'"));

    // invitation-post, Example 2: reset the redemption status of a guest who accepted; the
    // SDKs add "@odata.type": "#microsoft.graph.user" to invitedUser.
    let adele = add_person(&app, "contoso", "adele.vance@adatum.com", "Guest", "none");
    let created_at = api.get(&format!("/api/v1.0/users/{adele}")).await.1["createdDateTime"].clone();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let request = json!({
        "invitedUserEmailAddress": "AdeleV@fabrikam.com",
        "inviteRedirectUrl": "https://myapp.contoso.com",
        "invitedUser": { "@odata.type": "#microsoft.graph.user", "id": adele },
        "resetRedemption": true
    });
    let doc = json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#invitations/$entity",
        "id": "46d72876-dba6-4a05-b9ec-118faf16c4b7",
        "inviteRedeemUrl": "https://login.microsoftonline.com/redeem?rd=https%3a%2f%2finvitations.microsoft.com%2fredeem%2f%3fte...3d2.0",
        "invitedUserDisplayName": null,
        "invitedUserType": "Guest",
        "invitedUserEmailAddress": "AdeleV@fabrikam.com",
        "sendInvitationMessage": false,
        "resetRedemption": true,
        "inviteRedirectUrl": "https://myapp.contoso.com",
        "status": "PendingAcceptance",
        "invitedUserMessageInfo": {
            "messageLanguage": null,
            "customizedMessageBody": null,
            "ccRecipients": [{ "emailAddress": { "name": null, "address": null } }]
        },
        "invitedUser": {
            "id": "264e6d50-eaec-461e-b187-873b1bcf855f",
            "userPrincipalName": "AdeleV_fabrikam.com#EXT#@doc.onmicrosoft.com"
        }
    });
    let (status, got) = api.post(&request).await;
    assert_eq!(status, StatusCode::CREATED, "{got}");
    assert_like_graph(
        "invitation-post Example 2",
        &doc,
        &got,
        &base,
        &[
            ("invitedUser.userPrincipalName", json!("adelev@fabrikam.com"), upn),
            ("sendInvitationMessage", json!(true), "Vestibule always emails the new link of a reset"),
            ("inviteRedeemUrl", Value::Null, "the new link of a reset goes only to the new address"),
        ],
    );
    assert_eq!(got["invitedUser"]["id"], adele, "the person keeps their id");
    // The person is pending again since the reset, not since they were created.
    let (_, user) = api.get(&format!("/api/v1.0/users/{adele}")).await;
    assert_eq!(user["externalUserState"], "PendingAcceptance");
    assert_eq!(user["createdDateTime"], created_at);
    assert!(
        user["externalUserStateChangeDateTime"].as_str().unwrap() > created_at.as_str().unwrap(),
        "state changed at the reset: {user}"
    );

    // Reset with invitedUserMessageInfo (Entra's reset-redemption-status page); a wrong type
    // on invitedUser is refused.
    let grace = add_person(&app, "contoso", "grace@adatum.com", "Guest", "none");
    let request = json!({
        "invitedUserEmailAddress": "grace.h@adatum.com",
        "sendInvitationMessage": true,
        "invitedUserMessageInfo": {
            "messageLanguage": "en-US",
            "ccRecipients": [{ "emailAddress": { "name": null, "address": "omar@contoso.com" } }],
            "customizedMessageBody": "Your address changed."
        },
        "inviteRedirectUrl": "https://myapps.microsoft.com?tenantId=",
        "invitedUser": { "id": grace },
        "resetRedemption": true
    });
    let mut wrong = request.clone();
    wrong["invitedUser"]["@odata.type"] = json!("#microsoft.graph.group");
    let (status, err) = api.post(&wrong).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(err["error"]["message"].as_str().unwrap().contains("'invitedUser.@odata.type'"), "{err}");
    let (status, got) = api.post(&request).await;
    assert_eq!(status, StatusCode::CREATED, "{got}");
    assert_eq!(got["resetRedemption"], true);
    assert_eq!(got["invitedUserMessageInfo"]["messageLanguage"], "en-US");
    assert_eq!(got["invitedUserMessageInfo"]["customizedMessageBody"], "Your address changed.");
    assert_eq!(got["invitedUserMessageInfo"]["ccRecipients"][0]["emailAddress"]["address"], "omar@contoso.com");
}

/// The rest of §3: sponsors, 405 with Allow.
async fn sponsors_and_methods(app: TestApp) {
    let api = contoso(&app);
    let admin_id: String = app.with_conn(|c| {
        memberships::table
            .inner_join(users::table)
            .filter(users::email.eq("admin@contoso.com"))
            .select(memberships::id)
            .first(c)
            .unwrap()
    });
    let member = person(&app, "ana@contoso.com", "Ana Ruiz", "Member");
    let guest = person(&app, "lee@fabrikam.com", "Lee Chen", "Guest");
    let invite = |email: &str, sponsors: Value| {
        json!({
            "invitedUserEmailAddress": email,
            "inviteRedirectUrl": "https://myapp.contoso.com",
            "invitedUserSponsors": sponsors
        })
    };
    let (status, got) =
        api.post(&invite("kim@fabrikam.com", json!([{ "@odata.type": "#microsoft.graph.user", "id": member }]))).await;
    assert_eq!(status, StatusCode::CREATED, "{got}");
    assert_eq!(got["invitedUserSponsors"], json!([{ "id": member }]));
    let sponsor_of = |mid: String| {
        app.with_conn(move |c| {
            let sponsor: Option<String> =
                memberships::table.find(mid).select(memberships::sponsor_id).first(c).unwrap();
            users::table.find(sponsor.unwrap()).select(users::email).first::<String>(c).unwrap()
        })
    };
    assert_eq!(sponsor_of(got["invitedUser"]["id"].as_str().unwrap().to_owned()), "ana@contoso.com");
    let (_, again) = api.get(&format!("/api/v1.0/invitations/{}", got["id"].as_str().unwrap())).await;
    assert_eq!(again["invitedUserSponsors"], json!([{ "id": member }]));
    // A guest cannot sponsor; Vestibule keeps one sponsor; a group is not a person.
    let (status, err) = api.post(&invite("kai@fabrikam.com", json!([{ "id": guest }]))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(err["error"]["message"].as_str().unwrap().starts_with("'invitedUserSponsors'"), "{err}");
    let (status, _) = api.post(&invite("kai@fabrikam.com", json!([{ "id": member }, { "id": admin_id }]))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) =
        api.post(&invite("kai@fabrikam.com", json!([{ "@odata.type": "#microsoft.graph.group", "id": member }]))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let kai: i64 =
        app.with_conn(|c| users::table.filter(users::email.eq("kai@fabrikam.com")).count().get_result(c).unwrap());
    assert_eq!(kai, 0, "nothing is written when a sponsor is refused");

    // DELETE takes an address too, as Graph takes a user principal name.
    let (status, _) = api.call(reqwest::Method::DELETE, "/api/v1.0/users/Lee@Fabrikam.com", None, false).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(api.get(&format!("/api/v1.0/users/{guest}")).await.0, StatusCode::NOT_FOUND);
    let (status, _) = api.call(reqwest::Method::DELETE, "/api/v1.0/users/lee@fabrikam.com", None, false).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // 405 carries Allow and Graph's code, not a not-found one.
    for (method, path, allow) in [
        (reqwest::Method::PUT, "/api/v1.0/invitations".to_owned(), "POST"),
        (reqwest::Method::DELETE, "/api/v1.0/invitations/x".to_owned(), "GET"),
        (reqwest::Method::POST, "/api/v1.0/users".to_owned(), "GET"),
        (reqwest::Method::PATCH, format!("/api/v1.0/users/{member}"), "GET, DELETE"),
    ] {
        let res = api.client.request(method, format!("{}{path}", app.base)).bearer_auth(&api.key).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED, "{path}");
        assert_eq!(res.headers()["allow"], allow);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], "Request_BadRequest");
        assert!(body["error"]["innerError"]["request-id"].is_string());
    }
}

on_both_databases!(user_examples, user_queries, invitation_examples, sponsors_and_methods);
