//! Where mail goes: an SMTP server, or `.eml` files in a folder when none is configured.

use std::path::PathBuf;

use lettre::message::{Mailbox, MultiPart, header::MessageId};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::db::models::OutboxMessage;
use crate::domain::email::mask;

/// A configured way of delivering mail.
#[derive(Clone)]
pub enum Transport {
    /// lettre SMTP built from `VESTIBULE_SMTP_URL` (`smtp://`, `smtps://`, `?tls=required`).
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// One `.eml` file per message in this folder.
    FileDrop(PathBuf),
}

/// Why a send failed, and whether retrying can help.
#[derive(Debug)]
pub struct SendError {
    pub permanent: bool,
    pub message: String,
}

impl Transport {
    /// Builds the transport from settings.
    pub fn from_settings(settings: &crate::config::Settings) -> anyhow::Result<Transport> {
        match &settings.smtp_url {
            Some(url) => {
                let t = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.as_str())
                    .map_err(|e| anyhow::anyhow!("VESTIBULE_SMTP_URL: {e}"))?
                    .timeout(Some(std::time::Duration::from_secs(20)))
                    // A few connections kept open: the worker has this many messages in flight.
                    .pool_config(lettre::transport::smtp::PoolConfig::new().max_size(super::worker::CONCURRENCY as u32))
                    .build();
                Ok(Transport::Smtp(t))
            }
            None => Ok(Transport::FileDrop(settings.data_dir.join("mail"))),
        }
    }

    /// Sends one outbox row.
    pub async fn send(&self, from: &Mailbox, row: &OutboxMessage) -> Result<(), SendError> {
        let message = build_message(from, row).map_err(|e| SendError { permanent: true, message: e })?;
        match self {
            Transport::Smtp(smtp) => match smtp.send(message).await {
                Ok(_) => Ok(()),
                Err(e) => Err(SendError { permanent: e.is_permanent(), message: e.to_string() }),
            },
            Transport::FileDrop(dir) => {
                let path = dir.join(format!("{}-{}.eml", row.created_at.assume_utc().unix_timestamp(), row.id));
                let bytes = message.formatted();
                let dir = dir.clone();
                let p = path.clone();
                let written = tokio::task::spawn_blocking(move || {
                    std::fs::create_dir_all(&dir)?;
                    std::fs::write(&p, bytes)
                })
                .await;
                match written {
                    Ok(Ok(())) => {
                        tracing::info!(to = %mask(&row.recipient), file = %path.display(), "mail written to file (no VESTIBULE_SMTP_URL set)");
                        Ok(())
                    }
                    Ok(Err(e)) => {
                        Err(SendError { permanent: false, message: format!("writing {}: {e}", path.display()) })
                    }
                    Err(e) => Err(SendError { permanent: false, message: e.to_string() }),
                }
            }
        }
    }
}

fn build_message(from: &Mailbox, row: &OutboxMessage) -> Result<Message, String> {
    let sender = Mailbox::new(Some(row.from_name.clone()), from.email.clone());
    let to: Mailbox = row.recipient.parse().map_err(|e| format!("recipient: {e}"))?;
    let mut builder = Message::builder()
        .from(sender)
        .to(to)
        .subject(row.subject.clone())
        .header(MessageId::from(row.message_id.clone()));
    if let Some(reply_to) = &row.reply_to
        && let Ok(mb) = reply_to.parse::<Mailbox>()
    {
        builder = builder.reply_to(mb);
    }
    let text = row.body_text.clone().unwrap_or_default();
    let html = row.body_html.clone().unwrap_or_default();
    builder.multipart(MultiPart::alternative_plain_html(text, html)).map_err(|e| e.to_string())
}
