//! Signing in through a guest's home identity provider (design §10): the start (for `/signin`
//! and for a redemption) and the one callback of the installation, `/auth/oidc/callback`.
//! Every failure is a plain page; none leaves anything half-done.

use actix_session::Session;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, web};
use askama::Template;
use serde::Deserialize;

use crate::error::AppError;
use crate::services::idp::flow::{self, Answer, Failure, Purpose};
use crate::services::idp::upstream::Problem;
use crate::state::AppState;
use crate::web::account::{WayIn, start_session};
use crate::web::pages::language_cookie;
use crate::web::{Ctx, actor, client_ip, render, safe_next, see_other};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(start_signin).service(start_redeem).service(callback);
}

/// The session key holding the SHA-256 of the `state` this browser sent to a provider.
const STATE_KEY: &str = "idp_state";

/// A sign-in through a provider that stopped.
#[derive(Template)]
#[template(path = "pages/idp_problem.html")]
struct ProblemPage {
    ctx: Ctx,
    title: String,
    paragraphs: Vec<String>,
    /// A way on: (label, local path).
    action: Option<(String, String)>,
}

/// The page (and status) of a failure, in the visitor's language.
fn problem_page(ctx: Ctx, failure: &Failure) -> Result<HttpResponse, AppError> {
    let tr = ctx.tr;
    let (status, title, paragraphs, action): (StatusCode, &str, Vec<String>, Option<(String, String)>) = match failure {
        Failure::ProviderGone => (StatusCode::GONE, "idp.problem_title", vec![tr.t("idp.provider_gone").into()], None),
        Failure::LinkDead => (StatusCode::GONE, "idp.problem_title", vec![tr.t("idp.link_dead").into()], None),
        Failure::Upstream(p) => {
            let status = match p {
                Problem::Unreachable => StatusCode::GATEWAY_TIMEOUT,
                Problem::TokenRejected => StatusCode::FORBIDDEN,
                _ => StatusCode::BAD_GATEWAY,
            };
            (status, "idp.problem_title", vec![tr.t(p.message_key()).into(), tr.t("idp.try_later").into()], None)
        }
        Failure::StateRejected => {
            (StatusCode::BAD_REQUEST, "idp.problem_title", vec![tr.t("idp.state_rejected").into()], None)
        }
        Failure::Cancelled { provider } => {
            (StatusCode::BAD_REQUEST, "idp.problem_title", vec![tr.f1("idp.cancelled", "provider", provider)], None)
        }
        Failure::EmailMismatch { provider, got, invited, retry } => (
            StatusCode::FORBIDDEN,
            "idp.mismatch_title",
            vec![
                fill(tr.t("idp.mismatch"), &[("provider", provider), ("got", got), ("invited", invited)]),
                tr.f1("idp.mismatch_hint", "provider", provider),
            ],
            Some((tr.t("idp.try_another").into(), retry.clone())),
        ),
        Failure::EmailUnverified { provider, email } => (
            StatusCode::FORBIDDEN,
            "idp.problem_title",
            vec![tr.f2("idp.unverified", "provider", provider, "email", email)],
            None,
        ),
        Failure::NoEmail { provider } => {
            (StatusCode::FORBIDDEN, "idp.problem_title", vec![tr.f1("idp.no_email", "provider", provider)], None)
        }
        Failure::NotServed { provider, email } => (
            StatusCode::FORBIDDEN,
            "idp.problem_title",
            vec![tr.f2("idp.not_served", "provider", provider, "email", email)],
            None,
        ),
        Failure::NoAccount { provider, email } => (
            StatusCode::FORBIDDEN,
            "idp.problem_title",
            vec![tr.f2("idp.no_account", "provider", provider, "email", email)],
            None,
        ),
        Failure::NeedsPassword { provider, email, retry } => (
            StatusCode::CONFLICT,
            "idp.problem_title",
            vec![tr.f2("idp.needs_password", "provider", provider, "email", email)],
            Some((tr.t("idp.sign_in_first").into(), retry.clone())),
        ),
        Failure::AccountTaken { provider } => {
            (StatusCode::CONFLICT, "idp.problem_title", vec![tr.f1("idp.account_taken", "provider", provider)], None)
        }
        Failure::Throttled(wait) => return Err(AppError::TooManyRequests(*wait)),
        Failure::Internal(_) => return Err(AppError::Internal(anyhow::anyhow!("federation: {failure:?}"))),
    };
    render(status, &ProblemPage { title: tr.t(title).into(), paragraphs, action, ctx })
}

