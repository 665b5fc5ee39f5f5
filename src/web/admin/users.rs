//! Users list, guest page and the lifecycle actions on them.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, get, post, web};
use askama::Template;
use serde::Deserialize;

use super::{counts, mail_key, state_key, type_key};
use crate::db::models::Organization;
use crate::domain::{InvitationStatus, MembershipState, Role};
use crate::error::AppError;
use crate::services::invitations::{self, Inviter};
use crate::services::second_factor::{self, Notice};
use crate::services::users::{self, UserFilter};
use crate::services::{FieldErrors, ServiceError, accounts};
use crate::state::AppState;
use crate::web::extract::{OrgAdmin, OrgContext};
use crate::web::{Ctx, Errors, decode_cursor, encode_cursor, ok, render, see_other, with_conn};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(console_home)
        .service(list)
        .service(detail)
        .service(resend)
        .service(revoke)
        .service(remove)
        .service(reset_second_factor);
}

#[derive(Template)]
#[template(path = "pages/admin/home.html")]
struct HomePage {
    ctx: Ctx,
    org: Organization,
    section: &'static str,
    members: i64,
    guests: i64,
    pending: i64,
}

#[get("/o/{org}/admin")]
async fn console_home(state: web::Data<AppState>, ctx: Ctx, caller: OrgAdmin) -> Result<HttpResponse, AppError> {
    let OrgContext { org, .. } = caller.0;
    let id = org.id.clone();
    let (members, guests, pending) = with_conn(&state, move |c| Ok(counts(c, &id)?)).await?;
    ok(&HomePage { ctx, org, section: "home", members, guests, pending })
}

struct Row {
    id: String,
    name: String,
    email: String,
    type_key: &'static str,
    state_key: &'static str,
    state_class: &'static str,
    invited_by: String,
    invited_on: String,
    mail_key: &'static str,
    access_ends: String,
}

#[derive(Template)]
#[template(path = "pages/admin/users.html")]
struct ListPage {
    ctx: Ctx,
    org: Organization,
    section: &'static str,
    rows: Vec<Row>,
    q: String,
    user_type: String,
    state: String,
    base_query: String,
    next_query: Option<String>,
    has_prev: bool,
    states: [&'static str; 6],
    /// `none`: only people without a second factor.
    mfa: String,
}

#[derive(Deserialize)]
struct ListQuery {
    q: Option<String>,
    #[serde(rename = "type")]
    user_type: Option<String>,
    state: Option<String>,
    /// `none`: only people without a second factor.
    mfa: Option<String>,
    /// Cursor: `<unix micros>.<membership id>` of the last row of the previous page.
    after: Option<String>,
}

/// Values of the users list's state filter.
const LIST_STATES: [&str; 6] = [
    MembershipState::PendingAcceptance.as_str(),
    MembershipState::Accepted.as_str(),
    users::list_state::BLOCKED,
    users::list_state::LEFT,
    users::list_state::ENDING,
    users::list_state::REMOVED,
];

fn query_string(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs.iter().filter(|(_, v)| !v.is_empty()))
        .finish()
}

