//! Apps of an organization: the catalogue (name, URL, description, icon), who may use each app
//! (people directly, or groups), and what that gives: the tiles of My Apps and the origins a
//! guest may be sent to after redemption.

use diesel::prelude::*;
use time::PrimitiveDateTime;
use url::Url;

use crate::db::models::{App, AppAssignment, Group, Membership, User};
use crate::db::schema::{app_assignments, apps, group_members, memberships, org_groups, users};
use crate::db::{self, DbConnection};
use crate::domain::has_control_chars;
use crate::domain::icon::{self, IconKind};
use crate::domain::redirect::origin_of;
use crate::services::audit::{self, action};
use crate::services::{Actor, FieldErrors, ServiceError, groups};

/// Longest app name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Longest app description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 500;
/// Longest app URL, in bytes.
pub const MAX_URL_LEN: usize = 2000;

/// An app without its icon bytes (lists and pages never need them).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = apps)]
pub struct AppSummary {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub url: String,
    pub description: String,
    /// `Content-Type` of the icon; `None` when the app has none.
    pub icon_type: Option<String>,
    pub created_at: PrimitiveDateTime,
}

/// An app as an admin typed it; `icon` holds the uploaded bytes when a file was chosen.
#[derive(Debug, Clone, Default)]
pub struct AppInput {
    pub name: String,
    pub url: String,
    pub description: String,
    pub icon: Option<Vec<u8>>,
    /// Drop the current icon (and show the initial instead).
    pub remove_icon: bool,
}

/// A checked [`AppInput`].
#[derive(Debug, Clone)]
pub struct ValidApp {
    pub name: String,
    pub url: String,
    pub description: String,
    pub icon: Option<(Vec<u8>, IconKind)>,
    pub remove_icon: bool,
}

/// Who an app is given to.
#[derive(Debug, Clone)]
pub enum Assignee {
    /// A person: their membership, display name and email address.
    Person {
        membership_id: String,
        name: String,
        email: String,
    },
    Group(Group),
}

/// One line of an app's assignments.
#[derive(Debug, Clone)]
pub struct AssignmentRow {
    pub id: String,
    pub assignee: Assignee,
}

/// Checks an app URL: absolute, `https` (or `http` to localhost / 127.0.0.1), no credentials.
pub fn check_url(input: &str) -> Result<String, &'static str> {
    let s = input.trim();
    if s.is_empty() {
        return Err("apps.url_required");
    }
    let url = Url::parse(s).map_err(|_| "apps.url_invalid")?;
    if s.len() > MAX_URL_LEN
        || url.cannot_be_a_base()
        || url.host_str().is_none()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err("apps.url_invalid");
    }
    match url.scheme() {
        "https" => Ok(url.to_string()),
        "http" if matches!(url.host_str(), Some("localhost" | "127.0.0.1")) => Ok(url.to_string()),
        _ => Err("apps.url_insecure"),
    }
}

/// Checks what an admin typed and uploaded.
pub fn validate(input: &AppInput) -> Result<ValidApp, FieldErrors> {
    let mut errors = FieldErrors::default();
    let name = input.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS || has_control_chars(&name) || name.contains('\n') {
        errors.add("name", "apps.name_invalid");
    }
    let url = check_url(&input.url).map_err(|key| errors.add("url", key)).ok();
    let description = input.description.trim().replace("\r\n", "\n");
    if description.chars().count() > MAX_DESCRIPTION_CHARS || has_control_chars(&description) {
        errors.add("description", "apps.description_invalid");
    }
    let icon = match input.icon.as_deref().filter(|b| !b.is_empty()) {
        None => None,
        Some(bytes) => match icon::sniff(bytes) {
            Ok(kind) => Some((bytes.to_vec(), kind)),
            Err(problem) => {
                errors.add("icon", problem.message_key());
                None
            }
        },
    };
    match url {
        Some(url) if errors.is_empty() => Ok(ValidApp { name, url, description, icon, remove_icon: input.remove_icon }),
        _ => Err(errors),
    }
}

/// The organization's apps, by name.
pub fn list(conn: &mut DbConnection, org_id: &str) -> QueryResult<Vec<AppSummary>> {
    apps::table
        .filter(apps::org_id.eq(org_id))
        .order((apps::name.asc(), apps::id.asc()))
        .select(AppSummary::as_select())
        .load(conn)
}

