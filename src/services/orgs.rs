//! Organizations: creation (CLI and first-run setup), settings, and who belongs with what role.

use diesel::prelude::*;

use crate::db::models::{Membership, OneTimeLink, Organization};
use crate::db::schema::{memberships, one_time_links, organizations};
use crate::db::{self, DbConnection};
use crate::domain::DomainMode;
use crate::domain::redirect::parse_allowlist_entry;
use crate::domain::token::{PlainToken, hash_token};
use crate::domain::{Email, MembershipState, OrgSlug, Role, UserType};
use crate::i18n::Lang;
use crate::services::audit::{self, action};
use crate::services::{Actor, FieldErrors, ServiceError, accounts};

/// Input for a new organization and its first admin.
#[derive(Debug, Clone, Default)]
pub struct NewOrg {
    pub name: String,
    pub slug: String,
    pub admin_email: String,
    pub admin_name: String,
}

/// Validated form of [`NewOrg`].
pub struct ValidOrg {
    pub name: String,
    pub slug: OrgSlug,
    pub admin_email: Email,
    pub admin_name: String,
}

/// Checks the fields of a new organization.
pub fn validate_new_org(input: &NewOrg) -> Result<ValidOrg, FieldErrors> {
    let mut errors = FieldErrors::default();
    let name = input.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 || crate::domain::has_any_control_chars(&name) {
        errors.add("name", "org.name_invalid");
    }
    let slug = if input.slug.trim().is_empty() { OrgSlug::from_name(&name) } else { OrgSlug::parse(&input.slug) };
    if slug.is_none() {
        errors.add("slug", "org.slug_invalid");
    }
    let email = Email::parse(&input.admin_email);
    if email.is_err() {
        errors.add("admin_email", "email.invalid");
    }
    let admin_name = input.admin_name.trim().to_owned();
    if admin_name.chars().count() > 200 || crate::domain::has_any_control_chars(&admin_name) {
        errors.add("admin_name", "name.invalid");
    }
    match (slug, email) {
        (Some(slug), Ok(admin_email)) if errors.is_empty() => {
            let admin_name = if admin_name.is_empty() {
                admin_email.as_str().split('@').next().unwrap_or("").to_owned()
            } else {
                admin_name
            };
            Ok(ValidOrg { name, slug, admin_email, admin_name })
        }
        _ => Err(errors),
    }
}

/// Creates the organization, its admin account (or reuses an existing one) and the admin
/// membership, in one transaction. `password_hash` is set only on an account without one.
pub fn create_org(
    conn: &mut DbConnection,
    org: &ValidOrg,
    password_hash: Option<&str>,
    actor: &Actor,
) -> Result<(Organization, crate::db::models::User), ServiceError> {
    db::write_tx(conn, |conn| {
        let taken: i64 =
            organizations::table.filter(organizations::slug.eq(org.slug.as_str())).count().get_result(conn)?;
        if taken > 0 {
            return Err(ServiceError::field("slug", "org.slug_taken"));
        }
        let now = db::now();
        let row = Organization {
            id: db::new_id(),
            slug: org.slug.as_str().to_owned(),
            name: org.name.clone(),
            privacy_url: None,
            default_language: "en".into(),
            invite_lifetime_days: 14,
            redirect_allowlist: String::new(),
            created_at: now,
            invite_policy: crate::domain::InvitePolicy::DEFAULT,
            domain_mode: DomainMode::None,
            domain_list: String::new(),
            invites_per_hour: 50,
            guest_access_days: None,
            email_codes: true,
            mfa_policy: crate::domain::MfaPolicy::Nobody,
        };
        diesel::insert_into(organizations::table).values(&row).execute(conn)?;
        let mut user = accounts::find_or_create(conn, &org.admin_email, &org.admin_name)?;
        if let Some(hash) = password_hash
            && accounts::set_initial_password(conn, &user.id, &org.admin_name, hash, None)?
        {
            user.password_hash = Some(hash.to_owned());
        }
        let membership = Membership {
            id: db::new_id(),
            org_id: row.id.clone(),
            user_id: user.id.clone(),
            user_type: UserType::Member,
            role: Role::Admin,
            state: MembershipState::Accepted,
            blocked: false,
            invited_by: None,
            accepted_at: Some(now),
            removed_at: None,
            created_at: now,
            sponsor_id: None,
            access_ends_at: None,
            end_reminder_sent_at: None,
            left_at: None,
        };
        diesel::insert_into(memberships::table).values(&membership).execute(conn)?;
        let mut actor = actor.clone();
        actor.user_id = actor.user_id.or_else(|| Some(user.id.clone()));
        audit::record(conn, &actor, Some(&row.id), action::ORG_CREATED, Some(&row.slug), Some(&row.name))?;
        Ok((row, user))
    })
}

