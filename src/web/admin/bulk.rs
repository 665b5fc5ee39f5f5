//! Bulk invitations, `/o/{org}/admin/bulk`: the template, the upload and its preview, the
//! confirmation, progress (a page that refreshes itself while the job runs) and the results file.
//!
//! The upload form carries its CSRF token in the action URL (`?csrf_token=…`): the middleware
//! does not read multipart bodies.

use actix_multipart::Multipart;
use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{HttpResponse, get, post, web};
use askama::Template;
use futures_util::stream;

use super::upload;
use crate::db::models::{BulkJob, Organization};
use crate::domain::{JobStatus, RowStatus};
use crate::error::AppError;
use crate::i18n::Tr;
use crate::services::audit_log::inert_cell;
use crate::services::bulk::{self, jobs};
use crate::services::{FieldErrors, policy};
use crate::state::AppState;
use crate::web::extract::{OrgAdmin, OrgContext};
use crate::web::{Ctx, Errors, invalid, ok, see_other, with_conn};

/// Problem rows shown on the page; the results file has them all.
const PROBLEMS_SHOWN: i64 = 200;
/// Rows per chunk of the results file.
const RESULTS_BATCH: i64 = 1000;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(index)
        .service(template)
        .service(upload_file)
        .service(results)
        .service(job_page)
        .service(start)
        .service(cancel);
}

/// A job as listed and shown.
struct JobView {
    job: BulkJob,
    status_key: &'static str,
    created: String,
    error: Option<&'static str>,
}

impl JobView {
    fn new(tr: &Tr, job: BulkJob) -> JobView {
        JobView {
            status_key: status_key(job.status),
            created: tr.datetime(&job.created_at),
            error: job.error.as_deref().map(|k| tr.t(k)),
            job,
        }
    }
}

fn status_key(status: JobStatus) -> &'static str {
    match status {
        JobStatus::Previewed => "bulk.status_previewed",
        JobStatus::Queued => "bulk.status_queued",
        JobStatus::Running => "bulk.status_running",
        JobStatus::Done => "bulk.status_done",
        JobStatus::Failed => "bulk.status_failed",
        JobStatus::Cancelled => "bulk.status_cancelled",
    }
}

fn row_status_key(status: RowStatus) -> &'static str {
    match status {
        RowStatus::Valid => "bulk.row_valid",
        RowStatus::Invalid => "bulk.row_invalid",
        RowStatus::Duplicate => "bulk.row_duplicate",
        RowStatus::Created => "bulk.row_created",
        RowStatus::Failed => "bulk.row_failed",
    }
}

/// One problem row as shown.
struct ProblemView {
    line_no: i64,
    email: String,
    status: &'static str,
    reason: &'static str,
}

#[derive(Template)]
#[template(path = "pages/admin/bulk.html")]
struct IndexPage {
    ctx: Ctx,
    org: Organization,
    section: &'static str,
    errors: Errors,
    jobs: Vec<JobView>,
    max_rows: usize,
    max_mb: usize,
}

#[derive(Template)]
#[template(path = "pages/admin/bulk_job.html")]
struct JobPage {
    ctx: Ctx,
    org: Organization,
    section: &'static str,
    view: JobView,
    active: bool,
    problems: Vec<ProblemView>,
    more_problems: bool,
}

async fn index_page(
    state: &web::Data<AppState>,
    ctx: Ctx,
    org: Organization,
    errors: Errors,
) -> Result<IndexPage, AppError> {
    let org_id = org.id.clone();
    let list = with_conn(state, move |c| Ok(jobs::recent(c, &org_id, 20)?)).await?;
    let jobs = list.into_iter().map(|j| JobView::new(&ctx.tr, j)).collect();
    Ok(IndexPage {
        ctx,
        org,
        section: "bulk",
        errors,
        jobs,
        max_rows: bulk::MAX_ROWS,
        max_mb: bulk::MAX_FILE_BYTES / (1024 * 1024),
    })
}

