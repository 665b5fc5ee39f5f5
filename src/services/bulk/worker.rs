//! Processing confirmed bulk jobs.
//!
//! A worker claims a job with a lease (on PostgreSQL with `FOR UPDATE SKIP LOCKED`, so that
//! several instances share the queue). Each batch is one write transaction that first renews the
//! lease (a worker that lost its lease stops before touching anything), then creates the batch's
//! invitations with their outbox mail, marks the rows and saves the job's counters. A crash
//! loses at most the batch in flight, which rolls back whole: when the lease runs out, another
//! worker (or the restarted process) resumes at the first row still `valid`, so no row is
//! invited twice and no invitation is left without its email.

use std::sync::Arc;
use std::time::Duration;

use diesel::prelude::*;
use tokio::sync::{Notify, watch};
use url::Url;

use super::{REASON_EXISTING, jobs};
use crate::db::models::{BulkJob, BulkRow, Organization};
use crate::db::schema::{bulk_jobs, bulk_rows, organizations};
use crate::db::{self, DbConnection, Pool};
use crate::domain::Role;
use crate::domain::{JobStatus, RowStatus};
use crate::services::audit::{self, action};
use crate::services::invitations::{self, Channel, Inviter};
use crate::services::{Actor, ServiceError, orgs, policy};

/// A claimed job is the worker's for this long; every batch renews it.
pub const LEASE: time::Duration = time::Duration::seconds(30);
/// Rows per transaction.
pub const BATCH: i64 = 200;

/// What one batch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Rows were processed; more may remain.
    Progress { processed: i64, of: i64 },
    /// The job ended (done, or failed with a reason).
    Finished,
    /// Another worker holds the job now, or it was cancelled.
    LostLease,
}

/// A worker's identity in leases.
pub fn new_owner() -> String {
    format!("{}-{}", std::process::id(), db::new_id())
}

/// Claims the oldest job waiting (queued, or running with an expired lease).
pub fn claim_next(conn: &mut DbConnection, owner: &str) -> QueryResult<Option<BulkJob>> {
    db::write_tx(conn, |conn| {
        let now = db::now();
        let claimable = bulk_jobs::status
            .eq(JobStatus::Queued)
            .or(bulk_jobs::status.eq(JobStatus::Running).and(bulk_jobs::lease_until.lt(now)));
        let id: Option<String> = match conn {
            DbConnection::Postgresql(c) => bulk_jobs::table
                .filter(claimable)
                .order(bulk_jobs::created_at.asc())
                .select(bulk_jobs::id)
                .for_update()
                .skip_locked()
                .first(c)
                .optional()?,
            DbConnection::Sqlite(c) => bulk_jobs::table
                .filter(claimable)
                .order(bulk_jobs::created_at.asc())
                .select(bulk_jobs::id)
                .first(c)
                .optional()?,
        };
        match id {
            Some(id) => take(conn, &id, owner, now),
            None => Ok(None),
        }
    })
}

/// Claims one given job if it is waiting (the CLI runs the job it just created).
pub fn claim(conn: &mut DbConnection, job_id: &str, owner: &str) -> QueryResult<Option<BulkJob>> {
    db::write_tx(conn, |conn| take(conn, job_id, owner, db::now()))
}

fn take(conn: &mut DbConnection, id: &str, owner: &str, now: time::PrimitiveDateTime) -> QueryResult<Option<BulkJob>> {
    let claimable = bulk_jobs::status
        .eq(JobStatus::Queued)
        .or(bulk_jobs::status.eq(JobStatus::Running).and(bulk_jobs::lease_until.lt(now)));
    let n = diesel::update(bulk_jobs::table.find(id).filter(claimable))
        .set((
            bulk_jobs::status.eq(JobStatus::Running),
            bulk_jobs::lease_owner.eq(Some(owner)),
            bulk_jobs::lease_until.eq(Some(now + LEASE)),
        ))
        .execute(conn)?;
    if n == 0 {
        return Ok(None);
    }
    diesel::update(bulk_jobs::table.find(id).filter(bulk_jobs::started_at.is_null()))
        .set(bulk_jobs::started_at.eq(Some(now)))
        .execute(conn)?;
    bulk_jobs::table.find(id).select(BulkJob::as_select()).first(conn).optional()
}

/// Ends a job as failed with a reason (a catalogue key).
fn fail_job(conn: &mut DbConnection, job_id: &str, owner: &str, reason: &str) -> QueryResult<()> {
    diesel::update(bulk_jobs::table.find(job_id).filter(bulk_jobs::lease_owner.eq(owner)))
        .set((
            bulk_jobs::status.eq(JobStatus::Failed),
            bulk_jobs::error.eq(Some(reason)),
            bulk_jobs::finished_at.eq(Some(db::now())),
            bulk_jobs::lease_owner.eq(None::<String>),
            bulk_jobs::lease_until.eq(None::<time::PrimitiveDateTime>),
        ))
        .execute(conn)?;
    Ok(())
}

