//! Invitations: create, resend, revoke, and look up by token (design §2).

use diesel::prelude::*;
use time::PrimitiveDateTime;
use url::Url;

use crate::db::models::{Invitation, InvitationApiDetails, Membership, Organization, OutboxMessage, User};
use crate::db::schema::{invitation_api_details, invitations, memberships, outbox};
use crate::db::{self, DbConnection};
use crate::domain::OutboxStatus;
use crate::domain::redirect::check_redirect;
use crate::domain::token::{PlainToken, hash_token, looks_like_token};
use crate::domain::{Email, InvitationStatus, MembershipState, Role, UserType, has_control_chars};
use crate::i18n::Lang;
use crate::mail::{self, messages};
use crate::services::audit::{self, action};
use crate::services::{Actor, FieldErrors, ServiceError, accounts};

/// Longest personal message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 2000;

/// What an inviter typed.
#[derive(Debug, Clone, Default)]
pub struct InviteInput {
    pub email: String,
    pub display_name: String,
    pub message: String,
    pub redirect_url: String,
    pub user_type: String,
    pub send_email: bool,
    /// Language of the email, when the inviter chose one.
    pub language: Option<Lang>,
    /// Groups the guest joins on redemption (already checked against the inviter's targets).
    pub group_ids: Vec<String>,
    /// App the guest gets and lands on.
    pub app_id: Option<String>,
}

/// A validated invitation request.
#[derive(Debug, Clone)]
pub struct ValidInvite {
    pub email: Email,
    pub display_name: String,
    pub message: Option<String>,
    pub redirect_url: Option<String>,
    pub user_type: UserType,
    pub send_email: bool,
    pub language: Option<Lang>,
    pub group_ids: Vec<String>,
    pub app_id: Option<String>,
}

/// Checks an invitation request against the rules of design §2.
pub fn validate(input: &InviteInput, org: &Organization, public_url: &Url) -> Result<ValidInvite, FieldErrors> {
    validate_with_origins(input, org, public_url, &[])
}

/// [`validate`], with more allowed redirect origins (the org's app URLs).
pub fn validate_with_origins(
    input: &InviteInput,
    org: &Organization,
    public_url: &Url,
    app_origins: &[String],
) -> Result<ValidInvite, FieldErrors> {
    let mut allowed = org.allowed_origins();
    allowed.extend(app_origins.iter().map(String::as_str));
    let mut errors = FieldErrors::default();
    let email = Email::parse(&input.email);
    if let Err(e) = &email {
        errors.add(
            "email",
            if *e == crate::domain::email::EmailError::Empty { "email.required" } else { "email.invalid" },
        );
    }
    if let Ok(e) = &email
        && let Err(key) = crate::services::policy::check_domain(org, e.domain())
    {
        errors.add("email", key);
    }
    let display_name = input.display_name.trim().to_owned();
    if display_name.chars().count() > 200 || crate::domain::has_any_control_chars(&display_name) {
        errors.add("display_name", "name.invalid");
    }
    let message = input.message.trim().replace("\r\n", "\n");
    if message.chars().count() > MAX_MESSAGE_CHARS {
        errors.add("message", "invite.message_too_long");
    } else if has_control_chars(&message) {
        errors.add("message", "invite.message_invalid");
    }
    let redirect = input.redirect_url.trim();
    let redirect_url = if redirect.is_empty() {
        None
    } else {
        match check_redirect(redirect, public_url, &allowed) {
            Ok(u) => Some(u),
            Err(p) => {
                errors.add("redirect_url", p.message_key());
                None
            }
        }
    };
    let user_type = UserType::parse(if input.user_type.is_empty() { "Guest" } else { &input.user_type });
    if user_type.is_none() {
        errors.add("user_type", "invite.user_type_invalid");
    }
    match (email, user_type) {
        (Ok(email), Some(user_type)) if errors.is_empty() => {
            let display_name = if display_name.is_empty() {
                email.as_str().split('@').next().unwrap_or("").to_owned()
            } else {
                display_name
            };
            Ok(ValidInvite {
                email,
                display_name,
                message: (!message.is_empty()).then_some(message),
                redirect_url,
                user_type,
                send_email: input.send_email,
                language: input.language,
                group_ids: input.group_ids.clone(),
                app_id: input.app_id.clone(),
            })
        }
        _ => Err(errors),
    }
}

/// The result of an invitation request.
#[derive(Debug)]
pub struct Created {
    pub invitation: Invitation,
    /// The redeem link, returned only when it was not emailed (it is then "disclosed").
    pub redeem_url: Option<String>,
    /// True when a pending invitation for that address already existed and was returned as is.
    pub existing: bool,
}