/// The users list: filters, prefix search, keyset pagination (fast at any depth).
#[get("/o/{org}/admin/users")]
async fn list(
    state: web::Data<AppState>,
    ctx: Ctx,
    caller: OrgAdmin,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, AppError> {
    let OrgContext { org, user: _, .. } = caller.0;
    let user_type = q.user_type.clone().filter(|t| crate::domain::UserType::parse(t).is_some()).unwrap_or_default();
    let st = q.state.clone().filter(|s| LIST_STATES.contains(&s.as_str())).unwrap_or_default();
    let search: String = q.q.clone().unwrap_or_default().trim().chars().take(200).collect();
    let filter = UserFilter {
        user_type: (!user_type.is_empty()).then(|| user_type.clone()),
        state: (!st.is_empty()).then(|| st.clone()),
        search: (!search.is_empty()).then(|| search.clone()),
        after: q.after.as_deref().and_then(decode_cursor),
        no_second_factor: q.mfa.as_deref() == Some("none"),
    };
    let mfa = if filter.no_second_factor { "none".to_owned() } else { String::new() };
    let has_prev = filter.after.is_some();
    let org_id = org.id.clone();
    let page = with_conn(&state, move |c| Ok(users::list(c, &org_id, &filter)?)).await?;
    let tr = ctx.tr;
    let rows = page
        .rows
        .into_iter()
        .map(|r| {
            let (state_key, state_class) = state_key(&r.membership);
            Row {
                id: r.membership.id.clone(),
                name: r.user.display_name,
                email: r.user.email,
                type_key: type_key(&r.membership.user_type),
                state_key,
                state_class,
                invited_by: r.inviter_name.unwrap_or_else(|| "—".into()),
                invited_on: tr.datetime(&r.membership.created_at),
                mail_key: mail_key(r.email_status),
                access_ends: r.membership.access_ends_at.map(|e| tr.datetime(&e)).unwrap_or_else(|| "—".into()),
            }
        })
        .collect();
    let base_query = query_string(&[("q", &search), ("type", &user_type), ("state", &st), ("mfa", &mfa)]);
    let next_query = page.next.map(|(at, id)| {
        let cursor = encode_cursor(&at, &id);
        query_string(&[("q", &search), ("type", &user_type), ("state", &st), ("mfa", &mfa), ("after", &cursor)])
    });
    ok(&ListPage {
        ctx,
        org,
        section: "users",
        rows,
        q: search,
        user_type,
        state: st,
        base_query,
        next_query,
        has_prev,
        states: LIST_STATES,
        mfa,
    })
}

struct InvitationView {
    id: String,
    status_key: &'static str,
    pending: bool,
    expires: String,
    redirect: String,
    mail_key: &'static str,
    mail_attempts: i64,
    mail_error: Option<String>,
    disclosed: bool,
}

#[derive(Template)]
#[template(path = "pages/admin/user.html")]
struct DetailPage {
    ctx: Ctx,
    org: Organization,
    section: &'static str,
    membership_id: String,
    user: crate::db::models::User,
    type_key: &'static str,
    state_key: &'static str,
    state_class: &'static str,
    role_key: &'static str,
    role: Role,
    is_guest: bool,
    blocked: bool,
    accepted: bool,
    removed_text: Option<String>,
    sponsor_name: String,
    access_ends: Option<String>,
    extension_days: String,
    can_act: bool,
    errors: Errors,
    form: LifecycleForm,
    invited_by: String,
    invited_on: String,
    redeemed_on: String,
    invitation: Option<InvitationView>,
    can_remove: bool,
    notice: Option<&'static str>,
    /// The person has a (confirmed) second factor.
    second_factor: bool,
}

#[derive(Deserialize)]
struct NoticeQuery {
    done: Option<String>,
}

/// The notice of `?done=…` after an action on invitations or people (also used by the
/// self-service page).
pub(crate) fn notice_key(done: Option<&str>) -> Option<&'static str> {
    match done? {
        "role" => Some("notice.role_changed"),
        "converted" => Some("notice.converted"),
        "blocked" => Some("notice.blocked"),
        "unblocked" => Some("notice.unblocked"),
        "restored" => Some("notice.restored"),
        "reset" => Some("notice.reset"),
        "sponsor" => Some("notice.sponsor_changed"),
        "end_date" => Some("notice.end_date_changed"),
        "extended" => Some("notice.extended"),
        "sent" => Some("notice.invitation_sent"),
        "resent" => Some("notice.invitation_resent"),
        "revoked" => Some("notice.invitation_revoked"),
        "existing" => Some("notice.invitation_existing"),
        "mfa_reset" => Some("mfa.reset_done"),
        _ => None,
    }
}

/// The guest page: profile, state, invitation and delivery, actions.
#[get("/o/{org}/admin/users/{id}")]
async fn detail(
    state: web::Data<AppState>,
    ctx: Ctx,
    caller: OrgAdmin,
    path: web::Path<(String, String)>,
    q: web::Query<NoticeQuery>,
) -> Result<HttpResponse, AppError> {
    let (_, id) = path.into_inner();
    let OrgContext { org, user, .. } = caller.0;
    let notice = notice_key(q.done.as_deref());
    let view = DetailView { notice, ..DetailView::default() };
    show_detail(&state, ctx, org, &user.id, id, view).await
}

