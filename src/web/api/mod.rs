//! The JSON API under `/api/v1.0/`, compatible with Microsoft Graph v1.0 `invitation` and a
//! small part of `user` (design §7). Authenticated only by `Authorization: Bearer <key>`, never
//! by the session cookie; every answer, errors included, is JSON written here, so that no text
//! of actix or of the database ever reaches a client.

mod invitations;
mod odata;
pub mod openapi;
mod users;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::db::models::{ApiKey, Membership, Organization};
use crate::error::AppError;
use crate::services::{Actor, api_keys, rate};
use crate::state::AppState;
use crate::web::middleware::RequestId;
use crate::web::{client_ip, with_conn};

/// Largest request body accepted.
pub const MAX_BODY: usize = 1024 * 1024;
/// Requests one key may make per minute (per instance).
pub const REQUESTS_PER_MINUTE: i64 = 600;

/// Every route of the API: (method, path as written in the OpenAPI document). A test checks
/// that the OpenAPI document lists exactly these, and that each one answers.
pub const ROUTES: &[(&str, &str)] = &[
    ("post", "/api/v1.0/invitations"),
    ("get", "/api/v1.0/invitations/{id}"),
    ("get", "/api/v1.0/users"),
    ("get", "/api/v1.0/users/{id}"),
    ("delete", "/api/v1.0/users/{id}"),
];

/// Registers the API routes (the same ones as [`ROUTES`]) and the OpenAPI document. Another
/// method on a known path is answered 405 with `Allow`, as Graph does.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/v1.0/invitations")
            .route(web::post().to(invitations::create))
            .default_service(web::to(|req: HttpRequest| not_allowed(req, "POST"))),
    )
    .service(
        web::resource("/api/v1.0/invitations/{id}")
            .route(web::get().to(invitations::get))
            .default_service(web::to(|req: HttpRequest| not_allowed(req, "GET"))),
    )
    .service(
        web::resource("/api/v1.0/users")
            .route(web::get().to(users::list))
            .default_service(web::to(|req: HttpRequest| not_allowed(req, "GET"))),
    )
    .service(
        web::resource("/api/v1.0/users/{id}")
            .route(web::get().to(users::get))
            .route(web::delete().to(users::delete))
            .default_service(web::to(|req: HttpRequest| not_allowed(req, "GET, DELETE"))),
    )
    .service(
        web::resource("/api/openapi.json")
            .route(web::get().to(openapi::serve))
            .default_service(web::to(|req: HttpRequest| not_allowed(req, "GET"))),
    );
}

/// 405 for a method the path does not take, with `Allow` and Graph's code and words.
async fn not_allowed(req: HttpRequest, allow: &'static str) -> HttpResponse {
    let mut res = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "Request_BadRequest",
        "Specified HTTP method is not allowed for the request target.",
    )
    .response(&req);
    res.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
    res
}

/// A refusal, answered as Graph-shaped JSON.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), retry_after: None }
    }

    /// 400 naming what is wrong.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "Request_BadRequest", message)
    }

    /// 400 for a query Graph would also refuse as unsupported (code `Request_UnsupportedQuery`).
    pub fn unsupported_query(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "Request_UnsupportedQuery", message)
    }

    /// 401: no usable key.
    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "An API key is required: send 'Authorization: Bearer <key>' with a valid, unexpired, unrevoked key.",
        )
    }

    /// 403 with a reason.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "Authorization_RequestDenied", message)
    }

    /// 404: nothing with that id in the key's organization.
    pub fn not_found() -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            "No resource with that id exists in this organization.",
        )
    }

    /// 429 with `Retry-After`.
    pub fn too_many(retry_after: u64, message: impl Into<String>) -> ApiError {
        ApiError {
            retry_after: Some(retry_after),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", message)
        }
    }

    /// The JSON body, with the request id.
    fn body(&self, request_id: &str) -> Value {
        serde_json::json!({
            "error": { "code": self.code, "message": self.message, "innerError": { "request-id": request_id } }
        })
    }

    /// The response to `req`.
    pub fn response(&self, req: &HttpRequest) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        if let Some(secs) = self.retry_after {
            res.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            res.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        res.json(self.body(&request_id(req)))
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> ApiError {
        match e {
            AppError::NotFound => ApiError::not_found(),
            AppError::Forbidden | AppError::Csrf | AppError::SignInRequired(_) | AppError::SecondFactorRequired(_) => {
                ApiError::forbidden("This operation is not allowed.")
            }
            AppError::BadRequest(_) => ApiError::bad_request("The request is not valid in the current state."),
            AppError::TooManyRequests(s) => ApiError::too_many(s, "Too many requests; retry later."),
            AppError::PayloadTooLarge => too_large(),
            AppError::Unavailable => {
                let mut e = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "The service is unavailable; retry later.",
                );
                e.retry_after = Some(crate::error::RETRY_UNAVAILABLE_SECS);
                e
            }
            AppError::Internal(cause) => {
                tracing::error!(error = ?cause, "API request failed");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError", "An internal error occurred.")
            }
        }
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(e: diesel::result::Error) -> ApiError {
        AppError::from(e).into()
    }
}

