//! API keys, `/o/{org}/admin/api-keys`: create (the key is shown once), list with last use, revoke.

use actix_web::{HttpResponse, get, post, web};
use askama::Template;
use serde::Deserialize;
use time::{Date, PrimitiveDateTime, Time};

use crate::db::models::Organization;
use crate::error::AppError;
use crate::services::{ServiceError, api_keys};
use crate::state::AppState;
use crate::web::extract::{OrgAdmin, OrgContext};
use crate::web::{Ctx, Errors, invalid, ok, see_other, with_conn};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(list).service(create).service(revoke);
}

/// The create form as typed (kept on errors).
#[derive(Deserialize, Default, Clone)]
struct KeyForm {
    #[serde(default)]
    name: String,
    /// `YYYY-MM-DD`; the key works through that day (UTC). Empty: no expiry.
    #[serde(default)]
    expires: String,
}

/// One line of the list.
struct KeyRow {
    id: String,
    name: String,
    prefix: String,
    created: String,
    expires: Option<String>,
    last_used: Option<String>,
    /// Catalogue key of the state (active, expired, revoked).
    state_key: &'static str,
    usable: bool,
}

#[derive(Template)]
#[template(path = "pages/admin/api_keys.html")]
struct KeysPage {
    ctx: Ctx,
    org: Organization,
    section: &'static str,
    rows: Vec<KeyRow>,
    form: KeyForm,
    errors: Errors,
    notice: Option<&'static str>,
    /// The key just created, shown once.
    new_key: Option<String>,
}

#[derive(Deserialize)]
struct NoticeQuery {
    done: Option<String>,
}

async fn rows(state: &web::Data<AppState>, ctx: &Ctx, org_id: &str) -> Result<Vec<KeyRow>, AppError> {
    let org_id = org_id.to_owned();
    let keys = with_conn(state, move |c| Ok(api_keys::list(c, &org_id)?)).await?;
    let now = crate::db::now();
    Ok(keys
        .into_iter()
        .map(|k| KeyRow {
            usable: api_keys::is_usable(&k, now),
            state_key: if k.revoked_at.is_some() {
                "api.state_revoked"
            } else if api_keys::is_usable(&k, now) {
                "api.state_active"
            } else {
                "api.state_expired"
            },
            created: ctx.tr.datetime(&k.created_at),
            expires: k.expires_at.map(|t| ctx.tr.datetime(&t)),
            last_used: k.last_used_at.map(|t| ctx.tr.datetime(&t)),
            id: k.id,
            name: k.name,
            prefix: k.prefix,
        })
        .collect())
}

/// The keys of the org and the form to make one.
#[get("/o/{org}/admin/api-keys")]
async fn list(
    state: web::Data<AppState>,
    ctx: Ctx,
    caller: OrgAdmin,
    q: web::Query<NoticeQuery>,
) -> Result<HttpResponse, AppError> {
    let OrgContext { org, .. } = caller.0;
    let rows = rows(&state, &ctx, &org.id).await?;
    let notice = match q.done.as_deref() {
        Some("revoked") => Some("api.notice_revoked"),
        _ => None,
    };
    ok(&KeysPage {
        ctx,
        org,
        section: "api-keys",
        rows,
        form: KeyForm::default(),
        errors: Errors::default(),
        notice,
        new_key: None,
    })
}

/// Parses the expiry date: empty is none; otherwise today or later.
fn parse_expiry(text: &str) -> Result<Option<PrimitiveDateTime>, &'static str> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let date = Date::parse(text, time::macros::format_description!("[year]-[month]-[day]"))
        .map_err(|_| "api.expires_invalid")?;
    if date < crate::db::now().date() {
        return Err("api.expires_past");
    }
    let end = date.next_day().ok_or("api.expires_invalid")?;
    Ok(Some(PrimitiveDateTime::new(end, Time::MIDNIGHT)))
}

/// Creates a key and shows it once.
#[post("/o/{org}/admin/api-keys")]
async fn create(
    state: web::Data<AppState>,
    ctx: Ctx,
    caller: OrgAdmin,
    form: web::Form<KeyForm>,
) -> Result<HttpResponse, AppError> {
    let OrgContext { org, user, actor: act, .. } = caller.0;
    let form = form.into_inner();
    let result = match parse_expiry(&form.expires) {
        Err(key) => Err(ServiceError::field("expires", key)),
        Ok(expires) => {
            let (o, name, uid, act) = (org.clone(), form.name.clone(), user.id.clone(), act.clone());
            with_conn(&state, move |c| Ok(api_keys::create(c, &o, &name, &uid, expires, &act))).await?
        }
    };
    match result {
        Ok((_, plain)) => {
            let rows = rows(&state, &ctx, &org.id).await?;
            ok(&KeysPage {
                ctx,
                org,
                section: "api-keys",
                rows,
                form: KeyForm::default(),
                errors: Errors::default(),
                notice: None,
                new_key: Some(plain.expose().to_owned()),
            })
        }
        Err(ServiceError::Invalid(errors)) => {
            let rows = rows(&state, &ctx, &org.id).await?;
            invalid(&KeysPage {
                ctx,
                org,
                section: "api-keys",
                rows,
                form,
                errors: Errors(errors),
                notice: None,
                new_key: None,
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// Revokes a key; it stops working at once.
#[post("/o/{org}/admin/api-keys/{id}/revoke")]
async fn revoke(
    state: web::Data<AppState>,
    caller: OrgAdmin,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let (_, id) = path.into_inner();
    let OrgContext { org, actor: act, .. } = caller.0;
    let (org_id, act) = (org.id.clone(), act.clone());
    with_conn(&state, move |c| Ok(api_keys::revoke(c, &org_id, &id, &act)?)).await?;
    Ok(see_other(&format!("/o/{}/admin/api-keys?done=revoked", org.slug)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_dates() {
        assert_eq!(parse_expiry(""), Ok(None));
        assert_eq!(parse_expiry("2020-01-01"), Err("api.expires_past"));
        assert_eq!(parse_expiry("soon"), Err("api.expires_invalid"));
        assert!(parse_expiry("2999-12-31").unwrap().is_some());
    }
}