/// One app of the organization.
pub fn find(conn: &mut DbConnection, org_id: &str, app_id: &str) -> QueryResult<Option<AppSummary>> {
    apps::table
        .filter(apps::org_id.eq(org_id))
        .filter(apps::id.eq(app_id))
        .select(AppSummary::as_select())
        .first(conn)
        .optional()
}

/// The icon of an app: its bytes and `Content-Type`.
pub fn icon(conn: &mut DbConnection, org_id: &str, app_id: &str) -> QueryResult<Option<(Vec<u8>, String)>> {
    let row: Option<(Option<Vec<u8>>, Option<String>)> = apps::table
        .filter(apps::org_id.eq(org_id))
        .filter(apps::id.eq(app_id))
        .select((apps::icon, apps::icon_type))
        .first(conn)
        .optional()?;
    Ok(match row {
        Some((Some(bytes), Some(ct))) => Some((bytes, ct)),
        _ => None,
    })
}

/// Creates an app.
pub fn create(
    conn: &mut DbConnection,
    org_id: &str,
    app: &ValidApp,
    actor: &Actor,
) -> Result<AppSummary, ServiceError> {
    let row = App {
        id: db::new_id(),
        org_id: org_id.to_owned(),
        name: app.name.clone(),
        url: app.url.clone(),
        description: app.description.clone(),
        icon: app.icon.as_ref().map(|(b, _)| b.clone()),
        icon_type: app.icon.as_ref().map(|(_, k)| k.content_type().to_owned()),
        created_at: db::now(),
    };
    db::write_tx(conn, |conn| {
        diesel::insert_into(apps::table).values(&row).execute(conn)?;
        let detail = serde_json::json!({ "name": row.name, "url": row.url, "icon": row.icon_type }).to_string();
        audit::record(conn, actor, Some(org_id), action::APP_CREATED, Some(&row.id), Some(&detail))
    })?;
    Ok(AppSummary {
        id: row.id,
        org_id: row.org_id,
        name: row.name,
        url: row.url,
        description: row.description,
        icon_type: row.icon_type,
        created_at: row.created_at,
    })
}

/// Saves an app's fields; replaces the icon when a new one was uploaded, drops it when asked.
pub fn update(
    conn: &mut DbConnection,
    org_id: &str,
    app_id: &str,
    app: &ValidApp,
    actor: &Actor,
) -> Result<AppSummary, ServiceError> {
    db::write_tx(conn, |conn| {
        find(conn, org_id, app_id)?.ok_or(ServiceError::NotFound)?;
        diesel::update(apps::table.find(app_id))
            .set((apps::name.eq(&app.name), apps::url.eq(&app.url), apps::description.eq(&app.description)))
            .execute(conn)?;
        if let Some((bytes, kind)) = &app.icon {
            diesel::update(apps::table.find(app_id))
                .set((apps::icon.eq(Some(bytes)), apps::icon_type.eq(Some(kind.content_type()))))
                .execute(conn)?;
        } else if app.remove_icon {
            diesel::update(apps::table.find(app_id))
                .set((apps::icon.eq(None::<Vec<u8>>), apps::icon_type.eq(None::<String>)))
                .execute(conn)?;
        }
        let detail = serde_json::json!({
            "name": app.name, "url": app.url,
            "icon": if app.icon.is_some() { "replaced" } else if app.remove_icon { "removed" } else { "kept" },
        })
        .to_string();
        audit::record(conn, actor, Some(org_id), action::APP_UPDATED, Some(app_id), Some(&detail))?;
        find(conn, org_id, app_id)?.ok_or(ServiceError::NotFound)
    })
}

/// Deletes an app and its assignments.
pub fn delete(conn: &mut DbConnection, org_id: &str, app_id: &str, actor: &Actor) -> Result<(), ServiceError> {
    db::write_tx(conn, |conn| {
        let app = find(conn, org_id, app_id)?.ok_or(ServiceError::NotFound)?;
        diesel::delete(app_assignments::table.filter(app_assignments::app_id.eq(app_id))).execute(conn)?;
        diesel::delete(apps::table.find(app_id)).execute(conn)?;
        let detail = serde_json::json!({ "name": app.name, "url": app.url }).to_string();
        audit::record(conn, actor, Some(org_id), action::APP_DELETED, Some(app_id), Some(&detail))?;
        Ok(())
    })
}

