//! Who may invite, with Microsoft Graph's `allowInvitesFrom` values.

/// Nobody may invite, admins included (invitations only from the API and bulk later).
pub const NONE: &str = "none";
/// Admins and guest inviters.
pub const ADMINS_AND_GUEST_INVITERS: &str = "adminsAndGuestInviters";
/// Admins, guest inviters and every member (the default).
pub const ADMINS_GUEST_INVITERS_AND_ALL_MEMBERS: &str = "adminsGuestInvitersAndAllMembers";
/// Everyone, guests included.
pub const EVERYONE: &str = "everyone";
/// The default policy of a new organization.
pub const DEFAULT: &str = ADMINS_GUEST_INVITERS_AND_ALL_MEMBERS;
/// Every value, in the order of the settings page.
pub const ALL: [&str; 4] = [NONE, ADMINS_AND_GUEST_INVITERS, ADMINS_GUEST_INVITERS_AND_ALL_MEMBERS, EVERYONE];
