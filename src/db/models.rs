//! Rows as read from and written to the tables.

use diesel::prelude::*;
use time::PrimitiveDateTime;

use super::schema::*;
use crate::domain::{
    DomainMode, InvitationStatus, InvitePolicy, JobStatus, MembershipState, MfaPolicy, OutboxStatus, Role, RowStatus,
    UserType,
};

/// An organization (tenant) and its settings.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = organizations)]
pub struct Organization {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub privacy_url: Option<String>,
    pub default_language: String,
    pub invite_lifetime_days: i64,
    pub redirect_allowlist: String,
    pub created_at: PrimitiveDateTime,
    /// Who may invite (Graph's `allowInvitesFrom` values).
    pub invite_policy: InvitePolicy,
    pub domain_mode: DomainMode,
    /// Domains of the allow- or deny-list, one per line.
    pub domain_list: String,
    /// Invitations one inviter may send per hour.
    pub invites_per_hour: i64,
    /// Guest access ends this many days after redemption (None: no end).
    pub guest_access_days: Option<i64>,
    /// Guests may sign in with a one-time code sent by email (design §10; on by default).
    pub email_codes: bool,
    /// Who must have a second factor (issue 10).
    pub mfa_policy: MfaPolicy,
}

impl Organization {
    /// True when the person with `role` must have a second factor here.
    pub fn requires_second_factor(&self, role: Role) -> bool {
        match self.mfa_policy {
            MfaPolicy::Nobody => false,
            MfaPolicy::Admins => role == Role::Admin,
            MfaPolicy::Everyone => true,
        }
    }

    /// Entries of the redirect allow-list, one origin per line.
    pub fn allowed_origins(&self) -> Vec<&str> {
        self.redirect_allowlist.lines().map(str::trim).filter(|l| !l.is_empty()).collect()
    }
}

/// A global account, keyed by canonical email. `password_hash` is `None` until the person
/// registers (an invitation creates the row first).
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = users)]
pub struct User {
    pub id: String,
    pub email: String,
    pub display_name: String,
    pub name_search: String,
    pub password_hash: Option<String>,
    pub email_verified: bool,
    pub language: Option<String>,
    pub created_at: PrimitiveDateTime,
}

/// A person's place in one organization.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = memberships)]
pub struct Membership {
    pub id: String,
    pub org_id: String,
    pub user_id: String,
    pub user_type: UserType,
    pub role: Role,
    pub state: MembershipState,
    pub blocked: bool,
    pub invited_by: Option<String>,
    pub accepted_at: Option<PrimitiveDateTime>,
    pub removed_at: Option<PrimitiveDateTime>,
    pub created_at: PrimitiveDateTime,
    /// Who answers for this guest (the inviter unless reassigned).
    pub sponsor_id: Option<String>,
    /// When access ends (the membership is then blocked).
    pub access_ends_at: Option<PrimitiveDateTime>,
    /// When the sponsor was reminded of the end date.
    pub end_reminder_sent_at: Option<PrimitiveDateTime>,
    /// When the person left by themselves.
    pub left_at: Option<PrimitiveDateTime>,
}

/// An invitation; only the SHA-256 of its token is stored.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = invitations)]
pub struct Invitation {
    pub id: String,
    pub org_id: String,
    pub membership_id: String,
    pub email: String,
    pub display_name: String,
    pub message: Option<String>,
    pub redirect_url: Option<String>,
    pub user_type: UserType,
    pub language: Option<String>,
    pub token_hash: String,
    pub status: InvitationStatus,
    pub disclosed: bool,
    pub send_email: bool,
    pub invited_by: Option<String>,
    pub code_hash: Option<String>,
    pub code_expires_at: Option<PrimitiveDateTime>,
    pub code_attempts: i64,
    pub created_at: PrimitiveDateTime,
    pub expires_at: PrimitiveDateTime,
    pub accepted_at: Option<PrimitiveDateTime>,
    pub revoked_at: Option<PrimitiveDateTime>,
    /// Groups the guest joins on redemption, comma-separated ids.
    pub group_ids: String,
    /// App the guest is assigned to and lands on.
    pub app_id: Option<String>,
    /// True for an "invite with reset" of an accepted guest.
    pub reset: bool,
}