/// Who an app is given to: people (not removed from the organization) by name, then groups.
pub fn assignments(conn: &mut DbConnection, org_id: &str, app_id: &str) -> QueryResult<Vec<AssignmentRow>> {
    let people: Vec<(String, Membership, User)> = app_assignments::table
        .inner_join(apps::table)
        .inner_join(memberships::table.on(app_assignments::membership_id.eq(memberships::id.nullable())))
        .inner_join(users::table.on(users::id.eq(memberships::user_id)))
        .filter(apps::org_id.eq(org_id))
        .filter(app_assignments::app_id.eq(app_id))
        .filter(memberships::removed_at.is_null())
        .order((users::display_name.asc(), users::email.asc()))
        .select((app_assignments::id, Membership::as_select(), User::as_select()))
        .load(conn)?;
    let teams: Vec<(String, Group)> = app_assignments::table
        .inner_join(apps::table)
        .inner_join(org_groups::table.on(app_assignments::group_id.eq(org_groups::id.nullable())))
        .filter(apps::org_id.eq(org_id))
        .filter(app_assignments::app_id.eq(app_id))
        .order(org_groups::name.asc())
        .select((app_assignments::id, Group::as_select()))
        .load(conn)?;
    let people = people.into_iter().map(|(id, membership, user)| AssignmentRow {
        id,
        assignee: Assignee::Person { membership_id: membership.id, name: user.display_name, email: user.email },
    });
    let teams = teams.into_iter().map(|(id, g)| AssignmentRow { id, assignee: Assignee::Group(g) });
    Ok(people.chain(teams).collect())
}

fn new_assignment(app_id: &str, membership_id: Option<&str>, group_id: Option<&str>) -> AppAssignment {
    AppAssignment {
        id: db::new_id(),
        app_id: app_id.to_owned(),
        membership_id: membership_id.map(str::to_owned),
        group_id: group_id.map(str::to_owned),
        created_at: db::now(),
    }
}

/// Gives an app to a membership; true when it was not given yet.
fn give_to_membership(
    conn: &mut DbConnection,
    org_id: &str,
    app_id: &str,
    membership_id: &str,
) -> Result<bool, ServiceError> {
    find(conn, org_id, app_id)?.ok_or(ServiceError::NotFound)?;
    let member: i64 = memberships::table
        .filter(memberships::id.eq(membership_id))
        .filter(memberships::org_id.eq(org_id))
        .filter(memberships::removed_at.is_null())
        .count()
        .get_result(conn)?;
    if member == 0 {
        return Err(ServiceError::NotFound);
    }
    let already: i64 = app_assignments::table
        .filter(app_assignments::app_id.eq(app_id))
        .filter(app_assignments::membership_id.eq(membership_id))
        .count()
        .get_result(conn)?;
    if already > 0 {
        return Ok(false);
    }
    diesel::insert_into(app_assignments::table)
        .values(&new_assignment(app_id, Some(membership_id), None))
        .execute(conn)?;
    Ok(true)
}

/// Gives an app of the organization to one of its memberships (pending ones too: the app shows
/// once they accept). Idempotent; writes no audit event, so that callers can record their own.
pub fn assign_membership(
    conn: &mut DbConnection,
    org_id: &str,
    app_id: &str,
    membership_id: &str,
) -> Result<(), ServiceError> {
    db::write_tx(conn, |conn| give_to_membership(conn, org_id, app_id, membership_id).map(|_| ()))
}

/// Gives an app to the person with this email address (an admin typed it), with an audit event.
pub fn assign_by_email(
    conn: &mut DbConnection,
    org_id: &str,
    app_id: &str,
    email: &str,
    actor: &Actor,
) -> Result<(), ServiceError> {
    db::write_tx(conn, |conn| {
        find(conn, org_id, app_id)?.ok_or(ServiceError::NotFound)?;
        let m = groups::person_by_email(conn, org_id, email)?;
        if give_to_membership(conn, org_id, app_id, &m.id)? {
            let detail = serde_json::json!({ "membership_id": m.id }).to_string();
            audit::record(conn, actor, Some(org_id), action::APP_ASSIGNED, Some(app_id), Some(&detail))?;
        }
        Ok(())
    })
}

