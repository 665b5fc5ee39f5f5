//! Groups: list and create, the group page (rename, members and owners), delete.

use actix_web::{HttpResponse, get, post, web};
use askama::Template;
use serde::Deserialize;

use super::{state_key, type_key};
use crate::db::models::{Group, Organization};
use crate::error::AppError;
use crate::services::ServiceError;
use crate::services::groups::{self, GroupInput, MemberRow};
use crate::state::AppState;
use crate::web::extract::{OrgAdmin, OrgContext};
use crate::web::{Ctx, Errors, invalid, ok, see_other, with_conn};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(list)
        .service(create)
        .service(detail)
        .service(rename_group)
        .service(delete_page)
        .service(delete)
        .service(add_member)
        .service(remove_member)
        .service(set_owner);
}

/// Name and description as typed (kept on errors).
#[derive(Deserialize, Default, Clone)]
struct GroupForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
}

impl GroupForm {
    fn input(&self) -> GroupInput {
        GroupInput { name: self.name.clone(), description: self.description.clone() }
    }
}

/// The "add a person" form as typed.
#[derive(Deserialize, Default, Clone)]
struct AddForm {
    #[serde(default)]
    email: String,
    /// `owner` or `member`.
    #[serde(default)]
    role: String,
}

struct GroupRow {
    id: String,
    name: String,
    description: String,
    members: i64,
}

#[derive(Template)]
#[template(path = "pages/admin/groups.html")]
struct ListPage {
    ctx: Ctx,
    org: Organization,
    section: &'static str,
    rows: Vec<GroupRow>,
    form: GroupForm,
    errors: Errors,
    notice: Option<&'static str>,
}

struct PersonRow {
    membership_id: String,
    name: String,
    email: String,
    type_key: &'static str,
    state_key: &'static str,
    state_class: &'static str,
    is_owner: bool,
}

impl From<MemberRow> for PersonRow {
    fn from(r: MemberRow) -> Self {
        let (state_key, state_class) = state_key(&r.membership);
        PersonRow {
            membership_id: r.membership.id,
            type_key: type_key(&r.membership.user_type),
            state_key,
            state_class,
            name: r.user.display_name,
            email: r.user.email,
            is_owner: r.is_owner,
        }
    }
}

#[derive(Template)]
#[template(path = "pages/admin/group.html")]
struct DetailPage {
    ctx: Ctx,
    org: Organization,
    section: &'static str,
    group: Group,
    people: Vec<PersonRow>,
    rename: GroupForm,
    rename_errors: Errors,
    add: AddForm,
    add_errors: Errors,
    notice: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "pages/admin/group_delete.html")]
struct DeletePage {
    ctx: Ctx,
    org: Organization,
    section: &'static str,
    group: Group,
    members: usize,
}

#[derive(Deserialize)]
struct NoticeQuery {
    done: Option<String>,
}

fn notice_key(done: Option<&str>) -> Option<&'static str> {
    match done? {
        "created" => Some("groups.notice_created"),
        "renamed" => Some("groups.notice_renamed"),
        "deleted" => Some("groups.notice_deleted"),
        "added" => Some("groups.notice_added"),
        "removed" => Some("groups.notice_removed"),
        "owner" => Some("groups.notice_owner"),
        _ => None,
    }
}

async fn list_rows(state: &web::Data<AppState>, org_id: &str) -> Result<Vec<GroupRow>, AppError> {
    let org_id = org_id.to_owned();
    with_conn(state, move |c| {
        let counts = groups::member_counts(c, &org_id)?;
        Ok(groups::list(c, &org_id)?
            .into_iter()
            .map(|g| GroupRow {
                members: counts.get(&g.id).copied().unwrap_or(0),
                id: g.id,
                name: g.name,
                description: g.description,
            })
            .collect())
    })
    .await
}

