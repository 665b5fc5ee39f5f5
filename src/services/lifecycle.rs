//! The guest's life after redemption: role, conversion, blocking, removal and restoration,
//! invite with reset, sponsors and access end dates, and the daily job that reminds sponsors,
//! ends access and purges removed people.

use diesel::prelude::*;
use time::PrimitiveDateTime;
use url::Url;

use crate::db::models::{Invitation, Membership, Organization, User};
use crate::db::schema::{
    app_assignments, audit_events, group_members, invitations, memberships, organizations, outbox, users,
};
use crate::db::{self, DbConnection};
use crate::domain::{Email, InvitationStatus, MembershipState, Role, UserType};
use crate::i18n::Lang;
use crate::mail::{self, messages};
use crate::services::audit::{self, action};
use crate::services::invitations::{self as invites, MailContext};
use crate::services::sessions::end_all as end_all_sessions;
use crate::services::{Actor, ServiceError, accounts};

/// Removed people can be restored for this long, then they are purged.
pub const RESTORE_WINDOW: time::Duration = time::Duration::days(30);
/// Sponsors are reminded this long before access ends.
pub const REMINDER_BEFORE: time::Duration = time::Duration::days(14);
/// Extension when the org has no default access period.
pub const DEFAULT_EXTENSION_DAYS: i64 = 90;

/// A membership of the org, removed ones included while restorable.
pub fn find(conn: &mut DbConnection, org_id: &str, membership_id: &str) -> Result<Membership, ServiceError> {
    memberships::table
        .filter(memberships::org_id.eq(org_id))
        .filter(memberships::id.eq(membership_id))
        .select(Membership::as_select())
        .first(conn)
        .optional()?
        .filter(|m| m.removed_at.is_none_or(|at| at > db::now() - RESTORE_WINDOW))
        .ok_or(ServiceError::NotFound)
}

fn not_self(actor: &Actor, m: &Membership) -> Result<(), ServiceError> {
    if actor.user_id.as_deref() == Some(m.user_id.as_str()) { Err(ServiceError::Forbidden) } else { Ok(()) }
}

/// One action of the guest page, as the admin asked for it.
#[derive(Debug, Clone)]
pub enum Action {
    /// `none`, `guest_inviter` or `admin`.
    SetRole(String),
    Convert,
    Block,
    Unblock,
    Restore,
    Extend,
    /// Re-bind to this address (empty: the same) and send a new invitation.
    Reset(String),
    /// The sponsor's address (empty: the inviter again).
    Sponsor(String),
    /// `YYYY-MM-DD`, or empty for no end date.
    EndDate(String),
}

/// Runs `action` on the membership `mid` of `org` for an admin, in one transaction each.
pub fn perform(
    conn: &mut DbConnection,
    org: &Organization,
    mid: &str,
    action: Action,
    public_url: &Url,
    actor: &Actor,
) -> Result<(), ServiceError> {
    match action {
        Action::SetRole(role) => set_role(conn, org, mid, &role, actor),
        Action::Convert => convert(conn, org, mid, actor).map(|_| ()),
        Action::Block => set_blocked(conn, org, mid, true, actor),
        Action::Unblock => set_blocked(conn, org, mid, false, actor),
        Action::Restore => restore(conn, org, mid, actor),
        Action::Extend => extend(conn, org, mid, actor).map(|_| ()),
        Action::Reset(email) => {
            let uid = actor.user_id.as_deref().ok_or(ServiceError::Forbidden)?;
            let inviter = accounts::find_by_id(conn, uid)?.ok_or(ServiceError::NotFound)?;
            let ctx = MailContext { public_url, inviter: &inviter };
            reset_redemption(conn, org, mid, &email, ResetLanding::default(), &ctx, actor).map(|_| ())
        }
        Action::Sponsor(email) => set_sponsor(conn, org, mid, &email, actor),
        Action::EndDate(text) => {
            let text = text.trim();
            let ends = if text.is_empty() {
                None
            } else {
                let date = time::Date::parse(text, &time::macros::format_description!("[year]-[month]-[day]"))
                    .map_err(|_| ServiceError::field("access_ends_at", "lifecycle.end_date_invalid"))?;
                Some(PrimitiveDateTime::new(date, time::Time::MIDNIGHT))
            };
            set_end_date(conn, org, mid, ends, actor)
        }
    }
}

