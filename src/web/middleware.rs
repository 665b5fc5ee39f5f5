//! Cross-cutting request handling: request ids and the access log, security headers, and the
//! rendering of error pages.

use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpResponse};
use askama::Template;

use crate::error::ErrorKind;
use crate::web::{Ctx, lang_of};

/// The id of the current request, shown on error pages and written to the log and audit.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Paths that carry a secret token: redacted in logs, served with `Referrer-Policy: no-referrer`.
const TOKEN_PATHS: [&str; 4] = ["/redeem/", "/setup", "/password/", "/signin/reset/"];

/// Hides secrets that travel in paths (invitation and one-time tokens) from logs.
pub fn redact_path(path: &str) -> String {
    for prefix in TOKEN_PATHS {
        if path.starts_with(prefix) {
            return format!("{prefix}[redacted]");
        }
    }
    path.to_owned()
}

/// Gives each request an id, logs one line per request, and adds the `x-request-id` header.
pub async fn request_id_and_log(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    req.extensions_mut().insert(RequestId(id.clone()));
    let method = req.method().to_string();
    let path = redact_path(req.path());
    let started = Instant::now();
    let metrics = req.app_data::<actix_web::web::Data<crate::state::AppState>>().map(|s| s.metrics.clone());
    let mut res = match next.call(req).await {
        Ok(res) => res,
        Err(e) => {
            // Already answered below (render_errors); logged here all the same.
            let status = e.as_response_error().status_code().as_u16();
            if let Some(m) = &metrics {
                m.observe_request(&method, None, status, started.elapsed().as_secs_f64());
            }
            tracing::info!(target: "vestibule::access", request_id = %id, %method, %path, status, ms = started.elapsed().as_millis() as u64);
            return Err(e);
        }
    };
    let status = res.status().as_u16();
    if let Some(m) = &metrics {
        m.observe_request(&method, res.request().match_pattern().as_deref(), status, started.elapsed().as_secs_f64());
    }
    tracing::info!(target: "vestibule::access", request_id = %id, %method, %path, status, ms = started.elapsed().as_millis() as u64);
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(header::HeaderName::from_static("x-request-id"), v);
    }
    Ok(res)
}

/// Keeps a NUL character (`%00`) of the URL from reaching a query: never meaningful, and
/// PostgreSQL refuses it in text. In the query string: 400. In the path: 404, as for any page that
/// does not exist, except under the token links (`/redeem/…`, `/password/…`), whose handlers hash
/// the token before any lookup and answer with their own "this link does not work" page. Form and
/// JSON bodies are checked where they are read (`csrf::refused_form`, `api::parse_object`).
pub async fn refuse_nul(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::EitherBody<impl MessageBody>>, actix_web::Error> {
    let has_nul = |raw: &str| raw.contains('\0') || raw.as_bytes().windows(3).any(|w| w == b"%00");
    let path = req.uri().path();
    let token_link = path.starts_with("/redeem/") || path.starts_with("/password/");
    let refusal = if has_nul(req.query_string()) {
        Some(crate::error::AppError::BadRequest("NUL in the query string".into()))
    } else if !token_link && (has_nul(path) || req.path().contains('\0')) {
        Some(crate::error::AppError::NotFound)
    } else {
        None
    };
    if let Some(refusal) = refusal {
        let res = refusal.into_response(&req);
        return Ok(req.into_response(res).map_into_right_body());
    }
    next.call(req).await.map(ServiceResponse::map_into_left_body)
}

const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; base-uri 'none'; frame-ancestors 'none'";

/// Security headers on every response; `no-store` on everything but static files.
pub async fn security_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    // Static files and the OpenID Connect discovery and JWKS documents (public, the same for
    // everyone) keep the caching their handler chose.
    let is_static = req.path().starts_with("/static/")
        || req.path().ends_with("/.well-known/openid-configuration")
        || req.path().ends_with("/oidc/jwks");
    let is_token_page = TOKEN_PATHS.iter().any(|p| req.path().starts_with(p));
    let https = req.app_data::<actix_web::web::Data<crate::state::AppState>>().is_some_and(|s| s.settings.https());
    let mut res = next.call(req).await?;
    set_security_headers(res.headers_mut(), https, is_static, is_token_page);
    Ok(res)
}

