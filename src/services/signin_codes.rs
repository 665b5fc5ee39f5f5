//! One-time sign-in codes sent by email (design §10): 8 digits, valid 10 minutes, five
//! guesses, single use, only their hash stored.
//!
//! Every address asked for gets the same treatment: a row in `signin_codes`, a new code, the
//! same answer. Only an account that may use codes ([`accounts::may_use_codes`]) is mailed its
//! code; any other address gets a row whose hash matches no code (so the attempts counter,
//! expiry and answers behave the same), and nothing is mailed.

use diesel::prelude::*;
use url::Url;

use crate::db::models::{SigninCode, User};
use crate::db::schema::signin_codes;
use crate::db::{self, DbConnection};
use crate::domain::Email;
use crate::domain::token::{PlainToken, eight_digit_code, hash_token};
use crate::i18n::Lang;
use crate::mail;
use crate::services::audit::{self, action};
use crate::services::{Actor, ServiceError, accounts};

/// How long a sign-in code stays valid.
pub const CODE_TTL: time::Duration = time::Duration::minutes(10);
/// Guesses allowed per code.
pub const CODE_ATTEMPTS: i64 = 5;

fn code_hash(email: &Email, code: &str) -> String {
    hash_token(&format!("{}:{code}", email.as_str()))
}

/// The account `email` signs in to by code, if it exists and may use codes.
fn code_account(conn: &mut DbConnection, email: &Email) -> QueryResult<Option<User>> {
    let Some(user) = accounts::find_by_email(conn, email)? else {
        return Ok(None);
    };
    if accounts::is_registered(&user) && accounts::may_use_codes(conn, &user.id)? { Ok(Some(user)) } else { Ok(None) }
}

/// Starts a new code for `email`, replacing any earlier one; mails it when the address has an
/// account that may use codes. The caller has taken the send throttles.
pub fn send(
    conn: &mut DbConnection,
    email: &Email,
    lang: Lang,
    public_url: &Url,
    actor: &Actor,
) -> Result<(), ServiceError> {
    let code = eight_digit_code();
    db::write_tx(conn, |conn| {
        let now = db::now();
        // Dead codes of anyone go (clean-up without a cron job), and this address's old code.
        diesel::delete(signin_codes::table.filter(signin_codes::expires_at.lt(now))).execute(conn)?;
        diesel::delete(signin_codes::table.find(email.as_str())).execute(conn)?;
        let account = code_account(conn, email)?;
        let hash = match &account {
            Some(_) => code_hash(email, &code),
            // A hash that no code can match: the same row, the same work, nothing to find.
            None => code_hash(email, PlainToken::generate().expose()),
        };
        let row = SigninCode {
            email: email.as_str().to_owned(),
            code_hash: hash,
            expires_at: now + CODE_TTL,
            attempts: 0,
            created_at: now,
        };
        diesel::insert_into(signin_codes::table).values(&row).execute(conn)?;
        if let Some(user) = account {
            let lang = user.language.as_deref().and_then(Lang::parse).unwrap_or(lang);
            mail::enqueue(conn, mail::account::signin_code(&user, &code, lang)?, public_url)?;
            let mut actor = actor.clone();
            actor.user_id = Some(user.id.clone());
            audit::record(conn, &actor, None, action::CODE_SENT, Some(&user.id), Some("signin"))?;
        }
        Ok(())
    })
}

/// The outcome of entering a sign-in code.
#[derive(Debug)]
pub enum CodeOutcome {
    /// Right: the code is used up; sign this account in.
    SignedIn(User),
    /// Wrong; guesses remain.
    Wrong,
    /// Expired, never sent, used, or too many wrong guesses: a new code is needed.
    NeedNewCode,
}

/// Checks a typed code for `email`. Each guess is first counted by one conditional UPDATE
/// (`attempts + 1` while fewer than [`CODE_ATTEMPTS`] and the code is live), so however many
/// guesses arrive at once, at most five are ever compared; a right code is deleted by a
/// conditional DELETE, so it signs in once.
pub fn verify(conn: &mut DbConnection, email: &Email, typed: &str, actor: &Actor) -> Result<CodeOutcome, ServiceError> {
    let typed: String = typed.chars().filter(char::is_ascii_digit).take(16).collect();
    db::write_tx(conn, |conn| {
        let counted = diesel::update(
            signin_codes::table
                .find(email.as_str())
                .filter(signin_codes::expires_at.gt(db::now()))
                .filter(signin_codes::attempts.lt(CODE_ATTEMPTS)),
        )
        .set(signin_codes::attempts.eq(signin_codes::attempts + 1))
        .execute(conn)?;
        if counted != 1 {
            return Ok(CodeOutcome::NeedNewCode);
        }
        let row: SigninCode = signin_codes::table.find(email.as_str()).select(SigninCode::as_select()).first(conn)?;
        let hash = code_hash(email, &typed);
        if crate::domain::token::constant_time_eq(hash.as_bytes(), row.code_hash.as_bytes()) {
            let used = diesel::delete(
                signin_codes::table.find(email.as_str()).filter(signin_codes::code_hash.eq(&row.code_hash)),
            )
            .execute(conn)?;
            // The account may have lost the right to codes since the code was sent.
            return Ok(match (used, code_account(conn, email)?) {
                (1, Some(user)) => CodeOutcome::SignedIn(user),
                _ => CodeOutcome::NeedNewCode,
            });
        }
        let mut actor = actor.clone();
        let user = accounts::find_by_email(conn, email)?;
        actor.user_id = user.as_ref().map(|u| u.id.clone());
        let detail =
            serde_json::json!({ "for": "signin", "address": email.masked(), "attempt": row.attempts }).to_string();
        audit::record(conn, &actor, None, action::CODE_FAILED, user.as_ref().map(|u| u.id.as_str()), Some(&detail))?;
        Ok(if row.attempts >= CODE_ATTEMPTS { CodeOutcome::NeedNewCode } else { CodeOutcome::Wrong })
    })
}
