//! Session rows: the one place that reads and writes the `sessions` table. The session store
//! (`web::session_store`) keeps actix-session's state here; lifecycle actions end sessions here;
//! `/account` lists a person's own sessions and signs out everywhere else.
//!
//! Session rows are keyed by the SHA-256 of the cookie's key, which handlers never see. To
//! tell the current session from the others, sign-in puts a random marker (`sid`) in the
//! session state; a session renewed with the same state keeps its marker.

use std::collections::HashMap;

use diesel::prelude::*;
use time::PrimitiveDateTime;

use crate::db::models::SessionRow;
use crate::db::schema::sessions;
use crate::db::{self, DbConnection};
use crate::services::audit::{self, action};
use crate::services::{Actor, ServiceError};

/// A session lives at most this long, however active (design: absolute timeout 12 h).
pub const ABSOLUTE_TTL: time::Duration = time::Duration::hours(12);
/// Idle timeout: the session dies after this long without a request.
pub const IDLE_TTL: time::Duration = time::Duration::minutes(30);

/// The live row of a session key's hash, if any.
pub fn load_live(conn: &mut DbConnection, id_hash: &str) -> QueryResult<Option<SessionRow>> {
    let now = db::now();
    sessions::table
        .filter(sessions::id_hash.eq(id_hash))
        .filter(sessions::expires_at.gt(now))
        .filter(sessions::created_at.gt(now - ABSOLUTE_TTL))
        .select(SessionRow::as_select())
        .first(conn)
        .optional()
}

/// Stores a new session row, and drops rows dead for a day (clean-up without a cron job).
pub fn insert(conn: &mut DbConnection, row: &SessionRow) -> QueryResult<()> {
    diesel::insert_into(sessions::table).values(row).execute(conn)?;
    diesel::delete(sessions::table.filter(sessions::expires_at.lt(row.created_at - time::Duration::days(1))))
        .execute(conn)?;
    Ok(())
}

/// Saves the state of a live session and pushes its idle expiry; false when the row is gone.
pub fn update_state(conn: &mut DbConnection, id_hash: &str, state: &str, user_id: Option<&str>) -> QueryResult<bool> {
    let now = db::now();
    let n = diesel::update(sessions::table.filter(sessions::id_hash.eq(id_hash)).filter(sessions::expires_at.gt(now)))
        .set((sessions::state.eq(state), sessions::user_id.eq(user_id), sessions::expires_at.eq(now + IDLE_TTL)))
        .execute(conn)?;
    Ok(n > 0)
}

/// Pushes the idle expiry of a live session to `expires_at`.
pub fn extend(conn: &mut DbConnection, id_hash: &str, expires_at: PrimitiveDateTime) -> QueryResult<()> {
    diesel::update(sessions::table.filter(sessions::id_hash.eq(id_hash)).filter(sessions::expires_at.gt(db::now())))
        .set(sessions::expires_at.eq(expires_at))
        .execute(conn)?;
    Ok(())
}

/// Ends one session (sign-out).
pub fn delete(conn: &mut DbConnection, id_hash: &str) -> QueryResult<()> {
    diesel::delete(sessions::table.filter(sessions::id_hash.eq(id_hash))).execute(conn)?;
    Ok(())
}

/// Ends every session of a user (blocking, removal, password reset).
pub fn end_all(conn: &mut DbConnection, user_id: &str) -> QueryResult<usize> {
    diesel::delete(sessions::table.filter(sessions::user_id.eq(user_id))).execute(conn)
}

/// Session-state key of the marker that identifies one sign-in.
pub const SID_KEY: &str = "sid";
/// Session key of the time of sign-in (unix seconds): the `auth_time` of OpenID Connect.
pub const AUTH_TIME_KEY: &str = "auth_time";
/// Session key of how the person signed in: RFC 8176 `amr` values (`pwd`, `otp`, `mfa`, `fed`).
pub const AMR_KEY: &str = "amr";
/// Session-state key of the browser's User-Agent (copied to `sessions.user_agent` on save).
pub const USER_AGENT_KEY: &str = "ua";
/// Session-state key of the client address (copied to `sessions.client_ip` on save).
pub const CLIENT_IP_KEY: &str = "ip";
/// Longest User-Agent kept, in characters.
pub const MAX_USER_AGENT_CHARS: usize = 200;

