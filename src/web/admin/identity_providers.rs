//! Identity providers, `/o/{org}/admin/identity-providers`: the org's providers, adding one (its
//! issuer discovered at save time), removing one; the callback URL to register at providers.

use actix_web::{HttpResponse, get, post, web};
use askama::Template;
use serde::Deserialize;

use crate::db::models::Organization;
use crate::error::AppError;
use crate::services::ServiceError;
use crate::services::idp::providers::{self, Kind, ProviderInput};
use crate::state::AppState;
use crate::web::extract::{OrgAdmin, OrgContext};
use crate::web::{Ctx, Errors, invalid, ok, see_other, with_conn};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(list).service(add).service(remove);
}

/// One line of the list.
struct Row {
    id: String,
    name: String,
    kind_key: &'static str,
    issuer: String,
    client_id: String,
    domains: String,
    trust_email: bool,
}

/// A choice of the preset menu.
struct KindOption {
    value: &'static str,
    label_key: &'static str,
}

#[derive(Template)]
#[template(path = "pages/admin/identity_providers.html")]
struct ProvidersPage {
    ctx: Ctx,
    org: Organization,
    section: &'static str,
    rows: Vec<Row>,
    kinds: Vec<KindOption>,
    callback_url: String,
    form: ProviderInput,
    errors: Errors,
    notice: Option<&'static str>,
}

#[derive(Deserialize)]
struct NoticeQuery {
    done: Option<String>,
}

async fn page(
    state: &web::Data<AppState>,
    ctx: Ctx,
    org: Organization,
    form: ProviderInput,
    errors: Errors,
    notice: Option<&'static str>,
) -> Result<ProvidersPage, AppError> {
    let org_id = org.id.clone();
    let found = with_conn(state, move |c| Ok(providers::list(c, &org_id)?)).await?;
    let rows = found
        .into_iter()
        .map(|s| Row {
            kind_key: Kind::parse(&s.provider.kind).label_key(),
            id: s.provider.id,
            name: s.provider.name,
            issuer: s.provider.issuer,
            client_id: s.provider.client_id,
            domains: s.domains.join(", "),
            trust_email: s.provider.trust_email,
        })
        .collect();
    Ok(ProvidersPage {
        ctx,
        org,
        section: "identity-providers",
        rows,
        kinds: Kind::ALL.iter().map(|k| KindOption { value: k.as_str(), label_key: k.label_key() }).collect(),
        callback_url: state.idp.callback_url.clone(),
        form,
        errors,
        notice,
    })
}

/// The list, the callback URL and the form to add one.
#[get("/o/{org}/admin/identity-providers")]
async fn list(
    state: web::Data<AppState>,
    ctx: Ctx,
    caller: OrgAdmin,
    q: web::Query<NoticeQuery>,
) -> Result<HttpResponse, AppError> {
    let OrgContext { org, .. } = caller.0;
    let notice = match q.done.as_deref() {
        Some("added") => Some("idp.notice_added"),
        Some("removed") => Some("idp.notice_removed"),
        _ => None,
    };
    let form = ProviderInput { kind: Kind::Generic.as_str().into(), ..Default::default() };
    ok(&page(&state, ctx, org, form, Errors::default(), notice).await?)
}

/// Adds a provider once its issuer answered discovery; otherwise the form comes back with the
/// reason and what was typed (but never the secret).
#[post("/o/{org}/admin/identity-providers")]
async fn add(
    state: web::Data<AppState>,
    ctx: Ctx,
    caller: OrgAdmin,
    form: web::Form<ProviderInput>,
) -> Result<HttpResponse, AppError> {
    let OrgContext { org, actor: act, .. } = caller.0;
    let mut form = form.into_inner();
    match providers::add(&state.pool, &state.idp, &org, &form, &act).await {
        Ok(_) => Ok(see_other(&format!("/o/{}/admin/identity-providers?done=added", org.slug))),
        Err(ServiceError::Invalid(errors)) => {
            form.client_secret.clear();
            // What was typed is shown again, cut to what any field accepts.
            for field in [&mut form.name, &mut form.issuer, &mut form.client_id, &mut form.extra_scopes] {
                *field = crate::domain::clip(field, 2048).to_owned();
            }
            form.domains = crate::domain::clip(&form.domains, 4096).to_owned();
            invalid(&page(&state, ctx, org, form, Errors(errors), None).await?)
        }
        Err(e) => Err(e.into()),
    }
}

/// Removes a provider.
#[post("/o/{org}/admin/identity-providers/{id}/remove")]
async fn remove(
    state: web::Data<AppState>,
    caller: OrgAdmin,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let (_, id) = path.into_inner();
    let OrgContext { org, actor: act, .. } = caller.0;
    let org_id = org.id.clone();
    with_conn(&state, move |c| Ok(providers::remove(c, &org_id, &id, &act)?)).await?;
    Ok(see_other(&format!("/o/{}/admin/identity-providers?done=removed", org.slug)))
}
