//! `GET /api/v1.0/users` (`$filter`, `$top`, `$skiptoken`), `GET` and `DELETE /api/v1.0/users/{id}`.
//! A user's `id` is the id of their membership in the key's organization.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use super::{ApiError, authenticate, json, respond, rfc3339};
use crate::db::models::{Membership, User};
use crate::domain::MembershipState;
use crate::services::directory::{self, DirectoryFilter};
use crate::services::{ServiceError, users};
use crate::state::AppState;
use crate::web::with_conn;

/// Default and largest page sizes.
const DEFAULT_TOP: i64 = 100;
const MAX_TOP: i64 = 999;

/// The Graph `user` object of a membership.
fn user_json(m: &Membership, u: &User) -> Value {
    let changed =
        if m.state == MembershipState::Accepted { m.accepted_at.unwrap_or(m.created_at) } else { m.created_at };
    serde_json::json!({
        "id": m.id,
        "displayName": u.display_name,
        "mail": u.email,
        "userType": m.user_type,
        "externalUserState": m.state,
        "externalUserStateChangeDateTime": rfc3339(changed),
        "createdDateTime": rfc3339(m.created_at),
    })
}

/// Parses `$filter`: clauses `prop eq 'value'` joined by `and`, on `userType` and `externalUserState`.
fn parse_filter(text: &str) -> Result<DirectoryFilter, ApiError> {
    let bad = || {
        ApiError::bad_request(
            "'$filter' supports only \"userType eq 'Guest'|'Member'\" and \"externalUserState eq 'PendingAcceptance'|'Accepted'\", joined by 'and'.",
        )
    };
    let mut filter = DirectoryFilter::default();
    let lower = text.to_ascii_lowercase();
    let mut clauses = Vec::new();
    let mut start = 0;
    for (i, _) in lower.match_indices(" and ") {
        clauses.push(&text[start..i]);
        start = i + 5;
    }
    clauses.push(&text[start..]);
    for clause in clauses {
        let mut parts = clause.trim().splitn(3, ' ');
        let (Some(prop), Some(op), Some(value)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let value = value.trim().strip_prefix('\'').and_then(|v| v.strip_suffix('\'')).ok_or_else(bad)?;
        if !op.eq_ignore_ascii_case("eq") {
            return Err(bad());
        }
        match (prop, value) {
            ("userType", "Guest" | "Member") => filter.user_type = Some(value.to_owned()),
            ("externalUserState", v) if MembershipState::parse(v).is_some() => filter.state = Some(value.to_owned()),
            _ => return Err(bad()),
        }
    }
    Ok(filter)
}

/// `GET /api/v1.0/users`.
pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let result = async {
        let caller = authenticate(&req, &state).await?;
        let mut filter_text = None;
        let mut top = DEFAULT_TOP;
        let mut after = None;
        for (k, v) in url::form_urlencoded::parse(req.query_string().as_bytes()) {
            match k.as_ref() {
                "$filter" => filter_text = Some(v.into_owned()),
                "$top" => {
                    top = v
                        .parse::<i64>()
                        .ok()
                        .filter(|n| (1..=MAX_TOP).contains(n))
                        .ok_or_else(|| ApiError::bad_request("'$top' must be a whole number from 1 to 999."))?
                }
                "$skiptoken" => {
                    let id = URL_SAFE_NO_PAD
                        .decode(v.as_bytes())
                        .ok()
                        .and_then(|b| String::from_utf8(b).ok())
                        .filter(|s| s.len() <= 64)
                        .ok_or_else(|| ApiError::bad_request("'$skiptoken' is not valid."))?;
                    after = Some(id);
                }
                other if other.starts_with('$') => {
                    return Err(ApiError::bad_request(format!("The query option '{other}' is not supported.")));
                }
                _ => {}
            }
        }
        let filter = match &filter_text {
            Some(t) => parse_filter(t)?,
            None => DirectoryFilter::default(),
        };
        let org_id = caller.org.id.clone();
        let (rows, more) =
            with_conn(&state, move |c| Ok(directory::page(c, &org_id, &filter, after.as_deref(), top)?)).await?;
        let mut body = serde_json::json!({
            "value": rows.iter().map(|(m, u)| user_json(m, u)).collect::<Vec<_>>(),
        });
        if more && let Some((last, _)) = rows.last() {
            let mut next = url::form_urlencoded::Serializer::new(String::new());
            if let Some(f) = &filter_text {
                next.append_pair("$filter", f);
            }
            next.append_pair("$top", &top.to_string());
            next.append_pair("$skiptoken", &URL_SAFE_NO_PAD.encode(last.id.as_bytes()));
            body["@odata.nextLink"] =
                Value::String(format!("{}/api/v1.0/users?{}", state.settings.base_url(), next.finish()));
        }
        Ok(json(StatusCode::OK, &body))
    }
    .await;
    respond(&req, result)
}

/// `GET /api/v1.0/users/{id}`.
pub async fn get(req: HttpRequest, state: web::Data<AppState>, id: web::Path<String>) -> HttpResponse {
    let result = async {
        let caller = authenticate(&req, &state).await?;
        let (org_id, id) = (caller.org.id.clone(), id.into_inner());
        let (m, u) =
            with_conn(&state, move |c| Ok(directory::find(c, &org_id, &id)?)).await?.ok_or_else(ApiError::not_found)?;
        Ok(json(StatusCode::OK, &user_json(&m, &u)))
    }
    .await;
    respond(&req, result)
}

/// `DELETE /api/v1.0/users/{id}`: removes the person from the org (soft, restorable for 30 days).
pub async fn delete(req: HttpRequest, state: web::Data<AppState>, id: web::Path<String>) -> HttpResponse {
    let result = async {
        let caller = authenticate(&req, &state).await?;
        let (org, id, actor) = (caller.org.clone(), id.into_inner(), caller.actor(&req));
        match with_conn(&state, move |c| Ok(users::remove(c, &org, &id, &actor))).await? {
            Ok(()) => Ok(HttpResponse::NoContent().finish()),
            Err(ServiceError::NotFound) => Err(ApiError::not_found()),
            Err(ServiceError::Forbidden) => Err(ApiError::forbidden("A key cannot remove the admin it acts for.")),
            Err(e) => Err(crate::error::AppError::from(e).into()),
        }
    }
    .await;
    respond(&req, result)
}
