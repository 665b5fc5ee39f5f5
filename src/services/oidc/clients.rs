//! OpenID Connect clients: an app of the organization with "Sign-in with OpenID Connect" on.
//! Confidential clients get a secret shown once (only its SHA-256 is stored), public clients
//! none (they must use PKCE). Failed client authentications are counted in the database, so
//! that the throttle holds across instances.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use diesel::prelude::*;

use crate::db::models::{OidcClient, Organization};
use crate::db::schema::oidc_clients;
use crate::db::{self, DbConnection};
use crate::domain::oidc::{self, ACCESS_TTL, ID_TTL, REFRESH_TTL};
use crate::domain::token::{PlainToken, TokenKind, constant_time_eq, hash_token};
use crate::services::apps::{self, AppSummary};
use crate::services::audit::{self, action};
use crate::services::{Actor, FieldErrors, ServiceError};

/// Every secret starts with this, so that secret scanners and people recognize it.
pub const SECRET_PREFIX: &str = TokenKind::ClientSecret.prefix();
/// Failed authentications allowed per client within [`FAILURE_WINDOW`].
pub const MAX_FAILURES: i64 = 10;
/// The window of the failure count.
pub const FAILURE_WINDOW: time::Duration = time::Duration::minutes(5);

/// A client secret in plain text, shown once (a [`PlainToken`] of kind `ClientSecret`).
pub type PlainSecret = PlainToken;

fn new_client_id() -> String {
    let mut bytes = [0u8; 16];
    rand::fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The client settings as an admin typed them.
#[derive(Debug, Clone, Default)]
pub struct ClientInput {
    pub redirect_uris: String,
    pub post_logout_redirect_uris: String,
    pub initiate_login_uri: String,
    pub public_client: bool,
    pub access_token_ttl: String,
    pub id_token_ttl: String,
    pub refresh_token_ttl: String,
}

impl ClientInput {
    /// The form of an existing client.
    pub fn of(c: &OidcClient) -> ClientInput {
        ClientInput {
            redirect_uris: c.redirect_uris.clone(),
            post_logout_redirect_uris: c.post_logout_redirect_uris.clone(),
            initiate_login_uri: c.initiate_login_uri.clone().unwrap_or_default(),
            public_client: c.public_client,
            access_token_ttl: c.access_token_ttl.to_string(),
            id_token_ttl: c.id_token_ttl.to_string(),
            refresh_token_ttl: c.refresh_token_ttl.to_string(),
        }
    }
}

/// A checked [`ClientInput`].
#[derive(Debug, Clone)]
pub struct ValidClient {
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub initiate_login_uri: Option<String>,
    pub public_client: bool,
    pub access_token_ttl: i64,
    pub id_token_ttl: i64,
    pub refresh_token_ttl: i64,
}

/// Checks what an admin typed.
pub fn validate(input: &ClientInput) -> Result<ValidClient, FieldErrors> {
    let mut errors = FieldErrors::default();
    let redirect_uris = oidc::parse_uri_list(&input.redirect_uris)
        .map_err(|p| errors.add("redirect_uris", p.message_key()))
        .unwrap_or_default();
    if redirect_uris.is_empty() && errors.get("redirect_uris").is_none() {
        errors.add("redirect_uris", "oidc.redirect_required");
    }
    let post_logout_redirect_uris = oidc::parse_uri_list(&input.post_logout_redirect_uris)
        .map_err(|p| errors.add("post_logout_redirect_uris", p.message_key()))
        .unwrap_or_default();
    let initiate_login_uri = match input.initiate_login_uri.trim() {
        "" => None,
        s => oidc::check_registered_uri(s).map_err(|p| errors.add("initiate_login_uri", p.message_key())).ok(),
    };
    let mut ttl = |field: &'static str, value: &str, bounds| {
        oidc::parse_ttl(value, bounds).unwrap_or_else(|| {
            errors.add(field, "oidc.ttl_invalid");
            bounds.0
        })
    };
    let access_token_ttl = ttl("access_token_ttl", &input.access_token_ttl, ACCESS_TTL);
    let id_token_ttl = ttl("id_token_ttl", &input.id_token_ttl, ID_TTL);
    let refresh_token_ttl = ttl("refresh_token_ttl", &input.refresh_token_ttl, REFRESH_TTL);
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(ValidClient {
        redirect_uris,
        post_logout_redirect_uris,
        initiate_login_uri,
        public_client: input.public_client,
        access_token_ttl,
        id_token_ttl,
        refresh_token_ttl,
    })
}

