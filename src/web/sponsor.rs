//! `/o/{org}/sponsor/{membership}`: the one-click page a sponsor reaches from the reminder email
//! to extend a guest's access.

use actix_web::{HttpResponse, get, post, web};
use askama::Template;

use crate::db::models::Organization;
use crate::domain::Role;
use crate::error::AppError;
use crate::services::{ServiceError, accounts, lifecycle};
use crate::state::AppState;
use crate::web::extract::{OrgContext, OrgMember};
use crate::web::{Ctx, ok, with_conn};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(show).service(extend);
}

#[derive(Template)]
#[template(path = "pages/member/sponsor.html")]
struct SponsorPage {
    ctx: Ctx,
    org: Organization,
    membership_id: String,
    guest_name: String,
    guest_email: String,
    ends: Option<String>,
    extended: bool,
    days: String,
}

/// The guest a signed-in sponsor (or an admin) may extend; 404 for anyone else.
async fn load(
    state: &web::Data<AppState>,
    ctx: Ctx,
    caller: &OrgContext,
    mid: &str,
    extended: bool,
) -> Result<SponsorPage, AppError> {
    let (org, me) = (caller.org.clone(), caller.membership.clone());
    let (o, m, uid) = (org.clone(), mid.to_owned(), caller.user.id.clone());
    let (guest_m, guest) = with_conn(state, move |c| {
        let gm = lifecycle::find(c, &o.id, &m).map_err(|_| AppError::NotFound)?;
        // The person the reminder went to: the sponsor, else the inviter.
        let sponsor = gm.sponsor_id.as_deref().or(gm.invited_by.as_deref());
        if sponsor != Some(uid.as_str()) && me.role != Role::Admin {
            return Err(AppError::NotFound);
        }
        let guest = accounts::find_by_id(c, &gm.user_id)?.ok_or(AppError::NotFound)?;
        Ok((gm, guest))
    })
    .await?;
    let tr = ctx.tr;
    Ok(SponsorPage {
        membership_id: guest_m.id,
        guest_name: guest.display_name,
        guest_email: guest.email,
        ends: guest_m.access_ends_at.map(|e| tr.datetime(&e)),
        extended,
        days: lifecycle::extension_days(&org).to_string(),
        org,
        ctx,
    })
}

#[get("/o/{org}/sponsor/{id}")]
async fn show(
    state: web::Data<AppState>,
    ctx: Ctx,
    caller: OrgMember,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let (_, id) = path.into_inner();
    ok(&load(&state, ctx, &caller.0, &id, false).await?)
}

#[post("/o/{org}/sponsor/{id}")]
async fn extend(
    state: web::Data<AppState>,
    ctx: Ctx,
    caller: OrgMember,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let (_, id) = path.into_inner();
    let current = load(&state, ctx.clone(), &caller.0, &id, false).await?;
    let (org, mid, a) = (current.org.clone(), current.membership_id.clone(), caller.0.actor.clone());
    match with_conn(&state, move |c| Ok(lifecycle::extend(c, &org, &mid, &a))).await? {
        Ok(_) => ok(&load(&state, ctx, &caller.0, &id, true).await?),
        Err(ServiceError::WrongState) => Err(AppError::BadRequest("no end date to extend".into())),
        Err(e) => Err(e.into()),
    }
}
