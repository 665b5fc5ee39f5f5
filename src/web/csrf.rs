//! CSRF protection for forms: a signed double-submit token plus an Origin check.
//!
//! Every visitor gets a random `vestibule_csrf` cookie (HttpOnly, SameSite=Lax); forms carry
//! `csrf_token = HMAC-SHA256(server key, cookie)`. A POST is accepted only when the token
//! matches the cookie and the request does not come from a foreign origin. The token does not
//! need a server-side session, so anonymous pages (sign-in, redemption) cost no database write.
//! Forms with a file (`multipart/form-data`) carry the token in their action URL
//! (`?csrf_token=…`) instead, so that the middleware never buffers an upload.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::Next;
use actix_web::web::{Bytes, BytesMut};
use actix_web::{HttpMessage, HttpResponse};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::StreamExt;
use hmac::{KeyInit, Mac};

use crate::domain::token::{PlainToken, constant_time_eq};
use crate::error::AppError;
use crate::state::AppState;

/// Form bodies larger than this are refused before parsing (no form of ours comes close).
const MAX_FORM_BYTES: usize = 256 * 1024;

/// Longest value of one form field, in bytes, before any handler sees it. The fields that hold
/// lists (domains, origins, redirect URIs) may be longer, up to [`MAX_LIST_FIELD_BYTES`]. Each
/// field has a tighter rule of its own where it is validated (an email address, a name, a
/// password); this cap only makes sure nothing huge is ever parsed, logged, audited or counted.
pub const MAX_FIELD_BYTES: usize = 8 * 1024;
/// Longest value of a list field (one item a line).
pub const MAX_LIST_FIELD_BYTES: usize = 64 * 1024;
/// The list fields.
const LIST_FIELDS: &[&str] = &["domain_list", "redirect_allowlist", "redirect_uris", "post_logout_redirect_uris"];
/// Most fields one form may carry (a repeated field counts each time).
pub const MAX_FIELDS: usize = 500;

/// The first reason a form body is refused before parsing, and its answer: a field too long or
/// too many fields (413), a NUL character (400).
pub fn refused_form(body: &[u8]) -> Option<(AppError, String)> {
    let mut count = 0;
    for (name, value) in url::form_urlencoded::parse(body) {
        count += 1;
        if count > MAX_FIELDS {
            return Some((AppError::PayloadTooLarge, format!("more than {MAX_FIELDS} fields")));
        }
        let cap = if LIST_FIELDS.contains(&name.as_ref()) { MAX_LIST_FIELD_BYTES } else { MAX_FIELD_BYTES };
        // The name only (never the value), itself cut short.
        let shown = || name.chars().take(40).collect::<String>();
        if name.len() > 100 || value.len() > cap {
            return Some((AppError::PayloadTooLarge, format!("field '{}' of {} bytes", shown(), value.len())));
        }
        if name.contains('\0') || value.contains('\0') {
            let problem = format!("field '{}' with a NUL character", shown());
            return Some((AppError::BadRequest(problem.clone()), problem));
        }
    }
    None
}

/// The CSRF token of the current request, put in request extensions by the middleware.
#[derive(Debug, Clone)]
pub struct CsrfToken(pub String);

/// Computes the form token for a cookie value.
pub fn token_for(key: &[u8], cookie_value: &str) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(cookie_value.as_bytes());
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// True when the Origin / Sec-Fetch-Site headers show a cross-site request.
fn is_foreign(req: &ServiceRequest, own_origin: &str) -> bool {
    let headers = req.headers();
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        // `Origin: null` comes from pages served with Referrer-Policy: no-referrer; judged by the token alone.
        return origin != "null" && origin != own_origin;
    }
    matches!(headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()), Some("cross-site"))
}

/// True for a `multipart/form-data` body (a form with a file input).
fn is_multipart(req: &ServiceRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.trim_start().to_ascii_lowercase().starts_with("multipart/form-data"))
}

/// The middleware: issues the cookie and checks every unsafe request outside `/api/`.
pub async fn csrf_middleware(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let state = req.app_data::<actix_web::web::Data<AppState>>().cloned();
    let Some(state) = state else {
        return next.call(req).await.map(ServiceResponse::map_into_left_body);
    };
    if req.path().starts_with("/api/")
        || req.path().starts_with("/static/")
        || crate::web::oidc::is_csrf_exempt(req.path())
    {
        return next.call(req).await.map(ServiceResponse::map_into_left_body);
    }
    let cookie_name = state.settings.cookie_name("vestibule_csrf");
    let existing = req.cookie(&cookie_name).map(|c| c.value().to_owned()).filter(|v| v.len() == 43);
    let (cookie_value, fresh) = match existing {
        Some(v) => (v, false),
        None => (PlainToken::generate().expose().to_owned(), true),
    };
    let expected = token_for(&state.csrf_key, &cookie_value);

    if !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        let own_origin = state.settings.public_url.origin().ascii_serialization();
        let mut ok = !fresh && !is_foreign(&req, &own_origin);
        if ok && is_multipart(&req) {
            // File uploads: the body is the handler's to stream (with its own limits); the form
            // carries the token in its action URL instead.
            let sent = url::form_urlencoded::parse(req.query_string().as_bytes())
                .find(|(k, _)| k == "csrf_token")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            ok = constant_time_eq(sent.as_bytes(), expected.as_bytes());
        } else if ok {
            // Read the form body, find csrf_token, and hand the body back to the handler.
            let mut body = BytesMut::new();
            let mut payload = req.take_payload();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk?;
                if body.len() + chunk.len() > MAX_FORM_BYTES {
                    let res = AppError::PayloadTooLarge.into_response(&req);
                    return Ok(req.into_response(res).map_into_right_body());
                }
                body.extend_from_slice(&chunk);
            }
            let body: Bytes = body.freeze();
            if let Some((answer, problem)) = refused_form(&body) {
                tracing::warn!(path = %crate::web::middleware::redact_path(req.path()), %problem, "form refused");
                let res = answer.into_response(&req);
                return Ok(req.into_response(res).map_into_right_body());
            }
            let sent = url::form_urlencoded::parse(&body)
                .find(|(k, _)| k == "csrf_token")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            ok = constant_time_eq(sent.as_bytes(), expected.as_bytes());
            req.set_payload(actix_web::dev::Payload::from(body));
        }
        if !ok {
            tracing::warn!(path = %crate::web::middleware::redact_path(req.path()), "CSRF check failed");
            let res = AppError::Csrf.into_response(&req);
            return Ok(req.into_response(res).map_into_right_body());
        }
    }

    req.extensions_mut().insert(CsrfToken(expected));
    let mut res = next.call(req).await?;
    // A token must not outlive the identity it was issued to: when the handler renewed or
    // purged the session (sign-in, sign-out, redemption), the cookie, and so the token, is new.
    let identity_changed = matches!(
        actix_session::SessionExt::get_session(res.request()).status(),
        actix_session::SessionStatus::Renewed | actix_session::SessionStatus::Purged
    );
    let cookie_value = if identity_changed { PlainToken::generate().expose().to_owned() } else { cookie_value };
    if fresh || identity_changed {
        let cookie = Cookie::build(cookie_name, cookie_value)
            .path("/")
            .http_only(true)
            .secure(state.settings.https())
            .same_site(SameSite::Lax)
            .finish();
        res.response_mut().add_cookie(&cookie).ok();
    }
    Ok(res.map_into_left_body())
}

/// A 403 page for refused forms, used where the middleware cannot reach the renderer.
pub fn forbidden() -> HttpResponse {
    HttpResponse::Forbidden().finish()
}
