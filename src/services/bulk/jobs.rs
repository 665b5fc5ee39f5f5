//! Bulk jobs as stored: the preview, confirmation, cancellation and what the pages read.

use diesel::prelude::*;

use crate::db::models::{BulkJob, BulkRow};
use crate::db::schema::{bulk_jobs, bulk_rows};
use crate::db::{self, DbConnection};
use crate::domain::{JobStatus, RowStatus};
use crate::services::audit::{self, action};
use crate::services::{Actor, ServiceError};

/// Rows written per INSERT statement (well under SQLite's bound-parameter limit).
const INSERT_CHUNK: usize = 500;

/// Stores the checked rows as a new previewed job, in one transaction.
pub fn create_preview(
    conn: &mut DbConnection,
    org_id: &str,
    created_by: &str,
    file_name: &str,
    mut rows: Vec<BulkRow>,
    actor: &Actor,
) -> Result<BulkJob, ServiceError> {
    let count = |s: RowStatus| rows.iter().filter(|r| r.status == s).count() as i64;
    let job = BulkJob {
        id: db::new_id(),
        org_id: org_id.to_owned(),
        created_by: created_by.to_owned(),
        status: JobStatus::Previewed,
        file_name: file_name.chars().filter(|c| !c.is_control()).take(200).collect(),
        total: rows.len() as i64,
        valid_rows: count(RowStatus::Valid),
        invalid_rows: count(RowStatus::Invalid),
        duplicate_rows: count(RowStatus::Duplicate),
        processed: 0,
        succeeded: 0,
        existing: 0,
        failed: 0,
        error: None,
        created_at: db::now(),
        started_at: None,
        finished_at: None,
        lease_owner: None,
        lease_until: None,
    };
    for r in &mut rows {
        r.job_id.clone_from(&job.id);
    }
    db::write_tx(conn, |conn| {
        diesel::insert_into(bulk_jobs::table).values(&job).execute(conn)?;
        for chunk in rows.chunks(INSERT_CHUNK) {
            // Multi-row INSERT exists only per backend (not through MultiConnection).
            match conn {
                DbConnection::Sqlite(c) => diesel::insert_into(bulk_rows::table).values(chunk).execute(c)?,
                DbConnection::Postgresql(c) => diesel::insert_into(bulk_rows::table).values(chunk).execute(c)?,
            };
        }
        let detail = counts_detail(&job);
        audit::record(conn, actor, Some(org_id), action::BULK_PREVIEWED, Some(&job.id), Some(&detail))?;
        Ok(job)
    })
}

/// The counts of a job as audit detail.
pub fn counts_detail(job: &BulkJob) -> String {
    serde_json::json!({
        "file": job.file_name,
        "total": job.total,
        "valid": job.valid_rows,
        "invalid": job.invalid_rows,
        "duplicate": job.duplicate_rows,
        "succeeded": job.succeeded,
        "existing": job.existing,
        "failed": job.failed,
    })
    .to_string()
}

/// A job of an org.
pub fn find(conn: &mut DbConnection, org_id: &str, job_id: &str) -> QueryResult<Option<BulkJob>> {
    bulk_jobs::table
        .filter(bulk_jobs::org_id.eq(org_id))
        .filter(bulk_jobs::id.eq(job_id))
        .select(BulkJob::as_select())
        .first(conn)
        .optional()
}

/// The org's newest jobs.
pub fn recent(conn: &mut DbConnection, org_id: &str, limit: i64) -> QueryResult<Vec<BulkJob>> {
    bulk_jobs::table
        .filter(bulk_jobs::org_id.eq(org_id))
        .order((bulk_jobs::created_at.desc(), bulk_jobs::id.desc()))
        .limit(limit)
        .select(BulkJob::as_select())
        .load(conn)
}

/// Rows with a problem (invalid, duplicate, failed), in file order.
pub fn problems(conn: &mut DbConnection, job_id: &str, limit: i64) -> QueryResult<Vec<BulkRow>> {
    bulk_rows::table
        .filter(bulk_rows::job_id.eq(job_id))
        .filter(bulk_rows::status.eq_any([RowStatus::Invalid, RowStatus::Duplicate, RowStatus::Failed]))
        .order(bulk_rows::line_no.asc())
        .limit(limit)
        .select(BulkRow::as_select())
        .load(conn)
}

/// Rows after line `after`, in file order (for the results file).
pub fn rows_after(conn: &mut DbConnection, job_id: &str, after: i64, limit: i64) -> QueryResult<Vec<BulkRow>> {
    bulk_rows::table
        .filter(bulk_rows::job_id.eq(job_id))
        .filter(bulk_rows::line_no.gt(after))
        .order(bulk_rows::line_no.asc())
        .limit(limit)
        .select(BulkRow::as_select())
        .load(conn)
}

/// Confirms a previewed job: the worker picks it up.
pub fn start(conn: &mut DbConnection, org_id: &str, job_id: &str, actor: &Actor) -> Result<BulkJob, ServiceError> {
    db::write_tx(conn, |conn| {
        let n = diesel::update(
            bulk_jobs::table
                .filter(bulk_jobs::org_id.eq(org_id))
                .filter(bulk_jobs::id.eq(job_id))
                .filter(bulk_jobs::status.eq(JobStatus::Previewed))
                .filter(bulk_jobs::valid_rows.gt(0)),
        )
        .set(bulk_jobs::status.eq(JobStatus::Queued))
        .execute(conn)?;
        if n != 1 {
            return Err(ServiceError::WrongState);
        }
        let job = find(conn, org_id, job_id)?.ok_or(ServiceError::NotFound)?;
        audit::record(conn, actor, Some(org_id), action::BULK_STARTED, Some(job_id), Some(&counts_detail(&job)))?;
        Ok(job)
    })
}

/// Cancels a job that has not finished; rows already processed keep their invitations.
pub fn cancel(conn: &mut DbConnection, org_id: &str, job_id: &str) -> Result<(), ServiceError> {
    let n = db::write_tx(conn, |conn| {
        diesel::update(
            bulk_jobs::table
                .filter(bulk_jobs::org_id.eq(org_id))
                .filter(bulk_jobs::id.eq(job_id))
                .filter(bulk_jobs::status.eq_any([JobStatus::Previewed, JobStatus::Queued, JobStatus::Running])),
        )
        .set((
            bulk_jobs::status.eq(JobStatus::Cancelled),
            bulk_jobs::finished_at.eq(Some(db::now())),
            bulk_jobs::lease_owner.eq(None::<String>),
            bulk_jobs::lease_until.eq(None::<time::PrimitiveDateTime>),
        ))
        .execute(conn)
    })?;
    if n == 1 { Ok(()) } else { Err(ServiceError::WrongState) }
}

/// True while a job still has work to do.
pub fn is_active(job: &BulkJob) -> bool {
    job.status == JobStatus::Queued || job.status == JobStatus::Running
}
