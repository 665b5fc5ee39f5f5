//! Authorization codes and tokens: issuing a code, exchanging it, refreshing (with rotation and
//! replay detection), revoking, and the claims of the ID token and userinfo.
//!
//! Access and refresh tokens are opaque random strings; only their SHA-256 is stored. Every
//! code starts a *grant*: the tokens it led to share its id, so that a replayed code or
//! refresh token revokes the whole chain at once.

use diesel::prelude::*;
use serde::Serialize;
use time::PrimitiveDateTime;

use crate::db::models::{Membership, OidcClient, OidcCode, OidcToken, Organization, User};
use crate::db::schema::{group_members, oidc_codes, oidc_tokens, org_groups};
use crate::db::{self, DbConnection};
use crate::domain::oidc::{CODE_TTL_SECONDS, has_scope, pkce_s256_matches, subject};
use crate::domain::token::{PlainToken, hash_token, looks_like_token};
use crate::services::Actor;
use crate::services::audit::{self, action};
use crate::services::oidc::access::{self, Decision};

/// Token kinds in `oidc_tokens.kind`.
pub mod kind {
    pub const ACCESS: &str = "access";
    pub const REFRESH: &str = "refresh";
}

/// What the person agreed to at the authorization endpoint.
#[derive(Debug, Clone)]
pub struct Authorized {
    pub org_id: String,
    pub app_id: String,
    pub membership_id: String,
    pub user_id: String,
    pub redirect_uri: String,
    pub code_challenge: Option<String>,
    pub nonce: Option<String>,
    pub scope: String,
    pub auth_time: PrimitiveDateTime,
    /// How the person signed in (RFC 8176 `amr` values, space-separated), when known.
    pub amr: Option<String>,
}

/// Stores a new single-use code (60 seconds) and returns it in plain text.
pub fn issue_code(conn: &mut DbConnection, a: &Authorized) -> QueryResult<String> {
    let plain = PlainToken::generate();
    let now = db::now();
    let row = OidcCode {
        code_hash: plain.hash(),
        grant_id: db::new_id(),
        app_id: a.app_id.clone(),
        org_id: a.org_id.clone(),
        membership_id: a.membership_id.clone(),
        user_id: a.user_id.clone(),
        redirect_uri: a.redirect_uri.clone(),
        code_challenge: a.code_challenge.clone(),
        nonce: a.nonce.clone(),
        scope: a.scope.clone(),
        auth_time: a.auth_time,
        expires_at: now + time::Duration::seconds(CODE_TTL_SECONDS),
        used_at: None,
        created_at: now,
        amr: a.amr.clone(),
    };
    diesel::insert_into(oidc_codes::table).values(&row).execute(conn)?;
    Ok(plain.expose().to_owned())
}

/// An RFC 6749 §5.2 error of the token endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantError {
    pub code: &'static str,
    pub description: &'static str,
}

fn invalid_grant(description: &'static str) -> GrantError {
    GrantError { code: "invalid_grant", description }
}

impl From<diesel::result::Error> for GrantError {
    fn from(e: diesel::result::Error) -> Self {
        tracing::error!(error = %e, "token endpoint database error");
        GrantError { code: "server_error", description: "temporarily unavailable" }
    }
}

/// The claims of an ID token (and, without the token-only ones, of userinfo).
#[derive(Debug, Clone, Serialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// How the person signed in (RFC 8176): `pwd`, `otp`, `mfa`, `fed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amr: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preferred_username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_type: Option<String>,
}

/// The person's claims for `scope` (no token-only claims).
pub fn person_claims(
    conn: &mut DbConnection,
    issuer: &str,
    org_id: &str,
    m: &Membership,
    user: &User,
    scope: &str,
) -> QueryResult<Claims> {
    let groups = if has_scope(scope, "groups") {
        Some(
            group_members::table
                .inner_join(org_groups::table)
                .filter(org_groups::org_id.eq(org_id))
                .filter(group_members::membership_id.eq(&m.id))
                .order(org_groups::name.asc())
                .select(org_groups::name)
                .load(conn)?,
        )
    } else {
        None
    };
    let profile = has_scope(scope, "profile");
    let email = has_scope(scope, "email");
    Ok(Claims {
        iss: issuer.to_owned(),
        sub: subject(org_id, &user.id),
        aud: None,
        exp: None,
        iat: None,
        auth_time: None,
        nonce: None,
        amr: None,
        email: email.then(|| user.email.clone()),
        email_verified: email.then_some(user.email_verified),
        name: profile.then(|| user.display_name.clone()),
        preferred_username: profile.then(|| user.email.clone()),
        groups,
        user_type: profile.then(|| m.user_type.to_string()),
    })
}