fn too_large() -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Request_EntityTooLarge", "The request body is larger than 1 MiB.")
}

/// The request id given by the logging middleware.
fn request_id(req: &HttpRequest) -> String {
    req.extensions().get::<RequestId>().map(|r| r.0.clone()).unwrap_or_default()
}

/// Turns a handler's result into the response.
pub fn respond(req: &HttpRequest, result: Result<HttpResponse, ApiError>) -> HttpResponse {
    result.unwrap_or_else(|e| e.response(req))
}

/// Who is calling: a usable key, its org, and the admin membership it acts with.
pub struct Caller {
    pub key: ApiKey,
    pub org: Organization,
    pub member: Membership,
}

impl Caller {
    /// The audit actor: the key's creator, from the client's address.
    pub fn actor(&self, req: &HttpRequest) -> Actor {
        Actor {
            user_id: Some(self.key.created_by.clone()),
            ip: client_ip(req),
            request_id: Some(request_id(req)).filter(|r| !r.is_empty()),
        }
    }
}

/// Authenticates the request by its bearer key (401 otherwise) and applies the per-key rate.
pub async fn authenticate(req: &HttpRequest, state: &web::Data<AppState>) -> Result<Caller, ApiError> {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim().to_owned())
        .ok_or_else(ApiError::unauthorized)?;
    let limited = state.settings.throttle_enabled;
    // The key's rate is counted in the database, so that every instance shares one count.
    let found = with_conn(state, move |c| {
        let Some(found) = api_keys::authenticate(c, &presented)? else { return Ok(None) };
        let wait = match limited {
            true => rate::take(c, &format!("api:{}", found.0.id), REQUESTS_PER_MINUTE, time::Duration::minutes(1))?,
            false => None,
        };
        Ok(Some((found, wait)))
    })
    .await?;
    let ((key, org, member), wait) = found.ok_or_else(ApiError::unauthorized)?;
    if let Some(wait) = wait {
        return Err(ApiError::too_many(wait, "This API key made too many requests; retry later."));
    }
    Ok(Caller { key, org, member })
}

/// Reads a JSON body: 415 unless `Content-Type` is JSON, 413 over [`MAX_BODY`].
pub async fn read_body(req: &HttpRequest, mut payload: web::Payload) -> Result<web::Bytes, ApiError> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .is_some_and(|m| m == "application/json" || (m.starts_with("application/") && m.ends_with("+json")));
    if !is_json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            "The request body must be JSON, sent with 'Content-Type: application/json'.",
        ));
    }
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY) {
        return Err(too_large());
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| ApiError::bad_request("The request body could not be read."))?;
        if body.len() + chunk.len() > MAX_BODY {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Longest string value (or key) anywhere in a JSON body, in bytes, before any field is read:
/// each field has a tighter rule where it is validated; this only keeps anything huge from
/// being parsed further, logged, audited or counted.
pub const MAX_JSON_STRING_BYTES: usize = 8 * 1024;

/// True when a string (or key) in `v` is longer than [`MAX_JSON_STRING_BYTES`] or holds a NUL
/// character (never meaningful, and refused by PostgreSQL in text).
fn has_oversized_string(v: &Value) -> bool {
    match v {
        Value::String(s) => s.len() > MAX_JSON_STRING_BYTES || s.contains('\0'),
        Value::Array(items) => items.iter().any(has_oversized_string),
        Value::Object(map) => {
            map.iter().any(|(k, v)| k.len() > MAX_JSON_STRING_BYTES || k.contains('\0') || has_oversized_string(v))
        }
        _ => false,
    }
}

/// Parses a body as one JSON object.
pub fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) if has_oversized_string(&v) => Err(ApiError::bad_request(format!(
            "A value in the request body is longer than {MAX_JSON_STRING_BYTES} bytes."
        ))),
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_request("The request body must be a JSON object.")),
        Err(_) => Err(ApiError::bad_request("The request body is not valid JSON.")),
    }
}

/// Takes field `name` out of `obj` as a `T`; absent or null gives None; a wrong type is a 400
/// naming the field (`path` is the field as the client spells it, e.g. `a.b`).
pub fn take<T: DeserializeOwned>(obj: &mut Map<String, Value>, name: &str, path: &str) -> Result<Option<T>, ApiError> {
    match obj.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v)
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("'{path}' has the wrong type."))),
    }
}

/// 400 when fields are left that the API does not know (Graph's unknown properties).
pub fn refuse_unknown(obj: &Map<String, Value>, prefix: &str) -> Result<(), ApiError> {
    match obj.keys().next() {
        Some(k) => Err(ApiError::bad_request(format!("Unknown field '{prefix}{k}'."))),
        None => Ok(()),
    }
}

/// RFC 3339 UTC text of a stored timestamp.
pub fn rfc3339(at: time::PrimitiveDateTime) -> String {
    at.assume_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// A JSON answer.
pub fn json(status: StatusCode, body: &Value) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, HeaderValue::from_static("application/json")))
        .body(body.to_string())
}
