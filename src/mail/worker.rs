//! The mail worker: claims due rows with a lease, sends them, records the outcome.
//!
//! Claiming marks rows `sending` with a lease; a worker that dies mid-send leaves the lease to
//! run out, and the row is claimed again. On PostgreSQL, `FOR UPDATE SKIP LOCKED` lets any
//! number of instances share the queue without sending anything twice.

use std::sync::Arc;
use std::time::Duration;

use diesel::prelude::*;
use lettre::message::Mailbox;
use rand::RngExt;
use tokio::sync::{Notify, watch};

use super::transport::Transport;
use crate::db::models::OutboxMessage;
use crate::db::schema::outbox;
use crate::db::{self, DbConnection, Pool};
use crate::domain::OutboxStatus;
use crate::domain::email::mask;

/// A claimed row is someone's for this long.
const LEASE: time::Duration = time::Duration::minutes(5);
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

/// Claims up to `limit` due rows (queued and due, or sending with an expired lease).
pub fn claim(conn: &mut DbConnection, limit: i64) -> QueryResult<Vec<OutboxMessage>> {
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
            ))
            .execute(conn)?;
        outbox::table.filter(outbox::id.eq_any(&ids)).select(OutboxMessage::as_select()).load(conn)
    })
}

/// Marks a row sent and drops its body (it may hold a token).
fn mark_sent(conn: &mut DbConnection, id: &str) -> QueryResult<()> {
    diesel::update(outbox::table.find(id))
        .set((
            outbox::status.eq(OutboxStatus::Sent),
            outbox::sent_at.eq(Some(db::now())),
            outbox::body_text.eq(None::<String>),
            outbox::body_html.eq(None::<String>),
            outbox::lease_until.eq(None::<time::PrimitiveDateTime>),
            outbox::last_error.eq(None::<String>),
        ))
        .execute(conn)?;
    Ok(())
}

/// Delay before attempt number `attempts + 1`.
pub fn backoff(base: Duration, attempts: i64) -> Duration {
    let exp = base.saturating_mul(1u32 << (attempts.clamp(1, 20) - 1) as u32).min(MAX_BACKOFF);
    let jitter = rand::rng().random_range(0.75..1.25);
    exp.mul_f64(jitter)
}

fn mark_failed(
    conn: &mut DbConnection,
    row: &OutboxMessage,
    permanent: bool,
    error: &str,
    base: Duration,
) -> QueryResult<()> {
    let give_up = permanent || row.attempts >= MAX_ATTEMPTS;
    let error: String = error.chars().take(500).collect();
    if give_up {
        diesel::update(outbox::table.find(&row.id))
            .set((
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
        diesel::update(outbox::table.find(&row.id))
            .set((
                outbox::status.eq(OutboxStatus::Queued),
                outbox::next_attempt_at.eq(next),
                outbox::last_error.eq(Some(error)),
                outbox::lease_until.eq(None::<time::PrimitiveDateTime>),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Sends everything due now; returns how many rows were handled.
pub async fn run_once(cfg: &WorkerConfig) -> anyhow::Result<usize> {
    let mut handled = 0;
    loop {
        let rows = db::with_conn(&cfg.pool, |c| anyhow::Ok(claim(c, BATCH)?)).await?;
        if rows.is_empty() {
            return Ok(handled);
        }
        for row in rows {
            handled += 1;
            let result = cfg.transport.send(&cfg.from, &row).await;
            let id = row.id.clone();
            let base = cfg.retry_base;
            match result {
                Ok(()) => {
                    tracing::info!(mail = %id, kind = %row.kind, to = %mask(&row.recipient), "mail sent");
                    db::with_conn(&cfg.pool, move |c| anyhow::Ok(mark_sent(c, &id)?)).await?;
                }
                Err(e) => {
                    tracing::warn!(mail = %id, to = %mask(&row.recipient), attempt = row.attempts, permanent = e.permanent, error = %e.message, "mail not sent");
                    db::with_conn(&cfg.pool, move |c| anyhow::Ok(mark_failed(c, &row, e.permanent, &e.message, base)?))
                        .await?;
                }
            }
        }
    }
}

/// Runs until `shutdown` flips to true; wakes early when `wake` is notified.
pub async fn run(cfg: WorkerConfig, wake: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
    tracing::info!("mail worker started");
    loop {
        if let Err(e) = run_once(&cfg).await {
            tracing::error!(error = %e, "mail worker pass failed");
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