/// A queued, sent or failed email.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = outbox)]
pub struct OutboxMessage {
    pub id: String,
    pub kind: String,
    pub org_id: Option<String>,
    pub invitation_id: Option<String>,
    pub recipient: String,
    pub from_name: String,
    pub reply_to: Option<String>,
    pub subject: String,
    pub body_text: Option<String>,
    pub body_html: Option<String>,
    pub message_id: String,
    pub status: OutboxStatus,
    pub attempts: i64,
    pub next_attempt_at: PrimitiveDateTime,
    pub lease_until: Option<PrimitiveDateTime>,
    pub last_error: Option<String>,
    pub created_at: PrimitiveDateTime,
    pub sent_at: Option<PrimitiveDateTime>,
}

/// One append-only audit record.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = audit_events)]
pub struct AuditEvent {
    pub id: String,
    pub org_id: Option<String>,
    pub actor_id: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub detail: Option<String>,
    pub client_ip: Option<String>,
    pub request_id: Option<String>,
    pub created_at: PrimitiveDateTime,
}

/// A server-side session row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = sessions)]
pub struct SessionRow {
    pub id_hash: String,
    pub user_id: Option<String>,
    pub state: String,
    pub created_at: PrimitiveDateTime,
    pub expires_at: PrimitiveDateTime,
    pub user_agent: Option<String>,
    pub client_ip: Option<String>,
}

/// A one-time link (first-run setup, choose-a-password).
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = one_time_links)]
pub struct OneTimeLink {
    pub token_hash: String,
    pub purpose: String,
    pub user_id: Option<String>,
    pub expires_at: PrimitiveDateTime,
    pub used_at: Option<PrimitiveDateTime>,
    pub created_at: PrimitiveDateTime,
}

/// A group of people in an organization.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = org_groups)]
pub struct Group {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub description: String,
    pub created_at: PrimitiveDateTime,
}

/// A membership's place in a group.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = group_members)]
pub struct GroupMember {
    pub group_id: String,
    pub membership_id: String,
    pub is_owner: bool,
    pub created_at: PrimitiveDateTime,
}

/// An application people of the org may use.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = apps)]
pub struct App {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub url: String,
    pub description: String,
    pub icon: Option<Vec<u8>>,
    pub icon_type: Option<String>,
    pub created_at: PrimitiveDateTime,
}

/// An app given to a person (membership) or to a group.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = app_assignments)]
pub struct AppAssignment {
    pub id: String,
    pub app_id: String,
    pub membership_id: Option<String>,
    pub group_id: Option<String>,
    pub created_at: PrimitiveDateTime,
}

/// A key for the JSON API; only the SHA-256 of the key is stored.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = api_keys)]
pub struct ApiKey {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub key_hash: String,
    /// The first characters of the key, shown in lists to tell keys apart.
    pub prefix: String,
    /// The admin whose rights and invitation rate the key uses.
    pub created_by: String,
    pub created_at: PrimitiveDateTime,
    pub expires_at: Option<PrimitiveDateTime>,
    pub last_used_at: Option<PrimitiveDateTime>,
    pub revoked_at: Option<PrimitiveDateTime>,
}

/// The first answer to an API request sent with an `Idempotency-Key`, replayed for 24 hours.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = idempotency_keys)]
pub struct IdempotencyKey {
    pub org_id: String,
    pub api_key_id: String,
    pub key: String,
    pub request_hash: String,
    pub status: i64,
    pub response_body: String,
    pub created_at: PrimitiveDateTime,
}