/// Everything needed to render invitation mail, gathered before the write transaction.
pub struct MailContext<'a> {
    pub public_url: &'a Url,
    pub inviter: &'a User,
}

/// A new pending invitation row for `invite` (one write path for single and batch invitations).
fn new_invitation(
    org: &Organization,
    membership_id: &str,
    invite: &ValidInvite,
    token: &PlainToken,
    actor: &Actor,
    now: PrimitiveDateTime,
) -> Invitation {
    Invitation {
        id: db::new_id(),
        org_id: org.id.clone(),
        membership_id: membership_id.to_owned(),
        email: invite.email.as_str().to_owned(),
        display_name: invite.display_name.clone(),
        message: invite.message.clone(),
        redirect_url: invite.redirect_url.clone(),
        user_type: invite.user_type,
        language: invite.language.map(|l| l.code().to_owned()),
        token_hash: token.hash(),
        status: InvitationStatus::Pending,
        disclosed: !invite.send_email,
        send_email: invite.send_email,
        invited_by: actor.user_id.clone(),
        code_hash: None,
        code_expires_at: None,
        code_attempts: 0,
        created_at: now,
        expires_at: now + lifetime(org),
        accepted_at: None,
        revoked_at: None,
        group_ids: invite.group_ids.join(","),
        app_id: invite.app_id.clone(),
        reset: false,
    }
}

fn lifetime(org: &Organization) -> time::Duration {
    time::Duration::days(org.invite_lifetime_days.clamp(1, 90))
}

pub use crate::domain::links::redeem_url;

/// Creates an invitation (or returns the pending one for that address), with its email in the
/// outbox, in one transaction.
pub fn create(
    conn: &mut DbConnection,
    org: &Organization,
    invite: &ValidInvite,
    mail_ctx: &MailContext,
    actor: &Actor,
) -> Result<Created, ServiceError> {
    let token = PlainToken::generate();
    let now = db::now();
    let result = db::write_tx(conn, |conn| {
        let user = accounts::find_or_create(conn, &invite.email, &invite.display_name)?;
        let existing_membership: Option<Membership> = memberships::table
            .filter(memberships::org_id.eq(&org.id))
            .filter(memberships::user_id.eq(&user.id))
            .select(Membership::as_select())
            .first(conn)
            .optional()?;
        let membership = match existing_membership {
            Some(m) if m.removed_at.is_none() && m.left_at.is_none() && m.state == MembershipState::Accepted => {
                return Err(ServiceError::field("email", "invite.already_member"));
            }
            Some(m) => {
                if let Some(pending) = pending_for(conn, &org.id, invite.email.as_str())? {
                    if pending.expires_at > now {
                        return Ok(Created { invitation: pending, redeem_url: None, existing: true });
                    }
                    // An expired invitation blocks nobody: retire it and issue a fresh one.
                    diesel::update(invitations::table.find(&pending.id))
                        .set(invitations::status.eq(InvitationStatus::Expired))
                        .execute(conn)?;
                }
                diesel::update(memberships::table.find(&m.id))
                    .set((
                        memberships::removed_at.eq(None::<PrimitiveDateTime>),
                        memberships::left_at.eq(None::<PrimitiveDateTime>),
                        memberships::blocked.eq(false),
                        // Whoever comes back through an invitation starts without any role.
                        memberships::role.eq(Role::None),
                        memberships::access_ends_at.eq(None::<PrimitiveDateTime>),
                        memberships::end_reminder_sent_at.eq(None::<PrimitiveDateTime>),
                        memberships::sponsor_id.eq(&actor.user_id),
                        memberships::state.eq(MembershipState::PendingAcceptance),
                        memberships::user_type.eq(invite.user_type.as_str()),
                        memberships::invited_by.eq(&actor.user_id),
                        memberships::created_at.eq(now),
                    ))
                    .execute(conn)?;
                m
            }
            None => {
                let m = Membership {
                    id: db::new_id(),
                    org_id: org.id.clone(),
                    user_id: user.id.clone(),
                    user_type: invite.user_type,
                    role: Role::None,
                    state: MembershipState::PendingAcceptance,
                    blocked: false,
                    invited_by: actor.user_id.clone(),
                    accepted_at: None,
                    removed_at: None,
                    created_at: now,
                    sponsor_id: actor.user_id.clone(),
                    access_ends_at: None,
                    end_reminder_sent_at: None,
                    left_at: None,
                };
                diesel::insert_into(memberships::table).values(&m).execute(conn)?;
                m
            }
        };
        let invitation = new_invitation(org, &membership.id, invite, &token, actor, now);
        diesel::insert_into(invitations::table).values(&invitation).execute(conn)?;
        if invite.send_email {
            let lang = email_language(&invitation, &user, org);
            let mail =
                messages::invitation(org, &invitation, mail_ctx.inviter, token.expose(), mail_ctx.public_url, lang)?;
            mail::enqueue(conn, mail, mail_ctx.public_url)?;
        }
        let detail = serde_json::json!({ "email": invitation.email, "user_type": invitation.user_type, "send_email": invite.send_email }).to_string();
        audit::record(conn, actor, Some(&org.id), action::INVITATION_CREATED, Some(&invitation.id), Some(&detail))?;
        Ok(Created { invitation, redeem_url: None, existing: false })
    });
    match result {
        Ok(mut created) => {
            if !created.existing && !invite.send_email {
                created.redeem_url = Some(redeem_url(mail_ctx.public_url, token.expose()));
            }
            Ok(created)
        }
        // Two inviters raced on the same address: the other one's invitation stands.
        Err(ServiceError::Db(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        ))) => {
            let pending = pending_for(conn, &org.id, invite.email.as_str())?.ok_or(ServiceError::NotFound)?;
            Ok(Created { invitation: pending, redeem_url: None, existing: true })
        }
        Err(e) => Err(e),
    }
}

