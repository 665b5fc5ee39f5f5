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
    let mut res = next.call(req).await?;
    let status = res.status().as_u16();
    tracing::info!(target: "vestibule::access", request_id = %id, %method, %path, status, ms = started.elapsed().as_millis() as u64);
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(header::HeaderName::from_static("x-request-id"), v);
    }
    Ok(res)
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
    let h = res.headers_mut();
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
    Ok(res)
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

/// Turns bare error responses (ours and actix's) into a friendly page, or Graph-shaped JSON
/// under `/api/`, with the request id; logs internal causes.
pub async fn render_errors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let res = next.call(req).await?.map_into_boxed_body();
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
    let request_id = res.request().extensions().get::<RequestId>().map(|r| r.0.clone()).unwrap_or_default();
    if status.is_server_error() {
        let cause = res.response().error().map(|e| format!("{e:?}")).unwrap_or_default();
        tracing::error!(request_id = %request_id, status = status.as_u16(), cause = %cause, "request failed");
    }
    let retry_after = res.headers().get(header::RETRY_AFTER).cloned();
    let (req, _old) = res.into_parts();
    let lang = lang_of(&req);
    let tr = lang.tr();
    let (title_key, body_key) = kind.message_keys();
    let mut new_res = if req.path().starts_with("/api/") {
        HttpResponse::build(status).json(serde_json::json!({
            "error": { "code": kind.api_code(), "message": tr.t(body_key), "innerError": { "request-id": request_id } }
        }))
    } else {
        let page = ErrorPage {
            ctx: Ctx::anonymous(&req, lang),
            title: tr.t(title_key),
            body: tr.t(body_key),
            request_id,
            status: status.as_u16(),
        };
        let html = page.render().unwrap_or_else(|_| "Error".to_owned());
        HttpResponse::build(status).content_type("text/html; charset=utf-8").body(html)
    };
    if let Some(v) = retry_after {
        new_res.headers_mut().insert(header::RETRY_AFTER, v);
    }
    Ok(ServiceResponse::new(req, new_res))
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
