//! Settings from `VESTIBULE_*` environment variables and an optional `vestibule.toml`
//! (environment wins). Validated once at start; passed in, never global.

use std::collections::HashMap;
use std::path::PathBuf;

use url::Url;

use crate::db::Backend;

/// Everything the server needs to know about its surroundings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `sqlite://PATH` or `postgres://…`.
    pub database_url: String,
    /// Listen address.
    pub bind: String,
    /// Base of every link in emails; https here turns on `Secure` and `__Host-` cookies.
    pub public_url: Url,
    /// Session key, mail drop folder, uploads.
    pub data_dir: PathBuf,
    /// SMTP server; `None` writes `.eml` files under `data_dir/mail`.
    pub smtp_url: Option<Url>,
    /// Sender mailbox (`Name <addr>` or `addr`).
    pub mail_from: lettre::message::Mailbox,
    /// Log filter.
    pub log: String,
    /// HTTP worker threads (0 = one per core).
    pub workers: usize,
    /// How often the mail worker looks for due mail when nothing wakes it, in milliseconds.
    pub mail_poll_ms: u64,
    /// Turns sign-in throttling off (load tests only; never in production).
    pub throttle_enabled: bool,
    /// How long an instance trusts its cached OpenID Connect keys, in milliseconds (tests shorten it).
    pub oidc_keys_reload_ms: u64,
    /// Where `/metrics` is served on a listener of its own (e.g. `127.0.0.1:9464`), if anywhere.
    pub metrics_bind: Option<String>,
    /// A bearer token that opens `/metrics` on the main port, if set.
    pub metrics_token: Option<String>,
    /// How long a SQLite statement waits for a lock held by another connection or process
    /// before the request answers 503, in milliseconds (tests shorten it).
    pub sqlite_busy_ms: u64,
}

/// A setting that could not be used; the message names it.
#[derive(Debug, thiserror::Error)]
#[error("{name}: {problem}")]
pub struct ConfigError {
    /// The variable (or file key) at fault.
    pub name: String,
    /// What is wrong with it.
    pub problem: String,
}

fn bad(name: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError { name: name.to_owned(), problem: problem.into() }
}

const KEYS: &[&str] = &[
    "database_url",
    "bind",
    "public_url",
    "data_dir",
    "smtp_url",
    "mail_from",
    "log",
    "throttle",
    "metrics_bind",
    "metrics_token",
];

