//! Server-side sessions for actix-session: the cookie holds a random key, the `sessions` table
//! holds its SHA-256, the state, and the idle and absolute expiry. Deleting rows ends sessions at
//! once (sign-out, blocking, removal).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix_session::storage::{LoadError, SaveError, SessionKey, SessionStore, UpdateError};
use actix_web::cookie::time::Duration as CookieDuration;
use diesel::prelude::*;
use time::PrimitiveDateTime;

use crate::db::models::SessionRow;
use crate::db::schema::sessions;
use crate::db::{self, Pool};
use crate::domain::token::{PlainToken, hash_token};

/// A session lives at most this long, however active (design: absolute timeout 12 h).
pub const ABSOLUTE_TTL: time::Duration = time::Duration::hours(12);
/// Idle timeout: the session dies after this long without a request.
pub const IDLE_TTL: time::Duration = time::Duration::minutes(30);
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

fn user_id_of(state: &HashMap<String, String>) -> Option<String> {
    state.get("uid").and_then(|v| serde_json::from_str::<String>(v).ok())
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> anyhow::Result<T> + Send + 'static) -> anyhow::Result<T> {
    actix_web::web::block(f).await.map_err(|e| anyhow::anyhow!("blocking task failed: {e}"))?
}

impl SessionStore for DbSessionStore {
    async fn load(&self, key: &SessionKey) -> Result<Option<HashMap<String, String>>, LoadError> {
        let hash = hash_token(key.as_ref());
        let pool = self.pool.clone();
        let h = hash.clone();
        let row = blocking(move || {
            let mut conn = pool.get()?;
            let now = db::now();
            Ok(sessions::table
                .filter(sessions::id_hash.eq(&h))
                .filter(sessions::expires_at.gt(now))
                .filter(sessions::created_at.gt(now - ABSOLUTE_TTL))
                .select(SessionRow::as_select())
                .first(&mut conn)
                .optional()?)
        })
        .await
        .map_err(LoadError::Other)?;
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
        let pool = self.pool.clone();
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
        blocking(move || {
            let mut conn = pool.get()?;
            diesel::insert_into(sessions::table).values(&row).execute(&mut conn)?;
            // Opportunistic clean-up of long-dead rows keeps the table small without a cron job.
            diesel::delete(sessions::table.filter(sessions::expires_at.lt(now - time::Duration::days(1))))
                .execute(&mut conn)?;
            Ok(())
        })
        .await
        .map_err(SaveError::Other)?;
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
        let pool = self.pool.clone();
        let now = db::now();
        let updated = blocking(move || {
            let mut conn = pool.get()?;
            Ok(diesel::update(sessions::table.filter(sessions::id_hash.eq(&hash)).filter(sessions::expires_at.gt(now)))
                .set((sessions::state.eq(json), sessions::user_id.eq(uid), sessions::expires_at.eq(now + IDLE_TTL)))
                .execute(&mut conn)?)
        })
        .await
        .map_err(UpdateError::Other)?;
        if updated == 0 {
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
        let pool = self.pool.clone();
        blocking(move || {
            let mut conn = pool.get()?;
            diesel::update(sessions::table.filter(sessions::id_hash.eq(&hash)).filter(sessions::expires_at.gt(now)))
                .set(sessions::expires_at.eq(fresh))
                .execute(&mut conn)?;
            Ok(())
        })
        .await
    }

    async fn delete(&self, key: &SessionKey) -> Result<(), anyhow::Error> {
        let hash = hash_token(key.as_ref());
        if let Ok(mut seen) = self.seen.lock() {
            seen.remove(&hash);
        }
        let pool = self.pool.clone();
        blocking(move || {
            let mut conn = pool.get()?;
            diesel::delete(sessions::table.filter(sessions::id_hash.eq(&hash))).execute(&mut conn)?;
            Ok(())
        })
        .await
    }
}

/// Ends every session of a user (blocking, removal, "sign out everywhere").
pub fn end_all_sessions(conn: &mut db::DbConnection, user_id: &str) -> diesel::QueryResult<usize> {
    diesel::delete(sessions::table.filter(sessions::user_id.eq(user_id))).execute(conn)
}
