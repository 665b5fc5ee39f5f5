//! The authorization endpoint: checks the client and the redirect URI (an error page, never a
//! redirect, when either is wrong), signs the person in when needed, shows the consent page to
//! a guest whose invitation is pending, and answers with a code only when the person may use
//! the app; otherwise the page "You do not have access".

use std::collections::HashMap;

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, post, route, web};
use askama::Template;
use serde::{Deserialize, Serialize};
use url::Url;

use super::{issuer_of, org_of};
use crate::auth::guard::sign_out;
use crate::db::models::{OidcClient, Organization};
use crate::domain::oidc::{MAX_PARAM_LEN, MAX_STATE_LEN, Prompt, is_pkce_value, normalize_scope, uri_is_registered};
use crate::error::AppError;
use crate::services::audit::{self, action};
use crate::services::oidc::access::{self, Contact, Decision};
use crate::services::oidc::{clients, grants};
use crate::services::{ServiceError, accounts, apps, redeem, sessions};
use crate::state::AppState;
use crate::web::{Ctx, actor, render, see_other, with_conn};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(authorize).service(consent);
}

/// Session key of an authorization request waiting for the consent page.
const PENDING_KEY: &str = "oidc_pending";

/// The parameters of an authorization request (OpenID Connect Core §3.1.2.1).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct AuthParams {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    scope: Option<String>,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    prompt: Option<String>,
    max_age: Option<String>,
    login_hint: Option<String>,
    response_mode: Option<String>,
    request: Option<String>,
    request_uri: Option<String>,
}

impl AuthParams {
    /// Reads a query string or form body; `None` when a parameter repeats or is too long.
    fn parse(raw: &[u8]) -> Option<AuthParams> {
        let mut map: HashMap<String, String> = HashMap::new();
        for (k, v) in url::form_urlencoded::parse(raw) {
            if v.len() > MAX_PARAM_LEN || map.insert(k.into_owned(), v.into_owned()).is_some() {
                return None;
            }
        }
        let mut take = |k: &str| map.remove(k).filter(|v| !v.is_empty());
        Some(AuthParams {
            response_type: take("response_type"),
            client_id: take("client_id"),
            redirect_uri: take("redirect_uri"),
            scope: take("scope"),
            state: take("state"),
            nonce: take("nonce"),
            code_challenge: take("code_challenge"),
            code_challenge_method: take("code_challenge_method"),
            prompt: take("prompt"),
            max_age: take("max_age"),
            login_hint: take("login_hint"),
            response_mode: take("response_mode"),
            request: take("request"),
            request_uri: take("request_uri"),
        })
    }

    /// The request as a GET URL of the authorization endpoint (to come back after sign-in).
    fn url(&self, slug: &str) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        let pairs = [
            ("response_type", &self.response_type),
            ("client_id", &self.client_id),
            ("redirect_uri", &self.redirect_uri),
            ("scope", &self.scope),
            ("state", &self.state),
            ("nonce", &self.nonce),
            ("code_challenge", &self.code_challenge),
            ("code_challenge_method", &self.code_challenge_method),
            ("prompt", &self.prompt),
            ("max_age", &self.max_age),
            ("login_hint", &self.login_hint),
            ("response_mode", &self.response_mode),
        ];
        for (k, v) in pairs {
            if let Some(v) = v {
                q.append_pair(k, v);
            }
        }
        format!("/o/{slug}/oidc/authorize?{}", q.finish())
    }
}

#[derive(Template)]
#[template(path = "pages/oidc/error.html")]
struct ErrorPage {
    ctx: Ctx,
    problem: &'static str,
}

#[derive(Template)]
#[template(path = "pages/oidc/no_access.html")]
struct NoAccessPage {
    ctx: Ctx,
    app_name: String,
    org_name: String,
    ask: Option<Contact>,
}

#[derive(Template)]
#[template(path = "pages/oidc/consent.html")]
struct ConsentPage {
    ctx: Ctx,
    slug: String,
    org_name: String,
    app_name: String,
    privacy_url: Option<String>,
    user_name: String,
    user_email: String,
}

