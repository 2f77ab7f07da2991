//! Extractors that answer bad input with a problem document instead of axum's plain-text
//! rejections: JSON bodies (content type, size limit, read timeout, duplicate keys and nesting,
//! parse errors classified 400 or 422), path parameters, query strings, the `Idempotency-Key`
//! header, and who sent the request.

use std::time::Duration;

use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::request::Parts;
use domain::json::JsonError;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// JSON nested deeper than this is refused (400 `malformed_json`).
pub use domain::json::DEPTH_MAX as JSON_DEPTH_MAX;

/// A JSON request body, parsed strictly: unknown and duplicate fields are refused.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let limits = state.limits();
        read_json(request, limits.body_bytes_max, limits.body_read_timeout)
            .await
            .map(JsonBody)
    }
}

/// The body of a batch request: like `JsonBody`, with the larger limit for batches.
pub struct BatchJsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for BatchJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let limits = state.limits();
        read_json(
            request,
            limits.batch_body_bytes_max,
            limits.body_read_timeout,
        )
        .await
        .map(BatchJsonBody)
    }
}

/// The body of an action on a transaction or an account that exists already (`post`, `void`,
/// `reverse`, `freeze`, `unfreeze`, `close`), whose every field is optional: like `JsonBody`,
/// except that an empty body, with a JSON content type or none, is read as `{}`, so that
/// `curl -X POST` without a body works. A body that is not empty is checked like any other.
pub struct ActionBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ActionBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let limits = state.limits();
        let declared = declared_json(&request);
        // Without a content type only an empty body is taken, so a declared length says enough.
        if declared == Some(false) || (declared.is_none() && content_length(&request) > Some(0)) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = read_limited(request, limits.body_bytes_max, limits.body_read_timeout).await?;
        match (bytes.is_empty(), declared) {
            (true, _) => parse_json(b"{}"),
            (false, None) => Err(ApiError::UnsupportedMediaType),
            (false, Some(_)) => parse_json(&bytes),
        }
        .map(ActionBody)
    }
}

async fn read_json<T: DeserializeOwned>(
    request: Request,
    limit_bytes: usize,
    read_timeout: Duration,
) -> Result<T, ApiError> {
    if declared_json(&request) != Some(true) {
        return Err(ApiError::UnsupportedMediaType);
    }
    parse_json(&read_limited(request, limit_bytes, read_timeout).await?)
}

/// Whether the request declares a JSON body: `None` without a `Content-Type`, else whether it is
/// `application/json` (parameters such as `charset` aside).
fn declared_json(request: &Request) -> Option<bool> {
    request.headers().get(CONTENT_TYPE).map(|value| {
        value
            .to_str()
            .ok()
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
    })
}

/// The length the request declares, if it declares one that reads as a number.
fn content_length(request: &Request) -> Option<u64> {
    request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// The body, within the size limit and the read timeout. A declared length above the limit is
/// refused before a byte of the body is read.
async fn read_limited(
    request: Request,
    limit_bytes: usize,
    read_timeout: Duration,
) -> Result<Vec<u8>, ApiError> {
    if content_length(&request).is_some_and(|length| length > limit_bytes as u64) {
        return Err(ApiError::PayloadTooLarge { limit_bytes });
    }
    tokio::time::timeout(read_timeout, read_body(request, limit_bytes))
        .await
        .map_err(|_| ApiError::RequestTimeout {
            waited_ms: u64::try_from(read_timeout.as_millis()).unwrap_or(u64::MAX),
        })?
}

/// Reads the body up to the limit: a longer (or endless) body is refused as soon as the limit is
/// passed, never buffered whole.
async fn read_body(request: Request, limit_bytes: usize) -> Result<Vec<u8>, ApiError> {
    let mut body = request.into_body().into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::InvalidRequest(format!("the body could not be read: {e}")))?;
        if bytes.len() + chunk.len() > limit_bytes {
            return Err(ApiError::PayloadTooLarge { limit_bytes });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// Parses JSON, telling apart a body that is not JSON of the right shape (400) from values that
/// break a rule of the ledger (422). One pass over the raw text first refuses what the typed pass
/// would let through silently or could not bound by itself: a key that appears twice in one
/// object at any depth (serde's derive refuses a duplicate struct field, but a map keeps the last
/// value), nesting deeper than `JSON_DEPTH_MAX`, and a string with an unpaired surrogate, which is
/// no Unicode text and could be neither stored nor served as sent.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| ApiError::MalformedJson(format!("the body is not UTF-8: {e}")))?;
    domain::json::canonicalize(text).map_err(|e| match e {
        JsonError::DuplicateKey(_) => ApiError::InvalidRequest(e.to_string()),
        JsonError::LoneSurrogate(_) => ApiError::Validation(e.to_string()),
        JsonError::Syntax { .. } | JsonError::TooDeep => {
            ApiError::MalformedJson(format!("the body is not valid JSON: {e}"))
        }
    })?;
    serde_json::from_slice(bytes).map_err(|e| {
        let message = e.to_string();
        if let Some(both) = named_twice(&message) {
            return ApiError::InvalidRequest(both);
        }
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

/// Fields a request also takes under another name, as (field, other name). A key given twice is
/// refused while canonicalizing, so serde's "duplicate field" means a body gave one field under
/// both of its names.
const FIELD_ALIASES: [(&str, &str); 1] = [("effective_at", "trade_date")];

/// A clear answer to a body that gave a field under both of its names.
fn named_twice(message: &str) -> Option<String> {
    FIELD_ALIASES.iter().find_map(|(field, alias)| {
        message
            .starts_with(&format!("duplicate field `{field}`"))
            .then(|| format!("{alias} is another name for {field}: give one of them, not both"))
    })
}

/// A path parameter; one that cannot be decoded (e.g. invalid UTF-8) is a 400.
pub struct PathParam<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for PathParam<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| PathParam(value))
            .map_err(|e| ApiError::InvalidRequest(format!("path: {}", e.body_text())))
    }
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

/// The `Idempotency-Key` header every POST must carry: 1 to 255 printable ASCII characters, not
/// starting with `ledger:` (the ledger's own commands, such as expiries, use those).
pub struct IdempotencyKey(pub String);

impl IdempotencyKey {
    pub fn parse(bytes: &[u8]) -> Result<Self, ApiError> {
        if bytes.is_empty()
            || bytes.len() > 255
            || !bytes.iter().all(|b| (0x20..=0x7e).contains(b))
            || bytes.starts_with(infrastructure::expiry::INTERNAL_KEY_PREFIX.as_bytes())
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

/// Who sent a request, as its events record it: the caller's `X-Request-Id` (when it is short
/// printable ASCII) and the id of the API key it came with.
pub struct RequestOrigin(pub infrastructure::Origin);

impl RequestOrigin {
    /// The idempotency key as stored: scoped by the API key, so that two callers using the same
    /// key never see each other's answers. (Without authentication, keys are not scoped.)
    pub fn scoped_key(&self, key: String) -> String {
        match self.0.api_key_id {
            Some(id) => format!("{id}:{key}"),
            None => key,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestOrigin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        const LEN_MAX: usize = 128;
        let request_id = parts
            .headers
            .get("x-request-id")
            .map(|v| v.as_bytes())
            .filter(|b| {
                !b.is_empty() && b.len() <= LEN_MAX && b.iter().all(|c| (0x21..=0x7e).contains(c))
            })
            .map(|b| String::from_utf8_lossy(b).into_owned());
        let api_key_id = parts.extensions.get::<Caller>().and_then(Caller::key_id);
        Ok(Self(infrastructure::Origin {
            request_id,
            api_key_id,
        }))
    }
}
