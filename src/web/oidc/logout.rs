//! RP-initiated logout 1.0: ends the Vestibule session and returns to a *registered*
//! post-logout redirect URI only (else to the sign-in page).
//!
//! With an `id_token_hint` we issued (signature checked against our published keys, expiry
//! not required) the session ends at once; without one, the person confirms first, so that
//! a foreign page cannot sign people out with a bare link.

use actix_session::Session;
use actix_web::{HttpRequest, HttpResponse, post, route, web};
use askama::Template;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use super::{issuer_of, org_of};
use crate::auth::guard::sign_out;
use crate::db::models::Organization;
use crate::domain::oidc::{MAX_PARAM_LEN, subject, uri_is_registered};
use crate::error::AppError;
use crate::services::oidc::clients;
use crate::services::oidc::keys::KeySet;
use crate::state::AppState;
use crate::web::{Ctx, ok, see_other, with_conn};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(end_session).service(confirm);
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct LogoutParams {
    id_token_hint: Option<String>,
    client_id: Option<String>,
    post_logout_redirect_uri: Option<String>,
    state: Option<String>,
}

impl LogoutParams {
    fn parse(raw: &[u8]) -> LogoutParams {
        let mut p = LogoutParams::default();
        for (k, v) in url::form_urlencoded::parse(raw) {
            if v.is_empty() || v.len() > MAX_PARAM_LEN * 4 {
                continue;
            }
            let v = Some(v.into_owned());
            match k.as_ref() {
                "id_token_hint" => p.id_token_hint = v,
                "client_id" => p.client_id = v,
                "post_logout_redirect_uri" => p.post_logout_redirect_uri = v,
                "state" => p.state = v,
                _ => {}
            }
        }
        p
    }
}

#[derive(Deserialize)]
struct HintClaims {
    sub: String,
    aud: String,
}

/// The `(sub, aud)` of an ID token we signed with a published key (expired ones too).
fn verify_hint(keys: &KeySet, issuer: &str, token: &str) -> Option<(String, String)> {
    let header = jsonwebtoken::decode_header(token).ok()?;
    let set: JwkSet = serde_json::from_str(&keys.jwks).ok()?;
    let jwk = set.find(header.kid.as_deref()?)?;
    let key = DecodingKey::from_jwk(jwk).ok()?;
    let mut v = Validation::new(Algorithm::RS256);
    v.validate_exp = false;
    v.validate_aud = false;
    v.set_issuer(&[issuer]);
    v.required_spec_claims.clear();
    let data = jsonwebtoken::decode::<HintClaims>(token, &key, &v).ok()?;
    Some((data.claims.sub, data.claims.aud))
}

/// Where to go after logout: the given URI when it is registered for the client, else `None`.
async fn target(
    state: &web::Data<AppState>,
    org: &Organization,
    client_id: Option<String>,
    p: &LogoutParams,
) -> Result<Option<String>, AppError> {
    let (Some(client_id), Some(uri)) = (client_id, p.post_logout_redirect_uri.clone()) else { return Ok(None) };
    let org_id = org.id.clone();
    let client = with_conn(state, move |c| Ok(clients::by_client_id(c, &org_id, &client_id)?)).await?;
    let Some(client) = client.filter(|c| uri_is_registered(&c.post_logout_redirect_uris, &uri)) else {
        return Ok(None);
    };
    let Ok(mut url) = url::Url::parse(&uri) else { return Ok(None) };
    if let Some(s) = &p.state {
        url.query_pairs_mut().append_pair("state", s);
    }
    let _ = client;
    Ok(Some(url.to_string()))
}

#[derive(Template)]
#[template(path = "pages/oidc/logout.html")]
struct ConfirmPage {
    ctx: Ctx,
    slug: String,
    org_name: String,
    params: String,
}

/// The end-session endpoint.
#[route("/o/{org}/oidc/end_session", method = "GET", method = "POST")]
async fn end_session(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    ctx: Ctx,
    slug: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let org = org_of(&state, &slug).await?;
    let raw = super::params_of(&req, &body);
    let p = LogoutParams::parse(&raw);
    let issuer = issuer_of(&state, &org.slug);
    let hint = match p.id_token_hint.clone() {
        Some(token) => {
            let st = state.clone();
            with_conn(&state, move |c| {
                let keys = st.oidc.keys.get(c)?;
                Ok(verify_hint(&keys, &issuer, &token).or_else(|| {
                    // Maybe signed by a key this instance has not seen yet: read the keys again.
                    st.oidc.keys.invalidate();
                    st.oidc.keys.get(c).ok().and_then(|k| verify_hint(&k, &issuer, &token))
                }))
            })
            .await?
        }
        None => None,
    };
    let client_id = hint.as_ref().map(|(_, aud)| aud.clone()).or_else(|| p.client_id.clone());
    let same_person = match (&hint, &ctx.user) {
        (Some((sub, _)), Some(u)) => *sub == subject(&org.id, &u.id),
        (Some(_), None) => true,
        _ => false,
    };
    if ctx.user.is_some() && !same_person {
        let params = serde_json::to_string(&p).map_err(anyhow::Error::from)?;
        return ok(&ConfirmPage { ctx, slug: org.slug.clone(), org_name: org.name.clone(), params });
    }
    sign_out(&session);
    let to = target(&state, &org, client_id, &p).await?;
    Ok(see_other(to.as_deref().unwrap_or("/signin")))
}

#[derive(Deserialize)]
struct ConfirmForm {
    #[serde(default)]
    params: String,
}

/// The person confirmed signing out.
#[post("/o/{org}/oidc/end_session/confirm")]
async fn confirm(
    state: web::Data<AppState>,
    session: Session,
    slug: web::Path<String>,
    form: web::Form<ConfirmForm>,
) -> Result<HttpResponse, AppError> {
    let org = org_of(&state, &slug).await?;
    let p: LogoutParams = serde_json::from_str(&form.params).unwrap_or_default();
    sign_out(&session);
    let to = target(&state, &org, p.client_id.clone(), &p).await?;
    Ok(see_other(to.as_deref().unwrap_or("/signin")))
}
