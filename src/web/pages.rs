//! Pages that belong to nobody in particular: home, health, static files, language switch.

use actix_session::Session;
use actix_web::cookie::{Cookie, SameSite};
use actix_web::{HttpResponse, get, post, web};
use askama::Template;
use serde::Deserialize;

use crate::auth::guard::current_user;
use crate::domain::Role;
use crate::error::AppError;
use crate::i18n::Lang;
use crate::services::{accounts, orgs};
use crate::state::AppState;
use crate::web::{Ctx, LANG_COOKIE, ok, safe_next, see_other, with_conn};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(home).service(healthz).service(readyz).service(stylesheet).service(switch_language);
}

struct OrgTile {
    slug: String,
    name: String,
    initial: char,
    is_admin: bool,
    kind_key: &'static str,
}

#[derive(Template)]
#[template(path = "pages/home.html")]
struct HomePage {
    ctx: Ctx,
    orgs: Vec<OrgTile>,
}

/// `/`: my organizations, or the sign-in page.
#[get("/")]
async fn home(state: web::Data<AppState>, ctx: Ctx) -> Result<HttpResponse, AppError> {
    let Some(user) = ctx.user.clone() else {
        return Ok(see_other("/signin"));
    };
    let list = with_conn(&state, move |c| Ok(orgs::orgs_of_user(c, &user.id)?)).await?;
    let orgs = list
        .into_iter()
        .map(|(o, m)| OrgTile {
            initial: o.name.chars().next().unwrap_or('?').to_uppercase().next().unwrap_or('?'),
            is_admin: m.role == Role::Admin,
            kind_key: if m.user_type == crate::domain::UserType::Guest {
                "home.kind_guest"
            } else {
                "home.kind_member"
            },
            slug: o.slug,
            name: o.name,
        })
        .collect();
    ok(&HomePage { ctx, orgs })
}

/// Liveness: the process answers.
#[get("/healthz")]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; charset=utf-8").body("ok")
}

/// Readiness: the database answers; reports the mail queue.
#[get("/readyz")]
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let result = with_conn(&state, |c| {
        crate::db::probe_ready(c)?;
        Ok(crate::mail::queue_counts(c)?)
    })
    .await;
    match result {
        Ok(counts) => {
            let mail: serde_json::Map<String, serde_json::Value> =
                counts.into_iter().map(|(s, n)| (s, n.into())).collect();
            HttpResponse::Ok().json(serde_json::json!({ "status": "ready", "database": "ok", "mail": mail }))
        }
        Err(_) => HttpResponse::ServiceUnavailable()
            .json(serde_json::json!({ "status": "unavailable", "database": "unreachable" })),
    }
}

/// The one stylesheet, compiled into the binary.
#[get("/static/app.css")]
async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header(("Cache-Control", "public, max-age=3600"))
        .body(include_str!("../../static/css/app.css"))
}

#[derive(Deserialize)]
struct LangForm {
    lang: String,
    next: Option<String>,
}

/// The language switch: remembered in a cookie, and on the account when signed in.
#[post("/lang")]
async fn switch_language(
    state: web::Data<AppState>,
    session: Session,
    form: web::Form<LangForm>,
) -> Result<HttpResponse, AppError> {
    let lang = Lang::parse(&form.lang).ok_or_else(|| AppError::BadRequest("unknown language".into()))?;
    if let Some(user) = current_user(&session) {
        with_conn(&state, move |c| Ok(accounts::set_language(c, &user.id, lang.code())?)).await?;
    }
    let mut res = see_other(&safe_next(form.next.as_deref()));
    res.add_cookie(&language_cookie(lang, state.settings.https())).ok();
    Ok(res)
}

/// The cookie remembering a language for a year.
pub fn language_cookie(lang: Lang, secure: bool) -> Cookie<'static> {
    Cookie::build(LANG_COOKIE, lang.code())
        .path("/")
        .secure(secure)
        .http_only(true)
        .same_site(SameSite::Lax)
        .max_age(actix_web::cookie::time::Duration::days(365))
        .finish()
}
