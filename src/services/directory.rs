//! The org's people as the JSON API lists them (Graph `user`): keyset pages by membership id.

use diesel::prelude::*;

use crate::db::DbConnection;
use crate::db::models::{Membership, User};
use crate::db::schema::{memberships, users};

/// Filters of `GET /users` (`$filter` with `eq` only).
#[derive(Debug, Clone, Default)]
pub struct DirectoryFilter {
    /// `Guest` or `Member`.
    pub user_type: Option<String>,
    /// `PendingAcceptance` or `Accepted`.
    pub state: Option<String>,
}

/// People of the org (not removed, not left), by ascending membership id after `after`;
/// at most `top` rows, and whether more follow.
pub fn page(
    conn: &mut DbConnection,
    org_id: &str,
    filter: &DirectoryFilter,
    after: Option<&str>,
    top: i64,
) -> QueryResult<(Vec<(Membership, User)>, bool)> {
    let mut q = memberships::table
        .inner_join(users::table)
        .filter(memberships::org_id.eq(org_id))
        .filter(memberships::removed_at.is_null())
        .filter(memberships::left_at.is_null())
        .into_boxed();
    if let Some(t) = &filter.user_type {
        q = q.filter(memberships::user_type.eq(t.clone()));
    }
    if let Some(s) = &filter.state {
        q = q.filter(memberships::state.eq(s.clone()));
    }
    if let Some(id) = after {
        q = q.filter(memberships::id.gt(id.to_owned()));
    }
    let mut rows: Vec<(Membership, User)> = q
        .order(memberships::id.asc())
        .limit(top + 1)
        .select((Membership::as_select(), User::as_select()))
        .load(conn)?;
    let more = rows.len() as i64 > top;
    rows.truncate(top as usize);
    Ok((rows, more))
}

/// One person of the org (not removed, not left) by membership id.
pub fn find(conn: &mut DbConnection, org_id: &str, id: &str) -> QueryResult<Option<(Membership, User)>> {
    memberships::table
        .inner_join(users::table)
        .filter(memberships::org_id.eq(org_id))
        .filter(memberships::id.eq(id))
        .filter(memberships::removed_at.is_null())
        .filter(memberships::left_at.is_null())
        .select((Membership::as_select(), User::as_select()))
        .first(conn)
        .optional()
}