/// The upload form and the recent jobs.
#[get("/o/{org}/admin/bulk")]
async fn index(state: web::Data<AppState>, ctx: Ctx, caller: OrgAdmin) -> Result<HttpResponse, AppError> {
    let OrgContext { org, .. } = caller.0;
    ok(&index_page(&state, ctx, org, Errors::default()).await?)
}

/// The CSV template (Azure's layout plus our optional columns).
#[get("/o/{org}/admin/bulk/template.csv")]
async fn template(state: web::Data<AppState>, caller: OrgAdmin) -> Result<HttpResponse, AppError> {
    let OrgContext { org, .. } = caller.0;
    let my_apps = crate::domain::links::my_apps_url(&state.settings.public_url, &org.slug);
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((header::CONTENT_DISPOSITION, "attachment; filename=\"bulk-invite-template.csv\""))
        .body(bulk::template_csv(&my_apps)))
}

/// Reads and checks the file, stores the preview, and shows it. Nothing is invited yet.
#[post("/o/{org}/admin/bulk")]
async fn upload_file(
    state: web::Data<AppState>,
    ctx: Ctx,
    caller: OrgAdmin,
    body: Multipart,
) -> Result<HttpResponse, AppError> {
    let OrgContext { org, membership, user, actor: act } = caller.0;
    if !policy::may_invite(&org, &membership) {
        return Err(AppError::Forbidden);
    }
    let mut form = upload::read_limited(body, bulk::MAX_FILE_BYTES, bulk::MAX_FILE_BYTES + 64 * 1024).await?;
    let refuse = |key: &'static str| FieldErrors(vec![("file", key)]);
    let Some(bytes) = form.file("file") else {
        let page = index_page(&state, ctx, org, Errors(refuse("bulk.file_required"))).await?;
        return invalid(&page);
    };
    let (o, public_url) = (org.clone(), state.settings.public_url.clone());
    let checked = with_conn(&state, move |c| Ok(bulk::check_file(c, &o, &public_url, &bytes)?)).await?;
    let rows = match checked {
        Ok(rows) => rows,
        Err(key) => return invalid(&index_page(&state, ctx, org, Errors(refuse(key))).await?),
    };
    let (act, org_id, uid) = (act, org.id.clone(), user.id.clone());
    let job = with_conn(&state, move |c| Ok(jobs::create_preview(c, &org_id, &uid, "", rows, &act)?)).await?;
    Ok(see_other(&format!("/o/{}/admin/bulk/{}", org.slug, job.id)))
}

/// A job: its preview, its progress, or its results.
#[get("/o/{org}/admin/bulk/{job}")]
async fn job_page(
    state: web::Data<AppState>,
    ctx: Ctx,
    caller: OrgAdmin,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let (_, job_id) = path.into_inner();
    let OrgContext { org, .. } = caller.0;
    let org_id = org.id.clone();
    let (job, rows) = with_conn(&state, move |c| {
        let job = jobs::find(c, &org_id, &job_id)?.ok_or(AppError::NotFound)?;
        let rows = jobs::problems(c, &job.id, PROBLEMS_SHOWN + 1)?;
        Ok((job, rows))
    })
    .await?;
    let more_problems = rows.len() as i64 > PROBLEMS_SHOWN;
    let problems = rows
        .into_iter()
        .take(PROBLEMS_SHOWN as usize)
        .map(|r| ProblemView {
            line_no: r.line_no,
            email: r.email,
            status: ctx.tr.t(row_status_key(r.status)),
            reason: r.reason.as_deref().map(|k| ctx.tr.t(k)).unwrap_or(""),
        })
        .collect();
    let active = jobs::is_active(&job);
    let view = JobView::new(&ctx.tr, job);
    let page = JobPage { ctx, org, section: "bulk", view, active, problems, more_problems };
    let mut res = ok(&page)?;
    if active {
        // The page reloads itself while the job runs; no script needed.
        res.headers_mut().insert(header::REFRESH, header::HeaderValue::from_static("2"));
    }
    Ok(res)
}

