//! Apps: list, create and edit (a multipart form, for the icon), delete, and who may use each app.
//!
//! The create and edit forms carry their CSRF token in the action URL (`?csrf_token=…`): the
//! middleware does not read multipart bodies.

mod oidc;

use actix_multipart::Multipart;
use actix_web::{HttpResponse, get, post, web};
use askama::Template;
use serde::Deserialize;

use super::upload::{self, UploadForm};
use crate::db::models::Organization;
use crate::domain::icon::MAX_ICON_BYTES;
use crate::error::AppError;
use crate::services::apps::{self, AppInput, AppSummary, Assignee};
use crate::services::{ServiceError, groups};
use crate::state::AppState;
use crate::web::extract::{OrgAdmin, OrgContext};
use crate::web::member::AppTile;
use crate::web::{Ctx, Errors, invalid, ok, see_other, with_conn};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(list)
        .service(new_page)
        .service(create)
        .service(detail)
        .service(update)
        .service(delete_page)
        .service(delete)
        .service(assign_person)
        .service(assign_group)
        .service(unassign);
    oidc::routes(cfg);
}

/// The text fields of the app form as typed (kept on errors; a file input cannot be refilled).
#[derive(Default, Clone)]
struct AppForm {
    name: String,
    url: String,
    description: String,
}

impl AppForm {
    fn of(app: &AppSummary) -> AppForm {
        AppForm { name: app.name.clone(), url: app.url.clone(), description: app.description.clone() }
    }
}

/// Reads the multipart app form into the form (for showing again) and the service input.
async fn read_app_form(body: Multipart) -> Result<(AppForm, AppInput), AppError> {
    let mut form: UploadForm = upload::read(body, MAX_ICON_BYTES).await?;
    let shown = AppForm { name: form.text("name"), url: form.text("url"), description: form.text("description") };
    let input = AppInput {
        name: shown.name.clone(),
        url: shown.url.clone(),
        description: shown.description.clone(),
        icon: form.file("icon"),
        remove_icon: form.has("remove_icon"),
    };
    Ok((shown, input))
}

#[derive(Template)]
#[template(path = "pages/admin/apps.html")]
struct ListPage {
    ctx: Ctx,
    org: Organization,
    section: &'static str,
    tiles: Vec<AppTile>,
    notice: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "pages/admin/app_new.html")]
struct NewPage {
    ctx: Ctx,
    org: Organization,
    section: &'static str,
    form: AppForm,
    errors: Errors,
}

/// One line of the "who may use it" list.
struct AssignmentView {
    id: String,
    name: String,
    detail: String,
    is_group: bool,
}

#[derive(Template)]
#[template(path = "pages/admin/app.html")]
struct DetailPage {
    ctx: Ctx,
    org: Organization,
    section: &'static str,
    tile: AppTile,
    form: AppForm,
    errors: Errors,
    assignments: Vec<AssignmentView>,
    groups: Vec<(String, String)>,
    email: String,
    assign_errors: Errors,
    notice: Option<&'static str>,
    /// The "Sign-in with OpenID Connect" section.
    oidc: oidc::OidcView,
}

#[derive(Template)]
#[template(path = "pages/admin/app_delete.html")]
struct DeletePage {
    ctx: Ctx,
    org: Organization,
    section: &'static str,
    tile: AppTile,
}

#[derive(Deserialize)]
struct NoticeQuery {
    done: Option<String>,
}

fn notice_key(done: Option<&str>) -> Option<&'static str> {
    match done? {
        "created" => Some("apps.notice_created"),
        "saved" => Some("apps.notice_saved"),
        "deleted" => Some("apps.notice_deleted"),
        "assigned" => Some("apps.notice_assigned"),
        "unassigned" => Some("apps.notice_unassigned"),
        "oidc_saved" => Some("oidc.notice_saved"),
        "oidc_disabled" => Some("oidc.notice_disabled"),
        _ => None,
    }
}

/// What the app page shows besides the forms: the app, its assignments, the groups to offer.
struct AppData {
    app: AppSummary,
    client: Option<crate::db::models::OidcClient>,
    /// The organization's OpenID Connect issuer.
    issuer: String,
    assignments: Vec<AssignmentView>,
    groups: Vec<(String, String)>,
}

