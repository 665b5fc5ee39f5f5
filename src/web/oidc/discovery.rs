//! Discovery and JWKS: served from memory (the database is read only on the first request
//! for an organization, and for the keys once a minute).

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, get, route, web};

use super::{issuer_of, org_of, with_cors};
use crate::error::AppError;
use crate::services::oidc::{discovery_document, keys::KeySet};
use crate::state::AppState;
use crate::web::with_conn;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(discovery).service(jwks).service(preflight);
}

fn public_json(body: Arc<str>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .body(body.to_string())
}

/// The discovery document of an organization's issuer.
#[get("/o/{org}/.well-known/openid-configuration")]
async fn discovery(
    req: HttpRequest,
    state: web::Data<AppState>,
    slug: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let doc = match state.oidc.discovery(&slug) {
        Some(doc) => doc,
        None => {
            let org = org_of(&state, &slug).await?;
            let doc: Arc<str> = discovery_document(&issuer_of(&state, &org.slug)).to_string().into();
            state.oidc.put_discovery(&org.slug, doc.clone());
            doc
        }
    };
    Ok(with_cors(&req, public_json(doc)))
}

/// The public keys that sign ID tokens (the current one and those still in use).
#[get("/o/{org}/oidc/jwks")]
async fn jwks(req: HttpRequest, state: web::Data<AppState>, slug: web::Path<String>) -> Result<HttpResponse, AppError> {
    if state.oidc.discovery(&slug).is_none() {
        let org = org_of(&state, &slug).await?;
        let doc: Arc<str> = discovery_document(&issuer_of(&state, &org.slug)).to_string().into();
        state.oidc.put_discovery(&org.slug, doc);
    }
    let set = match state.oidc.keys.fresh() {
        Some(set) => set,
        None => {
            let loaded = with_conn(&state, |c| Ok(KeySet::load(c)?)).await?;
            state.oidc.keys.put(loaded)
        }
    };
    Ok(with_cors(&req, public_json(set.jwks.clone())))
}

/// CORS preflight of the endpoints browsers may call.
#[route(
    "/o/{org}/{rest:(\\.well-known/openid-configuration|oidc/jwks|oidc/token|oidc/userinfo|oidc/revoke)}",
    method = "OPTIONS"
)]
async fn preflight(req: HttpRequest) -> HttpResponse {
    with_cors(&req, HttpResponse::NoContent().finish())
}