/// Processes the next batch of a job this worker holds (the server's worker).
pub fn run_batch(
    conn: &mut DbConnection,
    job_id: &str,
    owner: &str,
    public_url: &Url,
    batch: i64,
) -> Result<Step, ServiceError> {
    run_batch_via(conn, job_id, owner, public_url, batch, Channel::Bulk)
}

/// Processes the next batch of a job, invitations coming through `channel` (bulk or CLI).
fn run_batch_via(
    conn: &mut DbConnection,
    job_id: &str,
    owner: &str,
    public_url: &Url,
    batch: i64,
    channel: Channel,
) -> Result<Step, ServiceError> {
    // Read-only preparation outside the write transaction.
    let Some(job) = bulk_jobs::table.find(job_id).select(BulkJob::as_select()).first(conn).optional()? else {
        return Ok(Step::LostLease);
    };
    let org: Organization = organizations::table.find(&job.org_id).select(Organization::as_select()).first(conn)?;
    let Some(membership) = orgs::membership_of(conn, &org.id, &job.created_by)? else {
        fail_job(conn, job_id, owner, "bulk.error_not_allowed")?;
        return Ok(Step::Finished);
    };
    // The admin may have lost the right to invite since confirming (each row checks again).
    if membership.role != Role::Admin
        || !crate::services::orgs::is_active(&membership)
        || !policy::may_invite(&org, &membership)
    {
        fail_job(conn, job_id, owner, "bulk.error_not_allowed")?;
        return Ok(Step::Finished);
    }
    let actor = Actor { user_id: Some(job.created_by.clone()), ip: None, request_id: None };
    let inviter = Inviter { org: &org, membership: &membership, actor: &actor };

    db::write_tx(conn, |conn| {
        let now = db::now();
        // Renewing the lease first also locks the job row (PostgreSQL) or the database (SQLite):
        // a worker whose lease was taken over stops here.
        let held = diesel::update(
            bulk_jobs::table
                .find(job_id)
                .filter(bulk_jobs::status.eq(JobStatus::Running))
                .filter(bulk_jobs::lease_owner.eq(owner)),
        )
        .set(bulk_jobs::lease_until.eq(Some(now + LEASE)))
        .execute(conn)?;
        if held != 1 {
            return Ok(Step::LostLease);
        }
        let rows: Vec<BulkRow> = bulk_rows::table
            .filter(bulk_rows::job_id.eq(job_id))
            .filter(bulk_rows::status.eq(RowStatus::Valid))
            .order(bulk_rows::line_no.asc())
            .limit(batch)
            .select(BulkRow::as_select())
            .load(conn)?;
        if rows.is_empty() {
            return finish(conn, job_id, &actor);
        }
        let (mut succeeded, mut existing, mut failed) = (0i64, 0i64, 0i64);
        // The one invitation use case, for the whole batch: it checks every row again (the
        // org's rules may have changed since the preview); a refused row leaves nothing behind.
        let inputs: Vec<_> = rows.iter().map(super::row_input).collect();
        let outcomes = invitations::invite_many(conn, public_url, inviter, channel, inputs)?;
        let mut done: Vec<BulkRow> = Vec::with_capacity(rows.len());
        for (row, outcome) in rows.iter().zip(outcomes) {
            let outcome = match outcome {
                Ok(created) => Ok(created),
                Err(ServiceError::Invalid(e)) => Err(e.0.first().map(|(_, k)| *k).unwrap_or("bulk.reason_invalid")),
                Err(
                    ServiceError::WrongState
                    | ServiceError::NotFound
                    | ServiceError::Forbidden
                    | ServiceError::RateLimited(_),
                ) => Err("bulk.reason_refused"),
                Err(e) => return Err(e),
            };
            let (status, reason, invitation_id) = match outcome {
                Ok(created) => {
                    succeeded += 1;
                    if created.existing {
                        existing += 1;
                    }
                    (RowStatus::Created, created.existing.then_some(REASON_EXISTING), Some(created.invitation.id))
                }
                Err(key) => {
                    failed += 1;
                    (RowStatus::Failed, Some(key), None)
                }
            };
            let mut row = row.clone();
            row.status = status;
            row.reason = reason.map(str::to_owned);
            row.invitation_id = invitation_id;
            done.push(row);
        }
        // Every row's outcome in one statement per 500 rows (an upsert on the row's key).
        mark_rows(conn, &done)?;
        diesel::update(bulk_jobs::table.find(job_id))
            .set((
                bulk_jobs::processed.eq(bulk_jobs::processed + rows.len() as i64),
                bulk_jobs::succeeded.eq(bulk_jobs::succeeded + succeeded),
                bulk_jobs::existing.eq(bulk_jobs::existing + existing),
                bulk_jobs::failed.eq(bulk_jobs::failed + failed),
            ))
            .execute(conn)?;
        Ok(Step::Progress { processed: job.processed + rows.len() as i64, of: job.valid_rows })
    })
}

