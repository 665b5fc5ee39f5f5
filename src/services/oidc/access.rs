//! Who may sign in to an app: decided at every authorization and every refresh from the
//! membership (accepted, not blocked, removed or left, before its end date) and the app's
//! assignment to the person or one of their groups; and the revocation of refresh tokens the
//! moment that answer turns to no.

use diesel::prelude::*;

use crate::db::models::{Invitation, Membership, Organization, User};
use crate::db::schema::{app_assignments, group_members, invitations, memberships, oidc_tokens, org_groups, users};
use crate::db::{self, DbConnection};
use crate::domain::{InvitationStatus, MembershipState};
use crate::services::orgs::{self, is_active};

/// The answer for one person, app and organization.
#[derive(Debug)]
pub enum Decision {
    /// Sign-in may go on.
    Allowed { membership: Box<Membership>, user: Box<User> },
    /// The person was invited and has not accepted yet: the consent page comes first.
    NeedsConsent { invitation: Box<Invitation>, user: User },
    /// No access; `ask` names whom to ask (sponsor, else inviter) when there is someone.
    Denied { ask: Option<Contact> },
}

/// Someone a refused person can ask for access.
#[derive(Debug, Clone)]
pub struct Contact {
    pub name: String,
    pub email: String,
}

/// True when the app is given to the membership directly or to one of its groups.
pub fn is_assigned(conn: &mut DbConnection, org_id: &str, app_id: &str, membership_id: &str) -> QueryResult<bool> {
    let direct: i64 = app_assignments::table
        .filter(app_assignments::app_id.eq(app_id))
        .filter(app_assignments::membership_id.eq(membership_id))
        .count()
        .get_result(conn)?;
    if direct > 0 {
        return Ok(true);
    }
    let group_ids: Vec<String> = group_members::table
        .inner_join(org_groups::table)
        .filter(org_groups::org_id.eq(org_id))
        .filter(group_members::membership_id.eq(membership_id))
        .select(group_members::group_id)
        .load(conn)?;
    if group_ids.is_empty() {
        return Ok(false);
    }
    let via_group: i64 = app_assignments::table
        .filter(app_assignments::app_id.eq(app_id))
        .filter(app_assignments::group_id.eq_any(group_ids.iter().map(|g| Some(g.as_str())).collect::<Vec<_>>()))
        .count()
        .get_result(conn)?;
    Ok(via_group > 0)
}

/// The live pending invitation of a membership, if any.
fn pending_invitation(conn: &mut DbConnection, m: &Membership, email: &str) -> QueryResult<Option<Invitation>> {
    invitations::table
        .filter(invitations::membership_id.eq(&m.id))
        .filter(invitations::status.eq(InvitationStatus::Pending))
        .filter(invitations::expires_at.gt(db::now()))
        .filter(invitations::email.eq(email))
        .order(invitations::created_at.desc())
        .select(Invitation::as_select())
        .first(conn)
        .optional()
}

/// Whom a refused person should ask: the sponsor, else the inviter.
fn contact(conn: &mut DbConnection, m: &Membership) -> QueryResult<Option<Contact>> {
    let Some(id) = m.sponsor_id.as_ref().or(m.invited_by.as_ref()) else { return Ok(None) };
    let u: Option<User> = users::table.find(id).select(User::as_select()).first(conn).optional()?;
    Ok(u.map(|u| Contact { name: u.display_name, email: u.email }))
}

/// Decides whether `user_id` may sign in to `app_id` of `org`.
pub fn decide(conn: &mut DbConnection, org: &Organization, app_id: &str, user_id: &str) -> QueryResult<Decision> {
    let Some(m) = orgs::membership_of(conn, &org.id, user_id)? else {
        return Ok(Decision::Denied { ask: None });
    };
    let usable = !m.blocked && m.removed_at.is_none() && m.left_at.is_none();
    if usable && m.state == MembershipState::PendingAcceptance {
        let user: User = users::table.find(user_id).select(User::as_select()).first(conn)?;
        if let Some(inv) = pending_invitation(conn, &m, &user.email)? {
            return Ok(Decision::NeedsConsent { invitation: Box::new(inv), user });
        }
    }
    if !is_active(&m) || !is_assigned(conn, &org.id, app_id, &m.id)? {
        return Ok(Decision::Denied { ask: contact(conn, &m)? });
    }
    let user: User = users::table.find(user_id).select(User::as_select()).first(conn)?;
    Ok(Decision::Allowed { membership: Box::new(m), user: Box::new(user) })
}

/// Revokes every live token of a membership (blocked, removed, left, access ended, reset).
pub fn revoke_for_membership(conn: &mut DbConnection, membership_id: &str) -> QueryResult<usize> {
    diesel::update(
        oidc_tokens::table
            .filter(oidc_tokens::membership_id.eq(membership_id))
            .filter(oidc_tokens::revoked_at.is_null()),
    )
    .set(oidc_tokens::revoked_at.eq(Some(db::now())))
    .execute(conn)
}

/// Revokes the live tokens of people who may no longer use the app (after an assignment was
/// taken back). Only memberships holding live tokens for the app are looked at.
pub fn revoke_unentitled_for_app(conn: &mut DbConnection, org_id: &str, app_id: &str) -> QueryResult<usize> {
    let holders: Vec<String> = oidc_tokens::table
        .filter(oidc_tokens::app_id.eq(app_id))
        .filter(oidc_tokens::revoked_at.is_null())
        .filter(oidc_tokens::expires_at.gt(db::now()))
        .select(oidc_tokens::membership_id)
        .distinct()
        .load(conn)?;
    let mut revoked = 0;
    for mid in holders {
        let active = memberships::table
            .find(&mid)
            .select(Membership::as_select())
            .first(conn)
            .optional()?
            .is_some_and(|m| is_active(&m));
        if !active || !is_assigned(conn, org_id, app_id, &mid)? {
            revoked += diesel::update(
                oidc_tokens::table
                    .filter(oidc_tokens::app_id.eq(app_id))
                    .filter(oidc_tokens::membership_id.eq(&mid))
                    .filter(oidc_tokens::revoked_at.is_null()),
            )
            .set(oidc_tokens::revoked_at.eq(Some(db::now())))
            .execute(conn)?;
        }
    }
    Ok(revoked)
}

/// [`revoke_unentitled_for_app`] for every app of the organization with live tokens (after a
/// group lost a member or was deleted).
pub fn revoke_unentitled_in_org(conn: &mut DbConnection, org_id: &str) -> QueryResult<usize> {
    let app_ids: Vec<String> = oidc_tokens::table
        .filter(oidc_tokens::org_id.eq(org_id))
        .filter(oidc_tokens::revoked_at.is_null())
        .filter(oidc_tokens::expires_at.gt(db::now()))
        .select(oidc_tokens::app_id)
        .distinct()
        .load(conn)?;
    let mut revoked = 0;
    for app_id in app_ids {
        revoked += revoke_unentitled_for_app(conn, org_id, &app_id)?;
    }
    Ok(revoked)
}
