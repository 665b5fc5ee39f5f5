//! Email addresses in their canonical form.
//!
//! Canonical form: surrounding whitespace removed and the whole address lower-cased
//! (Unicode lower case). Two addresses are the same mailbox for Vestibule when their canonical
//! forms are equal. Local parts are case-sensitive in theory, in practice no provider treats
//! them so, and comparing case-insensitively is what every identity product does.

use std::fmt;

/// A syntactically valid email address in canonical form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

/// Why an address was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailError {
    Empty,
    Invalid,
}

impl Email {
    /// Validates and canonicalizes an address typed by a person or a program.
    pub fn parse(input: &str) -> Result<Email, EmailError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(EmailError::Empty);
        }
        if s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(EmailError::Invalid);
        }
        let (local, domain) = s.rsplit_once('@').ok_or(EmailError::Invalid)?;
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.contains('@')
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && !local.contains(['<', '>', '(', ')', '[', ']', ',', ';', ':', '\\', '"']);
        let domain_ok = domain.contains('.')
            && domain.len() <= 253
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_alphanumeric() || c == '-')
            });
        if !local_ok || !domain_ok {
            return Err(EmailError::Invalid);
        }
        Ok(Email(s.to_lowercase()))
    }

    /// The canonical text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part after `@`.
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map(|(_, d)| d).unwrap_or("")
    }

    /// A masked form for logs and hints: `a***@example.com`.
    pub fn masked(&self) -> String {
        mask(&self.0)
    }
}

/// Masks the local part of an address for logs and on-screen hints.
pub fn mask(address: &str) -> String {
    match address.rsplit_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".to_owned(),
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_form_is_trimmed_and_lower_case() {
        assert_eq!(Email::parse("  Alice.Smith@Example.COM ").unwrap().as_str(), "alice.smith@example.com");
    }

    #[test]
    fn refuses_malformed_addresses() {
        for bad in [
            "",
            "alice",
            "alice@",
            "@example.com",
            "a b@example.com",
            "alice@example",
            "a..b@example.com",
            "alice@-x.com",
            "<a@b.com>",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn accepts_plus_addressing_and_idn() {
        assert!(Email::parse("bob+partner@sub.example.co.uk").is_ok());
        assert!(Email::parse("élodie@exemple.fr").is_ok());
    }

    #[test]
    fn masks_local_part() {
        assert_eq!(mask("alice@example.com"), "a***@example.com");
    }
}
