//! Mail about a person's own account (not about any organization).

use askama::Template;
use url::Url;

use super::NewMail;
use crate::db::models::User;
use crate::i18n::{Lang, Tr};

/// Outbox kind of the "your password was changed" notice.
pub const KIND_PASSWORD_CHANGED: &str = "password_changed";

#[derive(Template)]
#[template(path = "emails/password_changed.txt")]
struct PasswordChangedText<'a> {
    tr: Tr,
    name: &'a str,
    email: &'a str,
    when: String,
    client_ip: Option<&'a str>,
    account_url: String,
}

#[derive(Template)]
#[template(path = "emails/password_changed.html")]
struct PasswordChangedHtml<'a> {
    inner: &'a PasswordChangedText<'a>,
}

/// Tells `user` that their password changed, when and from which address, and what to do
/// if it was not them (ASVS: notify on credential change).
pub fn password_changed(
    user: &User,
    when: &time::PrimitiveDateTime,
    client_ip: Option<&str>,
    public_url: &Url,
    lang: Lang,
) -> anyhow::Result<NewMail> {
    let tr = lang.tr();
    let account_url = public_url.join("/account")?.to_string();
    let text = PasswordChangedText {
        tr,
        name: &user.display_name,
        email: &user.email,
        when: tr.datetime(when),
        client_ip,
        account_url,
    };
    let html = PasswordChangedHtml { inner: &text }.render()?;
    Ok(NewMail {
        kind: KIND_PASSWORD_CHANGED,
        org_id: None,
        invitation_id: None,
        recipient: user.email.clone(),
        from_name: "Vestibule".to_owned(),
        reply_to: None,
        subject: tr.t("email.password_changed.subject").to_owned(),
        text: text.render()?,
        html,
    })
}

/// Outbox kind of sign-in codes.
pub const KIND_SIGNIN_CODE: &str = "signin_code";
/// Outbox kind of password-reset links (and of "sign in at your provider" answers).
pub const KIND_PASSWORD_RESET: &str = "password_reset";

#[derive(Template)]
#[template(path = "emails/signin_code.txt")]
struct SigninCodeText<'a> {
    tr: Tr,
    name: &'a str,
    code: &'a str,
}

#[derive(Template)]
#[template(path = "emails/signin_code.html")]
struct SigninCodeHtml<'a> {
    inner: &'a SigninCodeText<'a>,
}

/// The one-time code that signs `user` in (the code leads the subject, for phones).
pub fn signin_code(user: &User, code: &str, lang: Lang) -> anyhow::Result<NewMail> {
    let tr = lang.tr();
    let text = SigninCodeText { tr, name: &user.display_name, code };
    let html = SigninCodeHtml { inner: &text }.render()?;
    Ok(NewMail {
        kind: KIND_SIGNIN_CODE,
        org_id: None,
        invitation_id: None,
        recipient: user.email.clone(),
        from_name: "Vestibule".to_owned(),
        reply_to: None,
        subject: tr.f1("email.signin_code.subject", "code", code),
        text: text.render()?,
        html,
    })
}

#[derive(Template)]
#[template(path = "emails/password_reset.txt")]
struct PasswordResetText<'a> {
    tr: Tr,
    name: &'a str,
    email: &'a str,
    url: &'a str,
    provider: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "emails/password_reset.html")]
struct PasswordResetHtml<'a> {
    inner: &'a PasswordResetText<'a>,
}

fn reset_mail(text: &PasswordResetText, subject_key: &str, lang: Lang, recipient: &str) -> anyhow::Result<NewMail> {
    let html = PasswordResetHtml { inner: text }.render()?;
    Ok(NewMail {
        kind: KIND_PASSWORD_RESET,
        org_id: None,
        invitation_id: None,
        recipient: recipient.to_owned(),
        from_name: "Vestibule".to_owned(),
        reply_to: None,
        subject: lang.tr().t(subject_key).to_owned(),
        text: text.render()?,
        html,
    })
}

/// The single-use link to choose a new password (`url`, valid 30 minutes).
pub fn password_reset(user: &User, url: &str, lang: Lang) -> anyhow::Result<NewMail> {
    let text = PasswordResetText { tr: lang.tr(), name: &user.display_name, email: &user.email, url, provider: None };
    reset_mail(&text, "email.password_reset.subject", lang, &user.email)
}

