//! Outgoing mail: the outbox (rows written in the same transaction as the change that causes
//! them), the worker that sends them, transports and message builders.

pub mod account;
pub mod invitation_cc;
pub mod messages;
pub mod transport;
pub mod worker;

use diesel::prelude::*;
use url::Url;

use crate::db::models::OutboxMessage;
use crate::db::schema::outbox;
use crate::db::{self, DbConnection};
use crate::domain::OutboxStatus;

thread_local! {
    /// Set by [`enqueue`] on the thread that queued mail; read by [`take_queued`].
    static QUEUED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// True when this thread queued mail since the last call; clears the mark. The request layer
/// reads it after each piece of database work, so that waking the mail worker happens in one
/// place (`web::with_conn`) rather than in every handler that causes mail.
pub fn take_queued() -> bool {
    QUEUED.with(|q| q.replace(false))
}

/// A rendered email ready for the outbox.
#[derive(Debug, Clone)]
pub struct NewMail {
    pub kind: &'static str,
    pub org_id: Option<String>,
    pub invitation_id: Option<String>,
    pub recipient: String,
    /// Display name of the sender ("Alice via Acme"); the address is the configured one.
    pub from_name: String,
    pub reply_to: Option<String>,
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Writes a mail row; call inside the transaction of the change that causes it.
pub fn enqueue(conn: &mut DbConnection, mail: NewMail, public_url: &Url) -> QueryResult<String> {
    QUEUED.with(|q| q.set(true));
    let row = outbox_row(mail, public_url);
    diesel::insert_into(outbox::table).values(&row).execute(conn)?;
    Ok(row.id)
}

/// Writes many mail rows in multi-row inserts (a bulk wave); same rules as [`enqueue`].
pub fn enqueue_many(conn: &mut DbConnection, mails: Vec<NewMail>, public_url: &Url) -> QueryResult<()> {
    if mails.is_empty() {
        return Ok(());
    }
    QUEUED.with(|q| q.set(true));
    let rows: Vec<OutboxMessage> = mails.into_iter().map(|m| outbox_row(m, public_url)).collect();
    db::insert_all!(conn, outbox::table, &rows);
    Ok(())
}

/// The outbox row of a rendered mail, queued now.
fn outbox_row(mail: NewMail, public_url: &Url) -> OutboxMessage {
    let id = db::new_id();
    let host = public_url.host_str().unwrap_or("localhost");
    let now = db::now();
    OutboxMessage {
        message_id: format!("<{id}@{host}>"),
        id: id.clone(),
        kind: mail.kind.to_owned(),
        org_id: mail.org_id,
        invitation_id: mail.invitation_id,
        recipient: mail.recipient,
        from_name: mail.from_name,
        reply_to: mail.reply_to,
        subject: mail.subject,
        body_text: Some(mail.text),
        body_html: Some(mail.html),
        status: OutboxStatus::Queued,
        attempts: 0,
        next_attempt_at: now,
        lease_until: None,
        last_error: None,
        created_at: now,
        sent_at: None,
    }
}

/// Counts of outbox rows by status, for `/readyz`.
pub fn queue_counts(conn: &mut DbConnection) -> QueryResult<Vec<(String, i64)>> {
    outbox::table
        .filter(outbox::status.ne(OutboxStatus::Sent))
        .group_by(outbox::status)
        .select((outbox::status, diesel::dsl::count_star()))
        .load(conn)
}
