//! The people of an organization as admins see them: list, detail, removal; and leaving.

use std::collections::HashMap;

use diesel::prelude::*;
use time::PrimitiveDateTime;

use crate::db::models::{Invitation, Membership, Organization, OutboxMessage, User};
use crate::db::schema::{invitations, memberships, outbox, users};
use crate::db::{self, DbConnection};
use crate::domain::InvitationStatus;
use crate::domain::OutboxStatus;
use crate::services::audit::{self, action};
use crate::services::sessions::end_all as end_all_sessions;
use crate::services::{Actor, ServiceError};

/// Page size of the users list.
pub const PAGE_SIZE: i64 = 50;

/// Filters of the users list.
#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    /// `Member` or `Guest`.
    pub user_type: Option<String>,
    /// `PendingAcceptance` or `Accepted`.
    pub state: Option<String>,
    /// Prefix of the email address or of the display name (case-insensitive).
    pub search: Option<String>,
    /// Keyset cursor: created_at and id of the last row of the previous page.
    pub after: Option<(PrimitiveDateTime, String)>,
    /// Only people without a (confirmed) second factor.
    pub no_second_factor: bool,
}

/// One line of the users list.
#[derive(Debug, Clone)]
pub struct UserRow {
    pub membership: Membership,
    pub user: User,
    pub inviter_name: Option<String>,
    /// Status of the newest invitation email: queued, sending, sent, failed; None if no email.
    pub email_status: Option<OutboxStatus>,
}

/// A page of the users list, with the cursor of the next page if there is one.
pub struct UserPage {
    pub rows: Vec<UserRow>,
    pub next: Option<(PrimitiveDateTime, String)>,
}

/// The highest Unicode scalar: `prefix..prefix+MAX` is a byte-order prefix range.
const PREFIX_END: char = '\u{10FFFF}';

/// Most accounts a search considers; a broader prefix shows the newest of these.
pub const SEARCH_CAP: i64 = 1000;

/// Ids of accounts whose email, or display name, starts with `search` (case-insensitive).
fn matching_user_ids(conn: &mut DbConnection, search: &str) -> QueryResult<Vec<String>> {
    let lo = search.to_lowercase();
    let hi = format!("{lo}{PREFIX_END}");
    let mut ids: Vec<String> = users::table
        .filter(users::email.ge(&lo).and(users::email.lt(&hi)))
        .select(users::id)
        .limit(SEARCH_CAP)
        .load(conn)?;
    if !lo.contains('@') {
        let by_name: Vec<String> = users::table
            .filter(users::name_search.ge(&lo).and(users::name_search.lt(&hi)))
            .select(users::id)
            .limit(SEARCH_CAP)
            .load(conn)?;
        ids.extend(by_name);
        ids.sort();
        ids.dedup();
    }
    Ok(ids)
}

/// Extra states the users list can filter on, beyond PendingAcceptance and Accepted.
pub mod list_state {
    pub const BLOCKED: &str = "Blocked";
    pub const LEFT: &str = "Left";
    /// Access ends within 30 days.
    pub const ENDING: &str = "EndingSoon";
    /// Removed less than 30 days ago (restorable).
    pub const REMOVED: &str = "Removed";
}