/// Through which door an invitation comes; each has its own rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// The admin console's invite form.
    Console,
    /// `/o/{org}/invite`: guests only, always by email, landing on My Apps.
    SelfService,
    /// The Graph-compatible JSON API.
    Api,
    /// A bulk CSV job (the server's worker).
    Bulk,
    /// `vestibule invite --csv`.
    Cli,
}

impl Channel {
    /// True when the inviter's hourly limit applies (people and programs, not confirmed batches).
    fn counts_toward_limit(self) -> bool {
        matches!(self, Channel::Console | Channel::SelfService | Channel::Api)
    }

    /// True when only admins may use this channel.
    fn admins_only(self) -> bool {
        matches!(self, Channel::Bulk | Channel::Cli)
    }
}

/// Who invites: the organization, their membership in it, and the audit actor.
#[derive(Clone, Copy)]
pub struct Inviter<'a> {
    pub org: &'a Organization,
    pub membership: &'a Membership,
    pub actor: &'a Actor,
}

/// What may come with an invitation besides the fields of the form (the API's extras).
#[derive(Debug, Clone, Default)]
pub struct InviteOptions {
    /// Apply the inviter's hourly limit (off when the operator turned throttling off).
    pub rate_limit: bool,
    /// When the address already has a pending invitation and mail is asked for, send it again.
    pub resend_existing: bool,
    /// A copy of the invitation email to this (address, name), sent with a new invitation.
    pub cc: Option<(String, Option<String>)>,
    /// "Invite with reset": re-bind this accepted membership to the invited address.
    pub reset_membership: Option<String>,
    /// Sponsor the invited person with this membership (an active member of the org) rather
    /// than with the inviter.
    pub sponsor: Option<String>,
    /// The API request's extras, kept with a new invitation (its `invitation_id` is filled in).
    pub api_details: Option<InvitationApiDetails>,
}

