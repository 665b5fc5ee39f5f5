//! The users list and every search the console offers are index lookups, never a full scan of
//! `users` or `memberships`, on both databases.
//!
//! The test records the SQL that `services::users::list` really runs (diesel's instrumentation),
//! then asks the database for the plan of each statement: `EXPLAIN QUERY PLAN` on SQLite,
//! `EXPLAIN` of the prepared statement on PostgreSQL. The org is first given a few thousand
//! people and the planner its statistics (`ANALYZE`), so PostgreSQL plans as it would for a
//! real organization instead of reading a ten-row table sequentially. PostgreSQL is asked for
//! its generic plan (`plan_cache_mode = force_generic_plan`): the plan for any values of the
//! parameters, which is what it settles on for a statement prepared once and run many times.
//! No planner switch (`enable_seqscan`) is turned off: the plans are the ones it picks.

use std::sync::{Arc, Mutex};

use diesel::connection::{Instrumentation, InstrumentationEvent};
use diesel::prelude::*;
use diesel::sql_types::Text;
use vestibule::db::models::{Membership, User};
use vestibule::db::schema::{memberships, users};
use vestibule::db::{self, DbConnection};
use vestibule::domain::{MembershipState, Role, UserType};
use vestibule::services::users::{self as people, UserFilter};

use crate::helpers::TestApp;
use crate::on_both_databases;

const PEOPLE: usize = 10_000;

