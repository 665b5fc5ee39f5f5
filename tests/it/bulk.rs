//! Bulk invitations from a CSV file: template, preview, confirmation, the background job,
//! the results file, and a 10 000-row import.

use std::time::Duration;

use diesel::prelude::*;
use reqwest::{Response, StatusCode};
use vestibule::db::schema::{bulk_jobs, invitations, outbox};

use crate::helpers::{Browser, TestApp, location};
use crate::on_both_databases;

const BOUNDARY: &str = "vestibule-bulk-boundary-Zk3q9X";

/// POSTs a CSV file as the upload form does (multipart, CSRF token in the action URL).
pub(crate) async fn upload(b: &Browser, path: &str, file: &[u8]) -> Response {
    let token = b.csrf().await;
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"guests.csv\"\r\nContent-Type: text/csv\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    b.client
        .post(format!("{}{path}?csrf_token={token}", b.base))
        .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"))
        .body(body)
        .send()
        .await
        .unwrap()
}

const AZURE_HEADINGS: &str = "Email address to invite [inviteeEmail] Required,Redirection url [inviteRedirectURL] Required,\
Send invitation message (true or false) [sendEmail],Customized invitation message [customizedMessageBody],Notes [notes]";

/// A file as Azure's template makes it: BOM, CRLF, version line, example row, quoted message.
fn azure_file(base: &str) -> String {
    let apps = format!("{base}/o/acme/apps");
    [
        "\u{feff}version:v1.0,,,,".to_string(),
        AZURE_HEADINGS.to_string(),
        "Example:    name@domain.com,https://myapps.microsoft.com,true,Hello,".to_string(),
        format!("ada@partner.test,{apps},true,\"Hello, Ada\r\nSee you soon\",vip"),
        format!("grace@partner.test,{apps},TRUE,,"),
        format!("not-an-email,{apps},true,,"),
        format!("\"=HYPERLINK(\"\"http://evil.example\"\")\",{apps},true,,"),
        format!("ADA@Partner.test,{apps},true,again,"),
        "linus@partner.test,https://evil.example/,true,,".to_string(),
    ]
    .join("\r\n")
        + "\r\n"
}

fn count_invitations(app: &TestApp) -> (i64, i64) {
    app.with_conn(|c| {
        let inv: i64 = invitations::table.count().get_result(c).unwrap();
        let mail: i64 = outbox::table.filter(outbox::kind.eq("invitation")).count().get_result(c).unwrap();
        (inv, mail)
    })
}

/// Waits until the job has ended and returns its status.
pub(crate) async fn wait_job(app: &TestApp, job_id: &str, limit: Duration) -> String {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let id = job_id.to_owned();
        let status: String = app.with_conn(|c| bulk_jobs::table.find(id).select(bulk_jobs::status).first(c).unwrap());
        if !["queued", "running"].contains(&status.as_str()) {
            return status;
        }
        assert!(tokio::time::Instant::now() < deadline, "bulk job still {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The job id of a job page path.
pub(crate) fn job_of(path: &str) -> String {
    path.rsplit('/').next().unwrap().to_owned()
}

async fn template_is_azure_layout(app: TestApp) {
    let admin = app.admin().await;
    let (status, body) = admin.get_text("/o/acme/admin/bulk").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("href=\"/o/acme/admin/bulk/template.csv\""));
    assert!(body.contains("for=\"f-file\""));

    let res = admin.get("/o/acme/admin/bulk/template.csv").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let text = res.text().await.unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("version:v1.0"));
    let headings = lines.next().unwrap();
    for h in [
        "Email address to invite [inviteeEmail] Required",
        "Redirection url [inviteRedirectURL] Required",
        "Send invitation message (true or false) [sendEmail]",
        "Customized invitation message [customizedMessageBody]",
        "Display name [displayName]",
        "Groups [groups]",
        "Language [language]",
    ] {
        assert!(headings.contains(h), "missing heading {h}");
    }
    // Uploaded as is, the template has only its example row: refused with 422, nothing stored.
    let res = upload(&admin, "/o/acme/admin/bulk", text.as_bytes()).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.text().await.unwrap().contains("The file has no row to invite."));
    let res = upload(&admin, "/o/acme/admin/bulk", b"\xff\xfe\x00not text").await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.text().await.unwrap().contains("aria-invalid=\"true\""));
    // Other people do not see the page.
    let stranger = app.browser();
    assert_ne!(stranger.get("/o/acme/admin/bulk/template.csv").await.status(), StatusCode::OK);
}

