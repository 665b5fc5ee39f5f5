-- OpenID Connect provider: signing keys, clients (one per app), authorization codes, tokens.

-- RS256 signing keys. The newest key without retired_at signs; every key whose publish_until
-- is unset or in the future is listed in the JWKS (old keys stay until the tokens they signed expire).
CREATE TABLE oidc_keys (
    kid TEXT PRIMARY KEY NOT NULL,
    private_key TEXT NOT NULL, -- PKCS#1 DER, base64
    public_jwk TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    retired_at TIMESTAMP,
    publish_until TIMESTAMP
);

-- "Sign-in with OpenID Connect" of an app. Secrets are stored as SHA-256 only; public clients have none.
CREATE TABLE oidc_clients (
    app_id TEXT PRIMARY KEY NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    org_id TEXT NOT NULL REFERENCES organizations (id),
    client_id TEXT NOT NULL UNIQUE,
    secret_hash TEXT,
    public_client BOOLEAN NOT NULL,
    redirect_uris TEXT NOT NULL,
    post_logout_redirect_uris TEXT NOT NULL DEFAULT '',
    initiate_login_uri TEXT,
    access_token_ttl BIGINT NOT NULL,
    id_token_ttl BIGINT NOT NULL,
    refresh_token_ttl BIGINT NOT NULL,
    failed_auths BIGINT NOT NULL DEFAULT 0,
    failed_auths_since TIMESTAMP,
    created_at TIMESTAMP NOT NULL,
    secret_rotated_at TIMESTAMP
);
CREATE INDEX oidc_clients_org ON oidc_clients (org_id);

-- Authorization codes: single use, 60 seconds, bound to client, redirect URI and PKCE challenge.
CREATE TABLE oidc_codes (
    code_hash TEXT PRIMARY KEY NOT NULL,
    grant_id TEXT NOT NULL,
    app_id TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    org_id TEXT NOT NULL,
    membership_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    redirect_uri TEXT NOT NULL,
    code_challenge TEXT,
    nonce TEXT,
    scope TEXT NOT NULL,
    auth_time TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    used_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX oidc_codes_expires ON oidc_codes (expires_at);

-- Opaque access and refresh tokens (SHA-256 stored). One grant_id per code: the whole chain of
-- refresh tokens it led to, revoked together on a replay.
CREATE TABLE oidc_tokens (
    token_hash TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    grant_id TEXT NOT NULL,
    app_id TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    org_id TEXT NOT NULL,
    membership_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    auth_time TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    used_at TIMESTAMP,
    revoked_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX oidc_tokens_grant ON oidc_tokens (grant_id);
CREATE INDEX oidc_tokens_membership ON oidc_tokens (membership_id, app_id);
CREATE INDEX oidc_tokens_app ON oidc_tokens (app_id, kind);
CREATE INDEX oidc_tokens_expires ON oidc_tokens (expires_at);
