//! A sign-in through a provider, from the start to the provider's answer.
//!
//! [`start`] keeps the request (state, nonce, PKCE verifier, purpose, ten minutes) in the
//! database, so that whichever instance gets the answer can finish it, and returns the URL to
//! send the browser to. [`finish`] takes that request back exactly once (the browser must be the
//! one that started it), exchanges the code, has the ID token verified, then decides in one
//! transaction: the account is bound to (issuer, subject) and signed in, or nothing changes.
//!
//! Accounts are found by (issuer, subject) only. The email claim is used to bind an account the
//! first time, and only when that cannot hand someone else's account to the provider: the email
//! is verified (or the provider trusted), the provider serves its domain, and either the person
//! proved the account already (signed in here) or the account has nothing to take over yet (no
//! password, no other binding, no accepted membership outside the provider's organization).

use diesel::prelude::*;

use super::Federation;
use super::providers;
use super::upstream::{self, Identity, Problem};
use crate::db::models::{IdpBinding, IdpProvider, IdpRequest, Invitation, User};
use crate::db::schema::{idp_bindings, idp_requests, invitations, memberships, users};
use crate::db::{self, DbConnection, Pool};
use crate::domain::token::hash_token;
use crate::domain::{Email, InvitationStatus, MembershipState};
use crate::services::audit::{self, action};
use crate::services::redeem::{self, LinkState};
use crate::services::{Actor, ServiceError, accounts, rate};

/// How long a request waits for the provider's answer.
pub const REQUEST_TTL: time::Duration = time::Duration::minutes(10);
/// Longest `state`, `code` or `error` read from the provider's answer.
const MAX_PARAM_BYTES: usize = 2048;

/// What the sign-in is for.
#[derive(Debug, Clone)]
pub enum Purpose {
    /// Sign in, then go to `next` (a local path).
    SignIn { next: String },
    /// Redeem the invitation of this link token.
    Redeem { token: String },
}

/// Why a sign-in through a provider stopped. Nothing was changed when one is returned.
#[derive(Debug)]
pub enum Failure {
    /// The provider was removed, or no longer serves the address's domain.
    ProviderGone,
    /// The invitation can no longer be accepted.
    LinkDead,
    /// The provider could not be used (unreachable, refused the code, a token that fails checks).
    Upstream(Problem),
    /// The answer's `state` is missing, unknown, used, expired or from another browser.
    StateRejected,
    /// The provider answered with an error (the person cancelled, or it refused).
    Cancelled { provider: String },
    /// The provider's account has another address than the invited one.
    EmailMismatch { provider: String, got: String, invited: String, retry: String },
    /// The provider does not say the address is verified (and is not trusted to).
    EmailUnverified { provider: String, email: String },
    /// The provider gave no address.
    NoEmail { provider: String },
    /// The provider does not serve the address's domain.
    NotServed { provider: String, email: String },
    /// No account has that address.
    NoAccount { provider: String, email: String },
    /// The account exists with its own way in: sign in with it first, then come back through
    /// the provider (`retry`) to link the two.
    NeedsPassword { provider: String, email: String, retry: String },
    /// This identity at the provider is bound to another account.
    AccountTaken { provider: String },
    /// Too many starts from this client address: retry after that many seconds.
    Throttled(u64),
    /// Something broke (the database).
    Internal(ServiceError),
}

impl From<diesel::result::Error> for Failure {
    fn from(e: diesel::result::Error) -> Self {
        Failure::Internal(e.into())
    }
}

impl From<ServiceError> for Failure {
    fn from(e: ServiceError) -> Self {
        Failure::Internal(e)
    }
}

impl From<db::Unavailable> for Failure {
    fn from(e: db::Unavailable) -> Self {
        Failure::Internal(e.into())
    }
}

/// A request sent on its way.
pub struct Started {
    /// The provider's authorization URL.
    pub redirect: String,
    /// The SHA-256 of the `state`: the browser's session keeps it, and only that browser may
    /// bring the answer back.
    pub state_hash: String,
}