/// A bulk invitation job: one uploaded CSV file, previewed, then processed in batches.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = bulk_jobs)]
pub struct BulkJob {
    pub id: String,
    pub org_id: String,
    pub created_by: String,
    /// `previewed`, `queued`, `running`, `done`, `failed` or `cancelled`.
    pub status: JobStatus,
    pub file_name: String,
    /// Data rows in the file.
    pub total: i64,
    pub valid_rows: i64,
    pub invalid_rows: i64,
    pub duplicate_rows: i64,
    /// Valid rows handled so far (saved with each batch).
    pub processed: i64,
    /// Rows that ended with an invitation (new or already pending).
    pub succeeded: i64,
    /// Of `succeeded`, rows whose address already had a pending invitation.
    pub existing: i64,
    pub failed: i64,
    /// Why the whole job failed, when it did.
    pub error: Option<String>,
    pub created_at: PrimitiveDateTime,
    pub started_at: Option<PrimitiveDateTime>,
    pub finished_at: Option<PrimitiveDateTime>,
    /// The worker holding the job, until `lease_until`.
    pub lease_owner: Option<String>,
    pub lease_until: Option<PrimitiveDateTime>,
}

/// One data line of a bulk file, as validated and then as processed.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = bulk_rows)]
pub struct BulkRow {
    pub job_id: String,
    /// Line of the file where the record starts (1 is `version:v1.0`).
    pub line_no: i64,
    pub email: String,
    pub display_name: String,
    pub redirect_url: String,
    pub send_email: bool,
    pub message: String,
    /// Group ids, comma-separated.
    pub groups: String,
    pub language: Option<String>,
    /// `valid`, `invalid`, `duplicate`, `created` or `failed`.
    pub status: RowStatus,
    /// Catalogue key of the problem (or `bulk.reason_existing`).
    pub reason: Option<String>,
    pub invitation_id: Option<String>,
}

/// A signing key of the OpenID Connect provider (the private key never leaves the database
/// except to sign; it is never logged nor shown).
#[derive(Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = oidc_keys)]
pub struct OidcKey {
    pub kid: String,
    /// PKCS#1 DER, base64.
    pub private_key: String,
    pub public_jwk: String,
    pub created_at: PrimitiveDateTime,
    pub retired_at: Option<PrimitiveDateTime>,
    pub publish_until: Option<PrimitiveDateTime>,
}

impl std::fmt::Debug for OidcKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcKey").field("kid", &self.kid).field("private_key", &"[redacted]").finish()
    }
}

/// An app's OpenID Connect client settings.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = oidc_clients)]
pub struct OidcClient {
    pub app_id: String,
    pub org_id: String,
    pub client_id: String,
    /// SHA-256 of the secret; `None` for a public client.
    pub secret_hash: Option<String>,
    pub public_client: bool,
    /// One exact URI per line.
    pub redirect_uris: String,
    /// One exact URI per line.
    pub post_logout_redirect_uris: String,
    pub initiate_login_uri: Option<String>,
    /// Seconds.
    pub access_token_ttl: i64,
    /// Seconds.
    pub id_token_ttl: i64,
    /// Seconds.
    pub refresh_token_ttl: i64,
    pub failed_auths: i64,
    pub failed_auths_since: Option<PrimitiveDateTime>,
    pub created_at: PrimitiveDateTime,
    pub secret_rotated_at: Option<PrimitiveDateTime>,
}

/// An authorization code (only its SHA-256 is stored).
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = oidc_codes)]
pub struct OidcCode {
    pub code_hash: String,
    pub grant_id: String,
    pub app_id: String,
    pub org_id: String,
    pub membership_id: String,
    pub user_id: String,
    pub redirect_uri: String,
    pub code_challenge: Option<String>,
    pub nonce: Option<String>,
    pub scope: String,
    pub auth_time: PrimitiveDateTime,
    pub expires_at: PrimitiveDateTime,
    pub used_at: Option<PrimitiveDateTime>,
    pub created_at: PrimitiveDateTime,
    /// How the person signed in (`amr` values, space-separated).
    pub amr: Option<String>,
}