/// The client of an app, if sign-in with OpenID Connect is on.
pub fn for_app(conn: &mut DbConnection, org_id: &str, app_id: &str) -> QueryResult<Option<OidcClient>> {
    oidc_clients::table
        .filter(oidc_clients::org_id.eq(org_id))
        .filter(oidc_clients::app_id.eq(app_id))
        .select(OidcClient::as_select())
        .first(conn)
        .optional()
}

/// The client with this `client_id` in the organization.
pub fn by_client_id(conn: &mut DbConnection, org_id: &str, client_id: &str) -> QueryResult<Option<OidcClient>> {
    if client_id.is_empty() || client_id.len() > 100 {
        return Ok(None);
    }
    oidc_clients::table
        .filter(oidc_clients::client_id.eq(client_id))
        .filter(oidc_clients::org_id.eq(org_id))
        .select(OidcClient::as_select())
        .first(conn)
        .optional()
}

/// The initiate-login URIs of the organization's clients, by app id (for My Apps tiles).
pub fn login_uris(conn: &mut DbConnection, org_id: &str) -> QueryResult<Vec<(String, Option<String>)>> {
    oidc_clients::table
        .filter(oidc_clients::org_id.eq(org_id))
        .select((oidc_clients::app_id, oidc_clients::initiate_login_uri))
        .load(conn)
}

/// Turns sign-in with OpenID Connect on for an app. Returns the client and, for a
/// confidential client, its secret (shown once).
pub fn enable(
    conn: &mut DbConnection,
    org_id: &str,
    app_id: &str,
    valid: &ValidClient,
    actor: &Actor,
) -> Result<(OidcClient, Option<PlainSecret>), ServiceError> {
    let secret = (!valid.public_client).then(|| PlainToken::new(TokenKind::ClientSecret));
    let row = OidcClient {
        app_id: app_id.to_owned(),
        org_id: org_id.to_owned(),
        client_id: new_client_id(),
        secret_hash: secret.as_ref().map(|s| hash_token(s.expose())),
        public_client: valid.public_client,
        redirect_uris: valid.redirect_uris.join("\n"),
        post_logout_redirect_uris: valid.post_logout_redirect_uris.join("\n"),
        initiate_login_uri: valid.initiate_login_uri.clone(),
        access_token_ttl: valid.access_token_ttl,
        id_token_ttl: valid.id_token_ttl,
        refresh_token_ttl: valid.refresh_token_ttl,
        failed_auths: 0,
        failed_auths_since: None,
        created_at: db::now(),
        secret_rotated_at: None,
    };
    db::write_tx(conn, |conn| {
        apps::find(conn, org_id, app_id)?.ok_or(ServiceError::NotFound)?;
        if for_app(conn, org_id, app_id)?.is_some() {
            return Err(ServiceError::WrongState);
        }
        diesel::insert_into(oidc_clients::table).values(&row).execute(conn)?;
        let detail = serde_json::json!({ "client_id": row.client_id, "public": row.public_client }).to_string();
        audit::record(conn, actor, Some(org_id), action::OIDC_CLIENT_ENABLED, Some(app_id), Some(&detail))?;
        Ok(())
    })?;
    Ok((row, secret))
}

