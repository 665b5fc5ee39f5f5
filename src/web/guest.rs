//! The redemption flow, from the emailed link to the consent page (design §2).
//!
//! GET and HEAD never change anything (mail scanners open every link); only the final POST of
//! consent consumes the token.

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, post, route, web};
use askama::Template;
use serde::Deserialize;

use crate::auth::guard::sign_out;
use crate::auth::password::hash_password;

use crate::domain::Email;
use crate::domain::password::{PasswordProblem, check_new_password};
use crate::domain::redirect::check_redirect;
use crate::error::AppError;
use crate::services::accounts::PasswordCheck;
use crate::services::idp::{self, IdpChoice, IdpPurpose};
use crate::services::redeem::{self, CodeCheck};
use crate::services::{FieldErrors, ServiceError, accounts, rate};
use crate::state::AppState;
use crate::web::account::{WayIn, finish_signin, signin_paused, start_session};
use crate::web::pages::language_cookie;
use crate::web::{Ctx, Errors, actor, client_ip, ok, render, see_other, with_conn};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(landing)
        .service(register)
        .service(signin)
        .service(switch_account)
        .service(send_code)
        .service(enter_code)
        .service(consent_page)
        .service(accept)
        .service(cancel);
}

/// An invitation that can no longer be accepted because of the org's policy.
#[derive(Template)]
#[template(path = "pages/refused.html")]
pub struct RefusedPage {
    pub ctx: Ctx,
    pub org_name: String,
    pub reason: &'static str,
}

const CODE_OK: &str = "code_ok";
const CODE_SENT: &str = "code_sent";

#[derive(Template)]
#[template(path = "pages/redeem.html")]
struct RedeemPage {
    ctx: Ctx,
    token: String,
    org_name: String,
    inviter_name: String,
    message: Option<String>,
    invited_email: String,
    expires: String,
    step: Step,
    signed_in_as: String,
    code_sent: bool,
    display_name: String,
    errors: Errors,
    problem: Option<&'static str>,
    /// The organization lets guests use a code sent by email instead of a password.
    code_allowed: bool,
    /// Identity providers for the invited address's domain in this organization.
    providers: Vec<IdpChoice>,
}

impl RedeemPage {
    /// "Forgot your password?" for the invited address.
    fn forgot_href(&self) -> String {
        let email: String =
            url::form_urlencoded::byte_serialize(self.invited_email.as_bytes()).collect::<String>().replace("%40", "@");
        format!("/signin/forgot?email={email}")
    }
}

use crate::web::account::DeadLinkPage;

use crate::services::redeem::LiveInvitation as Live;
use crate::web::extract::LiveLink;

/// Where a visitor of a live link stands in the flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Signed in as the invited person: on to consent.
    Continue,
    /// Signed in as someone else: "sign out and continue".
    WrongAccount,
    /// The invited address has an account with a password: the password (or a code).
    SignIn,
    /// The invited address has a passwordless account: a code sent to it.
    CodeSignIn,
    /// The link was shown to someone: a code sent to the invited address first.
    Code,
    /// A first-time guest: create an account.
    Register,
}

fn page(ctx: Ctx, token: &str, live: &Live, session: &Session) -> RedeemPage {
    let inv = &live.invitation;
    let code_sent = session.get::<String>(CODE_SENT).ok().flatten().as_deref() == Some(inv.id.as_str());
    let code_ok = session.get::<String>(CODE_OK).ok().flatten().as_deref() == Some(inv.id.as_str());
    let (step, signed_in_as) = match &ctx.user {
        Some(u) if u.email == inv.email => (Step::Continue, String::new()),
        Some(u) => (Step::WrongAccount, u.email.clone()),
        None if live.guest.password_hash.is_some() => (Step::SignIn, String::new()),
        // Passwordless: a code, or (codes turned off) "Forgot your password?" from the sign-in step.
        None if live.guest.email_verified && live.org.email_codes => (Step::CodeSignIn, String::new()),
        None if live.guest.email_verified => (Step::SignIn, String::new()),
        None if inv.disclosed && !code_ok => (Step::Code, String::new()),
        None => (Step::Register, String::new()),
    };
    RedeemPage {
        token: token.to_owned(),
        org_name: live.org.name.clone(),
        inviter_name: live.inviter.as_ref().map(|u| u.display_name.clone()).unwrap_or_else(|| live.org.name.clone()),
        message: inv.message.clone(),
        invited_email: inv.email.clone(),
        expires: ctx.tr.datetime(&inv.expires_at),
        step,
        signed_in_as,
        code_sent,
        display_name: inv.display_name.clone(),
        errors: Errors::default(),
        problem: None,
        code_allowed: live.org.email_codes,
        providers: Vec::new(),
        ctx,
    }
}

