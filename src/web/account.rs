//! Signing in and out, first-run setup, the owner's set-password link, and `/account`.

mod profile;
mod recover;
pub mod second_factor;

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use askama::Template;
use serde::Deserialize;

use crate::auth::guard::{SessionUser, sign_in, sign_out};
use crate::auth::password::hash_password;
use crate::db::models::User;
use crate::domain::Email;
use crate::domain::password::check_new_password;
use crate::domain::token::PlainToken;
use crate::error::AppError;
use crate::i18n::Lang;
use crate::services::audit::{self, action};
use crate::services::idp::{self, IdpChoice, IdpPurpose};
use crate::services::orgs::{self, NewOrg, link_purpose, validate_new_org};
use crate::services::{FieldErrors, ServiceError, accounts, rate, sessions};
use crate::state::AppState;
use crate::web::pages::language_cookie;
use crate::web::{Ctx, Errors, actor, client_ip, invalid, ok, render, safe_next, see_other, with_conn};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(signin_page)
        .service(signin)
        .service(signout)
        .service(setup_page)
        .service(setup)
        .service(password_page)
        .service(set_password);
    profile::routes(cfg);
    recover::routes(cfg);
    second_factor::routes(cfg);
}

/// Where `/signin` stands: the address first, then the way in, then (if chosen) the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigninStep {
    /// Step 1: the email address.
    Email,
    /// Step 2: providers for the address's domain, the password, or a code instead. The same
    /// page for every address, whether or not it has an account.
    WayIn,
    /// A code was asked for: type it.
    Code,
}

#[derive(Template)]
#[template(path = "pages/signin.html")]
pub struct SigninPage {
    pub ctx: Ctx,
    pub errors: Errors,
    pub problem: Option<&'static str>,
    pub notice: Option<&'static str>,
    pub step: SigninStep,
    pub email: String,
    pub next: String,
    /// Identity providers serving the address's domain (several: the person picks one).
    pub providers: Vec<IdpChoice>,
}

impl SigninPage {
    /// The page at `step` for `email`, going on to `next`.
    pub fn new(ctx: Ctx, step: SigninStep, email: &str, next: &str) -> SigninPage {
        SigninPage {
            ctx,
            errors: Errors::default(),
            problem: None,
            notice: None,
            step,
            email: email.to_owned(),
            next: next.to_owned(),
            providers: Vec::new(),
        }
    }

    /// Back to step 1 with the address kept (and `next`).
    pub fn change_href(&self) -> String {
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let next = if self.next == "/" { String::new() } else { format!("&next={}", enc(&self.next)) };
        // `@` stays readable (it is allowed in a query), so the page shows the address as typed.
        format!("/signin?login_hint={}{next}", enc(&self.email).replace("%40", "@"))
    }

    /// The "Forgot your password?" link, carrying the address typed.
    pub fn forgot_href(&self) -> String {
        let email: String =
            url::form_urlencoded::byte_serialize(self.email.as_bytes()).collect::<String>().replace("%40", "@");
        format!("/signin/forgot?email={email}")
    }
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
    /// OpenID Connect `login_hint`: prefills the address.
    login_hint: Option<String>,
}

#[get("/signin")]
async fn signin_page(ctx: Ctx, q: web::Query<NextQuery>) -> Result<HttpResponse, AppError> {
    let next = safe_next(q.next.as_deref());
    if ctx.user.is_some() {
        return Ok(see_other(&next));
    }
    let email = q.login_hint.clone().filter(|h| h.len() <= 254 && !h.contains(char::is_control)).unwrap_or_default();
    ok(&SigninPage::new(ctx, SigninStep::Email, &email, &next))
}

#[derive(Deserialize)]
struct SigninForm {
    #[serde(default)]
    email: String,
    /// Absent on step 1 (the address alone); present on step 2.
    password: Option<String>,
    next: Option<String>,
}

use crate::services::accounts::PasswordCheck;

/// Longest email address (RFC 5321 path limit) read from a sign-in form.
pub const MAX_EMAIL_BYTES: usize = 254;