/// Starts a sign-in through the provider `idp_id` for the client at `client_ip`. `again` asks
/// the provider to let the person choose another account.
pub async fn start(
    pool: &Pool,
    fed: &Federation,
    idp_id: &str,
    purpose: Purpose,
    hint: Option<String>,
    again: bool,
    client_ip: Option<&str>,
) -> Result<Started, Failure> {
    let id = crate::domain::clip(idp_id, 64).to_owned();
    let for_purpose = purpose.clone();
    let throttle_key = client_ip.filter(|_| fed.throttle).map(str::to_owned);
    let (provider, invitation_id, target, hint) = db::with_conn(pool, move |c| {
        if let Some(ip) = throttle_key
            && let Some(wait) = rate::take_idp_start(c, &ip)?
        {
            return Err(Failure::Throttled(wait));
        }
        let provider = providers::find(c, &id)?.ok_or(Failure::ProviderGone)?;
        match for_purpose {
            Purpose::SignIn { next } => {
                let hint = hint.and_then(|h| Email::parse(&h).ok()).map(|e| e.as_str().to_owned());
                Ok((provider, None, next, hint))
            }
            Purpose::Redeem { token } => {
                let LinkState::Valid(live) = redeem::inspect(c, &token)? else { return Err(Failure::LinkDead) };
                let invited = Email::parse(&live.invitation.email).map_err(|_| Failure::LinkDead)?;
                if live.org.id != provider.org_id || !providers::serves(c, &provider.id, invited.domain())? {
                    return Err(Failure::ProviderGone);
                }
                Ok((
                    provider,
                    Some(live.invitation.id.clone()),
                    format!("/redeem/{token}/consent"),
                    Some(invited.as_str().to_owned()),
                ))
            }
        }
    })
    .await?;
    let auth = upstream::authorize(fed, &provider, hint.as_deref(), again).await.map_err(Failure::Upstream)?;
    let state_hash = hash_token(&auth.state);
    let now = db::now();
    let row = IdpRequest {
        state_hash: state_hash.clone(),
        idp_id: provider.id.clone(),
        nonce: auth.nonce,
        pkce_verifier: auth.pkce_verifier,
        purpose: match purpose {
            Purpose::SignIn { .. } => "signin".into(),
            Purpose::Redeem { .. } => "redeem".into(),
        },
        invitation_id,
        // The redemption path holds the link's token: sealed like the client secrets.
        target: fed.key.seal(&target).map_err(|e| Failure::Internal(e.into()))?,
        expires_at: now + REQUEST_TTL,
        created_at: now,
    };
    db::with_conn(pool, move |c| {
        db::write_tx(c, |c| -> Result<(), Failure> {
            // Requests nobody came back for go when new ones come.
            diesel::delete(idp_requests::table.filter(idp_requests::expires_at.le(now))).execute(c)?;
            diesel::insert_into(idp_requests::table).values(&row).execute(c)?;
            Ok(())
        })
    })
    .await?;
    Ok(Started { redirect: auth.url, state_hash })
}

/// The provider's answer at the callback, as received.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct Answer {
    pub state: Option<String>,
    pub code: Option<String>,
    pub error: Option<String>,
    /// RFC 9207: the issuer of the answer, when the provider says it.
    pub iss: Option<String>,
}

/// A finished sign-in: whom to sign in and where to go.
pub struct Finished {
    pub user: User,
    pub target: String,
    /// The provider's ID token says a second factor was passed there (`amr`: `mfa` or `otp`).
    pub strong: bool,
}

