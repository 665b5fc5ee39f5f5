//! Argon2id password hashing. Always call these from `web::block`: a hash takes tens of
//! milliseconds of CPU on purpose.

use std::sync::LazyLock;

use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};

fn hasher() -> Argon2<'static> {
    // OWASP / design §8 minimum: 19 MiB, two passes, one lane.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Longest password, in bytes, that is ever given to Argon2 (hashed or checked). New passwords
/// are refused far below this (`domain::password::MAX_LEN` characters); a longer one offered at
/// sign-in is simply wrong, without the work.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Hashes a password into a PHC string.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    if password.len() > MAX_PASSWORD_BYTES {
        anyhow::bail!("password over {MAX_PASSWORD_BYTES} bytes");
    }
    hasher()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing password: {e}"))
}

/// A hash of nothing in particular, verified against when an account does not exist, so that
/// unknown and known accounts take the same time to refuse.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| hash_password("vestibule-timing-equalizer").unwrap_or_default());

/// Checks a password against a stored hash; `None` (no account, or no password yet) spends the
/// same work and answers false.
pub fn verify_password(password: &str, stored: Option<&str>) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    let phc = stored.unwrap_or(DUMMY_HASH.as_str());
    let ok = match argon2::password_hash::phc::PasswordHash::new(phc) {
        Ok(parsed) => hasher().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    };
    ok && stored.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_then_verify() {
        let h = hash_password("correct horse battery staple").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify_password("correct horse battery staple", Some(&h)));
        assert!(!verify_password("wrong horse battery staple", Some(&h)));
        assert!(!verify_password("anything", None));
        let huge = "x".repeat(MAX_PASSWORD_BYTES + 1);
        assert!(!verify_password(&huge, Some(&h)));
        assert!(hash_password(&huge).is_err());
    }
}
