//! The OpenID Connect provider: every organization is an issuer, its apps are the clients.
//!
//! [`keys`] signs (through [`signer`], which keeps the private key parsed), [`clients`] knows the
//! apps that sign people in, [`access`] decides who may, and [`grants`] turns a decision into
//! codes and tokens.

pub mod access;
pub mod clients;
pub mod grants;
pub mod keys;
pub mod signer;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// The provider's in-memory state of one instance: the keys and the documents that are the
/// same for every request (discovery), so that those are served without the database.
#[derive(Default)]
pub struct Provider {
    /// The signing keys and the JWKS.
    pub keys: keys::Keyring,
    /// Rendered discovery documents by org slug (only of organizations that exist).
    discovery: RwLock<HashMap<String, Arc<str>>>,
}

impl Provider {
    /// A provider whose keys are read again from the database after `reload_every`.
    pub fn new(reload_every: std::time::Duration) -> Provider {
        Provider { keys: keys::Keyring::new(reload_every), discovery: RwLock::default() }
    }

    /// The cached discovery document of an organization.
    pub fn discovery(&self, slug: &str) -> Option<Arc<str>> {
        self.discovery.read().ok()?.get(slug).cloned()
    }

    /// Remembers the discovery document of an organization.
    pub fn put_discovery(&self, slug: &str, doc: Arc<str>) {
        if let Ok(mut map) = self.discovery.write() {
            map.insert(slug.to_owned(), doc);
        }
    }
}

/// The issuer of an organization: `{public URL}/o/{slug}`.
pub fn issuer(public_base: &str, slug: &str) -> String {
    format!("{}/o/{slug}", public_base.trim_end_matches('/'))
}

/// The discovery document of an issuer (OpenID Connect Discovery 1.0 §3, RFC 8414).
pub fn discovery_document(issuer: &str) -> serde_json::Value {
    use crate::domain::oidc::{SUPPORTED_CLAIMS, SUPPORTED_SCOPES};
    serde_json::json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/oidc/authorize"),
        "token_endpoint": format!("{issuer}/oidc/token"),
        "userinfo_endpoint": format!("{issuer}/oidc/userinfo"),
        "jwks_uri": format!("{issuer}/oidc/jwks"),
        "end_session_endpoint": format!("{issuer}/oidc/end_session"),
        "revocation_endpoint": format!("{issuer}/oidc/revoke"),
        "scopes_supported": SUPPORTED_SCOPES,
        "claims_supported": SUPPORTED_CLAIMS,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "code_challenge_methods_supported": ["S256"],
        "prompt_values_supported": ["none", "login", "consent"],
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "authorization_response_iss_parameter_supported": true,
        "frontchannel_logout_supported": false,
        "backchannel_logout_supported": false,
    })
}
