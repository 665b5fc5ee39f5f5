//! Identifier-first sign-in (design §10): the address first, then the password or a one-time
//! code by email; redemption without a password; "Forgot your password?".

use diesel::prelude::*;
use reqwest::StatusCode;
use vestibule::db::schema::{audit_events, one_time_links, signin_codes, users};

use crate::helpers::{Browser, PASSWORD, TestApp, location, path_of};
use crate::on_both_databases;
use crate::redeem::invite_by_email;

/// The new password chosen in the reset tests.
const NEW_PASSWORD: &str = "copper lantern meadow violin";

/// The code at the start of a code mail's subject.
fn code_in(mail: &crate::smtp::Mail) -> String {
    let subject = mail.header("Subject").unwrap();
    let code: String = subject.chars().take_while(char::is_ascii_digit).collect();
    assert_eq!(code.len(), 8, "an 8-digit code leads the subject: {subject}");
    assert!(mail.text().contains(&code));
    code
}

/// A wrong code, sure to differ from `code`.
fn wrong(code: &str) -> &'static str {
    if code == "11111111" { "22222222" } else { "11111111" }
}

/// The reset path (`/signin/reset/…`) in a mail.
fn reset_path(mail: &crate::smtp::Mail) -> String {
    let text = mail.text();
    let start = text.find("http").expect("a link in the mail");
    let link: String = text[start..].chars().take_while(|c| !c.is_whitespace()).collect();
    assert!(link.contains("/signin/reset/"), "unexpected link {link}");
    path_of(&link)
}

fn actions(app: &TestApp) -> Vec<(String, Option<String>)> {
    app.with_conn(|c| audit_events::table.select((audit_events::action, audit_events::detail)).load(c).unwrap())
}

fn password_hash(app: &TestApp, email: &str) -> Option<String> {
    app.with_conn(|c| users::table.filter(users::email.eq(email)).select(users::password_hash).first(c).unwrap())
}

/// Invites `email` to Acme and redeems it with an emailed code: a passwordless account that
/// has consented. Returns the guest's (signed-in) browser.
async fn passwordless_guest(app: &TestApp, admin: &Browser, email: &str) -> Browser {
    let link = invite_by_email(app, admin, email).await;
    let guest = app.browser();
    let (_, body) = guest.get_text(&link).await;
    assert!(body.contains("Create your account") && body.contains("Email me a code"), "both ways offered");
    let before = app.smtp.count_for(email);
    let res = guest.post(&format!("{link}/code/send"), &[]).await;
    assert_eq!(location(&res), link);
    let code = code_in(&app.smtp.wait_for_nth(email, before + 1).await);
    let (_, body) = guest.get_text(&link).await;
    assert!(body.contains("autocomplete=\"one-time-code\""), "the code form is shown");
    // A wrong code is refused with the name kept.
    let res = guest.post(&format!("{link}/code"), &[("display_name", "Pat Partner"), ("code", wrong(&code))]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.text().await.unwrap().contains("That code is not correct"));
    let res = guest.post(&format!("{link}/code"), &[("display_name", "Pat Partner"), ("code", &code)]).await;
    assert_eq!(location(&res), format!("{link}/consent"));
    let res = guest.post(&format!("{link}/accept"), &[]).await;
    assert_eq!(location(&res), "/o/acme/apps");
    guest
}

async fn step_two_looks_the_same_for_every_address(app: TestApp) {
    let admin = app.admin().await;
    passwordless_guest(&app, &admin, "pat@partner.test").await;
    let b = app.browser();

    // Step 1 asks for the address alone.
    let (status, body) = b.get_text("/signin?next=%2Faccount").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("name=\"email\"") && !body.contains("name=\"password\""));
    assert!(body.contains("name=\"next\" value=\"/account\""));
    // A malformed address is refused on step 1, input kept.
    let res = b.post("/signin", &[("email", "not-an-address"), ("next", "/account")]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.text().await.unwrap().contains("value=\"not-an-address\""));

    // Step 2: the same page for a password account, a passwordless one and an unknown address.
    let mut pages = Vec::new();
    for email in ["admin@acme.test", "pat@partner.test", "nobody@partner.test"] {
        let res = b.post("/signin", &[("email", email), ("next", "/account")]).await;
        assert_eq!(res.status(), StatusCode::OK, "{email}");
        pages.push(res.text().await.unwrap().replace(email, "X"));
    }
    assert_eq!(pages[0], pages[1], "password and passwordless accounts look alike");
    assert_eq!(pages[0], pages[2], "an unknown address looks like an account");
    let page = &pages[0];
    assert!(page.contains("name=\"password\""));
    assert!(page.contains("Email me a code instead"));
    assert!(page.contains("Forgot your password?"));
    assert!(page.contains("name=\"next\" value=\"/account\""));
    // A foreign `next` is dropped by the one judge of local paths.
    let res = b.post("/signin", &[("email", "admin@acme.test"), ("next", "//evil.test/x")]).await;
    assert!(res.text().await.unwrap().contains("name=\"next\" value=\"/\""));

    // The password still signs in, and goes on to `next`.
    let res = b.post("/signin", &[("email", "admin@acme.test"), ("password", ""), ("next", "/account")]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "an empty password is asked for again");
    let res = b.post("/signin", &[("email", "admin@acme.test"), ("password", PASSWORD), ("next", "/account")]).await;
    assert_eq!(location(&res), "/account");
    assert_eq!(b.get("/account").await.status(), StatusCode::OK);
    // The passwordless account has no password to guess.
    let other = app.browser();
    let res = other.post("/signin", &[("email", "pat@partner.test"), ("password", PASSWORD)]).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

