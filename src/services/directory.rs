//! The org's people as the JSON API lists them (Graph `user`): filtered, sorted, and read in
//! keyset pages (by membership id, or by the sort key then the id).

use diesel::prelude::*;
use time::PrimitiveDateTime;

use crate::db::DbConnection;
use crate::db::models::{Membership, User};
use crate::db::schema::{invitations, memberships, users};
use crate::domain::MembershipState;

diesel::define_sql_function! {
    /// SQL `lower`, so that both sides of a comparison are folded by the same database.
    fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text;
}

/// Longest value a condition may hold (an address is at most 254 characters).
pub const MAX_VALUE_CHARS: usize = 254;

/// One condition of `$filter`; a filter holds them all (they are joined by `and`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// `userType eq`: `Guest` or `Member`.
    UserType(String),
    /// `externalUserState eq`: `PendingAcceptance` or `Accepted`.
    State(String),
    /// `mail eq` or `userPrincipalName eq`: the address, in any case.
    MailIs(String),
    /// `startswith(mail, …)`, in any case.
    MailStartsWith(String),
    /// `displayName eq`.
    DisplayNameIs(String),
    /// `startswith(displayName, …)`, in any case.
    DisplayNameStartsWith(String),
}

/// Filters of `GET /users`.
#[derive(Debug, Clone, Default)]
pub struct DirectoryFilter {
    pub conditions: Vec<Condition>,
}

/// What a list is sorted by (then by membership id, so that pages never overlap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    /// Membership id: stable, the default.
    #[default]
    Id,
    DisplayName,
    CreatedAt,
}

/// A sort key and its direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Order {
    pub key: SortKey,
    pub descending: bool,
}

/// Where the next page starts: just after this row of the previous one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum After {
    Id(String),
    DisplayName(String, String),
    CreatedAt(PrimitiveDateTime, String),
}

impl After {
    /// The position after `p` under `order`.
    pub fn of(p: &Person, order: Order) -> After {
        let id = p.membership.id.clone();
        match order.key {
            SortKey::Id => After::Id(id),
            SortKey::DisplayName => After::DisplayName(p.user.display_name.clone(), id),
            SortKey::CreatedAt => After::CreatedAt(p.membership.created_at, id),
        }
    }
}

/// A person of the org as the directory shows them.
#[derive(Debug, Clone)]
pub struct Person {
    pub membership: Membership,
    pub user: User,
    /// When the membership last changed state: accepted, or back to pending after a reset
    /// of its redemption (else its creation).
    pub state_changed_at: PrimitiveDateTime,
}

/// `LIKE` pattern of a prefix, `\` escaping the wildcards.
fn prefix_pattern(prefix: &str) -> String {
    let mut p = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '\\' | '%' | '_') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// The people of the org (not removed, not left) matching `$filter`, as a boxed query.
macro_rules! filtered {
    ($org_id:expr, $filter:expr) => {{
        let mut q = memberships::table
            .inner_join(users::table)
            .filter(memberships::org_id.eq($org_id.to_owned()))
            .filter(memberships::removed_at.is_null())
            .filter(memberships::left_at.is_null())
            .into_boxed();
        for c in &$filter.conditions {
            q = match c {
                Condition::UserType(t) => q.filter(memberships::user_type.eq(t.clone())),
                Condition::State(s) => q.filter(memberships::state.eq(s.clone())),
                Condition::MailIs(m) => q.filter(lower(users::email).eq(lower(m.clone()))),
                Condition::MailStartsWith(p) => {
                    q.filter(lower(users::email).like(lower(prefix_pattern(p))).escape('\\'))
                }
                Condition::DisplayNameIs(n) => q.filter(users::display_name.eq(n.clone())),
                Condition::DisplayNameStartsWith(p) => {
                    q.filter(lower(users::display_name).like(lower(prefix_pattern(p))).escape('\\'))
                }
            };
        }
        q
    }};
}

