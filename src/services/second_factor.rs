//! The second factor (issue 10): a TOTP secret per account (RFC 6238: SHA-1, 6 digits, 30 s,
//! computed by the `totp-rs` crate), confirmed by a first code, and 10 single-use recovery
//! codes of which only the SHA-256 is kept.
//!
//! A code is accepted within ±1 time step and never twice: the step it matched must be later
//! than the last accepted one, which one conditional UPDATE moves forward
//! (`SET last_step = s WHERE last_step IS NULL OR last_step < s`), so that two concurrent
//! requests with the same code cannot both pass. Wrong codes are counted by the caller through
//! [`rate::take`](crate::services::rate::take) with [`attempt_key`].

use diesel::prelude::*;
use totp_rs::{Algorithm, Builder, Secret, Totp};
use url::Url;

use crate::db::models::{RecoveryCode, SecondFactor, User};
use crate::db::schema::{recovery_codes, second_factors};
use crate::db::{self, DbConnection};
use crate::domain::token::hash_token;
use crate::i18n::Lang;
use crate::mail;
use crate::services::audit::{self, action};
use crate::services::{Actor, ServiceError, accounts};

/// Recovery codes given at enrolment (and on regeneration).
pub const RECOVERY_CODES: usize = 10;
/// Wrong second-factor codes allowed per account per [`ATTEMPT_WINDOW`].
pub const ATTEMPTS: i64 = 5;
/// The window of [`ATTEMPTS`].
pub const ATTEMPT_WINDOW: time::Duration = time::Duration::minutes(15);
/// Longest code read from a form (a TOTP code or a recovery code, with spaces).
pub const MAX_CODE_CHARS: usize = 32;
/// The issuer shown by authenticator apps.
pub const ISSUER: &str = "Vestibule";

/// The rate-limit key of an account's second-factor attempts.
pub fn attempt_key(user_id: &str) -> String {
    format!("mfa:{user_id}")
}

/// The TOTP of a stored secret (`account` names it in the otpauth URL).
pub fn totp(secret_b32: &str, account: &str) -> Option<Totp> {
    let secret = Secret::try_from_base32(secret_b32).ok()?;
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(secret)
        .with_issuer(Some(ISSUER))
        .with_account_name(account.replace(':', ""))
        .build()
        .ok()
}

/// The `otpauth://` URL an authenticator app reads (what the QR code holds).
pub fn otpauth_url(secret_b32: &str, account: &str) -> Option<String> {
    totp(secret_b32, account)?.to_url().ok()
}

/// The QR code of `data`, as an SVG document (drawn here; no JavaScript, no outside service).
pub fn qr_svg(data: &str) -> Option<String> {
    let code = qrcode::QrCode::new(data.as_bytes()).ok()?;
    Some(
        code.render::<qrcode::render::svg::Color>()
            .min_dimensions(200, 200)
            .quiet_zone(true)
            .dark_color(qrcode::render::svg::Color("#000000"))
            .light_color(qrcode::render::svg::Color("#ffffff"))
            .build(),
    )
}

/// The six digits of a typed code (spaces dropped), if it has that shape.
fn six_digits(code: &str) -> Option<String> {
    let digits: String = code.chars().take(MAX_CODE_CHARS).filter(|c| !c.is_whitespace()).collect();
    (digits.len() == 6 && digits.bytes().all(|b| b.is_ascii_digit())).then_some(digits)
}

/// The stored form of a recovery code typed by `user_id` (case, spaces and dashes ignored).
fn recovery_hash(user_id: &str, code: &str) -> Option<String> {
    let norm: String = code
        .chars()
        .take(MAX_CODE_CHARS)
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (norm.len() == 10).then(|| hash_token(&format!("{user_id}:{norm}")))
}

/// Ten fresh recovery codes (`xxxxx-xxxxx`, 50 random bits each).
fn new_recovery_codes() -> Vec<String> {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789ab";
    (0..RECOVERY_CODES)
        .map(|_| {
            let mut bytes = [0u8; 10];
            rand::fill(&mut bytes);
            let s: String = bytes.iter().map(|b| ALPHABET[(b & 31) as usize] as char).collect();
            format!("{}-{}", &s[..5], &s[5..])
        })
        .collect()
}

/// The person's second factor, confirmed or not.
pub fn find(conn: &mut DbConnection, user_id: &str) -> QueryResult<Option<SecondFactor>> {
    second_factors::table.find(user_id).select(SecondFactor::as_select()).first(conn).optional()
}