/// Takes one sign-in attempt for this address and client, counted in the database (see
/// [`rate::take_signin`]): `Some(retry_after)` when sign-in is paused for either.
pub async fn signin_paused(state: &AppState, email: &str, ip: &Option<String>) -> Result<Option<u64>, AppError> {
    if !state.settings.throttle_enabled {
        return Ok(None);
    }
    let (email, ip) = (email.to_owned(), ip.clone());
    with_conn(state, move |c| Ok(rate::take_signin(c, &email, ip.as_deref())?)).await
}

/// The attempt taken by [`signin_paused`] was right: the account's failures are forgotten and
/// the client's attempt is given back.
pub async fn signin_succeeded(state: &AppState, email: &str, ip: &Option<String>) -> Result<(), AppError> {
    if !state.settings.throttle_enabled {
        return Ok(());
    }
    let (email, ip) = (email.to_owned(), ip.clone());
    with_conn(state, move |c| Ok(rate::signin_succeeded(c, &email, ip.as_deref())?)).await
}

/// Establishes the session of `user`, remembering their language. The session also gets a
/// random marker (to tell it from the person's other sessions), the browser's User-Agent and
/// the client address, which the session row keeps for the list on `/account`.
///
/// `amr` is how the person proved who they are (RFC 8176 values, see [`WayIn::amr`]), given to
/// apps in ID tokens. Account creation (setup, registration: a new password, `pwd`) calls this
/// directly; every way in with a credential goes through [`finish_signin`], which calls it.
pub fn start_session(
    req: &HttpRequest,
    session: &Session,
    user: &User,
    amr: &[&str],
) -> Result<Option<Lang>, AppError> {
    sign_in(session, &SessionUser { id: user.id.clone(), email: user.email.clone(), name: user.display_name.clone() })?;
    let user_agent: Option<String> = req
        .headers()
        .get(actix_web::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| ua.chars().filter(|c| !c.is_control()).take(sessions::MAX_USER_AGENT_CHARS).collect());
    let put = |key: &str, value: &str| {
        session.insert(key, value).map_err(|e| AppError::Internal(anyhow::anyhow!("session: {e}")))
    };
    put(sessions::SID_KEY, PlainToken::generate().expose())?;
    session
        .insert(sessions::AUTH_TIME_KEY, time::OffsetDateTime::now_utc().unix_timestamp())
        .map_err(|e| AppError::Internal(anyhow::anyhow!("session: {e}")))?;
    if let Some(ua) = user_agent {
        put(sessions::USER_AGENT_KEY, &ua)?;
    }
    if let Some(ip) = client_ip(req) {
        put(sessions::CLIENT_IP_KEY, &ip)?;
    }
    session.insert(sessions::AMR_KEY, amr).map_err(|e| AppError::Internal(anyhow::anyhow!("session: {e}")))?;
    Ok(user.language.as_deref().and_then(Lang::parse))
}

/// How a person proved who they are (the detail of the `signin.succeeded` audit event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WayIn {
    Password,
    /// A one-time code sent by email (`/signin` or redemption).
    EmailCode,
    /// A new password chosen through a "forgot your password?" link.
    PasswordReset,
    /// The person's home identity provider (federation).
    Provider,
}

impl WayIn {
    /// The name recorded on the audit event.
    pub fn as_str(self) -> &'static str {
        match self {
            WayIn::Password => "password",
            WayIn::EmailCode => "code",
            WayIn::PasswordReset => "password_reset",
            WayIn::Provider => "provider",
        }
    }

    /// The way named by [`WayIn::as_str`].
    pub fn parse(s: &str) -> Option<WayIn> {
        [WayIn::Password, WayIn::EmailCode, WayIn::PasswordReset, WayIn::Provider].into_iter().find(|w| w.as_str() == s)
    }

    /// Authentication methods (RFC 8176 `amr` values) of this way in, with `mfa` and `otp`
    /// added when a second factor followed.
    pub fn amr(self, second_factor: bool) -> Vec<&'static str> {
        let mut amr = vec![match self {
            WayIn::Password | WayIn::PasswordReset => "pwd",
            WayIn::EmailCode => "otp",
            WayIn::Provider => "fed",
        }];
        if second_factor {
            if !amr.contains(&"otp") {
                amr.push("otp");
            }
            amr.push("mfa");
        }
        amr
    }
}