/// The one invitation use case, for every channel: the policy, the domain rules, the redirect
/// target, the groups and app, the hourly limit, then create (or resend, or reset) with the CC
/// copy, the audit event and the outbox row, all in one write transaction. Nothing is written
/// when any check refuses.
pub fn invite(
    conn: &mut DbConnection,
    public_url: &Url,
    inviter: Inviter,
    channel: Channel,
    mut input: InviteInput,
    opts: &InviteOptions,
) -> Result<Created, ServiceError> {
    let Inviter { org, membership, actor } = inviter;
    if channel == Channel::SelfService {
        input.user_type = UserType::Guest.as_str().into();
        input.send_email = true;
        input.redirect_url.clear();
    }
    if !crate::services::policy::may_invite(org, membership)
        || (channel.admins_only() && membership.role != Role::Admin)
    {
        return Err(ServiceError::Forbidden);
    }
    db::write_tx(conn, |conn| {
        // The app origins matter only for a landing URL, the targets only when some were chosen.
        let app_origins = if input.redirect_url.trim().is_empty() {
            Vec::new()
        } else {
            crate::services::apps::origins(conn, &org.id)?
        };
        let checked = validate_with_origins(&input, org, public_url, &app_origins);
        let mut errors = checked.as_ref().err().cloned().unwrap_or_default();
        if !input.group_ids.is_empty() || input.app_id.is_some() {
            let targets = targets_for(conn, org, membership)?;
            if let Err(e) = check_targets(&targets, &input.group_ids, input.app_id.as_deref()) {
                errors.0.extend(e.0);
            }
        }
        let valid = match checked {
            Ok(v) if errors.is_empty() => v,
            _ => return Err(ServiceError::Invalid(errors)),
        };
        if opts.rate_limit
            && channel.counts_toward_limit()
            && let Some(wait) = crate::services::policy::take_invitation_allowance(conn, org, &membership.user_id)?
        {
            return Err(ServiceError::RateLimited(wait));
        }
        // The sponsor asked for (the API's invitedUserSponsors), checked before anything is written.
        let sponsor = match &opts.sponsor {
            Some(mid) => Some(crate::services::lifecycle::sponsor_member(conn, org, mid)?),
            None => None,
        };
        let inviter_user = accounts::find_by_id(conn, &membership.user_id)?.ok_or(ServiceError::NotFound)?;
        let mail_ctx = MailContext { public_url, inviter: &inviter_user };
        let created = if let Some(mid) = &opts.reset_membership {
            let landing = crate::services::lifecycle::ResetLanding {
                redirect_url: valid.redirect_url.clone(),
                message: valid.message.clone(),
                by_api_key: channel == Channel::Api,
            };
            let inv = crate::services::lifecycle::reset_redemption(
                conn,
                org,
                mid,
                valid.email.as_str(),
                landing,
                &mail_ctx,
                actor,
            )?;
            Created { invitation: inv, redeem_url: None, existing: false }
        } else {
            let created = create(conn, org, &valid, &mail_ctx, actor)?;
            if created.existing && valid.send_email && opts.resend_existing {
                // Asked to send again: resend rotates the link and mails it.
                let inv = resend(conn, org, &created.invitation.id, &mail_ctx, actor)?;
                Created { invitation: inv, redeem_url: None, existing: true }
            } else {
                created
            }
        };
        // The copy goes with a new invitation that is mailed (a reset's always is).
        if let Some((address, name)) = &opts.cc
            && (valid.send_email || opts.reset_membership.is_some())
            && !created.existing
        {
            let lang = email_language(&created.invitation, &inviter_user, org);
            let mail = crate::mail::invitation_cc::copy(
                org,
                &created.invitation,
                &inviter_user,
                address,
                name.as_deref(),
                lang,
            )?;
            mail::enqueue(conn, mail, public_url)?;
        }
        if let Some(sponsor) = &sponsor {
            crate::services::lifecycle::assign_sponsor(conn, org, &created.invitation.membership_id, sponsor, actor)?;
        }
        if let Some(details) = &opts.api_details
            && !created.existing
        {
            let row = InvitationApiDetails { invitation_id: created.invitation.id.clone(), ..details.clone() };
            diesel::insert_into(invitation_api_details::table).values(&row).execute(conn)?;
        }
        Ok(created)
    })
}

/// What the JSON API kept of an invitation's request beyond the invitation row, if anything.
pub fn api_details(conn: &mut DbConnection, invitation_id: &str) -> QueryResult<Option<InvitationApiDetails>> {
    invitation_api_details::table.find(invitation_id).select(InvitationApiDetails::as_select()).first(conn).optional()
}

