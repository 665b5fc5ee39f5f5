//! The state every request shares: settings, the pool, keys and the workers' wake-ups.
//! Built by `startup`, read by handlers and middleware.

use std::sync::Arc;

use tokio::sync::Notify;

use crate::config::Settings;
use crate::db::Pool;

/// State shared by every request.
pub struct AppState {
    pub settings: Settings,
    pub pool: Pool,
    /// Key of the CSRF token HMAC (derived from the secret key file).
    pub csrf_key: Vec<u8>,
    /// Wakes the mail worker when a request queued mail.
    pub mail_wake: Arc<Notify>,
    /// Wakes the bulk invitation worker when a job was confirmed.
    pub bulk_wake: Arc<Notify>,
    /// The OpenID Connect provider's keys and cached documents.
    pub oidc: crate::services::oidc::Provider,
    /// Operations metrics (`/metrics`).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Federation with guests' home identity providers: the HTTP client and the secrets' key.
    pub idp: crate::services::idp::Federation,
}

impl AppState {
    /// Tells the mail worker there is something to send.
    pub fn wake_mail(&self) {
        self.mail_wake.notify_one();
    }
}