/// People of the org matching `filter`, sorted by `order`, after `after`; at most `top` rows,
/// and whether more follow.
pub fn page(
    conn: &mut DbConnection,
    org_id: &str,
    filter: &DirectoryFilter,
    order: Order,
    after: Option<&After>,
    top: i64,
) -> QueryResult<(Vec<Person>, bool)> {
    let mut q = filtered!(org_id, filter);
    let desc = order.descending;
    q = match after.cloned() {
        None => q,
        Some(After::Id(id)) if desc => q.filter(memberships::id.lt(id)),
        Some(After::Id(id)) => q.filter(memberships::id.gt(id)),
        Some(After::DisplayName(name, id)) if desc => {
            q.filter(users::display_name.lt(name.clone()).or(users::display_name.eq(name).and(memberships::id.lt(id))))
        }
        Some(After::DisplayName(name, id)) => {
            q.filter(users::display_name.gt(name.clone()).or(users::display_name.eq(name).and(memberships::id.gt(id))))
        }
        Some(After::CreatedAt(at, id)) if desc => {
            q.filter(memberships::created_at.lt(at).or(memberships::created_at.eq(at).and(memberships::id.lt(id))))
        }
        Some(After::CreatedAt(at, id)) => {
            q.filter(memberships::created_at.gt(at).or(memberships::created_at.eq(at).and(memberships::id.gt(id))))
        }
    };
    q = match (order.key, desc) {
        (SortKey::Id, false) => q.order(memberships::id.asc()),
        (SortKey::Id, true) => q.order(memberships::id.desc()),
        (SortKey::DisplayName, false) => q.order((users::display_name.asc(), memberships::id.asc())),
        (SortKey::DisplayName, true) => q.order((users::display_name.desc(), memberships::id.desc())),
        (SortKey::CreatedAt, false) => q.order((memberships::created_at.asc(), memberships::id.asc())),
        (SortKey::CreatedAt, true) => q.order((memberships::created_at.desc(), memberships::id.desc())),
    };
    let mut rows: Vec<(Membership, User)> =
        q.limit(top + 1).select((Membership::as_select(), User::as_select())).load(conn)?;
    let more = rows.len() as i64 > top;
    rows.truncate(top as usize);
    Ok((with_state_times(conn, rows)?, more))
}

/// How many people of the org match `filter` (`$count`).
pub fn count(conn: &mut DbConnection, org_id: &str, filter: &DirectoryFilter) -> QueryResult<i64> {
    filtered!(org_id, filter).count().get_result(conn)
}

/// Adds to each row when its state last changed.
fn with_state_times(conn: &mut DbConnection, rows: Vec<(Membership, User)>) -> QueryResult<Vec<Person>> {
    let pending: Vec<&str> =
        rows.iter().filter(|(m, _)| m.state != MembershipState::Accepted).map(|(m, _)| m.id.as_str()).collect();
    // A reset of the redemption puts an accepted person back to pending: the state changed then.
    let resets: Vec<(String, Option<PrimitiveDateTime>)> = if pending.is_empty() {
        Vec::new()
    } else {
        invitations::table
            .filter(invitations::membership_id.eq_any(&pending))
            .filter(invitations::reset.eq(true))
            .group_by(invitations::membership_id)
            .select((invitations::membership_id, diesel::dsl::max(invitations::created_at)))
            .load(conn)?
    };
    Ok(rows
        .into_iter()
        .map(|(membership, user)| {
            let state_changed_at = if membership.state == MembershipState::Accepted {
                membership.accepted_at.unwrap_or(membership.created_at)
            } else {
                let reset = resets.iter().find(|(id, _)| *id == membership.id).and_then(|(_, at)| *at);
                reset.map_or(membership.created_at, |at| at.max(membership.created_at))
            };
            Person { membership, user, state_changed_at }
        })
        .collect())
}

/// One person of the org (not removed, not left) by membership id.
pub fn find(conn: &mut DbConnection, org_id: &str, id: &str) -> QueryResult<Option<Person>> {
    let row: Option<(Membership, User)> = memberships::table
        .inner_join(users::table)
        .filter(memberships::org_id.eq(org_id))
        .filter(memberships::id.eq(id))
        .filter(memberships::removed_at.is_null())
        .filter(memberships::left_at.is_null())
        .select((Membership::as_select(), User::as_select()))
        .first(conn)
        .optional()?;
    Ok(with_state_times(conn, row.into_iter().collect())?.pop())
}

/// One person of the org by address (Graph accepts a user principal name where an id goes).
pub fn find_by_email(conn: &mut DbConnection, org_id: &str, email: &str) -> QueryResult<Option<Person>> {
    let filter = DirectoryFilter { conditions: vec![Condition::MailIs(email.to_owned())] };
    Ok(page(conn, org_id, &filter, Order::default(), None, 1)?.0.pop())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_escape_like_wildcards() {
        assert_eq!(prefix_pattern("a_b%c\\"), "a\\_b\\%c\\\\%");
        assert_eq!(prefix_pattern(""), "%");
    }
}