on_both_databases!(step_two_looks_the_same_for_every_address);

async fn code_signs_in_once_and_unknown_addresses_get_no_mail(app: TestApp) {
    let admin = app.admin().await;
    passwordless_guest(&app, &admin, "pat@partner.test").await;
    let b = app.browser();
    let before = app.smtp.count_for("pat@partner.test");
    let res = b.post("/signin/code", &[("email", "Pat@Partner.test"), ("next", "/o/acme/apps")]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let known = res.text().await.unwrap().replace("pat@partner.test", "X");
    assert!(known.contains("autocomplete=\"one-time-code\""));
    let mail = app.smtp.wait_for_nth("pat@partner.test", before + 1).await;
    assert_eq!(mail.header("Subject").unwrap(), format!("{} is your Vestibule sign-in code", code_in(&mail)));
    let code = code_in(&mail);

    // An unknown address gets the same answer, and no mail.
    let res = b.post("/signin/code", &[("email", "nobody@partner.test"), ("next", "/o/acme/apps")]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap().replace("nobody@partner.test", "X"), known);

    let verify = |code: String| {
        let b = &b;
        async move {
            b.post("/signin/code/verify", &[("email", "pat@partner.test"), ("code", &code), ("next", "/o/acme/apps")])
                .await
        }
    };
    let res = verify(wrong(&code).to_owned()).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.text().await.unwrap().contains("That code is not correct"));
    let res = verify(format!("{} {}", &code[..4], &code[4..])).await;
    assert_eq!(location(&res), "/o/acme/apps", "the right code signs in (spaces ignored)");
    assert_eq!(b.get("/o/acme/apps").await.status(), StatusCode::OK);
    // Single use.
    let again = app.browser();
    let res = again.post("/signin/code/verify", &[("email", "pat@partner.test"), ("code", &code), ("next", "/")]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.text().await.unwrap().contains("has expired or was entered wrongly too many times"));

    // The unknown address's row behaves like a real one: wrong, never right.
    let res = again.post("/signin/code/verify", &[("email", "nobody@partner.test"), ("code", &code)]).await;
    assert!(res.text().await.unwrap().contains("That code is not correct"));
    app.wait_mail_settled().await;
    assert_eq!(app.smtp.count_for("nobody@partner.test"), 0);
    let stored: String = app.with_conn(|c| {
        signin_codes::table.find("nobody@partner.test").select(signin_codes::code_hash).first(c).unwrap()
    });
    assert!(!stored.contains(&code), "only hashes are stored");

    let events = actions(&app);
    assert!(events.iter().any(|(a, d)| a == "code.sent" && d.as_deref() == Some("signin")));
    assert!(events.iter().any(|(a, _)| a == "code.failed"));
    assert!(events.iter().any(|(a, d)| a == "signin.succeeded" && d.as_deref() == Some("code")));
}

on_both_databases!(code_signs_in_once_and_unknown_addresses_get_no_mail);

