//! The lifecycle actions of the guest page: role, conversion, block, restore, reset redemption,
//! sponsor, end date and extension. Each redirects back to the guest page with a notice, or
//! shows it again with the field error.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, post, web};
use serde::Deserialize;

use super::require_admin;
use super::users::{LifecycleForm, show_detail};
use crate::auth::SignedIn;
use crate::db::models::Organization;
use crate::error::AppError;
use crate::services::invitations::MailContext;
use crate::services::{Actor, FieldErrors, ServiceError, accounts, lifecycle};
use crate::state::AppState;
use crate::web::{Ctx, actor, see_other, with_conn};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(set_role)
        .service(convert)
        .service(block)
        .service(unblock)
        .service(restore)
        .service(reset)
        .service(sponsor)
        .service(end_date)
        .service(extend);
}

type Path = web::Path<(String, String)>;

#[derive(Deserialize)]
struct RoleForm {
    #[serde(default)]
    role: String,
}

#[post("/o/{org}/admin/users/{id}/role")]
async fn set_role(
    req: HttpRequest,
    state: web::Data<AppState>,
    ctx: Ctx,
    user: SignedIn,
    path: Path,
    form: web::Form<RoleForm>,
) -> Result<HttpResponse, AppError> {
    let role = form.into_inner().role;
    act(&req, &state, ctx, &user, path, "role", LifecycleForm::default(), move |c, o, m, a| {
        lifecycle::set_role(c, o, m, &role, a)
    })
    .await
}

#[post("/o/{org}/admin/users/{id}/convert")]
async fn convert(
    req: HttpRequest,
    state: web::Data<AppState>,
    ctx: Ctx,
    user: SignedIn,
    path: Path,
) -> Result<HttpResponse, AppError> {
    act(&req, &state, ctx, &user, path, "converted", LifecycleForm::default(), |c, o, m, a| {
        lifecycle::convert(c, o, m, a).map(|_| ())
    })
    .await
}

#[post("/o/{org}/admin/users/{id}/block")]
async fn block(
    req: HttpRequest,
    state: web::Data<AppState>,
    ctx: Ctx,
    user: SignedIn,
    path: Path,
) -> Result<HttpResponse, AppError> {
    act(&req, &state, ctx, &user, path, "blocked", LifecycleForm::default(), |c, o, m, a| {
        lifecycle::set_blocked(c, o, m, true, a)
    })
    .await
}

#[post("/o/{org}/admin/users/{id}/unblock")]
async fn unblock(
    req: HttpRequest,
    state: web::Data<AppState>,
    ctx: Ctx,
    user: SignedIn,
    path: Path,
) -> Result<HttpResponse, AppError> {
    act(&req, &state, ctx, &user, path, "unblocked", LifecycleForm::default(), |c, o, m, a| {
        lifecycle::set_blocked(c, o, m, false, a)
    })
    .await
}

#[post("/o/{org}/admin/users/{id}/restore")]
async fn restore(
    req: HttpRequest,
    state: web::Data<AppState>,
    ctx: Ctx,
    user: SignedIn,
    path: Path,
) -> Result<HttpResponse, AppError> {
    act(&req, &state, ctx, &user, path, "restored", LifecycleForm::default(), lifecycle::restore).await
}

#[post("/o/{org}/admin/users/{id}/extend")]
async fn extend(
    req: HttpRequest,
    state: web::Data<AppState>,
    ctx: Ctx,
    user: SignedIn,
    path: Path,
) -> Result<HttpResponse, AppError> {
    act(&req, &state, ctx, &user, path, "extended", LifecycleForm::default(), |c, o, m, a| {
        lifecycle::extend(c, o, m, a).map(|_| ())
    })
    .await
}

