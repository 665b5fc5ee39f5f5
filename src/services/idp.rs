//! Identity providers: federation with a guest's home OpenID Connect provider (design §10).
//!
//! INTERFACE CONTRACT between the identifier-first sign-in (which calls these functions) and the
//! federation work (which implements them). The signatures are fixed; the bodies below are the
//! placeholder the federation branch replaces before this lands.

use crate::db::DbConnection;
use crate::domain::email::Email;
use crate::error::ServiceError;

/// Why the guest is being sent to a provider: it decides where the provider's answer leads.
#[derive(Debug, Clone, Copy)]
pub enum IdpPurpose<'a> {
    /// `/signin`, then on to `next` (already judged local by the caller), if any.
    SignIn { next: Option<&'a str> },
    /// Redeeming the invitation whose link token is `token`.
    Redeem { token: &'a str },
}

/// One way in through a provider, ready to render as a link or to redirect to.
#[derive(Debug, Clone)]
pub struct IdpChoice {
    /// The provider's display name ("Contoso", "Google").
    pub name: String,
    /// Where to send the browser (a local path, e.g. `/auth/oidc/start?...`).
    pub start_url: String,
}

/// The providers configured for `email`'s domain: in the organization `org_id` when given (a
/// redemption), otherwise in any organization (the global `/signin`). Decided from the domain
/// alone, so the answer never tells whether an account exists.
pub fn choices_for(
    _conn: &mut DbConnection,
    _email: &Email,
    _org_id: Option<&str>,
    _purpose: IdpPurpose<'_>,
) -> Result<Vec<IdpChoice>, ServiceError> {
    Ok(Vec::new())
}

/// The name of the provider an account is bound to, if it signs in through one (such an account
/// has no Vestibule password: "forgot password" tells it to sign in there).
pub fn bound_provider(_conn: &mut DbConnection, _user_id: &str) -> Result<Option<String>, ServiceError> {
    Ok(None)
}
