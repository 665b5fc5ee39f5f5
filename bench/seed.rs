//! Seeds an organization with many guests for the benchmark (not part of the product).
//!
//! `cargo run --release --example seed -- ORG_SLUG COUNT` with `VESTIBULE_DATABASE_URL` set.

use diesel::prelude::*;
use vestibule::db::models::{Membership, User};
use vestibule::db::schema::{memberships, users};
use vestibule::db::{self, DbConnection, write_tx};
use vestibule::domain::{MembershipState, Role, UserType};
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
    let start = db::now() - time::Duration::days(1);
    for chunk_start in (0..count).step_by(1000) {
        let end = (chunk_start + 1000).min(count);
        let mut new_users = Vec::with_capacity(end - chunk_start);
        let mut new_memberships = Vec::with_capacity(end - chunk_start);
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
            new_memberships.push(Membership {
                id: db::new_id(),
                org_id: org.id.clone(),
                user_id: user.id.clone(),
                user_type: if i % 10 == 0 { UserType::Member } else { UserType::Guest },
                role: Role::None,
                state: if i % 3 == 0 { MembershipState::PendingAcceptance } else { MembershipState::Accepted },
                blocked: false,
                invited_by: None,
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
                }
                DbConnection::Postgresql(c) => {
                    diesel::insert_into(users::table).values(&new_users).execute(c)?;
                    diesel::insert_into(memberships::table).values(&new_memberships).execute(c)?;
                }
            }
            Ok(())
        })?;
    }
    // A production database has planner statistics; give the fresh one its own.
    diesel::sql_query("ANALYZE").execute(&mut conn)?;
    println!("seeded {count} guests into {slug}");
    Ok(())
}
