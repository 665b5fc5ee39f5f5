//! Accounts: the global identity of a person, keyed by canonical email.

use diesel::prelude::*;

use crate::auth::password::verify_password;
use crate::db::models::User;
use crate::db::schema::users;
use crate::db::{self, DbConnection, Pool};
use crate::domain::Email;
use crate::error::ServiceError;

/// Outcome of checking a password for an address, the same in time and shape for unknown accounts.
pub enum PasswordCheck {
    Ok(User),
    Wrong,
}

/// Verifies `password` for `email`: the account is read with a pooled connection, then the
/// ~50 ms of Argon2 run on the blocking pool without holding that connection. Unknown accounts
/// burn the same work.
pub async fn check_password(pool: &Pool, email: String, password: String) -> Result<PasswordCheck, ServiceError> {
    let user = db::with_conn(pool, move |c| -> Result<Option<User>, ServiceError> {
        Ok(match Email::parse(&email) {
            Ok(e) => find_by_email(c, &e)?,
            Err(_) => None,
        })
    })
    .await?;
    let hash = user.as_ref().and_then(|u| u.password_hash.clone());
    let good = tokio::task::spawn_blocking(move || verify_password(&password, hash.as_deref()))
        .await
        .map_err(crate::db::Unavailable::Task)?;
    Ok(match (good, user) {
        (true, Some(u)) => PasswordCheck::Ok(u),
        _ => PasswordCheck::Wrong,
    })
}

/// Lower-cased name used for prefix search.
pub fn name_search(display_name: &str) -> String {
    display_name.trim().to_lowercase()
}

/// Finds an account by canonical email.
pub fn find_by_email(conn: &mut DbConnection, email: &Email) -> QueryResult<Option<User>> {
    users::table.filter(users::email.eq(email.as_str())).select(User::as_select()).first(conn).optional()
}

/// Finds an account by id.
pub fn find_by_id(conn: &mut DbConnection, id: &str) -> QueryResult<Option<User>> {
    users::table.find(id).select(User::as_select()).first(conn).optional()
}

/// Finds the account of `email`, creating a row without a password if there is none yet
/// (an invitation names a person before they register).
pub fn find_or_create(conn: &mut DbConnection, email: &Email, display_name: &str) -> QueryResult<User> {
    if let Some(u) = find_by_email(conn, email)? {
        return Ok(u);
    }
    let user = User {
        id: db::new_id(),
        email: email.as_str().to_owned(),
        display_name: display_name.to_owned(),
        name_search: name_search(display_name),
        password_hash: None,
        email_verified: false,
        language: None,
        created_at: db::now(),
    };
    diesel::insert_into(users::table).values(&user).execute(conn)?;
    Ok(user)
}

/// Gives a password to an account that has none (registration). Returns false when the
/// account already has one, so two racing registrations cannot both win.
pub fn set_initial_password(
    conn: &mut DbConnection,
    user_id: &str,
    display_name: &str,
    password_hash: &str,
    language: Option<&str>,
) -> QueryResult<bool> {
    let n = diesel::update(users::table.filter(users::id.eq(user_id)).filter(users::password_hash.is_null()))
        .set((
            users::password_hash.eq(password_hash),
            users::display_name.eq(display_name),
            users::name_search.eq(name_search(display_name)),
            users::email_verified.eq(true),
            users::language.eq(language),
        ))
        .execute(conn)?;
    Ok(n == 1)
}

/// Remembers a person's language choice.
pub fn set_language(conn: &mut DbConnection, user_id: &str, lang: &str) -> QueryResult<()> {
    diesel::update(users::table.find(user_id)).set(users::language.eq(Some(lang))).execute(conn)?;
    Ok(())
}

/// Sets the password of an account (owner's one-time link).
pub fn set_password(conn: &mut DbConnection, user_id: &str, password_hash: &str) -> QueryResult<()> {
    diesel::update(users::table.find(user_id))
        .set((users::password_hash.eq(password_hash), users::email_verified.eq(true)))
        .execute(conn)?;
    Ok(())
}

/// True when the person has an account of their own: a password, or an address proven by a
/// code or at redemption. An invited address nobody has claimed yet has neither.
pub fn is_registered(user: &User) -> bool {
    user.password_hash.is_some() || user.email_verified
}

/// True when the account may sign in with a code sent by email: at least one organization it
/// belongs to (membership neither removed nor blocked, pending or accepted) allows codes.
pub fn may_use_codes(conn: &mut DbConnection, user_id: &str) -> QueryResult<bool> {
    use crate::db::schema::{memberships, organizations};
    let n: i64 = memberships::table
        .inner_join(organizations::table)
        .filter(memberships::user_id.eq(user_id))
        .filter(memberships::removed_at.is_null())
        .filter(memberships::blocked.eq(false))
        .filter(organizations::email_codes.eq(true))
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

/// Creates a passwordless account on an invited address (a guest who proved the mailbox with
/// a code). Returns false when the account was claimed meanwhile.
pub fn claim_passwordless(
    conn: &mut DbConnection,
    user_id: &str,
    display_name: &str,
    language: Option<&str>,
) -> QueryResult<bool> {
    let n = diesel::update(
        users::table
            .filter(users::id.eq(user_id))
            .filter(users::password_hash.is_null())
            .filter(users::email_verified.eq(false)),
    )
    .set((
        users::display_name.eq(display_name),
        users::name_search.eq(name_search(display_name)),
        users::email_verified.eq(true),
        users::language.eq(language),
    ))
    .execute(conn)?;
    Ok(n == 1)
}
