//! The mail worker: claims due rows with a lease, sends them, records the outcome.
//!
//! Claiming marks rows `sending` with a short lease in the worker's name; the live worker renews
//! its leases while it sends, and releases the rows it has not sent when it stops. A worker that
//! dies (kill -9) leaves its leases to run out within [`LEASE`], and another instance claims the
//! rows again. On PostgreSQL, `FOR UPDATE SKIP LOCKED` lets any number of instances share the
//! queue. Delivery is at least once: a worker that dies after the SMTP server took a message but
//! before the row was marked sent leaves it to be sent again, with the same Message-ID.

use std::sync::Arc;
use std::time::Duration;

use diesel::prelude::*;
use lettre::message::Mailbox;
use rand::RngExt;
use tokio::sync::{Notify, watch};

use super::transport::{SendError, Transport};
use crate::db::models::OutboxMessage;
use crate::db::schema::outbox;
use crate::db::{self, DbConnection, Pool};
use crate::domain::OutboxStatus;
use crate::domain::email::mask;

/// A claimed row is its worker's for this long unless renewed (the live worker renews every
/// [`RENEW_EVERY`]), so rows of a worker that died are taken over within this long.
pub const LEASE: time::Duration = time::Duration::seconds(30);
/// How often the live worker renews its leases.
const RENEW_EVERY: Duration = Duration::from_secs(10);
/// Attempts before a transient failure becomes permanent.
pub const MAX_ATTEMPTS: i64 = 10;
/// Longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// Rows claimed at once.
const BATCH: i64 = 20;

/// Settings of the worker loop.
#[derive(Clone)]
pub struct WorkerConfig {
    pub pool: Pool,
    pub transport: Transport,
    pub from: Mailbox,
    /// Idle polling interval.
    pub poll: Duration,
    /// First retry delay; doubles each attempt up to an hour, with ±25 % jitter.
    pub retry_base: Duration,
}

/// Claims up to `limit` due rows for a worker nobody renews (as a worker that then died would).
pub fn claim(conn: &mut DbConnection, limit: i64) -> QueryResult<Vec<OutboxMessage>> {
    claim_as(conn, &uuid::Uuid::new_v4().to_string(), limit)
}

/// Claims up to `limit` due rows (queued and due, or sending with an expired lease) in the name
/// of the worker `owner`.
pub fn claim_as(conn: &mut DbConnection, owner: &str, limit: i64) -> QueryResult<Vec<OutboxMessage>> {
    db::write_tx(conn, |conn| {
        let now = db::now();
        let due = outbox::status
            .eq(OutboxStatus::Queued)
            .and(outbox::next_attempt_at.le(now))
            .or(outbox::status.eq(OutboxStatus::Sending).and(outbox::lease_until.lt(now)));
        let ids: Vec<String> = match conn {
            DbConnection::Postgresql(c) => outbox::table
                .filter(due)
                .order(outbox::next_attempt_at.asc())
                .limit(limit)
                .select(outbox::id)
                .for_update()
                .skip_locked()
                .load(c)?,
            DbConnection::Sqlite(c) => outbox::table
                .filter(due)
                .order(outbox::next_attempt_at.asc())
                .limit(limit)
                .select(outbox::id)
                .load(c)?,
        };
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        diesel::update(outbox::table.filter(outbox::id.eq_any(&ids)))
            .set((
                outbox::status.eq(OutboxStatus::Sending),
                outbox::lease_until.eq(Some(now + LEASE)),
                outbox::attempts.eq(outbox::attempts + 1),
                outbox::claimed_by.eq(Some(owner)),
            ))
            .execute(conn)?;
        outbox::table.filter(outbox::id.eq_any(&ids)).select(OutboxMessage::as_select()).load(conn)
    })
}

/// Extends the leases `owner` holds: `Ok(rows renewed)`.
pub fn renew(conn: &mut DbConnection, owner: &str) -> QueryResult<usize> {
    diesel::update(outbox::table.filter(outbox::claimed_by.eq(owner)).filter(outbox::status.eq(OutboxStatus::Sending)))
        .set(outbox::lease_until.eq(Some(db::now() + LEASE)))
        .execute(conn)
}

