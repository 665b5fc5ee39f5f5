//! The admin console, `/o/{org}/admin`.

mod api_keys;
mod apps;
mod audit;
mod bulk;
mod groups;
mod identity_providers;
mod invite;
mod lifecycle;
mod settings;
mod upload;
pub mod users;

use actix_web::web;
use diesel::prelude::*;

use crate::db::models::Membership;
use crate::db::schema::memberships;
use crate::domain::MembershipState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    users::routes(cfg);
    invite::routes(cfg);
    lifecycle::routes(cfg);
    settings::routes(cfg);
    groups::routes(cfg);
    apps::routes(cfg);
    audit::routes(cfg);
    bulk::routes(cfg);
    api_keys::routes(cfg);
    identity_providers::routes(cfg);
}

/// Counts for the console home: members, guests, pending.
pub fn counts(conn: &mut crate::db::DbConnection, org_id: &str) -> QueryResult<(i64, i64, i64)> {
    let base = || {
        memberships::table.filter(memberships::org_id.eq(org_id.to_owned())).filter(memberships::removed_at.is_null())
    };
    let members = base().filter(memberships::user_type.eq(crate::domain::UserType::Member)).count().get_result(conn)?;
    let guests = base().filter(memberships::user_type.eq(crate::domain::UserType::Guest)).count().get_result(conn)?;
    let pending = base().filter(memberships::state.eq(MembershipState::PendingAcceptance)).count().get_result(conn)?;
    Ok((members, guests, pending))
}

/// Catalogue keys for a membership's type, state and role.
pub fn type_key(user_type: &crate::domain::UserType) -> &'static str {
    match user_type {
        crate::domain::UserType::Member => "type.Member",
        crate::domain::UserType::Guest => "type.Guest",
    }
}

/// Catalogue key and CSS class of a membership state.
pub fn state_key(m: &Membership) -> (&'static str, &'static str) {
    if m.removed_at.is_some() {
        ("state.Removed", "bad")
    } else if m.left_at.is_some() {
        ("state.Left", "bad")
    } else if m.blocked {
        ("state.Blocked", "bad")
    } else if m.state == MembershipState::Accepted {
        ("state.Accepted", "good")
    } else {
        ("state.PendingAcceptance", "wait")
    }
}

/// Catalogue key of an outbox status.
pub fn mail_key(status: Option<crate::domain::OutboxStatus>) -> &'static str {
    use crate::domain::OutboxStatus;
    match status {
        Some(OutboxStatus::Queued) => "mail.queued",
        Some(OutboxStatus::Sending) => "mail.sending",
        Some(OutboxStatus::Sent) => "mail.sent",
        Some(OutboxStatus::Failed) => "mail.failed",
        None => "mail.none",
    }
}

/// Catalogue key of a collaboration policy value.
pub fn policy_key(p: &crate::domain::InvitePolicy) -> &'static str {
    use crate::domain::InvitePolicy;
    match p {
        InvitePolicy::None => "policy.none",
        InvitePolicy::AdminsAndGuestInviters => "policy.admins_and_guest_inviters",
        InvitePolicy::Everyone => "policy.everyone",
        InvitePolicy::AdminsGuestInvitersAndAllMembers => "policy.all_members",
    }
}

/// Catalogue key of a users-list state filter value.
pub fn list_state_key(s: &str) -> &'static str {
    match s {
        "PendingAcceptance" => "state.PendingAcceptance",
        "Accepted" => "state.Accepted",
        "Blocked" => "state.Blocked",
        "Left" => "state.Left",
        "EndingSoon" => "state.EndingSoon",
        _ => "state.Removed",
    }
}