/// Many invitations through a batch channel (bulk waves, the CLI), each with the outcome
/// [`invite`] would give it with default options, in one write transaction.
///
/// The checks run once for the batch where they do not depend on the row (policy, app origins,
/// groups and apps), then per row in memory. Addresses that have no account yet (the usual case
/// for a wave) are created together: accounts, memberships, invitations, their emails and audit
/// events in multi-row inserts, in one savepoint. Rows whose address already has an account,
/// a second row for the same address, or the whole fast group if its savepoint is refused (an
/// invitation of the same address committed meanwhile), go through [`invite`] one by one, in
/// the order given.
pub fn invite_many(
    conn: &mut DbConnection,
    public_url: &Url,
    inviter: Inviter,
    channel: Channel,
    inputs: Vec<InviteInput>,
) -> Result<Vec<Result<Created, ServiceError>>, ServiceError> {
    let Inviter { org, membership, actor } = inviter;
    let opts = InviteOptions::default();
    if channel.counts_toward_limit() || channel == Channel::SelfService {
        // Per-person channels keep their per-request rules (limits, forced fields).
        return Ok(inputs.into_iter().map(|input| invite(conn, public_url, inviter, channel, input, &opts)).collect());
    }
    if !crate::services::policy::may_invite(org, membership)
        || (channel.admins_only() && membership.role != Role::Admin)
    {
        return Ok(inputs.iter().map(|_| Err(ServiceError::Forbidden)).collect());
    }
    db::write_tx(conn, |conn| {
        let app_origins = if inputs.iter().any(|i| !i.redirect_url.trim().is_empty()) {
            crate::services::apps::origins(conn, &org.id)?
        } else {
            Vec::new()
        };
        let targets = if inputs.iter().any(|i| !i.group_ids.is_empty() || i.app_id.is_some()) {
            Some(targets_for(conn, org, membership)?)
        } else {
            None
        };
        let mut outcomes: Vec<Option<Result<Created, ServiceError>>> = inputs.iter().map(|_| None).collect();
        let mut valid: Vec<(usize, ValidInvite)> = Vec::new();
        for (i, input) in inputs.iter().enumerate() {
            let checked = validate_with_origins(input, org, public_url, &app_origins);
            let mut errors = checked.as_ref().err().cloned().unwrap_or_default();
            if let Some(targets) = &targets
                && (!input.group_ids.is_empty() || input.app_id.is_some())
                && let Err(e) = check_targets(targets, &input.group_ids, input.app_id.as_deref())
            {
                errors.0.extend(e.0);
            }
            match checked {
                Ok(v) if errors.is_empty() => valid.push((i, v)),
                _ => outcomes[i] = Some(Err(ServiceError::Invalid(errors))),
            }
        }
        let addresses: Vec<&str> = valid.iter().map(|(_, v)| v.email.as_str()).collect();
        let known: std::collections::HashSet<String> = if addresses.is_empty() {
            Default::default()
        } else {
            crate::db::schema::users::table
                .filter(crate::db::schema::users::email.eq_any(&addresses))
                .select(crate::db::schema::users::email)
                .load(conn)?
                .into_iter()
                .collect()
        };
        let mut seen = std::collections::HashSet::new();
        let (fresh, mut one_by_one): (Vec<_>, Vec<_>) =
            valid.into_iter().partition(|(_, v)| !known.contains(v.email.as_str()) && seen.insert(v.email.clone()));
        if !fresh.is_empty() {
            let inviter_user = accounts::find_by_id(conn, &membership.user_id)?.ok_or(ServiceError::NotFound)?;
            let mail_ctx = MailContext { public_url, inviter: &inviter_user };
            let invites: Vec<&ValidInvite> = fresh.iter().map(|(_, v)| v).collect();
            match db::write_tx(conn, |conn| create_for_new_accounts(conn, org, &invites, &mail_ctx, actor)) {
                Ok(created) => {
                    for ((i, _), c) in fresh.iter().zip(created) {
                        outcomes[*i] = Some(Ok(c));
                    }
                }
                Err(ServiceError::Db(diesel::result::Error::DatabaseError(
                    diesel::result::DatabaseErrorKind::UniqueViolation,
                    _,
                ))) => one_by_one.extend(fresh),
                Err(e) => return Err(e),
            }
        }
        one_by_one.sort_by_key(|(i, _)| *i);
        for (i, _) in one_by_one {
            outcomes[i] = Some(invite(conn, public_url, inviter, channel, inputs[i].clone(), &opts));
        }
        Ok(outcomes.into_iter().map(|o| o.unwrap_or(Err(ServiceError::NotFound))).collect())
    })
}

