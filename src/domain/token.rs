//! Secret tokens: 32 bytes from the OS CSPRNG, base64url in links, SHA-256 at rest.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// What a secret is for; the kind decides its visible prefix (so a leaked API key is
/// recognisable by secret scanners) and nothing else: every kind is 32 random bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// Invitation, setup and password links, session keys, CSRF cookies: no prefix.
    Link,
    /// API keys: `vst_`.
    ApiKey,
    /// OpenID Connect client secrets: `vsc_`.
    ClientSecret,
}

impl TokenKind {
    /// The text every secret of this kind starts with.
    pub const fn prefix(self) -> &'static str {
        match self {
            TokenKind::Link => "",
            TokenKind::ApiKey => "vst_",
            TokenKind::ClientSecret => "vsc_",
        }
    }

    /// True when the text has the shape of a secret of this kind (so junk never reaches the database).
    pub fn matches(self, s: &str) -> bool {
        s.strip_prefix(self.prefix()).is_some_and(looks_like_token)
    }
}

/// A freshly generated secret, shown once; only [`hash_token`] of it is stored.
pub struct PlainToken {
    kind: TokenKind,
    text: String,
}

impl PlainToken {
    /// A link token: 32 random bytes, base64url without padding (43 characters).
    pub fn generate() -> PlainToken {
        PlainToken::new(TokenKind::Link)
    }

    /// A secret of `kind`: its prefix, then 32 random bytes from the OS CSPRNG, base64url.
    pub fn new(kind: TokenKind) -> PlainToken {
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes);
        PlainToken { kind, text: format!("{}{}", kind.prefix(), URL_SAFE_NO_PAD.encode(bytes)) }
    }

    /// What the secret is for.
    pub fn kind(&self) -> TokenKind {
        self.kind
    }

    /// The text that goes into the link (or is shown once).
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// The stored form.
    pub fn hash(&self) -> String {
        hash_token(&self.text)
    }
}

impl std::fmt::Debug for PlainToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PlainToken({:?}, …)", self.kind)
    }
}

/// SHA-256 of a token, hex encoded.
pub fn hash_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares secrets (or their hashes) without an early exit.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// True when the text has the shape of a token (so junk never reaches the database).
pub fn looks_like_token(s: &str) -> bool {
    s.len() == 43 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// An eight-digit one-time code (sign-in and redemption codes sent by email).
pub fn eight_digit_code() -> String {
    use rand::RngExt;
    format!("{:08}", rand::rng().random_range(0..100_000_000u32))
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
        assert_eq!(format!("{a:?}"), "PlainToken(Link, …)");
        let k = PlainToken::new(TokenKind::ApiKey);
        assert!(k.expose().starts_with("vst_") && TokenKind::ApiKey.matches(k.expose()));
        assert!(!TokenKind::ApiKey.matches(a.expose()));
        assert!(!TokenKind::ApiKey.matches("vst_short"));
    }

    #[test]
    fn codes_are_eight_digits() {
        let c = eight_digit_code();
        assert_eq!(c.len(), 8);
        assert!(c.bytes().all(|b| b.is_ascii_digit()));
    }
}
