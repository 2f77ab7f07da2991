//! The HTTP layer's one error type, answered as RFC 9457 `application/problem+json` with a stable
//! machine-readable `code`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use domain::Rejection;
use serde::Serialize;
use utoipa::ToSchema;

/// Seconds a client should wait before retrying a 503.
pub(crate) const RETRY_AFTER_S: &str = "1";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The ledger decided against the command (stored with the idempotency key).
    #[error(transparent)]
    Rejected(Rejection),
    #[error(transparent)]
    Infrastructure(#[from] infrastructure::Error),
    #[error("{0}")]
    MalformedJson(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    Validation(String),
    #[error("send the body as application/json")]
    UnsupportedMediaType,
    #[error("the body is larger than {limit_bytes} bytes")]
    PayloadTooLarge { limit_bytes: usize },
    #[error("the body did not arrive within {waited_ms} ms")]
    RequestTimeout { waited_ms: u64 },
    /// No API key, a malformed one, or one that is unknown or revoked.
    #[error("{0}")]
    Unauthorized(String),
    /// The API key lacks the scope this needs.
    #[error("{0}")]
    Forbidden(String),
    /// Too many failed authentications from this address lately.
    #[error("too many failed authentications from this address; retry in {retry_after_s} s")]
    TooManyAuthFailures { retry_after_s: u64 },
    #[error("this request needs an Idempotency-Key header")]
    IdempotencyKeyMissing,
    #[error("the Idempotency-Key header must be 1 to 255 printable ASCII characters, not starting with ledger:")]
    IdempotencyKeyInvalid,
    #[error("{what} not found")]
    NotFound { code: &'static str, what: String },
    #[error("no such route")]
    RouteNotFound,
    /// `POST /v1/ledgers` named a ledger that exists (created with another idempotency key).
    #[error("a ledger named {0} already exists")]
    LedgerExists(String),
    #[error("this route does not accept this method")]
    MethodNotAllowed,
}

impl ApiError {
    /// No ledger of that name, or none the caller's key may use: the two are answered alike, so a
    /// key cannot learn the names of ledgers it may not use.
    pub fn ledger_not_found(name: &str) -> Self {
        Self::NotFound {
            code: "ledger_not_found",
            what: format!("ledger {name:?}"),
        }
    }
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem: `urn:ledger:problem:<code>`.
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    /// What went wrong, for a person.
    pub detail: String,
    /// Stable machine-readable code, e.g. `insufficient_funds`.
    pub code: String,
    /// Facts about the refusal (account, asset, balance, …), when the ledger refused a command.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub context: Option<serde_json::Value>,
    /// Present (true) when this is the answer to a dry run (`?dry_run=true`): the refusal the
    /// real write would get; nothing was written.
    #[serde(skip_serializing_if = "crate::is_false")]
    pub dry_run: bool,
}

impl ApiError {
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        use infrastructure::Error as Infra;
        match self {
            Self::Rejected(r) => (rejection_status(r), r.code()),
            Self::Infrastructure(e) => match e {
                Infra::Overloaded => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
                Infra::WriterUnavailable(_) => {
                    (StatusCode::SERVICE_UNAVAILABLE, "writer_unavailable")
                }
                Infra::CommitFailed => (StatusCode::SERVICE_UNAVAILABLE, "commit_failed"),
                Infra::CommitOutcomeUnknown => {
                    (StatusCode::SERVICE_UNAVAILABLE, "commit_outcome_unknown")
                }
                Infra::InvalidKey(_) => (StatusCode::UNPROCESSABLE_ENTITY, "validation_error"),
                Infra::PositionNotReached { .. } => (StatusCode::CONFLICT, "position_not_reached"),
                Infra::IdempotencyKeyReused => {
                    (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused")
                }
                Infra::Database(_) if e.is_unavailable() => {
                    (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable")
                }
                _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
            },
            Self::MalformedJson(_) => (StatusCode::BAD_REQUEST, "malformed_json"),
            Self::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            Self::Validation(_) => (StatusCode::UNPROCESSABLE_ENTITY, "validation_error"),
            Self::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            Self::PayloadTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::RequestTimeout { .. } => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::TooManyAuthFailures { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "too_many_auth_failures")
            }
            Self::IdempotencyKeyMissing => (StatusCode::BAD_REQUEST, "idempotency_key_missing"),
            Self::IdempotencyKeyInvalid => (StatusCode::BAD_REQUEST, "idempotency_key_invalid"),
            Self::NotFound { code, .. } => (StatusCode::NOT_FOUND, code),
            Self::RouteNotFound => (StatusCode::NOT_FOUND, "route_not_found"),
            Self::LedgerExists(_) => (StatusCode::CONFLICT, "ledger_exists"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        }
    }

    pub fn problem(&self) -> Problem {
        let (status, code) = self.status_and_code();
        let detail = match self {
            // Internal details go to the log, not to the client.
            Self::Infrastructure(e) if status == StatusCode::INTERNAL_SERVER_ERROR => {
                tracing::error!(error = %e, "internal error");
                "an internal error occurred; it has been logged".to_owned()
            }
            Self::Infrastructure(infrastructure::Error::Database(e)) => {
                tracing::warn!(error = %e, "database unavailable");
                "the database is unavailable; retry shortly".to_owned()
            }
            other => other.to_string(),
        };
        let context = match self {
            Self::Rejected(r) => serde_json::to_value(r).ok().and_then(|mut v| {
                let map = v.as_object_mut()?;
                map.remove("code");
                map.remove("message");
                (!map.is_empty()).then_some(v)
            }),
            _ => None,
        };
        Problem {
            problem_type: format!("urn:ledger:problem:{code}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail,
            code: code.to_owned(),
            context,
            dry_run: false,
        }
    }
}

fn rejection_status(rejection: &Rejection) -> StatusCode {
    match rejection {
        // Already there, or the client's view of the state is stale: re-read and decide again.
        Rejection::DuplicateAsset { .. }
        | Rejection::DuplicateAccount { .. }
        | Rejection::VersionMismatch { .. }
        | Rejection::ConditionFailed(_)
        | Rejection::PeriodCloseRaced { .. }
        | Rejection::LotsRaced { .. } => StatusCode::CONFLICT,
        Rejection::PeriodClosing { .. } => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = self.problem();
        let status =
            StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_S));
        }
        match self {
            Self::Unauthorized(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"ledger\""),
                );
            }
            Self::TooManyAuthFailures { retry_after_s } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
            }
            _ => {}
        }
        // The rest of the body is not read: the connection cannot carry another request.
        if matches!(
            self,
            Self::PayloadTooLarge { .. } | Self::RequestTimeout { .. }
        ) {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}
