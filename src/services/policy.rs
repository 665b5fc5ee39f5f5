//! Who may invite whom: the collaboration policy, invitee domain lists and the per-inviter rate.

use diesel::prelude::*;

use crate::db::DbConnection;
use crate::db::models::{Membership, Organization};
use crate::domain::{DomainMode, InvitePolicy, Role, UserType};
use crate::services::orgs::is_active;

/// True when `m` may invite guests into `org` under its policy (Graph's `allowInvitesFrom`).
pub fn may_invite(org: &Organization, m: &Membership) -> bool {
    if !is_active(m) {
        return false;
    }
    let p = org.invite_policy.as_str();
    if p == InvitePolicy::None {
        return false;
    }
    if m.role == Role::Admin || m.role == Role::GuestInviter {
        return true;
    }
    match m.user_type {
        UserType::Member => p == InvitePolicy::AdminsGuestInvitersAndAllMembers || p == InvitePolicy::Everyone,
        UserType::Guest => p == InvitePolicy::Everyone,
    }
}

/// Entries of the org's domain list.
pub fn domains(org: &Organization) -> Vec<&str> {
    org.domain_list.lines().map(str::trim).filter(|l| !l.is_empty()).collect()
}

fn matches(domain: &str, entry: &str) -> bool {
    match entry.strip_prefix("*.") {
        Some(parent) => {
            domain.len() > parent.len() + 1
                && domain.ends_with(parent)
                && domain[..domain.len() - parent.len()].ends_with('.')
        }
        None => domain == entry,
    }
}

/// `Err(message key)` when the org's domain list refuses `domain`. The message names the rule
/// (allow-list or deny-list), never the list's other entries.
pub fn check_domain(org: &Organization, domain: &str) -> Result<(), &'static str> {
    let list = domains(org);
    match org.domain_mode {
        DomainMode::Allow if !list.iter().any(|e| matches(domain, e)) => Err("policy.domain_not_allowed"),
        DomainMode::Deny if list.iter().any(|e| matches(domain, e)) => Err("policy.domain_denied"),
        _ => Ok(()),
    }
}

/// Normalizes one domain-list entry (`example.com` or `*.example.com`); `None` if malformed.
pub fn parse_domain_entry(entry: &str) -> Option<String> {
    let e = entry.trim().trim_start_matches('@').to_lowercase();
    let bare = e.strip_prefix("*.").unwrap_or(&e);
    let ok = bare.contains('.')
        && bare.len() <= 253
        && bare.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
    ok.then_some(e)
}

/// Takes one invitation from `inviter_id`'s hourly allowance in `org` (new invitations and
/// resends both count, so that nobody floods an address): `Ok(None)` when taken,
/// `Ok(Some(seconds to wait))` when the org's invitations-per-hour limit is reached. Counted
/// atomically in the database, so that concurrent requests and every instance behind a load
/// balancer share one count.
pub fn take_invitation_allowance(
    conn: &mut DbConnection,
    org: &Organization,
    inviter_id: &str,
) -> QueryResult<Option<u64>> {
    let key = format!("invite:{}:{inviter_id}", org.id);
    crate::services::rate::take(conn, &key, org.invites_per_hour, time::Duration::hours(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db;
    use crate::domain::MembershipState;

    fn org(mode: DomainMode, list: &str, p: InvitePolicy) -> Organization {
        Organization {
            id: "o".into(),
            slug: "o".into(),
            name: "O".into(),
            privacy_url: None,
            default_language: "en".into(),
            invite_lifetime_days: 14,
            redirect_allowlist: String::new(),
            created_at: db::now(),
            invite_policy: p,
            domain_mode: mode,
            domain_list: list.into(),
            invites_per_hour: 50,
            guest_access_days: None,
            email_codes: true,
            mfa_policy: crate::domain::MfaPolicy::Nobody,
        }
    }

    fn member(user_type: UserType, role: Role) -> Membership {
        Membership {
            id: "m".into(),
            org_id: "o".into(),
            user_id: "u".into(),
            user_type,
            role,
            state: MembershipState::Accepted,
            blocked: false,
            invited_by: None,
            accepted_at: None,
            removed_at: None,
            created_at: db::now(),
            sponsor_id: None,
            access_ends_at: None,
            end_reminder_sent_at: None,
            left_at: None,
        }
    }

    #[test]
    fn policy_matrix() {
        let cases = [
            (InvitePolicy::None, [false, false, false, false]),
            (InvitePolicy::AdminsAndGuestInviters, [true, true, false, false]),
            (InvitePolicy::AdminsGuestInvitersAndAllMembers, [true, true, true, false]),
            (InvitePolicy::Everyone, [true, true, true, true]),
        ];
        for (p, expected) in cases {
            let o = org(DomainMode::None, "", p);
            let people = [
                member(UserType::Member, Role::Admin),
                member(UserType::Guest, Role::GuestInviter),
                member(UserType::Member, Role::None),
                member(UserType::Guest, Role::None),
            ];
            for (m, want) in people.iter().zip(expected) {
                assert_eq!(may_invite(&o, m), want, "{p} {} {}", m.user_type, m.role);
            }
        }
    }

    #[test]
    fn blocked_or_pending_people_never_invite() {
        let o = org(DomainMode::None, "", InvitePolicy::Everyone);
        let mut m = member(UserType::Member, Role::Admin);
        m.blocked = true;
        assert!(!may_invite(&o, &m));
        let mut m = member(UserType::Member, Role::Admin);
        m.state = MembershipState::PendingAcceptance;
        assert!(!may_invite(&o, &m));
    }

    #[test]
    fn domain_lists() {
        let allow = org(DomainMode::Allow, "partner.com\n*.example.org", InvitePolicy::Everyone);
        assert!(check_domain(&allow, "partner.com").is_ok());
        assert!(check_domain(&allow, "eu.example.org").is_ok());
        assert!(check_domain(&allow, "example.org").is_err());
        assert!(check_domain(&allow, "evilpartner.com").is_err());
        let deny = org(DomainMode::Deny, "gmail.com", InvitePolicy::Everyone);
        assert_eq!(check_domain(&deny, "gmail.com"), Err("policy.domain_denied"));
        assert!(check_domain(&deny, "partner.com").is_ok());
        assert_eq!(parse_domain_entry(" @Partner.COM "), Some("partner.com".into()));
        assert_eq!(parse_domain_entry("*.example.org"), Some("*.example.org".into()));
        assert_eq!(parse_domain_entry("not a domain"), None);
    }
}
