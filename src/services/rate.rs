//! Rate limits counted in the database, so that every instance sees one count and concurrent
//! requests never overshoot: a unit is taken by one conditional UPDATE
//! (`SET n = n + 1 WHERE n < limit`), which the database serializes on the counter's row.

use diesel::prelude::*;

use crate::db::schema::rate_counters;
use crate::db::{self, DbConnection};

/// Takes one unit of `key`'s allowance of `limit` per fixed `window`: `Ok(None)` when taken,
/// `Ok(Some(seconds to wait))` when the window's allowance is used up.
pub fn take(conn: &mut DbConnection, key: &str, limit: i64, window: time::Duration) -> QueryResult<Option<u64>> {
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