async fn load_app(state: &web::Data<AppState>, org_id: &str, app_id: &str) -> Result<AppData, AppError> {
    let (org_id, app_id) = (org_id.to_owned(), app_id.to_owned());
    let base = state.settings.base_url();
    with_conn(state, move |c| {
        let app = apps::find(c, &org_id, &app_id)?.ok_or(AppError::NotFound)?;
        let assignments = apps::assignments(c, &org_id, &app_id)?
            .into_iter()
            .map(|a| match a.assignee {
                Assignee::Person { name, email, .. } => {
                    AssignmentView { id: a.id, name, detail: email, is_group: false }
                }
                Assignee::Group(g) => AssignmentView { id: a.id, name: g.name, detail: String::new(), is_group: true },
            })
            .collect();
        let groups = groups::list(c, &org_id)?.into_iter().map(|g| (g.id, g.name)).collect();
        let client = crate::services::oidc::clients::for_app(c, &org_id, &app_id)?;
        let issuer = crate::services::oidc::issuer(&base, &oidc::slug_of(c, &org_id)?);
        Ok(AppData { app, client, issuer, assignments, groups })
    })
    .await
}

/// The app page, with optional errors on the edit form or on the assign forms.
fn detail_page(ctx: Ctx, org: Organization, data: AppData, form: Option<(AppForm, Errors)>) -> DetailPage {
    let (form, errors) = form.unwrap_or_else(|| (AppForm::of(&data.app), Errors::default()));
    let oidc = oidc::OidcView::of(&data.issuer, data.client.as_ref());
    DetailPage {
        oidc,
        tile: AppTile::new(&org.slug, &data.app),
        ctx,
        org,
        section: "apps",
        form,
        errors,
        assignments: data.assignments,
        groups: data.groups,
        email: String::new(),
        assign_errors: Errors::default(),
        notice: None,
    }
}

/// The organization's apps.
#[get("/o/{org}/admin/apps")]
async fn list(
    state: web::Data<AppState>,
    ctx: Ctx,
    caller: OrgAdmin,
    q: web::Query<NoticeQuery>,
) -> Result<HttpResponse, AppError> {
    let OrgContext { org, .. } = caller.0;
    let org_id = org.id.clone();
    let all = with_conn(&state, move |c| Ok(apps::list(c, &org_id)?)).await?;
    let tiles = all.iter().map(|a| AppTile::new(&org.slug, a)).collect();
    ok(&ListPage { ctx, org, section: "apps", tiles, notice: notice_key(q.done.as_deref()) })
}

/// The form for a new app.
#[get("/o/{org}/admin/apps/new")]
async fn new_page(ctx: Ctx, caller: OrgAdmin) -> Result<HttpResponse, AppError> {
    let OrgContext { org, .. } = caller.0;
    ok(&NewPage { ctx, org, section: "apps", form: AppForm::default(), errors: Errors::default() })
}

/// Creates an app (multipart: the icon is a file).
#[post("/o/{org}/admin/apps")]
async fn create(
    state: web::Data<AppState>,
    ctx: Ctx,
    caller: OrgAdmin,
    body: Multipart,
) -> Result<HttpResponse, AppError> {
    let OrgContext { org, actor: act, .. } = caller.0;
    let (form, input) = read_app_form(body).await?;
    let valid = match apps::validate(&input) {
        Ok(v) => v,
        Err(errors) => return invalid(&NewPage { ctx, org, section: "apps", form, errors: Errors(errors) }),
    };
    let (act, org_id) = (act.clone(), org.id.clone());
    let app = with_conn(&state, move |c| Ok(apps::create(c, &org_id, &valid, &act)?)).await?;
    Ok(see_other(&format!("/o/{}/admin/apps/{}?done=created", org.slug, app.id)))
}

/// The app page: edit, who may use it, delete.
#[get("/o/{org}/admin/apps/{id}")]
async fn detail(
    state: web::Data<AppState>,
    ctx: Ctx,
    caller: OrgAdmin,
    path: web::Path<(String, String)>,
    q: web::Query<NoticeQuery>,
) -> Result<HttpResponse, AppError> {
    let (_, id) = path.into_inner();
    let OrgContext { org, .. } = caller.0;
    let data = load_app(&state, &org.id, &id).await?;
    let mut page = detail_page(ctx, org, data, None);
    page.notice = notice_key(q.done.as_deref());
    ok(&page)
}

/// Saves the app (multipart: a new icon may come with it).
#[post("/o/{org}/admin/apps/{id}")]
async fn update(
    state: web::Data<AppState>,
    ctx: Ctx,
    caller: OrgAdmin,
    path: web::Path<(String, String)>,
    body: Multipart,
) -> Result<HttpResponse, AppError> {
    let (_, id) = path.into_inner();
    let OrgContext { org, actor: act, .. } = caller.0;
    let data = load_app(&state, &org.id, &id).await?;
    let (form, input) = read_app_form(body).await?;
    let valid = match apps::validate(&input) {
        Ok(v) => v,
        Err(errors) => return invalid(&detail_page(ctx, org, data, Some((form, Errors(errors))))),
    };
    let (act, org_id) = (act.clone(), org.id.clone());
    with_conn(&state, move |c| Ok(apps::update(c, &org_id, &id, &valid, &act)?)).await?;
    Ok(see_other(&format!("/o/{}/admin/apps/{}?done=saved", org.slug, data.app.id)))
}

