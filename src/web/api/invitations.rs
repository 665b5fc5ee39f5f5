//! `POST /api/v1.0/invitations` (Graph's `invitation`, with `Idempotency-Key`) and
//! `GET /api/v1.0/invitations/{id}`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{ApiError, Caller, authenticate, json, parse_object, read_body, refuse_unknown, request_id, respond, take};
use crate::db::models::{IdempotencyKey, Invitation};
use crate::domain::{Email, InvitationStatus};
use crate::i18n::Lang;
use crate::services::api_keys::Reservation;
use crate::services::invitations::{self, Channel, InviteInput, InviteOptions, Inviter};
use crate::services::{FieldErrors, ServiceError, api_keys, policy};
use crate::state::AppState;
use crate::web::with_conn;

/// Graph's `recipient`: `{"emailAddress": {"address": …, "name": …}}`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Recipient {
    #[serde(rename = "emailAddress")]
    email_address: EmailAddress,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct EmailAddress {
    address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

/// The request as sent, field by field.
#[derive(Debug, Default)]
struct CreateRequest {
    email: String,
    redirect_url: String,
    display_name: Option<String>,
    send: bool,
    user_type: Option<String>,
    message: Option<String>,
    language: Option<String>,
    cc: Vec<Recipient>,
    reset: bool,
    invited_user_id: Option<String>,
}

/// Reads the body field by field, so that each problem names its field.
fn parse_request(body: &[u8]) -> Result<CreateRequest, ApiError> {
    let mut obj = parse_object(body)?;
    let email: Option<String> = take(&mut obj, "invitedUserEmailAddress", "invitedUserEmailAddress")?;
    let redirect: Option<String> = take(&mut obj, "inviteRedirectUrl", "inviteRedirectUrl")?;
    let display_name = take(&mut obj, "invitedUserDisplayName", "invitedUserDisplayName")?;
    let send = take(&mut obj, "sendInvitationMessage", "sendInvitationMessage")?.unwrap_or(false);
    let user_type = take(&mut obj, "invitedUserType", "invitedUserType")?;
    let info: Option<Map<String, Value>> = take(&mut obj, "invitedUserMessageInfo", "invitedUserMessageInfo")?;
    let reset = take(&mut obj, "resetRedemption", "resetRedemption")?.unwrap_or(false);
    let invited_user: Option<Map<String, Value>> = take(&mut obj, "invitedUser", "invitedUser")?;
    refuse_unknown(&obj, "")?;
    let mut req = CreateRequest { display_name, send, user_type, reset, ..CreateRequest::default() };
    if let Some(mut info) = info {
        req.message = take(&mut info, "customizedMessageBody", "invitedUserMessageInfo.customizedMessageBody")?;
        req.language = take(&mut info, "messageLanguage", "invitedUserMessageInfo.messageLanguage")?;
        req.cc = take(&mut info, "ccRecipients", "invitedUserMessageInfo.ccRecipients")?.unwrap_or_default();
        refuse_unknown(&info, "invitedUserMessageInfo.")?;
    }
    if req.cc.len() > 1 {
        return Err(ApiError::bad_request("'invitedUserMessageInfo.ccRecipients' may hold at most one recipient."));
    }
    if let Some(cc) = req.cc.first()
        && Email::parse(&cc.email_address.address).is_err()
    {
        return Err(ApiError::bad_request(
            "'invitedUserMessageInfo.ccRecipients.emailAddress.address' is not a valid email address.",
        ));
    }
    if let Some(mut user) = invited_user {
        req.invited_user_id = take(&mut user, "id", "invitedUser.id")?;
        refuse_unknown(&user, "invitedUser.")?;
    }
    req.email = email.ok_or_else(|| ApiError::bad_request("'invitedUserEmailAddress' is required."))?;
    req.redirect_url = redirect.ok_or_else(|| ApiError::bad_request("'inviteRedirectUrl' is required."))?;
    if req.reset && req.invited_user_id.is_none() {
        return Err(ApiError::bad_request("'invitedUser.id' is required when 'resetRedemption' is true."));
    }
    if !req.reset && req.invited_user_id.is_some() {
        return Err(ApiError::bad_request("'invitedUser' is accepted only with 'resetRedemption': true."));
    }
    Ok(req)
}

/// The API's name of a field of the invite form.
fn api_field(field: &str) -> &'static str {
    match field {
        "email" => "invitedUserEmailAddress",
        "display_name" => "invitedUserDisplayName",
        "message" => "invitedUserMessageInfo.customizedMessageBody",
        "redirect_url" => "inviteRedirectUrl",
        "user_type" => "invitedUserType",
        _ => "invitedUser",
    }
}