async fn five_wrong_codes_kill_the_code_and_codes_expire(app: TestApp) {
    let admin = app.admin().await;
    passwordless_guest(&app, &admin, "pat@partner.test").await;
    let b = app.browser();
    let before = app.smtp.count_for("pat@partner.test");
    b.post("/signin/code", &[("email", "pat@partner.test")]).await;
    let code = code_in(&app.smtp.wait_for_nth("pat@partner.test", before + 1).await);
    for i in 0..5 {
        let res = b.post("/signin/code/verify", &[("email", "pat@partner.test"), ("code", wrong(&code))]).await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let body = res.text().await.unwrap();
        if i < 4 {
            assert!(body.contains("That code is not correct"), "guess {i}");
        } else {
            assert!(body.contains("has expired or was entered wrongly"), "the fifth wrong guess kills the code");
        }
    }
    let attempts: i64 = app
        .with_conn(|c| signin_codes::table.find("pat@partner.test").select(signin_codes::attempts).first(c).unwrap());
    assert_eq!(attempts, 5);
    let res = b.post("/signin/code/verify", &[("email", "pat@partner.test"), ("code", &code)]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "refused even with the right code");
    assert!(location_or_none(&res).is_none());

    // A new code works until it expires.
    b.post("/signin/code", &[("email", "pat@partner.test")]).await;
    let code = code_in(&app.smtp.wait_for_nth("pat@partner.test", before + 2).await);
    app.with_conn(|c| {
        diesel::update(signin_codes::table.find("pat@partner.test"))
            .set(signin_codes::expires_at.eq(vestibule::db::now() - time::Duration::seconds(1)))
            .execute(c)
            .unwrap()
    });
    let res = b.post("/signin/code/verify", &[("email", "pat@partner.test"), ("code", &code)]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "an expired code is refused");
    assert!(res.text().await.unwrap().contains("has expired"));
    assert_eq!(b.get("/account").await.status(), StatusCode::SEE_OTHER, "not signed in");
}

fn location_or_none(res: &reqwest::Response) -> Option<String> {
    res.headers().get("location").map(|v| v.to_str().unwrap().to_owned())
}

on_both_databases!(five_wrong_codes_kill_the_code_and_codes_expire);

