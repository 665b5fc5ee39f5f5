//! The copy of an invitation sent to its CC recipient (Graph's `ccRecipients`): who was invited,
//! by whom, and the personal message, but never the redeem link, which only the guest receives.

use askama::Template;

use super::NewMail;
use crate::db::models::{Invitation, Organization, User};
use crate::i18n::{Lang, Tr};

/// Outbox kind of the CC copies.
pub const KIND_INVITATION_CC: &str = "invitation_cc";

#[derive(Template)]
#[template(path = "emails/invitation_cc.txt")]
struct CopyText<'a> {
    tr: Tr,
    org_name: &'a str,
    inviter_name: &'a str,
    cc_name: &'a str,
    guest_name: &'a str,
    guest_email: &'a str,
    message: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "emails/invitation_cc.html")]
struct CopyHtml<'a> {
    inner: &'a CopyText<'a>,
}

/// The copy for `address` (named `name`) of `invitation`.
pub fn copy(
    org: &Organization,
    invitation: &Invitation,
    inviter: &User,
    address: &str,
    name: Option<&str>,
    lang: Lang,
) -> anyhow::Result<NewMail> {
    let tr = lang.tr();
    let text = CopyText {
        tr,
        org_name: &org.name,
        inviter_name: &inviter.display_name,
        cc_name: name.filter(|n| !n.trim().is_empty()).unwrap_or(address),
        guest_name: &invitation.display_name,
        guest_email: &invitation.email,
        message: invitation.message.as_deref(),
    };
    let html = CopyHtml { inner: &text }.render()?;
    Ok(NewMail {
        kind: KIND_INVITATION_CC,
        org_id: Some(org.id.clone()),
        invitation_id: Some(invitation.id.clone()),
        recipient: address.to_owned(),
        from_name: tr.f2("email.from_name", "inviter", &inviter.display_name, "org", &org.name),
        reply_to: Some(inviter.email.clone()),
        subject: tr.f2("api.cc.subject", "guest", &invitation.display_name, "org", &org.name),
        text: text.render()?,
        html,
    })
}