fn error_page(ctx: Ctx, problem: &'static str) -> Result<HttpResponse, AppError> {
    render(StatusCode::BAD_REQUEST, &ErrorPage { ctx, problem })
}

/// A redirect to the client with the answer's parameters, `state` as given and `iss` (RFC 9207).
fn answer(redirect_uri: &str, issuer: &str, state: Option<&str>, pairs: &[(&str, &str)]) -> HttpResponse {
    let Ok(mut url) = Url::parse(redirect_uri) else {
        return HttpResponse::BadRequest().finish();
    };
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in pairs {
            q.append_pair(k, v);
        }
        if let Some(s) = state {
            q.append_pair("state", s);
        }
        q.append_pair("iss", issuer);
    }
    HttpResponse::Found().insert_header(("Location", url.as_str())).finish()
}

/// A validated request: the client, the exact redirect URI and what was asked.
struct Checked {
    client: OidcClient,
    app_name: String,
    redirect_uri: String,
    scope: String,
    prompt: Prompt,
    max_age: Option<i64>,
}

/// Checks a request. `Err(Ok(page))` is an error page (unknown client or redirect URI);
/// `Err(Err((code, description)))` an error to send back to the client's redirect URI.
async fn check(
    state: &web::Data<AppState>,
    ctx: &Ctx,
    org: &Organization,
    p: &AuthParams,
) -> Result<Result<Checked, (&'static str, &'static str, String)>, Box<HttpResponse>> {
    let (org_id, client_id) = (org.id.clone(), p.client_id.clone().unwrap_or_default());
    let found = with_conn(state, move |c| {
        let Some(client) = clients::by_client_id(c, &org_id, &client_id)? else { return Ok(None) };
        let app = apps::find(c, &org_id, &client.app_id)?;
        Ok(app.map(|a| (client, a.name)))
    })
    .await;
    let page =
        |problem| Box::new(error_page(ctx.clone(), problem).unwrap_or_else(|_| HttpResponse::BadRequest().finish()));
    let (client, app_name) = match found {
        Ok(Some(found)) => found,
        Ok(None) => return Err(page("oidc.error_client")),
        Err(e) => return Err(Box::new(actix_web::ResponseError::error_response(&e))),
    };
    let redirect_uri = p.redirect_uri.clone().unwrap_or_default();
    if !uri_is_registered(&client.redirect_uris, &redirect_uri) {
        return Err(page("oidc.error_redirect"));
    }
    let fail = |code, description| Ok(Err((code, description, redirect_uri.clone())));
    if p.request.is_some() {
        return fail("request_not_supported", "request objects are not supported");
    }
    if p.request_uri.is_some() {
        return fail("request_uri_not_supported", "request_uri is not supported");
    }
    if p.response_type.as_deref() != Some("code") {
        return fail("unsupported_response_type", "only response_type=code is supported");
    }
    if p.response_mode.as_deref().is_some_and(|m| m != "query") {
        return fail("invalid_request", "only response_mode=query is supported");
    }
    let scope = normalize_scope(p.scope.as_deref().unwrap_or(""));
    if !scope.contains(&"openid") {
        return fail("invalid_scope", "the openid scope is required");
    }
    match (&p.code_challenge, p.code_challenge_method.as_deref()) {
        (None, _) if client.public_client => return fail("invalid_request", "PKCE (S256) is required"),
        (None, Some(_)) => return fail("invalid_request", "code_challenge_method without code_challenge"),
        (None, None) => {}
        (Some(c), Some("S256")) if is_pkce_value(c) => {}
        (Some(_), Some("S256")) => return fail("invalid_request", "malformed code_challenge"),
        (Some(_), _) => return fail("invalid_request", "only code_challenge_method=S256 is supported"),
    }
    if p.state.as_ref().is_some_and(|s| s.len() > MAX_STATE_LEN)
        || p.nonce.as_ref().is_some_and(|s| s.len() > MAX_STATE_LEN)
    {
        return fail("invalid_request", "state or nonce too long");
    }
    let Some(prompt) = Prompt::parse(p.prompt.as_deref()) else {
        return fail("invalid_request", "unsupported prompt value");
    };
    let max_age = match p.max_age.as_deref().map(str::parse::<i64>) {
        None => None,
        Some(Ok(n)) if n >= 0 => Some(n),
        Some(_) => return fail("invalid_request", "max_age must be a non-negative integer"),
    };
    Ok(Ok(Checked { client, app_name, redirect_uri: redirect_uri.clone(), scope: scope.join(" "), prompt, max_age }))
}

