//! Pages of an organization's members and guests: My Apps and leaving.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use askama::Template;
use serde::Deserialize;

use crate::auth::SignedIn;
use crate::db::models::{Membership, Organization};
use crate::domain::role;
use crate::error::AppError;
use crate::services::{orgs, users};
use crate::startup::AppState;
use crate::web::{Ctx, actor, ok, see_other, with_conn};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(apps).service(leave_page).service(leave);
}

/// The org and my active membership in it; 404 for anyone without one (pending guests have no rights).
pub async fn active_membership(
    state: &web::Data<AppState>,
    slug: &str,
    user_id: &str,
) -> Result<(Organization, Membership), AppError> {
    let (slug, uid) = (slug.to_owned(), user_id.to_owned());
    with_conn(&state.pool, move |c| {
        let org = orgs::find_by_slug(c, &slug)?.ok_or(AppError::NotFound)?;
        let m = orgs::membership_of(c, &org.id, &uid)?.filter(orgs::is_active).ok_or(AppError::NotFound)?;
        Ok((org, m))
    })
    .await
}

#[derive(Template)]
#[template(path = "pages/member/apps.html")]
struct AppsPage {
    ctx: Ctx,
    slug: String,
    org_name: String,
    is_admin: bool,
    can_leave: bool,
    welcome: bool,
}

#[derive(Deserialize)]
struct AppsQuery {
    welcome: Option<String>,
}

/// My Apps (apps themselves arrive with groups and apps; for now the empty state).
#[get("/o/{org}/apps")]
async fn apps(
    state: web::Data<AppState>,
    ctx: Ctx,
    user: SignedIn,
    slug: web::Path<String>,
    q: web::Query<AppsQuery>,
) -> Result<HttpResponse, AppError> {
    let (org, m) = active_membership(&state, &slug, &user.0.id).await?;
    ok(&AppsPage {
        ctx,
        slug: org.slug,
        org_name: org.name,
        is_admin: m.role == role::ADMIN,
        can_leave: m.role != role::ADMIN,
        welcome: q.welcome.is_some(),
    })
}

#[derive(Template)]
#[template(path = "pages/member/leave.html")]
struct LeavePage {
    ctx: Ctx,
    slug: String,
    org_name: String,
}

/// Confirmation before leaving.
#[get("/o/{org}/leave")]
async fn leave_page(
    state: web::Data<AppState>,
    ctx: Ctx,
    user: SignedIn,
    slug: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let (org, m) = active_membership(&state, &slug, &user.0.id).await?;
    if m.role == role::ADMIN {
        return Err(AppError::Forbidden);
    }
    ok(&LeavePage { ctx, slug: org.slug, org_name: org.name })
}

/// The guest leaves the organization.
#[post("/o/{org}/leave")]
async fn leave(
    req: HttpRequest,
    state: web::Data<AppState>,
    user: SignedIn,
    slug: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let (org, _) = active_membership(&state, &slug, &user.0.id).await?;
    let act = actor(&req, Some(&user.0));
    let uid = user.0.id.clone();
    with_conn(&state.pool, move |c| Ok(users::leave(c, &org, &uid, &act)?)).await?;
    Ok(see_other("/"))
}
