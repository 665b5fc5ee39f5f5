//! The admin invite form.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, get, post, web};
use askama::Template;

use crate::db::models::Organization;
use crate::error::AppError;
use crate::services::invitations::{Channel, Targets};
use crate::services::{FieldErrors, policy};
use crate::state::AppState;
use crate::web::extract::{OrgAdmin, OrgContext};
use crate::web::inviting::{InviteForm, Refusal, load_targets, submit};
use crate::web::{Ctx, Errors, ok, render, see_other};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(invite_page).service(invite);
}

#[derive(Template)]
#[template(path = "pages/admin/invite.html")]
struct InvitePage {
    ctx: Ctx,
    org: Organization,
    section: &'static str,
    form: InviteForm,
    errors: Errors,
    submitted: bool,
    notice: Option<&'static str>,
    targets: Targets,
}

#[derive(Template)]
#[template(path = "pages/admin/invite_link.html")]
struct LinkPage {
    ctx: Ctx,
    org: Organization,
    section: &'static str,
    email: String,
    link: String,
    membership_id: String,
}

#[get("/o/{org}/admin/invite")]
async fn invite_page(state: web::Data<AppState>, ctx: Ctx, caller: OrgAdmin) -> Result<HttpResponse, AppError> {
    let OrgContext { org, membership, .. } = caller.0;
    if !policy::may_invite(&org, &membership) {
        return Err(AppError::Forbidden);
    }
    let targets = load_targets(&state, &org, &membership).await?;
    ok(&InvitePage {
        ctx,
        org,
        section: "invite",
        form: InviteForm::default(),
        errors: Errors::default(),
        submitted: false,
        notice: None,
        targets,
    })
}

#[post("/o/{org}/admin/invite")]
async fn invite(
    state: web::Data<AppState>,
    ctx: Ctx,
    caller: OrgAdmin,
    pairs: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let OrgContext { org, membership, actor: act, .. } = caller.0;
    let form = InviteForm::from_pairs(pairs.into_inner())?;
    let outcome = submit(&state, &org, &membership, &form, act, Channel::Console).await?;
    let page = |status: StatusCode, errors: FieldErrors, notice: Option<&'static str>, targets: Targets| {
        render(
            status,
            &InvitePage {
                ctx: ctx.clone(),
                org: org.clone(),
                section: "invite",
                form: form.clone(),
                errors: Errors(errors),
                submitted: true,
                notice,
                targets,
            },
        )
    };
    match outcome {
        Ok(created) if created.existing => {
            Ok(see_other(&format!("/o/{}/admin/users/{}?done=existing", org.slug, created.invitation.membership_id)))
        }
        Ok(created) => match created.redeem_url {
            Some(link) => ok(&LinkPage {
                ctx: ctx.clone(),
                section: "invite",
                email: created.invitation.email.clone(),
                link,
                membership_id: created.invitation.membership_id.clone(),
                org: org.clone(),
            }),
            None => {
                Ok(see_other(&format!("/o/{}/admin/users/{}?done=sent", org.slug, created.invitation.membership_id)))
            }
        },
        Err(Refusal::Invalid(errors)) => {
            let targets = load_targets(&state, &org, &membership).await?;
            page(StatusCode::UNPROCESSABLE_ENTITY, errors, None, targets)
        }
        Err(Refusal::RateLimited(wait)) => {
            let targets = load_targets(&state, &org, &membership).await?;
            let mut res =
                page(StatusCode::TOO_MANY_REQUESTS, FieldErrors::default(), Some("policy.rate_limited"), targets)?;
            res.headers_mut().insert(actix_web::http::header::RETRY_AFTER, wait.into());
            Ok(res)
        }
    }
}
