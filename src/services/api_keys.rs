//! API keys: create (the key is shown once; only its SHA-256 is stored), list, revoke,
//! authenticate; and the stored first answers of requests sent with an `Idempotency-Key`.

use diesel::prelude::*;
use time::PrimitiveDateTime;

use crate::db::models::{ApiKey, IdempotencyKey, Membership, Organization};
use crate::db::schema::{api_keys, idempotency_keys, memberships};
use crate::db::{self, DbConnection};
use crate::domain::token::{PlainToken, TokenKind, hash_token};
use crate::domain::{Role, has_control_chars};
use crate::services::audit::{self, action};
use crate::services::orgs::is_active;
use crate::services::{Actor, ServiceError};

/// Every key starts with this, so that secret scanners and people recognize it.
pub const KEY_PREFIX: &str = TokenKind::ApiKey.prefix();
/// How many characters of a key lists show.
const SHOWN_CHARS: usize = 12;
/// Idempotency keys are remembered this long.
pub const IDEMPOTENCY_WINDOW: time::Duration = time::Duration::hours(24);

/// True when the text has the shape of one of our keys (junk never reaches the database).
fn looks_like_key(s: &str) -> bool {
    TokenKind::ApiKey.matches(s)
}

/// Checks a key name: 1–100 characters, no control characters.
pub fn check_name(name: &str) -> Result<String, ServiceError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(ServiceError::field("name", "api.name_required"));
    }
    if name.chars().count() > 100 || has_control_chars(name) {
        return Err(ServiceError::field("name", "api.name_invalid"));
    }
    Ok(name.to_owned())
}

/// Creates a key of `org` acting as `created_by` (an admin of the org).
pub fn create(
    conn: &mut DbConnection,
    org: &Organization,
    name: &str,
    created_by: &str,
    expires_at: Option<PrimitiveDateTime>,
    actor: &Actor,
) -> Result<(ApiKey, PlainToken), ServiceError> {
    let name = check_name(name)?;
    let plain = PlainToken::new(TokenKind::ApiKey);
    let key = ApiKey {
        id: db::new_id(),
        org_id: org.id.clone(),
        name,
        key_hash: hash_token(plain.expose()),
        prefix: plain.expose().chars().take(SHOWN_CHARS).collect(),
        created_by: created_by.to_owned(),
        created_at: db::now(),
        expires_at,
        last_used_at: None,
        revoked_at: None,
    };
    db::write_tx(conn, |conn| {
        diesel::insert_into(api_keys::table).values(&key).execute(conn)?;
        audit::record(conn, actor, Some(&org.id), action::API_KEY_CREATED, Some(&key.id), Some(&key.name))?;
        Ok::<_, ServiceError>(())
    })?;
    Ok((key, plain))
}

/// The oldest active admin of an org: whom a key made from the command line acts as.
pub fn first_admin(conn: &mut DbConnection, org_id: &str) -> QueryResult<Option<Membership>> {
    let admins: Vec<Membership> = memberships::table
        .filter(memberships::org_id.eq(org_id))
        .filter(memberships::role.eq(Role::Admin))
        .order((memberships::created_at.asc(), memberships::id.asc()))
        .select(Membership::as_select())
        .load(conn)?;
    Ok(admins.into_iter().find(is_active))
}

/// `vestibule api-key create`: a key of the org `slug` acting as its oldest active admin,
/// valid `expires_days` days (or without end). Returns the key in plain text.
pub fn create_for_cli(
    conn: &mut DbConnection,
    slug: &str,
    name: &str,
    expires_days: Option<u32>,
) -> anyhow::Result<String> {
    let org = crate::services::orgs::find_by_slug(conn, slug)?
        .ok_or_else(|| anyhow::anyhow!("no organization with the slug {slug:?}"))?;
    let admin = first_admin(conn, &org.id)?.ok_or_else(|| anyhow::anyhow!("the organization has no active admin"))?;
    let expires_at = expires_days.map(|d| db::now() + time::Duration::days(i64::from(d.clamp(1, 3650))));
    let (_, plain) = create(conn, &org, name, &admin.user_id, expires_at, &Actor::default()).map_err(|e| match e {
        ServiceError::Invalid(errors) => anyhow::anyhow!(
            "--name: {}",
            errors.0.first().map(|(_, k)| crate::i18n::Lang::En.tr().t(k)).unwrap_or("invalid")
        ),
        other => anyhow::anyhow!(other),
    })?;
    Ok(plain.expose().to_owned())
}

