//! "Forgot your password?" (design §10): a single-use link valid 30 minutes, the same answer
//! for every address, and on success every session of the account ends.
//!
//! Links are `one_time_links` rows of purpose [`link_purpose::PASSWORD_RESET`] (only the
//! SHA-256 of the token is stored). An account bound to an identity provider gets a mail
//! telling it to sign in there instead of a link.

use diesel::prelude::*;
use url::Url;

use crate::db::models::User;
use crate::db::schema::one_time_links;
use crate::db::{self, DbConnection};
use crate::domain::Email;
use crate::domain::token::{PlainToken, looks_like_token};
use crate::i18n::Lang;
use crate::mail;
use crate::services::audit::{self, action};
use crate::services::orgs::{self, link_purpose};
use crate::services::{Actor, ServiceError, accounts, idp, sessions};

/// How long a reset link stays valid.
pub const LINK_TTL: time::Duration = time::Duration::minutes(30);

/// Handles a request for `email`: mails a reset link to a registered account (or, for an
/// account bound to a provider, where to sign in), and does the same work for any other
/// address (a token is made and hashed) without mailing anything. The caller has taken the
/// throttles and answers the same whatever happens here.
pub fn request(
    conn: &mut DbConnection,
    email: &Email,
    lang: Lang,
    public_url: &Url,
    actor: &Actor,
) -> Result<(), ServiceError> {
    db::write_tx(conn, |conn| {
        let account = accounts::find_by_email(conn, email)?.filter(accounts::is_registered);
        let Some(user) = account else {
            // The same work as a real request: a token made and hashed.
            let _ = PlainToken::generate().hash();
            return Ok(());
        };
        let lang = user.language.as_deref().and_then(Lang::parse).unwrap_or(lang);
        let mut actor = actor.clone();
        actor.user_id = Some(user.id.clone());
        if let Some(provider) = idp::bound_provider(conn, &user.id)? {
            mail::enqueue(conn, mail::account::reset_at_provider(&user, &provider, public_url, lang)?, public_url)?;
            let detail = serde_json::json!({ "provider": provider }).to_string();
            audit::record(conn, &actor, None, action::PASSWORD_RESET_REQUESTED, Some(&user.id), Some(&detail))?;
            return Ok(());
        }
        // Only the newest link works: earlier unused ones are spent.
        diesel::update(
            one_time_links::table
                .filter(one_time_links::purpose.eq(link_purpose::PASSWORD_RESET))
                .filter(one_time_links::user_id.eq(&user.id))
                .filter(one_time_links::used_at.is_null()),
        )
        .set(one_time_links::used_at.eq(Some(db::now())))
        .execute(conn)?;
        let token = orgs::create_link(conn, link_purpose::PASSWORD_RESET, Some(&user.id), LINK_TTL)?;
        let url =
            public_url.join(&format!("/signin/reset/{}", token.expose())).map_err(anyhow::Error::from)?.to_string();
        mail::enqueue(conn, mail::account::password_reset(&user, &url, lang)?, public_url)?;
        audit::record(conn, &actor, None, action::PASSWORD_RESET_REQUESTED, Some(&user.id), None)?;
        Ok(())
    })
}

/// The account a live reset link is for, or None for a used, expired or unknown link.
pub fn account_of(conn: &mut DbConnection, token: &str) -> QueryResult<Option<User>> {
    if !looks_like_token(token) {
        return Ok(None);
    }
    let Some(link) = orgs::find_link(conn, link_purpose::PASSWORD_RESET, token)? else {
        return Ok(None);
    };
    match link.user_id {
        Some(id) => accounts::find_by_id(conn, &id),
        None => Ok(None),
    }
}

/// What completing a reset did.
#[derive(Debug)]
pub enum ResetOutcome {
    /// The password is set; this many sessions of the account ended.
    Done { user: User, sessions_ended: usize },
    /// The link was used, expired or unknown.
    DeadLink,
    /// The account signs in through this provider: no password is set.
    BoundToProvider(String),
}

/// Uses the link and sets the new password (already checked and hashed) in one transaction:
/// the link is consumed by one conditional UPDATE, every session of the account ends, the
/// "your password was changed" notice is queued and the change recorded.
pub fn complete(
    conn: &mut DbConnection,
    token: &str,
    new_hash: &str,
    public_url: &Url,
    lang: Lang,
    actor: &Actor,
) -> Result<ResetOutcome, ServiceError> {
    db::write_tx(conn, |conn| {
        let Some(user) = account_of(conn, token)? else {
            return Ok(ResetOutcome::DeadLink);
        };
        if let Some(provider) = idp::bound_provider(conn, &user.id)? {
            return Ok(ResetOutcome::BoundToProvider(provider));
        }
        if !orgs::consume_link(conn, link_purpose::PASSWORD_RESET, token)? {
            return Ok(ResetOutcome::DeadLink);
        }
        accounts::set_password(conn, &user.id, new_hash)?;
        let sessions_ended = sessions::end_all(conn, &user.id)?;
        let lang = user.language.as_deref().and_then(Lang::parse).unwrap_or(lang);
        let notice = mail::account::password_changed(&user, &db::now(), actor.ip.as_deref(), public_url, lang)?;
        mail::enqueue(conn, notice, public_url)?;
        let mut actor = actor.clone();
        actor.user_id = Some(user.id.clone());
        let detail = serde_json::json!({ "sessions_ended": sessions_ended }).to_string();
        audit::record(conn, &actor, None, action::PASSWORD_RESET_DONE, Some(&user.id), Some(&detail))?;
        let user = accounts::find_by_id(conn, &user.id)?.ok_or(ServiceError::NotFound)?;
        Ok(ResetOutcome::Done { user, sessions_ended })
    })
}
