//! `POST /api/v1.0/invitations` (Graph's `invitation`, with `Idempotency-Key`) and
//! `GET /api/v1.0/invitations/{id}`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::odata;
use super::{ApiError, Caller, authenticate, json, parse_object, read_body, refuse_unknown, request_id, respond, take};
use crate::db::models::{IdempotencyKey, Invitation, InvitationApiDetails};
use crate::domain::{Email, InvitationStatus};
use crate::i18n::Lang;
use crate::services::api_keys::Reservation;
use crate::services::invitations::{self, Channel, InviteInput, InviteOptions, Inviter};
use crate::services::{FieldErrors, ServiceError, api_keys, policy};
use crate::state::AppState;
use crate::web::with_conn;

/// Graph's `recipient`: `{"emailAddress": {"address": …, "name": …}}`.
#[derive(Debug, Clone)]
struct Recipient {
    address: String,
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
    sponsor_id: Option<String>,
}

/// Takes an object field (absent or null: None).
fn take_object(obj: &mut Map<String, Value>, name: &str, path: &str) -> Result<Option<Map<String, Value>>, ApiError> {
    take(obj, name, path)
}

/// Reads `ccRecipients`: Graph `recipient` objects, each with its `emailAddress`.
fn parse_recipients(list: Vec<Value>) -> Result<Vec<Recipient>, ApiError> {
    let path = "invitedUserMessageInfo.ccRecipients";
    let mut out = Vec::new();
    for item in list {
        let Value::Object(mut item) = item else {
            return Err(ApiError::bad_request(format!("'{path}' must hold recipient objects.")));
        };
        odata::take_type(&mut item, "microsoft.graph.recipient", path)?;
        let mut address = take_object(&mut item, "emailAddress", &format!("{path}.emailAddress"))?
            .ok_or_else(|| ApiError::bad_request(format!("'{path}.emailAddress' is required.")))?;
        refuse_unknown(&item, &format!("{path}."))?;
        let apath = format!("{path}.emailAddress");
        odata::take_type(&mut address, "microsoft.graph.emailAddress", &apath)?;
        let addr: Option<String> = take(&mut address, "address", &format!("{apath}.address"))?;
        let name: Option<String> = take(&mut address, "name", &format!("{apath}.name"))?;
        refuse_unknown(&address, &format!("{apath}."))?;
        match addr {
            // Graph's own answers carry a recipient with a null address when there is none;
            // a script that sends such an answer back means "no copy".
            None if name.is_none() => {}
            None => return Err(ApiError::bad_request(format!("'{apath}.address' is required."))),
            Some(address) => out.push(Recipient { address, name }),
        }
    }
    Ok(out)
}

/// Reads `invitedUserSponsors` (v1.0): directory objects, of which Vestibule keeps one sponsor.
fn parse_sponsors(list: Vec<Value>) -> Result<Option<String>, ApiError> {
    let path = "invitedUserSponsors";
    if list.len() > 1 {
        return Err(ApiError::bad_request(
            "'invitedUserSponsors' may hold one sponsor: in Vestibule each person has one sponsor, an active member of the organization.",
        ));
    }
    let Some(item) = list.into_iter().next() else { return Ok(None) };
    let Value::Object(mut item) = item else {
        return Err(ApiError::bad_request(format!("'{path}' must hold objects with an 'id'.")));
    };
    // A sponsor is a user; Graph also takes a group, which Vestibule cannot sponsor with.
    if item
        .get("@odata.type")
        .and_then(Value::as_str)
        .is_some_and(|t| t.trim_start_matches('#').eq_ignore_ascii_case("microsoft.graph.directoryObject"))
    {
        item.remove("@odata.type");
    }
    odata::take_type(&mut item, "microsoft.graph.user", path)?;
    let id: Option<String> = take(&mut item, "id", &format!("{path}.id"))?;
    refuse_unknown(&item, &format!("{path}."))?;
    let id = id
        .filter(|i| !i.is_empty() && i.len() <= 64)
        .ok_or_else(|| ApiError::bad_request(format!("'{path}.id' is required: the user id of the sponsor.")))?;
    Ok(Some(id))
}

