//! Redemption: what a guest may do with an invitation link, and the final, single-use consent.

use diesel::prelude::*;
use url::Url;

use crate::db::models::{Invitation, Organization, User};
use crate::db::schema::{invitations, memberships, organizations, users};
use crate::db::{self, DbConnection};
use crate::domain::UserType;
use crate::domain::token::{eight_digit_code, hash_token};
use crate::domain::{Email, InvitationStatus, MembershipState};
use crate::i18n::Lang;
use crate::mail::{self, messages};
use crate::services::audit::{self, action};
use crate::services::{Actor, ServiceError, accounts, invitations as invites};

/// A usable invitation with everything the flow shows.
pub struct LiveInvitation {
    pub invitation: Invitation,
    pub org: Organization,
    /// The inviter, when known.
    pub inviter: Option<User>,
    /// The invited account (without a password until the guest registers).
    pub guest: User,
}

/// What a link turned out to be.
pub enum LinkState {
    /// Usable.
    Valid(Box<LiveInvitation>),
    /// A real link that can no longer be used (expired, revoked, replaced); the org may be named.
    Dead { org_name: String },
    /// A link whose invitation was accepted: the guest is back from the email, to get in.
    Accepted { org_name: String, org_slug: String },
    /// A pending invitation the org's domain policy no longer allows.
    Refused { org_name: String },
    /// Not a link of ours.
    Unknown,
}

diesel::alias!(users as inviter_account: InviterAccount, users as guest_account: GuestAccount);

/// Looks a token up without changing anything (GET and HEAD must be harmless): one query, the
/// invitation by its token hash joined to its organization, its inviter and the invited account.
pub fn inspect(conn: &mut DbConnection, token: &str) -> QueryResult<LinkState> {
    if !crate::domain::token::looks_like_token(token) {
        return Ok(LinkState::Unknown);
    }
    let found: Option<(Invitation, Organization, Option<User>, Option<User>)> = invitations::table
        .inner_join(organizations::table)
        .left_join(inviter_account.on(invitations::invited_by.eq(inviter_account.field(users::id).nullable())))
        .left_join(guest_account.on(guest_account.field(users::email).eq(invitations::email)))
        .filter(invitations::token_hash.eq(hash_token(token)))
        .select((
            Invitation::as_select(),
            Organization::as_select(),
            inviter_account.fields(users::all_columns).nullable(),
            guest_account.fields(users::all_columns).nullable(),
        ))
        .first(conn)
        .optional()?;
    let Some((invitation, org, inviter, guest)) = found else {
        return Ok(LinkState::Unknown);
    };
    if invitation.status == InvitationStatus::Accepted {
        return Ok(LinkState::Accepted { org_name: org.name, org_slug: org.slug });
    }
    if invitation.status != InvitationStatus::Pending || invitation.expires_at <= db::now() {
        return Ok(LinkState::Dead { org_name: org.name });
    }
    if let Ok(email) = Email::parse(&invitation.email)
        && crate::services::policy::check_domain(&org, email.domain()).is_err()
    {
        return Ok(LinkState::Refused { org_name: org.name });
    }
    // An invitation always has its account (it is created with it).
    let guest = guest.ok_or(diesel::result::Error::NotFound)?;
    Ok(LinkState::Valid(Box::new(LiveInvitation { invitation, org, inviter, guest })))
}

/// Refuses (`WrongState`) unless `invitation` is still pending and unexpired, read in the
/// caller's transaction.
fn ensure_pending(conn: &mut DbConnection, invitation: &Invitation) -> Result<(), ServiceError> {
    let still_pending: i64 = invitations::table
        .filter(invitations::id.eq(&invitation.id))
        .filter(invitations::status.eq(InvitationStatus::Pending))
        .filter(invitations::expires_at.gt(db::now()))
        .count()
        .get_result(conn)?;
    if still_pending != 1 {
        return Err(ServiceError::WrongState);
    }
    Ok(())
}

/// Audits the account the guest just created (as the guest) and reads it back.
fn account_created(
    conn: &mut DbConnection,
    invitation: &Invitation,
    guest: &User,
    actor: &Actor,
    detail: &str,
) -> Result<User, ServiceError> {
    let mut actor = actor.clone();
    actor.user_id = Some(guest.id.clone());
    audit::record(conn, &actor, Some(&invitation.org_id), action::ACCOUNT_CREATED, Some(&guest.id), Some(detail))?;
    accounts::find_by_id(conn, &guest.id)?.ok_or(ServiceError::NotFound)
}

