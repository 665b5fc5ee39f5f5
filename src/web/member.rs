//! Pages of an organization's members and guests: My Apps, app icons, and leaving.

use actix_web::http::header;
use actix_web::{HttpResponse, get, post, web};
use askama::Template;
use serde::Deserialize;

use crate::domain::Role;
use crate::domain::icon::IconKind;
use crate::error::AppError;
use crate::services::apps::{self, AppSummary};
use crate::services::{orgs, users};
use crate::state::AppState;
use crate::web::extract::{OrgContext, OrgMember};
use crate::web::{Ctx, ok, see_other, with_conn};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(my_apps).service(icon).service(leave_page).service(leave);
}

/// Number of tile colours in the stylesheet (`.tint-0` to `.tint-7`).
const TINTS: u32 = 8;

/// An app as a tile: its icon, or its initial on a coloured square, name, description, link.
#[derive(Debug, Clone)]
pub struct AppTile {
    pub id: String,
    pub name: String,
    pub url: String,
    pub description: String,
    /// Where the icon is served, when the app has one.
    pub icon_src: Option<String>,
    /// The first letter or digit of the name, upper-cased.
    pub initial: String,
    /// Colour of the initial's square, stable for an app.
    pub tint: u32,
}

impl AppTile {
    /// The tile of an app of the organization `slug`.
    pub fn new(slug: &str, app: &AppSummary) -> AppTile {
        let initial = app
            .name
            .chars()
            .find(|c| c.is_alphanumeric())
            .map(|c| c.to_uppercase().collect::<String>())
            .unwrap_or_else(|| "?".into());
        AppTile {
            id: app.id.clone(),
            name: app.name.clone(),
            url: app.url.clone(),
            description: app.description.clone(),
            icon_src: app.icon_type.as_ref().map(|_| format!("/o/{slug}/apps/{}/icon", app.id)),
            initial,
            tint: app.id.bytes().map(u32::from).sum::<u32>() % TINTS,
        }
    }
}

/// Another organization I belong to, for the switcher.
struct OrgLink {
    slug: String,
    name: String,
    current: bool,
}

#[derive(Template)]
#[template(path = "pages/member/apps.html")]
struct AppsPage {
    ctx: Ctx,
    slug: String,
    org_name: String,
    is_admin: bool,
    can_leave: bool,
    can_invite: bool,
    welcome: bool,
    tiles: Vec<AppTile>,
    orgs: Vec<OrgLink>,
}

#[derive(Deserialize)]
struct AppsQuery {
    welcome: Option<String>,
}

/// My Apps: the apps given to me or to my groups, and my other organizations.
#[get("/o/{org}/apps")]
async fn my_apps(
    state: web::Data<AppState>,
    ctx: Ctx,
    caller: OrgMember,
    q: web::Query<AppsQuery>,
) -> Result<HttpResponse, AppError> {
    let OrgContext { org, membership: m, user, .. } = caller.0;
    let (org_id, membership_id, uid) = (org.id.clone(), m.id.clone(), user.id.clone());
    let (mine, all_orgs, logins) = with_conn(&state, move |c| {
        Ok((
            apps::for_membership(c, &org_id, &membership_id)?,
            orgs::orgs_of_user(c, &uid)?,
            crate::services::oidc::clients::login_uris(c, &org_id)?,
        ))
    })
    .await?;
    let issuer = crate::web::oidc::issuer_of(&state, &org.slug);
    let orgs =
        all_orgs.into_iter().map(|(o, _)| OrgLink { current: o.id == org.id, slug: o.slug, name: o.name }).collect();
    let can_invite = crate::services::policy::may_invite(&org, &m);
    ok(&AppsPage {
        ctx,
        tiles: mine.iter().map(|a| oidc_tile(AppTile::new(&org.slug, a), &logins, &issuer)).collect(),
        orgs,
        slug: org.slug,
        org_name: org.name,
        is_admin: m.role == Role::Admin,
        can_leave: m.role != Role::Admin,
        can_invite,
        welcome: q.welcome.is_some(),
    })
}

/// A tile of an app that signs people in with OpenID Connect starts the app's own sign-in:
/// its initiate-login URI with `iss` (OpenID Connect Core §4), else its URL.
fn oidc_tile(mut tile: AppTile, logins: &[(String, Option<String>)], issuer: &str) -> AppTile {
    if let Some((_, Some(uri))) = logins.iter().find(|(id, _)| *id == tile.id)
        && let Ok(mut url) = url::Url::parse(uri)
    {
        url.query_pairs_mut().append_pair("iss", issuer);
        tile.url = url.to_string();
    }
    tile
}

/// The icon of an app, for the admins of the organization and the people who may use the app.
/// Served with its checked type, `nosniff`, and for SVG a policy that forbids any script.
#[get("/o/{org}/apps/{id}/icon")]
async fn icon(
    state: web::Data<AppState>,
    caller: OrgMember,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let (_, id) = path.into_inner();
    let OrgContext { org, membership: m, .. } = caller.0;
    let (bytes, content_type) = with_conn(&state, move |c| {
        if m.role != Role::Admin && !apps::for_membership(c, &org.id, &m.id)?.iter().any(|a| a.id == id) {
            return Err(AppError::NotFound);
        }
        apps::icon(c, &org.id, &id)?.ok_or(AppError::NotFound)
    })
    .await?;
    let kind = IconKind::from_content_type(&content_type).ok_or(AppError::NotFound)?;
    let mut res = HttpResponse::Ok();
    res.insert_header((header::CONTENT_TYPE, kind.content_type()))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
    if kind == IconKind::Svg {
        res.insert_header((header::CONTENT_SECURITY_POLICY, "default-src 'none'; style-src 'unsafe-inline'"))
            .insert_header((header::CONTENT_DISPOSITION, "inline"));
    }
    Ok(res.body(bytes))
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
async fn leave_page(ctx: Ctx, caller: OrgMember) -> Result<HttpResponse, AppError> {
    let OrgContext { org, membership: m, .. } = caller.0;
    if m.role == Role::Admin {
        return Err(AppError::Forbidden);
    }
    ok(&LeavePage { ctx, slug: org.slug, org_name: org.name })
}

/// The guest leaves the organization.
#[post("/o/{org}/leave")]
async fn leave(state: web::Data<AppState>, caller: OrgMember) -> Result<HttpResponse, AppError> {
    let OrgContext { org, user, actor: act, .. } = caller.0;
    let uid = user.id.clone();
    with_conn(&state, move |c| Ok(users::leave(c, &org, &uid, &act)?)).await?;
    Ok(see_other("/"))
}