/// The group and its people, or 404 when the group is not one of this organization's.
async fn load_group(
    state: &web::Data<AppState>,
    org_id: &str,
    group_id: &str,
) -> Result<(Group, Vec<PersonRow>), AppError> {
    let (org_id, group_id) = (org_id.to_owned(), group_id.to_owned());
    with_conn(state, move |c| {
        let group = groups::find(c, &org_id, &group_id)?.ok_or(AppError::NotFound)?;
        let people = groups::members(c, &org_id, &group_id)?.into_iter().map(PersonRow::from).collect();
        Ok((group, people))
    })
    .await
}

/// The groups of the organization, with the form to create one.
#[get("/o/{org}/admin/groups")]
async fn list(
    state: web::Data<AppState>,
    ctx: Ctx,
    caller: OrgAdmin,
    q: web::Query<NoticeQuery>,
) -> Result<HttpResponse, AppError> {
    let OrgContext { org, .. } = caller.0;
    let rows = list_rows(&state, &org.id).await?;
    let notice = notice_key(q.done.as_deref());
    ok(&ListPage { ctx, org, section: "groups", rows, form: GroupForm::default(), errors: Errors::default(), notice })
}

/// Creates a group and opens its page.
#[post("/o/{org}/admin/groups")]
async fn create(
    state: web::Data<AppState>,
    ctx: Ctx,
    caller: OrgAdmin,
    form: web::Form<GroupForm>,
) -> Result<HttpResponse, AppError> {
    let OrgContext { org, actor: act, .. } = caller.0;
    let form = form.into_inner();
    let (input, act, org_id) = (form.input(), act.clone(), org.id.clone());
    match with_conn(&state, move |c| Ok(groups::create(c, &org_id, &input, &act))).await? {
        Ok(g) => Ok(see_other(&format!("/o/{}/admin/groups/{}?done=created", org.slug, g.id))),
        Err(ServiceError::Invalid(errors)) => {
            let rows = list_rows(&state, &org.id).await?;
            invalid(&ListPage { ctx, org, section: "groups", rows, form, errors: Errors(errors), notice: None })
        }
        Err(e) => Err(e.into()),
    }
}

/// The group page: rename, the people in it, add a person.
#[get("/o/{org}/admin/groups/{id}")]
async fn detail(
    state: web::Data<AppState>,
    ctx: Ctx,
    caller: OrgAdmin,
    path: web::Path<(String, String)>,
    q: web::Query<NoticeQuery>,
) -> Result<HttpResponse, AppError> {
    let (_, id) = path.into_inner();
    let OrgContext { org, .. } = caller.0;
    let (group, people) = load_group(&state, &org.id, &id).await?;
    let rename = GroupForm { name: group.name.clone(), description: group.description.clone() };
    ok(&DetailPage {
        ctx,
        org,
        section: "groups",
        group,
        people,
        rename,
        rename_errors: Errors::default(),
        add: AddForm { email: String::new(), role: "member".into() },
        add_errors: Errors::default(),
        notice: notice_key(q.done.as_deref()),
    })
}