/// The sign-in page, coming back to this request afterwards.
fn to_signin(slug: &str, p: &AuthParams) -> HttpResponse {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("next", &p.url(slug));
    if let Some(hint) = p.login_hint.as_deref().filter(|h| h.len() <= 254) {
        q.append_pair("login_hint", hint);
    }
    see_other(&format!("/signin?{}", q.finish()))
}

/// The authorization endpoint (GET, and POST as OpenID Connect Core §3.1.2.1 requires).
#[route("/o/{org}/oidc/authorize", method = "GET", method = "POST")]
async fn authorize(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    ctx: Ctx,
    slug: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let org = org_of(&state, &slug).await?;
    let raw = super::params_of(&req, &body);
    let Some(params) = AuthParams::parse(&raw) else {
        return error_page(ctx, "oidc.error_request");
    };
    run(req, state, session, ctx, org, params).await
}

async fn run(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    ctx: Ctx,
    org: Organization,
    mut params: AuthParams,
) -> Result<HttpResponse, AppError> {
    let issuer = issuer_of(&state, &org.slug);
    let st = params.state.clone();
    let checked = match check(&state, &ctx, &org, &params).await {
        Err(page) => return Ok(*page),
        Ok(Err((code, description, uri))) => {
            return Ok(answer(&uri, &issuer, st.as_deref(), &[("error", code), ("error_description", description)]));
        }
        Ok(Ok(c)) => c,
    };
    let back = |code: &str, description: &str| {
        answer(&checked.redirect_uri, &issuer, st.as_deref(), &[("error", code), ("error_description", description)])
    };
    // Who is signed in, and since when.
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let auth_time = session.get::<i64>(sessions::AUTH_TIME_KEY).ok().flatten();
    let too_old = checked.max_age.is_some_and(|max| auth_time.is_none_or(|t| now - t > max));
    let Some(user) = ctx.user.clone() else {
        if checked.prompt.none {
            return Ok(back("login_required", "the person is not signed in"));
        }
        return Ok(to_signin(&org.slug, &params));
    };
    if checked.prompt.login || too_old {
        if checked.prompt.none {
            return Ok(back("login_required", "a new sign-in is required"));
        }
        // Sign in again, then come back without prompt=login (max_age is met after it).
        sign_out(&session);
        params.prompt = None;
        return Ok(to_signin(&org.slug, &params));
    }
    let auth_time = auth_time.unwrap_or(now);
    let (o, app_id, uid) = (org.clone(), checked.client.app_id.clone(), user.id.clone());
    let decision = with_conn(&state, move |c| Ok(access::decide(c, &o, &app_id, &uid)?)).await?;
    match decision {
        Decision::Allowed { membership, .. } => {
            let a = grants::Authorized {
                org_id: org.id.clone(),
                app_id: checked.client.app_id.clone(),
                membership_id: membership.id,
                user_id: user.id.clone(),
                redirect_uri: checked.redirect_uri.clone(),
                code_challenge: params.code_challenge.clone(),
                nonce: params.nonce.clone(),
                scope: checked.scope.clone(),
                auth_time: time::OffsetDateTime::from_unix_timestamp(auth_time)
                    .map(|t| time::PrimitiveDateTime::new(t.date(), t.time()))
                    .unwrap_or_else(|_| crate::db::now()),
                amr: session.get::<Vec<String>>(sessions::AMR_KEY).ok().flatten().map(|a| a.join(" ")),
            };
            let code = with_conn(&state, move |c| Ok(grants::issue_code(c, &a)?)).await?;
            Ok(answer(&checked.redirect_uri, &issuer, st.as_deref(), &[("code", &code)]))
        }
        Decision::NeedsConsent { user: account, .. } => {
            if checked.prompt.none {
                return Ok(back("consent_required", "the invitation must be accepted first"));
            }
            let pending = serde_json::to_string(&params).map_err(anyhow::Error::from)?;
            session.insert(PENDING_KEY, pending).map_err(|e| AppError::Internal(anyhow::anyhow!("session: {e}")))?;
            crate::web::ok(&ConsentPage {
                ctx,
                slug: org.slug.clone(),
                org_name: org.name.clone(),
                app_name: checked.app_name,
                privacy_url: org.privacy_url.clone(),
                user_name: account.display_name,
                user_email: account.email,
            })
        }
        Decision::Denied { ask } => {
            let mut act = actor(&req, Some(&user));
            act.user_id = Some(user.id.clone());
            let (org_id, uid) = (org.id.clone(), user.id.clone());
            let detail = serde_json::json!({ "app_id": checked.client.app_id, "at": "authorize" }).to_string();
            with_conn(&state, move |c| {
                Ok(audit::record(c, &act, Some(&org_id), action::OIDC_ACCESS_DENIED, Some(&uid), Some(&detail))?)
            })
            .await?;
            if checked.prompt.none {
                return Ok(back("access_denied", "the person may not use this app"));
            }
            render(
                StatusCode::FORBIDDEN,
                &NoAccessPage { ctx, app_name: checked.app_name, org_name: org.name.clone(), ask },
            )
        }
    }
}