/// Gives an app to a group of the organization, with an audit event. Idempotent.
pub fn assign_group(
    conn: &mut DbConnection,
    org_id: &str,
    app_id: &str,
    group_id: &str,
    actor: &Actor,
) -> Result<(), ServiceError> {
    db::write_tx(conn, |conn| {
        find(conn, org_id, app_id)?.ok_or(ServiceError::NotFound)?;
        groups::find(conn, org_id, group_id)?.ok_or_else(|| ServiceError::field("group_id", "apps.group_unknown"))?;
        let already: i64 = app_assignments::table
            .filter(app_assignments::app_id.eq(app_id))
            .filter(app_assignments::group_id.eq(group_id))
            .count()
            .get_result(conn)?;
        if already == 0 {
            diesel::insert_into(app_assignments::table)
                .values(&new_assignment(app_id, None, Some(group_id)))
                .execute(conn)?;
            let detail = serde_json::json!({ "group_id": group_id }).to_string();
            audit::record(conn, actor, Some(org_id), action::APP_ASSIGNED, Some(app_id), Some(&detail))?;
        }
        Ok(())
    })
}

/// Takes an assignment back.
pub fn unassign(
    conn: &mut DbConnection,
    org_id: &str,
    app_id: &str,
    assignment_id: &str,
    actor: &Actor,
) -> Result<(), ServiceError> {
    db::write_tx(conn, |conn| {
        find(conn, org_id, app_id)?.ok_or(ServiceError::NotFound)?;
        let row: AppAssignment = app_assignments::table
            .filter(app_assignments::id.eq(assignment_id))
            .filter(app_assignments::app_id.eq(app_id))
            .select(AppAssignment::as_select())
            .first(conn)
            .optional()?
            .ok_or(ServiceError::NotFound)?;
        diesel::delete(app_assignments::table.find(&row.id)).execute(conn)?;
        crate::services::oidc::access::revoke_unentitled_for_app(conn, org_id, app_id)?;
        let detail = serde_json::json!({ "membership_id": row.membership_id, "group_id": row.group_id }).to_string();
        audit::record(conn, actor, Some(org_id), action::APP_UNASSIGNED, Some(app_id), Some(&detail))?;
        Ok(())
    })
}

/// The apps a membership may use: given to it directly or to a group it is in; by name.
/// Callers check that the membership is active (accepted, not blocked, not removed).
pub fn for_membership(conn: &mut DbConnection, org_id: &str, membership_id: &str) -> QueryResult<Vec<AppSummary>> {
    let group_ids: Vec<String> = group_members::table
        .inner_join(org_groups::table)
        .filter(org_groups::org_id.eq(org_id))
        .filter(group_members::membership_id.eq(membership_id))
        .select(group_members::group_id)
        .load(conn)?;
    let app_ids: Vec<String> = app_assignments::table
        .filter(
            app_assignments::membership_id
                .eq(membership_id)
                .or(app_assignments::group_id.eq_any(group_ids.iter().map(|g| Some(g.as_str())).collect::<Vec<_>>())),
        )
        .select(app_assignments::app_id)
        .load(conn)?;
    apps::table
        .filter(apps::org_id.eq(org_id))
        .filter(apps::id.eq_any(&app_ids))
        .order((apps::name.asc(), apps::id.asc()))
        .select(AppSummary::as_select())
        .load(conn)
}

/// The origins (`scheme://host[:port]`) of the organization's app URLs, each once: a guest may
/// be sent to any of them after redemption, like the origins of the redirect allow-list.
pub fn origins(conn: &mut DbConnection, org_id: &str) -> QueryResult<Vec<String>> {
    let urls: Vec<String> = apps::table.filter(apps::org_id.eq(org_id)).select(apps::url).load(conn)?;
    let mut out: Vec<String> = Vec::new();
    for origin in urls.iter().filter_map(|u| Url::parse(u).ok()).map(|u| origin_of(&u)) {
        if !out.contains(&origin) {
            out.push(origin);
        }
    }
    Ok(out)
}