/// Gives a role: `none`, `guest_inviter` (members and guests), or `admin` (members only).
pub fn set_role(
    conn: &mut DbConnection,
    org: &Organization,
    mid: &str,
    new_role: &str,
    actor: &Actor,
) -> Result<(), ServiceError> {
    db::write_tx(conn, |conn| {
        let m = find(conn, &org.id, mid)?;
        not_self(actor, &m)?;
        let allowed = match Role::parse(new_role) {
            Some(Role::None | Role::GuestInviter) => true,
            Some(Role::Admin) => m.user_type == UserType::Member,
            None => false,
        };
        if !allowed || m.removed_at.is_some() {
            return Err(ServiceError::WrongState);
        }
        diesel::update(memberships::table.find(&m.id)).set(memberships::role.eq(new_role)).execute(conn)?;
        audit::record(conn, actor, Some(&org.id), action::ROLE_CHANGED, Some(&m.user_id), Some(new_role))?;
        Ok(())
    })
}

/// Converts a guest to a member or back. A member who becomes a guest loses the admin role.
pub fn convert(
    conn: &mut DbConnection,
    org: &Organization,
    mid: &str,
    actor: &Actor,
) -> Result<UserType, ServiceError> {
    db::write_tx(conn, |conn| {
        let m = find(conn, &org.id, mid)?;
        not_self(actor, &m)?;
        if m.removed_at.is_some() {
            return Err(ServiceError::WrongState);
        }
        let to = if m.user_type == UserType::Guest { UserType::Member } else { UserType::Guest };
        let new_role = if to == UserType::Guest && m.role == Role::Admin { Role::None } else { m.role };
        diesel::update(memberships::table.find(&m.id))
            .set((memberships::user_type.eq(to), memberships::role.eq(new_role)))
            .execute(conn)?;
        audit::record(conn, actor, Some(&org.id), action::MEMBER_CONVERTED, Some(&m.user_id), Some(to.as_str()))?;
        Ok(to)
    })
}

/// Blocks (ending every session of the person at once) or unblocks sign-in to the org.
/// Unblocking a membership whose access had ended needs a new end date or none.
pub fn set_blocked(
    conn: &mut DbConnection,
    org: &Organization,
    mid: &str,
    blocked: bool,
    actor: &Actor,
) -> Result<(), ServiceError> {
    db::write_tx(conn, |conn| {
        let m = find(conn, &org.id, mid)?;
        not_self(actor, &m)?;
        if m.removed_at.is_some() {
            return Err(ServiceError::WrongState);
        }
        if !blocked && m.access_ends_at.is_some_and(|end| end <= db::now()) {
            // Unblocking after the end date: access continues without an end date until one is set.
            diesel::update(memberships::table.find(&m.id))
                .set((
                    memberships::access_ends_at.eq(None::<PrimitiveDateTime>),
                    memberships::end_reminder_sent_at.eq(None::<PrimitiveDateTime>),
                ))
                .execute(conn)?;
        }
        diesel::update(memberships::table.find(&m.id)).set(memberships::blocked.eq(blocked)).execute(conn)?;
        if blocked {
            end_all_sessions(conn, &m.user_id)?;
            crate::services::oidc::access::revoke_for_membership(conn, &m.id)?;
        }
        let what = if blocked { action::MEMBER_BLOCKED } else { action::MEMBER_UNBLOCKED };
        audit::record(conn, actor, Some(&org.id), what, Some(&m.user_id), None)?;
        Ok(())
    })
}

/// Restores a person removed less than 30 days ago, with their groups and apps.
pub fn restore(conn: &mut DbConnection, org: &Organization, mid: &str, actor: &Actor) -> Result<(), ServiceError> {
    db::write_tx(conn, |conn| {
        let m = find(conn, &org.id, mid)?;
        if m.removed_at.is_none() {
            return Err(ServiceError::WrongState);
        }
        diesel::update(memberships::table.find(&m.id))
            .set(memberships::removed_at.eq(None::<PrimitiveDateTime>))
            .execute(conn)?;
        audit::record(conn, actor, Some(&org.id), action::MEMBER_RESTORED, Some(&m.user_id), None)?;
        Ok(())
    })
}

