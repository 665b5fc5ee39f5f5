//! The other ways in from `/signin`: a one-time code by email, and "Forgot your password?".
//!
//! Every answer here is the same whether or not the address has an account (design §10).

use actix_session::Session;
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use askama::Template;
use serde::Deserialize;
use tokio::time::{Duration, Instant};

use super::{MAX_EMAIL_BYTES, SigninPage, SigninStep, WayIn, finish_signin};
use crate::auth::password::hash_password;
use crate::domain::Email;
use crate::domain::password::{PasswordProblem, check_new_password};
use crate::error::AppError;
use crate::services::password_reset::{self, ResetOutcome};
use crate::services::signin_codes::{self, CodeOutcome};
use crate::services::{FieldErrors, rate};
use crate::state::AppState;
use crate::web::{Ctx, Errors, actor, client_ip, invalid, ok, render, safe_next, with_conn};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(send_code).service(verify_code).service(forgot_page).service(forgot).service(reset_page).service(reset);
}

/// The least time an answer that must not tell whether an account exists takes. Mailing a code
/// or a link costs a few milliseconds more than not mailing it (rendering, the outbox row, the
/// audit event); waiting out the rest of this floor (asynchronously: no thread is held) makes
/// both answers arrive after the same time.
const SAME_ANSWER_FLOOR: Duration = Duration::from_millis(100);

/// Waits until `SAME_ANSWER_FLOOR` has passed since `started`.
async fn answer_floor(started: Instant) {
    tokio::time::sleep_until(started + SAME_ANSWER_FLOOR).await;
}

/// A 429 answer carrying `Retry-After`.
fn paused<T: Template>(page: &T, wait: u64) -> Result<HttpResponse, AppError> {
    let mut res = render(StatusCode::TOO_MANY_REQUESTS, page)?;
    res.headers_mut().insert(header::RETRY_AFTER, wait.into());
    Ok(res)
}

#[derive(Deserialize)]
struct CodeRequest {
    #[serde(default)]
    email: String,
    next: Option<String>,
}

/// "Email me a code instead": the same answer for every address (the code page); a code is
/// mailed only to an account that may use codes.
#[post("/signin/code")]
async fn send_code(
    req: HttpRequest,
    state: web::Data<AppState>,
    ctx: Ctx,
    form: web::Form<CodeRequest>,
) -> Result<HttpResponse, AppError> {
    let started = Instant::now();
    let typed = crate::domain::clip(form.email.trim(), MAX_EMAIL_BYTES).to_owned();
    let next = safe_next(form.next.as_deref());
    let Ok(email) = Email::parse(&typed) else {
        let mut page = SigninPage::new(ctx, SigninStep::Email, &typed, &next);
        page.errors = Errors(FieldErrors(vec![("email", "signin.email_invalid")]));
        return invalid(&page);
    };
    let mut page = SigninPage::new(ctx.clone(), SigninStep::Code, email.as_str(), &next);
    let ip = client_ip(&req);
    if state.settings.throttle_enabled {
        let (e, i) = (email.as_str().to_owned(), ip.clone());
        if let Some(wait) = with_conn(&state, move |c| Ok(rate::take_signin_code(c, &e, i.as_deref())?)).await? {
            page.step = SigninStep::WayIn;
            page.problem = Some("signin.code_too_many");
            return paused(&page, wait);
        }
    }
    let (act, lang, url, e) = (actor(&req, None), ctx.lang, state.settings.public_url.clone(), email.clone());
    with_conn(&state, move |c| Ok(signin_codes::send(c, &e, lang, &url, &act)?)).await?;
    page.notice = Some("signin.code_sent");
    answer_floor(started).await;
    ok(&page)
}

#[derive(Deserialize)]
struct CodeEntry {
    #[serde(default)]
    email: String,
    #[serde(default)]
    code: String,
    next: Option<String>,
}

/// Checks a typed sign-in code: right, and the person is signed in.
#[post("/signin/code/verify")]
async fn verify_code(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    ctx: Ctx,
    form: web::Form<CodeEntry>,
) -> Result<HttpResponse, AppError> {
    let typed = crate::domain::clip(form.email.trim(), MAX_EMAIL_BYTES).to_owned();
    let next = safe_next(form.next.as_deref());
    let Ok(email) = Email::parse(&typed) else {
        let mut page = SigninPage::new(ctx, SigninStep::Email, &typed, &next);
        page.errors = Errors(FieldErrors(vec![("email", "signin.email_invalid")]));
        return invalid(&page);
    };
    let code = crate::domain::clip(&form.code, 64).to_owned();
    let (act, e) = (actor(&req, None), email.clone());
    let outcome = with_conn(&state, move |c| Ok(signin_codes::verify(c, &e, &code, &act)?)).await?;
    let mut page = SigninPage::new(ctx, SigninStep::Code, email.as_str(), &next);
    match outcome {
        CodeOutcome::SignedIn(user) => finish_signin(&req, &state, &session, &user, WayIn::EmailCode, &next).await,
        CodeOutcome::Wrong => {
            page.errors = Errors(FieldErrors(vec![("code", "redeem.code_wrong")]));
            invalid(&page)
        }
        CodeOutcome::NeedNewCode => {
            page.problem = Some("redeem.code_expired");
            invalid(&page)
        }
    }
}

#[derive(Template)]
#[template(path = "pages/forgot.html")]
struct ForgotPage {
    ctx: Ctx,
    errors: Errors,
    email: String,
    /// The request was taken: "if an account exists, a link is on its way".
    sent: bool,
    problem: Option<&'static str>,
}

