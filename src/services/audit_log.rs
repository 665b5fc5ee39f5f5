//! Browsing an organization's audit trail: filters, keyset pages (newest first) and the
//! batches of the CSV export. The events themselves are written by [`super::audit`].

use std::collections::HashMap;

use diesel::prelude::*;
use time::{Date, PrimitiveDateTime, Time};

use crate::db::DbConnection;
use crate::db::models::AuditEvent;
use crate::db::schema::{apps, audit_events, invitations, memberships, org_groups, users};
use crate::domain::Email;
use crate::services::FieldErrors;
use crate::services::audit::action;

/// Events on one page of the audit log.
pub const PAGE_SIZE: i64 = 50;
/// Events fetched per database round trip while exporting.
pub const EXPORT_BATCH: i64 = 500;
/// Longest target text accepted in the filter.
const MAX_TARGET_CHARS: usize = 320;

/// The filters as typed into the page's form (or the export's query string).
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Email address of the actor.
    pub actor: String,
    /// Exact target: a user id, an invitation id, an organization's short name, or an email
    /// address (which also matches that person's account and invitations).
    pub target: String,
    /// One of [`action::ALL`].
    pub action: String,
    /// First day, `YYYY-MM-DD`, UTC, included.
    pub from: String,
    /// Last day, `YYYY-MM-DD`, UTC, included.
    pub to: String,
}

/// Valid filters, ready to query with.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<Email>,
    pub target: Option<String>,
    pub action: Option<String>,
    /// Events at or after this instant.
    pub since: Option<PrimitiveDateTime>,
    /// Events strictly before this instant.
    pub before: Option<PrimitiveDateTime>,
}

fn parse_day(text: &str) -> Option<Date> {
    Date::parse(text, time::macros::format_description!("[year]-[month]-[day]")).ok()
}

impl AuditQuery {
    /// Checks the filters; problems are tied to their fields.
    pub fn validate(&self) -> Result<AuditFilter, FieldErrors> {
        let mut errors = FieldErrors::default();
        let mut filter = AuditFilter::default();
        let actor = self.actor.trim();
        if !actor.is_empty() {
            match Email::parse(actor) {
                Ok(e) => filter.actor = Some(e),
                Err(_) => errors.add("actor", "email.invalid"),
            }
        }
        let target = self.target.trim();
        if target.chars().count() > MAX_TARGET_CHARS {
            errors.add("target", "audit.target_too_long");
        } else if !target.is_empty() {
            filter.target = Some(target.to_owned());
        }
        let act = self.action.trim();
        if !act.is_empty() {
            match action::ALL.iter().find(|a| **a == act) {
                Some(a) => filter.action = Some((*a).to_owned()),
                None => errors.add("action", "audit.action_invalid"),
            }
        }
        let from = self.from.trim();
        let from_day = (!from.is_empty()).then(|| parse_day(from));
        match from_day {
            Some(None) => errors.add("from", "audit.date_invalid"),
            Some(Some(d)) => filter.since = Some(PrimitiveDateTime::new(d, Time::MIDNIGHT)),
            None => {}
        }
        let to = self.to.trim();
        let to_day = (!to.is_empty()).then(|| parse_day(to));
        match to_day {
            Some(None) => errors.add("to", "audit.date_invalid"),
            // The last day is included: stop before the midnight that follows it.
            Some(Some(d)) => filter.before = d.next_day().map(|n| PrimitiveDateTime::new(n, Time::MIDNIGHT)),
            None => {}
        }
        if let (Some(Some(f)), Some(Some(t))) = (from_day, to_day)
            && f > t
        {
            errors.add("to", "audit.range_invalid");
        }
        if errors.is_empty() { Ok(filter) } else { Err(errors) }
    }
}

/// Someone or something named by an event, as the log shows it: a person (name and email),
/// or a group or an app (name only).
#[derive(Debug, Clone)]
pub struct Named {
    pub name: String,
    /// Empty for groups and apps.
    pub email: String,
}

impl Named {
    fn person((id, name, email): (String, String, String)) -> (String, Named) {
        (id, Named { name, email })
    }

    fn thing((id, name): (String, String)) -> (String, Named) {
        (id, Named { name, email: String::new() })
    }
}