/// Runs one action on a person of the admin's org: redirects to their page with a notice, or
/// shows the page again with the field error of a refused form (`form` keeps what was typed).
#[allow(clippy::too_many_arguments)]
async fn act<F>(
    req: &HttpRequest,
    state: &web::Data<AppState>,
    ctx: Ctx,
    user: &SignedIn,
    path: Path,
    done: &str,
    form: LifecycleForm,
    f: F,
) -> Result<HttpResponse, AppError>
where
    F: FnOnce(&mut crate::db::DbConnection, &Organization, &str, &Actor) -> Result<(), ServiceError> + Send + 'static,
{
    let (slug, id) = path.into_inner();
    let (org, _) = require_admin(state, &slug, &user.0.id).await?;
    let a = actor(req, Some(&user.0));
    let (o, mid) = (org.clone(), id.clone());
    match with_conn(state, move |c| Ok(f(c, &o, &mid, &a))).await? {
        Ok(()) => Ok(see_other(&format!("/o/{}/admin/users/{id}?done={done}", org.slug))),
        Err(ServiceError::Invalid(errors)) => {
            show_detail(state, ctx, org, &user.0.id, id, None, errors, form, StatusCode::UNPROCESSABLE_ENTITY).await
        }
        Err(ServiceError::WrongState) | Err(ServiceError::Forbidden) => {
            Err(AppError::BadRequest("not possible in the current state".into()))
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
struct EmailForm {
    #[serde(default)]
    email: String,
}

#[post("/o/{org}/admin/users/{id}/reset")]
async fn reset(
    req: HttpRequest,
    state: web::Data<AppState>,
    ctx: Ctx,
    user: SignedIn,
    path: Path,
    form: web::Form<EmailForm>,
) -> Result<HttpResponse, AppError> {
    let email = form.into_inner().email;
    let keep = LifecycleForm { reset_email: email.clone(), ..Default::default() };
    let (uid, public_url) = (user.0.id.clone(), state.settings.public_url.clone());

    act(&req, &state, ctx, &user, path, "reset", keep, move |c, o, m, a| {
        let inviter = accounts::find_by_id(c, &uid)?.ok_or(ServiceError::NotFound)?;
        lifecycle::reset_redemption(
            c,
            o,
            m,
            &email,
            Default::default(),
            &MailContext { public_url: &public_url, inviter: &inviter },
            a,
        )
        .map(|_| ())
    })
    .await
}

#[derive(Deserialize)]
struct SponsorForm {
    #[serde(default)]
    sponsor: String,
}

#[post("/o/{org}/admin/users/{id}/sponsor")]
async fn sponsor(
    req: HttpRequest,
    state: web::Data<AppState>,
    ctx: Ctx,
    user: SignedIn,
    path: Path,
    form: web::Form<SponsorForm>,
) -> Result<HttpResponse, AppError> {
    let email = form.into_inner().sponsor;
    let keep = LifecycleForm { sponsor: email.clone(), ..Default::default() };
    act(&req, &state, ctx, &user, path, "sponsor", keep, move |c, o, m, a| lifecycle::set_sponsor(c, o, m, &email, a))
        .await
}

#[derive(Deserialize)]
struct EndDateForm {
    #[serde(default)]
    access_ends_at: String,
}

#[post("/o/{org}/admin/users/{id}/end-date")]
async fn end_date(
    req: HttpRequest,
    state: web::Data<AppState>,
    ctx: Ctx,
    user: SignedIn,
    path: Path,
    form: web::Form<EndDateForm>,
) -> Result<HttpResponse, AppError> {
    let text = form.into_inner().access_ends_at.trim().to_owned();
    let keep = LifecycleForm { end_date: text.clone(), ..Default::default() };
    let parsed = if text.is_empty() {
        Ok(None)
    } else {
        time::Date::parse(&text, &time::macros::format_description!("[year]-[month]-[day]"))
            .map(|d| Some(time::PrimitiveDateTime::new(d, time::Time::MIDNIGHT)))
    };
    act(&req, &state, ctx, &user, path, "end_date", keep, move |c, o, m, a| match parsed {
        Ok(ends) => lifecycle::set_end_date(c, o, m, ends, a),
        Err(_) => Err(ServiceError::Invalid(FieldErrors(vec![("access_ends_at", "lifecycle.end_date_invalid")]))),
    })
    .await
}