/// Counts organizations (first-run detection).
pub fn count(conn: &mut DbConnection) -> QueryResult<i64> {
    organizations::table.count().get_result(conn)
}

/// Finds an organization by slug.
pub fn find_by_slug(conn: &mut DbConnection, slug: &str) -> QueryResult<Option<Organization>> {
    organizations::table.filter(organizations::slug.eq(slug)).select(Organization::as_select()).first(conn).optional()
}

/// The active (not removed) membership of a user in an organization.
pub fn membership_of(conn: &mut DbConnection, org_id: &str, user_id: &str) -> QueryResult<Option<Membership>> {
    memberships::table
        .filter(memberships::org_id.eq(org_id))
        .filter(memberships::user_id.eq(user_id))
        .filter(memberships::removed_at.is_null())
        .select(Membership::as_select())
        .first(conn)
        .optional()
}

/// Organizations where the user has accepted, unblocked membership, with the role.
pub fn orgs_of_user(conn: &mut DbConnection, user_id: &str) -> QueryResult<Vec<(Organization, Membership)>> {
    organizations::table
        .inner_join(memberships::table)
        .filter(memberships::user_id.eq(user_id))
        .filter(memberships::removed_at.is_null())
        .filter(memberships::state.eq(MembershipState::Accepted))
        .filter(memberships::blocked.eq(false))
        .filter(memberships::left_at.is_null())
        .order(organizations::name.asc())
        .select((Organization::as_select(), Membership::as_select()))
        .load(conn)
}

/// True when the membership gives full rights in the org (accepted and not blocked).
pub fn is_active(m: &Membership) -> bool {
    m.state == MembershipState::Accepted
        && !m.blocked
        && m.removed_at.is_none()
        && m.left_at.is_none()
        && m.access_ends_at.is_none_or(|end| end > db::now())
}

/// Organization settings as edited by an admin.
#[derive(Debug, Clone, Default)]
pub struct SettingsInput {
    pub name: String,
    pub privacy_url: String,
    pub default_language: String,
    pub invite_lifetime_days: String,
    pub redirect_allowlist: String,
    pub invite_policy: String,
    pub domain_mode: String,
    pub domain_list: String,
    /// Set when the admin confirmed switching the domain mode (which clears the list).
    pub confirm_domain_switch: bool,
    pub invites_per_hour: String,
    /// Days of guest access after redemption; empty for no end date.
    pub guest_access_days: String,
    /// Guests may sign in with a one-time code sent by email.
    pub email_codes: bool,
    /// Who must have a second factor: `nobody` (also when empty), `admins`, `everyone`.
    pub mfa_policy: String,
}

