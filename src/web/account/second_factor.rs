//! The second factor: enrolment and management on `/account/second-factor`, and the code step
//! of sign-in on `/signin/second-factor` (see [`services::second_factor`]).

use actix_session::Session;
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use askama::Template;
use serde::{Deserialize, Serialize};

use super::{WayIn, complete_signin};
use crate::auth::SignedIn;
use crate::auth::password::verify_password;
use crate::error::AppError;
use crate::i18n::Lang;
use crate::services::audit::{self, action};
use crate::services::second_factor::{self, Notice};
use crate::services::{FieldErrors, ServiceError, accounts, rate};
use crate::state::AppState;
use crate::web::{Ctx, Errors, actor, ok, render, safe_next, see_other, with_conn};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(manage_page)
        .service(start)
        .service(confirm)
        .service(regenerate)
        .service(remove)
        .service(step_page)
        .service(step);
}

/// Session key of a sign-in waiting for its second factor.
pub const PENDING_KEY: &str = "mfa_pending";
/// How long a pending sign-in waits for its code.
const PENDING_SECONDS: i64 = 300;

/// A sign-in that proved the first factor and waits for the second (kept in the session).
#[derive(Serialize, Deserialize)]
pub struct Pending {
    pub user_id: String,
    pub way: String,
    pub next: String,
    pub expires: i64,
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Parks a sign-in until its second factor and returns the redirect to the code step.
pub fn park(session: &Session, user_id: &str, way: WayIn, next: &str) -> Result<HttpResponse, AppError> {
    let pending = Pending {
        user_id: user_id.to_owned(),
        way: way.as_str().to_owned(),
        next: next.to_owned(),
        expires: now() + PENDING_SECONDS,
    };
    session.insert(PENDING_KEY, &pending).map_err(|e| AppError::Internal(anyhow::anyhow!("session: {e}")))?;
    Ok(see_other("/signin/second-factor"))
}

fn pending(session: &Session) -> Option<Pending> {
    session.get::<Pending>(PENDING_KEY).ok().flatten().filter(|p| p.expires > now())
}

/// Takes one second-factor attempt of `user_id` (always counted, whatever the throttle
/// setting: a second factor is only worth its limit): `Some(retry_after)` when paused.
async fn attempt_paused(state: &AppState, user_id: &str) -> Result<Option<u64>, AppError> {
    let key = second_factor::attempt_key(user_id);
    with_conn(state, move |c| Ok(rate::take(c, &key, second_factor::ATTEMPTS, second_factor::ATTEMPT_WINDOW)?)).await
}

/// The attempt was right: the account's failures are forgotten.
async fn attempt_succeeded(state: &AppState, user_id: &str) -> Result<(), AppError> {
    let key = second_factor::attempt_key(user_id);
    with_conn(state, move |c| Ok(rate::clear(c, &key)?)).await
}

fn paused_response(mut res: HttpResponse, wait: u64) -> HttpResponse {
    res.headers_mut().insert(header::RETRY_AFTER, wait.into());
    res
}

#[derive(Template)]
#[template(path = "pages/second_factor.html")]
struct ManagePage {
    ctx: Ctx,
    errors: Errors,
    /// No errors (for the forms that did not fail).
    empty: Errors,
    /// The form whose errors are shown: `confirm`, `regenerate` or `remove`.
    failed: &'static str,
    enrolled: bool,
    /// While enrolling: the secret (base32) and its QR code (SVG).
    secret: Option<String>,
    qr_svg: Option<String>,
    /// Recovery codes to show (once: right after enrolment or regeneration).
    codes: Vec<String>,
    recovery_left: i64,
    /// The person just signed in with a recovery code (the page says how many are left).
    recovery_used: bool,
    /// Where to go once enrolled (empty: the account page); set when a policy requires it.
    next: String,
    has_password: bool,
}

async fn load(state: &AppState, ctx: Ctx, user_id: &str) -> Result<ManagePage, AppError> {
    let uid = user_id.to_owned();
    let (user, factor, left) = with_conn(state, move |c| {
        let user = accounts::find_by_id(c, &uid)?.ok_or(AppError::NotFound)?;
        let factor = second_factor::find(c, &uid)?;
        let left = second_factor::recovery_left(c, &uid)?;
        Ok((user, factor, left))
    })
    .await?;
    let enrolled = factor.as_ref().is_some_and(|f| f.confirmed_at.is_some());
    let pending_secret = factor.filter(|f| f.confirmed_at.is_none()).map(|f| f.secret);
    let qr_svg = pending_secret
        .as_deref()
        .and_then(|s| second_factor::otpauth_url(s, &user.email))
        .and_then(|url| second_factor::qr_svg(&url));
    Ok(ManagePage {
        ctx,
        errors: Errors::default(),
        empty: Errors::default(),
        failed: "",
        enrolled,
        secret: pending_secret,
        qr_svg,
        codes: Vec::new(),
        recovery_left: left,
        recovery_used: false,
        next: String::new(),
        has_password: user.password_hash.is_some(),
    })
}

/// Enrolment (QR code and secret, then a first code) or, once enrolled, recovery codes and removal.
#[get("/account/second-factor")]
async fn manage_page(
    state: web::Data<AppState>,
    ctx: Ctx,
    signed_in: SignedIn,
    q: web::Query<ManageQuery>,
) -> Result<HttpResponse, AppError> {
    let mut page = load(&state, ctx, &signed_in.0.id).await?;
    page.recovery_used = q.recovery_used.is_some();
    page.next = q.next.as_deref().map(|n| safe_next(Some(n))).filter(|n| n != "/").unwrap_or_default();
    ok(&page)
}

#[derive(Deserialize)]
struct ManageQuery {
    recovery_used: Option<String>,
    /// Where to go once enrolled (an organization that requires a second factor).
    next: Option<String>,
}

/// Starts enrolment: a new secret (an unfinished enrolment starts again).
#[post("/account/second-factor/start")]
async fn start(
    state: web::Data<AppState>,
    signed_in: SignedIn,
    form: web::Form<CodeForm>,
) -> Result<HttpResponse, AppError> {
    let uid = signed_in.0.id.clone();
    let next = form.next.as_deref().map(|n| safe_next(Some(n))).filter(|n| n != "/");
    let back = match next {
        Some(n) => format!(
            "/account/second-factor?next={}",
            url::form_urlencoded::byte_serialize(n.as_bytes()).collect::<String>()
        ),
        None => "/account/second-factor".to_owned(),
    };
    match with_conn(&state, move |c| Ok(second_factor::start(c, &uid))).await? {
        Ok(_) | Err(ServiceError::WrongState) => Ok(see_other(&back)),
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
struct CodeForm {
    #[serde(default)]
    code: String,
    #[serde(default)]
    password: String,
    /// On the sign-in step: the code typed is a recovery code.
    #[serde(default)]
    recovery: Option<String>,
    /// On enrolment: where to go once done.
    #[serde(default)]
    next: Option<String>,
}

/// Re-renders the page with `errors` on the form `failed`.
async fn refuse(
    state: &AppState,
    ctx: Ctx,
    user_id: &str,
    failed: &'static str,
    status: StatusCode,
    errors: FieldErrors,
) -> Result<HttpResponse, AppError> {
    let mut page = load(state, ctx, user_id).await?;
    page.errors = Errors(errors);
    page.failed = failed;
    render(status, &page)
}

/// Confirms enrolment with a first code; the page then shows the recovery codes, once.
#[post("/account/second-factor/confirm")]
async fn confirm(
    req: HttpRequest,
    state: web::Data<AppState>,
    ctx: Ctx,
    signed_in: SignedIn,
    form: web::Form<CodeForm>,
) -> Result<HttpResponse, AppError> {
    let me = signed_in.0;
    if let Some(wait) = attempt_paused(&state, &me.id).await? {
        let errors = FieldErrors(vec![("code", "mfa.paused")]);
        let res = refuse(&state, ctx, &me.id, "confirm", StatusCode::TOO_MANY_REQUESTS, errors).await?;
        return Ok(paused_response(res, wait));
    }
    let next = form.next.as_deref().map(|n| safe_next(Some(n))).filter(|n| n != "/").unwrap_or_default();
    let act = actor(&req, Some(&me));
    let (uid, code, public_url, lang) = (me.id.clone(), form.code.clone(), state.settings.public_url.clone(), ctx.lang);
    let result = with_conn(&state, move |c| {
        let lang = user_lang(c, &uid, lang);
        Ok(second_factor::confirm(c, &uid, &code, &act, &Notice { public_url: &public_url, lang }))
    })
    .await?;
    match result {
        Ok(codes) => {
            attempt_succeeded(&state, &me.id).await?;
            let mut page = load(&state, ctx, &me.id).await?;
            page.codes = codes;
            page.next = next;
            ok(&page)
        }
        Err(ServiceError::Invalid(errors)) => {
            let mut page = load(&state, ctx, &me.id).await?;
            page.errors = Errors(errors);
            page.failed = "confirm";
            page.next = next;
            render(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
        Err(ServiceError::NotFound | ServiceError::WrongState) => Ok(see_other("/account/second-factor")),
        Err(e) => Err(e.into()),
    }
}

/// The person's language for a notice, else the page's.
fn user_lang(c: &mut crate::db::DbConnection, user_id: &str, fallback: Lang) -> Lang {
    accounts::find_by_id(c, user_id)
        .ok()
        .flatten()
        .and_then(|u| u.language)
        .and_then(|l| Lang::parse(&l))
        .unwrap_or(fallback)
}

/// New recovery codes after a current code; shown once.
#[post("/account/second-factor/recovery")]
async fn regenerate(
    req: HttpRequest,
    state: web::Data<AppState>,
    ctx: Ctx,
    signed_in: SignedIn,
    form: web::Form<CodeForm>,
) -> Result<HttpResponse, AppError> {
    let me = signed_in.0;
    if let Some(wait) = attempt_paused(&state, &me.id).await? {
        let errors = FieldErrors(vec![("code", "mfa.paused")]);
        let res = refuse(&state, ctx, &me.id, "regenerate", StatusCode::TOO_MANY_REQUESTS, errors).await?;
        return Ok(paused_response(res, wait));
    }
    let act = actor(&req, Some(&me));
    let (uid, code) = (me.id.clone(), form.code.clone());
    match with_conn(&state, move |c| Ok(second_factor::regenerate(c, &uid, &code, &act))).await? {
        Ok(codes) => {
            attempt_succeeded(&state, &me.id).await?;
            let mut page = load(&state, ctx, &me.id).await?;
            page.codes = codes;
            ok(&page)
        }
        Err(ServiceError::Invalid(errors)) => {
            refuse(&state, ctx, &me.id, "regenerate", StatusCode::UNPROCESSABLE_ENTITY, errors).await
        }
        Err(ServiceError::NotFound) => Ok(see_other("/account/second-factor")),
        Err(e) => Err(e.into()),
    }
}

/// Removes the second factor, after a current code or the password.
#[post("/account/second-factor/remove")]
async fn remove(
    req: HttpRequest,
    state: web::Data<AppState>,
    ctx: Ctx,
    signed_in: SignedIn,
    form: web::Form<CodeForm>,
) -> Result<HttpResponse, AppError> {
    let me = signed_in.0;
    if let Some(wait) = attempt_paused(&state, &me.id).await? {
        let errors = FieldErrors(vec![("code", "mfa.paused")]);
        let res = refuse(&state, ctx, &me.id, "remove", StatusCode::TOO_MANY_REQUESTS, errors).await?;
        return Ok(paused_response(res, wait));
    }
    let form = form.into_inner();
    let uid = me.id.clone();
    let (code, password) = (form.code.clone(), form.password.chars().take(1024).collect::<String>());
    let (proved, stored) = with_conn(&state, move |c| {
        let proved = !code.trim().is_empty() && second_factor::check_code(c, &uid, &code)?;
        let stored = accounts::find_by_id(c, &uid)?.and_then(|u| u.password_hash);
        Ok((proved, stored))
    })
    .await?;
    let proved =
        proved || (!password.is_empty() && web::block(move || verify_password(&password, stored.as_deref())).await?);
    if !proved {
        let field = if form.code.trim().is_empty() && !form.password.is_empty() { "password" } else { "code" };
        let key = if field == "password" { "account.password_wrong" } else { "mfa.code_or_password" };
        let errors = FieldErrors(vec![(field, key)]);
        return refuse(&state, ctx, &me.id, "remove", StatusCode::UNPROCESSABLE_ENTITY, errors).await;
    }
    attempt_succeeded(&state, &me.id).await?;
    let act = actor(&req, Some(&me));
    let (uid, public_url, lang) = (me.id.clone(), state.settings.public_url.clone(), ctx.lang);
    with_conn(&state, move |c| {
        let lang = user_lang(c, &uid, lang);
        Ok(second_factor::remove(c, &uid, None, &act, &Notice { public_url: &public_url, lang })?)
    })
    .await?;
    Ok(see_other("/account?done=mfa_removed"))
}

#[derive(Template)]
#[template(path = "pages/signin_second_factor.html")]
struct StepPage {
    ctx: Ctx,
    errors: Errors,
    problem: Option<&'static str>,
    /// Show the recovery-code form rather than the authenticator code.
    recovery: bool,
}

#[derive(Deserialize)]
struct StepQuery {
    recovery: Option<String>,
}

/// The code step of a sign-in waiting for its second factor.
#[get("/signin/second-factor")]
async fn step_page(ctx: Ctx, session: Session, q: web::Query<StepQuery>) -> Result<HttpResponse, AppError> {
    if pending(&session).is_none() {
        return Ok(see_other("/signin"));
    }
    ok(&StepPage { ctx, errors: Errors::default(), problem: None, recovery: q.recovery.is_some() })
}

#[post("/signin/second-factor")]
async fn step(
    req: HttpRequest,
    state: web::Data<AppState>,
    ctx: Ctx,
    session: Session,
    form: web::Form<CodeForm>,
) -> Result<HttpResponse, AppError> {
    let Some(p) = pending(&session) else {
        session.remove(PENDING_KEY);
        return Ok(see_other("/signin"));
    };
    let recovery = form.recovery.is_some();
    let page = |ctx: Ctx, problem: Option<&'static str>, errors: FieldErrors| StepPage {
        ctx,
        errors: Errors(errors),
        problem,
        recovery,
    };
    if let Some(wait) = attempt_paused(&state, &p.user_id).await? {
        let res = render(StatusCode::TOO_MANY_REQUESTS, &page(ctx, Some("mfa.paused"), FieldErrors::default()))?;
        return Ok(paused_response(res, wait));
    }
    let (uid, code) = (p.user_id.clone(), form.code.clone());
    let (user, outcome) = with_conn(&state, move |c| {
        let user = accounts::find_by_id(c, &uid)?.ok_or(AppError::NotFound)?;
        let outcome = if recovery {
            second_factor::use_recovery_code(c, &uid, &code)?
        } else {
            second_factor::check_code(c, &uid, &code)?.then_some(-1)
        };
        Ok((user, outcome))
    })
    .await?;
    let Some(left) = outcome else {
        let mut act = actor(&req, None);
        act.user_id = Some(p.user_id.clone());
        let uid = p.user_id.clone();
        let detail = if recovery { "recovery" } else { "totp" };
        with_conn(&state, move |c| Ok(audit::record(c, &act, None, action::MFA_FAILED, Some(&uid), Some(detail))?))
            .await?;
        let key = if recovery { "mfa.recovery_wrong" } else { "mfa.code_wrong" };
        return render(StatusCode::UNAUTHORIZED, &page(ctx, None, FieldErrors(vec![("code", key)])));
    };
    attempt_succeeded(&state, &p.user_id).await?;
    session.remove(PENDING_KEY);
    let way = WayIn::parse(&p.way).unwrap_or(WayIn::Password);
    // After a recovery code, the second-factor page tells how many are left.
    let next = if left >= 0 { "/account/second-factor?recovery_used=1".to_owned() } else { p.next.clone() };
    complete_signin(&req, &state, &session, &user, way, true, &next).await
}
