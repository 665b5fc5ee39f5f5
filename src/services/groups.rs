//! Groups of people in one organization: create, rename, delete; members and owners.
//!
//! Anyone with a membership in the organization that was not removed can be put in a group:
//! members and guests, and pending guests too (a group only starts to matter for them once they
//! accept). Every function takes the organization's id and refuses ids of another one.

use std::collections::HashMap;

use diesel::prelude::*;

use crate::db::models::{Group, GroupMember, Membership, User};
use crate::db::schema::{app_assignments, group_members, memberships, org_groups, users};
use crate::db::{self, DbConnection};
use crate::domain::{Email, has_control_chars};
use crate::services::audit::{self, action};
use crate::services::{Actor, FieldErrors, ServiceError};

/// Longest group name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Longest group description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 500;

/// A group's name and description as typed.
#[derive(Debug, Clone, Default)]
pub struct GroupInput {
    pub name: String,
    pub description: String,
}

/// One person in a group.
#[derive(Debug, Clone)]
pub struct MemberRow {
    pub membership: Membership,
    pub user: User,
    pub is_owner: bool,
}

/// What [`add_member`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Added {
    New,
    MadeOwner,
    Unchanged,
}

/// The organization's groups, by name.
pub fn list(conn: &mut DbConnection, org_id: &str) -> QueryResult<Vec<Group>> {
    org_groups::table
        .filter(org_groups::org_id.eq(org_id))
        .order((org_groups::name.asc(), org_groups::id.asc()))
        .select(Group::as_select())
        .load(conn)
}

/// Number of people (not removed from the organization) in each group of the organization.
pub fn member_counts(conn: &mut DbConnection, org_id: &str) -> QueryResult<HashMap<String, i64>> {
    let rows: Vec<(String, i64)> = group_members::table
        .inner_join(org_groups::table)
        .inner_join(memberships::table)
        .filter(org_groups::org_id.eq(org_id))
        .filter(memberships::removed_at.is_null())
        .group_by(group_members::group_id)
        .select((group_members::group_id, diesel::dsl::count_star()))
        .load(conn)?;
    Ok(rows.into_iter().collect())
}

/// One group of the organization.
pub fn find(conn: &mut DbConnection, org_id: &str, group_id: &str) -> QueryResult<Option<Group>> {
    org_groups::table
        .filter(org_groups::org_id.eq(org_id))
        .filter(org_groups::id.eq(group_id))
        .select(Group::as_select())
        .first(conn)
        .optional()
}

/// The membership, not removed, of the person with this email address in the organization.
pub fn membership_by_email(conn: &mut DbConnection, org_id: &str, email: &Email) -> QueryResult<Option<Membership>> {
    memberships::table
        .inner_join(users::table)
        .filter(memberships::org_id.eq(org_id))
        .filter(memberships::removed_at.is_null())
        .filter(users::email.eq(email.as_str()))
        .select(Membership::as_select())
        .first(conn)
        .optional()
}

/// Finds the membership named by an email address typed in a form, or says what is wrong with it.
pub fn person_by_email(conn: &mut DbConnection, org_id: &str, email: &str) -> Result<Membership, ServiceError> {
    let email = match Email::parse(email) {
        Ok(e) => e,
        Err(crate::domain::email::EmailError::Empty) => return Err(ServiceError::field("email", "email.required")),
        Err(_) => return Err(ServiceError::field("email", "email.invalid")),
    };
    membership_by_email(conn, org_id, &email)?.ok_or_else(|| ServiceError::field("email", "groups.person_unknown"))
}

fn membership_in_org(conn: &mut DbConnection, org_id: &str, membership_id: &str) -> Result<Membership, ServiceError> {
    memberships::table
        .filter(memberships::id.eq(membership_id))
        .filter(memberships::org_id.eq(org_id))
        .filter(memberships::removed_at.is_null())
        .select(Membership::as_select())
        .first(conn)
        .optional()?
        .ok_or(ServiceError::NotFound)
}

fn existing(conn: &mut DbConnection, group_id: &str, membership_id: &str) -> QueryResult<Option<GroupMember>> {
    group_members::table.find((group_id, membership_id)).select(GroupMember::as_select()).first(conn).optional()
}