/// Saves the settings of an app's client (the type, public or confidential, is kept: changing
/// it means turning sign-in off and on again).
pub fn update(
    conn: &mut DbConnection,
    org_id: &str,
    app_id: &str,
    valid: &ValidClient,
    actor: &Actor,
) -> Result<OidcClient, ServiceError> {
    db::write_tx(conn, |conn| {
        for_app(conn, org_id, app_id)?.ok_or(ServiceError::NotFound)?;
        diesel::update(oidc_clients::table.find(app_id))
            .set((
                oidc_clients::redirect_uris.eq(valid.redirect_uris.join("\n")),
                oidc_clients::post_logout_redirect_uris.eq(valid.post_logout_redirect_uris.join("\n")),
                oidc_clients::initiate_login_uri.eq(&valid.initiate_login_uri),
                oidc_clients::access_token_ttl.eq(valid.access_token_ttl),
                oidc_clients::id_token_ttl.eq(valid.id_token_ttl),
                oidc_clients::refresh_token_ttl.eq(valid.refresh_token_ttl),
            ))
            .execute(conn)?;
        audit::record(conn, actor, Some(org_id), action::OIDC_CLIENT_UPDATED, Some(app_id), None)?;
        for_app(conn, org_id, app_id)?.ok_or(ServiceError::NotFound)
    })
}

/// Turns sign-in with OpenID Connect off: the client, its codes and tokens are deleted.
pub fn disable(conn: &mut DbConnection, org_id: &str, app_id: &str, actor: &Actor) -> Result<(), ServiceError> {
    use crate::db::schema::{oidc_codes, oidc_tokens};
    db::write_tx(conn, |conn| {
        for_app(conn, org_id, app_id)?.ok_or(ServiceError::NotFound)?;
        diesel::delete(oidc_tokens::table.filter(oidc_tokens::app_id.eq(app_id))).execute(conn)?;
        diesel::delete(oidc_codes::table.filter(oidc_codes::app_id.eq(app_id))).execute(conn)?;
        diesel::delete(oidc_clients::table.find(app_id)).execute(conn)?;
        audit::record(conn, actor, Some(org_id), action::OIDC_CLIENT_DISABLED, Some(app_id), None)?;
        Ok(())
    })
}

/// A new secret for a confidential client; the old one stops working at once.
pub fn rotate_secret(
    conn: &mut DbConnection,
    org_id: &str,
    app_id: &str,
    actor: &Actor,
) -> Result<PlainSecret, ServiceError> {
    let secret = PlainToken::new(TokenKind::ClientSecret);
    db::write_tx(conn, |conn| {
        let client = for_app(conn, org_id, app_id)?.ok_or(ServiceError::NotFound)?;
        if client.public_client {
            return Err(ServiceError::WrongState);
        }
        diesel::update(oidc_clients::table.find(app_id))
            .set((
                oidc_clients::secret_hash.eq(Some(hash_token(secret.expose()))),
                oidc_clients::secret_rotated_at.eq(Some(db::now())),
                oidc_clients::failed_auths.eq(0),
            ))
            .execute(conn)?;
        audit::record(conn, actor, Some(org_id), action::OIDC_SECRET_ROTATED, Some(app_id), None)?;
        Ok(())
    })?;
    Ok(secret)
}

/// What `vestibule app create` prints.
pub struct CreatedClient {
    pub app: AppSummary,
    pub client_id: String,
    pub secret: Option<PlainSecret>,
}

fn org_for_cli(conn: &mut DbConnection, slug: &str) -> anyhow::Result<Organization> {
    crate::services::orgs::find_by_slug(conn, slug)?
        .ok_or_else(|| anyhow::anyhow!("no organization with the slug {slug:?}"))
}

fn cli_errors(errors: &FieldErrors) -> anyhow::Error {
    let tr = crate::i18n::Lang::En.tr();
    let text: Vec<String> = errors.0.iter().map(|(f, k)| format!("--{}: {}", f.replace('_', "-"), tr.t(k))).collect();
    anyhow::anyhow!("{}", text.join("; "))
}

