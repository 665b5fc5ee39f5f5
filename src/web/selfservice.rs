//! `/o/{org}/invite`: members (and guests, when the policy allows) invite guests themselves and
//! follow the invitations they sent.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, get, post, web};
use askama::Template;
use serde::Deserialize;

use crate::db::models::Organization;
use crate::error::AppError;
use crate::services::invitations::{self, Channel, Inviter, Targets};
use crate::services::{FieldErrors, ServiceError};
use crate::state::AppState;
use crate::web::admin::mail_key;
use crate::web::extract::{OrgContext, OrgInviter};
use crate::web::inviting::{InviteForm, Refusal, load_targets, submit};
use crate::web::{Ctx, Errors, decode_cursor, encode_cursor, render, see_other, with_conn};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(page).service(send).service(resend).service(revoke);
}

struct SentRow {
    id: String,
    email: String,
    name: String,
    status_key: &'static str,
    pending: bool,
    sent_on: String,
    mail_key: &'static str,
}

#[derive(Template)]
#[template(path = "pages/member/invite.html")]
struct InvitePage {
    ctx: Ctx,
    org: Organization,
    form: InviteForm,
    errors: Errors,
    notice: Option<&'static str>,
    problem: Option<&'static str>,
    targets: Targets,
    sent: Vec<SentRow>,
    next_query: Option<String>,
}

#[derive(Deserialize)]
struct PageQuery {
    done: Option<String>,
    after: Option<String>,
}

/// How the page is shown: the form as typed with its errors, a notice or problem, a page of
/// "invitations I sent".
struct View {
    form: InviteForm,
    errors: FieldErrors,
    notice: Option<&'static str>,
    problem: Option<&'static str>,
    after: Option<String>,
    status: StatusCode,
}

impl Default for View {
    fn default() -> Self {
        View {
            form: InviteForm::default(),
            errors: FieldErrors::default(),
            notice: None,
            problem: None,
            after: None,
            status: StatusCode::OK,
        }
    }
}

async fn render_page(
    state: &web::Data<AppState>,
    ctx: Ctx,
    caller: OrgContext,
    view: View,
) -> Result<HttpResponse, AppError> {
    let View { form, errors, notice, problem, after, status } = view;
    let OrgContext { org, membership: m, user, .. } = caller;
    let targets = load_targets(state, &org, &m).await?;
    let (org_id, uid) = (org.id.clone(), user.id.clone());
    let cursor = after.as_deref().and_then(decode_cursor);
    let (list, next) = with_conn(state, move |c| Ok(invitations::sent_by(c, &org_id, &uid, cursor)?)).await?;
    let tr = ctx.tr;
    let sent = list
        .into_iter()
        .map(|s| SentRow {
            status_key: invitations::status_key(&s.invitation),
            pending: s.invitation.status == crate::domain::InvitationStatus::Pending,
            sent_on: tr.datetime(&s.invitation.created_at),
            mail_key: mail_key(s.mail_status),
            email: s.invitation.email,
            name: s.invitation.display_name,
            id: s.invitation.id,
        })
        .collect();
    let next_query = next.map(|(at, id)| format!("after={}", encode_cursor(&at, &id)));
    render(status, &InvitePage { ctx, org, form, errors: Errors(errors), notice, problem, targets, sent, next_query })
}

/// The self-service page.
#[get("/o/{org}/invite")]
async fn page(
    state: web::Data<AppState>,
    ctx: Ctx,
    caller: OrgInviter,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse, AppError> {
    let q = q.into_inner();
    let notice = crate::web::admin::users::notice_key(q.done.as_deref());
    render_page(&state, ctx, caller.0, View { notice, after: q.after, ..View::default() }).await
}

/// Sends a self-service invitation: always a guest, always by email.
#[post("/o/{org}/invite")]
async fn send(
    state: web::Data<AppState>,
    ctx: Ctx,
    caller: OrgInviter,
    pairs: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, AppError> {
    let OrgContext { org, membership: m, actor: act, .. } = caller.0.clone();
    let form = InviteForm::from_pairs(pairs.into_inner())?;
    match submit(&state, &org, &m, &form, act, Channel::SelfService).await? {
        Ok(created) => {
            let done = if created.existing { "existing" } else { "sent" };
            Ok(see_other(&format!("/o/{}/invite?done={done}", org.slug)))
        }
        Err(Refusal::Invalid(errors)) => {
            let view = View { form, errors, status: StatusCode::UNPROCESSABLE_ENTITY, ..View::default() };
            render_page(&state, ctx, caller.0, view).await
        }
        Err(Refusal::RateLimited(wait)) => {
            let problem = Some("policy.rate_limited");
            let view = View { form, problem, status: StatusCode::TOO_MANY_REQUESTS, ..View::default() };
            let mut res = render_page(&state, ctx, caller.0, view).await?;
            res.headers_mut().insert(actix_web::http::header::RETRY_AFTER, wait.into());
            Ok(res)
        }
    }
}

/// One of my own invitations in this org; 404 for anyone else's.
async fn my_invitation(
    state: &web::Data<AppState>,
    org: &Organization,
    user_id: &str,
    id: &str,
) -> Result<(), AppError> {
    let (o, i, uid) = (org.id.clone(), id.to_owned(), user_id.to_owned());
    let inv = with_conn(state, move |c| Ok(invitations::find_in_org(c, &o, &i)?)).await?.ok_or(AppError::NotFound)?;
    if inv.invited_by.as_deref() != Some(uid.as_str()) {
        return Err(AppError::NotFound);
    }
    Ok(())
}

/// Resend one of my pending invitations.
#[post("/o/{org}/invite/{id}/resend")]
async fn resend(
    state: web::Data<AppState>,
    caller: OrgInviter,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let (_, id) = path.into_inner();
    let OrgContext { org, membership: m, user, actor: act } = caller.0;
    my_invitation(&state, &org, &user.id, &id).await?;
    let (public_url, limit) = (state.settings.public_url.clone(), state.settings.throttle_enabled);
    let (o, m) = (org.clone(), m.clone());
    let result = with_conn(&state, move |c| {
        let inviter = Inviter { org: &o, membership: &m, actor: &act };
        Ok(invitations::resend_as(c, &public_url, inviter, &id, limit))
    })
    .await?;
    match result {
        Ok(_) => Ok(see_other(&format!("/o/{}/invite?done=resent", org.slug))),
        Err(ServiceError::WrongState) => Err(AppError::BadRequest("invitation is not pending".into())),
        Err(e) => Err(e.into()),
    }
}

/// Revoke one of my pending invitations.
#[post("/o/{org}/invite/{id}/revoke")]
async fn revoke(
    state: web::Data<AppState>,
    caller: OrgInviter,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let (_, id) = path.into_inner();
    let OrgContext { org, user, actor: act, .. } = caller.0;
    my_invitation(&state, &org, &user.id, &id).await?;
    let o = org.clone();
    match with_conn(&state, move |c| Ok(invitations::revoke(c, &o, &id, &act))).await? {
        Ok(()) => Ok(see_other(&format!("/o/{}/invite?done=revoked", org.slug))),
        Err(ServiceError::WrongState) => Err(AppError::BadRequest("invitation is not pending".into())),
        Err(e) => Err(e.into()),
    }
}