/// True when the person has a confirmed second factor.
pub fn is_enrolled(conn: &mut DbConnection, user_id: &str) -> QueryResult<bool> {
    Ok(find(conn, user_id)?.is_some_and(|f| f.confirmed_at.is_some()))
}

/// Recovery codes not used yet.
pub fn recovery_left(conn: &mut DbConnection, user_id: &str) -> QueryResult<i64> {
    recovery_codes::table
        .filter(recovery_codes::user_id.eq(user_id))
        .filter(recovery_codes::used_at.is_null())
        .count()
        .get_result(conn)
}

/// Starts (or restarts) enrolment: a new secret, unconfirmed. Refused when a confirmed factor
/// exists (it is removed first).
pub fn start(conn: &mut DbConnection, user_id: &str) -> Result<SecondFactor, ServiceError> {
    db::write_tx(conn, |conn| {
        if let Some(f) = find(conn, user_id)? {
            if f.confirmed_at.is_some() {
                return Err(ServiceError::WrongState);
            }
            diesel::delete(second_factors::table.find(user_id)).execute(conn)?;
        }
        let mut bytes = [0u8; 20];
        rand::fill(&mut bytes);
        let row = SecondFactor {
            user_id: user_id.to_owned(),
            secret: Secret::from(bytes.to_vec()).to_base32(),
            confirmed_at: None,
            last_step: None,
            created_at: db::now(),
        };
        diesel::insert_into(second_factors::table).values(&row).execute(conn)?;
        Ok(row)
    })
}

/// Checks a TOTP code of `user_id`'s factor (confirmed or not): accepted within ±1 step, and
/// only if its step is later than the last one accepted (the step is then recorded).
pub fn check_code(conn: &mut DbConnection, user_id: &str, code: &str) -> QueryResult<bool> {
    let Some(digits) = six_digits(code) else { return Ok(false) };
    let Some(factor) = find(conn, user_id)? else { return Ok(false) };
    let Some(totp) = totp(&factor.secret, "x") else { return Ok(false) };
    let now = time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
    let Some(step) = totp.check(&digits, now) else { return Ok(false) };
    let step = step as i64;
    let moved = diesel::update(
        second_factors::table
            .find(user_id)
            .filter(second_factors::last_step.is_null().or(second_factors::last_step.lt(step))),
    )
    .set(second_factors::last_step.eq(step))
    .execute(conn)?;
    Ok(moved == 1)
}

/// Uses one recovery code: `Some(codes left)` when it was a live code of `user_id`'s.
pub fn use_recovery_code(conn: &mut DbConnection, user_id: &str, code: &str) -> QueryResult<Option<i64>> {
    let Some(hash) = recovery_hash(user_id, code) else { return Ok(None) };
    db::write_tx(conn, |conn| {
        let used = diesel::update(
            recovery_codes::table
                .find(&hash)
                .filter(recovery_codes::user_id.eq(user_id))
                .filter(recovery_codes::used_at.is_null()),
        )
        .set(recovery_codes::used_at.eq(db::now()))
        .execute(conn)?;
        if used != 1 {
            return Ok(None);
        }
        Ok(Some(recovery_left(conn, user_id)?))
    })
}

/// Replaces the person's recovery codes by ten new ones, returned once in clear.
fn replace_recovery_codes(conn: &mut DbConnection, user_id: &str) -> QueryResult<Vec<String>> {
    diesel::delete(recovery_codes::table.filter(recovery_codes::user_id.eq(user_id))).execute(conn)?;
    let codes = new_recovery_codes();
    let now = db::now();
    let rows: Vec<RecoveryCode> = codes
        .iter()
        .filter_map(|c| recovery_hash(user_id, c))
        .map(|code_hash| RecoveryCode { code_hash, user_id: user_id.to_owned(), used_at: None, created_at: now })
        .collect();
    // One row at a time: batch inserts do not work through the multi-backend connection.
    for row in &rows {
        diesel::insert_into(recovery_codes::table).values(row).execute(conn)?;
    }
    Ok(codes)
}

/// Where the notice about a change goes and in which language.
pub struct Notice<'a> {
    pub public_url: &'a Url,
    pub lang: Lang,
}