/// The headers of [`security_headers`], also set on answers made below it.
fn set_security_headers(h: &mut actix_web::http::header::HeaderMap, https: bool, is_static: bool, is_token_page: bool) {
    if https {
        // Served over https: browsers must never come back over plain http (one year).
        h.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000"));
    }
    // A handler may set a policy of its own (uploaded SVG icons); otherwise the strict default.
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    let referrer = if is_token_page { "no-referrer" } else { "same-origin" };
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static(referrer));
    if !is_static {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

#[derive(Template)]
#[template(path = "errors/error.html")]
struct ErrorPage {
    ctx: Ctx,
    title: &'static str,
    body: &'static str,
    request_id: String,
    status: u16,
}

tokio::task_local! {
    /// Set while a request runs when something below the handlers (the session store) found
    /// the database unreachable; read by [`render_errors`].
    static DB_UNAVAILABLE: std::cell::Cell<bool>;
}

/// Says that the database was found unreachable while answering the current request, where the
/// failure cannot carry an [`crate::error::AppError`] (the session store, whose errors
/// actix-session turns into a bare 500): the answer becomes the 503 page.
pub fn note_db_unavailable() {
    crate::db::note_trouble();
    let _ = DB_UNAVAILABLE.try_with(|flag| flag.set(true));
}

/// Turns bare error responses (ours and actix's) into a friendly page, or Graph-shaped JSON
/// under `/api/`, with the request id; logs internal causes. A failure of the layers below the
/// handlers (the session store, which cannot answer with a response of its own) is answered
/// here too, with the same page: 503 when the database was unreachable, else 500.
pub async fn render_errors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    // What the answer to a failure below needs, taken now: the request goes down the chain.
    let lang = lang_of(req.request());
    let is_api = req.path().starts_with("/api/");
    let https = req.app_data::<actix_web::web::Data<crate::state::AppState>>().is_some_and(|s| s.settings.https());
    let request_id = req.extensions().get::<RequestId>().map(|r| r.0.clone()).unwrap_or_default();
    let (result, db_down) = DB_UNAVAILABLE
        .scope(std::cell::Cell::new(false), async move {
            let result = next.call(req).await;
            (result, DB_UNAVAILABLE.with(|flag| flag.get()))
        })
        .await;
    let res = match result {
        Ok(res) => res.map_into_boxed_body(),
        Err(e) => {
            let (kind, status) = if db_down {
                (ErrorKind::Unavailable, actix_web::http::StatusCode::SERVICE_UNAVAILABLE)
            } else {
                let status = e.as_response_error().status_code();
                (ErrorKind::from_status(status), status)
            };
            tracing::error!(request_id = %request_id, status = status.as_u16(), cause = ?e, "request failed below the handlers");
            let id_header = HeaderValue::from_str(&request_id).ok();
            let mut answer = error_answer(kind, status, lang, is_api, request_id, None);
            if let Some(v) = id_header {
                answer.headers_mut().insert(header::HeaderName::from_static("x-request-id"), v);
            }
            set_security_headers(answer.headers_mut(), https, false, false);
            // Returned as an error that is already its answer: the layers above have no request
            // to build a response with.
            return Err(actix_web::error::InternalError::from_response(e, answer).into());
        }
    };
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return Ok(res);
    }
    let content_type = res.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if content_type.starts_with("text/html") || content_type.starts_with("application/json") {
        return Ok(res);
    }
    let kind =
        res.response().extensions().get::<ErrorKind>().copied().unwrap_or_else(|| ErrorKind::from_status(status));
    if status.is_server_error() {
        let cause = res.response().error().map(|e| format!("{e:?}")).unwrap_or_default();
        tracing::error!(request_id = %request_id, status = status.as_u16(), cause = %cause, "request failed");
    }
    // Headers that say how to retry or how to authenticate survive the friendly body.
    let kept: Vec<_> = [header::RETRY_AFTER, header::WWW_AUTHENTICATE, header::ALLOW]
        .into_iter()
        .filter_map(|name| res.headers().get(&name).cloned().map(|v| (name, v)))
        .collect();
    let (req, _old) = res.into_parts();
    let csrf = req.extensions().get::<crate::web::csrf::CsrfToken>().map(|t| t.0.clone());
    let mut new_res = error_answer(kind, status, lang, is_api, request_id, csrf);
    for (name, v) in kept {
        new_res.headers_mut().insert(name, v);
    }
    Ok(ServiceResponse::new(req, new_res))
}

/// The answer to a failed request: the friendly page in the visitor's language, or the API's
/// JSON; 503 carries `Retry-After`.
fn error_answer(
    kind: ErrorKind,
    status: actix_web::http::StatusCode,
    lang: crate::i18n::Lang,
    is_api: bool,
    request_id: String,
    csrf: Option<String>,
) -> HttpResponse {
    let tr = lang.tr();
    let (title_key, body_key) = kind.message_keys();
    let mut res = if is_api {
        HttpResponse::build(status).json(serde_json::json!({
            "error": { "code": kind.api_code(), "message": tr.t(body_key), "innerError": { "request-id": request_id } }
        }))
    } else {
        let ctx = Ctx { tr, lang, csrf: csrf.unwrap_or_default(), user: None, here: "/".into() };
        let page = ErrorPage { ctx, title: tr.t(title_key), body: tr.t(body_key), request_id, status: status.as_u16() };
        let html = page.render().unwrap_or_else(|_| "Error".to_owned());
        HttpResponse::build(status).content_type("text/html; charset=utf-8").body(html)
    };
    if kind == ErrorKind::Unavailable
        && let Ok(v) = HeaderValue::from_str(&crate::error::RETRY_UNAVAILABLE_SECS.to_string())
    {
        res.headers_mut().insert(header::RETRY_AFTER, v);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_never_reach_the_log() {
        assert_eq!(redact_path("/redeem/abcdefg/consent"), "/redeem/[redacted]");
        assert_eq!(redact_path("/o/acme/admin"), "/o/acme/admin");
        assert_eq!(redact_path("/signin/reset/abcdefg"), "/signin/reset/[redacted]");
    }
}