/// One event with what it names resolved.
#[derive(Debug, Clone)]
pub struct AuditRow {
    pub event: AuditEvent,
    /// Who did it (None: nobody signed in, or the account is gone).
    pub actor: Option<Named>,
    /// Whom or what it was done to, when the target is an account, a membership, an
    /// invitation, a group or an app of this organization.
    pub target: Option<Named>,
}

/// A page of events, with the cursor of the next page if there is one.
pub struct AuditPage {
    pub rows: Vec<AuditRow>,
    pub next: Option<(PrimitiveDateTime, String)>,
}

/// Events of `org_id` matching `filter`, newest first, after the keyset cursor `after`
/// (created_at and id of the last event already shown), at most `limit` of them.
pub fn page(
    conn: &mut DbConnection,
    org_id: &str,
    filter: &AuditFilter,
    after: Option<&(PrimitiveDateTime, String)>,
    limit: i64,
) -> QueryResult<AuditPage> {
    let empty = || AuditPage { rows: Vec::new(), next: None };
    let mut q = audit_events::table.filter(audit_events::org_id.eq(org_id)).into_boxed();
    if let Some(email) = &filter.actor {
        let id: Option<String> =
            users::table.filter(users::email.eq(email.as_str())).select(users::id).first(conn).optional()?;
        let Some(id) = id else {
            return Ok(empty());
        };
        q = q.filter(audit_events::actor_id.eq(id));
    }
    if let Some(target) = &filter.target {
        let targets = targets_matching(conn, org_id, target)?;
        q = q.filter(audit_events::target.eq_any(targets));
    }
    if let Some(a) = &filter.action {
        q = q.filter(audit_events::action.eq(a.clone()));
    }
    if let Some(since) = filter.since {
        q = q.filter(audit_events::created_at.ge(since));
    }
    if let Some(before) = filter.before {
        q = q.filter(audit_events::created_at.lt(before));
    }
    if let Some((at, id)) = after {
        q = q.filter(
            audit_events::created_at.lt(*at).or(audit_events::created_at.eq(*at).and(audit_events::id.lt(id.clone()))),
        );
    }
    let mut events: Vec<AuditEvent> = q
        .order((audit_events::created_at.desc(), audit_events::id.desc()))
        .limit(limit + 1)
        .select(AuditEvent::as_select())
        .load(conn)?;
    let next = if events.len() as i64 > limit {
        events.truncate(limit as usize);
        events.last().map(|e| (e.created_at, e.id.clone()))
    } else {
        None
    };
    let rows = resolve_people(conn, org_id, events)?;
    Ok(AuditPage { rows, next })
}

/// The target texts a filter matches: the text itself and, for an email address, the
/// account, and the membership and invitations in this organization, of that address.
fn targets_matching(conn: &mut DbConnection, org_id: &str, target: &str) -> QueryResult<Vec<String>> {
    let mut targets = vec![target.to_owned()];
    if let Ok(email) = Email::parse(target) {
        targets.push(email.as_str().to_owned());
        let user: Option<String> =
            users::table.filter(users::email.eq(email.as_str())).select(users::id).first(conn).optional()?;
        if let Some(user_id) = &user {
            let membership: Option<String> = memberships::table
                .filter(memberships::org_id.eq(org_id))
                .filter(memberships::user_id.eq(user_id))
                .select(memberships::id)
                .first(conn)
                .optional()?;
            targets.extend(membership);
        }
        targets.extend(user);
        let invites: Vec<String> = invitations::table
            .filter(invitations::org_id.eq(org_id))
            .filter(invitations::email.eq(email.as_str()))
            .select(invitations::id)
            .limit(100)
            .load(conn)?;
        targets.extend(invites);
    }
    targets.sort();
    targets.dedup();
    Ok(targets)
}

