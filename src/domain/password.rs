//! Password rules (NIST 800-63B): 12 to 128 characters, no composition rules, and a refusal of
//! passwords found in a bundled list of common passwords (Django's list of 20 000, BSD licence).

use std::collections::HashSet;
use std::sync::LazyLock;

/// Shortest accepted password, in characters.
pub const MIN_LEN: usize = 12;
/// Longest accepted password, in characters.
pub const MAX_LEN: usize = 128;

static COMMON: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| include_str!("common-passwords.txt").lines().collect());

/// Why a new password was refused; each maps to one message in the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordProblem {
    TooShort,
    TooLong,
    Common,
    LooksLikeEmail,
    Mismatch,
}

impl PasswordProblem {
    /// The catalogue key of the message shown under the field.
    pub fn message_key(self) -> &'static str {
        match self {
            PasswordProblem::TooShort => "password.too_short",
            PasswordProblem::TooLong => "password.too_long",
            PasswordProblem::Common => "password.common",
            PasswordProblem::LooksLikeEmail => "password.like_email",
            PasswordProblem::Mismatch => "password.mismatch",
        }
    }
}

/// Checks a new password chosen by the person with address `email`.
pub fn check_new_password(password: &str, confirm: &str, email: &str) -> Result<(), PasswordProblem> {
    let len = password.chars().count();
    if len < MIN_LEN {
        return Err(PasswordProblem::TooShort);
    }
    if len > MAX_LEN {
        return Err(PasswordProblem::TooLong);
    }
    if is_common(password) {
        return Err(PasswordProblem::Common);
    }
    // The address, or its local part making up half the password or more: "alice2024alice" is
    // refused for alice@…, but a long passphrase that merely contains "anna" is not.
    let lower = password.to_lowercase();
    let email = email.to_lowercase();
    let local = email.split('@').next().unwrap_or("");
    let local_len = local.chars().count();
    if lower.contains(email.as_str()) || (local_len >= 4 && lower.contains(local) && local_len * 3 >= len) {
        return Err(PasswordProblem::LooksLikeEmail);
    }
    if password != confirm {
        return Err(PasswordProblem::Mismatch);
    }
    Ok(())
}

/// A password is common when it, or it without trailing digits and symbols, is on the list,
/// or when it repeats one short piece ("aaaaaaaaaaaa", "abcabcabcabc").
fn is_common(password: &str) -> bool {
    let lower = password.to_lowercase();
    if COMMON.contains(lower.as_str()) {
        return true;
    }
    let stem = lower.trim_end_matches(|c: char| !c.is_alphabetic());
    if stem.len() >= 4 && COMMON.contains(stem) {
        return true;
    }
    let chars: Vec<char> = lower.chars().collect();
    (1..=4).any(|n| chars.len().is_multiple_of(n) && chars.chunks(n).all(|c| c == &chars[..n]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMAIL: &str = "alice@example.com";

    #[test]
    fn length_limits() {
        assert_eq!(check_new_password("short", "short", EMAIL), Err(PasswordProblem::TooShort));
        let long = "x".repeat(129) + "yz";
        assert_eq!(check_new_password(&long, &long, EMAIL), Err(PasswordProblem::TooLong));
    }

    #[test]
    fn common_and_padded_common_passwords_are_refused() {
        for pw in ["1qaz2wsx3edc", "password1234", "Password2024!", "aaaaaaaaaaaa", "abcabcabcabc"] {
            assert_eq!(check_new_password(pw, pw, EMAIL), Err(PasswordProblem::Common), "{pw}");
        }
    }

    #[test]
    fn password_must_not_be_the_email() {
        for pw in ["alice@example.com", "my alice@example.com pass", "alicealice12"] {
            assert_eq!(check_new_password(pw, pw, EMAIL), Err(PasswordProblem::LooksLikeEmail), "{pw}");
        }
    }

    #[test]
    fn a_passphrase_that_merely_contains_the_local_part_is_fine() {
        let pw = "alice in wonderland drinks tea";
        assert_eq!(check_new_password(pw, pw, EMAIL), Ok(()));
    }

    #[test]
    fn good_passphrase_passes_and_confirmation_must_match() {
        let pw = "correct horse battery staple";
        assert_eq!(check_new_password(pw, pw, EMAIL), Ok(()));
        assert_eq!(check_new_password(pw, "other", EMAIL), Err(PasswordProblem::Mismatch));
    }
}
