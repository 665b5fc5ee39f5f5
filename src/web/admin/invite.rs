//! The admin invite form.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use askama::Template;
use serde::Deserialize;

use super::require_admin;
use crate::auth::SignedIn;
use crate::db::models::Organization;
use crate::error::AppError;
use crate::i18n::Lang;
use crate::services::invitations::{self, InviteInput, MailContext};
use crate::services::{FieldErrors, ServiceError, accounts};
use crate::startup::AppState;
use crate::web::{Ctx, Errors, actor, invalid, ok, render, see_other, with_conn};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(invite_page).service(invite);
}

/// The invite form as typed (kept on errors).
#[derive(Deserialize, Default, Clone)]
pub struct InviteForm {
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub redirect_url: String,
    #[serde(default)]
    pub user_type: String,
    #[serde(default)]
    pub language: String,
    pub send_email: Option<String>,
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
    notice: Option<String>,
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
async fn invite_page(
    state: web::Data<AppState>,
    ctx: Ctx,
    user: SignedIn,
    slug: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let (org, _) = require_admin(&state, &slug, &user.0.id).await?;
    ok(&InvitePage {
        ctx,
        org,
        section: "invite",
        form: InviteForm::default(),
        errors: Errors::default(),
        submitted: false,
        notice: None,
    })
}

#[post("/o/{org}/admin/invite")]
async fn invite(
    req: HttpRequest,
    state: web::Data<AppState>,
    ctx: Ctx,
    user: SignedIn,
    slug: web::Path<String>,
    form: web::Form<InviteForm>,
) -> Result<HttpResponse, AppError> {
    let (org, _) = require_admin(&state, &slug, &user.0.id).await?;
    let form = form.into_inner();
    let show_errors = |ctx: Ctx, org: Organization, errors: FieldErrors, form: InviteForm| {
        invalid(&InvitePage {
            ctx,
            org,
            section: "invite",
            form,
            errors: Errors(errors),
            submitted: true,
            notice: None,
        })
    };
    let input = InviteInput {
        email: form.email.clone(),
        display_name: form.display_name.clone(),
        message: form.message.clone(),
        redirect_url: form.redirect_url.clone(),
        user_type: form.user_type.clone(),
        send_email: form.send_email.is_some(),
        language: Lang::parse(&form.language),
    };
    let valid = match invitations::validate(&input, &org, &state.settings.public_url) {
        Ok(v) => v,
        Err(errors) => return show_errors(ctx, org, errors, form),
    };
    let throttle_key = format!("inviter:{}", user.0.id);
    if state.settings.throttle_enabled
        && let Some(wait) = state.throttles.invitations.check(&throttle_key)
    {
        let mut page = InvitePage {
            ctx: ctx.clone(),
            org,
            section: "invite",
            form,
            errors: Errors::default(),
            submitted: true,
            notice: None,
        };
        page.notice = Some(ctx.tr.t("invite.too_many").to_owned());
        let mut res = render(actix_web::http::StatusCode::TOO_MANY_REQUESTS, &page)?;
        res.headers_mut().insert(actix_web::http::header::RETRY_AFTER, wait.into());
        return Ok(res);
    }
    let act = actor(&req, Some(&user.0));
    let (uid, public_url, o) = (user.0.id.clone(), state.settings.public_url.clone(), org.clone());
    let result = with_conn(&state.pool, move |c| {
        let inviter = accounts::find_by_id(c, &uid)?.ok_or(AppError::NotFound)?;
        Ok(invitations::create(c, &o, &valid, &MailContext { public_url: &public_url, inviter: &inviter }, &act))
    })
    .await?;
    match result {
        Ok(created) => {
            if created.existing {
                return Ok(see_other(&format!(
                    "/o/{}/admin/users/{}?done=existing",
                    org.slug, created.invitation.membership_id
                )));
            }
            state.throttles.invitations.record(&throttle_key);
            match created.redeem_url {
                Some(link) => ok(&LinkPage {
                    ctx,
                    section: "invite",
                    email: created.invitation.email.clone(),
                    link,
                    membership_id: created.invitation.membership_id.clone(),
                    org,
                }),
                None => {
                    state.wake_mail();
                    Ok(see_other(&format!(
                        "/o/{}/admin/users/{}?done=sent",
                        org.slug, created.invitation.membership_id
                    )))
                }
            }
        }
        Err(ServiceError::Invalid(errors)) => show_errors(ctx, org, errors, form),
        Err(e) => Err(e.into()),
    }
}