/// 400 naming the first field problem, in English.
fn invalid(errors: &FieldErrors) -> ApiError {
    match errors.0.first() {
        Some((field, key)) => ApiError::bad_request(format!("'{}': {}", api_field(field), Lang::En.tr().t(key))),
        None => ApiError::bad_request("The request is not valid."),
    }
}

fn service_error(e: ServiceError) -> ApiError {
    match e {
        ServiceError::Invalid(errors) => invalid(&errors),
        ServiceError::WrongState => {
            ApiError::bad_request("'invitedUser.id': only a person who accepted an invitation can be reset.")
        }
        ServiceError::NotFound => ApiError::not_found(),
        ServiceError::Forbidden => ApiError::forbidden(
            "An API key cannot reset its creator's redemption nor an admin's; an admin can, from the console.",
        ),
        other => crate::error::AppError::from(other).into(),
    }
}

/// Graph's `status` of an invitation (plus `Revoked` and `Expired`, which Graph never shows).
fn graph_status(inv: &Invitation) -> &'static str {
    match inv.status {
        InvitationStatus::Pending if inv.expires_at > crate::db::now() => "PendingAcceptance",
        InvitationStatus::Pending | InvitationStatus::Expired => "Expired",
        InvitationStatus::Accepted => "Completed",
        _ => "Revoked",
    }
}

/// The Graph `invitation` object of a stored invitation.
fn invitation_json(inv: &Invitation, redeem_url: Option<&str>, language: Option<&str>, cc: &[Recipient]) -> Value {
    serde_json::json!({
        "id": inv.id,
        "invitedUserEmailAddress": inv.email,
        "invitedUserDisplayName": inv.display_name,
        "invitedUserType": inv.user_type,
        "inviteRedirectUrl": inv.redirect_url,
        "inviteRedeemUrl": redeem_url,
        "sendInvitationMessage": inv.send_email,
        "resetRedemption": inv.reset,
        "status": graph_status(inv),
        "invitedUserMessageInfo": {
            "customizedMessageBody": inv.message,
            "messageLanguage": language.map(str::to_owned).or_else(|| inv.language.clone()),
            "ccRecipients": cc,
        },
        "invitedUser": { "id": inv.membership_id },
    })
}

/// `POST /api/v1.0/invitations`.
pub async fn create(req: HttpRequest, state: web::Data<AppState>, payload: web::Payload) -> HttpResponse {
    let result = create_replayable(&req, &state, payload).await;
    respond(&req, result)
}

/// The idempotency layer: the first answer to a key is stored (without the redeem link) and
/// replayed for 24 hours; the same key with another body is refused with 422.
async fn create_replayable(
    req: &HttpRequest,
    state: &web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let caller = authenticate(req, state).await?;
    let body = read_body(req, payload).await?;
    let idem = match req.headers().get("idempotency-key") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .map(str::trim)
                .filter(|k| !k.is_empty() && k.len() <= 255)
                .map(str::to_owned)
                .ok_or_else(|| ApiError::bad_request("'Idempotency-Key' must be 1 to 255 visible ASCII characters."))?,
        ),
    };
    let hash: String = Sha256::digest(&body).iter().map(|b| format!("{b:02x}")).collect();
    if let Some(k) = &idem {
        // Reserve the key before acting: of concurrent twins one acts, the others wait for its
        // answer (a short while) and replay it.
        let deadline = tokio::time::Instant::now() + IDEMPOTENCY_WAIT;
        loop {
            let (org_id, key_id, k2, h2) = (caller.org.id.clone(), caller.key.id.clone(), k.clone(), hash.clone());
            let found = with_conn(state, move |c| Ok(api_keys::reserve_answer(c, &org_id, &key_id, &k2, &h2)?)).await?;
            match found {
                Reservation::Reserved => break,
                Reservation::Answered(first) if first.request_hash == hash => return Ok(replay(&first)),
                Reservation::Answered(_) | Reservation::InProgress { same_body: false } => {
                    return Err(ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "IdempotencyKeyReused",
                        "This Idempotency-Key was already used with a different request body.",
                    ));
                }
                Reservation::InProgress { same_body: true } if tokio::time::Instant::now() >= deadline => {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        "IdempotencyKeyInUse",
                        "A request with this Idempotency-Key is still being processed; retry later.",
                    ));
                }
                Reservation::InProgress { same_body: true } => tokio::time::sleep(IDEMPOTENCY_POLL).await,
            }
        }
    }
    let (status, mut value) = match create_invitation(req, state, &caller, &body).await {
        Ok(v) => (StatusCode::CREATED, v),
        Err(e) => {
            let storable = e.status.is_client_error() && e.status != StatusCode::TOO_MANY_REQUESTS;
            if let Some(k) = idem.clone().filter(|_| !storable) {
                // Nothing to replay: give the key back so that a retry can act.
                let key_id = caller.key.id.clone();
                with_conn(state, move |c| Ok(api_keys::release_answer(c, &key_id, &k)?)).await?;
            }
            if idem.is_none() || !storable {
                return Err(e);
            }
            (e.status, e.body(&request_id(req)))
        }
    };
    let res = json(status, &value);
    if let Some(k) = idem {
        // The redeem link is a secret shown once: it is never stored, so a replay shows null.
        if let Some(url) = value.get_mut("inviteRedeemUrl") {
            *url = Value::Null;
        }
        let answer = IdempotencyKey {
            org_id: caller.org.id.clone(),
            api_key_id: caller.key.id.clone(),
            key: k,
            request_hash: hash,
            status: i64::from(status.as_u16()),
            response_body: value.to_string(),
            created_at: crate::db::now(),
        };
        with_conn(state, move |c| Ok(api_keys::store_answer(c, &answer)?)).await?;
    }
    Ok(res)
}

