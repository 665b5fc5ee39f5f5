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
pub mod invitations;
pub mod lifecycle;
pub mod orgs;
pub mod policy;
pub mod profile;
pub mod redeem;
pub mod sessions;
pub mod users;

use crate::error::AppError;

/// Field-level validation problems: (field name, catalogue key of the message).
#[derive(Debug, Default, Clone)]
pub struct FieldErrors(pub Vec<(&'static str, &'static str)>);

impl FieldErrors {
    /// Adds a problem on `field`.
    pub fn add(&mut self, field: &'static str, key: &'static str) {
        self.0.push((field, key));
    }

    /// True when nothing was added.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The message key for `field`, if it has a problem.
    pub fn get(&self, field: &str) -> Option<&'static str> {
        self.0.iter().find(|(f, _)| *f == field).map(|(_, k)| *k)
    }
}

/// What a use case can refuse.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("invalid input")]
    Invalid(FieldErrors),
    #[error("not found")]
    NotFound,
    #[error("forbidden")]
    Forbidden,
    #[error("not in a state that allows this")]
    WrongState,
    #[error(transparent)]
    Db(#[from] diesel::result::Error),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl ServiceError {
    /// A single field problem.
    pub fn field(field: &'static str, key: &'static str) -> ServiceError {
        ServiceError::Invalid(FieldErrors(vec![(field, key)]))
    }
}

impl From<ServiceError> for AppError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Invalid(_) | ServiceError::WrongState => AppError::BadRequest(e.to_string()),
            ServiceError::NotFound => AppError::NotFound,
            ServiceError::Forbidden => AppError::Forbidden,
            ServiceError::Db(d) => d.into(),
            ServiceError::Other(o) => AppError::Internal(o),
        }
    }
}

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