/// The keys of an org, newest first (revoked ones included).
pub fn list(conn: &mut DbConnection, org_id: &str) -> QueryResult<Vec<ApiKey>> {
    api_keys::table
        .filter(api_keys::org_id.eq(org_id))
        .order((api_keys::created_at.desc(), api_keys::id.desc()))
        .select(ApiKey::as_select())
        .load(conn)
}

/// Revokes a key of the org; it stops working at once.
pub fn revoke(conn: &mut DbConnection, org_id: &str, key_id: &str, actor: &Actor) -> Result<(), ServiceError> {
    db::write_tx(conn, |conn| {
        let n = diesel::update(
            api_keys::table
                .filter(api_keys::org_id.eq(org_id))
                .filter(api_keys::id.eq(key_id))
                .filter(api_keys::revoked_at.is_null()),
        )
        .set(api_keys::revoked_at.eq(Some(db::now())))
        .execute(conn)?;
        if n != 1 {
            return Err(ServiceError::NotFound);
        }
        audit::record(conn, actor, Some(org_id), action::API_KEY_REVOKED, Some(key_id), None)?;
        Ok(())
    })
}

/// Whether a key can be used now: not revoked, not expired.
pub fn is_usable(key: &ApiKey, now: PrimitiveDateTime) -> bool {
    key.revoked_at.is_none() && key.expires_at.is_none_or(|at| at > now)
}

/// The key, its org and the membership it acts with, when `plain` is a usable key whose
/// creator is still an active admin of the org. Records the use (at most once a minute).
pub fn authenticate(conn: &mut DbConnection, plain: &str) -> QueryResult<Option<(ApiKey, Organization, Membership)>> {
    use crate::db::schema::organizations;
    if !looks_like_key(plain) {
        return Ok(None);
    }
    let now = db::now();
    let Some(key) = api_keys::table
        .filter(api_keys::key_hash.eq(hash_token(plain)))
        .select(ApiKey::as_select())
        .first(conn)
        .optional()?
        .filter(|k| is_usable(k, now))
    else {
        return Ok(None);
    };
    let org: Organization = organizations::table.find(&key.org_id).select(Organization::as_select()).first(conn)?;
    let Some(member) = crate::services::orgs::membership_of(conn, &key.org_id, &key.created_by)?
        .filter(|m| is_active(m) && m.role == Role::Admin)
    else {
        return Ok(None);
    };
    if key.last_used_at.is_none_or(|at| at < now - time::Duration::minutes(1)) {
        diesel::update(api_keys::table.find(&key.id)).set(api_keys::last_used_at.eq(Some(now))).execute(conn)?;
    }
    Ok(Some((key, org, member)))
}

/// `status` of an idempotency key reserved by a request still being processed.
pub const IN_PROGRESS: i64 = 0;
/// A reservation this old was abandoned (its instance died mid-request) and may be taken over.
pub const ABANDONED_AFTER: time::Duration = time::Duration::seconds(60);

/// What reserving an idempotency key found.
#[derive(Debug)]
pub enum Reservation {
    /// This request holds the key: process it, then [`store_answer`] or [`release_answer`].
    Reserved,
    /// The key already has an answer.
    Answered(IdempotencyKey),
    /// Another request holds the key and is still being processed; `same_body` tells whether
    /// it was sent with the same body.
    InProgress { same_body: bool },
}

