//! Integration tests: the real application over HTTP, a real database, a real SMTP listener.

mod helpers;
mod smtp;

mod admin;
mod api;
mod attacks;
mod audit_account;
mod bulk;
mod bulk_excel;
mod bulk_kill;
mod graph_examples;
mod groups_apps;
mod instances;
mod lifecycle;
mod mail;
mod mfa;
mod oidc;
mod policy;
mod redeem;
mod security;
mod setup;
mod signin;
