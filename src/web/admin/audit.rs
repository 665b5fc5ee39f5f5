//! The audit log of an organization: filters, keyset pagination and the CSV export.

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{HttpResponse, get, web};
use askama::Template;
use futures_util::stream;
use serde::Deserialize;
use time::PrimitiveDateTime;

use crate::db::models::Organization;
use crate::error::AppError;
use crate::i18n::Tr;
use crate::services::audit::action;
use crate::services::audit_log::{self, AuditFilter, AuditQuery, AuditRow, EXPORT_BATCH, PAGE_SIZE, inert_cell};
use crate::state::AppState;
use crate::web::extract::{OrgAdmin, OrgContext};
use crate::web::{Ctx, Errors, decode_cursor, encode_cursor, invalid, ok, with_conn};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(list).service(export);
}

/// The catalogue key of an action's label; actions added without a label show their name.
fn action_key(name: &str) -> Option<&'static str> {
    Some(match name {
        action::ORG_CREATED => "audit.action.org_created",
        action::SETTINGS_CHANGED => "audit.action.settings_changed",
        action::INVITATION_CREATED => "audit.action.invitation_created",
        action::INVITATION_RESENT => "audit.action.invitation_resent",
        action::INVITATION_REVOKED => "audit.action.invitation_revoked",
        action::INVITATION_REDEEMED => "audit.action.invitation_redeemed",
        action::CONSENT_GIVEN => "audit.action.consent_given",
        action::SIGNIN_SUCCEEDED => "audit.action.signin_succeeded",
        action::SIGNIN_FAILED => "audit.action.signin_failed",
        action::ACCOUNT_CREATED => "audit.action.account_created",
        action::MEMBER_REMOVED => "audit.action.member_removed",
        action::MEMBER_LEFT => "audit.action.member_left",
        action::PASSWORD_CHANGED => "audit.action.password_changed",
        action::PROFILE_CHANGED => "audit.action.profile_changed",
        action::SESSIONS_ENDED => "audit.action.sessions_ended",
        action::GROUP_CREATED => "audit.action.group_created",
        action::GROUP_RENAMED => "audit.action.group_renamed",
        action::GROUP_DELETED => "audit.action.group_deleted",
        action::GROUP_MEMBER_ADDED => "audit.action.group_member_added",
        action::GROUP_MEMBER_REMOVED => "audit.action.group_member_removed",
        action::GROUP_OWNER_CHANGED => "audit.action.group_owner_changed",
        action::APP_CREATED => "audit.action.app_created",
        action::APP_UPDATED => "audit.action.app_updated",
        action::APP_DELETED => "audit.action.app_deleted",
        action::APP_ASSIGNED => "audit.action.app_assigned",
        action::APP_UNASSIGNED => "audit.action.app_unassigned",
        action::INVITATION_RESET => "audit.action.invitation_reset",
        action::MEMBER_CONVERTED => "audit.action.member_converted",
        action::MEMBER_BLOCKED => "audit.action.member_blocked",
        action::MEMBER_UNBLOCKED => "audit.action.member_unblocked",
        action::MEMBER_RESTORED => "audit.action.member_restored",
        action::MEMBER_PURGED => "audit.action.member_purged",
        action::ROLE_CHANGED => "audit.action.role_changed",
        action::SPONSOR_CHANGED => "audit.action.sponsor_changed",
        action::END_DATE_CHANGED => "audit.action.end_date_changed",
        action::ACCESS_EXTENDED => "audit.action.access_extended",
        action::END_REMINDER_SENT => "audit.action.end_reminder_sent",
        action::ACCESS_ENDED => "audit.action.access_ended",
        action::API_KEY_CREATED => "audit.action.api_key_created",
        action::API_KEY_REVOKED => "audit.action.api_key_revoked",
        action::BULK_PREVIEWED => "audit.action.bulk_previewed",
        action::BULK_STARTED => "audit.action.bulk_started",
        action::BULK_FINISHED => "audit.action.bulk_finished",
        action::OIDC_CLIENT_ENABLED => "audit.action.oidc_client_enabled",
        action::OIDC_CLIENT_UPDATED => "audit.action.oidc_client_updated",
        action::OIDC_CLIENT_DISABLED => "audit.action.oidc_client_disabled",
        action::OIDC_SECRET_ROTATED => "audit.action.oidc_secret_rotated",
        action::OIDC_ACCESS_DENIED => "audit.action.oidc_access_denied",
        action::OIDC_REPLAY => "audit.action.oidc_replay_detected",
        action::IDP_ADDED => "audit.action.idp_added",
        action::IDP_REMOVED => "audit.action.idp_removed",
        action::IDP_BOUND => "audit.action.idp_bound",
        action::IDP_REFUSED => "audit.action.idp_refused",
        action::CODE_SENT => "audit.action.code_sent",
        action::CODE_FAILED => "audit.action.code_failed",
        action::PASSWORD_RESET_REQUESTED => "audit.action.password_reset_requested",
        action::PASSWORD_RESET_DONE => "audit.action.password_reset",
        action::MFA_ENROLLED => "audit.action.mfa_enrolled",
        action::MFA_REMOVED => "audit.action.mfa_removed",
        action::MFA_RECOVERY_REGENERATED => "audit.action.mfa_recovery_regenerated",
        action::MFA_RESET => "audit.action.mfa_reset",
        action::MFA_FAILED => "audit.action.mfa_failed",
        _ => return None,
    })
}

