//! Identity providers: federation with a guest's home OpenID Connect provider (design §10).
//!
//! [`providers`] keeps each organization's providers (checked by discovery when saved, secrets
//! sealed by [`secret`]); [`upstream`] talks to a provider (discovery, the authorization URL,
//! the code exchange and the ID token's verification, all through the `openidconnect` crate);
//! [`flow`] keeps the requests on their way (in the database, single use) and decides what a
//! verified answer may do: bind an account to (issuer, subject), sign it in, or refuse.
//!
//! The two functions at the top are the interface the identifier-first sign-in calls.

pub mod flow;
pub mod providers;
pub mod secret;
pub mod upstream;

use diesel::prelude::*;

use crate::db::DbConnection;
use crate::db::schema::{idp_bindings, idp_domains, idp_providers, organizations};
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
    conn: &mut DbConnection,
    email: &Email,
    org_id: Option<&str>,
    purpose: IdpPurpose<'_>,
) -> Result<Vec<IdpChoice>, ServiceError> {
    let mut query = idp_providers::table
        .inner_join(idp_domains::table)
        .inner_join(organizations::table)
        .filter(idp_domains::domain.eq(email.domain()))
        .select((idp_providers::id, idp_providers::name, organizations::name))
        .order((organizations::name.asc(), idp_providers::name.asc()))
        .into_boxed();
    if let Some(org_id) = org_id {
        query = query.filter(idp_providers::org_id.eq(org_id.to_owned()));
    }
    let rows: Vec<(String, String, String)> = query.load(conn)?;
    let several = rows.len() > 1;
    Ok(rows
        .into_iter()
        .map(|(id, name, org_name)| IdpChoice {
            // The same provider name in several organizations: say whose each one is.
            name: if several && org_id.is_none() { format!("{name} ({org_name})") } else { name },
            start_url: start_url(&id, email, purpose),
        })
        .collect())
}

/// The local path that starts a sign-in through the provider `idp_id`. A redemption's start is
/// under `/redeem/…`, whose paths the access log redacts (the link's token is in it).
pub fn start_url(idp_id: &str, email: &Email, purpose: IdpPurpose<'_>) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    match purpose {
        IdpPurpose::Redeem { token } => format!("/redeem/{token}/oidc/{idp_id}"),
        IdpPurpose::SignIn { next } => {
            let mut url = format!("/auth/oidc/start?idp={}&hint={}", enc(idp_id), enc(email.as_str()));
            if let Some(next) = next {
                url.push_str("&next=");
                url.push_str(&enc(next));
            }
            url
        }
    }
}

/// The name of the provider an account is bound to, if it signs in through one (such an account
/// has no Vestibule password: "forgot password" tells it to sign in there).
pub fn bound_provider(conn: &mut DbConnection, user_id: &str) -> Result<Option<String>, ServiceError> {
    Ok(idp_bindings::table
        .filter(idp_bindings::user_id.eq(user_id))
        .order(idp_bindings::created_at.asc())
        .select(idp_bindings::provider_name)
        .first(conn)
        .optional()?)
}

/// Forgets every binding of an account (an admin reset its redemption): whoever redeems again
/// proves who they are afresh.
pub fn clear_bindings(conn: &mut DbConnection, user_id: &str) -> QueryResult<usize> {
    diesel::delete(idp_bindings::table.filter(idp_bindings::user_id.eq(user_id))).execute(conn)
}

/// What every instance needs to federate: the HTTP client towards providers, the key that seals
/// their client secrets, and the one callback URL of the installation.
pub struct Federation {
    pub http: reqwest::Client,
    pub key: secret::SecretKey,
    /// `{VESTIBULE_PUBLIC_URL}/auth/oidc/callback`.
    pub callback_url: String,
    /// Count starts and audited refusals per client address (`services::rate`); on unless the
    /// installation turned throttling off.
    pub throttle: bool,
}

/// How long a connection to a provider may take to open.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);
/// How long one exchange with a provider may take in all.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(6);

/// Installs rustls' ring provider as the process default (once; later calls do nothing). Every
/// reqwest client of the process needs it, since reqwest is built without a provider of its own.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Federation {
    /// Builds the client (no redirects followed, short timeouts) from the installation's secret.
    pub fn new(installation_secret: &[u8], public_base: &str) -> anyhow::Result<Federation> {
        install_tls_provider();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("Vestibule/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Federation {
            http,
            key: secret::SecretKey::derive(installation_secret),
            callback_url: callback_url(public_base),
            throttle: true,
        })
    }
}

/// The redirect URI to register at every provider.
pub fn callback_url(public_base: &str) -> String {
    format!("{}/auth/oidc/callback", public_base.trim_end_matches('/'))
}
