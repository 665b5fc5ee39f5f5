//! Message builders: subject, text and HTML from one pair of templates, in the right language.

use askama::Template;
use url::Url;

use super::NewMail;
use crate::db::models::{Invitation, Organization, User};
use crate::i18n::{Lang, Tr};

/// Outbox kind of invitation emails.
pub const KIND_INVITATION: &str = "invitation";
/// Outbox kind of one-time code emails.
pub const KIND_CODE: &str = "code";

#[derive(Template)]
#[template(path = "emails/invitation.txt")]
struct InvitationText<'a> {
    tr: Tr,
    org_name: &'a str,
    inviter_name: &'a str,
    inviter_email: &'a str,
    guest_name: &'a str,
    message: Option<&'a str>,
    url: &'a str,
    landing: String,
    expires: String,
    privacy_url: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "emails/invitation.html")]
struct InvitationHtml<'a> {
    inner: &'a InvitationText<'a>,
}

/// The invitation email of design §6.
pub fn invitation(
    org: &Organization,
    invitation: &Invitation,
    inviter: &User,
    token: &str,
    public_url: &Url,
    lang: Lang,
) -> anyhow::Result<NewMail> {
    let tr = lang.tr();
    let url = crate::domain::links::redeem_url(public_url, token);
    let landing = match &invitation.redirect_url {
        Some(u) => u.clone(),
        None => tr.f1("email.invite.landing_apps", "org", &org.name),
    };
    let text = InvitationText {
        tr,
        org_name: &org.name,
        inviter_name: &inviter.display_name,
        inviter_email: &inviter.email,
        guest_name: &invitation.display_name,
        message: invitation.message.as_deref(),
        url: &url,
        landing,
        expires: tr.datetime(&invitation.expires_at),
        privacy_url: org.privacy_url.as_deref(),
    };
    let html = InvitationHtml { inner: &text }.render()?;
    Ok(NewMail {
        kind: KIND_INVITATION,
        org_id: Some(org.id.clone()),
        invitation_id: Some(invitation.id.clone()),
        recipient: invitation.email.clone(),
        from_name: tr.f2("email.from_name", "inviter", &inviter.display_name, "org", &org.name),
        reply_to: Some(inviter.email.clone()),
        subject: tr.f2("email.invite.subject", "inviter", &inviter.display_name, "org", &org.name),
        text: text.render()?,
        html,
    })
}

#[derive(Template)]
#[template(path = "emails/code.txt")]
struct CodeText<'a> {
    tr: Tr,
    org_name: &'a str,
    code: &'a str,
}

#[derive(Template)]
#[template(path = "emails/code.html")]
struct CodeHtml<'a> {
    inner: &'a CodeText<'a>,
}

/// The one-time code that proves control of the invited mailbox.
pub fn code(org: &Organization, invitation: &Invitation, code: &str, lang: Lang) -> anyhow::Result<NewMail> {
    let tr = lang.tr();
    let text = CodeText { tr, org_name: &org.name, code };
    let html = CodeHtml { inner: &text }.render()?;
    Ok(NewMail {
        kind: KIND_CODE,
        org_id: Some(org.id.clone()),
        invitation_id: Some(invitation.id.clone()),
        recipient: invitation.email.clone(),
        from_name: tr.f1("email.code.from_name", "org", &org.name),
        reply_to: None,
        subject: tr.f2("email.code.subject", "code", code, "org", &org.name),
        text: text.render()?,
        html,
    })
}

/// Outbox kind of access-end reminders.
pub const KIND_END_REMINDER: &str = "end_reminder";

#[derive(Template)]
#[template(path = "emails/end_reminder.txt")]
struct EndReminderText<'a> {
    tr: Tr,
    org_name: &'a str,
    sponsor_name: &'a str,
    guest_name: &'a str,
    guest_email: &'a str,
    ends: String,
    url: &'a str,
    days: String,
}

#[derive(Template)]
#[template(path = "emails/end_reminder.html")]
struct EndReminderHtml<'a> {
    inner: &'a EndReminderText<'a>,
}

/// Tells a sponsor that their guest's access ends soon, with a one-click link to extend it.
pub fn end_reminder(
    org: &Organization,
    guest: &User,
    sponsor: &User,
    ends: &time::PrimitiveDateTime,
    extend_url: &str,
    extension_days: i64,
    lang: Lang,
) -> anyhow::Result<NewMail> {
    let tr = lang.tr();
    let text = EndReminderText {
        tr,
        org_name: &org.name,
        sponsor_name: &sponsor.display_name,
        guest_name: &guest.display_name,
        guest_email: &guest.email,
        ends: tr.datetime(ends),
        url: extend_url,
        days: extension_days.to_string(),
    };
    let html = EndReminderHtml { inner: &text }.render()?;
    Ok(NewMail {
        kind: KIND_END_REMINDER,
        org_id: Some(org.id.clone()),
        invitation_id: None,
        recipient: sponsor.email.clone(),
        from_name: tr.f1("email.code.from_name", "org", &org.name),
        reply_to: None,
        subject: tr.f2("email.reminder.subject", "guest", &guest.display_name, "org", &org.name),
        text: text.render()?,
        html,
    })
}
