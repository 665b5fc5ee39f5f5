//! The real binary, killed with SIGKILL in the middle of a bulk import and started again, ends
//! with every row invited exactly once and every invitation with its email.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use vestibule::db::schema::{bulk_jobs, invitations, outbox};

const BIN: &str = env!("CARGO_BIN_EXE_vestibule");
const ROWS: usize = 3000;

fn count(conn: &mut vestibule::db::DbConnection) -> (i64, i64, i64) {
    let inv: i64 = invitations::table.count().get_result(conn).unwrap();
    let emails: Vec<String> = invitations::table.select(invitations::email).load(conn).unwrap();
    let distinct = emails.iter().collect::<std::collections::HashSet<_>>().len() as i64;
    let mails: i64 = outbox::table.filter(outbox::kind.eq("invitation")).count().get_result(conn).unwrap();
    (inv, distinct, mails)
}

fn import_survives_sigkill_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("kill.db").display());
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let env = |cmd: &mut Command| {
        cmd.env("VESTIBULE_DATABASE_URL", &db)
            .env("VESTIBULE_DATA_DIR", dir.path().join("data"))
            .env("VESTIBULE_BIND", format!("127.0.0.1:{port}"))
            .env("VESTIBULE_PUBLIC_URL", format!("http://127.0.0.1:{port}"))
            // A closed port: mail stays queued, which is all this test needs.
            .env("VESTIBULE_SMTP_URL", "smtp://127.0.0.1:9")
            .env("VESTIBULE_LOG", "warn")
            .env_remove("VESTIBULE_CONFIG");
    };
    let mut create = Command::new(BIN);
    env(&mut create);
    let mut child = create
        .args([
            "org",
            "create",
            "--name",
            "Acme",
            "--slug",
            "acme",
            "--admin-email",
            "admin@acme.test",
            "--admin-password-stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"plum tractor velvet harbor\n").unwrap();
    assert!(child.wait().unwrap().success());

    let csv_path = dir.path().join("guests.csv");
    let mut csv = String::from(
        "version:v1.0\nEmail address to invite [inviteeEmail] Required,Redirection url [inviteRedirectURL] Required,Send invitation message (true or false) [sendEmail]\n",
    );
    for i in 0..ROWS {
        csv.push_str(&format!("guest{i:05}@partner.test,,true\n"));
    }
    std::fs::write(&csv_path, csv).unwrap();

    // Start the import from the terminal and kill it with SIGKILL once some batches are in.
    let mut import = Command::new(BIN);
    env(&mut import);
    let mut child = import
        .args(["invite", "--org", "acme", "--csv", csv_path.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pool = vestibule::db::connect(&db, 2).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (inv, _, _) = count(&mut pool.get().unwrap());
        if inv >= 400 {
            break;
        }
        assert!(Instant::now() < deadline, "the import never started");
        assert!(child.try_wait().unwrap().is_none(), "the import finished before it could be killed");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    let (inv, distinct, mails) = count(&mut pool.get().unwrap());
    assert!(inv < ROWS as i64, "killed in the middle ({inv} done)");
    assert_eq!((inv, distinct), (mails, inv), "after the kill: every invitation has its mail, no duplicate");

    // Start the server: its bulk worker takes the job over when the dead process's lease runs out.
    let mut serve = Command::new(BIN);
    env(&mut serve);
    let mut server = serve.arg("serve").stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(240);
    let status = loop {
        let status: String = bulk_jobs::table.select(bulk_jobs::status).first(&mut pool.get().unwrap()).unwrap();
        if status == "done" || status == "failed" {
            break status;
        }
        if Instant::now() > deadline {
            let _ = server.kill();
            panic!("the job did not resume (status {status})");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(status, "done");
    let (inv, distinct, mails) = count(&mut pool.get().unwrap());
    assert_eq!((inv, distinct, mails), (ROWS as i64, ROWS as i64, ROWS as i64));
    let orphans: i64 = invitations::table
        .left_join(outbox::table.on(outbox::invitation_id.eq(invitations::id.nullable())))
        .filter(outbox::id.is_null())
        .count()
        .get_result(&mut pool.get().unwrap())
        .unwrap();
    assert_eq!(orphans, 0, "no invitation without its email");
}

crate::plain_tests!(blocking: import_survives_sigkill_and_resumes);