/// [`create`] for addresses that have no account yet, all at once: the rows are built in
/// memory and written with one multi-row insert per table.
fn create_for_new_accounts(
    conn: &mut DbConnection,
    org: &Organization,
    invites: &[&ValidInvite],
    mail_ctx: &MailContext,
    actor: &Actor,
) -> Result<Vec<Created>, ServiceError> {
    let now = db::now();
    let (mut new_users, mut new_memberships, mut new_invitations) = (Vec::new(), Vec::new(), Vec::new());
    let (mut mails, mut details, mut links) = (Vec::new(), Vec::new(), Vec::new());
    for invite in invites {
        let token = PlainToken::generate();
        let user = User {
            id: db::new_id(),
            email: invite.email.as_str().to_owned(),
            display_name: invite.display_name.clone(),
            name_search: accounts::name_search(&invite.display_name),
            password_hash: None,
            email_verified: false,
            language: None,
            created_at: now,
        };
        let membership = Membership {
            id: db::new_id(),
            org_id: org.id.clone(),
            user_id: user.id.clone(),
            user_type: invite.user_type,
            role: Role::None,
            state: MembershipState::PendingAcceptance,
            blocked: false,
            invited_by: actor.user_id.clone(),
            accepted_at: None,
            removed_at: None,
            created_at: now,
            sponsor_id: actor.user_id.clone(),
            access_ends_at: None,
            end_reminder_sent_at: None,
            left_at: None,
        };
        let invitation = new_invitation(org, &membership.id, invite, &token, actor, now);
        if invite.send_email {
            let lang = email_language(&invitation, &user, org);
            mails.push(messages::invitation(
                org,
                &invitation,
                mail_ctx.inviter,
                token.expose(),
                mail_ctx.public_url,
                lang,
            )?);
            links.push(None);
        } else {
            links.push(Some(redeem_url(mail_ctx.public_url, token.expose())));
        }
        details.push(serde_json::json!({ "email": invitation.email, "user_type": invitation.user_type, "send_email": invite.send_email }).to_string());
        new_users.push(user);
        new_memberships.push(membership);
        new_invitations.push(invitation);
    }
    db::insert_all!(conn, crate::db::schema::users::table, &new_users);
    db::insert_all!(conn, memberships::table, &new_memberships);
    db::insert_all!(conn, invitations::table, &new_invitations);
    mail::enqueue_many(conn, mails, mail_ctx.public_url)?;
    let events: Vec<(&str, Option<&str>)> =
        new_invitations.iter().zip(&details).map(|(inv, d)| (inv.id.as_str(), Some(d.as_str()))).collect();
    audit::record_many(conn, actor, Some(&org.id), action::INVITATION_CREATED, &events)?;
    Ok(new_invitations
        .into_iter()
        .zip(links)
        .map(|(invitation, redeem_url)| Created { invitation, redeem_url, existing: false })
        .collect())
}

/// Resends `invitation_id` for `inviter` (new token, clock restarted, old link dead), counted
/// toward the inviter's hourly limit, in one write transaction.
pub fn resend_as(
    conn: &mut DbConnection,
    public_url: &Url,
    inviter: Inviter,
    invitation_id: &str,
    rate_limit: bool,
) -> Result<Invitation, ServiceError> {
    let Inviter { org, membership, actor } = inviter;
    db::write_tx(conn, |conn| {
        if rate_limit
            && let Some(wait) = crate::services::policy::take_invitation_allowance(conn, org, &membership.user_id)?
        {
            return Err(ServiceError::RateLimited(wait));
        }
        let inviter_user = accounts::find_by_id(conn, &membership.user_id)?.ok_or(ServiceError::NotFound)?;
        resend(conn, org, invitation_id, &MailContext { public_url, inviter: &inviter_user }, actor)
    })
}

/// Email language: the invitation's, else the guest's preference, else the org default.
pub fn email_language(invitation: &Invitation, guest: &User, org: &Organization) -> Lang {
    invitation
        .language
        .as_deref()
        .and_then(Lang::parse)
        .or_else(|| guest.language.as_deref().and_then(Lang::parse))
        .or_else(|| Lang::parse(&org.default_language))
        .unwrap_or_default()
}

/// The pending invitation of an address in an org, if any.
pub fn pending_for(conn: &mut DbConnection, org_id: &str, email: &str) -> QueryResult<Option<Invitation>> {
    invitations::table
        .filter(invitations::org_id.eq(org_id))
        .filter(invitations::email.eq(email))
        .filter(invitations::status.eq(InvitationStatus::Pending))
        .select(Invitation::as_select())
        .first(conn)
        .optional()
}

/// An invitation of an org by id.
pub fn find_in_org(conn: &mut DbConnection, org_id: &str, id: &str) -> QueryResult<Option<Invitation>> {
    invitations::table
        .filter(invitations::org_id.eq(org_id))
        .filter(invitations::id.eq(id))
        .select(Invitation::as_select())
        .first(conn)
        .optional()
}

/// The invitation a token belongs to, whatever its state (the caller decides what to show).
pub fn find_by_token(conn: &mut DbConnection, token: &str) -> QueryResult<Option<Invitation>> {
    if !looks_like_token(token) {
        return Ok(None);
    }
    invitations::table
        .filter(invitations::token_hash.eq(hash_token(token)))
        .select(Invitation::as_select())
        .first(conn)
        .optional()
}

/// The newest invitation of a membership.
pub fn latest_for_membership(conn: &mut DbConnection, membership_id: &str) -> QueryResult<Option<Invitation>> {
    invitations::table
        .filter(invitations::membership_id.eq(membership_id))
        .order(invitations::created_at.desc())
        .select(Invitation::as_select())
        .first(conn)
        .optional()
}

