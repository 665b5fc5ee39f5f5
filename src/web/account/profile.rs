//! `/account`: my name and language, my password, my sessions.

use actix_session::Session;
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use askama::Template;
use serde::Deserialize;

use super::{signin_paused, signin_succeeded};
use crate::auth::SignedIn;
use crate::auth::guard::{SessionUser, refresh_user};
use crate::auth::password::{hash_password, verify_password};
use crate::db::models::User;
use crate::domain::password::{PasswordProblem, check_new_password};
use crate::domain::token::PlainToken;
use crate::error::AppError;
use crate::i18n::Lang;
use crate::services::profile::{self, PasswordAdd, PasswordChange, ProfileInput};
use crate::services::{FieldErrors, ServiceError, accounts, sessions};
use crate::state::AppState;
use crate::web::pages::language_cookie;
use crate::web::{Ctx, Errors, actor, client_ip, invalid, ok, render, see_other, with_conn};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(account_page).service(save_profile).service(change_password).service(end_other_sessions);
}

struct SessionView {
    created: String,
    last_active: String,
    user_agent: String,
    client_ip: String,
    current: bool,
}

#[derive(Template)]
#[template(path = "pages/account.html")]
struct AccountPage {
    ctx: Ctx,
    user: User,
    errors: Errors,
    /// The form whose errors are shown: `profile` or `password`.
    failed: &'static str,
    display_name: String,
    language: String,
    sessions: Vec<SessionView>,
    has_others: bool,
    notice: Option<&'static str>,
    /// The identity provider the account signs in through, if any (then it has no password).
    provider: Option<String>,
    /// The account has a (confirmed) second factor.
    second_factor: bool,
}

/// The marker of the asking session, if it has one (sessions started before markers existed
/// have none).
fn current_sid(session: &Session) -> Option<String> {
    session.get::<String>(sessions::SID_KEY).ok().flatten()
}

/// The marker of the asking session, giving it one if it has none. Such a session gets a new
/// id too, so that its old row (without a marker) can end with the others.
fn ensure_sid(session: &Session) -> Result<String, AppError> {
    if let Some(sid) = current_sid(session) {
        return Ok(sid);
    }
    let sid = PlainToken::generate().expose().to_owned();
    session.insert(sessions::SID_KEY, &sid).map_err(|e| AppError::Internal(anyhow::anyhow!("session: {e}")))?;
    session.renew();
    Ok(sid)
}

/// The page with fresh data from the database; forms start from the stored values.
async fn load_page(
    state: &web::Data<AppState>,
    ctx: Ctx,
    user_id: &str,
    sid: Option<String>,
) -> Result<AccountPage, AppError> {
    let uid = user_id.to_owned();
    let (user, mine, (provider, second_factor)) = with_conn(state, move |c| {
        let user = accounts::find_by_id(c, &uid)?.ok_or(AppError::NotFound)?;
        let mine = sessions::list_for_user(c, &uid, sid.as_deref())?;
        let provider = crate::services::idp::bound_provider(c, &uid)?;
        let second_factor = crate::services::second_factor::is_enrolled(c, &uid)?;
        Ok((user, mine, (provider, second_factor)))
    })
    .await?;
    let tr = ctx.tr;
    let has_others = mine.iter().any(|s| !s.current);
    let sessions = mine
        .into_iter()
        .map(|s| SessionView {
            created: tr.datetime(&s.created_at),
            last_active: tr.datetime(&s.last_active),
            user_agent: s.user_agent.unwrap_or_default(),
            client_ip: s.client_ip.unwrap_or_default(),
            current: s.current,
        })
        .collect();
    Ok(AccountPage {
        display_name: user.display_name.clone(),
        language: user.language.clone().and_then(|l| Lang::parse(&l)).unwrap_or(ctx.lang).code().to_owned(),
        ctx,
        user,
        errors: Errors::default(),
        failed: "",
        sessions,
        has_others,
        notice: None,
        provider,
        second_factor,
    })
}