/// Lists the org's people, newest first, using an index for the first page and for searches.
pub fn list(conn: &mut DbConnection, org_id: &str, filter: &UserFilter) -> QueryResult<UserPage> {
    // Memberships alone first (the (org_id, created_at, id) index gives the page in order without
    // a join or a sort, whatever the planner's statistics), then their accounts by id.
    let mut q = memberships::table.filter(memberships::org_id.eq(org_id)).into_boxed();
    if filter.state.as_deref() == Some(list_state::REMOVED) {
        q = q.filter(memberships::removed_at.gt(db::now() - crate::services::lifecycle::RESTORE_WINDOW));
    } else {
        q = q.filter(memberships::removed_at.is_null());
    }
    if let Some(t) = &filter.user_type {
        q = q.filter(memberships::user_type.eq(t.clone()));
    }
    match filter.state.as_deref() {
        Some(list_state::BLOCKED) => q = q.filter(memberships::blocked.eq(true)),
        Some(list_state::LEFT) => q = q.filter(memberships::left_at.is_not_null()),
        Some(list_state::ENDING) => {
            q = q
                .filter(memberships::access_ends_at.le(db::now() + time::Duration::days(30)))
                .filter(memberships::blocked.eq(false))
        }
        Some(list_state::REMOVED) | None => {}
        Some(s) => q = q.filter(memberships::state.eq(s.to_owned())).filter(memberships::left_at.is_null()),
    }
    if filter.no_second_factor {
        // A subquery, not a list of ids: no parameter limit however many are enrolled.
        use crate::db::schema::second_factors;
        let enrolled =
            second_factors::table.filter(second_factors::confirmed_at.is_not_null()).select(second_factors::user_id);
        q = q.filter(diesel::dsl::not(memberships::user_id.eq_any(enrolled)));
    }
    if let Some((at, id)) = &filter.after {
        q = q.filter(
            memberships::created_at.lt(*at).or(memberships::created_at.eq(*at).and(memberships::id.lt(id.clone()))),
        );
    }
    let search = filter.search.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let page: Vec<Membership> = if let Some(search) = search {
        // Find the matching accounts through the email and name indexes first (at most
        // 2 × SEARCH_CAP), then their memberships in this org through the (org_id, user_id)
        // unique index. No ORDER BY here: with one, a planner may prefer walking the whole
        // organization in created_at order and testing each row; the few matches are sorted
        // below instead.
        let ids = matching_user_ids(conn, search)?;
        let mut found: Vec<Membership> = if ids.is_empty() {
            Vec::new()
        } else {
            q.filter(memberships::user_id.eq_any(ids)).select(Membership::as_select()).load(conn)?
        };
        found.sort_unstable_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        found.truncate(PAGE_SIZE as usize + 1);
        found
    } else {
        q.order((memberships::created_at.desc(), memberships::id.desc()))
            .limit(PAGE_SIZE + 1)
            .select(Membership::as_select())
            .load(conn)?
    };
    let user_ids: Vec<String> = page.iter().map(|m| m.user_id.clone()).collect();
    let mut accounts: HashMap<String, User> = if user_ids.is_empty() {
        HashMap::new()
    } else {
        users::table
            .filter(users::id.eq_any(&user_ids))
            .select(User::as_select())
            .load(conn)?
            .into_iter()
            .map(|u| (u.id.clone(), u))
            .collect()
    };
    let mut rows: Vec<(Membership, User)> =
        page.into_iter().filter_map(|m| accounts.remove(&m.user_id).map(|u| (m, u))).collect();
    let next = if rows.len() as i64 > PAGE_SIZE {
        rows.truncate(PAGE_SIZE as usize);
        rows.last().map(|(m, _)| (m.created_at, m.id.clone()))
    } else {
        None
    };
    let inviter_ids: Vec<String> = rows.iter().filter_map(|(m, _)| m.invited_by.clone()).collect();
    // Each lookup below is skipped when it has nothing to look up (an empty page, no inviter).
    let inviters: HashMap<String, String> = if inviter_ids.is_empty() {
        HashMap::new()
    } else {
        users::table
            .filter(users::id.eq_any(&inviter_ids))
            .select((users::id, users::display_name))
            .load::<(String, String)>(conn)?
            .into_iter()
            .collect()
    };
    let membership_ids: Vec<String> = rows.iter().map(|(m, _)| m.id.clone()).collect();
    let invites: Vec<(String, String)> = if membership_ids.is_empty() {
        Vec::new()
    } else {
        invitations::table
            .filter(invitations::membership_id.eq_any(&membership_ids))
            .order(invitations::created_at.asc())
            .select((invitations::membership_id, invitations::id))
            .load(conn)?
    };
    let latest_invite: HashMap<String, String> = invites.into_iter().collect();
    let invite_ids: Vec<String> = latest_invite.values().cloned().collect();
    let mails: Vec<(Option<String>, OutboxStatus)> = if invite_ids.is_empty() {
        Vec::new()
    } else {
        outbox::table
            .filter(outbox::invitation_id.eq_any(&invite_ids))
            .filter(outbox::kind.eq(crate::mail::messages::KIND_INVITATION))
            .order(outbox::created_at.asc())
            .select((outbox::invitation_id, outbox::status))
            .load(conn)?
    };
    let mail_status: HashMap<String, OutboxStatus> = mails.into_iter().filter_map(|(i, s)| i.map(|i| (i, s))).collect();
    let rows = rows
        .into_iter()
        .map(|(membership, user)| {
            let inviter_name = membership.invited_by.as_ref().and_then(|id| inviters.get(id).cloned());
            let email_status = latest_invite.get(&membership.id).and_then(|inv| mail_status.get(inv).copied());
            UserRow { membership, user, inviter_name, email_status }
        })
        .collect();
    Ok(UserPage { rows, next })
}