/// Resends a pending invitation: a new token (the old link dies), the clock restarts, and the
/// email goes out again. The new token reaches only the guest's mailbox, so the link is no
/// longer considered disclosed.
pub fn resend(
    conn: &mut DbConnection,
    org: &Organization,
    invitation_id: &str,
    mail_ctx: &MailContext,
    actor: &Actor,
) -> Result<Invitation, ServiceError> {
    let token = PlainToken::generate();
    db::write_tx(conn, |conn| {
        let inv = find_in_org(conn, &org.id, invitation_id)?.ok_or(ServiceError::NotFound)?;
        if inv.status != InvitationStatus::Pending {
            return Err(ServiceError::WrongState);
        }
        let now = db::now();
        let n =
            diesel::update(invitations::table.find(&inv.id).filter(invitations::status.eq(InvitationStatus::Pending)))
                .set((
                    invitations::token_hash.eq(token.hash()),
                    invitations::expires_at.eq(now + lifetime(org)),
                    invitations::disclosed.eq(false),
                    invitations::send_email.eq(true),
                    invitations::code_hash.eq(None::<String>),
                    invitations::code_attempts.eq(0),
                ))
                .execute(conn)?;
        if n != 1 {
            return Err(ServiceError::WrongState);
        }
        let inv = find_in_org(conn, &org.id, invitation_id)?.ok_or(ServiceError::NotFound)?;
        let guest = accounts::find_by_email(conn, &Email::parse(&inv.email).map_err(|_| ServiceError::NotFound)?)?
            .ok_or(ServiceError::NotFound)?;
        let lang = email_language(&inv, &guest, org);
        let mail = messages::invitation(org, &inv, mail_ctx.inviter, token.expose(), mail_ctx.public_url, lang)?;
        mail::enqueue(conn, mail, mail_ctx.public_url)?;
        audit::record(conn, actor, Some(&org.id), action::INVITATION_RESENT, Some(&inv.id), Some(&inv.email))?;
        Ok(inv)
    })
}

/// Revokes a pending invitation; its link dies and the pending membership leaves the list.
pub fn revoke(
    conn: &mut DbConnection,
    org: &Organization,
    invitation_id: &str,
    actor: &Actor,
) -> Result<(), ServiceError> {
    db::write_tx(conn, |conn| {
        let inv = find_in_org(conn, &org.id, invitation_id)?.ok_or(ServiceError::NotFound)?;
        let now = db::now();
        let n =
            diesel::update(invitations::table.find(&inv.id).filter(invitations::status.eq(InvitationStatus::Pending)))
                .set((invitations::status.eq(InvitationStatus::Revoked), invitations::revoked_at.eq(Some(now))))
                .execute(conn)?;
        if n != 1 {
            return Err(ServiceError::WrongState);
        }
        diesel::update(
            memberships::table
                .find(&inv.membership_id)
                .filter(memberships::state.eq(MembershipState::PendingAcceptance)),
        )
        .set(memberships::removed_at.eq(Some(now)))
        .execute(conn)?;
        audit::record(conn, actor, Some(&org.id), action::INVITATION_REVOKED, Some(&inv.id), Some(&inv.email))?;
        Ok(())
    })
}

/// Delivery state of an invitation's newest email: (status, last error).
pub fn delivery_of(conn: &mut DbConnection, invitation_id: &str) -> QueryResult<Option<OutboxMessage>> {
    outbox::table
        .filter(outbox::invitation_id.eq(invitation_id))
        .filter(outbox::kind.eq(messages::KIND_INVITATION))
        .order(outbox::created_at.desc())
        .select(OutboxMessage::as_select())
        .first(conn)
        .optional()
}

/// One line of "Invitations I sent".
pub struct SentInvitation {
    pub invitation: Invitation,
    /// Status of its newest invitation email, if any.
    pub mail_status: Option<OutboxStatus>,
}

/// Keyset cursor: created_at and id of the last row shown.
pub type Cursor = (PrimitiveDateTime, String);

/// Page size of "Invitations I sent".
pub const SENT_PAGE: i64 = 50;

