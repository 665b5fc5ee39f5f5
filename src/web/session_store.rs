//! Server-side sessions for actix-session: the cookie holds a random key, the `sessions` table
//! holds its SHA-256, the state, and the idle and absolute expiry. Deleting rows ends sessions at
//! once (sign-out, blocking, removal).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix_session::storage::{LoadError, SaveError, SessionKey, SessionStore, UpdateError};
use actix_web::cookie::time::Duration as CookieDuration;
use time::PrimitiveDateTime;

use crate::db::models::SessionRow;
use crate::db::{self, Pool};
use crate::domain::token::{PlainToken, hash_token};
use crate::services::sessions::{self, IDLE_TTL};

/// The idle expiry is pushed forward at most once a minute, to spare the database a write per request.
const EXTEND_GRANULARITY: time::Duration = time::Duration::seconds(60);

/// Session state keys that carry who is signed in; never carried over into a new session.
const IDENTITY_KEYS: &[&str] = &["uid", "user", "sid", "ua", "ip"];

/// The session store backed by the `sessions` table.
#[derive(Clone)]
pub struct DbSessionStore {
    pool: Pool,
    /// Idle expiry last seen per session hash, so `update_ttl` can skip needless writes.
    seen: Arc<Mutex<HashMap<String, PrimitiveDateTime>>>,
}

impl DbSessionStore {
    /// A store over `pool`.
    pub fn new(pool: Pool) -> Self {
        DbSessionStore { pool, seen: Arc::new(Mutex::new(HashMap::new())) }
    }

    fn remember(&self, hash: &str, expires: PrimitiveDateTime) {
        if let Ok(mut seen) = self.seen.lock() {
            if seen.len() > 50_000 {
                seen.clear();
            }
            seen.insert(hash.to_owned(), expires);
        }
    }
}

/// Passes a store error on, first saying so when it is the database being unreachable (the
/// request then answers 503, not 500).
fn noted(e: anyhow::Error) -> anyhow::Error {
    if crate::error::cause_is_unavailable(&e) {
        crate::web::middleware::note_db_unavailable();
    }
    e
}

fn user_id_of(state: &HashMap<String, String>) -> Option<String> {
    state.get("uid").and_then(|v| serde_json::from_str::<String>(v).ok())
}

impl SessionStore for DbSessionStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<HashMap<String, String>>, LoadError> {
        let hash = hash_token(key.as_ref());
        let h = hash.clone();
        let row = db::with_conn(&self.pool, move |c| anyhow::Ok(sessions::load_live(c, &h)?))
            .await
            .map_err(|e| LoadError::Other(noted(e)))?;
        match row {
            None => Ok(None),
            Some(row) => {
                self.remember(&hash, row.expires_at);
                let state = serde_json::from_str(&row.state).map_err(|e| LoadError::Deserialization(e.into()))?;
                Ok(Some(state))
            }
        }
    }

    async fn save(&self, state: HashMap<String, String>, _ttl: &CookieDuration) -> Result<SessionKey, SaveError> {
        let key = PlainToken::generate();
        let hash = key.hash();
        let json = serde_json::to_string(&state).map_err(|e| SaveError::Serialization(e.into()))?;
        let now = db::now();
        let text = |k: &str| state.get(k).and_then(|v| serde_json::from_str::<String>(v).ok());
        let row = SessionRow {
            id_hash: hash,
            user_id: user_id_of(&state),
            state: json,
            created_at: now,
            expires_at: now + IDLE_TTL,
            user_agent: text("ua"),
            client_ip: text("ip"),
        };
        db::with_conn(&self.pool, move |c| anyhow::Ok(sessions::insert(c, &row)?))
            .await
            .map_err(|e| SaveError::Other(noted(e)))?;
        SessionKey::try_from(key.expose().to_owned()).map_err(|e| SaveError::Other(e.into()))
    }

    async fn update(
        &self,
        key: SessionKey,
        state: HashMap<String, String>,
        ttl: &CookieDuration,
    ) -> Result<SessionKey, UpdateError> {
        let hash = hash_token(key.as_ref());
        let json = serde_json::to_string(&state).map_err(|e| UpdateError::Serialization(e.into()))?;
        let uid = user_id_of(&state);
        let updated =
            db::with_conn(&self.pool, move |c| anyhow::Ok(sessions::update_state(c, &hash, &json, uid.as_deref())?))
                .await
                .map_err(|e| UpdateError::Other(noted(e)))?;
        if !updated {
            // The row expired or was revoked (sign-out, blocking, password change) while this
            // request ran: start a fresh, anonymous session. Keeping the identity would sign a
            // revoked session back in under a new key.
            let mut state = state;
            for identity in IDENTITY_KEYS {
                state.remove(*identity);
            }
            return self.save(state, ttl).await.map_err(|e| UpdateError::Other(anyhow::anyhow!("{e}")));
        }
        Ok(key)
    }

    async fn update_ttl(&self, key: &SessionKey, _ttl: &CookieDuration) -> Result<(), anyhow::Error> {
        let hash = hash_token(key.as_ref());
        let now = db::now();
        let fresh = now + IDLE_TTL;
        let known = self.seen.lock().ok().and_then(|s| s.get(&hash).copied());
        if known.is_some_and(|exp| exp > fresh - EXTEND_GRANULARITY) {
            return Ok(());
        }
        self.remember(&hash, fresh);
        db::with_conn(&self.pool, move |c| anyhow::Ok(sessions::extend(c, &hash, fresh)?)).await.map_err(noted)
    }

    async fn delete(&self, key: &SessionKey) -> Result<(), anyhow::Error> {
        let hash = hash_token(key.as_ref());
        if let Ok(mut seen) = self.seen.lock() {
            seen.remove(&hash);
        }
        db::with_conn(&self.pool, move |c| anyhow::Ok(sessions::delete(c, &hash)?)).await.map_err(noted)
    }
}
