//! Extractors that answer bad input with a problem document instead of axum's plain-text
//! rejections: JSON bodies (content type, size limit, parse errors classified 400 or 422), query
//! strings, the `Idempotency-Key` header, and the request id.

use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

/// A JSON request body, parsed strictly: unknown and duplicate fields are refused.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        read_json(request, state.limits().body_bytes_max)
            .await
            .map(JsonBody)
    }
}

/// The body of a batch request: like `JsonBody`, with the larger limit for batches.
pub struct BatchJsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for BatchJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        read_json(request, state.limits().batch_body_bytes_max)
            .await
            .map(BatchJsonBody)
    }
}

async fn read_json<T: DeserializeOwned>(
    request: Request,
    limit_bytes: usize,
) -> Result<T, ApiError> {
    let is_json = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    // Reads at most the limit: an endless body is cut off, never buffered whole.
    let bytes = axum::body::to_bytes(request.into_body(), limit_bytes)
        .await
        .map_err(|_| ApiError::PayloadTooLarge { limit_bytes })?;
    parse_json(&bytes)
}

/// Parses JSON, telling apart a body that is not JSON of the right shape (400) from values that
/// break a rule of the ledger (422).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let message = e.to_string();
        match e.classify() {
            serde_json::error::Category::Data
                if !message.starts_with("unknown field")
                    && !message.starts_with("duplicate field") =>
            {
                ApiError::Validation(message)
            }
            serde_json::error::Category::Data => ApiError::InvalidRequest(message),
            _ => ApiError::MalformedJson(format!("the body is not valid JSON: {message}")),
        }
    })
}

/// Query parameters; unknown or malformed ones are a 400.
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(params)| Params(params))
            .map_err(|e| ApiError::InvalidRequest(format!("query string: {}", e.body_text())))
    }
}

/// The `Idempotency-Key` header every POST must carry: 1 to 255 printable ASCII characters.
pub struct IdempotencyKey(pub String);

impl IdempotencyKey {
    pub fn parse(bytes: &[u8]) -> Result<Self, ApiError> {
        if bytes.is_empty() || bytes.len() > 255 || !bytes.iter().all(|b| (0x20..=0x7e).contains(b))
        {
            return Err(ApiError::IdempotencyKeyInvalid);
        }
        // Printable ASCII is valid UTF-8.
        Ok(Self(String::from_utf8_lossy(bytes).into_owned()))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let value = parts
            .headers
            .get("idempotency-key")
            .ok_or(ApiError::IdempotencyKeyMissing)?;
        Self::parse(value.as_bytes())
    }
}

/// The caller's `X-Request-Id` when it is short printable ASCII, kept in the event's metadata.
pub struct RequestId(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        const LEN_MAX: usize = 128;
        Ok(Self(
            parts
                .headers
                .get("x-request-id")
                .map(|v| v.as_bytes())
                .filter(|b| {
                    !b.is_empty()
                        && b.len() <= LEN_MAX
                        && b.iter().all(|c| (0x21..=0x7e).contains(c))
                })
                .map(|b| String::from_utf8_lossy(b).into_owned()),
        ))
    }
}