/// Asks before deleting.
#[get("/o/{org}/admin/apps/{id}/delete")]
async fn delete_page(
    state: web::Data<AppState>,
    ctx: Ctx,
    caller: OrgAdmin,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let (_, id) = path.into_inner();
    let OrgContext { org, .. } = caller.0;
    let org_id = org.id.clone();
    let app = with_conn(&state, move |c| apps::find(c, &org_id, &id)?.ok_or(AppError::NotFound)).await?;
    ok(&DeletePage { tile: AppTile::new(&org.slug, &app), ctx, org, section: "apps" })
}

/// Deletes the app and its assignments.
#[post("/o/{org}/admin/apps/{id}/delete")]
async fn delete(
    state: web::Data<AppState>,
    caller: OrgAdmin,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let (_, id) = path.into_inner();
    let OrgContext { org, actor: act, .. } = caller.0;
    let (act, org_id) = (act.clone(), org.id.clone());
    with_conn(&state, move |c| Ok(apps::delete(c, &org_id, &id, &act)?)).await?;
    Ok(see_other(&format!("/o/{}/admin/apps?done=deleted", org.slug)))
}

#[derive(Deserialize)]
struct PersonForm {
    #[serde(default)]
    email: String,
}

/// Gives the app to a person of the organization, named by email address.
#[post("/o/{org}/admin/apps/{id}/assign")]
async fn assign_person(
    state: web::Data<AppState>,
    ctx: Ctx,
    caller: OrgAdmin,
    path: web::Path<(String, String)>,
    form: web::Form<PersonForm>,
) -> Result<HttpResponse, AppError> {
    let (_, id) = path.into_inner();
    let OrgContext { org, actor: act, .. } = caller.0;
    let email = form.into_inner().email;
    let (act, org_id, aid, typed) = (act.clone(), org.id.clone(), id.clone(), email.clone());
    match with_conn(&state, move |c| Ok(apps::assign_by_email(c, &org_id, &aid, &typed, &act))).await? {
        Ok(()) => Ok(see_other(&format!("/o/{}/admin/apps/{id}?done=assigned", org.slug))),
        Err(ServiceError::Invalid(errors)) => {
            let data = load_app(&state, &org.id, &id).await?;
            let mut page = detail_page(ctx, org, data, None);
            page.email = email;
            page.assign_errors = Errors(errors);
            invalid(&page)
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
struct GroupChoice {
    #[serde(default)]
    group_id: String,
}

/// Gives the app to a group of the organization.
#[post("/o/{org}/admin/apps/{id}/assign-group")]
async fn assign_group(
    state: web::Data<AppState>,
    ctx: Ctx,
    caller: OrgAdmin,
    path: web::Path<(String, String)>,
    form: web::Form<GroupChoice>,
) -> Result<HttpResponse, AppError> {
    let (_, id) = path.into_inner();
    let OrgContext { org, actor: act, .. } = caller.0;
    let group_id = form.into_inner().group_id;
    let (act, org_id, aid) = (act, org.id.clone(), id.clone());
    match with_conn(&state, move |c| Ok(apps::assign_group(c, &org_id, &aid, &group_id, &act))).await? {
        Ok(()) => Ok(see_other(&format!("/o/{}/admin/apps/{id}?done=assigned", org.slug))),
        Err(ServiceError::Invalid(errors)) => {
            let data = load_app(&state, &org.id, &id).await?;
            let mut page = detail_page(ctx, org, data, None);
            page.assign_errors = Errors(errors);
            invalid(&page)
        }
        Err(e) => Err(e.into()),
    }
}

/// Takes an assignment back.
#[post("/o/{org}/admin/apps/{id}/assignments/{assignment}/remove")]
async fn unassign(
    state: web::Data<AppState>,
    caller: OrgAdmin,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, AppError> {
    let (_, id, assignment) = path.into_inner();
    let OrgContext { org, actor: act, .. } = caller.0;
    let (act, org_id, aid) = (act, org.id.clone(), id.clone());
    with_conn(&state, move |c| Ok(apps::unassign(c, &org_id, &aid, &assignment, &act)?)).await?;
    Ok(see_other(&format!("/o/{}/admin/apps/{id}?done=unassigned", org.slug)))
}