/// Where the new invitation of a reset lands, its personal message (already validated), and
/// whether the reset comes through an API key rather than an admin of the console.
#[derive(Debug, Clone, Default)]
pub struct ResetLanding {
    pub redirect_url: Option<String>,
    pub message: Option<String>,
    /// Through an API key: an admin's account cannot be reset that way (`Forbidden`).
    pub by_api_key: bool,
}

/// "Invite with reset": binds an accepted guest again to `new_email` (or the same address) and
/// sends a new invitation; the person must redeem it before getting access back. Groups and
/// apps stay on the membership; the role does not (whoever redeems the new link could be
/// someone else), and an admin's account can be reset only from the console.
pub fn reset_redemption(
    conn: &mut DbConnection,
    org: &Organization,
    mid: &str,
    new_email: &str,
    landing: ResetLanding,
    mail_ctx: &MailContext,
    actor: &Actor,
) -> Result<Invitation, ServiceError> {
    let email = Email::parse(new_email).map_err(|_| ServiceError::field("email", "email.invalid"))?;
    if let Err(key) = crate::services::policy::check_domain(org, email.domain()) {
        return Err(ServiceError::field("email", key));
    }
    let token = crate::domain::token::PlainToken::generate();
    db::write_tx(conn, |conn| {
        let m = find(conn, &org.id, mid)?;
        not_self(actor, &m)?;
        if m.state != MembershipState::Accepted || m.removed_at.is_some() {
            return Err(ServiceError::WrongState);
        }
        if landing.by_api_key && m.role == Role::Admin {
            return Err(ServiceError::Forbidden);
        }
        let old: User = users::table.find(&m.user_id).select(User::as_select()).first(conn)?;
        let user = accounts::find_or_create(conn, &email, &old.display_name)?;
        if user.id != m.user_id {
            let taken: i64 = memberships::table
                .filter(memberships::org_id.eq(&org.id))
                .filter(memberships::user_id.eq(&user.id))
                .count()
                .get_result(conn)?;
            if taken > 0 {
                return Err(ServiceError::field("email", "lifecycle.reset_email_taken"));
            }
        }
        let now = db::now();
        diesel::update(memberships::table.find(&m.id))
            .set((
                memberships::user_id.eq(&user.id),
                memberships::state.eq(MembershipState::PendingAcceptance),
                memberships::accepted_at.eq(None::<PrimitiveDateTime>),
                // As with a re-invitation: whoever redeems the new link starts without a role.
                memberships::role.eq(Role::None),
            ))
            .execute(conn)?;
        crate::services::oidc::access::revoke_for_membership(conn, &m.id)?;
        // Whoever redeems again proves who they are afresh: the old account's provider bindings go.
        crate::services::idp::clear_bindings(conn, &m.user_id)?;
        // Any older pending invitation of this membership dies with the reset.
        diesel::update(
            invitations::table
                .filter(invitations::membership_id.eq(&m.id))
                .filter(invitations::status.eq(InvitationStatus::Pending)),
        )
        .set((invitations::status.eq(InvitationStatus::Revoked), invitations::revoked_at.eq(Some(now))))
        .execute(conn)?;
        let inv = Invitation {
            id: db::new_id(),
            org_id: org.id.clone(),
            membership_id: m.id.clone(),
            email: email.as_str().to_owned(),
            display_name: old.display_name.clone(),
            message: landing.message,
            redirect_url: landing.redirect_url,
            user_type: m.user_type,
            language: None,
            token_hash: token.hash(),
            status: InvitationStatus::Pending,
            disclosed: false,
            send_email: true,
            invited_by: actor.user_id.clone(),
            code_hash: None,
            code_expires_at: None,
            code_attempts: 0,
            created_at: now,
            expires_at: now + time::Duration::days(org.invite_lifetime_days.clamp(1, 90)),
            accepted_at: None,
            revoked_at: None,
            group_ids: String::new(),
            app_id: None,
            reset: true,
        };
        diesel::insert_into(invitations::table).values(&inv).execute(conn)?;
        let lang = invites::email_language(&inv, &user, org);
        let mail = messages::invitation(org, &inv, mail_ctx.inviter, token.expose(), mail_ctx.public_url, lang)?;
        mail::enqueue(conn, mail, mail_ctx.public_url)?;
        // The old address loses access at once.
        end_all_sessions(conn, &old.id)?;
        let detail = serde_json::json!({ "from": old.email, "to": inv.email }).to_string();
        audit::record(conn, actor, Some(&org.id), action::INVITATION_RESET, Some(&inv.id), Some(&detail))?;
        Ok(inv)
    })
}