/// The answer to a reset request for an account that signs in through `provider`: no link,
/// where to sign in instead.
pub fn reset_at_provider(user: &User, provider: &str, public_url: &Url, lang: Lang) -> anyhow::Result<NewMail> {
    let url = public_url.join("/signin")?.to_string();
    let text = PasswordResetText {
        tr: lang.tr(),
        name: &user.display_name,
        email: &user.email,
        url: &url,
        provider: Some(provider),
    };
    reset_mail(&text, "email.password_reset.subject_provider", lang, &user.email)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> User {
        User {
            id: "u1".into(),
            email: "ada@example.com".into(),
            display_name: "Ada <b>".into(),
            name_search: "ada <b>".into(),
            password_hash: None,
            email_verified: true,
            language: None,
            created_at: crate::db::now(),
        }
    }

    #[test]
    fn both_parts_name_the_account_the_time_and_the_address() {
        let url = Url::parse("https://portal.example.com").unwrap();
        let when = time::macros::datetime!(2026-03-01 09:05);
        let mail = password_changed(&user(), &when, Some("203.0.113.9"), &url, Lang::Fr).unwrap();
        assert_eq!(mail.recipient, "ada@example.com");
        assert!(mail.subject.contains("mot de passe"), "{}", mail.subject);
        for body in [&mail.text, &mail.html] {
            assert!(body.contains("ada@example.com") && body.contains("203.0.113.9"), "{body}");
            assert!(body.contains("1er mars 2026 à 09 h 05 UTC"), "{body}");
            assert!(body.contains("https://portal.example.com/account"), "{body}");
        }
        assert!(mail.text.contains("Ada <b>") && mail.html.contains("Ada &#60;b&#62;"), "{}", mail.html);
    }

    #[test]
    fn sign_in_codes_and_reset_links_in_both_languages() {
        let mail = signin_code(&user(), "01234567", Lang::Fr).unwrap();
        assert_eq!(mail.subject, "01234567 est votre code de connexion Vestibule");
        assert!(mail.text.contains("01234567") && mail.html.contains("01234567"));
        assert!(mail.text.contains("10 minutes") && mail.html.contains("Ada &#60;b&#62;"));
        let url = "https://portal.example.com/signin/reset/abc";
        let mail = password_reset(&user(), url, Lang::En).unwrap();
        assert_eq!(mail.subject, "Choose a new Vestibule password");
        assert!(mail.text.contains(url) && mail.html.contains(url) && mail.text.contains("30 minutes"));
        let base = Url::parse("https://portal.example.com").unwrap();
        let mail = reset_at_provider(&user(), "Contoso", &base, Lang::Fr).unwrap();
        assert!(mail.text.contains("Contoso") && mail.text.contains("https://portal.example.com/signin"));
        assert!(!mail.text.contains("/signin/reset/"), "no link to reset a password it does not have");
    }
}

/// Outbox kind of "second factor added / removed / reset" notices.
pub const KIND_SECOND_FACTOR: &str = "second_factor";

#[derive(Template)]
#[template(path = "emails/second_factor.txt")]
struct SecondFactorText<'a> {
    tr: Tr,
    name: &'a str,
    subject: &'a str,
    intro: String,
    client_ip: Option<&'a str>,
    account_url: String,
}

#[derive(Template)]
#[template(path = "emails/second_factor.html")]
struct SecondFactorHtml<'a> {
    inner: &'a SecondFactorText<'a>,
}

/// Tells `user` that a second factor was added (`enrolled`), removed by them (`removed`) or
/// reset by an administrator (`reset`), when and from which address.
pub fn second_factor_changed(
    user: &User,
    event: &str,
    when: &time::PrimitiveDateTime,
    client_ip: Option<&str>,
    public_url: &Url,
    lang: Lang,
) -> anyhow::Result<NewMail> {
    let tr = lang.tr();
    let (subject, intro) = match event {
        "enrolled" => ("email.mfa.enrolled.subject", "email.mfa.enrolled.intro"),
        "reset" => ("email.mfa.reset.subject", "email.mfa.reset.intro"),
        _ => ("email.mfa.removed.subject", "email.mfa.removed.intro"),
    };
    let subject = tr.t(subject);
    let text = SecondFactorText {
        tr,
        name: &user.display_name,
        subject,
        intro: tr.f2(intro, "email", &user.email, "date", &tr.datetime(when)),
        client_ip,
        account_url: public_url.join("/account")?.to_string(),
    };
    let html = SecondFactorHtml { inner: &text }.render()?;
    Ok(NewMail {
        kind: KIND_SECOND_FACTOR,
        org_id: None,
        invitation_id: None,
        recipient: user.email.clone(),
        from_name: "Vestibule".to_owned(),
        reply_to: None,
        subject: subject.to_owned(),
        text: text.render()?,
        html,
    })
}