/// Validates and saves organization settings.
pub fn update_settings(
    conn: &mut DbConnection,
    org: &Organization,
    input: &SettingsInput,
    actor: &Actor,
) -> Result<Organization, ServiceError> {
    let mut errors = FieldErrors::default();
    let name = input.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 100 || crate::domain::has_any_control_chars(&name) {
        errors.add("name", "org.name_invalid");
    }
    let privacy = input.privacy_url.trim();
    let privacy_url = if privacy.is_empty() {
        None
    } else {
        match url::Url::parse(privacy) {
            Ok(u)
                if u.scheme() == "https"
                    || (u.scheme() == "http" && matches!(u.host_str(), Some("localhost" | "127.0.0.1"))) =>
            {
                Some(u.to_string())
            }
            _ => {
                errors.add("privacy_url", "settings.privacy_invalid");
                None
            }
        }
    };
    let lang = Lang::parse(&input.default_language);
    if lang.is_none() {
        errors.add("default_language", "settings.language_invalid");
    }
    let lifetime = input.invite_lifetime_days.trim().parse::<i64>().ok().filter(|d| (1..=90).contains(d));
    if lifetime.is_none() {
        errors.add("invite_lifetime_days", "settings.lifetime_invalid");
    }
    let mut origins = Vec::new();
    for line in input.redirect_allowlist.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match parse_allowlist_entry(line) {
            Ok(o) if !origins.contains(&o) => origins.push(o),
            Ok(_) => {}
            Err(_) => {
                errors.add("redirect_allowlist", "settings.allowlist_invalid");
                break;
            }
        }
    }
    if origins.len() > 100 {
        errors.add("redirect_allowlist", "settings.allowlist_too_long");
    }
    let invite_policy = crate::domain::InvitePolicy::parse(input.invite_policy.trim());
    if invite_policy.is_none() {
        errors.add("invite_policy", "settings.policy_invalid");
    }
    let parsed_mode = DomainMode::parse(input.domain_mode.trim());
    if parsed_mode.is_none() {
        errors.add("domain_mode", "settings.domain_mode_invalid");
    }
    let mode = parsed_mode.unwrap_or(org.domain_mode);
    let switching = parsed_mode.is_some_and(|m| m != org.domain_mode) && !org.domain_list.trim().is_empty();
    let mut domains = Vec::new();
    if switching && !input.confirm_domain_switch {
        // Switching between an allow-list and a deny-list (or off) clears the list: ask first.
        errors.add("domain_mode", "settings.domain_switch_confirm");
    } else if !switching {
        for line in input.domain_list.lines().map(str::trim).filter(|l| !l.is_empty()) {
            match crate::services::policy::parse_domain_entry(line) {
                Some(d) if !domains.contains(&d) => domains.push(d),
                Some(_) => {}
                None => {
                    errors.add("domain_list", "settings.domain_invalid");
                    break;
                }
            }
        }
        if domains.len() > 500 {
            errors.add("domain_list", "settings.domain_list_too_long");
        }
        if mode == DomainMode::None && !domains.is_empty() {
            errors.add("domain_list", "settings.domain_list_needs_mode");
        }
    }
    let per_hour = input.invites_per_hour.trim().parse::<i64>().ok().filter(|n| (1..=10_000).contains(n));
    if per_hour.is_none() {
        errors.add("invites_per_hour", "settings.per_hour_invalid");
    }
    let access_days = match input.guest_access_days.trim() {
        "" => Some(None),
        s => s.parse::<i64>().ok().filter(|d| (1..=3650).contains(d)).map(Some),
    };
    if access_days.is_none() {
        errors.add("guest_access_days", "settings.access_days_invalid");
    }
    let mfa_policy = match input.mfa_policy.trim() {
        "" => Some(crate::domain::MfaPolicy::Nobody),
        s => crate::domain::MfaPolicy::parse(s),
    };
    if mfa_policy.is_none() {
        errors.add("mfa_policy", "settings.mfa_policy_invalid");
    }
    if !errors.is_empty() {
        return Err(ServiceError::Invalid(errors));
    }
    let mfa_policy = mfa_policy.unwrap_or(org.mfa_policy);
    let (lang, lifetime) = (lang.unwrap_or_default(), lifetime.unwrap_or(14));
    let (per_hour, access_days) = (per_hour.unwrap_or(50), access_days.flatten());
    let invite_policy = invite_policy.unwrap_or(org.invite_policy);
    db::write_tx(conn, |conn| {
        diesel::update(organizations::table.find(&org.id))
            .set((
                organizations::name.eq(&name),
                organizations::privacy_url.eq(&privacy_url),
                organizations::default_language.eq(lang.code()),
                organizations::invite_lifetime_days.eq(lifetime),
                organizations::redirect_allowlist.eq(origins.join("\n")),
                organizations::invite_policy.eq(invite_policy),
                organizations::domain_mode.eq(mode),
                organizations::domain_list.eq(domains.join("\n")),
                organizations::invites_per_hour.eq(per_hour),
                organizations::guest_access_days.eq(access_days),
                organizations::email_codes.eq(input.email_codes),
                organizations::mfa_policy.eq(mfa_policy),
            ))
            .execute(conn)?;
        let detail = serde_json::json!({
            "name": name, "privacy_url": privacy_url, "default_language": lang.code(),
            "invite_lifetime_days": lifetime, "redirect_allowlist": origins,
            "invite_policy": invite_policy, "domain_mode": mode, "domain_list": domains,
            "invites_per_hour": per_hour, "guest_access_days": access_days,
            "email_codes": input.email_codes, "mfa_policy": mfa_policy,
        })
        .to_string();
        audit::record(conn, actor, Some(&org.id), action::SETTINGS_CHANGED, Some(&org.slug), Some(&detail))?;
        Ok(organizations::table.find(&org.id).select(Organization::as_select()).first(conn)?)
    })
}

