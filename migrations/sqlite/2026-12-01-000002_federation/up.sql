-- Federation with a guest's home OpenID Connect provider (design §10).

-- The identity providers an organization trusts for some email domains. The client secret is
-- sealed with AES-256-GCM under a key derived from DATA_DIR/secret.key ("v1:" + base64 of
-- nonce and ciphertext): a dump of the database alone does not reveal it.
CREATE TABLE idp_providers (
    id TEXT PRIMARY KEY NOT NULL,
    org_id TEXT NOT NULL REFERENCES organizations (id),
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    issuer TEXT NOT NULL,
    client_id TEXT NOT NULL,
    client_secret TEXT NOT NULL,
    extra_scopes TEXT NOT NULL DEFAULT '',
    trust_email BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMP NOT NULL,
    UNIQUE (org_id, name)
);

-- The email domains each provider serves (lowercase, one row each).
CREATE TABLE idp_domains (
    idp_id TEXT NOT NULL REFERENCES idp_providers (id) ON DELETE CASCADE,
    domain TEXT NOT NULL,
    PRIMARY KEY (idp_id, domain)
);
CREATE INDEX idp_domains_domain ON idp_domains (domain);

-- An account that signs in through a provider: (issuer, subject) is the identity; never the email.
CREATE TABLE idp_bindings (
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id),
    provider_name TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (issuer, subject)
);
CREATE INDEX idp_bindings_user ON idp_bindings (user_id);

-- Authorization requests on their way to a provider: single use (deleted when the answer
-- comes back), ten minutes. In the database so that any instance can take the answer.
CREATE TABLE idp_requests (
    state_hash TEXT PRIMARY KEY NOT NULL,
    idp_id TEXT NOT NULL,
    nonce TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    purpose TEXT NOT NULL,
    invitation_id TEXT,
    target TEXT NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX idp_requests_expires ON idp_requests (expires_at);