/// Gives the rows `owner` claimed but has not sent back to the queue at once (their attempt
/// is not counted), for another instance or the next start: `Ok(rows released)`.
pub fn release(conn: &mut DbConnection, owner: &str) -> QueryResult<usize> {
    diesel::update(outbox::table.filter(outbox::claimed_by.eq(owner)).filter(outbox::status.eq(OutboxStatus::Sending)))
        .set((
            outbox::status.eq(OutboxStatus::Queued),
            outbox::next_attempt_at.eq(db::now()),
            outbox::lease_until.eq(None::<time::PrimitiveDateTime>),
            outbox::claimed_by.eq(None::<String>),
            outbox::attempts.eq(outbox::attempts - 1),
        ))
        .execute(conn)
}

/// The row `id` while `owner` still holds it (an outcome recorded after the row was taken over
/// must not undo the new holder's).
fn still_held(
    id: &str,
    owner: &str,
) -> diesel::dsl::Filter<diesel::dsl::Find<outbox::table, String>, diesel::dsl::Eq<outbox::claimed_by, String>> {
    outbox::table.find(id.to_owned()).filter(outbox::claimed_by.eq(owner.to_owned()))
}

/// Delay before attempt number `attempts + 1`.
pub fn backoff(base: Duration, attempts: i64) -> Duration {
    let exp = base.saturating_mul(1u32 << (attempts.clamp(1, 20) - 1) as u32).min(MAX_BACKOFF);
    let jitter = rand::rng().random_range(0.75..1.25);
    exp.mul_f64(jitter)
}

