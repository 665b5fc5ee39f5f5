//! Seeds an organization with many guests for the benchmark (not part of the product).
//!
//! `cargo run --release --example seed -- ORG_SLUG COUNT [TOKENS_FILE]` with
//! `VESTIBULE_DATABASE_URL` set. Every third guest is still pending, with a live invitation from
//! the org's admin; with TOKENS_FILE, their link tokens are written there, one a line (the
//! random-token landing scenario reads them).

use diesel::prelude::*;
use std::io::Write;

use vestibule::db::models::{Invitation, Membership, User};
use vestibule::db::schema::{invitations, memberships, users};
use vestibule::db::{self, DbConnection, write_tx};
use vestibule::domain::token::PlainToken;
use vestibule::domain::{InvitationStatus, MembershipState, Role, UserType};
use vestibule::services::orgs;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let slug = args.get(1).map(String::as_str).unwrap_or("acme");
    let count: usize = args.get(2).and_then(|c| c.parse().ok()).unwrap_or(100_000);
    let url = std::env::var("VESTIBULE_DATABASE_URL").unwrap_or_else(|_| "sqlite://data/vestibule.db".into());
    let pool = db::connect(&url, 2)?;
    let mut conn = pool.get()?;
    db::run_migrations(&mut conn)?;
    let org = orgs::find_by_slug(&mut conn, slug)?.ok_or_else(|| anyhow::anyhow!("no organization {slug}"))?;
    let mut tokens = match args.get(3) {
        Some(path) => Some(std::io::BufWriter::new(std::fs::File::create(path)?)),
        None => None,
    };
    let admin: Option<String> = memberships::table
        .filter(memberships::org_id.eq(&org.id))
        .filter(memberships::role.eq(Role::Admin))
        .select(memberships::user_id)
        .first(&mut conn)
        .optional()?;
    let start = db::now() - time::Duration::days(1);
    for chunk_start in (0..count).step_by(1000) {
        let end = (chunk_start + 1000).min(count);
        let mut new_users = Vec::with_capacity(end - chunk_start);
        let mut new_memberships = Vec::with_capacity(end - chunk_start);
        let mut new_invitations = Vec::new();
        for i in chunk_start..end {
            let name = format!("Bench User {i:06}");
            let user = User {
                id: db::new_id(),
                email: format!("user{i:06}@bench.test"),
                name_search: name.to_lowercase(),
                display_name: name,
                password_hash: None,
                email_verified: false,
                language: None,
                created_at: start,
            };
            let pending = i % 3 == 0;
            let membership_id = db::new_id();
            if pending {
                let token = PlainToken::generate();
                if let Some(out) = tokens.as_mut() {
                    writeln!(out, "{}", token.expose())?;
                }
                new_invitations.push(Invitation {
                    id: db::new_id(),
                    org_id: org.id.clone(),
                    membership_id: membership_id.clone(),
                    email: user.email.clone(),
                    display_name: user.display_name.clone(),
                    message: None,
                    redirect_url: None,
                    user_type: if i % 10 == 0 { UserType::Member } else { UserType::Guest },
                    language: None,
                    token_hash: token.hash(),
                    status: InvitationStatus::Pending,
                    disclosed: false,
                    send_email: false,
                    invited_by: admin.clone(),
                    code_hash: None,
                    code_expires_at: None,
                    code_attempts: 0,
                    created_at: start,
                    expires_at: db::now() + time::Duration::days(30),
                    accepted_at: None,
                    revoked_at: None,
                    group_ids: String::new(),
                    app_id: None,
                    reset: false,
                });
            }
            new_memberships.push(Membership {
                id: membership_id,
                org_id: org.id.clone(),
                user_id: user.id.clone(),
                user_type: if i % 10 == 0 { UserType::Member } else { UserType::Guest },
                role: Role::None,
                state: if pending { MembershipState::PendingAcceptance } else { MembershipState::Accepted },
                blocked: false,
                invited_by: admin.clone(),
                accepted_at: None,
                removed_at: None,
                created_at: start + time::Duration::milliseconds(i as i64),
                sponsor_id: None,
                access_ends_at: None,
                end_reminder_sent_at: None,
                left_at: None,
            });
            new_users.push(user);
        }
        write_tx(&mut conn, |c| -> QueryResult<()> {
            // Multi-row inserts exist per backend, not on the multi-backend connection.
            match c {
                DbConnection::Sqlite(c) => {
                    diesel::insert_into(users::table).values(&new_users).execute(c)?;
                    diesel::insert_into(memberships::table).values(&new_memberships).execute(c)?;
                    diesel::insert_into(invitations::table).values(&new_invitations).execute(c)?;
                }
                DbConnection::Postgresql(c) => {
                    diesel::insert_into(users::table).values(&new_users).execute(c)?;
                    diesel::insert_into(memberships::table).values(&new_memberships).execute(c)?;
                    diesel::insert_into(invitations::table).values(&new_invitations).execute(c)?;
                }
            }
            Ok(())
        })?;
    }
    if let Some(mut out) = tokens {
        out.flush()?;
    }
    // A production database has planner statistics; give the fresh one its own.
    diesel::sql_query("ANALYZE").execute(&mut conn)?;
    println!("seeded {count} guests into {slug}");
    Ok(())
}
