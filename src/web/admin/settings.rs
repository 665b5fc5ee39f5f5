//! Organization settings.

use actix_web::{HttpResponse, get, post, web};
use askama::Template;
use serde::Deserialize;

use crate::db::models::Organization;
use crate::error::AppError;
use crate::services::ServiceError;
use crate::services::orgs::{self, SettingsInput};
use crate::state::AppState;
use crate::web::extract::{OrgAdmin, OrgContext};
use crate::web::{Ctx, Errors, invalid, ok, see_other, with_conn};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(settings_page).service(save_settings);
}

#[derive(Deserialize, Default, Clone)]
struct SettingsForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    privacy_url: String,
    #[serde(default)]
    default_language: String,
    #[serde(default)]
    invite_lifetime_days: String,
    #[serde(default)]
    redirect_allowlist: String,
    #[serde(default)]
    invite_policy: String,
    #[serde(default)]
    domain_mode: String,
    #[serde(default)]
    domain_list: String,
    confirm_domain_switch: Option<String>,
    #[serde(default)]
    invites_per_hour: String,
    #[serde(default)]
    guest_access_days: String,
    /// The checkbox "Guests may sign in with a code sent by email" (absent when unticked).
    email_codes: Option<String>,
    /// Who must have a second factor: `nobody`, `admins`, `everyone`.
    #[serde(default)]
    mfa_policy: String,
}

#[derive(Template)]
#[template(path = "pages/admin/settings.html")]
struct SettingsPage {
    ctx: Ctx,
    policies: &'static [crate::domain::InvitePolicy],
    org: Organization,
    section: &'static str,
    form: SettingsForm,
    errors: Errors,
    saved: bool,
}

#[derive(Deserialize)]
struct SavedQuery {
    saved: Option<String>,
}

#[get("/o/{org}/admin/settings")]
async fn settings_page(ctx: Ctx, caller: OrgAdmin, q: web::Query<SavedQuery>) -> Result<HttpResponse, AppError> {
    let OrgContext { org, .. } = caller.0;
    let form = SettingsForm {
        name: org.name.clone(),
        privacy_url: org.privacy_url.clone().unwrap_or_default(),
        default_language: org.default_language.clone(),
        invite_lifetime_days: org.invite_lifetime_days.to_string(),
        redirect_allowlist: org.redirect_allowlist.clone(),
        invite_policy: org.invite_policy.to_string(),
        domain_mode: org.domain_mode.to_string(),
        domain_list: org.domain_list.clone(),
        confirm_domain_switch: None,
        invites_per_hour: org.invites_per_hour.to_string(),
        guest_access_days: org.guest_access_days.map(|d| d.to_string()).unwrap_or_default(),
        email_codes: org.email_codes.then(|| "on".to_owned()),
        mfa_policy: org.mfa_policy.to_string(),
    };
    ok(&SettingsPage {
        policies: crate::domain::InvitePolicy::ALL,
        ctx,
        org,
        section: "settings",
        form,
        errors: Errors::default(),
        saved: q.saved.is_some(),
    })
}

#[post("/o/{org}/admin/settings")]
async fn save_settings(
    state: web::Data<AppState>,
    ctx: Ctx,
    caller: OrgAdmin,
    form: web::Form<SettingsForm>,
) -> Result<HttpResponse, AppError> {
    let OrgContext { org, actor: act, .. } = caller.0;
    let form = form.into_inner();
    let input = SettingsInput {
        name: form.name.clone(),
        privacy_url: form.privacy_url.clone(),
        default_language: form.default_language.clone(),
        invite_lifetime_days: form.invite_lifetime_days.clone(),
        redirect_allowlist: form.redirect_allowlist.clone(),
        invite_policy: form.invite_policy.clone(),
        domain_mode: form.domain_mode.clone(),
        domain_list: form.domain_list.clone(),
        confirm_domain_switch: form.confirm_domain_switch.is_some(),
        invites_per_hour: form.invites_per_hour.clone(),
        guest_access_days: form.guest_access_days.clone(),
        email_codes: form.email_codes.as_deref() == Some("on"),
        mfa_policy: form.mfa_policy.clone(),
    };
    let o = org.clone();
    let result = with_conn(&state, move |c| Ok(orgs::update_settings(c, &o, &input, &act))).await?;
    match result {
        Ok(updated) => Ok(see_other(&format!("/o/{}/admin/settings?saved=1", updated.slug))),
        Err(ServiceError::Invalid(errors)) => invalid(&SettingsPage {
            policies: crate::domain::InvitePolicy::ALL,
            ctx,
            org,
            section: "settings",
            form,
            errors: Errors(errors),
            saved: false,
        }),
        Err(e) => Err(e.into()),
    }
}
