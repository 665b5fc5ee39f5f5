-- Second factor (issue 10): one TOTP secret per account (RFC 6238, SHA-1, 6 digits, 30 s),
-- stored as is (base32) like any other server-side secret of the instance. `confirmed_at` is
-- NULL while enrolment waits for the first code; `last_step` is the last time step accepted,
-- moved forward by one conditional UPDATE so that a code is never accepted twice.
CREATE TABLE second_factors (
    user_id TEXT PRIMARY KEY NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    secret TEXT NOT NULL,
    confirmed_at TIMESTAMP,
    last_step BIGINT,
    created_at TIMESTAMP NOT NULL
);

-- Single-use recovery codes: only their SHA-256 is kept.
CREATE TABLE recovery_codes (
    code_hash TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    used_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX recovery_codes_user ON recovery_codes (user_id);

-- How the person signed in (RFC 8176 `amr` values, space-separated: pwd, otp, mfa, fed), kept
-- with the authorization code and the tokens so that every ID token of the grant carries it.
ALTER TABLE oidc_codes ADD COLUMN amr TEXT;
ALTER TABLE oidc_tokens ADD COLUMN amr TEXT;

-- Who in an organization must have a second factor: nobody, admins or everyone.
ALTER TABLE organizations ADD COLUMN mfa_policy TEXT NOT NULL DEFAULT 'nobody';