fn mark_failed(
    conn: &mut DbConnection,
    owner: &str,
    row: &OutboxMessage,
    permanent: bool,
    error: &str,
    base: Duration,
) -> QueryResult<()> {
    let give_up = permanent || row.attempts >= MAX_ATTEMPTS;
    let error: String = error.chars().take(500).collect();
    if give_up {
        diesel::update(still_held(&row.id, owner))
            .set((
                outbox::claimed_by.eq(None::<String>),
                outbox::status.eq(OutboxStatus::Failed),
                outbox::last_error.eq(Some(error)),
                outbox::lease_until.eq(None::<time::PrimitiveDateTime>),
                outbox::body_text.eq(None::<String>),
                outbox::body_html.eq(None::<String>),
            ))
            .execute(conn)?;
    } else {
        let delay = backoff(base, row.attempts);
        let next = db::now() + time::Duration::try_from(delay).unwrap_or(time::Duration::minutes(1));
        diesel::update(still_held(&row.id, owner))
            .set((
                outbox::claimed_by.eq(None::<String>),
                outbox::status.eq(OutboxStatus::Queued),
                outbox::next_attempt_at.eq(next),
                outbox::last_error.eq(Some(error)),
                outbox::lease_until.eq(None::<time::PrimitiveDateTime>),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Messages in flight at once, each on its own connection of the transport's pool.
pub const CONCURRENCY: usize = 4;

/// Marks rows sent and drops their bodies (they may hold a token), in one statement; only the
/// rows `owner` still holds.
fn mark_sent_all(conn: &mut DbConnection, ids: &[String], owner: &str) -> QueryResult<usize> {
    diesel::update(outbox::table.filter(outbox::id.eq_any(ids)).filter(outbox::claimed_by.eq(owner)))
        .set((
            outbox::claimed_by.eq(None::<String>),
            outbox::status.eq(OutboxStatus::Sent),
            outbox::sent_at.eq(Some(db::now())),
            outbox::body_text.eq(None::<String>),
            outbox::body_html.eq(None::<String>),
            outbox::lease_until.eq(None::<time::PrimitiveDateTime>),
            outbox::last_error.eq(None::<String>),
        ))
        .execute(conn)
}

/// Records the outcomes of messages that finished together: the sent ones in one statement,
/// each failure with its own retry time, all in one write transaction.
fn record_outcomes(
    conn: &mut DbConnection,
    owner: &str,
    outcomes: Vec<(OutboxMessage, Result<(), SendError>)>,
    base: Duration,
) -> QueryResult<()> {
    db::write_tx(conn, |conn| {
        let sent: Vec<String> = outcomes.iter().filter(|(_, r)| r.is_ok()).map(|(row, _)| row.id.clone()).collect();
        if !sent.is_empty() {
            mark_sent_all(conn, &sent, owner)?;
        }
        for (row, result) in &outcomes {
            if let Err(e) = result {
                mark_failed(conn, owner, row, e.permanent, &e.message, base)?;
            }
        }
        Ok(())
    })
}

/// Sends everything due now as the worker `owner`, until `stop` flips to true (the rows claimed
/// and not sent then stay for [`release`]); returns how many rows were handled.
///
/// Up to [`CONCURRENCY`] messages are in flight at once over the transport's connection pool;
/// whatever finished together is recorded in one transaction, so a message is marked sent as
/// soon as it and its neighbours are through (a crash in between sends it again, at least once
/// as before, with the same Message-ID).
pub async fn run_once(cfg: &WorkerConfig, owner: &str, stop: &watch::Receiver<bool>) -> anyhow::Result<usize> {
    use futures_util::StreamExt;
    let mut handled = 0;
    loop {
        let me = owner.to_owned();
        let rows = db::with_conn(&cfg.pool, move |c| anyhow::Ok(claim_as(c, &me, BATCH)?)).await?;
        if rows.is_empty() {
            return Ok(handled);
        }
        let mut done = futures_util::stream::iter(rows)
            .map(|row| async move {
                // Nothing new starts once stopping; the rows left are released by the caller.
                if *stop.borrow() {
                    return None;
                }
                let result = cfg.transport.send(&cfg.from, &row).await;
                match &result {
                    Ok(()) => tracing::info!(mail = %row.id, kind = %row.kind, to = %mask(&row.recipient), "mail sent"),
                    Err(e) => {
                        tracing::warn!(mail = %row.id, to = %mask(&row.recipient), attempt = row.attempts, permanent = e.permanent, error = %e.message, "mail not sent")
                    }
                }
                Some((row, result))
            })
            .buffer_unordered(CONCURRENCY)
            .ready_chunks(CONCURRENCY);
        while let Some(chunk) = done.next().await {
            let outcomes: Vec<_> = chunk.into_iter().flatten().collect();
            if outcomes.is_empty() {
                continue;
            }
            handled += outcomes.len();
            let (me, base) = (owner.to_owned(), cfg.retry_base);
            db::with_conn(&cfg.pool, move |c| anyhow::Ok(record_outcomes(c, &me, outcomes, base)?)).await?;
        }
        if *stop.borrow() {
            return Ok(handled);
        }
    }
}

/// Renews `owner`'s leases every [`RENEW_EVERY`], for as long as the worker lives.
async fn renew_periodically(pool: Pool, owner: String) {
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        let me = owner.clone();
        if let Err(e) = db::with_conn(&pool, move |c| anyhow::Ok(renew(c, &me)?)).await {
            // The rows may be taken over when the lease runs out: sent at least once still.
            tracing::warn!(error = %e, "mail leases not renewed");
        }
    }
}

/// Runs until `shutdown` flips to true; wakes early when `wake` is notified. On shutdown the
/// message being sent is finished and the rest of the claimed rows are released at once.
pub async fn run(cfg: WorkerConfig, wake: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
    tracing::info!("mail worker started");
    let owner = uuid::Uuid::new_v4().to_string();
    let renewer = tokio::spawn(renew_periodically(cfg.pool.clone(), owner.clone()));
    loop {
        if let Err(e) = run_once(&cfg, &owner, &shutdown).await {
            tracing::error!(error = %e, "mail worker pass failed");
        }
        if *shutdown.borrow() {
            break;
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(cfg.poll) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            break;
        }
    }
    renewer.abort();
    match db::with_conn(&cfg.pool, move |c| anyhow::Ok(release(c, &owner)?)).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(released = n, "mail worker released its unsent claims"),
        Err(e) => {
            tracing::error!(error = %e, "mail claims not released: they are taken over when their lease runs out")
        }
    }
    tracing::info!("mail worker stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_secs(10);
        assert!(backoff(base, 1) <= Duration::from_millis(12_500));
        assert!(backoff(base, 3) >= Duration::from_secs(30));
        assert!(backoff(base, 30) <= Duration::from_secs(4500));
    }
}