/// Records a refused answer (bad state, a token that fails verification); past a number per
/// client address and window, refusals are no longer recorded (a flood must not fill the log).
async fn refuse(pool: &Pool, fed: &Federation, actor: &Actor, org_id: Option<String>, reason: &str) -> Failure {
    let (actor, reason, throttle) = (actor.clone(), reason.to_owned(), fed.throttle);
    let recorded = db::with_conn(pool, move |c| {
        if throttle
            && let Some(ip) = &actor.ip
            && rate::take_idp_refusal(c, ip)?.is_some()
        {
            return Ok(());
        }
        audit::record(c, &actor, org_id.as_deref(), action::IDP_REFUSED, None, Some(&reason))
            .map_err(ServiceError::from)
    })
    .await;
    match recorded {
        Ok(()) => Failure::StateRejected,
        Err(e) => Failure::Internal(e),
    }
}

/// Takes the provider's answer: the request comes back once (from the browser that started it),
/// the code is exchanged, the ID token verified, and the account bound and signed in, or nothing
/// changes. `browser_state` is the state hash the browser's session kept at the start;
/// `signed_in` the account signed in on that browser, if any.
pub async fn finish(
    pool: &Pool,
    fed: &Federation,
    answer: Answer,
    browser_state: Option<String>,
    signed_in: Option<String>,
    actor: &Actor,
) -> Result<Finished, Failure> {
    let Some(state) = answer.state.as_deref().filter(|s| !s.is_empty() && s.len() <= MAX_PARAM_BYTES) else {
        return Err(refuse(pool, fed, actor, None, "state missing").await);
    };
    let state_hash = hash_token(state);
    if browser_state.as_deref() != Some(state_hash.as_str()) {
        return Err(refuse(pool, fed, actor, None, "state not started by this browser (mismatch or replay)").await);
    }
    let taken = {
        let h = state_hash.clone();
        db::with_conn(pool, move |c| take_request(c, &h)).await?
    };
    let Some(request) = taken else {
        return Err(refuse(pool, fed, actor, None, "state unknown, already used or expired").await);
    };
    let id = request.idp_id.clone();
    let provider = db::with_conn(pool, move |c| providers::find(c, &id).map_err(Failure::from))
        .await?
        .ok_or(Failure::ProviderGone)?;
    // RFC 9207 (mix-up): an answer that names another issuer than the request's provider. Entra
    // names the tenant's issuer here, which the ID token check covers.
    if let Some(iss) = &answer.iss
        && providers::Kind::parse(&provider.kind) != providers::Kind::Entra
        && iss.trim_end_matches('/') != provider.issuer
    {
        let failure = refuse(pool, fed, actor, Some(provider.org_id.clone()), "answer from another issuer (iss)").await;
        return Err(match failure {
            Failure::StateRejected => Failure::Upstream(Problem::TokenRejected),
            other => other,
        });
    }
    if answer.error.is_some() {
        return Err(Failure::Cancelled { provider: provider.name });
    }
    let Some(code) = answer.code.as_deref().filter(|c| !c.is_empty() && c.len() <= MAX_PARAM_BYTES) else {
        return Err(Failure::Cancelled { provider: provider.name });
    };
    let identity = match upstream::exchange(fed, &provider, code, &request.pkce_verifier, &request.nonce).await {
        Ok(identity) => identity,
        Err(Problem::TokenRejected) => {
            let failure = refuse(
                pool,
                fed,
                actor,
                Some(provider.org_id.clone()),
                "ID token rejected (signature, iss, aud, exp or nonce)",
            )
            .await;
            return Err(match failure {
                Failure::StateRejected => Failure::Upstream(Problem::TokenRejected),
                other => other,
            });
        }
        Err(problem) => return Err(Failure::Upstream(problem)),
    };
    let target = fed.key.open(&request.target).ok_or(Failure::StateRejected)?;
    let actor = actor.clone();
    db::with_conn(pool, move |c| {
        db::write_tx(c, |c| settle(c, &provider.id, &request, &identity, &target, signed_in.as_deref(), &actor))
    })
    .await
}

/// Deletes and returns the request of `state_hash`, if it is there and not expired: of two
/// answers carrying the same state, one gets it.
fn take_request(conn: &mut DbConnection, state_hash: &str) -> Result<Option<IdpRequest>, Failure> {
    db::write_tx(conn, |conn| {
        let row: Option<IdpRequest> =
            idp_requests::table.find(state_hash).select(IdpRequest::as_select()).first(conn).optional()?;
        let deleted = diesel::delete(idp_requests::table.find(state_hash)).execute(conn)?;
        Ok(row.filter(|r| deleted == 1 && r.expires_at > db::now()))
    })
}