/// True when a code may be sent at `step`: to prove a disclosed link's mailbox, or as a way in
/// where the organization allows codes.
fn code_fits(step: Step, code_allowed: bool) -> bool {
    match step {
        Step::Code => true,
        Step::SignIn | Step::CodeSignIn | Step::Register => code_allowed,
        Step::Continue | Step::WrongAccount => false,
    }
}

/// The identity providers for the invited address in the inviting organization.
async fn providers_for(state: &AppState, token: &str, live: &Live) -> Result<Vec<IdpChoice>, AppError> {
    let Ok(email) = Email::parse(&live.invitation.email) else {
        return Ok(Vec::new());
    };
    let (org_id, token) = (live.org.id.clone(), token.to_owned());
    with_conn(state, move |c| Ok(idp::choices_for(c, &email, Some(&org_id), IdpPurpose::Redeem { token: &token })?))
        .await
}

/// The guest's landing page: who invites, to what, and the next step.
#[route("/redeem/{token}", method = "GET", method = "HEAD")]
async fn landing(
    state: web::Data<AppState>,
    ctx: Ctx,
    session: Session,
    link: LiveLink,
) -> Result<HttpResponse, AppError> {
    let LiveLink { token, live } = link;
    let mut p = page(ctx, &token, &live, &session);
    if !matches!(p.step, Step::Continue | Step::WrongAccount) {
        p.providers = providers_for(&state, &token, &live).await?;
    }
    ok(&p)
}