/// Names the actors and the targets of a batch of events, a few queries per batch.
fn resolve_people(conn: &mut DbConnection, org_id: &str, events: Vec<AuditEvent>) -> QueryResult<Vec<AuditRow>> {
    let mut ids: Vec<String> = events.iter().filter_map(|e| e.actor_id.clone()).collect();
    ids.extend(events.iter().filter_map(|e| e.target.clone()));
    ids.sort();
    ids.dedup();
    let people: HashMap<String, Named> = users::table
        .filter(users::id.eq_any(&ids))
        .select((users::id, users::display_name, users::email))
        .load(conn)?
        .into_iter()
        .map(Named::person)
        .collect();
    // Targets other than accounts are looked up in this organization only.
    let mut others: HashMap<String, Named> = memberships::table
        .inner_join(users::table)
        .filter(memberships::org_id.eq(org_id))
        .filter(memberships::id.eq_any(&ids))
        .select((memberships::id, users::display_name, users::email))
        .load(conn)?
        .into_iter()
        .map(Named::person)
        .collect();
    others.extend(
        invitations::table
            .filter(invitations::org_id.eq(org_id))
            .filter(invitations::id.eq_any(&ids))
            .select((invitations::id, invitations::display_name, invitations::email))
            .load(conn)?
            .into_iter()
            .map(Named::person),
    );
    others.extend(
        org_groups::table
            .filter(org_groups::org_id.eq(org_id))
            .filter(org_groups::id.eq_any(&ids))
            .select((org_groups::id, org_groups::name))
            .load(conn)?
            .into_iter()
            .map(Named::thing),
    );
    others.extend(
        apps::table
            .filter(apps::org_id.eq(org_id))
            .filter(apps::id.eq_any(&ids))
            .select((apps::id, apps::name))
            .load(conn)?
            .into_iter()
            .map(Named::thing),
    );
    Ok(events
        .into_iter()
        .map(|event| {
            let actor = event.actor_id.as_ref().and_then(|id| people.get(id)).cloned();
            let target = event.target.as_ref().and_then(|t| people.get(t).or_else(|| others.get(t))).cloned();
            AuditRow { event, actor, target }
        })
        .collect())
}

/// Makes a cell inert in spreadsheets: text starting with `=`, `+`, `-`, `@`, a tab or a
/// carriage return would be read as a formula, so it gets a leading `'` (OWASP CSV injection).
pub fn inert_cell(text: &str) -> std::borrow::Cow<'_, str> {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        std::borrow::Cow::Owned(format!("'{text}"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(from: &str, to: &str) -> AuditQuery {
        AuditQuery { from: from.into(), to: to.into(), ..Default::default() }
    }

    #[test]
    fn dates_are_whole_utc_days() {
        let f = query("2026-03-01", "2026-03-31").validate().unwrap();
        assert_eq!(f.since.unwrap().to_string(), "2026-03-01 0:00:00.0");
        assert_eq!(f.before.unwrap().to_string(), "2026-04-01 0:00:00.0");
        assert!(query("", "").validate().unwrap().since.is_none());
    }

    #[test]
    fn bad_filters_are_tied_to_their_fields() {
        let e = query("2026-02-30", "yesterday").validate().unwrap_err();
        assert_eq!(e.get("from"), Some("audit.date_invalid"));
        assert_eq!(e.get("to"), Some("audit.date_invalid"));
        let e = query("2026-03-02", "2026-03-01").validate().unwrap_err();
        assert_eq!(e.get("to"), Some("audit.range_invalid"));
        let q = AuditQuery { actor: "nobody".into(), action: "drop.tables".into(), ..Default::default() };
        let e = q.validate().unwrap_err();
        assert_eq!(e.get("actor"), Some("email.invalid"));
        assert_eq!(e.get("action"), Some("audit.action_invalid"));
        let q = AuditQuery {
            actor: " Ada@Example.COM ".into(),
            action: action::CONSENT_GIVEN.into(),
            ..Default::default()
        };
        let f = q.validate().unwrap();
        assert_eq!(f.actor.unwrap().as_str(), "ada@example.com");
        assert_eq!(f.action.as_deref(), Some("consent.given"));
    }

    #[test]
    fn formula_cells_are_made_inert() {
        for bad in ["=cmd|' /C calc'!A0", "+1", "-2", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(inert_cell(bad), format!("'{bad}"));
        }
        for fine in ["Ada", "2026-03-01T10:00:00Z", "", "a=b", "'quoted"] {
            assert_eq!(inert_cell(fine), fine);
        }
    }
}
