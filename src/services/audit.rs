//! The append-only audit trail.

use diesel::prelude::*;

use crate::db::models::AuditEvent;
use crate::db::schema::audit_events;
use crate::db::{self, DbConnection};
use crate::services::Actor;

/// Actions written to the trail (stable names: exports and scripts read them).
pub mod action {
    pub const ORG_CREATED: &str = "organization.created";
    pub const SETTINGS_CHANGED: &str = "organization.settings_changed";
    pub const INVITATION_CREATED: &str = "invitation.created";
    pub const INVITATION_RESENT: &str = "invitation.resent";
    pub const INVITATION_REVOKED: &str = "invitation.revoked";
    pub const INVITATION_REDEEMED: &str = "invitation.redeemed";
    pub const CONSENT_GIVEN: &str = "consent.given";
    pub const SIGNIN_SUCCEEDED: &str = "signin.succeeded";
    pub const SIGNIN_FAILED: &str = "signin.failed";
    pub const ACCOUNT_CREATED: &str = "account.created";
    pub const MEMBER_REMOVED: &str = "membership.removed";
    pub const MEMBER_LEFT: &str = "membership.left";
    pub const PASSWORD_CHANGED: &str = "account.password_changed";
    pub const PROFILE_CHANGED: &str = "account.profile_changed";
    pub const SESSIONS_ENDED: &str = "account.sessions_ended";
    pub const GROUP_CREATED: &str = "group.created";
    pub const GROUP_RENAMED: &str = "group.renamed";
    pub const GROUP_DELETED: &str = "group.deleted";
    pub const GROUP_MEMBER_ADDED: &str = "group.member_added";
    pub const GROUP_MEMBER_REMOVED: &str = "group.member_removed";
    pub const GROUP_OWNER_CHANGED: &str = "group.owner_changed";
    pub const APP_CREATED: &str = "app.created";
    pub const APP_UPDATED: &str = "app.updated";
    pub const APP_DELETED: &str = "app.deleted";
    pub const APP_ASSIGNED: &str = "app.assigned";
    pub const APP_UNASSIGNED: &str = "app.unassigned";
    pub const INVITATION_RESET: &str = "invitation.reset";
    pub const MEMBER_CONVERTED: &str = "membership.converted";
    pub const MEMBER_BLOCKED: &str = "membership.blocked";
    pub const MEMBER_UNBLOCKED: &str = "membership.unblocked";
    pub const MEMBER_RESTORED: &str = "membership.restored";
    pub const MEMBER_PURGED: &str = "membership.purged";
    pub const ROLE_CHANGED: &str = "membership.role_changed";
    pub const SPONSOR_CHANGED: &str = "membership.sponsor_changed";
    pub const END_DATE_CHANGED: &str = "access.end_date_changed";
    pub const ACCESS_EXTENDED: &str = "access.extended";
    pub const END_REMINDER_SENT: &str = "access.end_reminder_sent";
    pub const ACCESS_ENDED: &str = "access.ended";
    pub const API_KEY_CREATED: &str = "api_key.created";
    pub const API_KEY_REVOKED: &str = "api_key.revoked";
    pub const BULK_PREVIEWED: &str = "bulk.previewed";
    pub const BULK_STARTED: &str = "bulk.started";
    pub const BULK_FINISHED: &str = "bulk.finished";
    pub const OIDC_CLIENT_ENABLED: &str = "oidc.client_enabled";
    pub const OIDC_CLIENT_UPDATED: &str = "oidc.client_updated";
    pub const OIDC_CLIENT_DISABLED: &str = "oidc.client_disabled";
    pub const OIDC_SECRET_ROTATED: &str = "oidc.secret_rotated";
    pub const OIDC_ACCESS_DENIED: &str = "oidc.access_denied";
    pub const OIDC_REPLAY: &str = "oidc.replay_detected";
    pub const IDP_ADDED: &str = "idp.added";
    pub const IDP_REMOVED: &str = "idp.removed";
    pub const IDP_BOUND: &str = "idp.bound";
    pub const IDP_REFUSED: &str = "idp.refused";
    pub const CODE_SENT: &str = "code.sent";
    pub const CODE_FAILED: &str = "code.failed";
    pub const PASSWORD_RESET_REQUESTED: &str = "account.password_reset_requested";
    pub const PASSWORD_RESET_DONE: &str = "account.password_reset";
    pub const MFA_ENROLLED: &str = "account.mfa_enrolled";
    pub const MFA_REMOVED: &str = "account.mfa_removed";
    pub const MFA_RECOVERY_REGENERATED: &str = "account.mfa_recovery_regenerated";
    pub const MFA_RESET: &str = "account.mfa_reset";
    pub const MFA_FAILED: &str = "signin.mfa_failed";

