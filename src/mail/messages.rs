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
    let url = crate::services::invitations::redeem_url(public_url, token);
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