#[derive(Deserialize)]
struct ConsentForm {
    #[serde(default)]
    decision: String,
}

/// The consent of a pending guest who arrived through an app: accepting completes the
/// redemption (the same single-use acceptance as the emailed link), then the authorization
/// request goes on; cancelling sends `access_denied` to the app.
#[post("/o/{org}/oidc/consent")]
async fn consent(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    ctx: Ctx,
    slug: web::Path<String>,
    form: web::Form<ConsentForm>,
) -> Result<HttpResponse, AppError> {
    let org = org_of(&state, &slug).await?;
    let pending: Option<AuthParams> =
        session.get::<String>(PENDING_KEY).ok().flatten().and_then(|s| serde_json::from_str(&s).ok());
    let _ = session.remove(PENDING_KEY);
    let (Some(params), Some(user)) = (pending, ctx.user.clone()) else {
        return error_page(ctx, "oidc.error_request");
    };
    let checked = match check(&state, &ctx, &org, &params).await {
        Err(page) => return Ok(*page),
        Ok(Err(_)) => return error_page(ctx, "oidc.error_request"),
        Ok(Ok(c)) => c,
    };
    let issuer = issuer_of(&state, &org.slug);
    if form.decision != "accept" {
        let pairs = [("error", "access_denied"), ("error_description", "the person declined")];
        return Ok(answer(&checked.redirect_uri, &issuer, params.state.as_deref(), &pairs));
    }
    let act = actor(&req, Some(&user));
    let (o, app_id, uid) = (org.clone(), checked.client.app_id.clone(), user.id.clone());
    let accepted = with_conn(&state, move |c| {
        let Decision::NeedsConsent { invitation, user } = access::decide(c, &o, &app_id, &uid)? else {
            return Ok(Ok(()));
        };
        let account = accounts::find_by_id(c, &user.id)?.ok_or(AppError::NotFound)?;
        Ok(redeem::accept_hashed(c, &invitation.token_hash, &account, &act).map(|_| ()))
    })
    .await?;
    match accepted {
        Ok(()) | Err(ServiceError::WrongState) => {
            // A new session id at the moment rights are granted, as after the emailed link.
            session.renew();
            Ok(see_other(&params.url(&org.slug)))
        }
        Err(ServiceError::Forbidden) => error_page(ctx, "oidc.error_refused"),
        Err(e) => Err(e.into()),
    }
}