/// Values typed into the guest page's lifecycle forms (kept when one is refused).
#[derive(Debug, Clone, Default)]
pub struct LifecycleForm {
    pub sponsor: String,
    pub end_date: String,
    pub reset_email: String,
}

/// How the guest page is shown: a notice after an action, or a refused action's field errors
/// with what was typed.
#[derive(Debug, Clone)]
pub struct DetailView {
    pub notice: Option<&'static str>,
    pub errors: FieldErrors,
    pub form: LifecycleForm,
    pub status: StatusCode,
}

impl Default for DetailView {
    fn default() -> Self {
        DetailView {
            notice: None,
            errors: FieldErrors::default(),
            form: LifecycleForm::default(),
            status: StatusCode::OK,
        }
    }
}

/// Renders the guest page of membership `id`, as seen by `viewer_id`.
pub async fn show_detail(
    state: &web::Data<AppState>,
    ctx: Ctx,
    org: Organization,
    viewer_id: &str,
    id: String,
    view: DetailView,
) -> Result<HttpResponse, AppError> {
    let DetailView { notice, errors, form, status } = view;
    let org_id = org.id.clone();
    let (d, (sponsor, second_factor)) = with_conn(state, move |c| {
        let d = users::detail(c, &org_id, &id)?.ok_or(AppError::NotFound)?;
        let sponsor = match &d.membership.sponsor_id {
            Some(sid) => accounts::find_by_id(c, sid)?,
            None => None,
        };
        let second_factor = second_factor::is_enrolled(c, &d.user.id)?;
        Ok((d, (sponsor, second_factor)))
    })
    .await?;
    let tr = ctx.tr;
    let (state_key, state_class) = state_key(&d.membership);
    let invitation = d.invitation.map(|inv| InvitationView {
        status_key: invitations::status_key(&inv),
        pending: inv.status == InvitationStatus::Pending,
        expires: tr.datetime(&inv.expires_at),
        redirect: inv.redirect_url.clone().unwrap_or_else(|| format!("/o/{}/apps", org.slug)),
        mail_key: mail_key(d.delivery.as_ref().map(|m| m.status)),
        mail_attempts: d.delivery.as_ref().map(|m| m.attempts).unwrap_or(0),
        mail_error: d.delivery.as_ref().and_then(|m| m.last_error.clone()),
        disclosed: inv.disclosed,
        id: inv.id,
    });
    let m = &d.membership;
    let removed_text = m.removed_at.map(|at| {
        let until = at + crate::services::lifecycle::RESTORE_WINDOW;
        tr.f2("lifecycle.removed_on", "date", &tr.datetime(&at), "until", &tr.datetime(&until))
    });
    let form = LifecycleForm {
        sponsor: if form.sponsor.is_empty() {
            sponsor.as_ref().map(|s| s.email.clone()).unwrap_or_default()
        } else {
            form.sponsor
        },
        end_date: if form.end_date.is_empty() {
            m.access_ends_at.map(|e| e.date().to_string()).unwrap_or_default()
        } else {
            form.end_date
        },
        reset_email: if form.reset_email.is_empty() { d.user.email.clone() } else { form.reset_email },
    };
    let is_self = m.user_id == viewer_id;
    render(
        status,
        &DetailPage {
            section: "users",
            membership_id: m.id.clone(),
            type_key: type_key(&m.user_type),
            state_key,
            state_class,
            role: m.role,
            role_key: match m.role {
                Role::Admin => "role.admin",
                Role::GuestInviter => "role.guest_inviter",
                _ => "role.none",
            },
            is_guest: m.user_type == crate::domain::UserType::Guest,
            blocked: m.blocked,
            accepted: m.state == crate::domain::MembershipState::Accepted,
            removed_text,
            sponsor_name: sponsor.map(|s| format!("{} <{}>", s.display_name, s.email)).unwrap_or_else(|| "—".into()),
            access_ends: m.access_ends_at.map(|e| tr.datetime(&e)),
            extension_days: crate::services::lifecycle::extension_days(&org).to_string(),
            invited_by: d.inviter.map(|u| u.display_name).unwrap_or_else(|| "—".into()),
            invited_on: tr.datetime(&m.created_at),
            redeemed_on: tr.opt_datetime(&m.accepted_at),
            invitation,
            can_act: !is_self,
            can_remove: !is_self && m.removed_at.is_none(),
            notice,
            second_factor,
            errors: Errors(errors),
            form,
            user: d.user,
            org,
            ctx,
        },
    )
}