#[derive(Deserialize)]
struct DoneQuery {
    done: Option<String>,
}

/// `/account`: profile, password and sessions.
#[get("/account")]
async fn account_page(
    state: web::Data<AppState>,
    ctx: Ctx,
    session: Session,
    signed_in: SignedIn,
    q: web::Query<DoneQuery>,
) -> Result<HttpResponse, AppError> {
    let mut page = load_page(&state, ctx, &signed_in.0.id, current_sid(&session)).await?;
    page.notice = match q.done.as_deref() {
        Some("profile") => Some("account.profile_saved"),
        Some("password") => Some("account.password_changed"),
        Some("password_added") => Some("account.password_added"),
        Some("sessions") => Some("account.sessions_ended"),
        Some("mfa_removed") => Some("mfa.removed"),
        _ => None,
    };
    ok(&page)
}

#[derive(Deserialize)]
struct ProfileForm {
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    language: String,
}

/// Saves name and language; the language also becomes the browser's language switch.
#[post("/account/profile")]
async fn save_profile(
    req: HttpRequest,
    state: web::Data<AppState>,
    ctx: Ctx,
    session: Session,
    signed_in: SignedIn,
    form: web::Form<ProfileForm>,
) -> Result<HttpResponse, AppError> {
    let form = form.into_inner();
    let input = ProfileInput { display_name: form.display_name.clone(), language: form.language.clone() };
    let valid = match profile::validate_profile(&input) {
        Ok(v) => v,
        Err(errors) => {
            let mut page = load_page(&state, ctx, &signed_in.0.id, current_sid(&session)).await?;
            page.errors = Errors(errors);
            page.failed = "profile";
            page.display_name = form.display_name;
            page.language = form.language;
            return invalid(&page);
        }
    };
    let act = actor(&req, Some(&signed_in.0));
    let (uid, lang) = (signed_in.0.id.clone(), valid.language);
    let user = with_conn(&state, move |c| Ok(profile::update_profile(c, &uid, &valid, &act)?)).await?;
    refresh_user(&session, &SessionUser { id: user.id, email: user.email, name: user.display_name })?;
    let mut res = see_other("/account?done=profile");
    res.add_cookie(&language_cookie(lang, state.settings.https())).ok();
    Ok(res)
}

#[derive(Deserialize)]
struct PasswordForm {
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    confirm_password: String,
}