/// Reassigns the sponsor to an active member (not a guest) of the org, found by email.
pub fn set_sponsor(
    conn: &mut DbConnection,
    org: &Organization,
    mid: &str,
    sponsor_email: &str,
    actor: &Actor,
) -> Result<(), ServiceError> {
    let email = Email::parse(sponsor_email).map_err(|_| ServiceError::field("sponsor", "email.invalid"))?;
    db::write_tx(conn, |conn| {
        let m = find(conn, &org.id, mid)?;
        let sponsor = accounts::find_by_email(conn, &email)?
            .ok_or(ServiceError::field("sponsor", "lifecycle.sponsor_invalid"))?;
        let sm = crate::services::orgs::membership_of(conn, &org.id, &sponsor.id)?
            .filter(|s| crate::services::orgs::is_active(s) && s.user_type == UserType::Member)
            .ok_or(ServiceError::field("sponsor", "lifecycle.sponsor_invalid"))?;
        if sm.id == m.id {
            return Err(ServiceError::field("sponsor", "lifecycle.sponsor_invalid"));
        }
        diesel::update(memberships::table.find(&m.id))
            .set(memberships::sponsor_id.eq(Some(&sponsor.id)))
            .execute(conn)?;
        audit::record(
            conn,
            actor,
            Some(&org.id),
            action::SPONSOR_CHANGED,
            Some(&m.user_id),
            Some(sponsor.email.as_str()),
        )?;
        Ok(())
    })
}

/// The membership `mid` of the org if it may sponsor someone: an active member (not a guest).
pub fn sponsor_member(conn: &mut DbConnection, org: &Organization, mid: &str) -> Result<Membership, ServiceError> {
    memberships::table
        .filter(memberships::org_id.eq(&org.id))
        .filter(memberships::id.eq(mid))
        .select(Membership::as_select())
        .first(conn)
        .optional()?
        .filter(|s| crate::services::orgs::is_active(s) && s.user_type == UserType::Member)
        .ok_or(ServiceError::field("sponsor", "lifecycle.sponsor_invalid"))
}

/// Makes `sponsor` (from [`sponsor_member`]) the sponsor of membership `mid`, audited; nobody
/// sponsors themself. Runs inside the caller's transaction.
pub fn assign_sponsor(
    conn: &mut DbConnection,
    org: &Organization,
    mid: &str,
    sponsor: &Membership,
    actor: &Actor,
) -> Result<(), ServiceError> {
    if sponsor.id == mid {
        return Err(ServiceError::field("sponsor", "lifecycle.sponsor_invalid"));
    }
    let m = find(conn, &org.id, mid)?;
    if m.sponsor_id.as_deref() == Some(sponsor.user_id.as_str()) {
        return Ok(());
    }
    diesel::update(memberships::table.find(&m.id))
        .set(memberships::sponsor_id.eq(Some(&sponsor.user_id)))
        .execute(conn)?;
    let email: Option<String> = users::table.find(&sponsor.user_id).select(users::email).first(conn).optional()?;
    audit::record(conn, actor, Some(&org.id), action::SPONSOR_CHANGED, Some(&m.user_id), email.as_deref())?;
    Ok(())
}

