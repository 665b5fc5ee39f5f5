//! HTTP handlers, grouped by audience, and what every page shares.

pub mod account;
pub mod admin;
pub mod api;
pub mod csrf;
pub mod extract;
pub mod federation;
pub mod guest;
pub mod inviting;
pub mod member;
pub mod metrics;
pub mod middleware;
pub mod oidc;
pub mod pages;
pub mod selfservice;
pub mod session_store;
pub mod sponsor;

use std::future::{Ready, ready};

use actix_session::SessionExt;
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, dev::Payload, web};
use askama::Template;

use crate::auth::SessionUser;
use crate::auth::guard::current_user;
use crate::db::DbConnection;
use crate::error::AppError;
use crate::i18n::{Lang, Tr};
use crate::services::Actor;
use crate::state::AppState;
use crate::web::csrf::CsrfToken;
use crate::web::middleware::RequestId;

/// Name of the cookie that remembers the language switch.
pub const LANG_COOKIE: &str = "vestibule_lang";

/// The language of a request: the remembered switch, else Accept-Language, else English.
pub fn lang_of(req: &HttpRequest) -> Lang {
    req.cookie(LANG_COOKIE)
        .and_then(|c| Lang::parse(c.value()))
        .or_else(|| {
            req.headers().get("accept-language").and_then(|v| v.to_str().ok()).and_then(Lang::from_accept_language)
        })
        .unwrap_or_default()
}

/// What every page template needs: language, CSRF token, the signed-in person.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub tr: Tr,
    pub lang: Lang,
    pub csrf: String,
    pub user: Option<SessionUser>,
    /// Path and query of this page, for the language switch to come back to.
    pub here: String,
}

impl Ctx {
    /// A context without the session (error pages).
    pub fn anonymous(req: &HttpRequest, lang: Lang) -> Ctx {
        Ctx {
            tr: lang.tr(),
            lang,
            csrf: req.extensions().get::<CsrfToken>().map(|t| t.0.clone()).unwrap_or_default(),
            user: None,
            here: "/".into(),
        }
    }

    /// The languages to offer in the switch.
    pub fn languages(&self) -> [Lang; 2] {
        Lang::ALL
    }
}

impl FromRequest for Ctx {
    type Error = AppError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let lang = lang_of(req);
        let user = current_user(&req.get_session());
        let here = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_else(|| "/".into());
        ready(Ok(Ctx {
            tr: lang.tr(),
            lang,
            csrf: req.extensions().get::<CsrfToken>().map(|t| t.0.clone()).unwrap_or_default(),
            user,
            here,
        }))
    }
}

/// The client address: the TCP peer, or, when the peer is a proxy on this machine, the
/// address it reports last in `X-Forwarded-For`.
pub fn client_ip(req: &HttpRequest) -> Option<String> {
    let peer = req.peer_addr()?.ip();
    if peer.is_loopback()
        && let Some(xff) = req.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok())
        && let Some(last) = xff.split(',').map(str::trim).rfind(|s| !s.is_empty())
        && let Ok(ip) = last.parse::<std::net::IpAddr>()
    {
        // Only an address is believed: the header's text never reaches the audit or a throttle key.
        return Some(ip.to_string());
    }
    Some(peer.to_string())
}

/// The audit actor of a request.
pub fn actor(req: &HttpRequest, user: Option<&SessionUser>) -> Actor {
    Actor {
        user_id: user.map(|u| u.id.clone()),
        ip: client_ip(req),
        request_id: req.extensions().get::<RequestId>().map(|r| r.0.clone()),
    }
}

/// Renders a template as an HTML response with the given status.
pub fn render<T: Template>(status: actix_web::http::StatusCode, page: &T) -> Result<HttpResponse, AppError> {
    let html = page.render().map_err(|e| AppError::Internal(anyhow::anyhow!("template: {e}")))?;
    Ok(HttpResponse::build(status).content_type("text/html; charset=utf-8").body(html))
}