async fn code_redemption_makes_a_passwordless_account_that_may_add_a_password(app: TestApp) {
    let admin = app.admin().await;
    let guest = passwordless_guest(&app, &admin, "pat@partner.test").await;
    assert_eq!(password_hash(&app, "pat@partner.test"), None);
    let (verified, name): (bool, String) = app.with_conn(|c| {
        users::table
            .filter(users::email.eq("pat@partner.test"))
            .select((users::email_verified, users::display_name))
            .first(c)
            .unwrap()
    });
    assert!(verified);
    assert_eq!(name, "Pat Partner");
    assert!(
        actions(&app)
            .iter()
            .any(|(a, d)| a == "account.created" && d.as_deref().is_some_and(|d| d.contains("passwordless")))
    );

    // A second invitation to the same address: the passwordless account signs in by code.
    app.with_conn(|c| {
        diesel::update(vestibule::db::schema::memberships::table)
            .set(vestibule::db::schema::memberships::removed_at.eq(Some(vestibule::db::now())))
            .filter(
                vestibule::db::schema::memberships::user_id
                    .eq_any(users::table.filter(users::email.eq("pat@partner.test")).select(users::id)),
            )
            .execute(c)
            .unwrap()
    });
    let link = invite_by_email(&app, &admin, "pat@partner.test").await;
    let other = app.browser();
    let (_, body) = other.get_text(&link).await;
    assert!(body.contains("You sign in with a code sent by email"), "{body}");
    assert!(!body.contains("Create your account"));
    let before = app.smtp.count_for("pat@partner.test");
    other.post(&format!("{link}/code/send"), &[]).await;
    let code = code_in(&app.smtp.wait_for_nth("pat@partner.test", before + 1).await);
    let res = other.post(&format!("{link}/code"), &[("code", &code)]).await;
    assert_eq!(location(&res), format!("{link}/consent"));

    // /account offers to add a password (no current one asked), and a notice is mailed.
    let (_, body) = guest.get_text("/account").await;
    assert!(body.contains("Add the password") && !body.contains("name=\"current_password\""));
    let before = app.smtp.count_for("pat@partner.test");
    let res = guest.post("/account/password", &[("new_password", "short"), ("confirm_password", "short")]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let res =
        guest.post("/account/password", &[("new_password", NEW_PASSWORD), ("confirm_password", NEW_PASSWORD)]).await;
    assert_eq!(location(&res), "/account?done=password_added");
    assert!(password_hash(&app, "pat@partner.test").is_some());
    let notice = app.smtp.wait_for_nth("pat@partner.test", before + 1).await;
    assert!(notice.header("Subject").unwrap().contains("password"), "{:?}", notice.header("Subject"));
    app.browser().sign_in("pat@partner.test", NEW_PASSWORD).await;
}

on_both_databases!(code_redemption_makes_a_passwordless_account_that_may_add_a_password);

async fn codes_turned_off_are_neither_offered_nor_sent(app: TestApp) {
    let admin = app.admin().await;
    passwordless_guest(&app, &admin, "pat@partner.test").await;
    let (_, body) = admin.get_text("/o/acme/admin/settings").await;
    assert!(body.contains("Guests may sign in with a code sent by email"));
    assert!(body.contains("name=\"email_codes\" value=\"on\" aria-describedby=\"h-email_codes\" checked"));
    let res = admin.save_settings(&[("email_codes", "off")]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let on: bool = app.with_conn(|c| {
        vestibule::db::schema::organizations::table
            .select(vestibule::db::schema::organizations::email_codes)
            .first(c)
            .unwrap()
    });
    assert!(!on);
    assert!(actions(&app).iter().any(|(a, d)| a == "organization.settings_changed"
        && d.as_deref().is_some_and(|d| d.contains("\"email_codes\":false"))));

    // Redemption: no code option, and a code POST sends nothing.
    let link = invite_by_email(&app, &admin, "lee@partner.test").await;
    let guest = app.browser();
    let (_, body) = guest.get_text(&link).await;
    assert!(body.contains("Create your account"));
    assert!(!body.contains("Email me a code"), "no code option");
    let res = guest.post(&format!("{link}/code/send"), &[]).await;
    assert_eq!(location(&res), link, "refused: back to the page");
    let res = guest.post(&format!("{link}/code"), &[("display_name", "Lee"), ("code", "12345678")]).await;
    assert_eq!(location(&res), link);
    let code_hash: Option<String> = app.with_conn(|c| {
        vestibule::db::schema::invitations::table
            .filter(vestibule::db::schema::invitations::email.eq("lee@partner.test"))
            .select(vestibule::db::schema::invitations::code_hash)
            .first(c)
            .unwrap()
    });
    assert!(code_hash.is_none());

    // /signin: the same answer, but no code for accounts whose organizations turned codes off.
    let before = app.smtp.count_for("pat@partner.test");
    let res = app.browser().post("/signin/code", &[("email", "pat@partner.test")]).await;
    assert_eq!(res.status(), StatusCode::OK);
    app.wait_mail_settled().await;
    assert_eq!(app.smtp.count_for("pat@partner.test"), before, "no code mailed");
    assert_eq!(app.smtp.count_for("lee@partner.test"), 1, "only the invitation");
}

on_both_databases!(codes_turned_off_are_neither_offered_nor_sent);

async fn forgot_password_link_works_once_and_ends_every_session(app: TestApp) {
    let elsewhere = app.admin().await;
    assert_eq!(elsewhere.get("/account").await.status(), StatusCode::OK);
    let b = app.browser();
    let (status, body) = b.get_text("/signin/forgot?email=admin@acme.test").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("value=\"admin@acme.test\""));

    let res = b.post("/signin/forgot", &[("email", "admin@acme.test")]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let known = res.text().await.unwrap().replace("admin@acme.test", "X");
    assert!(known.contains("a link to choose a new password is on its way"));
    let res = b.post("/signin/forgot", &[("email", "nobody@acme.test")]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap().replace("nobody@acme.test", "X"), known, "the same answer");

    let mail = app.smtp.wait_for("admin@acme.test").await;
    assert_eq!(mail.header("Subject").unwrap(), "Choose a new Vestibule password");
    assert!(mail.text().contains("30 minutes"));
    let path = reset_path(&mail);
    let token = path.rsplit('/').next().unwrap().to_owned();
    let stored: i64 = app.with_conn(|c| {
        one_time_links::table
            .filter(one_time_links::token_hash.eq(vestibule::domain::token::hash_token(&token)))
            .count()
            .get_result(c)
            .unwrap()
    });
    assert_eq!(stored, 1, "the token is stored hashed");

    let (status, body) = b.get_text(&path).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Choose a new password for admin@acme.test"));
    let res = b.post(&path, &[("password", "password1234"), ("confirm", "password1234")]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "the usual password rules");
    let res = b.post(&path, &[("password", NEW_PASSWORD), ("confirm", NEW_PASSWORD)]).await;
    assert_eq!(location(&res), "/");
    assert_eq!(b.get("/account").await.status(), StatusCode::OK, "this browser is signed in");
    let res = elsewhere.get("/account").await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "the other session ended");
    assert!(location(&res).starts_with("/signin"));

    // The notice, and the link is dead.
    let notice = app.smtp.wait_for_nth("admin@acme.test", 2).await;
    assert!(notice.text().contains("admin@acme.test"));
    assert_eq!(notice.header("Subject").unwrap(), "Your Vestibule password was changed");
    let fresh = app.browser();
    let (status, body) = fresh.get_text(&path).await;
    assert_eq!(status, StatusCode::GONE);
    assert!(body.contains("Ask for a new link"));
    let res =
        fresh.post(&path, &[("password", "another fine passphrase"), ("confirm", "another fine passphrase")]).await;
    assert_eq!(res.status(), StatusCode::GONE, "second use refused");
    let res = fresh.post("/signin", &[("email", "admin@acme.test"), ("password", PASSWORD)]).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "the old password is gone");
    fresh.sign_in("admin@acme.test", NEW_PASSWORD).await;

    // An expired link is dead too.
    b.post("/signin/forgot", &[("email", "admin@acme.test")]).await;
    let path = reset_path(&app.smtp.wait_for_nth("admin@acme.test", 3).await);
    app.with_conn(|c| {
        diesel::update(one_time_links::table.filter(one_time_links::purpose.eq("password_reset")))
            .set(one_time_links::expires_at.eq(vestibule::db::now() - time::Duration::seconds(1)))
            .execute(c)
            .unwrap()
    });
    assert_eq!(fresh.get(&path).await.status(), StatusCode::GONE);

    app.wait_mail_settled().await;
    assert_eq!(app.smtp.count_for("nobody@acme.test"), 0);
    let events = actions(&app);
    assert!(events.iter().any(|(a, _)| a == "account.password_reset_requested"));
    assert!(events.iter().any(
        |(a, d)| a == "account.password_reset" && d.as_deref().is_some_and(|d| d.contains("\"sessions_ended\":1"))
    ));
}