/// Renames the group (and sets its description).
#[post("/o/{org}/admin/groups/{id}")]
async fn rename_group(
    state: web::Data<AppState>,
    ctx: Ctx,
    caller: OrgAdmin,
    path: web::Path<(String, String)>,
    form: web::Form<GroupForm>,
) -> Result<HttpResponse, AppError> {
    let (_, id) = path.into_inner();
    let OrgContext { org, actor: act, .. } = caller.0;
    let form = form.into_inner();
    let (input, act, org_id, gid) = (form.input(), act.clone(), org.id.clone(), id.clone());
    match with_conn(&state, move |c| Ok(groups::rename(c, &org_id, &gid, &input, &act))).await? {
        Ok(_) => Ok(see_other(&format!("/o/{}/admin/groups/{id}?done=renamed", org.slug))),
        Err(ServiceError::Invalid(errors)) => {
            let (group, people) = load_group(&state, &org.id, &id).await?;
            invalid(&DetailPage {
                ctx,
                org,
                section: "groups",
                group,
                people,
                rename: form,
                rename_errors: Errors(errors),
                add: AddForm { email: String::new(), role: "member".into() },
                add_errors: Errors::default(),
                notice: None,
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// Asks before deleting.
#[get("/o/{org}/admin/groups/{id}/delete")]
async fn delete_page(
    state: web::Data<AppState>,
    ctx: Ctx,
    caller: OrgAdmin,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let (_, id) = path.into_inner();
    let OrgContext { org, .. } = caller.0;
    let (group, people) = load_group(&state, &org.id, &id).await?;
    ok(&DeletePage { ctx, org, section: "groups", group, members: people.len() })
}

/// Deletes the group; its people stay in the organization.
#[post("/o/{org}/admin/groups/{id}/delete")]
async fn delete(
    state: web::Data<AppState>,
    caller: OrgAdmin,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let (_, id) = path.into_inner();
    let OrgContext { org, actor: act, .. } = caller.0;
    let (act, org_id) = (act.clone(), org.id.clone());
    with_conn(&state, move |c| Ok(groups::delete(c, &org_id, &id, &act)?)).await?;
    Ok(see_other(&format!("/o/{}/admin/groups?done=deleted", org.slug)))
}

/// Adds a person of the organization (by email address) as member or owner.
#[post("/o/{org}/admin/groups/{id}/members")]
async fn add_member(
    state: web::Data<AppState>,
    ctx: Ctx,
    caller: OrgAdmin,
    path: web::Path<(String, String)>,
    form: web::Form<AddForm>,
) -> Result<HttpResponse, AppError> {
    let (_, id) = path.into_inner();
    let OrgContext { org, actor: act, .. } = caller.0;
    let form = form.into_inner();
    let (email, owner) = (form.email.clone(), form.role == "owner");
    let (act, org_id, gid) = (act, org.id.clone(), id.clone());
    match with_conn(&state, move |c| Ok(groups::add_person(c, &org_id, &gid, &email, owner, &act))).await? {
        Ok(()) => Ok(see_other(&format!("/o/{}/admin/groups/{id}?done=added", org.slug))),
        Err(ServiceError::Invalid(errors)) => {
            let (group, people) = load_group(&state, &org.id, &id).await?;
            let rename = GroupForm { name: group.name.clone(), description: group.description.clone() };
            invalid(&DetailPage {
                ctx,
                org,
                section: "groups",
                group,
                people,
                rename,
                rename_errors: Errors::default(),
                add: form,
                add_errors: Errors(errors),
                notice: None,
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// Takes a person out of the group.
#[post("/o/{org}/admin/groups/{id}/members/{membership}/remove")]
async fn remove_member(
    state: web::Data<AppState>,
    caller: OrgAdmin,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, AppError> {
    let (_, id, membership) = path.into_inner();
    let OrgContext { org, actor: act, .. } = caller.0;
    let (act, org_id, gid) = (act, org.id.clone(), id.clone());
    with_conn(&state, move |c| Ok(groups::remove_member(c, &org_id, &gid, &membership, &act)?)).await?;
    Ok(see_other(&format!("/o/{}/admin/groups/{id}?done=removed", org.slug)))
}

#[derive(Deserialize)]
struct OwnerForm {
    /// `true` to make an owner, anything else to make a plain member.
    #[serde(default)]
    owner: String,
}

/// Makes a member an owner, or an owner a plain member.
#[post("/o/{org}/admin/groups/{id}/members/{membership}/owner")]
async fn set_owner(
    state: web::Data<AppState>,
    caller: OrgAdmin,
    path: web::Path<(String, String, String)>,
    form: web::Form<OwnerForm>,
) -> Result<HttpResponse, AppError> {
    let (_, id, membership) = path.into_inner();
    let OrgContext { org, actor: act, .. } = caller.0;
    let owner = form.owner == "true";
    let (act, org_id, gid) = (act, org.id.clone(), id.clone());
    with_conn(&state, move |c| Ok(groups::set_owner(c, &org_id, &gid, &membership, owner, &act)?)).await?;
    Ok(see_other(&format!("/o/{}/admin/groups/{id}?done=owner", org.slug)))
}