/// The decision, in the caller's transaction: any `Err` leaves the database as it was.
fn settle(
    conn: &mut DbConnection,
    idp_id: &str,
    request: &IdpRequest,
    identity: &Identity,
    target: &str,
    signed_in: Option<&str>,
    actor: &Actor,
) -> Result<Finished, Failure> {
    // Looked up again: the provider may have been removed while the person was away.
    let provider = providers::find(conn, idp_id)?.ok_or(Failure::ProviderGone)?;
    let bound: Option<String> = idp_bindings::table
        .find((&identity.issuer, &identity.subject))
        .select(idp_bindings::user_id)
        .first(conn)
        .optional()?;
    let user = if request.purpose == "redeem" {
        redemption_account(conn, &provider, request, identity, target, bound.as_deref())?
    } else if let Some(user_id) = &bound {
        accounts::find_by_id(conn, user_id)?.ok_or(Failure::ProviderGone)?
    } else {
        let email = checked_email(conn, &provider, identity)?;
        let Some(user) = accounts::find_by_email(conn, &email)? else {
            return Err(Failure::NoAccount { provider: provider.name, email: email.as_str().to_owned() });
        };
        let retry = format!(
            "/signin?next={}",
            url::form_urlencoded::byte_serialize(
                super::start_url(&provider.id, &email, super::IdpPurpose::SignIn { next: Some(target) }).as_bytes()
            )
            .collect::<String>()
        );
        if !may_bind(conn, &user, &provider, signed_in)? {
            return Err(Failure::NeedsPassword { provider: provider.name, email: email.as_str().to_owned(), retry });
        }
        user
    };
    if bound.is_none() {
        bind(conn, &provider, identity, &user, actor)?;
    }
    let mut actor = actor.clone();
    actor.user_id = Some(user.id.clone());
    audit::record(
        conn,
        &actor,
        None,
        action::SIGNIN_SUCCEEDED,
        Some(&user.id),
        Some(&format!("idp: {}", provider.name)),
    )?;
    let user = accounts::find_by_id(conn, &user.id)?.ok_or(Failure::ProviderGone)?;
    Ok(Finished { user, target: target.to_owned(), strong: identity.strong })
}

/// The address the provider vouches for: present, verified (or trusted), of a domain it serves.
fn checked_email(conn: &mut DbConnection, provider: &IdpProvider, identity: &Identity) -> Result<Email, Failure> {
    let raw = identity.email.as_deref().unwrap_or("");
    let Ok(email) = Email::parse(crate::domain::clip(raw, 320)) else {
        return Err(Failure::NoEmail { provider: provider.name.clone() });
    };
    if identity.email_verified != Some(true) && !provider.trust_email {
        return Err(Failure::EmailUnverified { provider: provider.name.clone(), email: email.as_str().to_owned() });
    }
    if !providers::serves(conn, &provider.id, email.domain())? {
        return Err(Failure::NotServed { provider: provider.name.clone(), email: email.as_str().to_owned() });
    }
    Ok(email)
}

