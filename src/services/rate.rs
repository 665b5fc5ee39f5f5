//! Rate limits counted in the database, so that every instance sees one count and concurrent
//! requests never overshoot: a unit is taken by one conditional UPDATE
//! (`SET n = n + 1 WHERE n < limit`), which the database serializes on the counter's row.
//!
//! Every limit lives here (sign-in per account and per address, code sends, invitations per
//! inviter, API requests per key), so that instances behind a load balancer share one count.
//! Windows are fixed (they start at the first unit taken), so the wait announced is the rest of
//! that window.

use diesel::prelude::*;

use crate::db::schema::rate_counters;
use crate::db::{self, DbConnection};

/// Takes one unit of `key`'s allowance of `limit` per fixed `window`: `Ok(None)` when taken,
/// `Ok(Some(seconds to wait))` when the window's allowance is used up.
pub fn take(conn: &mut DbConnection, key: &str, limit: i64, window: time::Duration) -> QueryResult<Option<u64>> {
    let key = bounded(key);
    // One transaction: one commit on SQLite rather than three (a savepoint when nested).
    db::write_tx(conn, |conn| take_in(conn, &key, limit, window))
}

fn take_in(conn: &mut DbConnection, key: &str, limit: i64, window: time::Duration) -> QueryResult<Option<u64>> {
    let now = db::now();
    // The counter exists (a concurrent twin may create it first: that is fine).
    let row = (rate_counters::key.eq(key), rate_counters::window_start.eq(now), rate_counters::n.eq(0i64));
    match conn {
        DbConnection::Sqlite(c) => {
            diesel::insert_into(rate_counters::table).values(row).on_conflict_do_nothing().execute(c)?
        }
        DbConnection::Postgresql(c) => {
            diesel::insert_into(rate_counters::table).values(row).on_conflict_do_nothing().execute(c)?
        }
    };
    // A window that has passed starts again (once: the condition no longer holds for a twin).
    diesel::update(rate_counters::table.find(key).filter(rate_counters::window_start.le(now - window)))
        .set((rate_counters::window_start.eq(now), rate_counters::n.eq(0i64)))
        .execute(conn)?;
    let taken = diesel::update(rate_counters::table.find(key).filter(rate_counters::n.lt(limit)))
        .set(rate_counters::n.eq(rate_counters::n + 1))
        .execute(conn)?;
    if taken == 1 {
        return Ok(None);
    }
    let start: time::PrimitiveDateTime =
        rate_counters::table.find(key).select(rate_counters::window_start).first(conn)?;
    Ok(Some((start + window - now).whole_seconds().max(1) as u64))
}

/// Keys longer than this are kept as their SHA-256, so that no input's size reaches the table.
const MAX_KEY_BYTES: usize = 128;