/// Tokens ready to send, with the ID token claims still to be signed (outside the transaction).
#[derive(Debug)]
pub struct Issued {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in: i64,
    pub scope: String,
    pub id_claims: Claims,
}

fn unix(t: PrimitiveDateTime) -> i64 {
    t.assume_utc().unix_timestamp()
}

/// Stores an access token (and a refresh token with `offline_access`) of a grant.
#[allow(clippy::too_many_arguments)]
fn mint(
    conn: &mut DbConnection,
    client: &OidcClient,
    grant_id: &str,
    m: &Membership,
    scope: &str,
    auth_time: PrimitiveDateTime,
    amr: Option<&str>,
) -> QueryResult<(String, Option<String>)> {
    let now = db::now();
    let row = |kind: &str, hash: String, ttl: i64| OidcToken {
        token_hash: hash,
        kind: kind.to_owned(),
        grant_id: grant_id.to_owned(),
        app_id: client.app_id.clone(),
        org_id: client.org_id.clone(),
        membership_id: m.id.clone(),
        user_id: m.user_id.clone(),
        scope: scope.to_owned(),
        auth_time,
        expires_at: now + time::Duration::seconds(ttl),
        used_at: None,
        revoked_at: None,
        created_at: now,
        amr: amr.map(str::to_owned),
    };
    let access = PlainToken::generate();
    let mut rows = vec![row(kind::ACCESS, access.hash(), client.access_token_ttl)];
    let refresh = has_scope(scope, "offline_access").then(PlainToken::generate);
    if let Some(r) = &refresh {
        rows.push(row(kind::REFRESH, r.hash(), client.refresh_token_ttl));
    }
    // One statement per row: batch inserts are not available over MultiConnection.
    for r in &rows {
        diesel::insert_into(oidc_tokens::table).values(r).execute(conn)?;
    }
    Ok((access.expose().to_owned(), refresh.map(|r| r.expose().to_owned())))
}

/// Revokes every token of a grant.
pub fn revoke_grant(conn: &mut DbConnection, grant_id: &str) -> QueryResult<usize> {
    diesel::update(
        oidc_tokens::table.filter(oidc_tokens::grant_id.eq(grant_id)).filter(oidc_tokens::revoked_at.is_null()),
    )
    .set(oidc_tokens::revoked_at.eq(Some(db::now())))
    .execute(conn)
}

/// Finishes an exchange: the person must still have access; then tokens and claims.
#[allow(clippy::too_many_arguments)]
fn finish(
    conn: &mut DbConnection,
    org: &Organization,
    client: &OidcClient,
    issuer: &str,
    grant_id: &str,
    user_id: &str,
    scope: &str,
    auth_time: PrimitiveDateTime,
    amr: Option<String>,
    nonce: Option<String>,
    actor: &Actor,
) -> Result<Issued, GrantError> {
    let (m, user) = match access::decide(conn, org, &client.app_id, user_id)? {
        Decision::Allowed { membership, user } => (membership, user),
        _ => {
            revoke_grant(conn, grant_id)?;
            let detail = serde_json::json!({ "app_id": client.app_id, "at": "token" }).to_string();
            let mut actor = actor.clone();
            actor.user_id = Some(user_id.to_owned());
            audit::record(conn, &actor, Some(&org.id), action::OIDC_ACCESS_DENIED, Some(user_id), Some(&detail))?;
            return Err(invalid_grant("the person no longer has access to this app"));
        }
    };
    let (access_token, refresh_token) = mint(conn, client, grant_id, &m, scope, auth_time, amr.as_deref())?;
    let now = db::now();
    let mut id_claims = person_claims(conn, issuer, &org.id, &m, &user, scope)?;
    id_claims.aud = Some(client.client_id.clone());
    id_claims.iat = Some(unix(now));
    id_claims.exp = Some(unix(now) + client.id_token_ttl);
    id_claims.auth_time = Some(unix(auth_time));
    id_claims.nonce = nonce;
    id_claims.amr = amr.map(|a| a.split_whitespace().map(str::to_owned).collect());
    Ok(Issued { access_token, refresh_token, expires_in: client.access_token_ttl, scope: scope.to_owned(), id_claims })
}