/// Completes a sign-in, whatever the way in (password, emailed code, reset link, and later
/// the provider callback): forgets the account's sign-in failures; then, when the account has
/// a second factor, parks the sign-in in the session and leads to the code step
/// (`/signin/second-factor`, which calls [`complete_signin`] after a good code); otherwise
/// completes it at once. `next` is a local path the caller has already judged with
/// `domain::redirect::local_path`.
pub async fn finish_signin(
    req: &HttpRequest,
    state: &AppState,
    session: &Session,
    user: &User,
    way: WayIn,
    next: &str,
) -> Result<HttpResponse, AppError> {
    let ip = client_ip(req);
    signin_succeeded(state, &user.email, &ip).await?;
    let uid = user.id.clone();
    if with_conn(state, move |c| Ok(crate::services::second_factor::is_enrolled(c, &uid)?)).await? {
        // A session that was signed in as someone else must not stay so while the code is asked.
        session.clear();
        session.renew();
        return second_factor::park(session, &user.id, way, next);
    }
    complete_signin(req, state, session, user, way, false, next).await
}

/// The end of every sign-in: records `signin.succeeded` with the way in, starts the session (a
/// new session id) with its authentication methods (`amr`), sets the language switch to the
/// person's language and redirects to `next`.
pub async fn complete_signin(
    req: &HttpRequest,
    state: &AppState,
    session: &Session,
    user: &User,
    way: WayIn,
    second_factor: bool,
    next: &str,
) -> Result<HttpResponse, AppError> {
    let mut act = actor(req, None);
    act.user_id = Some(user.id.clone());
    let uid = user.id.clone();
    let detail = if second_factor { format!("{}+mfa", way.as_str()) } else { way.as_str().to_owned() };
    with_conn(state, move |c| Ok(audit::record(c, &act, None, action::SIGNIN_SUCCEEDED, Some(&uid), Some(&detail))?))
        .await?;
    let lang = start_session(req, session, user, &way.amr(second_factor))?;
    let mut res = see_other(next);
    if let Some(l) = lang {
        res.add_cookie(&language_cookie(l, state.settings.https())).ok();
    }
    Ok(res)
}

/// Step 2 for `email`: the providers of its domain (one: straight there), else the way-in page.
async fn identify(state: &AppState, ctx: Ctx, email: Email, next: String) -> Result<HttpResponse, AppError> {
    let (e, n) = (email.clone(), next.clone());
    let providers = with_conn(state, move |c| {
        let next = (n != "/").then_some(n.as_str());
        Ok(idp::choices_for(c, &e, None, IdpPurpose::SignIn { next })?)
    })
    .await?;
    if let [only] = providers.as_slice() {
        return Ok(see_other(&only.start_url));
    }
    let mut page = SigninPage::new(ctx, SigninStep::WayIn, email.as_str(), &next);
    page.providers = providers;
    ok(&page)
}

#[post("/signin")]
async fn signin(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    ctx: Ctx,
    form: web::Form<SigninForm>,
) -> Result<HttpResponse, AppError> {
    let mut form = form.into_inner();
    // No address is longer (RFC 5321): a longer one is cut before it is checked, counted or audited.
    form.email = crate::domain::clip(form.email.trim(), MAX_EMAIL_BYTES).to_owned();
    let next = safe_next(form.next.as_deref());
    let Some(password) = form.password else {
        // Step 1: the address alone. Only its shape is judged, never whether it has an account.
        return match Email::parse(&form.email) {
            Ok(email) => identify(&state, ctx, email, next).await,
            Err(_) => {
                let mut page = SigninPage::new(ctx, SigninStep::Email, &form.email, &next);
                page.errors = Errors(FieldErrors(vec![("email", "signin.email_invalid")]));
                invalid(&page)
            }
        };
    };
    let ip = client_ip(&req);
    let page = |ctx: Ctx, problem: &'static str| {
        let mut p = SigninPage::new(ctx, SigninStep::WayIn, &form.email, &next);
        p.problem = Some(problem);
        p
    };
    if password.is_empty() {
        let mut p = page(ctx, "signin.password_missing");
        p.problem = None;
        p.errors = Errors(FieldErrors(vec![("password", "signin.password_missing")]));
        return invalid(&p);
    }
    if let Some(wait) = signin_paused(&state, &form.email, &ip).await? {
        let mut res = render(StatusCode::TOO_MANY_REQUESTS, &page(ctx, "signin.paused"))?;
        res.headers_mut().insert(actix_web::http::header::RETRY_AFTER, wait.into());
        return Ok(res);
    }
    match accounts::check_password(&state.pool, form.email.clone(), password).await? {
        PasswordCheck::Ok(user) => finish_signin(&req, &state, &session, &user, WayIn::Password, &next).await,
        PasswordCheck::Wrong => {
            let act = actor(&req, None);
            let masked = crate::domain::email::mask(&form.email.to_lowercase());
            with_conn(&state, move |c| Ok(audit::record(c, &act, None, action::SIGNIN_FAILED, None, Some(&masked))?))
                .await?;
            render(StatusCode::UNAUTHORIZED, &page(ctx, "signin.failed"))
        }
    }
}