/// `vestibule app create`: an app with sign-in with OpenID Connect on.
pub fn create_for_cli(
    conn: &mut DbConnection,
    slug: &str,
    name: &str,
    url: &str,
    redirect_uris: &[String],
    public_client: bool,
) -> anyhow::Result<CreatedClient> {
    let org = org_for_cli(conn, slug)?;
    let app_input = apps::AppInput { name: name.to_owned(), url: url.to_owned(), ..Default::default() };
    let valid_app = apps::validate(&app_input).map_err(|e| cli_errors(&e))?;
    let input = ClientInput { redirect_uris: redirect_uris.join("\n"), public_client, ..Default::default() };
    let valid = validate(&input).map_err(|e| {
        // No --redirect-uri is allowed from the command line (add them later in the console).
        if e.0.iter().all(|(_, k)| *k == "oidc.redirect_required") { None } else { Some(cli_errors(&e)) }
    });
    let valid = match valid {
        Ok(v) => v,
        Err(Some(e)) => return Err(e),
        Err(None) => ValidClient {
            redirect_uris: Vec::new(),
            post_logout_redirect_uris: Vec::new(),
            initiate_login_uri: None,
            public_client,
            access_token_ttl: ACCESS_TTL.0,
            id_token_ttl: ID_TTL.0,
            refresh_token_ttl: REFRESH_TTL.0,
        },
    };
    let actor = Actor::default();
    db::write_tx(conn, |conn| -> anyhow::Result<CreatedClient> {
        let app = apps::create(conn, &org.id, &valid_app, &actor).map_err(anyhow::Error::from)?;
        let (client, secret) = enable(conn, &org.id, &app.id, &valid, &actor).map_err(anyhow::Error::from)?;
        Ok(CreatedClient { app, client_id: client.client_id, secret })
    })
}

/// `vestibule app secret rotate`: a new secret for the client `client_id` of the org.
pub fn rotate_for_cli(conn: &mut DbConnection, slug: &str, client_id: &str) -> anyhow::Result<PlainSecret> {
    let org = org_for_cli(conn, slug)?;
    let client = by_client_id(conn, &org.id, client_id)?
        .ok_or_else(|| anyhow::anyhow!("no client {client_id:?} in the organization {slug:?}"))?;
    rotate_secret(conn, &org.id, &client.app_id, &Actor::default()).map_err(|e| match e {
        ServiceError::WrongState => anyhow::anyhow!("{client_id} is a public client: it has no secret"),
        other => anyhow::Error::from(other),
    })
}

/// How a client presented itself at the token or revocation endpoint.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub client_id: String,
    pub secret: Option<String>,
}

/// Why client authentication failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// Unknown client, wrong or missing secret.
    Invalid,
    /// Too many failures lately; retry after this many seconds.
    Throttled(u64),
}

/// Authenticates a client: confidential clients by secret (compared in constant time),
/// public clients by id alone. Failures are counted atomically in the database.
pub fn authenticate(conn: &mut DbConnection, org_id: &str, creds: &Credentials) -> Result<OidcClient, AuthFailure> {
    let client = by_client_id(conn, org_id, &creds.client_id).ok().flatten().ok_or(AuthFailure::Invalid)?;
    let now = db::now();
    if client.failed_auths >= MAX_FAILURES
        && let Some(since) = client.failed_auths_since.filter(|s| *s > now - FAILURE_WINDOW)
    {
        let wait = (since + FAILURE_WINDOW - now).whole_seconds().max(1);
        return Err(AuthFailure::Throttled(wait.unsigned_abs()));
    }
    let ok = match (&client.secret_hash, &creds.secret) {
        (None, None) => client.public_client,
        (Some(stored), Some(given)) if given.len() <= 200 => {
            constant_time_eq(hash_token(given).as_bytes(), stored.as_bytes())
        }
        _ => false,
    };
    if ok {
        return Ok(client);
    }
    let _ = count_failure(conn, &client.app_id);
    Err(AuthFailure::Invalid)
}

/// Counts one failed authentication: restarts the window when it is over, then adds one,
/// each an atomic UPDATE so that concurrent instances never lose a count.
fn count_failure(conn: &mut DbConnection, app_id: &str) -> QueryResult<()> {
    let now = db::now();
    db::write_tx(conn, |conn| {
        diesel::update(oidc_clients::table.find(app_id).filter(
            oidc_clients::failed_auths_since.is_null().or(oidc_clients::failed_auths_since.le(now - FAILURE_WINDOW)),
        ))
        .set((oidc_clients::failed_auths.eq(0), oidc_clients::failed_auths_since.eq(Some(now))))
        .execute(conn)?;
        diesel::update(oidc_clients::table.find(app_id))
            .set(oidc_clients::failed_auths.eq(oidc_clients::failed_auths + 1))
            .execute(conn)?;
        Ok(())
    })
}
