//! Integration tests: the real application over HTTP, a real database, a real SMTP listener.
//! Run by our own runner (tests/it/harness.rs) so that PostgreSQL variants that could not run are
//! reported as ignored.

mod harness;
mod helpers;
mod proxy;
mod smtp;

mod admin;
mod api;
mod attacks;
mod audit_account;
mod bulk;
mod bulk_excel;
mod bulk_kill;
mod faults;
mod federation;
mod fuzz;
mod graph_examples;
mod groups_apps;
mod instances;
mod lifecycle;
mod limits;
mod mail;
mod metrics;
mod mfa;
mod oidc;
mod policy;
mod process;
mod query_plans;
mod redeem;
mod security;
mod setup;
mod signin;

fn main() -> std::process::ExitCode {
    harness::main()
}