/// Saves the status, reason and invitation of processed rows: on PostgreSQL one upsert on the
/// rows' key per 500 rows (it only updates those three columns; each statement is a round trip
/// there), on SQLite an update per row (in-process, and diesel has no multi-row upsert for it).
fn mark_rows(conn: &mut DbConnection, rows: &[BulkRow]) -> QueryResult<()> {
    use diesel::upsert::excluded;
    match conn {
        DbConnection::Postgresql(c) => {
            for chunk in rows.chunks(500) {
                diesel::insert_into(bulk_rows::table)
                    .values(chunk)
                    .on_conflict((bulk_rows::job_id, bulk_rows::line_no))
                    .do_update()
                    .set((
                        bulk_rows::status.eq(excluded(bulk_rows::status)),
                        bulk_rows::reason.eq(excluded(bulk_rows::reason)),
                        bulk_rows::invitation_id.eq(excluded(bulk_rows::invitation_id)),
                    ))
                    .execute(c)?;
            }
        }
        DbConnection::Sqlite(_) => {
            for row in rows {
                diesel::update(bulk_rows::table.find((&row.job_id, row.line_no)))
                    .set((
                        bulk_rows::status.eq(row.status),
                        bulk_rows::reason.eq(&row.reason),
                        bulk_rows::invitation_id.eq(&row.invitation_id),
                    ))
                    .execute(conn)?;
            }
        }
    }
    Ok(())
}

fn finish(conn: &mut DbConnection, job_id: &str, actor: &Actor) -> Result<Step, ServiceError> {
    diesel::update(bulk_jobs::table.find(job_id))
        .set((
            bulk_jobs::status.eq(JobStatus::Done),
            bulk_jobs::finished_at.eq(Some(db::now())),
            bulk_jobs::lease_owner.eq(None::<String>),
            bulk_jobs::lease_until.eq(None::<time::PrimitiveDateTime>),
        ))
        .execute(conn)?;
    let job: BulkJob = bulk_jobs::table.find(job_id).select(BulkJob::as_select()).first(conn)?;
    audit::record(
        conn,
        actor,
        Some(&job.org_id),
        action::BULK_FINISHED,
        Some(job_id),
        Some(&jobs::counts_detail(&job)),
    )?;
    Ok(Step::Finished)
}

/// Runs a held job to its end on this thread, calling `progress` after each batch. Gives up
/// (marking the job failed) after a few consecutive errors; a lost lease just stops.
pub fn run_job(
    conn: &mut DbConnection,
    job_id: &str,
    owner: &str,
    public_url: &Url,
    channel: Channel,
    mut progress: impl FnMut(&Step) -> bool,
) -> Result<Step, ServiceError> {
    let mut errors = 0;
    loop {
        match run_batch_via(conn, job_id, owner, public_url, BATCH, channel) {
            Ok(step @ Step::Progress { .. }) => {
                errors = 0;
                if !progress(&step) {
                    return Ok(step);
                }
            }
            Ok(step) => {
                progress(&step);
                return Ok(step);
            }
            Err(e) => {
                errors += 1;
                tracing::warn!(job = %job_id, error = %e, "bulk batch failed");
                if errors >= 3 {
                    fail_job(conn, job_id, owner, "bulk.error_internal")?;
                    return Err(e);
                }
                std::thread::sleep(Duration::from_millis(500 * errors));
            }
        }
    }
}

/// The background worker of the server: claims waiting jobs and runs them until `shutdown`.
pub async fn run(
    pool: Pool,
    public_url: Url,
    mail_wake: Arc<Notify>,
    wake: Arc<Notify>,
    poll: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let owner = new_owner();
    loop {
        let (p, o, url, mail, stop) =
            (pool.clone(), owner.clone(), public_url.clone(), mail_wake.clone(), shutdown.clone());
        let pass = db::with_conn(&p, move |conn| -> Result<bool, ServiceError> {
            let Some(job) = claim_next(conn, &o)? else { return Ok(false) };
            tracing::info!(job = %job.id, rows = job.valid_rows, "bulk job started");
            // Stops between batches on shutdown; the lease then lets the next start resume.
            let step = run_job(conn, &job.id, &o, &url, Channel::Bulk, |_| {
                mail.notify_one();
                !*stop.borrow()
            })?;
            tracing::info!(job = %job.id, ?step, "bulk job pass ended");
            Ok(true)
        })
        .await;
        let busy = match pass {
            Ok(busy) => busy,
            Err(e) => {
                tracing::error!(error = %e, "bulk worker pass failed");
                false
            }
        };
        if *shutdown.borrow() {
            break;
        }
        if !busy {
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(poll) => {}
                _ = shutdown.changed() => {}
            }
        }
        if *shutdown.borrow() {
            break;
        }
    }
    tracing::info!("bulk worker stopped");
}