/// The key as stored: itself when short, else its SHA-256 (hex).
fn bounded(key: &str) -> String {
    use sha2::Digest;
    if key.len() <= MAX_KEY_BYTES {
        return key.to_owned();
    }
    sha2::Sha256::digest(key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Gives back one unit of `key` (a unit taken for an attempt that turned out not to count).
pub fn give_back(conn: &mut DbConnection, key: &str) -> QueryResult<()> {
    diesel::update(rate_counters::table.find(bounded(key)).filter(rate_counters::n.gt(0i64)))
        .set(rate_counters::n.eq(rate_counters::n - 1))
        .execute(conn)
        .map(drop)
}

/// Forgets `key`'s count (a successful sign-in clears the account's failures).
pub fn clear(conn: &mut DbConnection, key: &str) -> QueryResult<()> {
    diesel::delete(rate_counters::table.find(bounded(key))).execute(conn).map(drop)
}

/// Deletes counters whose window started over a day ago (no window is longer): run daily.
pub fn purge_stale(conn: &mut DbConnection, now: time::PrimitiveDateTime) -> QueryResult<usize> {
    diesel::delete(rate_counters::table.filter(rate_counters::window_start.lt(now - time::Duration::days(1))))
        .execute(conn)
}

/// Failed sign-ins per account: 5 per 15 minutes.
pub const SIGNIN_PER_ACCOUNT: i64 = 5;
/// Failed sign-ins per client address: 30 per 15 minutes.
pub const SIGNIN_PER_ADDRESS: i64 = 30;
/// The window of both sign-in limits.
pub const SIGNIN_WINDOW: time::Duration = time::Duration::minutes(15);
/// One-time codes emailed per invitation: 5 per hour.
pub const CODE_SENDS_PER_HOUR: i64 = 5;

/// Keys of the sign-in limits for an address and a client.
fn signin_keys(email: &str, ip: Option<&str>) -> (String, String) {
    (format!("acct:{}", email.trim().to_lowercase()), format!("ip:{}", ip.unwrap_or("?")))
}

/// Takes one sign-in attempt for this account and client: `Some(retry_after)` when sign-in is
/// paused for either (then nothing is counted). The attempt is counted before the password is
/// checked, so that concurrent guesses cannot all get past the limit; it stays counted as a
/// failure unless [`signin_succeeded`] gives it back.
pub fn take_signin(conn: &mut DbConnection, email: &str, ip: Option<&str>) -> QueryResult<Option<u64>> {
    let (acct, addr) = signin_keys(email, ip);
    if let Some(wait) = take(conn, &acct, SIGNIN_PER_ACCOUNT, SIGNIN_WINDOW)? {
        return Ok(Some(wait));
    }
    let wait = take(conn, &addr, SIGNIN_PER_ADDRESS, SIGNIN_WINDOW)?;
    if wait.is_some() {
        give_back(conn, &acct)?;
    }
    Ok(wait)
}

/// The attempt taken by [`take_signin`] was right: the account's failures are forgotten and
/// the client's attempt is given back.
pub fn signin_succeeded(conn: &mut DbConnection, email: &str, ip: Option<&str>) -> QueryResult<()> {
    let (acct, addr) = signin_keys(email, ip);
    clear(conn, &acct)?;
    give_back(conn, &addr)
}

/// Sign-ins started through identity providers per client address and window: each one makes
/// Vestibule fetch the provider's discovery document and keep a request row.
pub const IDP_STARTS_PER_ADDRESS: i64 = 30;
/// Refused provider answers audited per client address and window (refusals past it are still
/// refused, only not recorded again).
pub const IDP_REFUSALS_AUDITED_PER_ADDRESS: i64 = 30;
/// The window of both.
pub const IDP_WINDOW: time::Duration = time::Duration::minutes(10);

/// Takes one identity-provider start for the client address `ip`.
pub fn take_idp_start(conn: &mut DbConnection, ip: &str) -> QueryResult<Option<u64>> {
    take(conn, &format!("idp-start:{ip}"), IDP_STARTS_PER_ADDRESS, IDP_WINDOW)
}

/// Takes one audited refusal for the client address `ip`.
pub fn take_idp_refusal(conn: &mut DbConnection, ip: &str) -> QueryResult<Option<u64>> {
    take(conn, &format!("idp-refused:{ip}"), IDP_REFUSALS_AUDITED_PER_ADDRESS, IDP_WINDOW)
}

/// Takes one one-time-code email for `invitation_id`: `Some(retry_after)` when too many were sent.
pub fn take_code_send(conn: &mut DbConnection, invitation_id: &str) -> QueryResult<Option<u64>> {
    take(conn, &format!("code:{invitation_id}"), CODE_SENDS_PER_HOUR, time::Duration::hours(1))
}

/// Sign-in codes emailed per address: 5 per hour.
pub const SIGNIN_CODES_PER_ADDRESS: i64 = 5;
/// Sign-in and redemption codes emailed per client address: 20 per hour.
pub const CODES_PER_CLIENT: i64 = 20;
/// Password-reset links requested per address: 3 per hour.
pub const RESETS_PER_ADDRESS: i64 = 3;
/// Password-reset links requested per client address: 20 per hour.
pub const RESETS_PER_CLIENT: i64 = 20;

/// Takes one unit from both an address's and a client's hourly allowance (`what` names the
/// kind of mail): `Some(retry_after)` when either is used up (then the address's unit is
/// given back, so a busy client cannot exhaust someone else's address).
fn take_pair(
    conn: &mut DbConnection,
    what: &str,
    email: &str,
    ip: Option<&str>,
    per_address: i64,
    per_client: i64,
) -> QueryResult<Option<u64>> {
    db::write_tx(conn, |conn| {
        let acct = format!("{what}:acct:{}", email.trim().to_lowercase());
        if let Some(wait) = take_in(conn, &bounded(&acct), per_address, time::Duration::hours(1))? {
            return Ok(Some(wait));
        }
        let addr = format!("{what}:ip:{}", ip.unwrap_or("?"));
        let wait = take_in(conn, &bounded(&addr), per_client, time::Duration::hours(1))?;
        if wait.is_some() {
            give_back(conn, &acct)?;
        }
        Ok(wait)
    })
}

/// Takes one sign-in code email for `email` from client `ip` (per address and per client).
pub fn take_signin_code(conn: &mut DbConnection, email: &str, ip: Option<&str>) -> QueryResult<Option<u64>> {
    take_pair(conn, "signin_code", email, ip, SIGNIN_CODES_PER_ADDRESS, CODES_PER_CLIENT)
}

/// Takes one redemption code email from client `ip` (the invitation's own limit is
/// [`take_code_send`]).
pub fn take_code_send_from(conn: &mut DbConnection, ip: Option<&str>) -> QueryResult<Option<u64>> {
    take(conn, &format!("signin_code:ip:{}", ip.unwrap_or("?")), CODES_PER_CLIENT, time::Duration::hours(1))
}

/// Takes one password-reset request for `email` from client `ip` (per address and per client).
pub fn take_reset(conn: &mut DbConnection, email: &str, ip: Option<&str>) -> QueryResult<Option<u64>> {
    take_pair(conn, "reset", email, ip, RESETS_PER_ADDRESS, RESETS_PER_CLIENT)
}
