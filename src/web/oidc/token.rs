//! The token endpoint (authorization code and refresh token grants), userinfo and revocation.
//! Every answer is JSON with `Cache-Control: no-store`; errors follow RFC 6749 §5.2.

use std::collections::HashMap;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, route, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::{issuer_of, json_no_store, oauth_error, org_of, with_cors};
use crate::db::models::Organization;
use crate::error::AppError;
use crate::services::oidc::clients::{self, AuthFailure, Credentials};
use crate::services::oidc::grants::{self, GrantError, Issued};
use crate::state::AppState;
use crate::web::{actor, with_conn};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(token_endpoint).service(userinfo_endpoint).service(revocation_endpoint);
}

/// Longest value of any parameter, in bytes.
const MAX_VALUE: usize = 2000;

/// A form body as a map; `Err` for a repeated parameter or an oversized value (RFC 6749 §3.2).
fn parse_form(body: &[u8]) -> Result<HashMap<String, String>, Box<HttpResponse>> {
    let mut map = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(body) {
        if v.len() > MAX_VALUE || k.len() > 100 {
            return Err(Box::new(oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "parameter too long")));
        }
        if map.insert(k.into_owned(), v.into_owned()).is_some() {
            return Err(Box::new(oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "repeated parameter")));
        }
    }
    Ok(map)
}
/// The form of a client's request and the client's credentials (token and revocation
/// endpoints), or the RFC 6749 error answer.
fn client_request(
    req: &HttpRequest,
    body: &[u8],
) -> Result<(HashMap<String, String>, Credentials, bool), Box<HttpResponse>> {
    let form = parse_form(body)?;
    let (creds, basic) = credentials(req, &form)?;
    Ok((form, creds, basic))
}

/// The client's credentials: HTTP Basic (`client_secret_basic`, RFC 6749 §2.3.1, both parts
/// form-urlencoded), else form fields (`client_secret_post`), else `client_id` alone (public).
/// The second value is true when Basic was used (the 401 then carries `WWW-Authenticate`).
fn credentials(req: &HttpRequest, form: &HashMap<String, String>) -> Result<(Credentials, bool), Box<HttpResponse>> {
    let bad = || Box::new(oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "malformed client authentication"));
    if let Some(value) = req.headers().get(header::AUTHORIZATION) {
        let value = value.to_str().map_err(|_| bad())?;
        let Some(b64) = value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic ")) else {
            return Err(bad());
        };
        if form.contains_key("client_secret") {
            return Err(Box::new(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "more than one client authentication",
            )));
        }
        let decoded = STANDARD.decode(b64.trim()).map_err(|_| bad())?;
        let text = String::from_utf8(decoded).map_err(|_| bad())?;
        let (id, secret) = text.split_once(':').ok_or_else(bad)?;
        let unescape = |s: &str| -> String {
            url::form_urlencoded::parse(format!("v={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let client_id = unescape(id);
        if form.get("client_id").is_some_and(|f| *f != client_id) {
            return Err(bad());
        }
        return Ok((Credentials { client_id, secret: Some(unescape(secret)) }, true));
    }
    let client_id = form
        .get("client_id")
        .cloned()
        .ok_or_else(|| oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "client authentication is required"))?;
    Ok((Credentials { client_id, secret: form.get("client_secret").cloned() }, false))
}

fn client_failure(failure: AuthFailure, basic: bool) -> HttpResponse {
    match failure {
        AuthFailure::Invalid => {
            let mut res = oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "client authentication failed");
            if basic {
                res.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Basic"));
            }
            res
        }
        AuthFailure::Throttled(wait) => {
            let mut res = oauth_error(
                StatusCode::TOO_MANY_REQUESTS,
                "invalid_client",
                "too many failed client authentications; retry later",
            );
            res.headers_mut().insert(header::RETRY_AFTER, wait.into());
            res
        }
    }
}

/// What the blocking part of the token endpoint hands back.
enum Outcome {
    Tokens(Box<Issued>, String),
    Client(AuthFailure),
    Grant(GrantError),
}

fn token_json(issued: &Issued, id_token: &str) -> serde_json::Value {
    let mut body = serde_json::json!({
        "access_token": issued.access_token,
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
        "scope": issued.scope,
        "id_token": id_token,
    });
    if let Some(r) = &issued.refresh_token {
        body["refresh_token"] = serde_json::Value::String(r.clone());
    }
    body
}

