//! Validated value types and pure rules. Nothing here touches the database or the web.

pub mod email;
pub mod icon;
pub mod links;
pub mod oidc;
pub mod password;
pub mod policy;
pub mod redirect;
pub mod slug;
pub mod token;

pub use email::Email;
pub use slug::OrgSlug;

/// The two kinds of membership, as Microsoft Graph spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserType {
    Member,
    Guest,
}

impl UserType {
    /// The stored and API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            UserType::Member => "Member",
            UserType::Guest => "Guest",
        }
    }

    /// Parses the stored and API spelling.
    pub fn parse(s: &str) -> Option<UserType> {
        match s {
            "Member" => Some(UserType::Member),
            "Guest" => Some(UserType::Guest),
            _ => None,
        }
    }
}

/// Membership states, as Graph's `externalUserState` spells them.
pub mod state {
    /// Invited, consent not yet given: no rights at all.
    pub const PENDING: &str = "PendingAcceptance";
    /// Consent given.
    pub const ACCEPTED: &str = "Accepted";
}

/// Invitation statuses as stored.
pub mod invitation_status {
    pub const PENDING: &str = "pending";
    pub const ACCEPTED: &str = "accepted";
    pub const REVOKED: &str = "revoked";
    pub const EXPIRED: &str = "expired";
}

/// Membership roles as stored.
pub mod role {
    pub const ADMIN: &str = "admin";
    pub const GUEST_INVITER: &str = "guest_inviter";
    pub const NONE: &str = "none";
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
