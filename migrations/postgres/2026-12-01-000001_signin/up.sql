-- Identifier-first sign-in (design §10): whether an organization's guests may sign in with a
-- one-time code sent by email (on by default, as in Azure B2B).
ALTER TABLE organizations ADD COLUMN email_codes BOOLEAN NOT NULL DEFAULT TRUE;

-- One-time sign-in codes, one live code per address. Only the SHA-256 of "address:code" is
-- kept; guesses are counted by a conditional UPDATE (attempts + 1 WHERE attempts < 5). An
-- address without an account that may use codes gets a row too, whose hash matches no code, so
-- that every answer looks the same.
CREATE TABLE signin_codes (
    email TEXT PRIMARY KEY NOT NULL,
    code_hash TEXT NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX signin_codes_expires ON signin_codes (expires_at);