/// Everything the guest page shows.
pub struct UserDetail {
    pub membership: Membership,
    pub user: User,
    pub inviter: Option<User>,
    pub invitation: Option<Invitation>,
    pub delivery: Option<OutboxMessage>,
}

/// One member or guest of the org, by membership id.
pub fn detail(conn: &mut DbConnection, org_id: &str, membership_id: &str) -> QueryResult<Option<UserDetail>> {
    let found: Option<(Membership, User)> = memberships::table
        .inner_join(users::table)
        .filter(memberships::org_id.eq(org_id))
        .filter(memberships::id.eq(membership_id))
        .filter(
            memberships::removed_at
                .is_null()
                .or(memberships::removed_at.gt(db::now() - crate::services::lifecycle::RESTORE_WINDOW)),
        )
        .select((Membership::as_select(), User::as_select()))
        .first(conn)
        .optional()?;
    let Some((membership, user)) = found else {
        return Ok(None);
    };
    let inviter = match &membership.invited_by {
        Some(id) => users::table.find(id).select(User::as_select()).first(conn).optional()?,
        None => None,
    };
    let invitation = crate::services::invitations::latest_for_membership(conn, &membership.id)?;
    let delivery = match &invitation {
        Some(inv) => crate::services::invitations::delivery_of(conn, &inv.id)?,
        None => None,
    };
    Ok(Some(UserDetail { membership, user, inviter, invitation, delivery }))
}

/// Removes a person from the organization: soft delete (restorable later), pending
/// invitations revoked, and every session of theirs ended at once.
pub fn remove(
    conn: &mut DbConnection,
    org: &Organization,
    membership_id: &str,
    actor: &Actor,
) -> Result<(), ServiceError> {
    db::write_tx(conn, |conn| {
        let m: Membership = memberships::table
            .filter(memberships::org_id.eq(&org.id))
            .filter(memberships::id.eq(membership_id))
            .filter(memberships::removed_at.is_null())
            .select(Membership::as_select())
            .first(conn)
            .optional()?
            .ok_or(ServiceError::NotFound)?;
        if actor.user_id.as_deref() == Some(m.user_id.as_str()) {
            return Err(ServiceError::Forbidden);
        }
        let now = db::now();
        // A removed person keeps no role: a later restore or re-invitation does not bring it back.
        diesel::update(memberships::table.find(&m.id))
            .set((memberships::removed_at.eq(Some(now)), memberships::role.eq(crate::domain::Role::None)))
            .execute(conn)?;
        diesel::update(
            invitations::table
                .filter(invitations::membership_id.eq(&m.id))
                .filter(invitations::status.eq(InvitationStatus::Pending)),
        )
        .set((invitations::status.eq(InvitationStatus::Revoked), invitations::revoked_at.eq(Some(now))))
        .execute(conn)?;
        end_all_sessions(conn, &m.user_id)?;
        crate::services::oidc::access::revoke_for_membership(conn, &m.id)?;
        audit::record(conn, actor, Some(&org.id), action::MEMBER_REMOVED, Some(&m.user_id), None)?;
        Ok(())
    })
}

/// The signed-in guest leaves the organization (admins cannot leave this way).
pub fn leave(conn: &mut DbConnection, org: &Organization, user_id: &str, actor: &Actor) -> Result<(), ServiceError> {
    db::write_tx(conn, |conn| {
        let m = crate::services::orgs::membership_of(conn, &org.id, user_id)?.ok_or(ServiceError::NotFound)?;
        if m.role == crate::domain::Role::Admin {
            return Err(ServiceError::Forbidden);
        }
        if m.left_at.is_some() {
            return Err(ServiceError::WrongState);
        }
        diesel::update(memberships::table.find(&m.id)).set(memberships::left_at.eq(Some(db::now()))).execute(conn)?;
        crate::services::oidc::access::revoke_for_membership(conn, &m.id)?;
        audit::record(conn, actor, Some(&org.id), action::MEMBER_LEFT, Some(user_id), None)?;
        Ok(())
    })
}