/// An access or refresh token (only its SHA-256 is stored).
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = oidc_tokens)]
pub struct OidcToken {
    pub token_hash: String,
    pub kind: String,
    pub grant_id: String,
    pub app_id: String,
    pub org_id: String,
    pub membership_id: String,
    pub user_id: String,
    pub scope: String,
    pub auth_time: PrimitiveDateTime,
    pub expires_at: PrimitiveDateTime,
    pub used_at: Option<PrimitiveDateTime>,
    pub revoked_at: Option<PrimitiveDateTime>,
    pub created_at: PrimitiveDateTime,
    /// How the person signed in (`amr` values, space-separated).
    pub amr: Option<String>,
}

/// A one-time sign-in code sent to an address (only its hash is kept).
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = signin_codes)]
pub struct SigninCode {
    /// Canonical address the code was sent to.
    pub email: String,
    /// SHA-256 of `email:code`.
    pub code_hash: String,
    pub expires_at: PrimitiveDateTime,
    /// Guesses made so far (at most five are ever compared).
    pub attempts: i64,
    pub created_at: PrimitiveDateTime,
}

/// What a JSON API client sent with an invitation beyond the invitation row, answered back as
/// given by `GET /api/v1.0/invitations/{id}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = invitation_api_details)]
pub struct InvitationApiDetails {
    pub invitation_id: String,
    pub display_name: Option<String>,
    pub message_language: Option<String>,
    pub cc_address: Option<String>,
    pub cc_name: Option<String>,
    pub sponsor_id: Option<String>,
}

/// An identity provider of an organization (federation, design §10). `client_secret` is sealed
/// (see `services::idp::secret`), never the plain secret.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = idp_providers)]
pub struct IdpProvider {
    pub id: String,
    pub org_id: String,
    pub name: String,
    /// `generic`, `entra` or `google` (how the issuer is checked).
    pub kind: String,
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// Scopes asked besides `openid email profile`, space-separated.
    pub extra_scopes: String,
    /// The provider's `email` claim is taken as verified even without `email_verified`.
    pub trust_email: bool,
    pub created_at: PrimitiveDateTime,
}

/// An email domain a provider serves.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = idp_domains)]
pub struct IdpDomain {
    pub idp_id: String,
    pub domain: String,
}

/// An account bound to an identity at a provider.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = idp_bindings)]
pub struct IdpBinding {
    pub issuer: String,
    pub subject: String,
    pub user_id: String,
    pub provider_name: String,
    pub created_at: PrimitiveDateTime,
}

/// An authorization request waiting for the provider's answer (single use).
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = idp_requests)]
pub struct IdpRequest {
    pub state_hash: String,
    pub idp_id: String,
    pub nonce: String,
    pub pkce_verifier: String,
    /// `signin` or `redeem`.
    pub purpose: String,
    pub invitation_id: Option<String>,
    /// Where the browser goes once signed in (sealed: a redemption path holds the link's token).
    pub target: String,
    pub expires_at: PrimitiveDateTime,
    pub created_at: PrimitiveDateTime,
}

/// A person's TOTP second factor (unconfirmed while enrolment waits for the first code).
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = second_factors)]
pub struct SecondFactor {
    pub user_id: String,
    /// The shared secret, base32 (RFC 4648, no padding).
    pub secret: String,
    pub confirmed_at: Option<PrimitiveDateTime>,
    /// The last TOTP time step accepted (a code is never accepted twice).
    pub last_step: Option<i64>,
    pub created_at: PrimitiveDateTime,
}

/// A single-use recovery code (only its SHA-256 is kept).
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = recovery_codes)]
pub struct RecoveryCode {
    pub code_hash: String,
    pub user_id: String,
    pub used_at: Option<PrimitiveDateTime>,
    pub created_at: PrimitiveDateTime,
}
