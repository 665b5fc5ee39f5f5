//! Bulk files as spreadsheets save them: French Excel (semicolons, BOM, CRLF), Windows-1252,
//! tab-separated, and a heading row that is not recognised — through the console upload and
//! through `vestibule invite --csv`.

use std::process::{Command, Output};
use std::time::Duration;

use diesel::prelude::*;
use reqwest::StatusCode;
use vestibule::db::schema::{bulk_jobs, invitations};

use crate::bulk::{job_of, upload, wait_job};
use crate::helpers::{Browser, TestApp, location};
use crate::on_both_databases;

const BIN: &str = env!("CARGO_BIN_EXE_vestibule");

/// What French Excel writes for "CSV (séparateur : point-virgule)" from the template: a BOM,
/// semicolons, CRLF, quotes around a cell that holds a semicolon; the names typed with accents.
fn french_excel(base: &str) -> Vec<u8> {
    let apps = format!("{base}/o/acme/apps");
    [
        "\u{feff}version:v1.0;;;;".to_string(),
        "Email address to invite [inviteeEmail] Required;Redirection url [inviteRedirectURL] Required;\
         Send invitation message (true or false) [sendEmail];Customized invitation message [customizedMessageBody];\
         Display name [displayName]"
            .to_string(),
        format!("helene@partenaire.test;{apps};VRAI;\"Bonjour; à bientôt\";Hélène Dupré"),
        format!("zoe@partenaire.test;{apps};true;;Zoë Çelik"),
        "francois@partenaire.test;https://evil.example/;true;;François Lefèvre".to_string(),
    ]
    .join("\r\n")
    .into_bytes()
}

/// Excel's "CSV (Comma delimited)" on Windows: Windows-1252 bytes, written out explicitly.
fn windows_1252(base: &str) -> Vec<u8> {
    let mut file = b"Email address to invite [inviteeEmail] Required,Redirection url [inviteRedirectURL] Required,Display name [displayName]\r\n".to_vec();
    file.extend_from_slice(format!("renee@partner.test,{base}/o/acme/apps,").as_bytes());
    // "Renée Müller" and "Jürgen Weiß" in Windows-1252 (é = E9, ü = FC, ß = DF).
    file.extend_from_slice(b"Ren\xe9e M\xfcller\r\n");
    file.extend_from_slice(format!("jurgen@partner.test,{base}/o/acme/apps,").as_bytes());
    file.extend_from_slice(b"J\xfcrgen Wei\xdf\r\n");
    assert!(std::str::from_utf8(&file).is_err(), "the test file must not be UTF-8");
    file
}

fn tab_separated(base: &str) -> Vec<u8> {
    format!(
        "[displayName]\t[inviteeEmail]\t[inviteRedirectURL]\n\
         Ada, Countess of Lovelace\tada@partner.test\t{base}/o/acme/apps\n\
         Grace Hopper\tgrace@partner.test\t{base}/o/acme/apps\n"
    )
    .into_bytes()
}

const UNRECOGNISED: &[u8] = b"Email;Name\r\nada@partner.test;Ada\r\ngrace@partner.test;Grace\r\n";

fn invited_name(app: &TestApp, email: &str) -> Option<String> {
    let email = email.to_owned();
    app.with_conn(move |c| {
        invitations::table
            .filter(invitations::email.eq(email))
            .select(invitations::display_name)
            .first(c)
            .optional()
            .unwrap()
    })
}

/// Uploads `file`, checks the preview's counts, confirms, waits for the job.
async fn import(app: &TestApp, admin: &Browser, file: &[u8], valid: usize, invalid: usize) -> String {
    let res = upload(admin, "/o/acme/admin/bulk", file).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let page = location(&res);
    let (_, body) = admin.get_text(&page).await;
    assert!(body.contains(&format!("<dd id=\"count-valid\">{valid}</dd>")), "{body}");
    assert!(body.contains(&format!("<dd id=\"count-invalid\">{invalid}</dd>")), "{body}");
    assert_eq!(admin.post(&format!("{page}/start"), &[]).await.status(), StatusCode::SEE_OTHER);
    assert_eq!(wait_job(app, &job_of(&page), Duration::from_secs(30)).await, "done");
    body
}