#[derive(Deserialize)]
struct ForgotQuery {
    email: Option<String>,
}

/// "Forgot your password?": the address.
#[get("/signin/forgot")]
async fn forgot_page(ctx: Ctx, q: web::Query<ForgotQuery>) -> Result<HttpResponse, AppError> {
    let email = q.email.as_deref().map(|e| crate::domain::clip(e.trim(), MAX_EMAIL_BYTES)).unwrap_or("").to_owned();
    let email = if email.contains(char::is_control) { String::new() } else { email };
    ok(&ForgotPage { ctx, errors: Errors::default(), email, sent: false, problem: None })
}

#[derive(Deserialize)]
struct ForgotForm {
    #[serde(default)]
    email: String,
}

/// Sends the reset link (or nothing) and gives the same answer for every address.
#[post("/signin/forgot")]
async fn forgot(
    req: HttpRequest,
    state: web::Data<AppState>,
    ctx: Ctx,
    form: web::Form<ForgotForm>,
) -> Result<HttpResponse, AppError> {
    let started = Instant::now();
    let typed = crate::domain::clip(form.email.trim(), MAX_EMAIL_BYTES).to_owned();
    let mut page =
        ForgotPage { ctx: ctx.clone(), errors: Errors::default(), email: typed.clone(), sent: false, problem: None };
    let Ok(email) = Email::parse(&typed) else {
        page.errors = Errors(FieldErrors(vec![("email", "signin.email_invalid")]));
        return invalid(&page);
    };
    let ip = client_ip(&req);
    if state.settings.throttle_enabled {
        let (e, i) = (email.as_str().to_owned(), ip.clone());
        if let Some(wait) = with_conn(&state, move |c| Ok(rate::take_reset(c, &e, i.as_deref())?)).await? {
            page.problem = Some("signin.reset_too_many");
            return paused(&page, wait);
        }
    }
    let (act, lang, url, e) = (actor(&req, None), ctx.lang, state.settings.public_url.clone(), email.clone());
    with_conn(&state, move |c| Ok(password_reset::request(c, &e, lang, &url, &act)?)).await?;
    page.email = email.as_str().to_owned();
    page.sent = true;
    answer_floor(started).await;
    ok(&page)
}

#[derive(Template)]
#[template(path = "pages/reset.html")]
struct ResetPage {
    ctx: Ctx,
    errors: Errors,
    token: String,
    email: String,
    /// The account signs in through this provider instead.
    provider: Option<String>,
}

#[derive(Template)]
#[template(path = "pages/reset_dead.html")]
struct ResetDeadPage {
    ctx: Ctx,
}

fn dead_link(ctx: Ctx) -> Result<HttpResponse, AppError> {
    render(StatusCode::GONE, &ResetDeadPage { ctx })
}

/// The reset link: choose a new password (GET changes nothing: mail scanners open links).
#[get("/signin/reset/{token}")]
async fn reset_page(state: web::Data<AppState>, ctx: Ctx, token: web::Path<String>) -> Result<HttpResponse, AppError> {
    let token = token.into_inner();
    let t = token.clone();
    let found = with_conn(&state, move |c| {
        let Some(user) = password_reset::account_of(c, &t)? else { return Ok(None) };
        let provider = crate::services::idp::bound_provider(c, &user.id)?;
        Ok(Some((user, provider)))
    })
    .await?;
    match found {
        Some((user, provider)) => ok(&ResetPage { ctx, errors: Errors::default(), token, email: user.email, provider }),
        None => dead_link(ctx),
    }
}

#[derive(Deserialize)]
struct ResetForm {
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

/// Sets the new password: the link is used up, every session of the account ends, a notice
/// is mailed, and this browser is signed in.
#[post("/signin/reset/{token}")]
async fn reset(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    ctx: Ctx,
    token: web::Path<String>,
    form: web::Form<ResetForm>,
) -> Result<HttpResponse, AppError> {
    let token = token.into_inner();
    let t = token.clone();
    let Some(user) = with_conn(&state, move |c| Ok(password_reset::account_of(c, &t)?)).await? else {
        return dead_link(ctx);
    };
    if let Err(p) = check_new_password(&form.password, &form.confirm, &user.email) {
        let field = if p == PasswordProblem::Mismatch { "confirm" } else { "password" };
        let errors = Errors(FieldErrors(vec![(field, p.message_key())]));
        return invalid(&ResetPage { ctx, errors, token, email: user.email, provider: None });
    }
    let password = form.password.clone();
    let hash = web::block(move || hash_password(&password)).await??;
    let (act, lang, url) = (actor(&req, None), ctx.lang, state.settings.public_url.clone());
    let outcome = with_conn(&state, move |c| Ok(password_reset::complete(c, &token, &hash, &url, lang, &act)?)).await?;
    match outcome {
        ResetOutcome::Done { user, .. } => {
            // Whatever this browser held before (perhaps this very account) ended with the rest.
            session.clear();
            finish_signin(&req, &state, &session, &user, WayIn::PasswordReset, "/").await
        }
        ResetOutcome::DeadLink => dead_link(ctx),
        ResetOutcome::BoundToProvider(provider) => ok(&ResetPage {
            ctx,
            errors: Errors::default(),
            token: String::new(),
            email: user.email,
            provider: Some(provider),
        }),
    }
}
