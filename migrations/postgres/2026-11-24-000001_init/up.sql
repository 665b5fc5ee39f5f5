-- Byte-order collation on the searched columns, so prefix ranges use the index as on SQLite.
CREATE TABLE organizations (
    id TEXT PRIMARY KEY NOT NULL,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    privacy_url TEXT,
    default_language TEXT NOT NULL DEFAULT 'en',
    invite_lifetime_days BIGINT NOT NULL DEFAULT 14,
    redirect_allowlist TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE users (
    id TEXT PRIMARY KEY NOT NULL,
    email TEXT COLLATE "C" NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    name_search TEXT COLLATE "C" NOT NULL,
    password_hash TEXT,
    email_verified BOOLEAN NOT NULL DEFAULT FALSE,
    language TEXT,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX users_name_search ON users (name_search);

CREATE TABLE memberships (
    id TEXT PRIMARY KEY NOT NULL,
    org_id TEXT NOT NULL REFERENCES organizations (id),
    user_id TEXT NOT NULL REFERENCES users (id),
    user_type TEXT NOT NULL,
    role TEXT NOT NULL DEFAULT 'none',
    state TEXT NOT NULL,
    blocked BOOLEAN NOT NULL DEFAULT FALSE,
    invited_by TEXT REFERENCES users (id),
    accepted_at TIMESTAMP,
    removed_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL,
    UNIQUE (org_id, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id);
CREATE INDEX memberships_org_created ON memberships (org_id, created_at, id);
CREATE INDEX memberships_org_type_created ON memberships (org_id, user_type, created_at, id);
CREATE INDEX memberships_org_state_created ON memberships (org_id, state, created_at, id);

CREATE TABLE invitations (
    id TEXT PRIMARY KEY NOT NULL,
    org_id TEXT NOT NULL REFERENCES organizations (id),
    membership_id TEXT NOT NULL REFERENCES memberships (id),
    email TEXT NOT NULL,
    display_name TEXT NOT NULL,
    message TEXT,
    redirect_url TEXT,
    user_type TEXT NOT NULL,
    language TEXT,
    token_hash TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    disclosed BOOLEAN NOT NULL DEFAULT FALSE,
    send_email BOOLEAN NOT NULL,
    invited_by TEXT REFERENCES users (id),
    code_hash TEXT,
    code_expires_at TIMESTAMP,
    code_attempts BIGINT NOT NULL DEFAULT 0,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    accepted_at TIMESTAMP,
    revoked_at TIMESTAMP
);
CREATE UNIQUE INDEX invitations_one_pending ON invitations (org_id, email) WHERE status = 'pending';
CREATE INDEX invitations_membership ON invitations (membership_id, created_at);

CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY NOT NULL,
    user_id TEXT REFERENCES users (id),
    state TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expires ON sessions (expires_at);

CREATE TABLE outbox (
    id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    org_id TEXT REFERENCES organizations (id),
    invitation_id TEXT REFERENCES invitations (id),
    recipient TEXT NOT NULL,
    from_name TEXT NOT NULL,
    reply_to TEXT,
    subject TEXT NOT NULL,
    body_text TEXT,
    body_html TEXT,
    message_id TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMP NOT NULL,
    lease_until TIMESTAMP,
    last_error TEXT,
    created_at TIMESTAMP NOT NULL,
    sent_at TIMESTAMP
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
CREATE INDEX outbox_invitation ON outbox (invitation_id, created_at);

CREATE TABLE audit_events (
    id TEXT PRIMARY KEY NOT NULL,
    org_id TEXT REFERENCES organizations (id),
    actor_id TEXT REFERENCES users (id),
    action TEXT NOT NULL,
    target TEXT,
    detail TEXT,
    client_ip TEXT,
    request_id TEXT,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX audit_events_org_created ON audit_events (org_id, created_at);

CREATE TABLE one_time_links (
    token_hash TEXT PRIMARY KEY NOT NULL,
    purpose TEXT NOT NULL,
    user_id TEXT REFERENCES users (id),
    expires_at TIMESTAMP NOT NULL,
    used_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL
);