/// Purpose of a one-time link.
pub mod link_purpose {
    /// First-run setup: create the first organization.
    pub const SETUP: &str = "setup";
    /// Choose the password of an account created from the CLI.
    pub const SET_PASSWORD: &str = "set_password";
    /// "Forgot your password?": choose a new one (valid 30 minutes).
    pub const PASSWORD_RESET: &str = "password_reset";
}

/// Creates a one-time link; the plain token is returned once.
pub fn create_link(
    conn: &mut DbConnection,
    purpose: &str,
    user_id: Option<&str>,
    valid_for: time::Duration,
) -> QueryResult<PlainToken> {
    let token = PlainToken::generate();
    let now = db::now();
    let row = OneTimeLink {
        token_hash: token.hash(),
        purpose: purpose.to_owned(),
        user_id: user_id.map(str::to_owned),
        expires_at: now + valid_for,
        used_at: None,
        created_at: now,
    };
    diesel::insert_into(one_time_links::table).values(&row).execute(conn)?;
    Ok(token)
}

/// Finds a live (unused, unexpired) one-time link.
pub fn find_link(conn: &mut DbConnection, purpose: &str, token: &str) -> QueryResult<Option<OneTimeLink>> {
    one_time_links::table
        .filter(one_time_links::token_hash.eq(hash_token(token)))
        .filter(one_time_links::purpose.eq(purpose))
        .filter(one_time_links::used_at.is_null())
        .filter(one_time_links::expires_at.gt(db::now()))
        .select(OneTimeLink::as_select())
        .first(conn)
        .optional()
}

/// Uses up a one-time link with one conditional update; false when someone else got there first.
pub fn consume_link(conn: &mut DbConnection, purpose: &str, token: &str) -> QueryResult<bool> {
    let n = diesel::update(
        one_time_links::table
            .filter(one_time_links::token_hash.eq(hash_token(token)))
            .filter(one_time_links::purpose.eq(purpose))
            .filter(one_time_links::used_at.is_null())
            .filter(one_time_links::expires_at.gt(db::now())),
    )
    .set(one_time_links::used_at.eq(Some(db::now())))
    .execute(conn)?;
    Ok(n == 1)
}
