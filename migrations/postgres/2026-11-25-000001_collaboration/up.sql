ALTER TABLE organizations ADD COLUMN invite_policy TEXT NOT NULL DEFAULT 'adminsGuestInvitersAndAllMembers';
ALTER TABLE organizations ADD COLUMN domain_mode TEXT NOT NULL DEFAULT 'none';
ALTER TABLE organizations ADD COLUMN domain_list TEXT NOT NULL DEFAULT '';
ALTER TABLE organizations ADD COLUMN invites_per_hour BIGINT NOT NULL DEFAULT 50;
ALTER TABLE organizations ADD COLUMN guest_access_days BIGINT;

ALTER TABLE memberships ADD COLUMN sponsor_id TEXT REFERENCES users (id);
ALTER TABLE memberships ADD COLUMN access_ends_at TIMESTAMP;
ALTER TABLE memberships ADD COLUMN end_reminder_sent_at TIMESTAMP;
ALTER TABLE memberships ADD COLUMN left_at TIMESTAMP;
CREATE INDEX memberships_access_ends ON memberships (access_ends_at);
CREATE INDEX memberships_removed ON memberships (removed_at);

ALTER TABLE invitations ADD COLUMN group_ids TEXT NOT NULL DEFAULT '';
ALTER TABLE invitations ADD COLUMN app_id TEXT;
ALTER TABLE invitations ADD COLUMN reset BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX invitations_inviter ON invitations (org_id, invited_by, created_at);

ALTER TABLE sessions ADD COLUMN user_agent TEXT;
ALTER TABLE sessions ADD COLUMN client_ip TEXT;

CREATE TABLE org_groups (
    id TEXT PRIMARY KEY NOT NULL,
    org_id TEXT NOT NULL REFERENCES organizations (id),
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMP NOT NULL,
    UNIQUE (org_id, name)
);

CREATE TABLE group_members (
    group_id TEXT NOT NULL REFERENCES org_groups (id) ON DELETE CASCADE,
    membership_id TEXT NOT NULL REFERENCES memberships (id),
    is_owner BOOLEAN NOT NULL DEFAULT FALSE,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (group_id, membership_id)
);
CREATE INDEX group_members_membership ON group_members (membership_id);

CREATE TABLE apps (
    id TEXT PRIMARY KEY NOT NULL,
    org_id TEXT NOT NULL REFERENCES organizations (id),
    name TEXT NOT NULL,
    url TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    icon BYTEA,
    icon_type TEXT,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX apps_org ON apps (org_id, name);

CREATE TABLE app_assignments (
    id TEXT PRIMARY KEY NOT NULL,
    app_id TEXT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    membership_id TEXT REFERENCES memberships (id),
    group_id TEXT REFERENCES org_groups (id) ON DELETE CASCADE,
    created_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX app_assignments_app_member ON app_assignments (app_id, membership_id);
CREATE UNIQUE INDEX app_assignments_app_group ON app_assignments (app_id, group_id);
CREATE INDEX app_assignments_membership ON app_assignments (membership_id);
CREATE INDEX app_assignments_group ON app_assignments (group_id);

CREATE INDEX audit_events_org_action ON audit_events (org_id, action, created_at);
CREATE INDEX audit_events_org_actor ON audit_events (org_id, actor_id, created_at);
CREATE INDEX audit_events_org_target ON audit_events (org_id, target, created_at);
