//! Errors of the whole application, and the one place where a use case's refusal
//! ([`ServiceError`]) becomes an answer ([`AppError`]).
//!
//! One error type for the whole application, mapped to status codes in one place. Pages get a
//! friendly HTML page with the request id (rendered by `web::middleware::render_errors`); the
//! API gets Graph-shaped JSON. Internal causes go to the log, never to the page.

use actix_web::dev::ServiceRequest;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

/// Everything that can go wrong while answering a request.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("not found")]
    NotFound,
    #[error("forbidden")]
    Forbidden,
    #[error("CSRF check failed")]
    Csrf,
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("sign-in required")]
    SignInRequired(String),
    /// The organization requires a second factor the person has not set up: to enrolment,
    /// then back to this path.
    #[error("second factor required")]
    SecondFactorRequired(String),
    #[error("too many requests")]
    TooManyRequests(u64),
    #[error("payload too large")]
    PayloadTooLarge,
    #[error("service unavailable")]
    Unavailable,
    #[error(transparent)]
    Internal(anyhow::Error),
}

/// Any cause whose chain says the database cannot be used for now is an [`AppError::Unavailable`]
/// (503 with `Retry-After`), wherever it was wrapped; anything else is internal.
impl From<anyhow::Error> for AppError {
    fn from(e: anyhow::Error) -> Self {
        if cause_is_unavailable(&e) {
            tracing::error!(error = %e, "database unavailable");
            crate::db::note_trouble();
            AppError::Unavailable
        } else {
            AppError::Internal(e)
        }
    }
}

/// True when some error in `e`'s chain says the database cannot be used for now: no connection
/// to be had from the pool, or a statement refused as in [`is_unavailable`].
pub fn cause_is_unavailable(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause.downcast_ref::<diesel::result::Error>().is_some_and(is_unavailable)
            || cause.downcast_ref::<r2d2::Error>().is_some()
            || matches!(cause.downcast_ref::<crate::db::Unavailable>(), Some(crate::db::Unavailable::Pool(_)))
    })
}

/// Marker left on error responses so the renderer knows which page to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    Forbidden,
    Csrf,
    BadRequest,
    TooManyRequests,
    PayloadTooLarge,
    Unavailable,
    Internal,
}

impl ErrorKind {
    /// Picks a page for a bare status code (errors raised by actix itself).
    pub fn from_status(status: StatusCode) -> ErrorKind {
        match status.as_u16() {
            404 | 405 => ErrorKind::NotFound,
            403 => ErrorKind::Forbidden,
            413 => ErrorKind::PayloadTooLarge,
            429 => ErrorKind::TooManyRequests,
            503 => ErrorKind::Unavailable,
            s if s < 500 => ErrorKind::BadRequest,
            _ => ErrorKind::Internal,
        }
    }

    /// Catalogue keys of the page title and explanation.
    pub fn message_keys(self) -> (&'static str, &'static str) {
        match self {
            ErrorKind::NotFound => ("error.not_found.title", "error.not_found.body"),
            ErrorKind::Forbidden => ("error.forbidden.title", "error.forbidden.body"),
            ErrorKind::Csrf => ("error.csrf.title", "error.csrf.body"),
            ErrorKind::BadRequest => ("error.bad_request.title", "error.bad_request.body"),
            ErrorKind::TooManyRequests => ("error.too_many.title", "error.too_many.body"),
            ErrorKind::PayloadTooLarge => ("error.too_large.title", "error.too_large.body"),
            ErrorKind::Unavailable => ("error.unavailable.title", "error.unavailable.body"),
            ErrorKind::Internal => ("error.internal.title", "error.internal.body"),
        }
    }

    /// Graph-style error code for the API.
    pub fn api_code(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "Request_ResourceNotFound",
            ErrorKind::Forbidden | ErrorKind::Csrf => "Authorization_RequestDenied",
            ErrorKind::BadRequest => "Request_BadRequest",
            ErrorKind::TooManyRequests => "TooManyRequests",
            ErrorKind::PayloadTooLarge => "Request_EntityTooLarge",
            ErrorKind::Unavailable => "ServiceUnavailable",
            ErrorKind::Internal => "InternalServerError",
        }
    }
}

impl AppError {
    fn kind(&self) -> ErrorKind {
        match self {
            AppError::NotFound => ErrorKind::NotFound,
            AppError::Forbidden => ErrorKind::Forbidden,
            AppError::Csrf => ErrorKind::Csrf,
            AppError::BadRequest(_) => ErrorKind::BadRequest,
            AppError::SignInRequired(_) | AppError::SecondFactorRequired(_) => ErrorKind::Forbidden,
            AppError::TooManyRequests(_) => ErrorKind::TooManyRequests,
            AppError::PayloadTooLarge => ErrorKind::PayloadTooLarge,
            AppError::Unavailable => ErrorKind::Unavailable,
            AppError::Internal(_) => ErrorKind::Internal,
        }
    }