#[post("/signout")]
async fn signout(session: Session) -> HttpResponse {
    sign_out(&session);
    see_other("/signin")
}

#[derive(Template)]
#[template(path = "pages/setup.html")]
struct SetupPage {
    ctx: Ctx,
    errors: Errors,
    token: String,
    form: SetupForm,
}

#[derive(Deserialize, Default, Clone)]
struct SetupForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    slug: String,
    #[serde(default)]
    admin_name: String,
    #[serde(default)]
    admin_email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

#[derive(Template)]
#[template(path = "pages/dead_link.html")]
pub struct DeadLinkPage {
    pub ctx: Ctx,
    pub org_name: Option<String>,
    /// The organization's My Apps path when the invitation was accepted (the way back in).
    pub my_apps: Option<String>,
}

impl DeadLinkPage {
    /// An unknown link: nobody is named.
    pub fn unknown(ctx: Ctx) -> Self {
        DeadLinkPage { ctx, org_name: None, my_apps: None }
    }

    /// A real link that cannot be used any more: the organization is named.
    pub fn dead(ctx: Ctx, org_name: String) -> Self {
        DeadLinkPage { ctx, org_name: Some(org_name), my_apps: None }
    }

    /// A link whose invitation was accepted: say so, and offer My Apps.
    pub fn accepted(ctx: Ctx, org_name: String, org_slug: &str) -> Self {
        DeadLinkPage { ctx, org_name: Some(org_name), my_apps: Some(format!("/o/{org_slug}/apps")) }
    }
}

