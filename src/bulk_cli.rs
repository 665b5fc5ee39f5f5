//! `vestibule invite --org SLUG --csv FILE [--dry-run] [--as EMAIL]`: the bulk import of the
//! admin console, from a terminal. The job is stored like one uploaded in the console (it shows
//! there with its results file) and run by this process; if the process dies, the job's lease
//! runs out and a running server (or the next `invite` run of the same job) resumes it.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};
use diesel::prelude::*;
use vestibule::config::Settings;
use vestibule::db::models::{BulkJob, BulkRow, Membership};
use vestibule::db::schema::memberships;
use vestibule::domain::{Email, Role, RowStatus};
use vestibule::i18n::Lang;
use vestibule::services::bulk::worker::{self, Step};
use vestibule::services::bulk::{self, jobs};
use vestibule::services::invitations::Channel;
use vestibule::services::{Actor, accounts, orgs, policy};
use vestibule::startup::prepare_database;

/// Runs the import and prints a progress bar and the final counts.
pub fn invite(
    settings: &Settings,
    slug: &str,
    path: &Path,
    dry_run: bool,
    as_email: Option<&str>,
) -> anyhow::Result<()> {
    let tr = Lang::En.tr();
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let pool = prepare_database(settings)?;
    let mut conn = pool.get()?;
    let org = orgs::find_by_slug(&mut conn, slug)?.with_context(|| format!("no organization with slug {slug}"))?;
    let admin = match as_email {
        Some(e) => {
            let email = Email::parse(e).map_err(|_| anyhow::anyhow!("--as: not an email address"))?;
            let user = accounts::find_by_email(&mut conn, &email)?.context("--as: no such account")?;
            orgs::membership_of(&mut conn, &org.id, &user.id)?
        }
        None => memberships::table
            .filter(memberships::org_id.eq(&org.id))
            .filter(memberships::role.eq(Role::Admin))
            .filter(memberships::removed_at.is_null())
            .order(memberships::created_at.asc())
            .select(Membership::as_select())
            .first(&mut conn)
            .optional()?,
    };
    let admin =
        admin.filter(|m| orgs::is_active(m) && m.role == Role::Admin).context("not an admin of this organization")?;
    if !policy::may_invite(&org, &admin) {
        bail!("the organization's collaboration policy allows no invitations");
    }
    let rows = match bulk::check_file(&mut conn, &org, &settings.public_url, &bytes)? {
        Ok(rows) => rows,
        Err(key) => bail!("{}: {}", path.display(), tr.t(key)),
    };
    let problems: Vec<_> = rows.iter().filter(|r| r.status != RowStatus::Valid).cloned().collect();
    let valid = rows.len() - problems.len();
    println!("{} rows: {valid} to invite, {} with a problem", rows.len(), problems.len());
    for r in problems.iter().take(50) {
        println!("  {}", problem_line(&tr, r));
    }
    if problems.len() > 50 {
        println!("  … and {} more (see the results file in the admin console)", problems.len() - 50);
    }
    if dry_run {
        println!("Dry run: nothing was stored or sent.");
        return Ok(());
    }
    if valid == 0 {
        bail!("no row can be invited");
    }
    let actor = Actor { user_id: Some(admin.user_id.clone()), ..Actor::default() };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let job = jobs::create_preview(&mut conn, &org.id, &admin.user_id, &name, rows, &actor)?;
    jobs::start(&mut conn, &org.id, &job.id, &actor)?;
    let owner = worker::new_owner();
    worker::claim(&mut conn, &job.id, &owner)?.context("the job was taken by another process")?;
    println!("Job {} (also shown at {}/o/{}/admin/bulk/{})", job.id, settings.base_url(), org.slug, job.id);
    let step = worker::run_job(&mut conn, &job.id, &owner, &settings.public_url, Channel::Cli, |step| {
        if let Step::Progress { processed, of } = step {
            print_bar(*processed, *of);
        }
        true
    })?;
    println!();
    let done: BulkJob = jobs::find(&mut conn, &org.id, &job.id)?.context("job vanished")?;
    println!(
        "{}: {} invited ({} already pending), {} failed, {} invalid, {} duplicates, {} rows in total",
        done.status, done.succeeded, done.existing, done.failed, done.invalid_rows, done.duplicate_rows, done.total
    );
    if step == Step::LostLease {
        println!("Another process took the job over; it goes on there.");
    }
    println!("The invitation emails are in the outbox: the server (vestibule serve) sends them.");
    Ok(())
}

/// One problem row, said about what is wrong: the address, the redirect URL (a refused
/// redirect is not a wrong address), or another cell of the row.
fn problem_line(tr: &vestibule::i18n::Tr, r: &BulkRow) -> String {
    let key = r.reason.as_deref().unwrap_or("");
    let reason = tr.t(key);
    let other_cell = [
        "bulk.reason_send_email",
        "bulk.reason_language",
        "bulk.reason_group",
        "name.invalid",
        "invite.message_too_long",
        "invite.message_invalid",
    ];
    if key.starts_with("redirect.") {
        format!("line {}: redirect URL {:?} refused: {reason} (row of {})", r.line_no, r.redirect_url, r.email)
    } else if other_cell.contains(&key) {
        format!("line {}: {reason} (row of {})", r.line_no, r.email)
    } else {
        format!("line {}: {} — {reason}", r.line_no, r.email)
    }
}

fn print_bar(done: i64, of: i64) {
    let width = 40;
    let filled = if of > 0 { (done * width / of).clamp(0, width) } else { width };
    let bar: String = (0..width).map(|i| if i < filled { '#' } else { '.' }).collect();
    print!("\r[{bar}] {done}/{of}");
    let _ = std::io::stdout().flush();
}