/// Sets (or clears) the date access ends; the reminder is sent again for a new date.
pub fn set_end_date(
    conn: &mut DbConnection,
    org: &Organization,
    mid: &str,
    ends: Option<PrimitiveDateTime>,
    actor: &Actor,
) -> Result<(), ServiceError> {
    if ends.is_some_and(|e| e <= db::now()) {
        return Err(ServiceError::field("access_ends_at", "lifecycle.end_date_past"));
    }
    db::write_tx(conn, |conn| {
        let m = find(conn, &org.id, mid)?;
        diesel::update(memberships::table.find(&m.id))
            .set((
                memberships::access_ends_at.eq(ends),
                memberships::end_reminder_sent_at.eq(None::<PrimitiveDateTime>),
            ))
            .execute(conn)?;
        let detail = ends.map(|e| e.to_string()).unwrap_or_else(|| "none".into());
        audit::record(conn, actor, Some(&org.id), action::END_DATE_CHANGED, Some(&m.user_id), Some(&detail))?;
        Ok(())
    })
}

/// Days an extension adds: the org's access period, or 90 days.
pub fn extension_days(org: &Organization) -> i64 {
    org.guest_access_days.unwrap_or(DEFAULT_EXTENSION_DAYS)
}

/// Extends access from the later of now and the current end date; unblocks when access had ended.
pub fn extend(
    conn: &mut DbConnection,
    org: &Organization,
    mid: &str,
    actor: &Actor,
) -> Result<PrimitiveDateTime, ServiceError> {
    db::write_tx(conn, |conn| {
        let m = find(conn, &org.id, mid)?;
        let Some(current) = m.access_ends_at else { return Err(ServiceError::WrongState) };
        if m.removed_at.is_some() || m.left_at.is_some() {
            return Err(ServiceError::WrongState);
        }
        let now = db::now();
        let new_end = current.max(now) + time::Duration::days(extension_days(org));
        let ended = current <= now;
        // Extending after the end restores the access the end date took away, but never lifts
        // a block an admin set: the latest block-related event tells which it was.
        let last_block: Option<String> = audit_events::table
            .filter(audit_events::org_id.eq(&org.id))
            .filter(audit_events::target.eq(&m.user_id))
            .filter(audit_events::action.eq_any([
                action::MEMBER_BLOCKED,
                action::MEMBER_UNBLOCKED,
                action::ACCESS_ENDED,
            ]))
            .order((audit_events::created_at.desc(), audit_events::id.desc()))
            .select(audit_events::action)
            .first(conn)
            .optional()?;
        let blocked = m.blocked && !(ended && last_block.as_deref() == Some(action::ACCESS_ENDED));
        diesel::update(memberships::table.find(&m.id))
            .set((
                memberships::access_ends_at.eq(Some(new_end)),
                memberships::end_reminder_sent_at.eq(None::<PrimitiveDateTime>),
                memberships::blocked.eq(blocked),
            ))
            .execute(conn)?;
        audit::record(
            conn,
            actor,
            Some(&org.id),
            action::ACCESS_EXTENDED,
            Some(&m.user_id),
            Some(&new_end.to_string()),
        )?;
        Ok(new_end)
    })
}

/// What one pass of the daily job did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DailyReport {
    pub reminders: usize,
    pub ended: usize,
    pub purged: usize,
}

