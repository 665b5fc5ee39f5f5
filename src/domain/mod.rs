//! Validated value types and pure rules. Nothing here touches the database or the web.

pub mod email;
pub mod icon;
pub mod links;
pub mod password;
pub mod redirect;
pub mod slug;
pub mod states;
pub mod token;

pub use email::Email;
pub use slug::OrgSlug;
pub use states::{
    DomainMode, InvitationStatus, InvitePolicy, JobStatus, MembershipState, OutboxStatus, Role, RowStatus, UserType,
};

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
