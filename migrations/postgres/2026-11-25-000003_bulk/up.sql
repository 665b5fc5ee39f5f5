-- Bulk invitations from a CSV file: one job per upload, one row per data line.
CREATE TABLE bulk_jobs (
    id TEXT PRIMARY KEY NOT NULL,
    org_id TEXT NOT NULL REFERENCES organizations (id),
    created_by TEXT NOT NULL REFERENCES users (id),
    -- previewed | queued | running | done | failed | cancelled
    status TEXT NOT NULL,
    file_name TEXT NOT NULL DEFAULT '',
    total BIGINT NOT NULL DEFAULT 0,
    valid_rows BIGINT NOT NULL DEFAULT 0,
    invalid_rows BIGINT NOT NULL DEFAULT 0,
    duplicate_rows BIGINT NOT NULL DEFAULT 0,
    -- saved position: valid rows handled so far, written in each batch's transaction
    processed BIGINT NOT NULL DEFAULT 0,
    succeeded BIGINT NOT NULL DEFAULT 0,
    existing BIGINT NOT NULL DEFAULT 0,
    failed BIGINT NOT NULL DEFAULT 0,
    error TEXT,
    created_at TIMESTAMP NOT NULL,
    started_at TIMESTAMP,
    finished_at TIMESTAMP,
    lease_owner TEXT,
    lease_until TIMESTAMP
);
CREATE INDEX bulk_jobs_org ON bulk_jobs (org_id, created_at);
CREATE INDEX bulk_jobs_status ON bulk_jobs (status, lease_until);

CREATE TABLE bulk_rows (
    job_id TEXT NOT NULL REFERENCES bulk_jobs (id) ON DELETE CASCADE,
    line_no BIGINT NOT NULL,
    email TEXT NOT NULL,
    display_name TEXT NOT NULL,
    redirect_url TEXT NOT NULL,
    send_email BOOLEAN NOT NULL,
    message TEXT NOT NULL,
    -- group ids, comma-separated (resolved from the names in the file)
    groups TEXT NOT NULL,
    language TEXT,
    -- valid | invalid | duplicate | created | failed
    status TEXT NOT NULL,
    reason TEXT,
    invitation_id TEXT,
    PRIMARY KEY (job_id, line_no)
);
CREATE INDEX bulk_rows_status ON bulk_rows (job_id, status, line_no);