async fn azure_file_previews_then_invites(app: TestApp) {
    let admin = app.admin().await;
    let res = upload(&admin, "/o/acme/admin/bulk", azure_file(&app.base).as_bytes()).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let page = location(&res);
    let job = job_of(&page);

    // Preview: counts and reasons by line, nothing created yet.
    let (status, body) = admin.get_text(&page).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("<dd id=\"count-total\">6</dd>"), "{body}");
    assert!(body.contains("<dd id=\"count-valid\">2</dd>"));
    assert!(body.contains("<dd id=\"count-invalid\">3</dd>"));
    assert!(body.contains("<dd id=\"count-duplicate\">1</dd>"));
    assert!(body.contains("<tr><td>7</td><td>not-an-email</td>"), "line numbers count the message's line break");
    assert!(body.contains("Enter a valid email address"));
    assert!(body.contains("<tr><td>9</td><td>ada@partner.test</td>"));
    assert!(body.contains("This address appears on an earlier line."));
    assert!(body.contains("<tr><td>10</td><td>linus@partner.test</td>"));
    assert!(body.contains("redirect allow-list"));
    assert_eq!(count_invitations(&app), (0, 0));

    // Confirm: the job runs in the background and ends with exactly two invitations and mails.
    let res = admin.post(&format!("{page}/start"), &[]).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(wait_job(&app, &job, Duration::from_secs(30)).await, "done");
    assert_eq!(count_invitations(&app), (2, 2));
    let message: Option<String> = app.with_conn(|c| {
        invitations::table
            .filter(invitations::email.eq("ada@partner.test"))
            .select(invitations::message)
            .first(c)
            .unwrap()
    });
    assert_eq!(message.as_deref(), Some("Hello, Ada\nSee you soon"));
    let (_, body) = admin.get_text(&page).await;
    assert!(body.contains("<dd id=\"count-succeeded\">2</dd>"));
    assert!(body.contains("<dd id=\"count-failed\">0</dd>"));
    assert!(!body.contains("<progress"), "a finished job does not refresh");

    // Results: one line per row, formula cells made inert.
    let res = admin.get(&format!("{page}/results.csv")).await;
    assert_eq!(res.status(), StatusCode::OK);
    let csv = res.text().await.unwrap();
    let lines: Vec<&str> = csv.trim_start_matches('\u{feff}').lines().collect();
    assert_eq!(lines[0], "line,email,status,reason,invitation_id");
    assert_eq!(lines.len(), 7);
    assert!(lines.iter().any(|l| l.starts_with("4,ada@partner.test,created,,")));
    assert!(lines.iter().any(|l| l.starts_with("8,\"'=HYPERLINK(")), "{csv}");
    assert!(!lines.iter().any(|l| l.contains(",=")));

    // Starting again is refused; the same file again finds the pending invitations.
    assert_eq!(admin.post(&format!("{page}/start"), &[]).await.status(), StatusCode::BAD_REQUEST);
    let res = upload(&admin, "/o/acme/admin/bulk", azure_file(&app.base).as_bytes()).await;
    let again = location(&res);
    admin.post(&format!("{again}/start"), &[]).await;
    assert_eq!(wait_job(&app, &job_of(&again), Duration::from_secs(30)).await, "done");
    assert_eq!(count_invitations(&app), (2, 2));
    let (_, body) = admin.get_text(&again).await;
    assert!(body.contains("<dd id=\"count-existing\">2</dd>"));
}