/// Checks a name and description; the name must be free in the organization (ignoring case),
/// except for the group `keep` itself when renaming.
fn validate(
    conn: &mut DbConnection,
    org_id: &str,
    input: &GroupInput,
    keep: Option<&str>,
) -> Result<(String, String), ServiceError> {
    let mut errors = FieldErrors::default();
    let name = input.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS || has_control_chars(&name) || name.contains('\n') {
        errors.add("name", "groups.name_invalid");
    } else {
        let lower = name.to_lowercase();
        let taken =
            list(conn, org_id)?.into_iter().any(|g| g.name.to_lowercase() == lower && Some(g.id.as_str()) != keep);
        if taken {
            errors.add("name", "groups.name_taken");
        }
    }
    let description = input.description.trim().replace("\r\n", "\n");
    if description.chars().count() > MAX_DESCRIPTION_CHARS || has_control_chars(&description) {
        errors.add("description", "groups.description_invalid");
    }
    if errors.is_empty() { Ok((name, description)) } else { Err(ServiceError::Invalid(errors)) }
}

/// Two admins racing to the same name: the database's unique index answers as a form error.
fn name_race(e: ServiceError) -> ServiceError {
    match e {
        ServiceError::Db(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => ServiceError::field("name", "groups.name_taken"),
        other => other,
    }
}

/// Creates a group.
pub fn create(conn: &mut DbConnection, org_id: &str, input: &GroupInput, actor: &Actor) -> Result<Group, ServiceError> {
    db::write_tx(conn, |conn| {
        let (name, description) = validate(conn, org_id, input, None)?;
        let group = Group { id: db::new_id(), org_id: org_id.to_owned(), name, description, created_at: db::now() };
        diesel::insert_into(org_groups::table).values(&group).execute(conn)?;
        let detail = serde_json::json!({ "name": group.name }).to_string();
        audit::record(conn, actor, Some(org_id), action::GROUP_CREATED, Some(&group.id), Some(&detail))?;
        Ok(group)
    })
    .map_err(name_race)
}

/// Renames a group (and sets its description).
pub fn rename(
    conn: &mut DbConnection,
    org_id: &str,
    group_id: &str,
    input: &GroupInput,
    actor: &Actor,
) -> Result<Group, ServiceError> {
    db::write_tx(conn, |conn| {
        let old = find(conn, org_id, group_id)?.ok_or(ServiceError::NotFound)?;
        let (name, description) = validate(conn, org_id, input, Some(group_id))?;
        diesel::update(org_groups::table.find(group_id))
            .set((org_groups::name.eq(&name), org_groups::description.eq(&description)))
            .execute(conn)?;
        let detail = serde_json::json!({ "from": old.name, "to": name, "description": description }).to_string();
        audit::record(conn, actor, Some(org_id), action::GROUP_RENAMED, Some(group_id), Some(&detail))?;
        Ok(Group { name, description, ..old })
    })
    .map_err(name_race)
}

/// Deletes a group, its member list and the apps given to it (the people keep their memberships).
pub fn delete(conn: &mut DbConnection, org_id: &str, group_id: &str, actor: &Actor) -> Result<(), ServiceError> {
    db::write_tx(conn, |conn| {
        let group = find(conn, org_id, group_id)?.ok_or(ServiceError::NotFound)?;
        diesel::delete(group_members::table.filter(group_members::group_id.eq(group_id))).execute(conn)?;
        diesel::delete(app_assignments::table.filter(app_assignments::group_id.eq(group_id))).execute(conn)?;
        diesel::delete(org_groups::table.find(group_id)).execute(conn)?;
        crate::services::oidc::access::revoke_unentitled_in_org(conn, org_id)?;
        let detail = serde_json::json!({ "name": group.name }).to_string();
        audit::record(conn, actor, Some(org_id), action::GROUP_DELETED, Some(group_id), Some(&detail))?;
        Ok(())
    })
}

/// The people of a group (not removed from the organization): owners first, then by name.
pub fn members(conn: &mut DbConnection, org_id: &str, group_id: &str) -> QueryResult<Vec<MemberRow>> {
    let rows: Vec<(GroupMember, Membership, User)> = group_members::table
        .inner_join(org_groups::table)
        .inner_join(memberships::table.inner_join(users::table))
        .filter(org_groups::org_id.eq(org_id))
        .filter(group_members::group_id.eq(group_id))
        .filter(memberships::removed_at.is_null())
        .order((group_members::is_owner.desc(), users::display_name.asc(), users::email.asc()))
        .select((GroupMember::as_select(), Membership::as_select(), User::as_select()))
        .load(conn)?;
    Ok(rows.into_iter().map(|(g, membership, user)| MemberRow { membership, user, is_owner: g.is_owner }).collect())
}

fn upsert_member(
    conn: &mut DbConnection,
    org_id: &str,
    group_id: &str,
    membership_id: &str,
    is_owner: bool,
) -> Result<Added, ServiceError> {
    find(conn, org_id, group_id)?.ok_or(ServiceError::NotFound)?;
    membership_in_org(conn, org_id, membership_id)?;
    match existing(conn, group_id, membership_id)? {
        Some(row) if is_owner && !row.is_owner => {
            diesel::update(group_members::table.find((group_id, membership_id)))
                .set(group_members::is_owner.eq(true))
                .execute(conn)?;
            Ok(Added::MadeOwner)
        }
        Some(_) => Ok(Added::Unchanged),
        None => {
            let row = GroupMember {
                group_id: group_id.to_owned(),
                membership_id: membership_id.to_owned(),
                is_owner,
                created_at: db::now(),
            };
            diesel::insert_into(group_members::table).values(&row).execute(conn)?;
            Ok(Added::New)
        }
    }
}

/// Puts a membership of the organization in one of its groups, as owner when `is_owner`.
/// Idempotent: adding someone already there changes nothing, except that `is_owner = true`
/// makes them an owner (adding never takes ownership away). Writes no audit event, so that
/// callers (such as redemption of an invitation naming groups) can record their own.
pub fn add_member(
    conn: &mut DbConnection,
    org_id: &str,
    group_id: &str,
    membership_id: &str,
    is_owner: bool,
) -> Result<(), ServiceError> {
    db::write_tx(conn, |conn| upsert_member(conn, org_id, group_id, membership_id, is_owner).map(|_| ()))
}

/// Adds the person with this email address (an admin typed it) to a group, with an audit event.
pub fn add_person(
    conn: &mut DbConnection,
    org_id: &str,
    group_id: &str,
    email: &str,
    is_owner: bool,
    actor: &Actor,
) -> Result<(), ServiceError> {
    db::write_tx(conn, |conn| {
        find(conn, org_id, group_id)?.ok_or(ServiceError::NotFound)?;
        let m = person_by_email(conn, org_id, email)?;
        let change = upsert_member(conn, org_id, group_id, &m.id, is_owner)?;
        let what = match change {
            Added::New => action::GROUP_MEMBER_ADDED,
            Added::MadeOwner => action::GROUP_OWNER_CHANGED,
            Added::Unchanged => return Ok(()),
        };
        let detail = serde_json::json!({ "membership_id": m.id, "owner": is_owner }).to_string();
        audit::record(conn, actor, Some(org_id), what, Some(group_id), Some(&detail))?;
        Ok(())
    })
}

/// Takes a membership out of a group.
pub fn remove_member(
    conn: &mut DbConnection,
    org_id: &str,
    group_id: &str,
    membership_id: &str,
    actor: &Actor,
) -> Result<(), ServiceError> {
    db::write_tx(conn, |conn| {
        find(conn, org_id, group_id)?.ok_or(ServiceError::NotFound)?;
        let n = diesel::delete(group_members::table.find((group_id, membership_id))).execute(conn)?;
        if n == 0 {
            return Err(ServiceError::NotFound);
        }
        crate::services::oidc::access::revoke_unentitled_in_org(conn, org_id)?;
        let detail = serde_json::json!({ "membership_id": membership_id }).to_string();
        audit::record(conn, actor, Some(org_id), action::GROUP_MEMBER_REMOVED, Some(group_id), Some(&detail))?;
        Ok(())
    })
}

/// Makes a member of a group an owner, or an owner a plain member.
pub fn set_owner(
    conn: &mut DbConnection,
    org_id: &str,
    group_id: &str,
    membership_id: &str,
    is_owner: bool,
    actor: &Actor,
) -> Result<(), ServiceError> {
    db::write_tx(conn, |conn| {
        find(conn, org_id, group_id)?.ok_or(ServiceError::NotFound)?;
        let row = existing(conn, group_id, membership_id)?.ok_or(ServiceError::NotFound)?;
        if row.is_owner == is_owner {
            return Ok(());
        }
        diesel::update(group_members::table.find((group_id, membership_id)))
            .set(group_members::is_owner.eq(is_owner))
            .execute(conn)?;
        let detail = serde_json::json!({ "membership_id": membership_id, "owner": is_owner }).to_string();
        audit::record(conn, actor, Some(org_id), action::GROUP_OWNER_CHANGED, Some(group_id), Some(&detail))?;
        Ok(())
    })
}

/// The groups of the organization that this membership owns.
pub fn owned_by(conn: &mut DbConnection, org_id: &str, membership_id: &str) -> QueryResult<Vec<Group>> {
    org_groups::table
        .inner_join(group_members::table)
        .filter(org_groups::org_id.eq(org_id))
        .filter(group_members::membership_id.eq(membership_id))
        .filter(group_members::is_owner.eq(true))
        .order((org_groups::name.asc(), org_groups::id.asc()))
        .select(Group::as_select())
        .load(conn)
}