/// Invitations `inviter_id` sent in the org, newest first, after the keyset cursor.
pub fn sent_by(
    conn: &mut DbConnection,
    org_id: &str,
    inviter_id: &str,
    after: Option<(PrimitiveDateTime, String)>,
) -> QueryResult<(Vec<SentInvitation>, Option<Cursor>)> {
    let mut q = invitations::table
        .filter(invitations::org_id.eq(org_id))
        .filter(invitations::invited_by.eq(inviter_id))
        .into_boxed();
    if let Some((at, id)) = after {
        q = q.filter(invitations::created_at.lt(at).or(invitations::created_at.eq(at).and(invitations::id.lt(id))));
    }
    let mut rows: Vec<Invitation> = q
        .order((invitations::created_at.desc(), invitations::id.desc()))
        .limit(SENT_PAGE + 1)
        .select(Invitation::as_select())
        .load(conn)?;
    let next = if rows.len() as i64 > SENT_PAGE {
        rows.truncate(SENT_PAGE as usize);
        rows.last().map(|i| (i.created_at, i.id.clone()))
    } else {
        None
    };
    let ids: Vec<String> = rows.iter().map(|i| i.id.clone()).collect();
    let mails: Vec<(Option<String>, OutboxStatus)> = outbox::table
        .filter(outbox::invitation_id.eq_any(&ids))
        .filter(outbox::kind.eq(messages::KIND_INVITATION))
        .order(outbox::created_at.asc())
        .select((outbox::invitation_id, outbox::status))
        .load(conn)?;
    let status: std::collections::HashMap<String, OutboxStatus> =
        mails.into_iter().filter_map(|(i, s)| i.map(|i| (i, s))).collect();
    let list =
        rows.into_iter().map(|i| SentInvitation { mail_status: status.get(&i.id).copied(), invitation: i }).collect();
    Ok((list, next))
}

/// Catalogue key of an invitation's state as people read it.
pub fn status_key(inv: &Invitation) -> &'static str {
    match inv.status {
        InvitationStatus::Pending if inv.expires_at <= db::now() => "invitation.expired",
        InvitationStatus::Pending => "invitation.pending",
        InvitationStatus::Accepted => "invitation.accepted",
        InvitationStatus::Revoked => "invitation.revoked",
        _ => "invitation.expired",
    }
}

/// Groups and apps an inviter may put a guest into.
#[derive(Debug, Clone, Default)]
pub struct Targets {
    pub groups: Vec<crate::db::models::Group>,
    pub apps: Vec<crate::services::apps::AppSummary>,
}

/// Admins may use every group and app; others the groups they own and the apps given to those groups.
pub fn targets_for(conn: &mut DbConnection, org: &Organization, inviter: &Membership) -> QueryResult<Targets> {
    use crate::db::schema::app_assignments;
    if inviter.role == Role::Admin {
        return Ok(Targets {
            groups: crate::services::groups::list(conn, &org.id)?,
            apps: crate::services::apps::list(conn, &org.id)?,
        });
    }
    let groups = crate::services::groups::owned_by(conn, &org.id, &inviter.id)?;
    let group_ids: Vec<String> = groups.iter().map(|g| g.id.clone()).collect();
    let app_ids: Vec<String> = app_assignments::table
        .filter(app_assignments::group_id.eq_any(&group_ids))
        .select(app_assignments::app_id)
        .load(conn)?;
    let apps = crate::services::apps::list(conn, &org.id)?.into_iter().filter(|a| app_ids.contains(&a.id)).collect();
    Ok(Targets { groups, apps })
}

/// Checks chosen group and app ids against what the inviter may use.
pub fn check_targets(targets: &Targets, group_ids: &[String], app_id: Option<&str>) -> Result<(), FieldErrors> {
    let mut errors = FieldErrors::default();
    if !group_ids.iter().all(|g| targets.groups.iter().any(|t| &t.id == g)) {
        errors.add("groups", "invite.groups_invalid");
    }
    if let Some(app) = app_id
        && !targets.apps.iter().any(|a| a.id == app)
    {
        errors.add("app", "invite.app_invalid");
    }
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

/// On redemption: puts the new guest in the invitation's groups and gives them its app.
/// Groups or apps deleted since the invitation was sent are skipped.
pub fn apply_targets(conn: &mut DbConnection, inv: &Invitation) -> Result<(), ServiceError> {
    for group_id in inv.group_ids.split(',').filter(|g| !g.is_empty()) {
        match crate::services::groups::add_member(conn, &inv.org_id, group_id, &inv.membership_id, false) {
            Ok(()) | Err(ServiceError::NotFound) => {}
            Err(e) => return Err(e),
        }
    }
    if let Some(app_id) = &inv.app_id {
        match crate::services::apps::assign_membership(conn, &inv.org_id, app_id, &inv.membership_id) {
            Ok(()) | Err(ServiceError::NotFound) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
