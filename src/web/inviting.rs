//! What the admin invite form and the self-service invite page share: the form as typed, the
//! groups and apps offered, and the submission (policy, rate limit, validation, creation).

use actix_web::web;

use crate::auth::SessionUser;
use crate::db::models::{Membership, Organization};
use crate::error::AppError;
use crate::i18n::Lang;
use crate::services::invitations::{self, Created, InviteInput, MailContext, Targets};
use crate::services::{Actor, FieldErrors, ServiceError, accounts, policy};
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
    with_conn(&state.pool, move |c| Ok(invitations::targets_for(c, &o, &m)?)).await
}

/// Takes one invitation (or resend) from `user_id`'s hourly allowance in the org;
/// `Some(seconds to wait)` when the org's invitations-per-hour limit is reached. Taken
/// atomically in the database ([`policy::take_invitation_allowance`]), so concurrent
/// submissions never get past the limit.
pub async fn over_limit(
    state: &web::Data<AppState>,
    org: &Organization,
    user_id: &str,
) -> Result<Option<u64>, AppError> {
    if !state.settings.throttle_enabled {
        return Ok(None);
    }
    let (o, uid) = (org.clone(), user_id.to_owned());
    with_conn(&state.pool, move |c| Ok(policy::take_invitation_allowance(c, &o, &uid)?)).await
}

/// Why a submission did not create an invitation.
pub enum Refusal {
    /// Field errors: show the form again with them.
    Invalid(FieldErrors),
    /// Over the org's invitations-per-hour limit: 429 with this Retry-After.
    RateLimited(u64),
}

/// Checks the policy, the rate, the fields and the targets, then creates the invitation.
/// `force_guest_with_email` is the self-service page: guests only, always by email.
pub async fn submit(
    state: &web::Data<AppState>,
    org: &Organization,
    inviter: &Membership,
    user: &SessionUser,
    form: &InviteForm,
    actor: Actor,
    self_service: bool,
) -> Result<Result<Created, Refusal>, AppError> {
    if !policy::may_invite(org, inviter) {
        return Err(AppError::Forbidden);
    }
    let input = InviteInput {
        email: form.email.clone(),
        display_name: form.display_name.clone(),
        message: form.message.clone(),
        redirect_url: if self_service { String::new() } else { form.redirect_url.clone() },
        user_type: if self_service { "Guest".into() } else { form.user_type.clone() },
        send_email: self_service || form.send_email.is_some(),
        language: Lang::parse(&form.language),
        group_ids: form.groups.clone(),
        app_id: Some(form.app.trim().to_owned()).filter(|a| !a.is_empty()),
    };
    // The app origins matter only for a landing URL, the targets only when some were chosen.
    let app_origins = if input.redirect_url.trim().is_empty() {
        Vec::new()
    } else {
        let org_id = org.id.clone();
        with_conn(&state.pool, move |c| Ok(crate::services::apps::origins(c, &org_id)?)).await?
    };
    let checked = invitations::validate_with_origins(&input, org, &state.settings.public_url, &app_origins);
    let mut errors = checked.as_ref().err().cloned().unwrap_or_default();
    if !input.group_ids.is_empty() || input.app_id.is_some() {
        let targets = load_targets(state, org, inviter).await?;
        if let Err(e) = invitations::check_targets(&targets, &input.group_ids, input.app_id.as_deref()) {
            errors.0.extend(e.0);
        }
    }
    let valid = match checked {
        Ok(v) if errors.is_empty() => v,
        _ => return Ok(Err(Refusal::Invalid(errors))),
    };
    if let Some(wait) = over_limit(state, org, &user.id).await? {
        return Ok(Err(Refusal::RateLimited(wait)));
    }
    let (uid, public_url, o) = (user.id.clone(), state.settings.public_url.clone(), org.clone());
    let result = with_conn(&state.pool, move |c| {
        let inviter = accounts::find_by_id(c, &uid)?.ok_or(AppError::NotFound)?;
        Ok(invitations::create(c, &o, &valid, &MailContext { public_url: &public_url, inviter: &inviter }, &actor))
    })
    .await?;
    match result {
        Ok(created) => {
            if created.redeem_url.is_none() && !created.existing {
                state.wake_mail();
            }
            Ok(Ok(created))
        }
        Err(ServiceError::Invalid(errors)) => Ok(Err(Refusal::Invalid(errors))),
        Err(e) => Err(e.into()),
    }
}