impl Settings {
    /// Reads `vestibule.toml` (or the file named by `VESTIBULE_CONFIG`) and the environment.
    pub fn from_env() -> Result<Settings, ConfigError> {
        let file = std::env::var("VESTIBULE_CONFIG").unwrap_or_else(|_| "vestibule.toml".into());
        let mut values: HashMap<String, String> = HashMap::new();
        match std::fs::read_to_string(&file) {
            Ok(text) => {
                let table: toml::Table = text.parse().map_err(|e| bad(&file, format!("not valid TOML: {e}")))?;
                for (key, value) in table {
                    if !KEYS.contains(&key.as_str()) {
                        return Err(bad(&file, format!("unknown key `{key}`")));
                    }
                    let text = match value {
                        toml::Value::String(s) => s,
                        other => other.to_string(),
                    };
                    values.insert(key, text);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(bad(&file, e.to_string())),
        }
        for key in KEYS {
            if let Ok(v) = std::env::var(format!("VESTIBULE_{}", key.to_uppercase())) {
                values.insert((*key).to_owned(), v);
            }
        }
        Settings::from_values(&values)
    }

    /// Builds settings from key/value pairs (keys as in `vestibule.toml`).
    pub fn from_values(values: &HashMap<String, String>) -> Result<Settings, ConfigError> {
        let get = |k: &str| values.get(k).map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());

        let database_url = get("database_url").unwrap_or_else(|| "sqlite://data/vestibule.db".into());
        if Backend::from_url(&database_url).is_none() {
            return Err(bad("VESTIBULE_DATABASE_URL", "must start with sqlite:// or postgres://"));
        }
        let bind = get("bind").unwrap_or_else(|| "127.0.0.1:8080".into());
        if bind.parse::<std::net::SocketAddr>().is_err() && !bind.contains(':') {
            return Err(bad("VESTIBULE_BIND", "must be HOST:PORT, e.g. 127.0.0.1:8080"));
        }
        let public_url_text = get("public_url").unwrap_or_else(|| "http://127.0.0.1:8080".into());
        let public_url = Url::parse(&public_url_text)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            .ok_or_else(|| bad("VESTIBULE_PUBLIC_URL", "must be an absolute http:// or https:// URL"))?;
        let data_dir = PathBuf::from(get("data_dir").unwrap_or_else(|| "data".into()));
        let smtp_url = match get("smtp_url") {
            None => None,
            Some(s) => {
                let u = Url::parse(&s).map_err(|_| bad("VESTIBULE_SMTP_URL", "not a URL"))?;
                if !matches!(u.scheme(), "smtp" | "smtps") || u.host_str().is_none() {
                    return Err(bad(
                        "VESTIBULE_SMTP_URL",
                        "must be smtp://host[:port] or smtps://user:pass@host[:port]",
                    ));
                }
                Some(u)
            }
        };
        let mail_from_text = get("mail_from").unwrap_or_else(|| "Vestibule <no-reply@localhost>".into());
        let mail_from = mail_from_text
            .parse()
            .map_err(|_| bad("VESTIBULE_MAIL_FROM", "must be an address, optionally with a name: Name <addr@host>"))?;
        let log = get("log").unwrap_or_else(|| "info".into());
        if tracing_subscriber::EnvFilter::try_new(&log).is_err() {
            return Err(bad("VESTIBULE_LOG", "not a valid log filter (e.g. info, debug, vestibule=debug)"));
        }
        let throttle_enabled = match get("throttle").as_deref() {
            None | Some("on") => true,
            Some("off") => false,
            Some(_) => return Err(bad("VESTIBULE_THROTTLE", "must be on or off")),
        };
        let metrics_bind = get("metrics_bind");
        if let Some(b) = &metrics_bind
            && b.parse::<std::net::SocketAddr>().is_err()
            && !b.contains(':')
        {
            return Err(bad("VESTIBULE_METRICS_BIND", "must be HOST:PORT, e.g. 127.0.0.1:9464"));
        }
        let metrics_token = get("metrics_token");
        if metrics_token.as_ref().is_some_and(|t| t.len() < 16 || !t.bytes().all(|b| b.is_ascii_graphic())) {
            return Err(bad("VESTIBULE_METRICS_TOKEN", "must be at least 16 visible ASCII characters"));
        }
        Ok(Settings {
            database_url,
            bind,
            public_url,
            data_dir,
            smtp_url,
            mail_from,
            log,
            workers: 0,
            mail_poll_ms: 2000,
            throttle_enabled,
            oidc_keys_reload_ms: 60_000,
            sqlite_busy_ms: crate::db::SQLITE_BUSY_MS,
            metrics_bind,
            metrics_token,
        })
    }

    /// True when the public URL is https: cookies become `Secure` and `__Host-` prefixed.
    pub fn https(&self) -> bool {
        self.public_url.scheme() == "https"
    }

    /// The public URL without a trailing slash, to which paths are appended.
    pub fn base_url(&self) -> String {
        self.public_url.as_str().trim_end_matches('/').to_owned()
    }

    /// A cookie name, `__Host-` prefixed when served over https.
    pub fn cookie_name(&self, name: &str) -> String {
        if self.https() { format!("__Host-{name}") } else { name.to_owned() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        Settings::from_values(&pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn defaults_match_the_design() {
        let s = with(&[]).unwrap();
        assert_eq!(s.database_url, "sqlite://data/vestibule.db");
        assert_eq!(s.bind, "127.0.0.1:8080");
        assert_eq!(s.base_url(), "http://127.0.0.1:8080");
        assert!(!s.https());
        assert!(s.smtp_url.is_none());
    }

    #[test]
    fn bad_values_name_the_setting() {
        let e = with(&[("database_url", "mysql://x")]).unwrap_err();
        assert_eq!(e.name, "VESTIBULE_DATABASE_URL");
        let e = with(&[("public_url", "portal.example.com")]).unwrap_err();
        assert_eq!(e.name, "VESTIBULE_PUBLIC_URL");
        let e = with(&[("smtp_url", "http://mail")]).unwrap_err();
        assert_eq!(e.name, "VESTIBULE_SMTP_URL");
    }

    #[test]
    fn https_turns_on_host_prefixed_cookies() {
        let s = with(&[("public_url", "https://portal.example.com")]).unwrap();
        assert_eq!(s.cookie_name("vestibule_session"), "__Host-vestibule_session");
    }
}