async fn link_is_live(
    state: &web::Data<AppState>,
    purpose: &'static str,
    token: String,
) -> Result<Option<crate::db::models::OneTimeLink>, AppError> {
    with_conn(state, move |c| Ok(orgs::find_link(c, purpose, &token)?)).await
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// First run: the page to create the first organization.
#[get("/setup")]
async fn setup_page(state: web::Data<AppState>, ctx: Ctx, q: web::Query<TokenQuery>) -> Result<HttpResponse, AppError> {
    let token = q.token.clone().unwrap_or_default();
    if link_is_live(&state, link_purpose::SETUP, token.clone()).await?.is_none() {
        return render(StatusCode::NOT_FOUND, &DeadLinkPage::unknown(ctx));
    }
    ok(&SetupPage { ctx, errors: Errors::default(), token, form: SetupForm::default() })
}

#[post("/setup")]
async fn setup(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    ctx: Ctx,
    form: web::Form<SetupForm>,
) -> Result<HttpResponse, AppError> {
    let form = form.into_inner();
    if link_is_live(&state, link_purpose::SETUP, form.token.clone()).await?.is_none() {
        return render(StatusCode::NOT_FOUND, &DeadLinkPage::unknown(ctx));
    }
    let input = NewOrg {
        name: form.name.clone(),
        slug: form.slug.clone(),
        admin_email: form.admin_email.clone(),
        admin_name: form.admin_name.clone(),
    };
    let mut errors = validate_new_org(&input).err().unwrap_or_default();
    let email = Email::parse(&form.admin_email).map(|e| e.as_str().to_owned()).unwrap_or_default();
    if let Err(p) = check_new_password(&form.password, &form.confirm, &email) {
        errors.add(
            if p == crate::domain::password::PasswordProblem::Mismatch { "confirm" } else { "password" },
            p.message_key(),
        );
    }
    let show = |ctx: Ctx, errors: FieldErrors, form: SetupForm| {
        invalid(&SetupPage { ctx, errors: Errors(errors), token: form.token.clone(), form })
    };
    if !errors.is_empty() {
        return show(ctx, errors, form);
    }
    let Ok(valid) = validate_new_org(&input) else {
        return show(ctx, errors, form);
    };
    let password = form.password.clone();
    let hash = web::block(move || hash_password(&password)).await??;
    let act = actor(&req, None);
    let token = form.token.clone();
    let result = with_conn(&state, move |c| {
        Ok(crate::db::write_tx(c, |c| {
            if !orgs::consume_link(c, link_purpose::SETUP, &token)? {
                return Err(ServiceError::NotFound);
            }
            let (org, user) = orgs::create_org(c, &valid, Some(&hash), &act)?;
            if user.password_hash.as_deref() != Some(hash.as_str()) {
                // The address already had an account with another password: refuse rather than take it over.
                return Err(ServiceError::field("admin_email", "setup.email_taken"));
            }
            Ok((org, user))
        }))
    })
    .await?;
    match result {
        Ok((org, user)) => {
            start_session(&req, &session, &user, &WayIn::Password.amr(false))?;
            Ok(see_other(&format!("/o/{}/admin", org.slug)))
        }
        Err(ServiceError::Invalid(errors)) => show(ctx, errors, form),
        Err(ServiceError::NotFound) => render(StatusCode::NOT_FOUND, &DeadLinkPage::unknown(ctx)),
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "pages/set_password.html")]
struct SetPasswordPage {
    ctx: Ctx,
    errors: Errors,
    token: String,
    email: String,
}

#[derive(Deserialize)]
struct PasswordForm {
    password: String,
    confirm: String,
}

/// The one-time link printed by `org create` without `--admin-password-stdin`.
#[get("/password/{token}")]
async fn password_page(
    state: web::Data<AppState>,
    ctx: Ctx,
    token: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let token = token.into_inner();
    let Some(link) = link_is_live(&state, link_purpose::SET_PASSWORD, token.clone()).await? else {
        return render(StatusCode::NOT_FOUND, &DeadLinkPage::unknown(ctx));
    };
    let uid = link.user_id.unwrap_or_default();
    let user = with_conn(&state, move |c| Ok(accounts::find_by_id(c, &uid)?)).await?.ok_or(AppError::NotFound)?;
    ok(&SetPasswordPage { ctx, errors: Errors::default(), token, email: user.email })
}

#[post("/password/{token}")]
async fn set_password(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    ctx: Ctx,
    token: web::Path<String>,
    form: web::Form<PasswordForm>,
) -> Result<HttpResponse, AppError> {
    let token = token.into_inner();
    let Some(link) = link_is_live(&state, link_purpose::SET_PASSWORD, token.clone()).await? else {
        return render(StatusCode::NOT_FOUND, &DeadLinkPage::unknown(ctx));
    };
    let uid = link.user_id.unwrap_or_default();
    let user = with_conn(&state, move |c| Ok(accounts::find_by_id(c, &uid)?)).await?.ok_or(AppError::NotFound)?;
    if let Err(p) = check_new_password(&form.password, &form.confirm, &user.email) {
        let mut errors = FieldErrors::default();
        errors.add(
            if p == crate::domain::password::PasswordProblem::Mismatch { "confirm" } else { "password" },
            p.message_key(),
        );
        return invalid(&SetPasswordPage { ctx, errors: Errors(errors), token, email: user.email });
    }
    let password = form.password.clone();
    let hash = web::block(move || hash_password(&password)).await??;
    let uid = user.id.clone();
    let done = with_conn(&state, move |c| {
        Ok(crate::db::write_tx(c, |c| {
            if !orgs::consume_link(c, link_purpose::SET_PASSWORD, &token)? {
                return Ok(false);
            }
            accounts::set_password(c, &uid, &hash)?;
            Ok::<bool, diesel::result::Error>(true)
        })?)
    })
    .await?;
    if !done {
        return render(StatusCode::NOT_FOUND, &DeadLinkPage::unknown(ctx));
    }
    start_session(&req, &session, &user, &WayIn::Password.amr(false))?;
    Ok(see_other("/"))
}