/// An action as people read it in `tr`'s language.
fn action_label(tr: &Tr, name: &str) -> String {
    action_key(name).map(|k| tr.t(k).to_owned()).unwrap_or_else(|| name.to_owned())
}

struct ActionOption {
    value: &'static str,
    label: String,
}

struct Row {
    time: String,
    actor_name: String,
    actor_email: String,
    action: String,
    target_name: String,
    target_email: String,
    target: String,
    detail: String,
    client_ip: String,
    request_id: String,
}

#[derive(Template)]
#[template(path = "pages/admin/audit.html")]
struct AuditPage {
    ctx: Ctx,
    org: Organization,
    section: &'static str,
    errors: Errors,
    form: AuditQuery,
    actions: Vec<ActionOption>,
    rows: Vec<Row>,
    base_query: String,
    next_query: Option<String>,
    has_prev: bool,
}

#[derive(Deserialize, Default)]
struct Params {
    actor: Option<String>,
    target: Option<String>,
    action: Option<String>,
    from: Option<String>,
    to: Option<String>,
    /// Cursor: `<unix micros>.<event id>` of the last row of the previous page.
    after: Option<String>,
}

impl Params {
    /// The filters as typed, cut to sane lengths (they come back in the form and the links).
    fn query(&self) -> AuditQuery {
        let cut = |v: &Option<String>| v.as_deref().unwrap_or("").trim().chars().take(400).collect::<String>();
        AuditQuery {
            actor: cut(&self.actor),
            target: cut(&self.target),
            action: cut(&self.action),
            from: cut(&self.from),
            to: cut(&self.to),
        }
    }
}

/// The filters as a query string (empty ones left out), optionally with a cursor.
fn query_string(q: &AuditQuery, after: Option<&str>) -> String {
    let pairs =
        [("actor", q.actor.as_str()), ("target", &q.target), ("action", &q.action), ("from", &q.from), ("to", &q.to)];
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs.iter().filter(|(_, v)| !v.is_empty()))
        .extend_pairs(after.map(|a| ("after", a)))
        .finish()
}

fn view(tr: &Tr, r: AuditRow) -> Row {
    let e = r.event;
    let (actor_name, actor_email) = match (r.actor, &e.actor_id) {
        (Some(p), _) => (p.name, p.email),
        (None, Some(id)) => (id.clone(), String::new()),
        (None, None) => ("—".to_owned(), String::new()),
    };
    let (target_name, target_email) = r.target.map(|p| (p.name, p.email)).unwrap_or_default();
    Row {
        time: tr.datetime(&e.created_at),
        actor_name,
        actor_email,
        action: action_label(tr, &e.action),
        target_name,
        target_email,
        target: e.target.unwrap_or_default(),
        detail: e.detail.unwrap_or_default(),
        client_ip: e.client_ip.unwrap_or_default(),
        request_id: e.request_id.unwrap_or_default(),
    }
}

/// Actions recorded outside any organization (sign-ins, a person's own account): never in an
/// organization's log, so not offered in its filter.
const NOT_IN_ORGS: [&str; 7] = [
    action::SIGNIN_SUCCEEDED,
    action::SIGNIN_FAILED,
    action::PASSWORD_CHANGED,
    action::PASSWORD_RESET_REQUESTED,
    action::PASSWORD_RESET_DONE,
    action::PROFILE_CHANGED,
    action::SESSIONS_ENDED,
];

fn page(ctx: Ctx, org: Organization, form: AuditQuery, errors: Errors) -> AuditPage {
    let actions = action::ALL
        .iter()
        .filter(|a| !NOT_IN_ORGS.contains(a))
        .map(|a| ActionOption { value: a, label: action_label(&ctx.tr, a) })
        .collect::<Vec<_>>();
    AuditPage {
        base_query: query_string(&form, None),
        ctx,
        org,
        section: "audit",
        errors,
        form,
        actions,
        rows: Vec::new(),
        next_query: None,
        has_prev: false,
    }
}

