//! The OpenID Connect provider's endpoints, per organization (design §9):
//!
//! | path | |
//! |---|---|
//! | `/o/{org}/.well-known/openid-configuration` | discovery (from memory) |
//! | `/o/{org}/oidc/jwks` | public signing keys (from memory) |
//! | `/o/{org}/oidc/authorize` | authorization endpoint, GET and POST |
//! | `/o/{org}/oidc/consent` | consent of a pending guest arriving through an app |
//! | `/o/{org}/oidc/token` | token endpoint (code, refresh) |
//! | `/o/{org}/oidc/userinfo` | userinfo, GET and POST |
//! | `/o/{org}/oidc/revoke` | token revocation (RFC 7009) |
//! | `/o/{org}/oidc/end_session` | RP-initiated logout |

mod authorize;
mod discovery;
mod logout;
mod token;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};

use crate::db::models::Organization;
use crate::error::AppError;
use crate::services::orgs;
use crate::state::AppState;
use crate::web::with_conn;

pub fn routes(cfg: &mut web::ServiceConfig) {
    discovery::routes(cfg);
    authorize::routes(cfg);
    token::routes(cfg);
    logout::routes(cfg);
}

/// True for the endpoints that programs (not our forms) POST to: no CSRF token there. The
/// token, revocation and userinfo endpoints authenticate the client or the bearer; the
/// authorization and end-session endpoints accept POST as OpenID Connect requires, and change
/// nothing a GET could not.
pub fn is_csrf_exempt(path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/o/") else { return false };
    let Some((_, tail)) = rest.split_once('/') else { return false };
    matches!(tail, "oidc/token" | "oidc/revoke" | "oidc/userinfo" | "oidc/authorize" | "oidc/end_session")
}

/// The organization of a provider URL; 404 when there is none.
pub async fn org_of(state: &web::Data<AppState>, slug: &str) -> Result<Organization, AppError> {
    if slug.is_empty() || slug.len() > 100 {
        return Err(AppError::NotFound);
    }
    let slug = slug.to_owned();
    with_conn(state, move |c| orgs::find_by_slug(c, &slug)?.ok_or(AppError::NotFound)).await
}

/// The issuer URL of an organization.
pub fn issuer_of(state: &AppState, slug: &str) -> String {
    crate::services::oidc::issuer(&state.settings.base_url(), slug)
}

/// CORS for the endpoints browsers call from an app's own origin (discovery, JWKS, token and
/// userinfo for public clients): any origin, no credentials (no cookies are involved).
/// The parameters of a request that may come as a GET query or a POST form (authorization
/// and end-session endpoints).
pub fn params_of(req: &HttpRequest, body: &[u8]) -> Vec<u8> {
    if req.method() == actix_web::http::Method::POST { body.to_vec() } else { req.query_string().as_bytes().to_vec() }
}

pub fn with_cors(req: &HttpRequest, mut res: HttpResponse) -> HttpResponse {
    if req.headers().contains_key(header::ORIGIN) {
        let h = res.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, OPTIONS"));
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Authorization, Content-Type"));
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    }
    res
}

/// A JSON answer that must never be cached (RFC 6749 §5.1).
pub fn json_no_store(status: actix_web::http::StatusCode, body: &serde_json::Value) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .content_type("application/json")
        .body(body.to_string())
}

/// An RFC 6749 §5.2 error answer.
pub fn oauth_error(status: actix_web::http::StatusCode, code: &str, description: &str) -> HttpResponse {
    json_no_store(status, &serde_json::json!({ "error": code, "error_description": description }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_machine_endpoints_skip_csrf() {
        assert!(is_csrf_exempt("/o/acme/oidc/token"));
        assert!(is_csrf_exempt("/o/acme/oidc/authorize"));
        assert!(!is_csrf_exempt("/o/acme/oidc/consent"));
        assert!(!is_csrf_exempt("/o/acme/admin/apps"));
        assert!(!is_csrf_exempt("/signin"));
    }
}
