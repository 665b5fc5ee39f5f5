//! The real binary as a child process (issue 13 §3): SIGTERM under load, and kill -9 while
//! mail is being sent, on both databases.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use reqwest::StatusCode;
use vestibule::db::schema::outbox;

use crate::helpers::{Browser, Db, PASSWORD, fresh_database};
use crate::smtp::SmtpSink;

const BIN: &str = env!("CARGO_BIN_EXE_vestibule");

/// How one `vestibule` process is started: database, data folder, port, SMTP port.
struct Site {
    db_url: String,
    dir: tempfile::TempDir,
    smtp_port: u16,
}

impl Site {
    fn command(&self, port: u16) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.env("VESTIBULE_DATABASE_URL", &self.db_url)
            .env("VESTIBULE_DATA_DIR", self.dir.path().join("data"))
            .env("VESTIBULE_BIND", format!("127.0.0.1:{port}"))
            .env("VESTIBULE_PUBLIC_URL", format!("http://127.0.0.1:{port}"))
            .env("VESTIBULE_SMTP_URL", format!("smtp://127.0.0.1:{}", self.smtp_port))
            .env("VESTIBULE_THROTTLE", "off")
            .env("VESTIBULE_LOG", "warn")
            .env_remove("VESTIBULE_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    }

    /// Creates the org `acme` with its admin through the command line.
    fn create_org(&self) {
        let mut cmd = self.command(free_port());
        let mut child = cmd
            .args(["org", "create", "--name", "Acme", "--slug", "acme", "--admin-email", "admin@acme.test"])
            .arg("--admin-password-stdin")
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(format!("{PASSWORD}\n").as_bytes()).unwrap();
        assert!(child.wait().unwrap().success());
    }

    /// Starts `vestibule serve` on a free port and waits until it answers.
    async fn serve(&self) -> (Child, String) {
        let port = free_port();
        let child = self.command(port).arg("serve").spawn().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while reqwest::get(format!("{base}/healthz")).await.is_err() {
            assert!(Instant::now() < deadline, "the server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (child, base)
    }

    fn pool(&self) -> vestibule::db::Pool {
        vestibule::db::connect(&self.db_url, 2).unwrap()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap().success();
    assert!(ok, "kill {sig}");
}

/// Waits for the child to exit; its exit status.
async fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the process did not stop within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Queues `n` invitations with their email through the API.
async fn invite_many(site: &Site, base: &str, n: usize) {
    let key = site
        .pool()
        .get()
        .map(|mut c| vestibule::services::api_keys::create_for_cli(&mut c, "acme", "k", None))
        .unwrap()
        .unwrap();
    let client = reqwest::Client::new();
    for i in 0..n {
        let res = client
            .post(format!("{base}/api/v1.0/invitations"))
            .bearer_auth(&key)
            .json(&serde_json::json!({
                "invitedUserEmailAddress": format!("guest{i:03}@partner.test"),
                "inviteRedirectUrl": format!("{base}/"),
                "sendInvitationMessage": true
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
    }
}

/// (status, claimed_by) of every outbox row.
fn outbox_rows(site: &Site) -> Vec<(String, Option<String>)> {
    outbox::table.select((outbox::status, outbox::claimed_by)).load(&mut site.pool().get().unwrap()).unwrap()
}

async fn sigterm_lets_requests_finish_and_releases_mail(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let (_pg, db_url) = fresh_database(db, dir.path());
    // A slow SMTP server: every message takes 400 ms to be accepted.
    let smtp = SmtpSink::start_slow(0, Duration::from_millis(400)).await;
    let site = Site { db_url, dir, smtp_port: smtp.port };
    site.create_org();
    let (mut server, base) = site.serve().await;
    invite_many(&site, &base, 20).await;
    // Wait until mail is being sent.
    let deadline = Instant::now() + Duration::from_secs(20);
    while smtp.all().is_empty() {
        assert!(Instant::now() < deadline, "no mail went out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Requests in flight: sign-ins (Argon2 takes a while each), on connections already open.
    let browsers: Vec<Browser> = (0..12).map(|_| Browser::new(&base)).collect();
    for b in &browsers {
        let _ = b.csrf().await;
    }
    let sends: Vec<_> = browsers
        .iter()
        .map(|b| b.post_raw_owned("/signin", vec![("email", "admin@acme.test".into()), ("password", PASSWORD.into())]))
        .collect();
    let in_flight = tokio::spawn(futures_util::future::join_all(sends));
    tokio::time::sleep(Duration::from_millis(100)).await;
    signal(&server, "-TERM");
    let answers = in_flight.await.unwrap();
    for a in &answers {
        let status = a.as_ref().expect("an answer, not a dropped connection");
        assert_eq!(*status, StatusCode::SEE_OTHER, "each sign-in in flight finished");
    }
    let status = wait_exit(&mut server, Duration::from_secs(30)).await;
    assert!(status.success(), "a clean stop: {status:?}");
    // Mail: each row sent, or back in the queue with no claim; none left leased.
    let rows = outbox_rows(&site);
    assert_eq!(rows.len(), 20);
    assert!(rows.iter().all(|(s, c)| s == "sent" || (s == "queued" && c.is_none())), "{rows:?}");
    let sent = rows.iter().filter(|(s, _)| s == "sent").count();
    assert!(sent < 20, "stopped in the middle ({sent} sent)");
    // The next start sends the rest at once (no lease to wait for), each once.
    let (mut server, _base) = site.serve().await;
    let deadline = Instant::now() + Duration::from_secs(25);
    while outbox_rows(&site).iter().any(|(s, _)| s != "sent") {
        assert!(Instant::now() < deadline, "the rest was not sent after the restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    signal(&server, "-TERM");
    wait_exit(&mut server, Duration::from_secs(30)).await;
    for i in 0..20 {
        assert_eq!(smtp.count_for(&format!("guest{i:03}@partner.test")), 1, "guest{i:03} mailed once");
    }
}

async fn kill9_while_sending_mail_resends_at_most_once(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let (_pg, db_url) = fresh_database(db, dir.path());
    let smtp = SmtpSink::start_slow(0, Duration::from_millis(400)).await;
    let site = Site { db_url, dir, smtp_port: smtp.port };
    site.create_org();
    let (mut first, base) = site.serve().await;
    invite_many(&site, &base, 20).await;
    // The first instance claims the queue (20 at a time) and starts sending.
    let deadline = Instant::now() + Duration::from_secs(20);
    let victim = loop {
        let owners: Vec<String> =
            outbox_rows(&site).into_iter().filter(|(s, _)| s == "sending").filter_map(|(_, c)| c).collect();
        if let Some(owner) = owners.first() {
            break owner.clone();
        }
        assert!(Instant::now() < deadline, "no mail was claimed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    // A second live instance, as behind a load balancer; then the first dies mid-send.
    let (mut second, _) = site.serve().await;
    signal(&first, "-KILL");
    let _ = first.wait();
    let killed_at = Instant::now();
    let held_by_dead: i64 = outbox::table
        .filter(outbox::status.eq("sending"))
        .filter(outbox::claimed_by.eq(&victim))
        .count()
        .get_result(&mut site.pool().get().unwrap())
        .unwrap();
    assert!(held_by_dead > 0, "the dead instance held claims");
    // The survivor takes everything over within the lease (30 s) and sends it all.
    let deadline = Instant::now() + Duration::from_secs(60);
    while outbox_rows(&site).iter().any(|(s, _)| s != "sent") {
        assert!(Instant::now() < deadline, "the survivor did not take over: {:?}", outbox_rows(&site));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = killed_at.elapsed();
    signal(&second, "-TERM");
    wait_exit(&mut second, Duration::from_secs(30)).await;
    // The lease is 30 s; then the survivor sends what the dead one held, 400 ms each here.
    let limit = Duration::from_secs(31) + Duration::from_millis(400 * held_by_dead as u64) + Duration::from_secs(5);
    assert!(took < limit, "taken over within the lease: {took:?} for {held_by_dead} held by the dead");
    // Every message arrived; at most one arrived twice (the one in flight at the kill), both
    // times with the same Message-ID.
    let mut twice = 0;
    for i in 0..20 {
        let to = format!("guest{i:03}@partner.test");
        let copies: Vec<_> = smtp.all().into_iter().filter(|m| m.rcpt.contains(&to)).collect();
        assert!(!copies.is_empty() && copies.len() <= 2, "{to}: {} copies", copies.len());
        if copies.len() == 2 {
            twice += 1;
            assert_eq!(copies[0].header("Message-ID"), copies[1].header("Message-ID"), "the same Message-ID");
        }
    }
    assert!(twice <= 1, "{twice} messages sent twice");
}

crate::on_both_databases!(db: sigterm_lets_requests_finish_and_releases_mail, kill9_while_sending_mail_resends_at_most_once);

/// A bulk job running in the server when it gets SIGTERM stops between batches; the next start
/// resumes it (once the 30-second lease has run out) and every row is invited exactly once.
async fn sigterm_pauses_a_bulk_job_and_the_next_start_resumes_it(db: Db) {
    use vestibule::db::schema::{bulk_jobs, invitations};
    const ROWS: usize = 3000;
    let dir = tempfile::tempdir().unwrap();
    let (_pg, db_url) = fresh_database(db, dir.path());
    let smtp = SmtpSink::start(0).await;
    let site = Site { db_url, dir, smtp_port: smtp.port };
    site.create_org();
    let (mut server, base) = site.serve().await;
    let admin = Browser::new(&base);
    admin.sign_in("admin@acme.test", PASSWORD).await;
    let mut csv = String::from(
        "version:v1.0\nEmail address to invite [inviteeEmail] Required,Redirection url [inviteRedirectURL] Required,Send invitation message (true or false) [sendEmail]\n",
    );
    for i in 0..ROWS {
        csv.push_str(&format!("bulk{i:05}@partner.test,,false\n"));
    }
    let res = crate::bulk::upload(&admin, "/o/acme/admin/bulk", csv.as_bytes()).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let page = crate::helpers::location(&res);
    assert_eq!(admin.post(&format!("{page}/start"), &[]).await.status(), StatusCode::SEE_OTHER);
    let invited = || -> i64 { invitations::table.count().get_result(&mut site.pool().get().unwrap()).unwrap() };
    let deadline = Instant::now() + Duration::from_secs(60);
    while invited() < 200 {
        assert!(Instant::now() < deadline, "the job did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal(&server, "-TERM");
    assert!(wait_exit(&mut server, Duration::from_secs(30)).await.success());
    let paused = invited();
    let status: String = bulk_jobs::table.select(bulk_jobs::status).first(&mut site.pool().get().unwrap()).unwrap();
    assert!(paused < ROWS as i64 && status == "running", "stopped in the middle: {paused} rows, {status}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(invited(), paused, "nothing more once stopped");
    // The next start resumes it.
    let (mut server, _) = site.serve().await;
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        let status: String = bulk_jobs::table.select(bulk_jobs::status).first(&mut site.pool().get().unwrap()).unwrap();
        if status == "done" {
            break;
        }
        assert!(Instant::now() < deadline, "the job was not resumed ({status}, {} rows)", invited());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    signal(&server, "-TERM");
    wait_exit(&mut server, Duration::from_secs(30)).await;
    let emails: Vec<String> =
        invitations::table.select(invitations::email).load(&mut site.pool().get().unwrap()).unwrap();
    let distinct: std::collections::HashSet<_> = emails.iter().collect();
    assert_eq!((emails.len(), distinct.len()), (ROWS, ROWS), "every row invited exactly once");
}

crate::on_both_databases!(db: sigterm_pauses_a_bulk_job_and_the_next_start_resumes_it);