/// Confirms a previewed job: the background worker starts inviting.
#[post("/o/{org}/admin/bulk/{job}/start")]
async fn start(
    state: web::Data<AppState>,
    caller: OrgAdmin,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let (_, job_id) = path.into_inner();
    let OrgContext { org, membership, actor: act, .. } = caller.0;
    if !policy::may_invite(&org, &membership) {
        return Err(AppError::Forbidden);
    }
    let (act, org_id, id) = (act, org.id.clone(), job_id.clone());
    with_conn(&state, move |c| Ok(jobs::start(c, &org_id, &id, &act)?)).await?;
    state.bulk_wake.notify_one();
    Ok(see_other(&format!("/o/{}/admin/bulk/{}", org.slug, job_id)))
}

/// Cancels a job; invitations already created stay.
#[post("/o/{org}/admin/bulk/{job}/cancel")]
async fn cancel(
    state: web::Data<AppState>,
    caller: OrgAdmin,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let (_, job_id) = path.into_inner();
    let OrgContext { org, .. } = caller.0;
    let (org_id, id) = (org.id.clone(), job_id.clone());
    with_conn(&state, move |c| Ok(jobs::cancel(c, &org_id, &id)?)).await?;
    Ok(see_other(&format!("/o/{}/admin/bulk/{}", org.slug, job_id)))
}

/// One chunk of the results file, every cell made inert for spreadsheets.
fn results_chunk(tr: &Tr, header: bool, rows: &[crate::db::models::BulkRow]) -> Result<Bytes, AppError> {
    let fail = |e: csv::Error| AppError::Internal(anyhow::anyhow!("csv: {e}"));
    let mut out = csv::WriterBuilder::new().from_writer(Vec::with_capacity(rows.len() * 96));
    if header {
        out.write_record(["line", "email", "status", "reason", "invitation_id"]).map_err(fail)?;
    }
    for r in rows {
        let reason = r.reason.as_deref().map(|k| tr.t(k)).unwrap_or("");
        let cells =
            [&r.line_no.to_string(), &r.email, r.status.as_str(), reason, r.invitation_id.as_deref().unwrap_or("")];
        out.write_record(cells.iter().map(|c| inert_cell(c).into_owned())).map_err(fail)?;
    }
    let bytes = out.into_inner().map_err(|e| AppError::Internal(anyhow::anyhow!("csv: {e}")))?;
    Ok(Bytes::from(bytes))
}

/// `results.csv`: one line per row of the file (email, status, reason, invitation id).
#[get("/o/{org}/admin/bulk/{job}/results.csv")]
async fn results(
    state: web::Data<AppState>,
    ctx: Ctx,
    caller: OrgAdmin,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let (_, job_id) = path.into_inner();
    let OrgContext { org, .. } = caller.0;
    let (org_id, id) = (org.id.clone(), job_id.clone());
    let job = with_conn(&state, move |c| jobs::find(c, &org_id, &id)?.ok_or(AppError::NotFound)).await?;
    let (st, tr) = (state.clone(), ctx.tr);
    // (header written?, last line sent), None when finished.
    let body = stream::try_unfold(Some((false, 0i64)), move |at| {
        let (st, job_id) = (st.clone(), job.id.clone());
        async move {
            let Some((header_done, after)) = at else { return Ok::<_, AppError>(None) };
            let rows = with_conn(&st, move |c| Ok(jobs::rows_after(c, &job_id, after, RESULTS_BATCH)?)).await?;
            let mut chunk = results_chunk(&tr, !header_done, &rows)?;
            if !header_done {
                chunk = Bytes::from([b"\xEF\xBB\xBF".as_slice(), &chunk].concat());
            }
            let next = match rows.last() {
                Some(last) if rows.len() as i64 == RESULTS_BATCH => Some((true, last.line_no)),
                _ => None,
            };
            Ok(Some((chunk, next)))
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((header::CONTENT_DISPOSITION, format!("attachment; filename=\"bulk-results-{job_id}.csv\"")))
        .streaming(body))
}
