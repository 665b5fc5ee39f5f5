//! Use cases. Each takes a connection (so callers can compose them in one transaction) and
//! returns typed errors; none knows about HTTP.

pub mod accounts;
pub mod api_keys;
pub mod apps;
pub mod audit;
pub mod audit_log;
pub mod bulk;
pub mod directory;
pub mod groups;
pub mod idp;
pub mod invitations;
pub mod lifecycle;
pub mod oidc;
pub mod orgs;
pub mod password_reset;
pub mod policy;
pub mod profile;
pub mod rate;
pub mod redeem;
pub mod second_factor;
pub mod sessions;
pub mod signin_codes;
pub mod users;

pub use crate::error::{FieldErrors, ServiceError};

/// Who did something, from where: recorded on audit events.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    /// The signed-in account, if any.
    pub user_id: Option<String>,
    /// The client address.
    pub ip: Option<String>,
    /// The request id.
    pub request_id: Option<String>,
}
