//! Request extractors for what handlers keep asking: who is signed in to which organization
//! with which membership ([`OrgAdmin`], [`OrgMember`]), and the live invitation of a redemption
//! link ([`LiveLink`]). A handler names what it needs in its signature instead of opening with
//! the same lookups.

use actix_session::SessionExt;
use actix_web::{FromRequest, HttpRequest, HttpResponse, dev::Payload, http::StatusCode, web};
use futures_util::future::LocalBoxFuture;

use crate::auth::SessionUser;
use crate::auth::guard::current_user;
use crate::db::models::{Membership, Organization};
use crate::domain::Role;
use crate::error::AppError;
use crate::services::redeem::{self, LinkState, LiveInvitation};
use crate::services::{Actor, orgs};
use crate::state::AppState;
use crate::web::{Ctx, actor, with_conn};

/// The signed-in person and their active membership in the organization of the path's `{org}`.
#[derive(Debug, Clone)]
pub struct OrgContext {
    pub org: Organization,
    pub membership: Membership,
    pub user: SessionUser,
    /// The audit actor of the request.
    pub actor: Actor,
}

fn state_of(req: &HttpRequest) -> Result<web::Data<AppState>, AppError> {
    req.app_data::<web::Data<AppState>>().cloned().ok_or_else(|| AppError::Internal(anyhow::anyhow!("no state")))
}

/// Loads the org of `{org}` and the signed-in person's active membership; `admin` asks for
/// the admin role too. 404 for everyone else, so that an org one does not belong to (or does
/// not administer) does not even seem to exist; a visitor who is not signed in is sent to sign in.
async fn load(req: HttpRequest, admin: bool) -> Result<OrgContext, AppError> {
    let user = current_user(&req.get_session()).ok_or_else(|| {
        AppError::SignInRequired(req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default())
    })?;
    let state = state_of(&req)?;
    let mfa_here = session_passed_second_factor(&req.get_session());
    let (slug, uid) = (req.match_info().get("org").unwrap_or_default().to_owned(), user.id.clone());
    let (org, membership, missing_factor) = with_conn(&state, move |c| {
        let org = orgs::find_by_slug(c, &slug)?.ok_or(AppError::NotFound)?;
        let m = orgs::membership_of(c, &org.id, &uid)?
            .filter(|m| orgs::is_active(m) && (!admin || m.role == Role::Admin))
            .ok_or(AppError::NotFound)?;
        let missing =
            org.requires_second_factor(m.role) && !mfa_here && !crate::services::second_factor::is_enrolled(c, &uid)?;
        Ok((org, m, missing))
    })
    .await?;
    if missing_factor {
        // The organization's policy: no way in until the person has a second factor.
        return Err(AppError::SecondFactorRequired(
            req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default(),
        ));
    }
    let actor = actor(&req, Some(&user));
    Ok(OrgContext { org, membership, user, actor })
}

/// An admin of the path's organization (the console).
#[derive(Debug, Clone)]
pub struct OrgAdmin(pub OrgContext);

impl FromRequest for OrgAdmin {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { load(req, true).await.map(OrgAdmin) })
    }
}

/// Any active member or guest of the path's organization (My Apps, self-service, leaving).
#[derive(Debug, Clone)]
pub struct OrgMember(pub OrgContext);

impl FromRequest for OrgMember {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { load(req, false).await.map(OrgMember) })
    }
}

/// An active member or guest of the path's organization whom its collaboration policy lets
/// invite (self-service); 403 for other members.
#[derive(Debug, Clone)]
pub struct OrgInviter(pub OrgContext);

impl FromRequest for OrgInviter {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let ctx = load(req, false).await?;
            if !crate::services::policy::may_invite(&ctx.org, &ctx.membership) {
                return Err(AppError::Forbidden);
            }
            Ok(OrgInviter(ctx))
        })
    }
}

/// This session's sign-in passed a second factor (here, or at the home provider, whose ID token
/// said so): an organization's second-factor policy is met.
pub fn session_passed_second_factor(session: &actix_session::Session) -> bool {
    session
        .get::<Vec<String>>(crate::services::sessions::AMR_KEY)
        .ok()
        .flatten()
        .is_some_and(|amr| amr.iter().any(|m| m == "mfa"))
}

/// The live invitation of the path's `{token}`. A dead, unknown or refused link never reaches
/// the handler: the visitor gets the friendly page (404 unknown, 410 dead, 403 refused).
pub struct LiveLink {
    pub token: String,
    pub live: LiveInvitation,
}

impl FromRequest for LiveLink {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let ctx = Ctx::from_request(&req, payload).into_inner();
        Box::pin(async move {
            let ctx = ctx?;
            let state = state_of(&req)?;
            let token = req.match_info().get("token").unwrap_or_default().to_owned();
            let t = token.clone();
            let found = with_conn(&state, move |c| Ok(redeem::inspect(c, &t)?)).await?;
            let page = match found {
                LinkState::Valid(live) => return Ok(LiveLink { token, live: *live }),
                LinkState::Dead { org_name } => {
                    crate::web::render(StatusCode::GONE, &crate::web::account::DeadLinkPage::dead(ctx, org_name))
                }
                LinkState::Accepted { org_name, org_slug } => crate::web::render(
                    StatusCode::GONE,
                    &crate::web::account::DeadLinkPage::accepted(ctx, org_name, &org_slug),
                ),
                LinkState::Unknown => {
                    crate::web::render(StatusCode::NOT_FOUND, &crate::web::account::DeadLinkPage::unknown(ctx))
                }
                LinkState::Refused { org_name } => crate::web::render(
                    StatusCode::FORBIDDEN,
                    &crate::web::guest::RefusedPage { ctx, org_name, reason: "policy.redeem_refused" },
                ),
            }?;
            Err(answered(page))
        })
    }
}

/// An error that is already a complete answer (a rendered page).
fn answered(page: HttpResponse) -> actix_web::Error {
    actix_web::error::InternalError::from_response("answered", page).into()
}