/// `grant_type=authorization_code`: single use, bound to the client, the redirect URI and the
/// PKCE verifier, 60 seconds. A second use revokes everything the first one issued.
pub fn exchange_code(
    conn: &mut DbConnection,
    client: &OidcClient,
    issuer: &str,
    code: &str,
    redirect_uri: &str,
    verifier: Option<&str>,
    actor: &Actor,
) -> Result<Issued, GrantError> {
    if !looks_like_token(code) {
        return Err(invalid_grant("unknown, expired or used code"));
    }
    let hash = hash_token(code);
    // Failures after the code was claimed still commit: the code stays used, and a replay's
    // revocation and audit event are kept.
    db::write_tx(conn, |conn| {
        Ok::<_, GrantError>(exchange_in_tx(conn, client, issuer, &hash, redirect_uri, verifier, actor))
    })?
}

fn exchange_in_tx(
    conn: &mut DbConnection,
    client: &OidcClient,
    issuer: &str,
    hash: &str,
    redirect_uri: &str,
    verifier: Option<&str>,
    actor: &Actor,
) -> Result<Issued, GrantError> {
    {
        let row: OidcCode = oidc_codes::table
            .find(hash)
            .select(OidcCode::as_select())
            .first(conn)
            .optional()?
            .ok_or_else(|| invalid_grant("unknown, expired or used code"))?;
        let now = db::now();
        let claimed = diesel::update(oidc_codes::table.find(hash).filter(oidc_codes::used_at.is_null()))
            .set(oidc_codes::used_at.eq(Some(now)))
            .execute(conn)?;
        if claimed != 1 {
            // Replay: whoever holds the tokens of the first use loses them too.
            let n = revoke_grant(conn, &row.grant_id)?;
            let detail = serde_json::json!({ "app_id": row.app_id, "kind": "code", "revoked": n }).to_string();
            audit::record(conn, actor, Some(&row.org_id), action::OIDC_REPLAY, Some(&row.user_id), Some(&detail))?;
            return Err(invalid_grant("unknown, expired or used code"));
        }
        if row.app_id != client.app_id || row.expires_at <= now {
            return Err(invalid_grant("unknown, expired or used code"));
        }
        if row.redirect_uri != redirect_uri {
            return Err(invalid_grant("redirect_uri does not match the authorization request"));
        }
        match (&row.code_challenge, verifier) {
            (Some(challenge), Some(v)) if pkce_s256_matches(v, challenge) => {}
            (None, None) => {}
            _ => return Err(invalid_grant("PKCE verification failed")),
        }
        let org = orgs_by_id(conn, &row.org_id)?;
        finish(
            conn,
            &org,
            client,
            issuer,
            &row.grant_id,
            &row.user_id,
            &row.scope,
            row.auth_time,
            row.amr,
            row.nonce,
            actor,
        )
    }
}

fn orgs_by_id(conn: &mut DbConnection, org_id: &str) -> QueryResult<Organization> {
    use crate::db::schema::organizations;
    organizations::table.find(org_id).select(Organization::as_select()).first(conn)
}

/// `grant_type=refresh_token`: the token is used up and a new one issued (rotation); a used
/// token presented again revokes the whole chain. Access is decided again.
pub fn refresh(
    conn: &mut DbConnection,
    client: &OidcClient,
    issuer: &str,
    token: &str,
    scope: Option<&str>,
    actor: &Actor,
) -> Result<Issued, GrantError> {
    if !looks_like_token(token) {
        return Err(invalid_grant("unknown, expired or revoked refresh token"));
    }
    let hash = hash_token(token);
    db::write_tx(conn, |conn| Ok::<_, GrantError>(refresh_in_tx(conn, client, issuer, &hash, scope, actor)))?
}