/// 200 with a page.
pub fn ok<T: Template>(page: &T) -> Result<HttpResponse, AppError> {
    render(actix_web::http::StatusCode::OK, page)
}

/// 422 with a page: a form shown again with its errors.
pub fn invalid<T: Template>(page: &T) -> Result<HttpResponse, AppError> {
    render(actix_web::http::StatusCode::UNPROCESSABLE_ENTITY, page)
}

/// 303 See Other to `location`. Callers pass a target already judged ([`safe_next`],
/// `check_redirect`) or built from stored values; as a last line of defence, a target that is
/// not plain visible ASCII (a path segment echoed from the request, say) is never written into
/// the header: the answer goes to `/` instead of failing with a 500 or carrying a control
/// character a browser would silently drop.
pub fn see_other(location: &str) -> HttpResponse {
    let value = Some(location)
        .filter(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_graphic()))
        .and_then(|l| actix_web::http::header::HeaderValue::from_str(l).ok());
    let value = value.unwrap_or_else(|| {
        tracing::warn!("a redirect target was not a valid header value; sending to / instead");
        actix_web::http::header::HeaderValue::from_static("/")
    });
    HttpResponse::SeeOther().insert_header((actix_web::http::header::LOCATION, value)).finish()
}

/// Runs database work off the async threads ([`crate::db::with_conn`]) with the error type of
/// handlers, and wakes the mail worker when the work queued mail: the one place that does.
pub async fn with_conn<T, F>(state: &AppState, f: F) -> Result<T, AppError>
where
    T: Send + 'static,
    F: FnOnce(&mut DbConnection) -> Result<T, AppError> + Send + 'static,
{
    let (result, queued) = crate::db::with_conn(&state.pool, move |c| {
        crate::mail::take_queued();
        let result = f(c);
        Ok::<_, AppError>((result, crate::mail::take_queued()))
    })
    .await?;
    if queued {
        state.wake_mail();
    }
    result
}

/// A keyset-pagination cursor for URLs: `<unix micros>.<id>` of the last row shown.
pub fn encode_cursor(at: &time::PrimitiveDateTime, id: &str) -> String {
    let micros = at.assume_utc().unix_timestamp_nanos() / 1000;
    format!("{micros}.{id}")
}

/// Reads a cursor written by [`encode_cursor`]; `None` for anything else.
pub fn decode_cursor(s: &str) -> Option<(time::PrimitiveDateTime, String)> {
    let (micros, id) = s.split_once('.')?;
    let nanos = micros.parse::<i128>().ok()? * 1000;
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()?;
    Some((time::PrimitiveDateTime::new(t.date(), t.time()), id.to_owned()))
}

/// A local path that is safe to redirect to (after sign-in, the language switch): judged in one
/// place, [`crate::domain::redirect::local_path`]; anything else goes to `/`.
pub fn safe_next(next: Option<&str>) -> String {
    next.and_then(crate::domain::redirect::local_path).unwrap_or_else(|| "/".to_owned())
}

/// Form field errors as seen by templates.
#[derive(Debug, Clone, Default)]
pub struct Errors(pub crate::services::FieldErrors);

impl Errors {
    /// The translated message for `field`, if it has one.
    pub fn msg(&self, tr: &Tr, field: &str) -> Option<&'static str> {
        self.0.get(field).map(|k| tr.t(k))
    }

    /// True when `field` has an error.
    pub fn has(&self, field: &str) -> bool {
        self.0.get(field).is_some()
    }

    /// True when there are no errors.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Every route of the application.
pub fn routes(cfg: &mut web::ServiceConfig) {
    pages::routes(cfg);
    account::routes(cfg);
    guest::routes(cfg);
    member::routes(cfg);
    admin::routes(cfg);
    selfservice::routes(cfg);
    sponsor::routes(cfg);
    api::routes(cfg);
    oidc::routes(cfg);
    federation::routes(cfg);
    metrics::routes(cfg);
}