/// Creates the guest's account on the spot (first-time guest). Refused when the account
/// already has a password or the invitation is no longer pending.
pub fn register(
    conn: &mut DbConnection,
    invitation: &Invitation,
    guest: &User,
    display_name: &str,
    password_hash: &str,
    lang: Lang,
    actor: &Actor,
) -> Result<User, ServiceError> {
    db::write_tx(conn, |conn| {
        ensure_pending(conn, invitation)?;
        if !accounts::set_initial_password(conn, &guest.id, display_name, password_hash, Some(lang.code()))? {
            return Err(ServiceError::WrongState);
        }
        account_created(conn, invitation, guest, actor, &guest.email)
    })
}

/// Creates a passwordless account on the invited address (a first-time guest who proved the
/// mailbox with a code): no password, the address verified. Refused when the account was
/// claimed meanwhile or the invitation is no longer pending.
pub fn register_passwordless(
    conn: &mut DbConnection,
    invitation: &Invitation,
    guest: &User,
    display_name: &str,
    lang: Lang,
    actor: &Actor,
) -> Result<User, ServiceError> {
    db::write_tx(conn, |conn| {
        ensure_pending(conn, invitation)?;
        if !accounts::claim_passwordless(conn, &guest.id, display_name, Some(lang.code()))? {
            return Err(ServiceError::WrongState);
        }
        let detail = serde_json::json!({ "email": guest.email, "passwordless": true }).to_string();
        account_created(conn, invitation, guest, actor, &detail)
    })
}

/// How long a one-time code stays valid.
pub const CODE_TTL: time::Duration = time::Duration::minutes(10);
/// Wrong guesses allowed per code.
pub const CODE_ATTEMPTS: i64 = 5;

/// Emails a fresh eight-digit code to the invited address: to prove the mailbox of a disclosed
/// link, or to redeem without a password (when the organization allows codes).
pub fn send_code(
    conn: &mut DbConnection,
    invitation: &Invitation,
    org: &Organization,
    public_url: &Url,
    lang: Lang,
    actor: &Actor,
) -> Result<(), ServiceError> {
    let code = eight_digit_code();
    db::write_tx(conn, |conn| {
        diesel::update(invitations::table.find(&invitation.id))
            .set((
                invitations::code_hash.eq(Some(hash_token(&format!("{}:{code}", invitation.id)))),
                invitations::code_expires_at.eq(Some(db::now() + CODE_TTL)),
                invitations::code_attempts.eq(0),
            ))
            .execute(conn)?;
        let mail = messages::code(org, invitation, &code, lang)?;
        mail::enqueue(conn, mail, public_url)?;
        audit::record(conn, actor, Some(&org.id), action::CODE_SENT, Some(&invitation.id), Some("redeem"))?;
        Ok(())
    })
}

/// The outcome of entering a code.
#[derive(Debug, PartialEq, Eq)]
pub enum CodeCheck {
    Correct,
    Wrong,
    /// Expired, never sent, or too many wrong guesses: a new code is needed.
    NeedNewCode,
}

/// Checks a typed code; each guess counts, and the fifth wrong one kills the code.
///
/// The guess is first counted by one conditional UPDATE (`code_attempts + 1` where fewer than
/// [`CODE_ATTEMPTS`] were made and the code is live): the database serializes concurrent
/// guesses on that row, so however many arrive at once, at most five are ever compared with
/// the code.
pub fn check_code(
    conn: &mut DbConnection,
    invitation_id: &str,
    typed: &str,
    actor: &Actor,
) -> Result<CodeCheck, ServiceError> {
    db::write_tx(conn, |conn| {
        let counted = diesel::update(
            invitations::table
                .find(invitation_id)
                .filter(invitations::code_hash.is_not_null())
                .filter(invitations::code_expires_at.gt(db::now()))
                .filter(invitations::code_attempts.lt(CODE_ATTEMPTS)),
        )
        .set(invitations::code_attempts.eq(invitations::code_attempts + 1))
        .execute(conn)?;
        if counted != 1 {
            return Ok(CodeCheck::NeedNewCode);
        }
        let inv: Invitation = invitations::table.find(invitation_id).select(Invitation::as_select()).first(conn)?;
        let Some(hash) = inv.code_hash.as_deref() else {
            return Ok(CodeCheck::NeedNewCode);
        };
        let typed: String = typed.chars().filter(|c| c.is_ascii_digit()).collect();
        if hash_token(&format!("{}:{typed}", inv.id)) == hash {
            // Consumed once: a concurrent twin with the same right code finds it gone.
            let consumed = diesel::update(invitations::table.find(&inv.id).filter(invitations::code_hash.eq(hash)))
                .set((
                    invitations::code_hash.eq(None::<String>),
                    invitations::code_expires_at.eq(None::<time::PrimitiveDateTime>),
                ))
                .execute(conn)?;
            return Ok(if consumed == 1 { CodeCheck::Correct } else { CodeCheck::NeedNewCode });
        }
        let detail = serde_json::json!({ "for": "redeem", "attempt": inv.code_attempts }).to_string();
        audit::record(conn, actor, Some(&inv.org_id), action::CODE_FAILED, Some(&inv.id), Some(&detail))?;
        Ok(if inv.code_attempts >= CODE_ATTEMPTS { CodeCheck::NeedNewCode } else { CodeCheck::Wrong })
    })
}

