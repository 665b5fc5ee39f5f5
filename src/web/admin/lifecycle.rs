//! The lifecycle actions of the guest page (role, conversion, block, unblock, restore, extend,
//! reset redemption, sponsor, end date): one route, one action enum, one service call. Each
//! redirects back to the guest page with a notice, or shows it again with the field error.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, post, web};
use serde::Deserialize;

use super::users::{DetailView, LifecycleForm, show_detail};
use crate::error::AppError;
use crate::services::ServiceError;
use crate::services::lifecycle::{self, Action};
use crate::state::AppState;
use crate::web::extract::{OrgAdmin, OrgContext};
use crate::web::{Ctx, see_other, with_conn};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(act);
}

/// Every field any action's form may carry; each action reads its own.
#[derive(Debug, Default, Deserialize)]
struct ActionForm {
    #[serde(default)]
    role: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    sponsor: String,
    #[serde(default)]
    access_ends_at: String,
}

/// The action named by the last path segment, the notice shown after it, and what to keep
/// in the forms when it is refused.
fn action_of(segment: &str, form: ActionForm) -> Option<(Action, &'static str, LifecycleForm)> {
    let keep = LifecycleForm::default();
    Some(match segment {
        "role" => (Action::SetRole(form.role), "role", keep),
        "convert" => (Action::Convert, "converted", keep),
        "block" => (Action::Block, "blocked", keep),
        "unblock" => (Action::Unblock, "unblocked", keep),
        "restore" => (Action::Restore, "restored", keep),
        "extend" => (Action::Extend, "extended", keep),
        "reset" => {
            let keep = LifecycleForm { reset_email: form.email.clone(), ..keep };
            (Action::Reset(form.email), "reset", keep)
        }
        "sponsor" => {
            let keep = LifecycleForm { sponsor: form.sponsor.clone(), ..keep };
            (Action::Sponsor(form.sponsor), "sponsor", keep)
        }
        "end-date" => {
            let text = form.access_ends_at.trim().to_owned();
            (Action::EndDate(text.clone()), "end_date", LifecycleForm { end_date: text, ..keep })
        }
        _ => return None,
    })
}

#[post("/o/{org}/admin/users/{id}/{action:(role|convert|block|unblock|restore|extend|reset|sponsor|end-date)}")]
async fn act(
    state: web::Data<AppState>,
    ctx: Ctx,
    caller: OrgAdmin,
    path: web::Path<(String, String, String)>,
    form: web::Form<ActionForm>,
) -> Result<HttpResponse, AppError> {
    let (_, id, segment) = path.into_inner();
    let (action, done, keep) = action_of(&segment, form.into_inner()).ok_or(AppError::NotFound)?;
    let OrgContext { org, user, actor, .. } = caller.0;
    let (o, mid, public_url) = (org.clone(), id.clone(), state.settings.public_url.clone());
    match with_conn(&state, move |c| Ok(lifecycle::perform(c, &o, &mid, action, &public_url, &actor))).await? {
        Ok(()) => Ok(see_other(&format!("/o/{}/admin/users/{id}?done={done}", org.slug))),
        Err(ServiceError::Invalid(errors)) => {
            let view = DetailView { errors, form: keep, status: StatusCode::UNPROCESSABLE_ENTITY, notice: None };
            show_detail(&state, ctx, org, &user.id, id, view).await
        }
        Err(ServiceError::WrongState) | Err(ServiceError::Forbidden) => {
            Err(AppError::BadRequest("not possible in the current state".into()))
        }
        Err(e) => Err(e.into()),
    }
}