/// Reads the body field by field, so that each problem names its field. `@odata.type` is
/// accepted where Graph's SDKs write it, and must then name the right type.
fn parse_request(body: &[u8]) -> Result<CreateRequest, ApiError> {
    let mut obj = parse_object(body)?;
    odata::take_type(&mut obj, "microsoft.graph.invitation", "")?;
    let email: Option<String> = take(&mut obj, "invitedUserEmailAddress", "invitedUserEmailAddress")?;
    let redirect: Option<String> = take(&mut obj, "inviteRedirectUrl", "inviteRedirectUrl")?;
    let display_name = take(&mut obj, "invitedUserDisplayName", "invitedUserDisplayName")?;
    let send = take(&mut obj, "sendInvitationMessage", "sendInvitationMessage")?.unwrap_or(false);
    let user_type: Option<String> = take(&mut obj, "invitedUserType", "invitedUserType")?;
    let info = take_object(&mut obj, "invitedUserMessageInfo", "invitedUserMessageInfo")?;
    let reset = take(&mut obj, "resetRedemption", "resetRedemption")?.unwrap_or(false);
    let invited_user = take_object(&mut obj, "invitedUser", "invitedUser")?;
    let sponsors: Option<Vec<Value>> = take(&mut obj, "invitedUserSponsors", "invitedUserSponsors")?;
    refuse_unknown(&obj, "")?;
    // Graph reads the user type in any case ("guest", "MEMBER").
    let user_type = user_type.map(|t| match t.to_ascii_lowercase().as_str() {
        "guest" => "Guest".to_owned(),
        "member" => "Member".to_owned(),
        _ => t,
    });
    let mut req = CreateRequest { display_name, send, user_type, reset, ..CreateRequest::default() };
    if let Some(mut info) = info {
        odata::take_type(&mut info, "microsoft.graph.invitedUserMessageInfo", "invitedUserMessageInfo")?;
        req.message = take(&mut info, "customizedMessageBody", "invitedUserMessageInfo.customizedMessageBody")?;
        req.language = take(&mut info, "messageLanguage", "invitedUserMessageInfo.messageLanguage")?;
        let cc: Option<Vec<Value>> = take(&mut info, "ccRecipients", "invitedUserMessageInfo.ccRecipients")?;
        refuse_unknown(&info, "invitedUserMessageInfo.")?;
        req.cc = parse_recipients(cc.unwrap_or_default())?;
    }
    if req
        .language
        .as_ref()
        .is_some_and(|l| l.len() > 35 || l.chars().any(|c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')))
    {
        return Err(ApiError::bad_request(
            "'invitedUserMessageInfo.messageLanguage' must be a language tag such as 'fr-FR'.",
        ));
    }
    if req.cc.len() > 1 {
        return Err(ApiError::bad_request("'invitedUserMessageInfo.ccRecipients' may hold at most one recipient."));
    }
    if let Some(cc) = req.cc.first() {
        if Email::parse(&cc.address).is_err() {
            return Err(ApiError::bad_request(
                "'invitedUserMessageInfo.ccRecipients.emailAddress.address' is not a valid email address.",
            ));
        }
        if cc.name.as_ref().is_some_and(|n| n.chars().count() > 200) {
            return Err(ApiError::bad_request(
                "'invitedUserMessageInfo.ccRecipients.emailAddress.name' is longer than 200 characters.",
            ));
        }
    }
    if let Some(mut user) = invited_user {
        odata::take_type(&mut user, "microsoft.graph.user", "invitedUser")?;
        req.invited_user_id = take(&mut user, "id", "invitedUser.id")?;
        refuse_unknown(&user, "invitedUser.")?;
    }
    req.sponsor_id = parse_sponsors(sponsors.unwrap_or_default())?;
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
        "sponsor" => "invitedUserSponsors",
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

/// The Graph `invitation` object of a stored invitation, with what the client sent beyond
/// the invitation row (its language tag as written, its CC recipient, its sponsor).
fn invitation_json(
    base: &str,
    inv: &Invitation,
    redeem_url: Option<&str>,
    details: Option<&InvitationApiDetails>,
) -> Value {
    // Without a details row (an invitation made in the console), the stored name stands.
    let display_name = match details {
        Some(d) => d.display_name.clone(),
        None => Some(inv.display_name.clone()),
    };
    let details = details.cloned().unwrap_or_default();
    // Graph answers a recipient with null fields when there is no copy (learn.microsoft.com/graph/api/invitation-post).
    let cc = serde_json::json!([{ "emailAddress": { "name": details.cc_name, "address": details.cc_address } }]);
    let mut value = serde_json::json!({
        "@odata.context": format!("{base}/api/v1.0/$metadata#invitations/$entity"),
        "id": inv.id,
        "invitedUserEmailAddress": inv.email,
        "invitedUserDisplayName": display_name,
        "invitedUserType": inv.user_type,
        "inviteRedirectUrl": inv.redirect_url,
        "inviteRedeemUrl": redeem_url,
        "sendInvitationMessage": inv.send_email,
        "resetRedemption": inv.reset,
        "status": graph_status(inv),
        "invitedUserMessageInfo": {
            "customizedMessageBody": inv.message,
            "messageLanguage": details.message_language.or_else(|| inv.language.clone()),
            "ccRecipients": cc,
        },
        "invitedUser": { "id": inv.membership_id, "userPrincipalName": inv.email },
    });
    if let Some(sponsor) = details.sponsor_id {
        value["invitedUserSponsors"] = serde_json::json!([{ "id": sponsor }]);
    }
    value
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
    let details = InvitationApiDetails {
        invitation_id: String::new(),
        display_name: r.display_name.clone(),
        message_language: r.language.clone(),
        cc_address: r.cc.first().map(|c| c.address.clone()),
        cc_name: r.cc.first().and_then(|c| c.name.clone()),
        sponsor_id: r.sponsor_id.clone(),
    };
    let opts = InviteOptions {
        rate_limit: state.settings.throttle_enabled,
        resend_existing: true,
        cc: r.cc.first().map(|c| (c.address.clone(), c.name.clone())),
        reset_membership: r.invited_user_id.clone().filter(|_| r.reset),
        sponsor: r.sponsor_id.clone(),
        api_details: Some(details.clone()),
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
    Ok(invitation_json(&state.settings.base_url(), &inv, redeem_url.as_deref(), Some(&details)))
}

/// `GET /api/v1.0/invitations/{id}`: never shows the redeem link again.
pub async fn get(req: HttpRequest, state: web::Data<AppState>, id: web::Path<String>) -> HttpResponse {
    let result = async {
        let caller = authenticate(&req, &state).await?;
        let (org_id, id) = (caller.org.id.clone(), id.into_inner());
        let (inv, details) = with_conn(&state, move |c| {
            let Some(inv) = invitations::find_in_org(c, &org_id, &id)? else { return Ok(None) };
            let details = invitations::api_details(c, &inv.id)?;
            Ok(Some((inv, details)))
        })
        .await?
        .ok_or_else(ApiError::not_found)?;
        let base = state.settings.base_url();
        Ok(json(StatusCode::OK, &invitation_json(&base, &inv, None, details.as_ref())))
    }
    .await;
    respond(&req, result)
}