/// The token endpoint.
#[route("/o/{org}/oidc/token", method = "POST")]
async fn token_endpoint(
    req: HttpRequest,
    state: web::Data<AppState>,
    slug: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let (form, creds, basic) = match client_request(&req, &body) {
        Ok(parts) => parts,
        Err(res) => return Ok(with_cors(&req, *res)),
    };
    let Ok(org) = org_of(&state, &slug).await else {
        return Ok(oauth_error(StatusCode::NOT_FOUND, "invalid_request", "unknown issuer"));
    };
    let grant_type = form.get("grant_type").cloned().unwrap_or_default();
    if grant_type != "authorization_code" && grant_type != "refresh_token" {
        let res = if grant_type.is_empty() {
            oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "grant_type is required")
        } else {
            oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "use authorization_code or refresh_token")
        };
        return Ok(with_cors(&req, res));
    }
    let missing = |name: &str| form.get(name).is_none_or(|v| v.is_empty());
    if grant_type == "authorization_code" && (missing("code") || missing("redirect_uri")) {
        let res = oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "code and redirect_uri are required");
        return Ok(with_cors(&req, res));
    }
    if grant_type == "refresh_token" && missing("refresh_token") {
        return Ok(with_cors(
            &req,
            oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "refresh_token is required"),
        ));
    }
    let issuer = issuer_of(&state, &org.slug);
    let act = actor(&req, None);
    let st = state.clone();
    let outcome = with_conn(&state, move |c| {
        let client = match clients::authenticate(c, &org.id, &creds) {
            Ok(client) => client,
            Err(f) => return Ok(Outcome::Client(f)),
        };
        let result = if grant_type == "authorization_code" {
            let get = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
            let verifier = form.get("code_verifier").map(String::as_str);
            grants::exchange_code(c, &client, &issuer, get("code"), get("redirect_uri"), verifier, &act)
        } else {
            let refresh = form.get("refresh_token").map(String::as_str).unwrap_or_default();
            grants::refresh(c, &client, &issuer, refresh, form.get("scope").map(String::as_str), &act)
        };
        match result {
            // Signing happens after the transaction committed (never inside a write lock).
            Ok(issued) => {
                let keys = st.oidc.keys.get(c)?;
                let id_token = keys.sign(&issued.id_claims)?;
                Ok(Outcome::Tokens(Box::new(issued), id_token))
            }
            Err(e) => Ok(Outcome::Grant(e)),
        }
    })
    .await?;
    let res = match outcome {
        Outcome::Tokens(issued, id_token) => json_no_store(StatusCode::OK, &token_json(&issued, &id_token)),
        Outcome::Client(f) => client_failure(f, basic),
        Outcome::Grant(e) if e.code == "server_error" => {
            oauth_error(StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable", e.description)
        }
        Outcome::Grant(e) => oauth_error(StatusCode::BAD_REQUEST, e.code, e.description),
    };
    Ok(with_cors(&req, res))
}

fn bearer_error(code: &'static str) -> HttpResponse {
    let mut res = oauth_error(StatusCode::UNAUTHORIZED, code, "a valid access token is required");
    let value = format!("Bearer error=\"{code}\"");
    if let Ok(v) = header::HeaderValue::from_str(&value) {
        res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    res
}

/// Userinfo: the person's claims for a valid access token (`Authorization: Bearer`).
#[route("/o/{org}/oidc/userinfo", method = "GET", method = "POST")]
async fn userinfo_endpoint(
    req: HttpRequest,
    state: web::Data<AppState>,
    slug: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(|t| t.trim().to_owned());
    let Some(token) = token.filter(|t| !t.is_empty() && t.len() <= MAX_VALUE) else {
        return Ok(with_cors(&req, bearer_error("invalid_request")));
    };
    let Ok(org): Result<Organization, _> = org_of(&state, &slug).await else {
        return Ok(with_cors(&req, bearer_error("invalid_token")));
    };
    let issuer = issuer_of(&state, &org.slug);
    let claims = with_conn(&state, move |c| Ok(grants::userinfo(c, &org, &issuer, &token)?)).await?;
    let res = match claims {
        Some(claims) => json_no_store(StatusCode::OK, &serde_json::to_value(&claims).map_err(anyhow::Error::from)?),
        None => bearer_error("invalid_token"),
    };
    Ok(with_cors(&req, res))
}

/// Revocation (RFC 7009): 200 whether or not the token was known.
#[route("/o/{org}/oidc/revoke", method = "POST")]
async fn revocation_endpoint(
    req: HttpRequest,
    state: web::Data<AppState>,
    slug: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let (form, creds, basic) = match client_request(&req, &body) {
        Ok(parts) => parts,
        Err(res) => return Ok(with_cors(&req, *res)),
    };
    let Some(token) = form.get("token").cloned().filter(|t| !t.is_empty()) else {
        return Ok(with_cors(&req, oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "token is required")));
    };
    let Ok(org) = org_of(&state, &slug).await else {
        return Ok(oauth_error(StatusCode::NOT_FOUND, "invalid_request", "unknown issuer"));
    };
    let failure = with_conn(&state, move |c| match clients::authenticate(c, &org.id, &creds) {
        Ok(client) => {
            grants::revoke(c, &client, &token)?;
            Ok(None)
        }
        Err(f) => Ok(Some(f)),
    })
    .await?;
    let res = match failure {
        None => json_no_store(StatusCode::OK, &serde_json::json!({})),
        Some(f) => client_failure(f, basic),
    };
    Ok(with_cors(&req, res))
}
