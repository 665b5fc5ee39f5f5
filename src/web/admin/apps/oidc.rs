//! "Sign-in with OpenID Connect" on an app's page: turn it on (a confidential client's secret
//! is shown once, on the page itself, never in a URL), edit the settings, rotate the secret,
//! turn it off.

use actix_web::{HttpResponse, post, web};
use diesel::prelude::*;
use serde::Deserialize;

use super::{detail_page, load_app};
use crate::db::DbConnection;
use crate::db::models::OidcClient;
use crate::error::AppError;
use crate::services::ServiceError;
use crate::services::oidc::clients::{self, ClientInput};
use crate::state::AppState;
use crate::web::extract::{OrgAdmin, OrgContext};
use crate::web::{Ctx, Errors, invalid, ok, see_other, with_conn};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(save).service(rotate).service(disable);
}

/// The slug of an organization (for its issuer URL).
pub fn slug_of(conn: &mut DbConnection, org_id: &str) -> QueryResult<String> {
    use crate::db::schema::organizations;
    organizations::table.find(org_id).select(organizations::slug).first(conn)
}

/// What the section shows.
#[derive(Debug, Clone, Default)]
pub struct OidcView {
    pub enabled: bool,
    pub client_id: String,
    pub public_client: bool,
    pub discovery_url: String,
    pub form: ClientInput,
    pub errors: Errors,
    /// A new secret, shown this once.
    pub secret: Option<String>,
}

impl OidcView {
    /// The section of an app with (or without) a client.
    pub fn of(issuer: &str, client: Option<&OidcClient>) -> OidcView {
        OidcView {
            enabled: client.is_some(),
            client_id: client.map(|c| c.client_id.clone()).unwrap_or_default(),
            public_client: client.is_some_and(|c| c.public_client),
            discovery_url: format!("{issuer}/.well-known/openid-configuration"),
            form: client.map(ClientInput::of).unwrap_or_default(),
            errors: Errors::default(),
            secret: None,
        }
    }
}

#[derive(Deserialize)]
struct ClientForm {
    #[serde(default)]
    redirect_uris: String,
    #[serde(default)]
    post_logout_redirect_uris: String,
    #[serde(default)]
    initiate_login_uri: String,
    #[serde(default)]
    public_client: Option<String>,
    #[serde(default)]
    access_token_ttl: String,
    #[serde(default)]
    id_token_ttl: String,
    #[serde(default)]
    refresh_token_ttl: String,
}

/// Turns sign-in on, or saves its settings.
#[post("/o/{org}/admin/apps/{id}/oidc")]
async fn save(
    state: web::Data<AppState>,
    ctx: Ctx,
    caller: OrgAdmin,
    path: web::Path<(String, String)>,
    form: web::Form<ClientForm>,
) -> Result<HttpResponse, AppError> {
    let (_, id) = path.into_inner();
    let OrgContext { org, actor: act, .. } = caller.0;
    let cap = |s: &str| s.chars().take(50_000).collect::<String>();
    let input = ClientInput {
        redirect_uris: cap(&form.redirect_uris),
        post_logout_redirect_uris: cap(&form.post_logout_redirect_uris),
        initiate_login_uri: cap(&form.initiate_login_uri),
        public_client: form.public_client.is_some(),
        access_token_ttl: cap(&form.access_token_ttl),
        id_token_ttl: cap(&form.id_token_ttl),
        refresh_token_ttl: cap(&form.refresh_token_ttl),
    };
    let data = load_app(&state, &org.id, &id).await?;
    let enabled = data.client.is_some();
    let valid = match clients::validate(&input) {
        Ok(v) => v,
        Err(errors) => {
            let mut page = detail_page(ctx, org, data, None);
            page.oidc.form = input;
            page.oidc.errors = Errors(errors);
            return invalid(&page);
        }
    };
    let (act, org_id, app_id) = (act.clone(), org.id.clone(), id.clone());
    if enabled {
        with_conn(&state, move |c| Ok(clients::update(c, &org_id, &app_id, &valid, &act)?)).await?;
        return Ok(see_other(&format!("/o/{}/admin/apps/{id}?done=oidc_saved", org.slug)));
    }
    let result = with_conn(&state, move |c| Ok(clients::enable(c, &org_id, &app_id, &valid, &act))).await?;
    match result {
        Ok((_, secret)) => {
            let data = load_app(&state, &org.id, &id).await?;
            let mut page = detail_page(ctx, org, data, None);
            page.oidc.secret = secret.map(|s| s.expose().to_owned());
            page.notice = Some("oidc.notice_enabled");
            ok(&page)
        }
        Err(ServiceError::WrongState) => Ok(see_other(&format!("/o/{}/admin/apps/{id}", org.slug))),
        Err(e) => Err(e.into()),
    }
}

/// A new client secret, shown once on the page.
#[post("/o/{org}/admin/apps/{id}/oidc/rotate")]
async fn rotate(
    state: web::Data<AppState>,
    ctx: Ctx,
    caller: OrgAdmin,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let (_, id) = path.into_inner();
    let OrgContext { org, actor: act, .. } = caller.0;
    let (act, org_id, app_id) = (act.clone(), org.id.clone(), id.clone());
    let secret = with_conn(&state, move |c| Ok(clients::rotate_secret(c, &org_id, &app_id, &act)?)).await?;
    let data = load_app(&state, &org.id, &id).await?;
    let mut page = detail_page(ctx, org, data, None);
    page.oidc.secret = Some(secret.expose().to_owned());
    page.notice = Some("oidc.notice_rotated");
    ok(&page)
}

/// Turns sign-in with OpenID Connect off.
#[post("/o/{org}/admin/apps/{id}/oidc/disable")]
async fn disable(
    state: web::Data<AppState>,
    caller: OrgAdmin,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let (_, id) = path.into_inner();
    let OrgContext { org, actor: act, .. } = caller.0;
    let (act, org_id, app_id) = (act.clone(), org.id.clone(), id.clone());
    with_conn(&state, move |c| Ok(clients::disable(c, &org_id, &app_id, &act)?)).await?;
    Ok(see_other(&format!("/o/{}/admin/apps/{id}?done=oidc_disabled", org.slug)))
}
