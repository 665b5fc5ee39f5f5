//! RS256 signatures with a private key parsed once.
//!
//! `jsonwebtoken` builds and encodes every JWS, but its backends keep the key as DER and parse
//! it again (with AWS-LC's key checks) for every signature. The crate lets a program install its
//! own [`CryptoProvider`]; ours is the aws-lc-rs one with a single change: RS256 signers come
//! from a small cache of parsed keys, found by the SHA-256 of the key's DER. A key missing from
//! the cache is parsed and added, so the cache only saves work and never changes a signature.

use std::sync::{Arc, LazyLock, Once, RwLock};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, aws_lc};
use jsonwebtoken::errors::{ErrorKind, Result};
use jsonwebtoken::signature::{self, Signer};
use jsonwebtoken::{Algorithm, AlgorithmFamily, EncodingKey};
use sha2::{Digest, Sha256};

/// Parsed keys kept at most (an instance signs with one key; tests start many instances).
const CACHED_KEYS: usize = 8;

type ParsedKey = Arc<RsaKeyPair>;

/// Parsed signing keys by the SHA-256 of their DER, oldest first.
static PARSED: RwLock<Vec<([u8; 32], ParsedKey)>> = RwLock::new(Vec::new());

static PROVIDER: LazyLock<CryptoProvider> =
    LazyLock::new(|| CryptoProvider { signer_factory: new_signer, ..aws_lc::DEFAULT_PROVIDER.clone() });

/// Makes our provider the process's `jsonwebtoken` provider. Call it before anything else
/// uses `jsonwebtoken` (the keys module does, in each of its entry points); when something
/// was first, signatures stay correct but parse the key every time, and a warning says so.
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = CryptoProvider::install_default(&PROVIDER);
        if !CryptoProvider::try_get_default().is_some_and(|p| std::ptr::eq(p, &*PROVIDER)) {
            tracing::warn!(
                "another jsonwebtoken provider was installed first: RS256 keys are parsed at every signature"
            );
        }
    });
}

/// Parses a PKCS#1 DER private key into the cache now, so the first signature does not pay it.
pub fn warm(der: &[u8]) -> Result<()> {
    parsed(der).map(|_| ())
}

fn new_signer(algorithm: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    if *algorithm == Algorithm::RS256 && key.family() == AlgorithmFamily::Rsa {
        return Ok(Box::new(Rs256Signer(parsed(key.as_bytes())?)));
    }
    (aws_lc::DEFAULT_PROVIDER.signer_factory)(algorithm, key)
}

fn parsed(der: &[u8]) -> Result<ParsedKey> {
    let digest: [u8; 32] = Sha256::digest(der).into();
    let found = |cache: &[([u8; 32], ParsedKey)]| cache.iter().find(|(d, _)| *d == digest).map(|(_, k)| k.clone());
    if let Some(key) = PARSED.read().ok().and_then(|cache| found(&cache)) {
        return Ok(key);
    }
    let key = Arc::new(RsaKeyPair::from_der(der).map_err(|e| ErrorKind::InvalidRsaKey(e.to_string()))?);
    if let Ok(mut cache) = PARSED.write()
        && found(&cache).is_none()
    {
        if cache.len() >= CACHED_KEYS {
            cache.remove(0);
        }
        cache.push((digest, key.clone()));
    }
    Ok(key)
}

/// RSASSA-PKCS1-v1_5 with SHA-256 over a parsed key (the signature the crate's own RS256
/// signer makes).
struct Rs256Signer(ParsedKey);

impl Signer<Vec<u8>> for Rs256Signer {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        let mut sig = vec![0; self.0.public_modulus_len()];
        self.0.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), msg, &mut sig).map_err(signature::Error::from_source)?;
        Ok(sig)
    }
}

impl JwtSigner for Rs256Signer {
    fn algorithm(&self) -> Algorithm {
        Algorithm::RS256
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Header, Validation};
    use rsa::pkcs1::EncodeRsaPrivateKey;

    #[test]
    fn signs_what_the_crate_verifies_and_the_same_bytes_as_its_own_signer() {
        install();
        let private = rsa::PrivateKey::new(&mut rand::rng(), 2048).unwrap();
        let der = private.to_pkcs1_der().unwrap();
        let key = EncodingKey::from_rsa_der(der.as_bytes());
        let claims = serde_json::json!({ "sub": "s", "aud": "a", "exp": 4_000_000_000_i64 });

        let ours = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key).unwrap();
        let theirs = (aws_lc::DEFAULT_PROVIDER.signer_factory)(&Algorithm::RS256, &key).unwrap();
        let (message, sig) = ours.rsplit_once('.').unwrap();

        use base64::Engine;
        let expected = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(theirs.sign(message.as_bytes()));
        assert_eq!(sig, expected, "PKCS#1 v1.5 is deterministic: same key, same message, same bytes");
        let public = DecodingKey::from_rsa_der(&{
            use rsa::pkcs1::EncodeRsaPublicKey;
            private.to_public_key().to_pkcs1_der().unwrap().into_vec()
        });
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&["a"]);
        jsonwebtoken::decode::<serde_json::Value>(&ours, &public, &validation).unwrap();
        let digest: [u8; 32] = Sha256::digest(der.as_bytes()).into();
        assert_eq!(PARSED.read().unwrap().iter().filter(|(d, _)| *d == digest).count(), 1, "parsed once, cached once");
    }
}