fn notify(conn: &mut DbConnection, user: &User, event: &str, actor: &Actor, n: &Notice) -> Result<(), ServiceError> {
    let mail =
        mail::account::second_factor_changed(user, event, &db::now(), actor.ip.as_deref(), n.public_url, n.lang)?;
    mail::enqueue(conn, mail, n.public_url)?;
    Ok(())
}

/// Confirms enrolment with a first code: the factor is on, ten recovery codes are made (and
/// returned once), the person is told by email and the change recorded. Refused (on the
/// `code` field) for a wrong or reused code.
pub fn confirm(
    conn: &mut DbConnection,
    user_id: &str,
    code: &str,
    actor: &Actor,
    notice: &Notice,
) -> Result<Vec<String>, ServiceError> {
    db::write_tx(conn, |conn| {
        let factor = find(conn, user_id)?.ok_or(ServiceError::NotFound)?;
        if factor.confirmed_at.is_some() {
            return Err(ServiceError::WrongState);
        }
        if !check_code(conn, user_id, code)? {
            return Err(ServiceError::field("code", "mfa.code_wrong"));
        }
        diesel::update(second_factors::table.find(user_id))
            .set(second_factors::confirmed_at.eq(db::now()))
            .execute(conn)?;
        let codes = replace_recovery_codes(conn, user_id)?;
        let user = accounts::find_by_id(conn, user_id)?.ok_or(ServiceError::NotFound)?;
        notify(conn, &user, "enrolled", actor, notice)?;
        audit::record(conn, actor, None, action::MFA_ENROLLED, Some(user_id), None)?;
        Ok(codes)
    })
}

/// New recovery codes (the old ones stop working), after a current code.
pub fn regenerate(
    conn: &mut DbConnection,
    user_id: &str,
    code: &str,
    actor: &Actor,
) -> Result<Vec<String>, ServiceError> {
    db::write_tx(conn, |conn| {
        if !is_enrolled(conn, user_id)? {
            return Err(ServiceError::NotFound);
        }
        if !check_code(conn, user_id, code)? {
            return Err(ServiceError::field("code", "mfa.code_wrong"));
        }
        let codes = replace_recovery_codes(conn, user_id)?;
        audit::record(conn, actor, None, action::MFA_RECOVERY_REGENERATED, Some(user_id), None)?;
        Ok(codes)
    })
}

/// Removes the factor and its recovery codes (the caller verified a code or the password, or
/// an admin of the organization `reset_in` resets it); the person is told by email and the
/// change recorded. `Ok(false)` when there was nothing to remove.
pub fn remove(
    conn: &mut DbConnection,
    user_id: &str,
    reset_in: Option<&str>,
    actor: &Actor,
    notice: &Notice,
) -> Result<bool, ServiceError> {
    db::write_tx(conn, |conn| {
        let gone = diesel::delete(second_factors::table.find(user_id)).execute(conn)?;
        diesel::delete(recovery_codes::table.filter(recovery_codes::user_id.eq(user_id))).execute(conn)?;
        if gone == 0 {
            return Ok(false);
        }
        let user = accounts::find_by_id(conn, user_id)?.ok_or(ServiceError::NotFound)?;
        notify(conn, &user, if reset_in.is_some() { "reset" } else { "removed" }, actor, notice)?;
        let act = if reset_in.is_some() { action::MFA_RESET } else { action::MFA_REMOVED };
        audit::record(conn, actor, reset_in, act, Some(user_id), None)?;
        Ok(true)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_the_expected_shape() {
        assert_eq!(six_digits(" 123 456 ").as_deref(), Some("123456"));
        assert!(six_digits("12345").is_none());
        assert!(six_digits("abcdef").is_none());
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODES);
        assert!(codes.iter().all(|c| c.len() == 11 && recovery_hash("u", c).is_some()));
        assert_eq!(recovery_hash("u", &codes[0].to_uppercase()), recovery_hash("u", &codes[0]));
    }

    #[test]
    fn rfc6238_sha1_vector() {
        // RFC 6238 appendix B, SHA-1, T = 59 s: 94287082 (8 digits); 6 digits: 287082.
        let secret = Secret::from(b"12345678901234567890".to_vec()).to_base32();
        let t = totp(&secret, "a@example.com").unwrap();
        assert_eq!(t.generate(59).to_string(), "287082");
        assert!(otpauth_url(&secret, "a@example.com").unwrap().starts_with("otpauth://totp/"));
        assert!(qr_svg("otpauth://totp/x").unwrap().contains("<svg"));
    }
}
