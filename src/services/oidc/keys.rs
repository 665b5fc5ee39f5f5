//! Signing keys of the provider: created at first start, kept in `oidc_keys`, rotated by
//! `vestibule keys rotate`, published in the JWKS, and cached in memory by [`Keyring`].
//!
//! Every instance re-reads the keys at least once a minute, so a rotation made by the command
//! line (or another instance) is picked up without a restart; the old public key stays
//! published [`KEY_OVERLAP_SECONDS`] after a rotation, longer than any ID token it signed lives.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use diesel::prelude::*;
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs1::EncodeRsaPrivateKey;

use crate::db::models::OidcKey;
use crate::db::schema::oidc_keys;
use crate::db::{self, DbConnection};
use crate::domain::oidc::KEY_OVERLAP_SECONDS;
use crate::services::oidc::signer;

/// Size of new RSA keys.
const KEY_BITS: usize = 2048;
/// How long an instance trusts its cached keys before reading them again.
pub const RELOAD_EVERY: Duration = Duration::from_secs(60);

/// Generates an RSA key pair and its row (kid, private key, public JWK).
pub fn generate() -> anyhow::Result<OidcKey> {
    signer::install();
    let private =
        rsa::PrivateKey::new(&mut rand::rng(), KEY_BITS).map_err(|e| anyhow::anyhow!("generating an RSA key: {e}"))?;
    let der = private.to_pkcs1_der().map_err(|e| anyhow::anyhow!("encoding the RSA key: {e}"))?;
    let kid = crate::domain::token::PlainToken::generate().expose().chars().take(16).collect::<String>();
    let encoding = EncodingKey::from_rsa_der(der.as_bytes());
    let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::RS256)?;
    jwk.common.key_id = Some(kid.clone());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    Ok(OidcKey {
        kid,
        private_key: STANDARD.encode(der.as_bytes()),
        public_jwk: serde_json::to_string(&jwk)?,
        created_at: db::now(),
        retired_at: None,
        publish_until: None,
    })
}

/// Creates the first signing key when there is none that signs (first start).
pub fn ensure_signing_key(conn: &mut DbConnection) -> anyhow::Result<()> {
    signer::install();
    let active: i64 = oidc_keys::table.filter(oidc_keys::retired_at.is_null()).count().get_result(conn)?;
    if active == 0 {
        let key = generate()?;
        diesel::insert_into(oidc_keys::table).values(&key).execute(conn)?;
        tracing::info!(kid = %key.kid, "created the OpenID Connect signing key");
    }
    Ok(())
}

/// `vestibule keys rotate`: a new key signs from now on; the keys it replaces stay published
/// until every token they signed has expired. Returns the new `kid`.
pub fn rotate(conn: &mut DbConnection) -> anyhow::Result<String> {
    let key = generate()?;
    let now = db::now();
    db::write_tx(conn, |conn| -> anyhow::Result<()> {
        diesel::update(oidc_keys::table.filter(oidc_keys::retired_at.is_null()))
            .set((
                oidc_keys::retired_at.eq(Some(now)),
                oidc_keys::publish_until.eq(Some(now + time::Duration::seconds(KEY_OVERLAP_SECONDS))),
            ))
            .execute(conn)?;
        diesel::delete(oidc_keys::table.filter(oidc_keys::publish_until.lt(now))).execute(conn)?;
        diesel::insert_into(oidc_keys::table).values(&key).execute(conn)?;
        Ok(())
    })?;
    Ok(key.kid)
}

/// Keys as one instance uses them: the one that signs, and the published JWKS document.
pub struct KeySet {
    /// `kid` of the signing key.
    pub kid: String,
    signing: EncodingKey,
    /// The JWKS document, rendered once.
    pub jwks: Arc<str>,
    loaded: Instant,
}

impl KeySet {
    /// Reads the keys: the newest unretired one signs; every key still to be published is listed.
    pub fn load(conn: &mut DbConnection) -> anyhow::Result<KeySet> {
        signer::install();
        let now = db::now();
        let rows: Vec<OidcKey> = oidc_keys::table
            .filter(oidc_keys::publish_until.is_null().or(oidc_keys::publish_until.gt(now)))
            .order((oidc_keys::created_at.desc(), oidc_keys::kid.asc()))
            .select(OidcKey::as_select())
            .load(conn)?;
        let current = rows
            .iter()
            .find(|k| k.retired_at.is_none())
            .ok_or_else(|| anyhow::anyhow!("no OpenID Connect signing key (run `vestibule serve` once)"))?;
        let der = STANDARD.decode(&current.private_key)?;
        signer::warm(&der)?;
        let keys: Vec<Jwk> = rows.iter().filter_map(|k| serde_json::from_str(&k.public_jwk).ok()).collect();
        Ok(KeySet {
            kid: current.kid.clone(),
            signing: EncodingKey::from_rsa_der(&der),
            jwks: serde_json::to_string(&JwkSet { keys })?.into(),
            loaded: Instant::now(),
        })
    }

    /// Signs claims as an RS256 JWT with this set's key.
    pub fn sign<T: serde::Serialize>(&self, claims: &T) -> anyhow::Result<String> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &self.signing)?)
    }
}

/// The keys cached by one instance, read again when older than its reload interval
/// ([`RELOAD_EVERY`] unless configured).
pub struct Keyring {
    current: RwLock<Option<Arc<KeySet>>>,
    reload_every: Duration,
}

impl Default for Keyring {
    fn default() -> Self {
        Keyring::new(RELOAD_EVERY)
    }
}

impl Keyring {
    /// A keyring that reads the keys again after `reload_every`.
    pub fn new(reload_every: Duration) -> Keyring {
        Keyring { current: RwLock::new(None), reload_every }
    }

    /// The cached set, when it is fresh.
    pub fn fresh(&self) -> Option<Arc<KeySet>> {
        let guard = self.current.read().ok()?;
        guard.as_ref().filter(|k| k.loaded.elapsed() < self.reload_every).cloned()
    }

    /// Replaces the cached set.
    pub fn put(&self, set: KeySet) -> Arc<KeySet> {
        let set = Arc::new(set);
        if let Ok(mut guard) = self.current.write() {
            *guard = Some(set.clone());
        }
        set
    }

    /// The fresh set, reading the database when needed (blocking: call from a blocking thread).
    pub fn get(&self, conn: &mut DbConnection) -> anyhow::Result<Arc<KeySet>> {
        match self.fresh() {
            Some(set) => Ok(set),
            None => Ok(self.put(KeySet::load(conn)?)),
        }
    }

    /// Forgets the cached set (after a rotation made by this process).
    pub fn invalidate(&self) {
        if let Ok(mut guard) = self.current.write() {
            *guard = None;
        }
    }
}