async fn membership_of_invitation(
    state: &web::Data<AppState>,
    org_id: &str,
    invitation_id: &str,
) -> Result<String, AppError> {
    let (o, i) = (org_id.to_owned(), invitation_id.to_owned());
    with_conn(state, move |c| {
        invitations::find_in_org(c, &o, &i)?.map(|inv| inv.membership_id).ok_or(AppError::NotFound)
    })
    .await
}

/// Resend: new token, clock restarted, old link dead.
#[post("/o/{org}/admin/invitations/{id}/resend")]
async fn resend(
    state: web::Data<AppState>,
    caller: OrgAdmin,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let (_, id) = path.into_inner();
    let OrgContext { org, membership, actor: act, .. } = caller.0;
    let membership_id = membership_of_invitation(&state, &org.id, &id).await?;
    let (public_url, limit) = (state.settings.public_url.clone(), state.settings.throttle_enabled);
    let (o, m) = (org.clone(), membership.clone());
    let result = with_conn(&state, move |c| {
        let inviter = Inviter { org: &o, membership: &m, actor: &act };
        Ok(invitations::resend_as(c, &public_url, inviter, &id, limit))
    })
    .await?;
    match result {
        Ok(_) => Ok(see_other(&format!("/o/{}/admin/users/{membership_id}?done=resent", org.slug))),
        Err(ServiceError::WrongState) => Err(AppError::BadRequest("invitation is not pending".into())),
        Err(e) => Err(e.into()),
    }
}

/// Revoke a pending invitation.
#[post("/o/{org}/admin/invitations/{id}/revoke")]
async fn revoke(
    state: web::Data<AppState>,
    caller: OrgAdmin,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let (_, id) = path.into_inner();
    let OrgContext { org, actor: act, .. } = caller.0;
    let o = org.clone();
    let result = with_conn(&state, move |c| Ok(invitations::revoke(c, &o, &id, &act))).await?;
    match result {
        Ok(()) => Ok(see_other(&format!("/o/{}/admin/users", org.slug))),
        Err(ServiceError::WrongState) => Err(AppError::BadRequest("invitation is not pending".into())),
        Err(e) => Err(e.into()),
    }
}

/// Remove from the organization (soft delete; sessions end at once).
#[post("/o/{org}/admin/users/{id}/remove")]
async fn remove(
    state: web::Data<AppState>,
    caller: OrgAdmin,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let (_, id) = path.into_inner();
    let OrgContext { org, actor: act, .. } = caller.0;
    let o = org.clone();
    with_conn(&state, move |c| Ok(users::remove(c, &o, &id, &act)?)).await?;
    Ok(see_other(&format!("/o/{}/admin/users", org.slug)))
}

/// Resets the person's second factor (they lost their phone and their recovery codes): it is
/// removed with its recovery codes, the person is told by email, the reset recorded; they set
/// it up again after signing in (or are led to it when the organization requires one).
#[post("/o/{org}/admin/users/{id}/second-factor/reset")]
async fn reset_second_factor(
    state: web::Data<AppState>,
    caller: OrgAdmin,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, AppError> {
    let (_, id) = path.into_inner();
    let OrgContext { org, actor: act, .. } = caller.0;
    let (org_id, public_url) = (org.id.clone(), state.settings.public_url.clone());
    let (mid, default_lang) = (id.clone(), org.default_language.clone());
    with_conn(&state, move |c| {
        let d = users::detail(c, &org_id, &mid)?.ok_or(AppError::NotFound)?;
        let lang = d
            .user
            .language
            .as_deref()
            .and_then(crate::i18n::Lang::parse)
            .or_else(|| crate::i18n::Lang::parse(&default_lang))
            .unwrap_or(crate::i18n::Lang::En);
        Ok(second_factor::remove(c, &d.user.id, Some(&org_id), &act, &Notice { public_url: &public_url, lang })?)
    })
    .await?;
    Ok(see_other(&format!("/o/{}/admin/users/{id}?done=mfa_reset", org.slug)))
}