/// Reserves `idem_key` of `key_id` for one request, atomically: one INSERT on the primary key
/// (api key, idempotency key), so that of concurrent requests with the same key exactly one
/// gets [`Reservation::Reserved`] and acts; the others see the answer or wait for it.
pub fn reserve_answer(
    conn: &mut DbConnection,
    org_id: &str,
    key_id: &str,
    idem_key: &str,
    request_hash: &str,
) -> QueryResult<Reservation> {
    let now = db::now();
    diesel::delete(idempotency_keys::table.filter(idempotency_keys::created_at.lt(now - IDEMPOTENCY_WINDOW)))
        .execute(conn)?;
    let row = IdempotencyKey {
        org_id: org_id.to_owned(),
        api_key_id: key_id.to_owned(),
        key: idem_key.to_owned(),
        request_hash: request_hash.to_owned(),
        status: IN_PROGRESS,
        response_body: String::new(),
        created_at: now,
    };
    let inserted = match conn {
        DbConnection::Sqlite(c) => {
            diesel::insert_into(idempotency_keys::table).values(&row).on_conflict_do_nothing().execute(c)?
        }
        DbConnection::Postgresql(c) => {
            diesel::insert_into(idempotency_keys::table).values(&row).on_conflict_do_nothing().execute(c)?
        }
    };
    let this_key = idempotency_keys::table
        .filter(idempotency_keys::api_key_id.eq(key_id))
        .filter(idempotency_keys::key.eq(idem_key));
    if inserted == 1 {
        return Ok(Reservation::Reserved);
    }
    let taken_over = diesel::update(
        this_key
            .filter(idempotency_keys::status.eq(IN_PROGRESS))
            .filter(idempotency_keys::request_hash.eq(request_hash))
            .filter(idempotency_keys::created_at.lt(now - ABANDONED_AFTER)),
    )
    .set(idempotency_keys::created_at.eq(now))
    .execute(conn)?;
    if taken_over == 1 {
        return Ok(Reservation::Reserved);
    }
    Ok(match this_key.select(IdempotencyKey::as_select()).first(conn).optional()? {
        Some(first) if first.status != IN_PROGRESS => Reservation::Answered(first),
        Some(first) => Reservation::InProgress { same_body: first.request_hash == request_hash },
        // Released a moment ago: the caller tries again.
        None => Reservation::InProgress { same_body: true },
    })
}

/// Stores the answer of the request that reserved the key.
pub fn store_answer(conn: &mut DbConnection, answer: &IdempotencyKey) -> QueryResult<()> {
    diesel::update(
        idempotency_keys::table
            .filter(idempotency_keys::api_key_id.eq(&answer.api_key_id))
            .filter(idempotency_keys::key.eq(&answer.key))
            .filter(idempotency_keys::status.eq(IN_PROGRESS)),
    )
    .set((idempotency_keys::status.eq(answer.status), idempotency_keys::response_body.eq(&answer.response_body)))
    .execute(conn)?;
    Ok(())
}

/// Gives a reserved key back without an answer (the request failed in a way worth retrying).
pub fn release_answer(conn: &mut DbConnection, key_id: &str, idem_key: &str) -> QueryResult<()> {
    diesel::delete(
        idempotency_keys::table
            .filter(idempotency_keys::api_key_id.eq(key_id))
            .filter(idempotency_keys::key.eq(idem_key))
            .filter(idempotency_keys::status.eq(IN_PROGRESS)),
    )
    .execute(conn)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_the_documented_shape() {
        let k = PlainToken::new(TokenKind::ApiKey);
        assert!(k.expose().starts_with("vst_"));
        assert!(looks_like_key(k.expose()));
        assert!(!looks_like_key("vst_short"));
        assert!(!looks_like_key(&k.expose().replace("vst_", "abc_")));
        assert_eq!(format!("{k:?}"), "PlainToken(ApiKey, …)");
    }
}