#[derive(Deserialize)]
struct RegisterForm {
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

/// A first-time guest creates an account on the spot.
#[post("/redeem/{token}/register")]
async fn register(
    req: HttpRequest,
    state: web::Data<AppState>,
    ctx: Ctx,
    session: Session,
    link: LiveLink,
    form: web::Form<RegisterForm>,
) -> Result<HttpResponse, AppError> {
    let LiveLink { token, live } = link;
    let mut p = page(ctx.clone(), &token, &live, &session);
    if p.step != Step::Register {
        // Wrong step for this visitor (already has an account, signed in, or code needed).
        return Ok(see_other(&format!("/redeem/{token}")));
    }
    let mut errors = FieldErrors::default();
    let name = form.display_name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 200 || crate::domain::has_any_control_chars(&name) {
        errors.add("display_name", "name.invalid");
    }
    if let Err(problem) = check_new_password(&form.password, &form.confirm, &live.invitation.email) {
        errors.add(if problem == PasswordProblem::Mismatch { "confirm" } else { "password" }, problem.message_key());
    }
    if !errors.is_empty() {
        p.display_name = form.display_name.clone();
        p.errors = Errors(errors);
        return render(StatusCode::UNPROCESSABLE_ENTITY, &p);
    }
    let password = form.password.clone();
    let hash = web::block(move || hash_password(&password)).await??;
    let act = actor(&req, None);
    let lang = ctx.lang;
    let (inv, guest) = (live.invitation.clone(), live.guest.clone());
    let result = with_conn(&state, move |c| Ok(redeem::register(c, &inv, &guest, &name, &hash, lang, &act))).await?;
    match result {
        Ok(user) => {
            start_session(&req, &session, &user, &WayIn::Password.amr(false))?;
            let mut res = see_other(&format!("/redeem/{token}/consent"));
            res.add_cookie(&language_cookie(lang, state.settings.https())).ok();
            Ok(res)
        }
        Err(ServiceError::WrongState) => Ok(see_other(&format!("/redeem/{token}"))),
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
struct SigninForm {
    #[serde(default)]
    password: String,
}

/// Someone with an account signs in; the address is the invited one, so it always matches.
#[post("/redeem/{token}/signin")]
async fn signin(
    req: HttpRequest,
    state: web::Data<AppState>,
    ctx: Ctx,
    session: Session,
    link: LiveLink,
    form: web::Form<SigninForm>,
) -> Result<HttpResponse, AppError> {
    let LiveLink { token, live } = link;
    let mut p = page(ctx.clone(), &token, &live, &session);
    if p.step != Step::SignIn {
        return Ok(see_other(&format!("/redeem/{token}")));
    }
    let email = live.invitation.email.clone();
    let ip = client_ip(&req);
    if let Some(wait) = signin_paused(&state, &email, &ip).await? {
        p.problem = Some("signin.paused");
        let mut res = render(StatusCode::TOO_MANY_REQUESTS, &p)?;
        res.headers_mut().insert(actix_web::http::header::RETRY_AFTER, wait.into());
        return Ok(res);
    }
    match accounts::check_password(&state.pool, email.clone(), form.password.clone()).await? {
        PasswordCheck::Ok(user) => {
            finish_signin(&req, &state, &session, &user, WayIn::Password, &format!("/redeem/{token}/consent")).await
        }
        PasswordCheck::Wrong => {
            p.problem = Some("redeem.signin_failed");
            render(StatusCode::UNAUTHORIZED, &p)
        }
    }
}

/// "Sign out and continue": the person signed in as someone else starts over as the guest.
#[post("/redeem/{token}/switch")]
async fn switch_account(session: Session, token: web::Path<String>) -> HttpResponse {
    sign_out(&session);
    see_other(&format!("/redeem/{token}"))
}

/// Emails a one-time code to the invited address: for a link that was shown to someone, or as
/// the way in without a password (when the organization allows codes).
#[post("/redeem/{token}/code/send")]
async fn send_code(
    req: HttpRequest,
    state: web::Data<AppState>,
    ctx: Ctx,
    session: Session,
    link: LiveLink,
) -> Result<HttpResponse, AppError> {
    let LiveLink { token, live } = link;
    let mut p = page(ctx.clone(), &token, &live, &session);
    if !code_fits(p.step, p.code_allowed) {
        return Ok(see_other(&format!("/redeem/{token}")));
    }
    let (inv_id, ip) = (live.invitation.id.clone(), client_ip(&req));
    if state.settings.throttle_enabled
        && let Some(wait) = with_conn(&state, move |c| {
            Ok(match rate::take_code_send(c, &inv_id)? {
                Some(wait) => Some(wait),
                None => rate::take_code_send_from(c, ip.as_deref())?,
            })
        })
        .await?
    {
        p.problem = Some("redeem.code_too_many");
        let mut res = render(StatusCode::TOO_MANY_REQUESTS, &p)?;
        res.headers_mut().insert(actix_web::http::header::RETRY_AFTER, wait.into());
        return Ok(res);
    }
    let (inv, org, lang, url) =
        (live.invitation.clone(), live.org.clone(), ctx.lang, state.settings.public_url.clone());
    let act = actor(&req, None);
    with_conn(&state, move |c| Ok(redeem::send_code(c, &inv, &org, &url, lang, &act)?)).await?;
    session.insert(CODE_SENT, &live.invitation.id).map_err(|e| AppError::Internal(anyhow::anyhow!("session: {e}")))?;
    Ok(see_other(&format!("/redeem/{token}")))
}

#[derive(Deserialize)]
struct CodeForm {
    #[serde(default)]
    code: String,
    /// The name of a first-time guest redeeming without a password.
    #[serde(default)]
    display_name: String,
}

/// Checks the code; five wrong guesses, or ten minutes, and a new one is needed. A right code
/// proves a disclosed link's mailbox (then on to the account), creates a passwordless account
/// for a first-time guest, or signs an existing account in; then on to consent.
#[post("/redeem/{token}/code")]
async fn enter_code(
    req: HttpRequest,
    state: web::Data<AppState>,
    ctx: Ctx,
    session: Session,
    link: LiveLink,
    form: web::Form<CodeForm>,
) -> Result<HttpResponse, AppError> {
    let LiveLink { token, live } = link;
    let mut p = page(ctx.clone(), &token, &live, &session);
    if !code_fits(p.step, p.code_allowed) {
        return Ok(see_other(&format!("/redeem/{token}")));
    }
    let name = form.display_name.trim().to_owned();
    if p.step == Step::Register
        && (name.is_empty() || name.chars().count() > 200 || crate::domain::has_any_control_chars(&name))
    {
        p.display_name = crate::domain::clip(&form.display_name, 800).to_owned();
        p.errors = Errors(FieldErrors(vec![("display_name", "name.invalid")]));
        return render(StatusCode::UNPROCESSABLE_ENTITY, &p);
    }
    let (id, code, act) =
        (live.invitation.id.clone(), crate::domain::clip(&form.code, 64).to_owned(), actor(&req, None));
    let outcome = with_conn(&state, move |c| Ok(redeem::check_code(c, &id, &code, &act)?)).await?;
    match outcome {
        CodeCheck::Correct if p.step == Step::Code => {
            let _ = session.remove(CODE_SENT);
            session
                .insert(CODE_OK, &live.invitation.id)
                .map_err(|e| AppError::Internal(anyhow::anyhow!("session: {e}")))?;
            Ok(see_other(&format!("/redeem/{token}")))
        }
        CodeCheck::Correct => {
            let _ = session.remove(CODE_SENT);
            let consent = format!("/redeem/{token}/consent");
            let (inv, guest, lang, act) = (live.invitation.clone(), live.guest.clone(), ctx.lang, actor(&req, None));
            let created = p.step == Step::Register;
            let user = with_conn(&state, move |c| {
                if created {
                    return Ok(redeem::register_passwordless(c, &inv, &guest, &name, lang, &act));
                }
                Ok(accounts::find_by_id(c, &guest.id)?.ok_or(ServiceError::NotFound))
            })
            .await?;
            match user {
                Ok(user) => {
                    let mut res = finish_signin(&req, &state, &session, &user, WayIn::EmailCode, &consent).await?;
                    if created {
                        res.add_cookie(&language_cookie(lang, state.settings.https())).ok();
                    }
                    Ok(res)
                }
                Err(ServiceError::WrongState) => Ok(see_other(&format!("/redeem/{token}"))),
                Err(e) => Err(e.into()),
            }
        }
        CodeCheck::Wrong => {
            p.display_name = name;
            p.errors = Errors(FieldErrors(vec![("code", "redeem.code_wrong")]));
            render(StatusCode::UNPROCESSABLE_ENTITY, &p)
        }
        CodeCheck::NeedNewCode => {
            let _ = session.remove(CODE_SENT);
            p.code_sent = false;
            p.display_name = name;
            p.problem = Some("redeem.code_expired");
            render(StatusCode::UNPROCESSABLE_ENTITY, &p)
        }
    }
}

#[derive(Template)]
#[template(path = "pages/consent.html")]
struct ConsentPage {
    ctx: Ctx,
    token: String,
    org_name: String,
    privacy_url: Option<String>,
    user_name: String,
    user_email: String,
}

/// The signed-in invitee, or the landing page for anyone else.
fn invitee<'a>(ctx: &'a Ctx, live: &Live) -> Option<&'a crate::auth::SessionUser> {
    ctx.user.as_ref().filter(|u| u.email == live.invitation.email)
}

/// The organization requires a second factor of its guests and `user_id` has none: they set
/// one up before consenting (`Err` is the redirect to enrolment, coming back to consent).
async fn second_factor_first(
    state: &AppState,
    session: &Session,
    live: &Live,
    user_id: &str,
    token: &str,
) -> Result<(), AppError> {
    if !live.org.requires_second_factor(crate::domain::Role::None)
        || crate::web::extract::session_passed_second_factor(session)
    {
        return Ok(());
    }
    let uid = user_id.to_owned();
    if with_conn(state, move |c| Ok(crate::services::second_factor::is_enrolled(c, &uid)?)).await? {
        return Ok(());
    }
    Err(AppError::SecondFactorRequired(format!("/redeem/{token}/consent")))
}

/// "Review permissions": what the organization will see.
#[get("/redeem/{token}/consent")]
async fn consent_page(
    state: web::Data<AppState>,
    ctx: Ctx,
    session: Session,
    link: LiveLink,
) -> Result<HttpResponse, AppError> {
    let LiveLink { token, live } = link;
    let Some(user) = invitee(&ctx, &live).cloned() else {
        return Ok(see_other(&format!("/redeem/{token}")));
    };
    second_factor_first(&state, &session, &live, &user.id, &token).await?;
    ok(&ConsentPage {
        ctx,
        token,
        org_name: live.org.name.clone(),
        privacy_url: live.org.privacy_url.clone(),
        user_name: user.name,
        user_email: user.email,
    })
}

/// Accept: consumes the token, activates the membership, renews the session, redirects.
#[post("/redeem/{token}/accept")]
async fn accept(
    req: HttpRequest,
    state: web::Data<AppState>,
    ctx: Ctx,
    session: Session,
    link: LiveLink,
) -> Result<HttpResponse, AppError> {
    let LiveLink { token, live } = link;
    let Some(signed) = invitee(&ctx, &live).cloned() else {
        return Ok(see_other(&format!("/redeem/{token}")));
    };
    second_factor_first(&state, &session, &live, &signed.id, &token).await?;
    let act = actor(&req, Some(&signed));
    let t = token.clone();
    let result = with_conn(&state, move |c| {
        let user = accounts::find_by_id(c, &signed.id)?.ok_or(AppError::NotFound)?;
        Ok(redeem::accept(c, &t, &user, &act))
    })
    .await?;
    match result {
        Ok(accepted) => {
            // A new session id at the moment rights are granted.
            session.renew();
            let _ = session.remove(CODE_OK);
            let _ = session.remove(CODE_SENT);
            let fallback = format!("/o/{}/apps", accepted.org.slug);
            // App URLs are allowed targets too; if they cannot be read, the guest lands on My Apps.
            let org_id = accepted.org.id.clone();
            let app_origins =
                with_conn(&state, move |c| Ok(crate::services::apps::origins(c, &org_id)?)).await.unwrap_or_default();
            let mut allowed = accepted.org.allowed_origins();
            allowed.extend(app_origins.iter().map(String::as_str));
            let target = accepted
                .redirect_url
                .as_deref()
                .and_then(|u| check_redirect(u, &state.settings.public_url, &allowed).ok())
                .unwrap_or(fallback);
            Ok(see_other(&target))
        }
        Err(ServiceError::WrongState) => render(StatusCode::GONE, &DeadLinkPage::dead(ctx, live.org.name.clone())),
        Err(ServiceError::Forbidden) => render(
            StatusCode::FORBIDDEN,
            &RefusedPage { ctx, org_name: live.org.name.clone(), reason: "policy.redeem_refused" },
        ),
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "pages/consent_cancelled.html")]
struct CancelledPage {
    ctx: Ctx,
    token: String,
    org_name: String,
    expires: String,
}

/// Cancel: nothing changes; the link keeps working until it expires.
#[post("/redeem/{token}/cancel")]
async fn cancel(ctx: Ctx, link: LiveLink) -> Result<HttpResponse, AppError> {
    let LiveLink { token, live } = link;
    let expires = ctx.tr.datetime(&live.invitation.expires_at);
    ok(&CancelledPage { ctx, token, org_name: live.org.name.clone(), expires })
}