    /// Every action above, in the order the audit page offers them; a unit test keeps it complete.
    pub const ALL: &[&str] = &[
        ORG_CREATED,
        SETTINGS_CHANGED,
        INVITATION_CREATED,
        INVITATION_RESENT,
        INVITATION_REVOKED,
        INVITATION_REDEEMED,
        CONSENT_GIVEN,
        SIGNIN_SUCCEEDED,
        SIGNIN_FAILED,
        ACCOUNT_CREATED,
        MEMBER_REMOVED,
        MEMBER_LEFT,
        PASSWORD_CHANGED,
        PROFILE_CHANGED,
        SESSIONS_ENDED,
        GROUP_CREATED,
        GROUP_RENAMED,
        GROUP_DELETED,
        GROUP_MEMBER_ADDED,
        GROUP_MEMBER_REMOVED,
        GROUP_OWNER_CHANGED,
        APP_CREATED,
        APP_UPDATED,
        APP_DELETED,
        APP_ASSIGNED,
        APP_UNASSIGNED,
        INVITATION_RESET,
        MEMBER_CONVERTED,
        MEMBER_BLOCKED,
        MEMBER_UNBLOCKED,
        MEMBER_RESTORED,
        MEMBER_PURGED,
        ROLE_CHANGED,
        SPONSOR_CHANGED,
        END_DATE_CHANGED,
        ACCESS_EXTENDED,
        END_REMINDER_SENT,
        ACCESS_ENDED,
        API_KEY_CREATED,
        API_KEY_REVOKED,
        BULK_PREVIEWED,
        BULK_STARTED,
        BULK_FINISHED,
        OIDC_CLIENT_ENABLED,
        OIDC_CLIENT_UPDATED,
        OIDC_CLIENT_DISABLED,
        OIDC_SECRET_ROTATED,
        OIDC_ACCESS_DENIED,
        OIDC_REPLAY,
        IDP_ADDED,
        IDP_REMOVED,
        IDP_BOUND,
        IDP_REFUSED,
        CODE_SENT,
        CODE_FAILED,
        PASSWORD_RESET_REQUESTED,
        PASSWORD_RESET_DONE,
        MFA_ENROLLED,
        MFA_REMOVED,
        MFA_RECOVERY_REGENERATED,
        MFA_RESET,
        MFA_FAILED,
    ];
}

/// Longest target (an id or an address) stored on one event.
pub const MAX_TARGET_BYTES: usize = 320;
/// Longest detail stored on one event.
pub const MAX_DETAIL_BYTES: usize = 4096;

/// Appends one event (target, detail and client address clipped to their maximum length).
pub fn record(
    conn: &mut DbConnection,
    actor: &Actor,
    org_id: Option<&str>,
    action: &str,
    target: Option<&str>,
    detail: Option<&str>,
) -> QueryResult<()> {
    // Whatever a caller passes, one event stays small.
    let target = target.map(|t| crate::domain::clip(t, MAX_TARGET_BYTES));
    let detail = detail.map(|d| crate::domain::clip(d, MAX_DETAIL_BYTES));
    let ip = actor.ip.as_deref().map(|ip| crate::domain::clip(ip, MAX_TARGET_BYTES).to_owned());
    let event = AuditEvent {
        id: db::new_id(),
        org_id: org_id.map(str::to_owned),
        actor_id: actor.user_id.clone(),
        action: action.to_owned(),
        target: target.map(str::to_owned),
        detail: detail.map(str::to_owned),
        client_ip: ip,
        request_id: actor.request_id.clone(),
        created_at: db::now(),
    };
    diesel::insert_into(audit_events::table).values(&event).execute(conn)?;
    Ok(())
}

/// Appends many events of one actor and action at once (a bulk wave), each `(target, detail)`
/// clipped as [`record`] does, in multi-row inserts.
pub fn record_many(
    conn: &mut DbConnection,
    actor: &Actor,
    org_id: Option<&str>,
    action: &str,
    events: &[(&str, Option<&str>)],
) -> QueryResult<()> {
    let ip = actor.ip.as_deref().map(|ip| crate::domain::clip(ip, MAX_TARGET_BYTES).to_owned());
    let now = db::now();
    let rows: Vec<AuditEvent> = events
        .iter()
        .map(|(target, detail)| AuditEvent {
            id: db::new_id(),
            org_id: org_id.map(str::to_owned),
            actor_id: actor.user_id.clone(),
            action: action.to_owned(),
            target: Some(crate::domain::clip(target, MAX_TARGET_BYTES).to_owned()),
            detail: detail.map(|d| crate::domain::clip(d, MAX_DETAIL_BYTES).to_owned()),
            client_ip: ip.clone(),
            request_id: actor.request_id.clone(),
            created_at: now,
        })
        .collect();
    db::insert_all!(conn, audit_events::table, &rows);
    Ok(())
}

/// Events of an organization, newest first (the audit page arrives later; tests read this).
pub fn list_for_org(conn: &mut DbConnection, org_id: &str, limit: i64) -> QueryResult<Vec<AuditEvent>> {
    audit_events::table
        .filter(audit_events::org_id.eq(org_id))
        .order((audit_events::created_at.desc(), audit_events::id.desc()))
        .limit(limit)
        .select(AuditEvent::as_select())
        .load(conn)
}

#[cfg(test)]
mod tests {
    use super::action;

    /// The audit page offers `action::ALL`: every constant of the module must be in it.
    #[test]
    fn every_action_is_listed_in_all() {
        let source = include_str!("audit.rs");
        let module = &source[source.find("pub mod action").unwrap()..source.find("pub const ALL").unwrap()];
        let declared: Vec<&str> = module
            .lines()
            .filter_map(|l| l.trim().strip_prefix("pub const ")?.split_once(": &str = \""))
            .map(|(_, rest)| rest.trim_end_matches("\";"))
            .collect();
        assert!(declared.len() >= 15);
        for name in &declared {
            assert!(action::ALL.contains(name), "{name} is missing from action::ALL");
        }
        assert_eq!(declared.len(), action::ALL.len(), "action::ALL lists an action twice");
    }
}
