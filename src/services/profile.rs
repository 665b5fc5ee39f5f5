//! The signed-in person's own account: name, language and password.

use diesel::prelude::*;
use url::Url;

use crate::db::models::User;
use crate::db::schema::users;
use crate::db::{self, DbConnection};
use crate::i18n::Lang;
use crate::mail;
use crate::services::audit::{self, action};
use crate::services::{Actor, FieldErrors, ServiceError, accounts, sessions};

/// Longest display name, in characters.
const MAX_NAME_CHARS: usize = 200;

/// The profile form as typed.
#[derive(Debug, Clone, Default)]
pub struct ProfileInput {
    pub display_name: String,
    pub language: String,
}

/// A valid profile.
#[derive(Debug, Clone)]
pub struct Profile {
    pub display_name: String,
    pub language: Lang,
}

/// Checks the profile form: a name of 1 to 200 characters without control characters, and a
/// supported language.
pub fn validate_profile(input: &ProfileInput) -> Result<Profile, FieldErrors> {
    let mut errors = FieldErrors::default();
    let name = input.display_name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        errors.add("display_name", "name.invalid");
    }
    let language = Lang::ALL.into_iter().find(|l| l.code() == input.language.trim());
    if language.is_none() {
        errors.add("language", "account.language_invalid");
    }
    match language {
        Some(language) if errors.is_empty() => Ok(Profile { display_name: name.to_owned(), language }),
        _ => Err(errors),
    }
}

/// Saves name and language; records what changed (nothing is recorded when nothing did).
pub fn update_profile(
    conn: &mut DbConnection,
    user_id: &str,
    profile: &Profile,
    actor: &Actor,
) -> Result<User, ServiceError> {
    db::write_tx(conn, |conn| {
        let before = accounts::find_by_id(conn, user_id)?.ok_or(ServiceError::NotFound)?;
        let mut changed = Vec::new();
        if before.display_name != profile.display_name {
            changed.push("display_name");
        }
        if before.language.as_deref() != Some(profile.language.code()) {
            changed.push("language");
        }
        if changed.is_empty() {
            return Ok(before);
        }
        diesel::update(users::table.find(user_id))
            .set((
                users::display_name.eq(&profile.display_name),
                users::name_search.eq(accounts::name_search(&profile.display_name)),
                users::language.eq(Some(profile.language.code())),
            ))
            .execute(conn)?;
        audit::record(conn, actor, None, action::PROFILE_CHANGED, Some(user_id), Some(&changed.join(",")))?;
        accounts::find_by_id(conn, user_id)?.ok_or(ServiceError::NotFound)
    })
}

/// A verified password change, ready to be saved.
pub struct PasswordChange<'a> {
    pub user_id: &'a str,
    /// The stored hash the current password was verified against.
    pub verified_hash: &'a str,
    /// Hash of the new password.
    pub new_hash: &'a str,
    /// Marker of the session making the change: it stays signed in, every other one ends.
    pub keep_sid: &'a str,
    pub public_url: &'a Url,
    /// Language of the notification email.
    pub lang: Lang,
}

/// Saves a new password; in the same transaction ends every other session of the person,
/// queues the notification email and records the change. Refused (on the current-password
/// field) when the password changed since it was verified.
pub fn change_password(conn: &mut DbConnection, change: &PasswordChange, actor: &Actor) -> Result<usize, ServiceError> {
    db::write_tx(conn, |conn| {
        // Compare-and-set: a concurrent change since verification makes this one fail.
        let updated = diesel::update(
            users::table.filter(users::id.eq(change.user_id)).filter(users::password_hash.eq(change.verified_hash)),
        )
        .set(users::password_hash.eq(change.new_hash))
        .execute(conn)?;
        if updated != 1 {
            return Err(ServiceError::field("current_password", "account.password_wrong"));
        }
        let ended = sessions::end_others(conn, change.user_id, change.keep_sid)?;
        let user = accounts::find_by_id(conn, change.user_id)?.ok_or(ServiceError::NotFound)?;
        let notice =
            mail::account::password_changed(&user, &db::now(), actor.ip.as_deref(), change.public_url, change.lang)?;
        mail::enqueue(conn, notice, change.public_url)?;
        let detail = serde_json::json!({ "sessions_ended": ended }).to_string();
        audit::record(conn, actor, None, action::PASSWORD_CHANGED, Some(change.user_id), Some(&detail))?;
        Ok(ended)
    })
}

/// A first password for a passwordless account, ready to be saved.
pub struct PasswordAdd<'a> {
    pub user_id: &'a str,
    /// Hash of the new password.
    pub new_hash: &'a str,
    /// Marker of the session making the change: it stays signed in, every other one ends.
    pub keep_sid: &'a str,
    pub public_url: &'a Url,
    /// Language of the notification email.
    pub lang: Lang,
}

/// Gives a passwordless account its first password (one conditional UPDATE: refused when a
/// password was set meanwhile); as for a change, every other session ends, the notice is
/// queued and the change recorded.
pub fn add_password(conn: &mut DbConnection, add: &PasswordAdd, actor: &Actor) -> Result<usize, ServiceError> {
    db::write_tx(conn, |conn| {
        let updated =
            diesel::update(users::table.filter(users::id.eq(add.user_id)).filter(users::password_hash.is_null()))
                .set(users::password_hash.eq(add.new_hash))
                .execute(conn)?;
        if updated != 1 {
            return Err(ServiceError::field("current_password", "account.password_wrong"));
        }
        let ended = sessions::end_others(conn, add.user_id, add.keep_sid)?;
        let user = accounts::find_by_id(conn, add.user_id)?.ok_or(ServiceError::NotFound)?;
        let notice = mail::account::password_changed(&user, &db::now(), actor.ip.as_deref(), add.public_url, add.lang)?;
        mail::enqueue(conn, notice, add.public_url)?;
        let detail = serde_json::json!({ "added": true, "sessions_ended": ended }).to_string();
        audit::record(conn, actor, None, action::PASSWORD_CHANGED, Some(add.user_id), Some(&detail))?;
        Ok(ended)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(name: &str, lang: &str) -> ProfileInput {
        ProfileInput { display_name: name.into(), language: lang.into() }
    }

    #[test]
    fn profile_rules() {
        let p = validate_profile(&input("  Ada Lovelace ", "fr")).unwrap();
        assert_eq!((p.display_name.as_str(), p.language), ("Ada Lovelace", Lang::Fr));
        let e = validate_profile(&input(" ", "de")).unwrap_err();
        assert_eq!(e.get("display_name"), Some("name.invalid"));
        assert_eq!(e.get("language"), Some("account.language_invalid"));
        assert!(validate_profile(&input("Ada\nLovelace", "en")).is_err());
        assert!(validate_profile(&input(&"a".repeat(201), "en")).is_err());
        assert!(validate_profile(&input(&"é".repeat(200), "en")).is_ok());
    }
}