/// The daily job, with the clock passed in (tests drive it): reminds sponsors 14 days before
/// access ends, blocks memberships whose end date passed (ending their sessions), and purges
/// people removed more than 30 days ago.
pub fn run_daily(conn: &mut DbConnection, now: PrimitiveDateTime, public_url: &Url) -> anyhow::Result<DailyReport> {
    let mut report = DailyReport::default();
    let job = Actor::default();

    // Reminders: one per end date.
    let due: Vec<Membership> = memberships::table
        .filter(memberships::access_ends_at.le(now + REMINDER_BEFORE))
        .filter(memberships::access_ends_at.gt(now))
        .filter(memberships::end_reminder_sent_at.is_null())
        .filter(memberships::removed_at.is_null())
        .filter(memberships::left_at.is_null())
        .filter(memberships::blocked.eq(false))
        .select(Membership::as_select())
        .limit(1000)
        .load(conn)?;
    for m in due {
        db::write_tx(conn, |conn| -> anyhow::Result<()> {
            let n = diesel::update(memberships::table.find(&m.id).filter(memberships::end_reminder_sent_at.is_null()))
                .set(memberships::end_reminder_sent_at.eq(Some(now)))
                .execute(conn)?;
            if n == 0 {
                return Ok(());
            }
            let org: Organization =
                organizations::table.find(&m.org_id).select(Organization::as_select()).first(conn)?;
            let guest: User = users::table.find(&m.user_id).select(User::as_select()).first(conn)?;
            let sponsor_id = m.sponsor_id.clone().or(m.invited_by.clone());
            let sponsor = match sponsor_id {
                Some(id) => users::table.find(id).select(User::as_select()).first(conn).optional()?,
                None => None,
            };
            if let (Some(sponsor), Some(ends)) = (sponsor, m.access_ends_at) {
                let lang = sponsor
                    .language
                    .as_deref()
                    .and_then(Lang::parse)
                    .or_else(|| Lang::parse(&org.default_language))
                    .unwrap_or_default();
                let url = crate::domain::links::sponsor_url(public_url, &org.slug, &m.id);
                let mail = messages::end_reminder(&org, &guest, &sponsor, &ends, &url, extension_days(&org), lang)?;
                mail::enqueue(conn, mail, public_url)?;
            }
            audit::record(conn, &job, Some(&m.org_id), action::END_REMINDER_SENT, Some(&m.user_id), None)?;
            report.reminders += 1;
            Ok(())
        })?;
    }

    // End of access: block and end sessions.
    let ended: Vec<Membership> = memberships::table
        .filter(memberships::access_ends_at.le(now))
        .filter(memberships::blocked.eq(false))
        .filter(memberships::removed_at.is_null())
        .select(Membership::as_select())
        .limit(1000)
        .load(conn)?;
    for m in ended {
        db::write_tx(conn, |conn| -> anyhow::Result<()> {
            diesel::update(memberships::table.find(&m.id)).set(memberships::blocked.eq(true)).execute(conn)?;
            end_all_sessions(conn, &m.user_id)?;
            crate::services::oidc::access::revoke_for_membership(conn, &m.id)?;
            audit::record(conn, &job, Some(&m.org_id), action::ACCESS_ENDED, Some(&m.user_id), None)?;
            report.ended += 1;
            Ok(())
        })?;
    }

    // Purge: removed more than 30 days ago.
    let old: Vec<Membership> = memberships::table
        .filter(memberships::removed_at.le(now - RESTORE_WINDOW))
        .select(Membership::as_select())
        .limit(1000)
        .load(conn)?;
    for m in old {
        db::write_tx(conn, |conn| -> anyhow::Result<()> {
            let inv_ids: Vec<String> =
                invitations::table.filter(invitations::membership_id.eq(&m.id)).select(invitations::id).load(conn)?;
            diesel::delete(outbox::table.filter(outbox::invitation_id.eq_any(&inv_ids))).execute(conn)?;
            diesel::delete(invitations::table.filter(invitations::membership_id.eq(&m.id))).execute(conn)?;
            diesel::delete(group_members::table.filter(group_members::membership_id.eq(&m.id))).execute(conn)?;
            diesel::delete(app_assignments::table.filter(app_assignments::membership_id.eq(&m.id))).execute(conn)?;
            diesel::delete(memberships::table.find(&m.id)).execute(conn)?;
            audit::record(conn, &job, Some(&m.org_id), action::MEMBER_PURGED, Some(&m.user_id), None)?;
            report.purged += 1;
            Ok(())
        })?;
    }
    // Rate counters whose window is long over (no window outlasts a day).
    crate::services::rate::purge_stale(conn, db::now())?;
    // OpenID Connect codes and tokens that expired over a day ago.
    crate::services::oidc::grants::purge_expired(conn, now)?;
    Ok(report)
}

/// Runs the daily job every hour until `shutdown` flips (each pass only does what is due).
pub async fn run_periodically(pool: db::Pool, public_url: Url, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    loop {
        let (p, u) = (&pool, public_url.clone());
        let result = db::with_conn(p, move |c| run_daily(c, db::now(), &u)).await;
        match result {
            Ok(r) if r != DailyReport::default() => tracing::info!(?r, "lifecycle job"),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "lifecycle job failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(3600)) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            break;
        }
    }
}