/// Changes the password: the current one is required; every other session ends, and the
/// person is told by email.
#[post("/account/password")]
async fn change_password(
    req: HttpRequest,
    state: web::Data<AppState>,
    ctx: Ctx,
    session: Session,
    signed_in: SignedIn,
    form: web::Form<PasswordForm>,
) -> Result<HttpResponse, AppError> {
    let form = form.into_inner();
    let me = signed_in.0.clone();
    let ip = client_ip(&req);
    let refuse = |status: StatusCode, errors: FieldErrors| {
        let (state, ctx, sid) = (state.clone(), ctx.clone(), current_sid(&session));
        let uid = me.id.clone();
        async move {
            let mut page = load_page(&state, ctx, &uid, sid).await?;
            page.errors = Errors(errors);
            page.failed = "password";
            render(status, &page)
        }
    };
    let uid = me.id.clone();
    let account = with_conn(&state, move |c| Ok(accounts::find_by_id(c, &uid)?)).await?.ok_or(AppError::NotFound)?;
    // The notice goes out in the person's language, else the page's.
    let lang = account.language.as_deref().and_then(Lang::parse).unwrap_or(ctx.lang);
    if account.password_hash.is_none() {
        // A passwordless account adds its first password: nothing to verify, nothing to guess.
        let mut errors = FieldErrors::default();
        if let Err(p) = check_new_password(&form.new_password, &form.confirm_password, &me.email) {
            errors
                .add(if p == PasswordProblem::Mismatch { "confirm_password" } else { "new_password" }, p.message_key());
        }
        if !errors.is_empty() {
            return refuse(StatusCode::UNPROCESSABLE_ENTITY, errors).await;
        }
        let new_password = form.new_password.clone();
        let new_hash = web::block(move || hash_password(&new_password)).await??;
        let keep_sid = ensure_sid(&session)?;
        let act = actor(&req, Some(&me));
        let (uid, public_url) = (me.id.clone(), state.settings.public_url.clone());
        let result = with_conn(&state, move |c| {
            let add =
                PasswordAdd { user_id: &uid, new_hash: &new_hash, keep_sid: &keep_sid, public_url: &public_url, lang };
            Ok(profile::add_password(c, &add, &act))
        })
        .await?;
        return match result {
            Ok(_) => Ok(see_other("/account?done=password_added")),
            Err(ServiceError::Invalid(errors)) => refuse(StatusCode::UNPROCESSABLE_ENTITY, errors).await,
            Err(e) => Err(e.into()),
        };
    }
    if let Some(wait) = signin_paused(&state, &me.email, &ip).await? {
        let mut res =
            refuse(StatusCode::TOO_MANY_REQUESTS, FieldErrors(vec![("current_password", "signin.paused")])).await?;
        res.headers_mut().insert(header::RETRY_AFTER, wait.into());
        return Ok(res);
    }
    let stored = account.password_hash;
    let (current, stored_for_check) = (form.current_password.clone(), stored.clone());
    let current_ok = web::block(move || verify_password(&current, stored_for_check.as_deref())).await?;
    let mut errors = FieldErrors::default();
    if current_ok {
        signin_succeeded(&state, &me.email, &ip).await?;
    } else {
        errors.add("current_password", "account.password_wrong");
    }
    match check_new_password(&form.new_password, &form.confirm_password, &me.email) {
        Err(p) => errors
            .add(if p == PasswordProblem::Mismatch { "confirm_password" } else { "new_password" }, p.message_key()),
        Ok(()) if current_ok && form.new_password == form.current_password => {
            errors.add("new_password", "account.password_same")
        }
        Ok(()) => {}
    }
    let (true, Some(verified_hash)) = (errors.is_empty(), stored) else {
        return refuse(StatusCode::UNPROCESSABLE_ENTITY, errors).await;
    };
    let new_password = form.new_password.clone();
    let new_hash = web::block(move || hash_password(&new_password)).await??;
    let keep_sid = ensure_sid(&session)?;
    let act = actor(&req, Some(&me));
    let (uid, public_url) = (me.id.clone(), state.settings.public_url.clone());
    let result = with_conn(&state, move |c| {
        let change = PasswordChange {
            user_id: &uid,
            verified_hash: &verified_hash,
            new_hash: &new_hash,
            keep_sid: &keep_sid,
            public_url: &public_url,
            lang,
        };
        Ok(profile::change_password(c, &change, &act))
    })
    .await?;
    match result {
        Ok(_) => Ok(see_other("/account?done=password")),
        Err(ServiceError::Invalid(errors)) => refuse(StatusCode::UNPROCESSABLE_ENTITY, errors).await,
        Err(e) => Err(e.into()),
    }
}

/// "Sign out everywhere else": every session of mine but this one ends.
#[post("/account/sessions/end-others")]
async fn end_other_sessions(
    req: HttpRequest,
    state: web::Data<AppState>,
    session: Session,
    signed_in: SignedIn,
) -> Result<HttpResponse, AppError> {
    let keep_sid = ensure_sid(&session)?;
    let act = actor(&req, Some(&signed_in.0));
    let uid = signed_in.0.id.clone();
    with_conn(&state, move |c| Ok(sessions::sign_out_elsewhere(c, &uid, &keep_sid, &act)?)).await?;
    Ok(see_other("/account?done=sessions"))
}
