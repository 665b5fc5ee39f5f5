//! Validated value types and pure rules. Nothing here touches the database or the web.

pub mod email;
pub mod icon;
pub mod links;
pub mod oidc;
pub mod password;
pub mod redirect;
pub mod slug;
pub mod states;
pub mod token;

pub use email::Email;
pub use slug::OrgSlug;
pub use states::{
    DomainMode, InvitationStatus, InvitePolicy, JobStatus, MembershipState, MfaPolicy, OutboxStatus, Role, RowStatus,
    UserType,
};

/// The longest prefix of `s` of at most `max_bytes` bytes that ends on a character boundary:
/// untrusted text is cut to this before it is validated, logged, audited or counted, so that
/// no input's size reaches a table, a log line or an in-memory key.
pub fn clip(s: &str, max_bytes: usize) -> &str {
    if s.len() <= max_bytes {
        return s;
    }
    let mut end = max_bytes;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Trims a free-text field and returns `None` when nothing is left.
pub fn non_empty(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

/// True when a single-line field (a name) holds any control character, line breaks included:
/// names end up in email headers, where a line break would start a new header.
pub fn has_any_control_chars(s: &str) -> bool {
    s.chars().any(char::is_control)
}

/// True when the text holds control characters other than line breaks and tabs.
pub fn has_control_chars(s: &str) -> bool {
    s.chars().any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t')
}

#[cfg(test)]
mod clip_tests {
    #[test]
    fn clips_on_a_character_boundary() {
        assert_eq!(super::clip("abc", 10), "abc");
        assert_eq!(super::clip("abcdef", 3), "abc");
        assert_eq!(super::clip("aé", 2), "a");
    }
}
