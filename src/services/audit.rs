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
}

/// Appends one event.
pub fn record(
    conn: &mut DbConnection,
    actor: &Actor,
    org_id: Option<&str>,
    action: &str,
    target: Option<&str>,
    detail: Option<&str>,
) -> QueryResult<()> {
    let event = AuditEvent {
        id: db::new_id(),
        org_id: org_id.map(str::to_owned),
        actor_id: actor.user_id.clone(),
        action: action.to_owned(),
        target: target.map(str::to_owned),
        detail: detail.map(str::to_owned),
        client_ip: actor.ip.clone(),
        request_id: actor.request_id.clone(),
        created_at: db::now(),
    };
    diesel::insert_into(audit_events::table).values(&event).execute(conn)?;
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