/// A file of `n` valid rows in our own layout.
fn big_file(base: &str, n: usize) -> String {
    let mut s = String::from("version:v1.0\n[inviteeEmail],[inviteRedirectURL],[sendEmail],[displayName],[language]\n");
    for i in 0..n {
        s.push_str(&format!(
            "guest{i}@bulk.test,{base}/o/acme/apps,true,Guest {i},{}\n",
            if i % 2 == 0 { "fr" } else { "" }
        ));
    }
    s
}

async fn ten_thousand_rows(app: TestApp) {
    const N: usize = 10_000;
    let admin = app.admin().await;
    let res = upload(&admin, "/o/acme/admin/bulk", big_file(&app.base, N).as_bytes()).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let page = location(&res);
    let (_, body) = admin.get_text(&page).await;
    assert!(body.contains(&format!("<dd id=\"count-valid\">{N}</dd>")));
    admin.post(&format!("{page}/start"), &[]).await;
    // While it runs, the page shows progress and refreshes itself.
    let res = admin.get(&page).await;
    if res.headers().get("refresh").is_some() {
        assert!(res.text().await.unwrap().contains("<progress"));
    }
    assert_eq!(wait_job(&app, &job_of(&page), Duration::from_secs(600)).await, "done");
    assert_eq!(count_invitations(&app), (N as i64, N as i64));
    let emails: Vec<String> = app.with_conn(|c| invitations::table.select(invitations::email).load(c).unwrap());
    let distinct = emails.iter().collect::<std::collections::HashSet<_>>().len();
    assert_eq!(distinct, N);
}

on_both_databases!(template_is_azure_layout, azure_file_previews_then_invites, ten_thousand_rows);

/// A worker that dies mid-job (here: one that did a batch and then stopped renewing its lease)
/// leaves the job to the server's worker once the lease runs out: it resumes at the first row
/// not done, with no duplicate and every invitation with its email.
async fn crashed_worker_is_resumed(app: TestApp) {
    use vestibule::services::bulk::worker;
    const N: usize = 450;
    let admin = app.admin().await;
    let res = upload(&admin, "/o/acme/admin/bulk", big_file(&app.base, N).as_bytes()).await;
    let page = location(&res);
    let job = job_of(&page);
    // A "crashed" worker claims the job before the server's worker wakes, and does one batch.
    let public_url = url::Url::parse(&app.base).unwrap();
    let (j, u) = (job.clone(), public_url.clone());
    app.with_conn(move |c| {
        // Claimed in one step from "previewed", so the server's worker cannot get there first.
        let until = vestibule::db::now() + time::Duration::minutes(5);
        diesel::update(bulk_jobs::table.find(&j))
            .set((
                bulk_jobs::status.eq("running"),
                bulk_jobs::lease_owner.eq(Some("dead-worker")),
                bulk_jobs::lease_until.eq(Some(until)),
            ))
            .execute(c)
            .unwrap();
        let step = worker::run_batch(c, &j, "dead-worker", &u, 200).unwrap();
        assert_eq!(step, worker::Step::Progress { processed: 200, of: N as i64 });
    });
    assert_eq!(count_invitations(&app), (200, 200));
    // Its lease runs out; the server's worker takes over.
    let j = job.clone();
    app.with_conn(move |c| {
        let past = vestibule::db::now() - time::Duration::minutes(1);
        diesel::update(bulk_jobs::table.find(&j)).set(bulk_jobs::lease_until.eq(Some(past))).execute(c).unwrap();
    });
    assert_eq!(wait_job(&app, &job, Duration::from_secs(60)).await, "done");
    assert_eq!(count_invitations(&app), (N as i64, N as i64));
    // The dead worker, back, has lost the job and touches nothing.
    let j = job.clone();
    let step = app.with_conn(move |c| worker::run_batch(c, &j, "dead-worker", &public_url, 200).unwrap());
    assert_eq!(step, worker::Step::LostLease);
    let (_, body) = admin.get_text(&page).await;
    assert!(body.contains(&format!("<dd id=\"count-succeeded\">{N}</dd>")));
    assert!(body.contains("<dd id=\"count-existing\">0</dd>"));
}

on_both_databases!(crashed_worker_is_resumed);