/// Adds `PEOPLE` guests to the org (multi-row inserts, as `bench/seed.rs` does), then ANALYZE.
fn seed(conn: &mut DbConnection, org_id: &str) {
    let start = db::now() - time::Duration::days(1);
    for chunk in (0..PEOPLE).collect::<Vec<_>>().chunks(500) {
        let mut new_users = Vec::new();
        let mut new_memberships = Vec::new();
        for &i in chunk {
            let name = format!("Plan User {i:05}");
            let user = User {
                id: db::new_id(),
                email: format!("user{i:05}@plans.test"),
                name_search: name.to_lowercase(),
                display_name: name,
                password_hash: None,
                email_verified: false,
                language: None,
                created_at: start,
            };
            new_memberships.push(Membership {
                id: db::new_id(),
                org_id: org_id.to_owned(),
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
        match conn {
            DbConnection::Sqlite(c) => {
                diesel::insert_into(users::table).values(&new_users).execute(c).unwrap();
                diesel::insert_into(memberships::table).values(&new_memberships).execute(c).unwrap();
            }
            DbConnection::Postgresql(c) => {
                diesel::insert_into(users::table).values(&new_users).execute(c).unwrap();
                diesel::insert_into(memberships::table).values(&new_memberships).execute(c).unwrap();
            }
        }
    }
    // Each person has an invitation and its (sent) email, so those lookups are planned on
    // real tables too.
    diesel::sql_query(format!(
        "INSERT INTO invitations (id, org_id, membership_id, email, display_name, user_type, token_hash, \
         status, disclosed, send_email, code_attempts, created_at, expires_at, group_ids, reset) \
         SELECT m.id || '-i', m.org_id, m.id, u.email, u.display_name, m.user_type, 'hash-' || m.id, \
         'pending', FALSE, TRUE, 0, m.created_at, m.created_at, '', FALSE \
         FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.org_id = '{org_id}'"
    ))
    .execute(conn)
    .unwrap();
    diesel::sql_query(format!(
        "INSERT INTO outbox (id, kind, org_id, invitation_id, recipient, from_name, subject, message_id, \
         status, attempts, next_attempt_at, created_at) \
         SELECT i.id || '-o', 'invitation', i.org_id, i.id, i.email, 'Plans', 'Invitation', i.id || '@plans.test', \
         'sent', 1, i.created_at, i.created_at FROM invitations i WHERE i.org_id = '{org_id}'"
    ))
    .execute(conn)
    .unwrap();
    diesel::sql_query("ANALYZE").execute(conn).unwrap();
}

/// Runs `f` and returns the SQL text of every statement it ran (placeholders, no values).
fn statements_of(conn: &mut DbConnection, f: impl FnOnce(&mut DbConnection)) -> Vec<String> {
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = seen.clone();
    let recorder = move |event: InstrumentationEvent<'_>| {
        if let InstrumentationEvent::StartQuery { query, .. } = event {
            let text = query.to_string();
            let sql = text.split(" -- binds: ").next().unwrap_or_default().to_owned();
            sink.lock().unwrap().push(sql);
        }
    };
    match conn {
        DbConnection::Sqlite(c) => c.set_instrumentation(recorder),
        DbConnection::Postgresql(c) => c.set_instrumentation(recorder),
    }
    f(conn);
    match conn {
        DbConnection::Sqlite(c) => c.set_instrumentation(None::<Box<dyn Instrumentation>>),
        DbConnection::Postgresql(c) => c.set_instrumentation(None::<Box<dyn Instrumentation>>),
    }
    seen.lock().unwrap().clone()
}

#[derive(QueryableByName)]
struct SqlitePlanRow {
    #[diesel(sql_type = Text)]
    detail: String,
}

#[derive(QueryableByName)]
struct PgPlanRow {
    #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
    line: String,
}

/// The plan of one statement, one line per step.
fn plan_of(conn: &mut DbConnection, sql: &str) -> Vec<String> {
    match conn {
        DbConnection::Sqlite(c) => {
            // Parameters left unbound are NULL; SQLite plans at prepare time, without values.
            let rows: Vec<SqlitePlanRow> = diesel::sql_query(format!("EXPLAIN QUERY PLAN {sql}")).load(c).unwrap();
            rows.into_iter().map(|r| r.detail).collect()
        }
        DbConnection::Postgresql(c) => {
            let params = (1..).take_while(|n| sql.contains(&format!("${n}"))).count();
            diesel::sql_query(format!("PREPARE plan_probe AS {sql}")).execute(c).unwrap();
            let nulls = vec!["NULL"; params].join(", ");
            let exec =
                if params == 0 { "EXECUTE plan_probe".to_owned() } else { format!("EXECUTE plan_probe({nulls})") };
            let rows: Vec<PgPlanRow> = diesel::sql_query(format!("EXPLAIN {exec}")).load(c).unwrap();
            diesel::sql_query("DEALLOCATE plan_probe").execute(c).unwrap();
            rows.into_iter().map(|r| r.line).collect()
        }
    }
}

/// A step that reads a whole table (or a whole index of it) instead of a range.
fn full_scan(line: &str, table: &str) -> bool {
    let l = line.trim_start_matches([' ', '-', '>']);
    // SQLite: "SCAN users", "SCAN users USING INDEX ..." ("SEARCH ..." is a range or a lookup).
    // PostgreSQL: "Seq Scan on users", and a full-index scan shows no "Index Cond".
    l.starts_with(&format!("SCAN {table}")) || l.starts_with(&format!("Seq Scan on {table} "))
}

async fn search_and_first_page_use_indexes(app: TestApp) {
    app.create_org("Plans Inc", "plans", "admin@plans.test");
    let mut conn = app.conn();
    let org = vestibule::services::orgs::find_by_slug(&mut conn, "plans").unwrap().unwrap();
    seed(&mut conn, &org.id);
    if let DbConnection::Postgresql(c) = &mut *conn {
        diesel::sql_query("SET plan_cache_mode = force_generic_plan").execute(c).unwrap();
    }

    let search = |q: &str| UserFilter { search: Some(q.to_owned()), ..UserFilter::default() };
    let cases: Vec<(&str, UserFilter, usize)> = vec![
        ("first page", UserFilter::default(), 50),
        ("first page, guests", UserFilter { user_type: Some("Guest".into()), ..UserFilter::default() }, 50),
        ("first page, pending", UserFilter { state: Some("PendingAcceptance".into()), ..UserFilter::default() }, 50),
        ("address prefix without @", search("user0123"), 10),
        ("address prefix, upper case", search("USER0123"), 10),
        ("exact address", search("user01234@plans.test"), 1),
        ("exact address, mixed case", search("User01234@Plans.Test"), 1),
        ("name prefix", search("plan user 0123"), 10),
        ("name prefix, upper case", search("PLAN USER 0123"), 10),
        ("broad prefix (capped)", search("user"), 50),
        ("prefix with LIKE wildcards", search("user0_%"), 0),
        (
            "address prefix, guests, pending",
            UserFilter {
                search: Some("user01".into()),
                user_type: Some("Guest".into()),
                state: Some("PendingAcceptance".into()),
                ..UserFilter::default()
            },
            50,
        ),
    ];
    let mut report = String::new();
    for (name, filter, expected_rows) in cases {
        let mut rows = 0;
        let statements = statements_of(&mut conn, |c| rows = people::list(c, &org.id, &filter).unwrap().rows.len());
        assert_eq!(rows, expected_rows, "{name}: the search finds what it should");
        assert!(!statements.is_empty(), "{name}: statements recorded");
        for sql in statements {
            let plan = plan_of(&mut conn, &sql);
            report.push_str(&format!("{name}:\n  {sql}\n    {}\n", plan.join("\n    ")));
            for table in ["users", "memberships", "invitations", "outbox"] {
                assert!(
                    !plan.iter().any(|line| full_scan(line, table)),
                    "{name}: full scan of {table}\n{sql}\n{}",
                    plan.join("\n")
                );
            }
            // A search must reach memberships through the account (user_id), not by walking
            // the whole organization in date order and testing each row.
            let reads_memberships = sql.contains("FROM `memberships`") || sql.contains("FROM \"memberships\"");
            if filter.search.is_some() && reads_memberships {
                assert!(
                    plan.iter().any(|l| l.contains("user_id")),
                    "{name}: memberships not looked up by account\n{sql}\n{}",
                    plan.join("\n")
                );
            }
        }
    }
    eprintln!("{report}");
}

on_both_databases!(search_and_first_page_use_indexes);