on_both_databases!(forgot_password_link_works_once_and_ends_every_session);

async fn code_and_reset_requests_are_throttled(app: TestApp) {
    app.create_org("Acme Corp", "acme", "admin@acme.test");
    let b = app.browser();
    for _ in 0..5 {
        assert_eq!(b.post("/signin/code", &[("email", "nobody@acme.test")]).await.status(), StatusCode::OK);
    }
    let res = b.post("/signin/code", &[("email", "Nobody@acme.test")]).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS, "five codes an hour per address");
    let retry: u64 = res.headers().get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
    assert!(retry > 0 && retry <= 3600);
    assert!(res.text().await.unwrap().contains("Too many codes"));
    assert_eq!(b.post("/signin/code", &[("email", "other@acme.test")]).await.status(), StatusCode::OK);

    for _ in 0..3 {
        assert_eq!(b.post("/signin/forgot", &[("email", "admin@acme.test")]).await.status(), StatusCode::OK);
    }
    let res = b.post("/signin/forgot", &[("email", "admin@acme.test")]).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS, "three links an hour per address");
    assert!(res.headers().get("retry-after").is_some());
    app.wait_mail_settled().await;
    assert_eq!(app.smtp.count_for("admin@acme.test"), 3);
    // Only the newest of the three links works.
    let live: i64 = app.with_conn(|c| {
        one_time_links::table
            .filter(one_time_links::purpose.eq("password_reset"))
            .filter(one_time_links::used_at.is_null())
            .count()
            .get_result(c)
            .unwrap()
    });
    assert_eq!(live, 1);
}

on_both_databases!(code_and_reset_requests_are_throttled);

async fn an_account_with_a_password_may_redeem_with_a_code(app: TestApp) {
    let admin = app.admin().await;
    app.create_org("Globex", "globex", "boss@globex.test");
    let link = invite_by_email(&app, &admin, "boss@globex.test").await;
    let guest = app.browser();
    let (_, body) = guest.get_text(&link).await;
    assert!(body.contains("Sign in to accept") && body.contains("Email me a code instead"));
    let before = app.smtp.count_for("boss@globex.test");
    let res = guest.post(&format!("{link}/code/send"), &[]).await;
    assert_eq!(location(&res), link);
    let code = code_in(&app.smtp.wait_for_nth("boss@globex.test", before + 1).await);
    let (_, body) = guest.get_text(&link).await;
    assert!(body.contains("autocomplete=\"one-time-code\"") && body.contains("name=\"password\""), "code or password");
    let res = guest.post(&format!("{link}/code"), &[("code", &code)]).await;
    assert_eq!(location(&res), format!("{link}/consent"));
    assert_eq!(location(&guest.post(&format!("{link}/accept"), &[]).await), "/o/acme/apps");
    assert!(password_hash(&app, "boss@globex.test").is_some(), "the password stays");
    let events = actions(&app);
    assert!(events.iter().any(|(a, d)| a == "code.sent" && d.as_deref() == Some("redeem")));
    assert!(events.iter().any(|(a, d)| a == "signin.succeeded" && d.as_deref() == Some("code")));
}

on_both_databases!(an_account_with_a_password_may_redeem_with_a_code);