/// One live session of a person, as `/account` lists it.
#[derive(Debug, Clone)]
pub struct MySession {
    pub created_at: PrimitiveDateTime,
    /// Time of the last request, give or take a minute (the idle expiry moves with each one).
    pub last_active: PrimitiveDateTime,
    pub user_agent: Option<String>,
    pub client_ip: Option<String>,
    /// True for the session that is asking.
    pub current: bool,
}

/// The `sid` marker stored in a session row's state, if any.
fn sid_of(state_json: &str) -> Option<String> {
    let state: HashMap<String, String> = serde_json::from_str(state_json).ok()?;
    serde_json::from_str::<String>(state.get(SID_KEY)?).ok()
}

/// The live sessions of `user_id`, the current one (marker `current_sid`) first, then newest first.
pub fn list_for_user(conn: &mut DbConnection, user_id: &str, current_sid: Option<&str>) -> QueryResult<Vec<MySession>> {
    let now = db::now();
    let rows: Vec<SessionRow> = sessions::table
        .filter(sessions::user_id.eq(user_id))
        .filter(sessions::expires_at.gt(now))
        .filter(sessions::created_at.gt(now - ABSOLUTE_TTL))
        .order(sessions::created_at.desc())
        .limit(200)
        .select(SessionRow::as_select())
        .load(conn)?;
    let mut list: Vec<MySession> = rows
        .into_iter()
        .map(|r| MySession {
            current: current_sid.is_some() && sid_of(&r.state).as_deref() == current_sid,
            created_at: r.created_at,
            last_active: r.expires_at - IDLE_TTL,
            user_agent: r.user_agent,
            client_ip: r.client_ip,
        })
        .collect();
    list.sort_by_key(|s| !s.current);
    Ok(list)
}

/// Deletes every session row of `user_id` except those carrying the marker `keep_sid`;
/// returns how many ended. Call inside the caller's transaction.
pub fn end_others(conn: &mut DbConnection, user_id: &str, keep_sid: &str) -> QueryResult<usize> {
    let rows: Vec<(String, String)> = sessions::table
        .filter(sessions::user_id.eq(user_id))
        .select((sessions::id_hash, sessions::state))
        .load(conn)?;
    let doomed: Vec<String> =
        rows.into_iter().filter(|(_, state)| sid_of(state).as_deref() != Some(keep_sid)).map(|(h, _)| h).collect();
    let mut ended = 0;
    for chunk in doomed.chunks(500) {
        ended += diesel::delete(sessions::table.filter(sessions::id_hash.eq_any(chunk))).execute(conn)?;
    }
    Ok(ended)
}

/// "Sign out everywhere else": ends the other sessions of `user_id` and records it.
pub fn sign_out_elsewhere(
    conn: &mut DbConnection,
    user_id: &str,
    keep_sid: &str,
    actor: &Actor,
) -> Result<usize, ServiceError> {
    db::write_tx(conn, |conn| {
        let ended = end_others(conn, user_id, keep_sid)?;
        let detail = serde_json::json!({ "sessions_ended": ended }).to_string();
        audit::record(conn, actor, None, action::SESSIONS_ENDED, Some(user_id), Some(&detail))?;
        Ok(ended)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_marker_is_read_from_the_stored_state() {
        let state = serde_json::json!({ "uid": "\"u1\"", "sid": "\"abc\"" }).to_string();
        assert_eq!(sid_of(&state).as_deref(), Some("abc"));
        assert_eq!(sid_of("{}"), None);
        assert_eq!(sid_of("not json"), None);
    }
}
