//! Providers' client secrets at rest: sealed with AES-256-GCM under a key derived from the
//! installation's secret key file (`DATA_DIR/secret.key`), so that a copy of the database alone
//! does not give them away. Every instance of an installation shares that file (as it shares
//! the session key), so any of them can open what another sealed.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use sha2::{Digest, Sha256};

/// The version tag of the sealed form (a new scheme gets a new tag).
const TAG: &str = "v1:";

/// The sealing key.
pub struct SecretKey([u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(…)")
    }
}

impl SecretKey {
    /// Derives the key from the installation's secret (a key of its own, not the session key).
    pub fn derive(installation_secret: &[u8]) -> SecretKey {
        SecretKey(Sha256::digest([b"vestibule-idp-secret:".as_slice(), installation_secret].concat()).into())
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&self.0))
    }

    /// `v1:` and base64 of a fresh 96-bit nonce followed by the ciphertext and its tag.
    pub fn seal(&self, plain: &str) -> anyhow::Result<String> {
        let mut nonce = [0u8; 12];
        rand::fill(&mut nonce);
        let sealed = self
            .cipher()
            .encrypt(Nonce::from_slice(&nonce), plain.as_bytes())
            .map_err(|_| anyhow::anyhow!("sealing a client secret failed"))?;
        Ok(format!("{TAG}{}", STANDARD_NO_PAD.encode([nonce.as_slice(), &sealed].concat())))
    }

    /// The plain secret, or `None` when it was sealed under another key (a different
    /// `secret.key`) or altered.
    pub fn open(&self, sealed: &str) -> Option<String> {
        let bytes = STANDARD_NO_PAD.decode(sealed.strip_prefix(TAG)?).ok()?;
        if bytes.len() < 12 {
            return None;
        }
        let (nonce, body) = bytes.split_at(12);
        let plain = self.cipher().decrypt(Nonce::from_slice(nonce), body).ok()?;
        String::from_utf8(plain).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_only_with_the_same_key() {
        let key = SecretKey::derive(b"installation one");
        let sealed = key.seal("s3cr3t~value").unwrap();
        assert!(sealed.starts_with("v1:") && !sealed.contains("s3cr3t"));
        assert_ne!(sealed, key.seal("s3cr3t~value").unwrap(), "a fresh nonce each time");
        assert_eq!(key.open(&sealed).as_deref(), Some("s3cr3t~value"));
        assert_eq!(SecretKey::derive(b"installation two").open(&sealed), None);
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(key.open(&tampered), None);
        assert_eq!(key.open("plain"), None);
    }
}