async fn console_reads_excel_files(app: TestApp) {
    let admin = app.admin().await;
    let body = import(&app, &admin, &french_excel(&app.base), 2, 1).await;
    // The one problem is the redirect of line 5, shown on its line.
    assert!(body.contains("<tr><td>5</td><td>francois@partenaire.test</td>"), "{body}");
    assert_eq!(invited_name(&app, "helene@partenaire.test").as_deref(), Some("Hélène Dupré"));
    assert_eq!(invited_name(&app, "zoe@partenaire.test").as_deref(), Some("Zoë Çelik"));
    let message: Option<String> = app.with_conn(|c| {
        invitations::table
            .filter(invitations::email.eq("helene@partenaire.test"))
            .select(invitations::message)
            .first(c)
            .unwrap()
    });
    assert_eq!(message.as_deref(), Some("Bonjour; à bientôt"));

    import(&app, &admin, &windows_1252(&app.base), 2, 0).await;
    assert_eq!(invited_name(&app, "renee@partner.test").as_deref(), Some("Renée Müller"));
    assert_eq!(invited_name(&app, "jurgen@partner.test").as_deref(), Some("Jürgen Weiß"));

    import(&app, &admin, &tab_separated(&app.base), 2, 0).await;
    assert_eq!(invited_name(&app, "ada@partner.test").as_deref(), Some("Ada, Countess of Lovelace"));

    // A heading row that is not recognised: one message naming the columns, no row errors,
    // nothing stored.
    let jobs_before: i64 = app.with_conn(|c| bulk_jobs::table.count().get_result(c).unwrap());
    let res = upload(&admin, "/o/acme/admin/bulk", UNRECOGNISED).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = res.text().await.unwrap();
    assert_eq!(body.matches("The heading row was not recognised.").count(), 1, "{body}");
    for column in ["[inviteeEmail]", "[inviteRedirectURL]", "[displayName]", "[language]"] {
        assert!(body.contains(column), "the message names {column}");
    }
    assert!(!body.contains("Enter a valid email address"));
    let jobs_after: i64 = app.with_conn(|c| bulk_jobs::table.count().get_result(c).unwrap());
    assert_eq!(jobs_before, jobs_after);
}

/// Runs `vestibule invite --org acme --csv FILE [extra]` on the app's database.
fn cli(app: &TestApp, file: &[u8], extra: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("guests.csv");
    std::fs::write(&path, file).unwrap();
    let mut args = vec!["invite", "--org", "acme", "--csv", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    Command::new(BIN)
        .args(&args)
        .env("VESTIBULE_DATABASE_URL", &app.settings.database_url)
        .env("VESTIBULE_DATA_DIR", &app.settings.data_dir)
        .env("VESTIBULE_PUBLIC_URL", app.settings.public_url.as_str())
        .env("VESTIBULE_SMTP_URL", "smtp://127.0.0.1:9")
        .env("VESTIBULE_LOG", "warn")
        .env_remove("VESTIBULE_CONFIG")
        .output()
        .unwrap()
}

async fn cli_reads_excel_files(app: TestApp) {
    app.create_org("Acme Corp", "acme", "admin@acme.test");
    let base = app.base.trim_end_matches('/').to_owned();
    // French Excel, dry run: the counts, and the refused redirect said as a redirect problem.
    let out = cli(&app, &french_excel(&base), &["--dry-run"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("3 rows: 2 to invite, 1 with a problem"), "{stdout}");
    assert!(
        stdout.contains(
            "line 5: redirect URL \"https://evil.example/\" refused: This address is not a page of Vestibule"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("(row of francois@partenaire.test)"), "{stdout}");
    assert!(!stdout.contains("francois@partenaire.test —"), "the address is not what is wrong: {stdout}");
    assert_eq!(invited_name(&app, "helene@partenaire.test"), None, "a dry run stores nothing");

    // Windows-1252, for real: the names arrive with their accents.
    let out = cli(&app, &windows_1252(&base), &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("2 rows: 2 to invite, 0 with a problem"), "{stdout}");
    // The running server's worker may take the queued job before this process claims it.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() || stderr.contains("taken by another process"), "{stdout}\n{stderr}");
    let job: String =
        app.with_conn(|c| bulk_jobs::table.order(bulk_jobs::created_at.desc()).select(bulk_jobs::id).first(c).unwrap());
    assert_eq!(wait_job(&app, &job, Duration::from_secs(30)).await, "done");
    assert_eq!(invited_name(&app, "renee@partner.test").as_deref(), Some("Renée Müller"));
    assert_eq!(invited_name(&app, "jurgen@partner.test").as_deref(), Some("Jürgen Weiß"));

    // Tab-separated, dry run.
    let out = cli(&app, &tab_separated(&base), &["--dry-run"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 rows: 2 to invite, 0 with a problem"));

    // An unrecognised heading: one message naming the columns, and a failure exit.
    let out = cli(&app, UNRECOGNISED, &["--dry-run"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("The heading row was not recognised.").count(), 1, "{stderr}");
    assert!(stderr.contains("[inviteeEmail] (required)"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("line 2"));
}

on_both_databases!(console_reads_excel_files, cli_reads_excel_files);
