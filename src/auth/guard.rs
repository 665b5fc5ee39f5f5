//! Extractors for the signed-in person.

use std::future::{Ready, ready};

use actix_session::{Session, SessionExt};
use actix_web::{FromRequest, HttpRequest, dev::Payload};
use serde::{Deserialize, Serialize};

use crate::error::AppError;

/// What the session remembers about the signed-in person.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionUser {
    /// Account id.
    pub id: String,
    /// Canonical, verified email.
    pub email: String,
    /// Display name.
    pub name: String,
}

const UID: &str = "uid";
const USER: &str = "user";

/// Reads the signed-in person from a session, if any.
pub fn current_user(session: &Session) -> Option<SessionUser> {
    session.get::<SessionUser>(USER).ok().flatten()
}

/// Signs `user` in: a new session id (no fixation), then the identity.
pub fn sign_in(session: &Session, user: &SessionUser) -> Result<(), AppError> {
    session.renew();
    session.insert(UID, &user.id).map_err(|e| AppError::Internal(anyhow::anyhow!("session: {e}")))?;
    session.insert(USER, user).map_err(|e| AppError::Internal(anyhow::anyhow!("session: {e}")))?;
    Ok(())
}

/// Updates what the session remembers about the signed-in person (after a profile change).
pub fn refresh_user(session: &Session, user: &SessionUser) -> Result<(), AppError> {
    session.insert(USER, user).map_err(|e| AppError::Internal(anyhow::anyhow!("session: {e}")))
}

/// Signs out: the row is deleted and the cookie removed.
pub fn sign_out(session: &Session) {
    session.purge();
}

/// A request from a signed-in person; anyone else is sent to the sign-in page.
#[derive(Debug, Clone)]
pub struct SignedIn(pub SessionUser);

impl FromRequest for SignedIn {
    type Error = AppError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let session = req.get_session();
        ready(match current_user(&session) {
            Some(u) => Ok(SignedIn(u)),
            None => {
                Err(AppError::SignInRequired(req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default()))
            }
        })
    }
}