    /// The bare response for a request that never reached a handler.
    pub fn into_response(self, _req: &ServiceRequest) -> HttpResponse {
        self.error_response()
    }
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            AppError::NotFound => StatusCode::NOT_FOUND,
            AppError::Forbidden | AppError::Csrf => StatusCode::FORBIDDEN,
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::SignInRequired(_) | AppError::SecondFactorRequired(_) => StatusCode::SEE_OTHER,
            AppError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            AppError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let AppError::SignInRequired(next) = self {
            let target =
                format!("/signin?next={}", url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>());
            return HttpResponse::SeeOther().insert_header(("Location", target)).finish();
        }
        if let AppError::SecondFactorRequired(next) = self {
            let target = format!(
                "/account/second-factor?next={}",
                url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
            );
            return HttpResponse::SeeOther().insert_header(("Location", target)).finish();
        }
        let mut res = HttpResponse::build(self.status_code());
        if let AppError::TooManyRequests(secs) = self {
            res.insert_header(("Retry-After", secs.to_string()));
        }
        if let AppError::Unavailable = self {
            res.insert_header(("Retry-After", RETRY_UNAVAILABLE_SECS.to_string()));
        }
        let mut res = res.finish();
        res.extensions_mut().insert(self.kind());
        res
    }
}

/// The `Retry-After` of a 503 answered while the database is unreachable.
pub const RETRY_UNAVAILABLE_SECS: u64 = 10;

/// True when `e` says the database cannot be used for now (the connection lost, the SQLite file
/// locked by another process past the busy timeout, its disk full or failing): nothing was
/// written (the transaction rolled back) and the same request may succeed later.
pub fn is_unavailable(e: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    match e {
        Error::DatabaseError(DatabaseErrorKind::ClosedConnection, _) => true,
        Error::DatabaseError(_, info) => {
            let message = info.message().to_ascii_lowercase();
            [
                "database is locked",
                "database table is locked",
                "database or disk is full",
                "disk i/o error",
                "terminating connection",
                "server closed the connection",
                "no connection to the server",
                "could not connect",
                "could not receive data",
                "could not send data",
                "connection to server",
                "connection reset",
                "ssl syscall",
                "eof detected",
            ]
            .iter()
            .any(|m| message.contains(m))
        }
        _ => false,
    }
}

impl From<diesel::result::Error> for AppError {
    fn from(e: diesel::result::Error) -> Self {
        match e {
            diesel::result::Error::NotFound => AppError::NotFound,
            other if is_unavailable(&other) => {
                tracing::error!(error = %other, "database unavailable");
                crate::db::note_trouble();
                AppError::Unavailable
            }
            other => AppError::Internal(other.into()),
        }
    }
}

impl From<r2d2::Error> for AppError {
    fn from(e: r2d2::Error) -> Self {
        tracing::error!(error = %e, "database pool exhausted or unreachable");
        crate::db::note_trouble();
        AppError::Unavailable
    }
}

impl From<crate::db::Unavailable> for AppError {
    fn from(e: crate::db::Unavailable) -> Self {
        match e {
            crate::db::Unavailable::Pool(p) => p.into(),
            other => AppError::Internal(other.into()),
        }
    }
}

impl From<actix_web::error::BlockingError> for AppError {
    fn from(e: actix_web::error::BlockingError) -> Self {
        AppError::Internal(anyhow::anyhow!("blocking task failed: {e}"))
    }
}

/// Field-level validation problems: (field name, catalogue key of the message).
#[derive(Debug, Default, Clone)]
pub struct FieldErrors(pub Vec<(&'static str, &'static str)>);

impl FieldErrors {
    /// Adds a problem on `field`.
    pub fn add(&mut self, field: &'static str, key: &'static str) {
        self.0.push((field, key));
    }

    /// True when nothing was added.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The message key for `field`, if it has a problem.
    pub fn get(&self, field: &str) -> Option<&'static str> {
        self.0.iter().find(|(f, _)| *f == field).map(|(_, k)| *k)
    }
}

/// What a use case can refuse.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("invalid input")]
    Invalid(FieldErrors),
    #[error("not found")]
    NotFound,
    #[error("forbidden")]
    Forbidden,
    #[error("not in a state that allows this")]
    WrongState,
    #[error("over a rate limit; retry in {0} s")]
    RateLimited(u64),
    #[error(transparent)]
    Db(#[from] diesel::result::Error),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl ServiceError {
    /// A single field problem.
    pub fn field(field: &'static str, key: &'static str) -> ServiceError {
        ServiceError::Invalid(FieldErrors(vec![(field, key)]))
    }
}

impl From<crate::db::Unavailable> for ServiceError {
    fn from(e: crate::db::Unavailable) -> Self {
        ServiceError::Other(e.into())
    }
}

/// The one mapping of a use case's refusal to an answer.
impl From<ServiceError> for AppError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Invalid(_) | ServiceError::WrongState => AppError::BadRequest(e.to_string()),
            ServiceError::NotFound => AppError::NotFound,
            ServiceError::Forbidden => AppError::Forbidden,
            ServiceError::RateLimited(secs) => AppError::TooManyRequests(secs),
            ServiceError::Db(d) => d.into(),
            ServiceError::Other(o) => o.into(),
        }
    }
}