fn refresh_in_tx(
    conn: &mut DbConnection,
    client: &OidcClient,
    issuer: &str,
    hash: &str,
    scope: Option<&str>,
    actor: &Actor,
) -> Result<Issued, GrantError> {
    {
        let row: OidcToken = oidc_tokens::table
            .find(hash)
            .filter(oidc_tokens::kind.eq(kind::REFRESH))
            .filter(oidc_tokens::app_id.eq(&client.app_id))
            .select(OidcToken::as_select())
            .first(conn)
            .optional()?
            .ok_or_else(|| invalid_grant("unknown, expired or revoked refresh token"))?;
        let now = db::now();
        if row.revoked_at.is_some() || row.expires_at <= now {
            return Err(invalid_grant("unknown, expired or revoked refresh token"));
        }
        let claimed = diesel::update(oidc_tokens::table.find(hash).filter(oidc_tokens::used_at.is_null()))
            .set(oidc_tokens::used_at.eq(Some(now)))
            .execute(conn)?;
        if claimed != 1 {
            let n = revoke_grant(conn, &row.grant_id)?;
            let detail = serde_json::json!({ "app_id": row.app_id, "kind": "refresh", "revoked": n }).to_string();
            audit::record(conn, actor, Some(&row.org_id), action::OIDC_REPLAY, Some(&row.user_id), Some(&detail))?;
            return Err(invalid_grant("unknown, expired or revoked refresh token"));
        }
        let scope = match scope.map(str::trim).filter(|s| !s.is_empty()) {
            None => row.scope.clone(),
            Some(asked) => {
                let asked = crate::domain::oidc::normalize_scope(asked);
                if asked.iter().any(|s| !has_scope(&row.scope, s)) {
                    return Err(GrantError { code: "invalid_scope", description: "scope wider than granted" });
                }
                asked.join(" ")
            }
        };
        let org = orgs_by_id(conn, &row.org_id)?;
        finish(conn, &org, client, issuer, &row.grant_id, &row.user_id, &scope, row.auth_time, row.amr, None, actor)
    }
}

/// RFC 7009: revokes a token of this client (a refresh token takes its whole chain along).
/// Unknown tokens are not an error.
pub fn revoke(conn: &mut DbConnection, client: &OidcClient, token: &str) -> QueryResult<()> {
    if !looks_like_token(token) {
        return Ok(());
    }
    let row: Option<OidcToken> = oidc_tokens::table
        .find(hash_token(token))
        .filter(oidc_tokens::app_id.eq(&client.app_id))
        .select(OidcToken::as_select())
        .first(conn)
        .optional()?;
    match row {
        Some(t) if t.kind == kind::REFRESH => revoke_grant(conn, &t.grant_id).map(|_| ()),
        Some(t) => diesel::update(oidc_tokens::table.find(&t.token_hash))
            .set(oidc_tokens::revoked_at.eq(Some(db::now())))
            .execute(conn)
            .map(|_| ()),
        None => Ok(()),
    }
}

/// Userinfo: the claims for a live access token whose holder still has access.
pub fn userinfo(conn: &mut DbConnection, org: &Organization, issuer: &str, token: &str) -> QueryResult<Option<Claims>> {
    if !looks_like_token(token) {
        return Ok(None);
    }
    let row: Option<OidcToken> = oidc_tokens::table
        .find(hash_token(token))
        .filter(oidc_tokens::kind.eq(kind::ACCESS))
        .filter(oidc_tokens::org_id.eq(&org.id))
        .filter(oidc_tokens::revoked_at.is_null())
        .filter(oidc_tokens::expires_at.gt(db::now()))
        .select(OidcToken::as_select())
        .first(conn)
        .optional()?;
    let Some(t) = row else { return Ok(None) };
    match access::decide(conn, org, &t.app_id, &t.user_id)? {
        Decision::Allowed { membership, user } => {
            Ok(Some(person_claims(conn, issuer, &org.id, &membership, &user, &t.scope)?))
        }
        _ => Ok(None),
    }
}

/// How long spent and expired codes and tokens are kept after they expire (a replayed one is
/// still recognised as spent, not just unknown, for that long).
const KEEP_EXPIRED: time::Duration = time::Duration::days(1);

/// Deletes codes and tokens that expired over a day ago (run by the daily job): without it the
/// two tables grow by a few rows at every sign-in to an app, for ever. Returns rows deleted.
pub fn purge_expired(conn: &mut DbConnection, now: PrimitiveDateTime) -> QueryResult<usize> {
    let before = now - KEEP_EXPIRED;
    let codes = diesel::delete(oidc_codes::table.filter(oidc_codes::expires_at.lt(before))).execute(conn)?;
    let tokens = diesel::delete(oidc_tokens::table.filter(oidc_tokens::expires_at.lt(before))).execute(conn)?;
    Ok(codes + tokens)
}