/// `/o/{org}/admin/audit`: the organization's events, newest first.
#[get("/o/{org}/admin/audit")]
async fn list(
    state: web::Data<AppState>,
    ctx: Ctx,
    caller: OrgAdmin,
    params: web::Query<Params>,
) -> Result<HttpResponse, AppError> {
    let OrgContext { org, .. } = caller.0;
    let form = params.query();
    let filter = match form.validate() {
        Ok(f) => f,
        Err(errors) => return invalid(&page(ctx, org, form, Errors(errors))),
    };
    let after = params.after.as_deref().and_then(decode_cursor);
    let has_prev = after.is_some();
    let org_id = org.id.clone();
    let found =
        with_conn(&state, move |c| Ok(audit_log::page(c, &org_id, &filter, after.as_ref(), PAGE_SIZE)?)).await?;
    let tr = ctx.tr;
    let mut p = page(ctx, org, form, Errors::default());
    p.rows = found.rows.into_iter().map(|r| view(&tr, r)).collect();
    p.next_query = found.next.map(|(at, id)| query_string(&p.form, Some(&encode_cursor(&at, &id))));
    p.has_prev = has_prev;
    ok(&p)
}

/// Column names of the export (stable: scripts read them).
const CSV_HEADER: [&str; 12] = [
    "time",
    "action",
    "actor_name",
    "actor_email",
    "actor_id",
    "target",
    "target_name",
    "target_email",
    "detail",
    "client_ip",
    "request_id",
    "event_id",
];

/// One batch of rows as CSV text, every cell made inert for spreadsheets.
fn csv_chunk(header: bool, rows: &[AuditRow]) -> Result<Bytes, AppError> {
    let mut out = csv::WriterBuilder::new().from_writer(Vec::with_capacity(rows.len() * 256));
    let fail = |e: csv::Error| AppError::Internal(anyhow::anyhow!("csv: {e}"));
    if header {
        out.write_record(CSV_HEADER).map_err(fail)?;
    }
    for r in rows {
        let e = &r.event;
        let time = e.created_at.assume_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        let cells = [
            time,
            e.action.clone(),
            r.actor.as_ref().map(|p| p.name.clone()).unwrap_or_default(),
            r.actor.as_ref().map(|p| p.email.clone()).unwrap_or_default(),
            opt(&e.actor_id),
            opt(&e.target),
            r.target.as_ref().map(|p| p.name.clone()).unwrap_or_default(),
            r.target.as_ref().map(|p| p.email.clone()).unwrap_or_default(),
            opt(&e.detail),
            opt(&e.client_ip),
            opt(&e.request_id),
            e.id.clone(),
        ];
        out.write_record(cells.iter().map(|c| inert_cell(c).into_owned())).map_err(fail)?;
    }
    let bytes = out.into_inner().map_err(|e| AppError::Internal(anyhow::anyhow!("csv: {e}")))?;
    Ok(Bytes::from(bytes))
}

/// Where the export stands between two batches.
enum Export {
    Start,
    After(PrimitiveDateTime, String),
    Done,
}

/// `/o/{org}/admin/audit.csv`: every event matching the filters, streamed in batches so that
/// a large log never sits in memory or holds a database connection for long.
#[get("/o/{org}/admin/audit.csv")]
async fn export(
    state: web::Data<AppState>,
    ctx: Ctx,
    caller: OrgAdmin,
    params: web::Query<Params>,
) -> Result<HttpResponse, AppError> {
    let OrgContext { org, .. } = caller.0;
    let form = params.query();
    let filter: AuditFilter = match form.validate() {
        Ok(f) => f,
        Err(errors) => return invalid(&page(ctx, org, form, Errors(errors))),
    };
    let st = state.clone();
    let org_id = org.id.clone();
    let body = stream::try_unfold(Export::Start, move |at| {
        let (st, org_id, filter) = (st.clone(), org_id.clone(), filter.clone());
        async move {
            let (header, after) = match at {
                Export::Done => return Ok::<_, AppError>(None),
                Export::Start => (true, None),
                Export::After(t, id) => (false, Some((t, id))),
            };
            let batch =
                with_conn(&st, move |c| Ok(audit_log::page(c, &org_id, &filter, after.as_ref(), EXPORT_BATCH)?))
                    .await?;
            let mut chunk = csv_chunk(header, &batch.rows)?;
            if header {
                // A byte-order mark, so that spreadsheets read the names as UTF-8.
                chunk = Bytes::from([b"\xEF\xBB\xBF".as_slice(), &chunk].concat());
            }
            let next = batch.next.map(|(t, id)| Export::After(t, id)).unwrap_or(Export::Done);
            Ok(Some((chunk, next)))
        }
    });
    let day = crate::db::now().date();
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((header::CONTENT_DISPOSITION, format!("attachment; filename=\"audit-{}-{day}.csv\"", org.slug)))
        .streaming(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips() {
        let at = crate::db::now();
        let (t, id) = decode_cursor(&encode_cursor(&at, "e-1")).unwrap();
        assert_eq!((t, id.as_str()), (at, "e-1"));
        assert!(decode_cursor("garbage").is_none());
    }
}