/// Puts the values in a catalogue text in one pass (a value holding `{name}` stays as it is).
fn fill(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(j) = after.find('}')
            && let Some((_, value)) = vars.iter().find(|(name, _)| *name == &after[..j])
        {
            out.push_str(value);
            rest = &after[j + 1..];
            continue;
        }
        out.push('{');
        rest = after;
    }
    out.push_str(rest);
    out
}

#[derive(Deserialize)]
struct StartQuery {
    #[serde(default)]
    idp: String,
    next: Option<String>,
    hint: Option<String>,
    again: Option<String>,
}

/// Remembers the request on this browser and sends it to the provider.
fn to_provider(session: &Session, started: flow::Started) -> Result<HttpResponse, AppError> {
    session.insert(STATE_KEY, &started.state_hash).map_err(|e| AppError::Internal(anyhow::anyhow!("session: {e}")))?;
    Ok(see_other(&started.redirect))
}

/// `/auth/oidc/start?idp=…&hint=…&next=…`: sign in through a provider (from `/signin`).
#[get("/auth/oidc/start")]
async fn start_signin(
    req: HttpRequest,
    state: web::Data<AppState>,
    ctx: Ctx,
    session: Session,
    q: web::Query<StartQuery>,
) -> Result<HttpResponse, AppError> {
    let q = q.into_inner();
    let purpose = Purpose::SignIn { next: safe_next(q.next.as_deref()) };
    let hint = q.hint.map(|h| crate::domain::clip(&h, 320).to_owned());
    let ip = client_ip(&req);
    match flow::start(&state.pool, &state.idp, &q.idp, purpose, hint, q.again.is_some(), ip.as_deref()).await {
        Ok(started) => to_provider(&session, started),
        Err(failure) => problem_page(ctx, &failure),
    }
}

#[derive(Deserialize)]
struct AgainQuery {
    again: Option<String>,
}

/// `/redeem/{token}/oidc/{idp}`: redeem an invitation through the organization's provider for
/// the invited address. Under `/redeem/` so that the access log redacts the token.
#[get("/redeem/{token}/oidc/{idp}")]
async fn start_redeem(
    req: HttpRequest,
    state: web::Data<AppState>,
    ctx: Ctx,
    session: Session,
    path: web::Path<(String, String)>,
    q: web::Query<AgainQuery>,
) -> Result<HttpResponse, AppError> {
    let (token, idp) = path.into_inner();
    let purpose = Purpose::Redeem { token: crate::domain::clip(&token, 128).to_owned() };
    let ip = client_ip(&req);
    match flow::start(&state.pool, &state.idp, &idp, purpose, None, q.again.is_some(), ip.as_deref()).await {
        Ok(started) => to_provider(&session, started),
        Err(failure) => problem_page(ctx, &failure),
    }
}

/// `/auth/oidc/callback`: the provider's answer. On success the account is signed in through
/// the same `start_session` as a password sign-in, and goes on (to consent, for a redemption).
#[get("/auth/oidc/callback")]
async fn callback(
    req: HttpRequest,
    state: web::Data<AppState>,
    ctx: Ctx,
    session: Session,
    answer: web::Query<Answer>,
) -> Result<HttpResponse, AppError> {
    let browser_state = session.remove_as::<String>(STATE_KEY).and_then(Result::ok);
    let signed_in = ctx.user.as_ref().map(|u| u.id.clone());
    let act = actor(&req, ctx.user.as_ref());
    match flow::finish(&state.pool, &state.idp, answer.into_inner(), browser_state, signed_in, &act).await {
        Ok(finished) => {
            // A local second factor is asked unless the provider says one was passed there.
            let uid = finished.user.id.clone();
            if !finished.strong
                && crate::web::with_conn(&state, move |c| Ok(crate::services::second_factor::is_enrolled(c, &uid)?))
                    .await?
            {
                session.clear();
                session.renew();
                return crate::web::account::second_factor::park(
                    &session,
                    &finished.user.id,
                    WayIn::Provider,
                    &finished.target,
                );
            }
            let lang = start_session(&req, &session, &finished.user, &WayIn::Provider.amr(finished.strong))?;
            let mut res = see_other(&finished.target);
            if let Some(l) = lang {
                res.add_cookie(&language_cookie(l, state.settings.https())).ok();
            }
            Ok(res)
        }
        Err(failure) => problem_page(ctx, &failure),
    }
}

#[cfg(test)]
mod tests {
    use super::fill;

    #[test]
    fn fill_is_one_pass() {
        assert_eq!(
            fill("as {got}, for {invited}", &[("got", "{invited}"), ("invited", "y@b.test")]),
            "as {invited}, for y@b.test"
        );
        assert_eq!(fill("{unknown} {", &[]), "{unknown} {");
    }
}
