//! Secret tokens: 32 bytes from the OS CSPRNG, base64url in links, SHA-256 at rest.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// A freshly generated secret, shown once; only [`hash_token`] of it is stored.
pub struct PlainToken(String);

impl PlainToken {
    /// 32 random bytes, base64url without padding (43 characters).
    pub fn generate() -> PlainToken {
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes);
        PlainToken(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// The text that goes into the link.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The stored form.
    pub fn hash(&self) -> String {
        hash_token(&self.0)
    }
}

impl std::fmt::Debug for PlainToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PlainToken(…)")
    }
}

/// SHA-256 of a token, hex encoded.
pub fn hash_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// True when the text has the shape of a token (so junk never reaches the database).
pub fn looks_like_token(s: &str) -> bool {
    s.len() == 43 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A six-digit one-time code.
pub fn six_digit_code() -> String {
    use rand::RngExt;
    format!("{:06}", rand::rng().random_range(0..1_000_000u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_43_chars_and_distinct() {
        let a = PlainToken::generate();
        let b = PlainToken::generate();
        assert!(looks_like_token(a.expose()));
        assert_ne!(a.expose(), b.expose());
        assert_eq!(a.hash().len(), 64);
        assert_eq!(format!("{a:?}"), "PlainToken(…)");
    }

    #[test]
    fn codes_are_six_digits() {
        let c = six_digit_code();
        assert_eq!(c.len(), 6);
        assert!(c.bytes().all(|b| b.is_ascii_digit()));
    }
}
