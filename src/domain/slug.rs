//! Organization slugs: the `{org}` part of URLs.

/// A slug: 2 to 40 characters of `a-z`, `0-9` and inner hyphens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgSlug(String);

/// Words that would shadow a route or confuse people.
const RESERVED: &[&str] = &["admin", "api", "static", "setup", "signin", "signout", "redeem", "account", "new"];

impl OrgSlug {
    /// Validates a slug typed by the operator.
    pub fn parse(input: &str) -> Option<OrgSlug> {
        let s = input.trim().to_lowercase();
        let ok = (2..=40).contains(&s.len())
            && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !s.starts_with('-')
            && !s.ends_with('-')
            && !s.contains("--")
            && !RESERVED.contains(&s.as_str());
        ok.then_some(OrgSlug(s))
    }

    /// Derives a slug from an organization name ("Acme Corp." → "acme-corp").
    pub fn from_name(name: &str) -> Option<OrgSlug> {
        let mut out = String::new();
        for c in name.to_lowercase().chars() {
            let c = match c {
                'à' | 'â' | 'ä' | 'á' => 'a',
                'é' | 'è' | 'ê' | 'ë' => 'e',
                'î' | 'ï' | 'í' => 'i',
                'ô' | 'ö' | 'ó' => 'o',
                'ù' | 'û' | 'ü' | 'ú' => 'u',
                'ç' => 'c',
                c => c,
            };
            if c.is_ascii_alphanumeric() {
                out.push(c);
            } else if !out.ends_with('-') && !out.is_empty() {
                out.push('-');
            }
        }
        let trimmed: String = out.trim_end_matches('-').chars().take(40).collect();
        OrgSlug::parse(trimmed.trim_end_matches('-'))
    }

    /// The slug text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derives_from_names() {
        assert_eq!(OrgSlug::from_name("Acme Corp.").unwrap().as_str(), "acme-corp");
        assert_eq!(OrgSlug::from_name("Société Générale").unwrap().as_str(), "societe-generale");
    }

    #[test]
    fn refuses_bad_and_reserved_slugs() {
        for bad in ["a", "admin", "-x", "x-", "a--b", "a_b", "api"] {
            assert!(OrgSlug::parse(bad).is_none(), "{bad}");
        }
    }
}