/// The invited account, once the provider's identity is shown to be the invited person's.
fn redemption_account(
    conn: &mut DbConnection,
    provider: &IdpProvider,
    request: &IdpRequest,
    identity: &Identity,
    target: &str,
    bound: Option<&str>,
) -> Result<User, Failure> {
    let inv: Invitation = match &request.invitation_id {
        Some(id) => invitations::table.find(id).select(Invitation::as_select()).first(conn).optional()?,
        None => None,
    }
    .filter(|i| i.status == InvitationStatus::Pending && i.expires_at > db::now() && i.org_id == provider.org_id)
    .ok_or(Failure::LinkDead)?;
    let token = target.strip_prefix("/redeem/").and_then(|t| t.strip_suffix("/consent")).unwrap_or_default();
    let got = identity.email.as_deref().map(|e| Email::parse(crate::domain::clip(e, 320)));
    match got {
        None => return Err(Failure::NoEmail { provider: provider.name.clone() }),
        Some(Ok(e)) if e.as_str() == inv.email => {}
        Some(other) => {
            return Err(Failure::EmailMismatch {
                provider: provider.name.clone(),
                got: match other {
                    Ok(e) => e.as_str().to_owned(),
                    Err(_) => crate::domain::clip(identity.email.as_deref().unwrap_or(""), 320).to_owned(),
                },
                invited: inv.email.clone(),
                retry: format!("/redeem/{token}/oidc/{}?again=1", provider.id),
            });
        }
    }
    let email = checked_email(conn, provider, identity).map_err(|f| match f {
        Failure::NotServed { .. } => Failure::ProviderGone,
        other => other,
    })?;
    let user = accounts::find_by_email(conn, &email)?.ok_or(Failure::LinkDead)?;
    match bound {
        Some(owner) if owner != user.id => Err(Failure::AccountTaken { provider: provider.name.clone() }),
        Some(_) => Ok(user),
        None if may_bind(conn, &user, provider, None)? => Ok(user),
        None => Err(Failure::NeedsPassword {
            provider: provider.name.clone(),
            email: email.as_str().to_owned(),
            retry: format!("/redeem/{token}"),
        }),
    }
}

/// May `user` be bound to the provider on the strength of a verified email alone? Yes when the
/// person is signed in as that account on this browser, or when the account has nothing anyone
/// could take over: no password, no binding, no accepted membership outside the provider's
/// organization (whose admin configured the provider).
fn may_bind(
    conn: &mut DbConnection,
    user: &User,
    provider: &IdpProvider,
    signed_in: Option<&str>,
) -> Result<bool, Failure> {
    if signed_in == Some(user.id.as_str()) {
        return Ok(true);
    }
    if user.password_hash.is_some() {
        return Ok(false);
    }
    let bindings: i64 = idp_bindings::table.filter(idp_bindings::user_id.eq(&user.id)).count().get_result(conn)?;
    let elsewhere: i64 = memberships::table
        .filter(memberships::user_id.eq(&user.id))
        .filter(memberships::org_id.ne(&provider.org_id))
        .filter(memberships::state.eq(MembershipState::Accepted))
        .filter(memberships::removed_at.is_null())
        .count()
        .get_result(conn)?;
    Ok(bindings == 0 && elsewhere == 0)
}

/// Binds the account to (issuer, subject) and takes the address as verified; a first-time guest
/// takes the provider's name for the account.
fn bind(
    conn: &mut DbConnection,
    provider: &IdpProvider,
    identity: &Identity,
    user: &User,
    actor: &Actor,
) -> Result<(), Failure> {
    diesel::insert_into(idp_bindings::table)
        .values(&IdpBinding {
            issuer: identity.issuer.clone(),
            subject: identity.subject.clone(),
            user_id: user.id.clone(),
            provider_name: provider.name.clone(),
            created_at: db::now(),
        })
        .execute(conn)?;
    diesel::update(users::table.find(&user.id)).set(users::email_verified.eq(true)).execute(conn)?;
    let name = identity
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty() && n.chars().count() <= 200 && !crate::domain::has_any_control_chars(n));
    if let (None, Some(name)) = (&user.password_hash, name) {
        diesel::update(users::table.find(&user.id))
            .set((users::display_name.eq(name), users::name_search.eq(accounts::name_search(name))))
            .execute(conn)?;
    }
    let mut actor = actor.clone();
    actor.user_id = Some(user.id.clone());
    let detail = format!("{} ({})", provider.name, identity.issuer);
    audit::record(conn, &actor, Some(&provider.org_id), action::IDP_BOUND, Some(&user.id), Some(&detail))?;
    Ok(())
}