/// How long a request waits for a concurrent twin (same key, same body) to answer, and how
/// often it looks.
const IDEMPOTENCY_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
const IDEMPOTENCY_POLL: std::time::Duration = std::time::Duration::from_millis(50);

/// The stored first answer, replayed.
fn replay(first: &IdempotencyKey) -> HttpResponse {
    let status = StatusCode::from_u16(first.status as u16).unwrap_or(StatusCode::OK);
    let mut res = json(status, &serde_json::from_str(&first.response_body).unwrap_or(Value::Null));
    res.headers_mut().insert(
        actix_web::http::header::HeaderName::from_static("idempotent-replayed"),
        actix_web::http::header::HeaderValue::from_static("true"),
    );
    res
}

/// Policy, validation, rate, then the invitation (or the reset).
async fn create_invitation(
    req: &HttpRequest,
    state: &web::Data<AppState>,
    caller: &Caller,
    body: &[u8],
) -> Result<Value, ApiError> {
    let r = parse_request(body)?;
    if r.redirect_url.trim().is_empty() {
        return Err(ApiError::bad_request("'inviteRedirectUrl' is required."));
    }
    let input = InviteInput {
        email: r.email.clone(),
        display_name: r.display_name.clone().unwrap_or_default(),
        message: r.message.clone().unwrap_or_default(),
        redirect_url: r.redirect_url.clone(),
        user_type: r.user_type.clone().unwrap_or_default(),
        send_email: r.send || r.reset,
        language: r.language.as_deref().and_then(Lang::parse),
        group_ids: Vec::new(),
        app_id: None,
    };
    let opts = InviteOptions {
        rate_limit: state.settings.throttle_enabled,
        resend_existing: true,
        cc: r.cc.first().map(|c| (c.email_address.address.clone(), c.email_address.name.clone())),
        reset_membership: r.invited_user_id.clone().filter(|_| r.reset),
    };
    let actor = caller.actor(req);
    let (org, member, public_url) = (caller.org.clone(), caller.member.clone(), state.settings.public_url.clone());
    let outcome = with_conn(state, move |c| {
        let inviter = Inviter { org: &org, membership: &member, actor: &actor };
        Ok(invitations::invite(c, &public_url, inviter, Channel::Api, input, &opts))
    })
    .await?;
    let (inv, redeem_url) = match outcome {
        Ok(created) => (created.invitation, created.redeem_url),
        Err(ServiceError::Forbidden) if !policy::may_invite(&caller.org, &caller.member) => {
            return Err(ApiError::forbidden("The organization's collaboration policy does not allow invitations."));
        }
        Err(ServiceError::Invalid(e)) => return Err(invalid(&e)),
        Err(ServiceError::RateLimited(wait)) => {
            return Err(ApiError::too_many(
                wait,
                "The key's inviter reached the organization's hourly invitation limit.",
            ));
        }
        Err(e) => return Err(service_error(e)),
    };
    Ok(invitation_json(&inv, redeem_url.as_deref(), r.language.as_deref(), &r.cc))
}

/// `GET /api/v1.0/invitations/{id}`: never shows the redeem link again.
pub async fn get(req: HttpRequest, state: web::Data<AppState>, id: web::Path<String>) -> HttpResponse {
    let result = async {
        let caller = authenticate(&req, &state).await?;
        let (org_id, id) = (caller.org.id.clone(), id.into_inner());
        let inv = with_conn(&state, move |c| Ok(invitations::find_in_org(c, &org_id, &id)?))
            .await?
            .ok_or_else(ApiError::not_found)?;
        Ok(json(StatusCode::OK, &invitation_json(&inv, None, None, &[])))
    }
    .await;
    respond(&req, result)
}
