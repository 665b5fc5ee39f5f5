//! What the admin invite form and the self-service invite page share: the form as typed, the
//! groups and apps offered, and the submission (handed to `services::invitations::invite`).

use actix_web::web;

use crate::db::models::{Membership, Organization};
use crate::error::AppError;
use crate::i18n::Lang;
use crate::services::invitations::{self, Channel, Created, InviteInput, InviteOptions, Inviter, Targets};
use crate::services::{Actor, FieldErrors, ServiceError};
use crate::state::AppState;
use crate::web::with_conn;

/// The invite form as typed (kept on errors). Read from the raw pairs because group
/// checkboxes repeat the `groups` key.
#[derive(Debug, Default, Clone)]
pub struct InviteForm {
    pub email: String,
    pub display_name: String,
    pub message: String,
    pub redirect_url: String,
    pub user_type: String,
    pub language: String,
    pub send_email: Option<String>,
    pub groups: Vec<String>,
    pub app: String,
}

impl InviteForm {
    /// Builds the form from urlencoded pairs; a field other than `groups` given twice (parameter
    /// pollution) is refused.
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Result<InviteForm, AppError> {
        let mut f = InviteForm::default();
        let mut seen = std::collections::HashSet::new();
        for (k, v) in pairs {
            if k != "groups" && !seen.insert(k.clone()) {
                return Err(AppError::BadRequest(format!("field {k} given twice")));
            }
            match k.as_str() {
                "email" => f.email = v,
                "display_name" => f.display_name = v,
                "message" => f.message = v,
                "redirect_url" => f.redirect_url = v,
                "user_type" => f.user_type = v,
                "language" => f.language = v,
                "send_email" => f.send_email = Some(v),
                "groups" if !f.groups.contains(&v) && f.groups.len() < 100 => f.groups.push(v),
                "app" => f.app = v,
                _ => {}
            }
        }
        Ok(f)
    }

    /// True when group `id` was ticked.
    pub fn has_group(&self, id: &str) -> bool {
        self.groups.iter().any(|g| g == id)
    }
}

/// Groups and apps `inviter` may use.
pub async fn load_targets(
    state: &web::Data<AppState>,
    org: &Organization,
    inviter: &Membership,
) -> Result<Targets, AppError> {
    let (o, m) = (org.clone(), inviter.clone());
    with_conn(state, move |c| Ok(invitations::targets_for(c, &o, &m)?)).await
}

/// Why a submission did not create an invitation.
pub enum Refusal {
    /// Field errors: show the form again with them.
    Invalid(FieldErrors),
    /// Over the org's invitations-per-hour limit: 429 with this Retry-After.
    RateLimited(u64),
}

/// Hands the form to the one invitation use case (console or self-service).
pub async fn submit(
    state: &web::Data<AppState>,
    org: &Organization,
    inviter: &Membership,
    form: &InviteForm,
    actor: Actor,
    channel: Channel,
) -> Result<Result<Created, Refusal>, AppError> {
    let input = InviteInput {
        email: form.email.clone(),
        display_name: form.display_name.clone(),
        message: form.message.clone(),
        redirect_url: form.redirect_url.clone(),
        user_type: form.user_type.clone(),
        send_email: form.send_email.is_some(),
        language: Lang::parse(&form.language),
        group_ids: form.groups.clone(),
        app_id: Some(form.app.trim().to_owned()).filter(|a| !a.is_empty()),
    };
    let opts = InviteOptions { rate_limit: state.settings.throttle_enabled, ..InviteOptions::default() };
    let (public_url, o, m) = (state.settings.public_url.clone(), org.clone(), inviter.clone());
    let result = with_conn(state, move |c| {
        let inviter = Inviter { org: &o, membership: &m, actor: &actor };
        Ok(invitations::invite(c, &public_url, inviter, channel, input, &opts))
    })
    .await?;
    match result {
        Ok(created) => Ok(Ok(created)),
        Err(ServiceError::Invalid(errors)) => Ok(Err(Refusal::Invalid(errors))),
        Err(ServiceError::RateLimited(wait)) => Ok(Err(Refusal::RateLimited(wait))),
        Err(e) => Err(e.into()),
    }
}