/// The result of accepting.
pub struct Accepted {
    pub org: Organization,
    pub redirect_url: Option<String>,
}

/// Accepts the invitation as `user`: one conditional UPDATE consumes the token (pending, not
/// expired, not revoked, hash matches, invited address is the user's), and in the same
/// transaction the membership becomes Accepted and the audit events are written. Of any
/// number of concurrent attempts exactly one gets `Ok`; the rest get `WrongState`.
pub fn accept(conn: &mut DbConnection, token: &str, user: &User, actor: &Actor) -> Result<Accepted, ServiceError> {
    accept_hashed(conn, &hash_token(token), user, actor)
}

/// [`accept`] by the stored hash of the token: the consent page shown when a pending guest
/// signs in through an app (the guest has no link then, only their signed-in account).
pub fn accept_hashed(
    conn: &mut DbConnection,
    token_hash: &str,
    user: &User,
    actor: &Actor,
) -> Result<Accepted, ServiceError> {
    let email = Email::parse(&user.email).map_err(|_| ServiceError::Forbidden)?;
    db::write_tx(conn, |conn| {
        let now = db::now();
        // The domain policy may have changed since the invitation was sent: check it again.
        let pending: Option<Invitation> = invitations::table
            .filter(invitations::token_hash.eq(token_hash))
            .select(Invitation::as_select())
            .first(conn)
            .optional()?;
        if let Some(inv) = &pending {
            let org: Organization =
                organizations::table.find(&inv.org_id).select(Organization::as_select()).first(conn)?;
            if crate::services::policy::check_domain(&org, email.domain()).is_err() {
                return Err(ServiceError::Forbidden);
            }
        }
        let consumed = diesel::update(
            invitations::table
                .filter(invitations::token_hash.eq(token_hash))
                .filter(invitations::status.eq(InvitationStatus::Pending))
                .filter(invitations::expires_at.gt(now))
                .filter(invitations::email.eq(email.as_str())),
        )
        .set((invitations::status.eq(InvitationStatus::Accepted), invitations::accepted_at.eq(Some(now))))
        .execute(conn)?;
        if consumed != 1 {
            return Err(ServiceError::WrongState);
        }
        let inv: Invitation = invitations::table
            .filter(invitations::token_hash.eq(token_hash))
            .select(Invitation::as_select())
            .first(conn)?;
        diesel::update(memberships::table.find(&inv.membership_id))
            .set((
                memberships::state.eq(MembershipState::Accepted),
                memberships::accepted_at.eq(Some(now)),
                memberships::user_type.eq(&inv.user_type),
                memberships::removed_at.eq(None::<time::PrimitiveDateTime>),
            ))
            .execute(conn)?;
        diesel::update(users::table.find(&user.id)).set(users::email_verified.eq(true)).execute(conn)?;
        invites::apply_targets(conn, &inv)?;
        let org: Organization = organizations::table.find(&inv.org_id).select(Organization::as_select()).first(conn)?;
        audit::record(conn, actor, Some(&org.id), action::INVITATION_REDEEMED, Some(&inv.id), Some(&inv.email))?;
        audit::record(conn, actor, Some(&org.id), action::CONSENT_GIVEN, Some(&user.id), Some("name,email"))?;
        // Guest access ends N days after redemption when the org says so (kept if already set).
        if let Some(days) = org.guest_access_days.filter(|_| inv.user_type == UserType::Guest) {
            diesel::update(memberships::table.find(&inv.membership_id).filter(memberships::access_ends_at.is_null()))
                .set(memberships::access_ends_at.eq(Some(now + time::Duration::days(days))))
                .execute(conn)?;
        }
        let redirect_url = match (&inv.redirect_url, &inv.app_id) {
            (Some(url), _) => Some(url.clone()),
            (None, Some(app_id)) => crate::services::apps::find(conn, &org.id, app_id)?.map(|a| a.url),
            (None, None) => None,
        };
        Ok(Accepted { org, redirect_url })
    })
}
