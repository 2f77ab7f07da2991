//! The path every command takes: fingerprint the request, queue the command for the writer, and
//! answer from its outcome (the same way for a first answer and for a replay).

use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use domain::Command;
use infrastructure::Outcome;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::extract::{IdempotencyKey, RequestId};
use crate::render::committed_view;
use crate::state::AppState;

pub const LEDGER_POSITION: HeaderName = HeaderName::from_static("ledger-position");
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// A digest of what was asked: the route and the parsed request in its canonical encoding, so that
/// whitespace or field order do not matter but any difference in content does.
fn fingerprint(route: &str, request: &impl Serialize) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(route.as_bytes());
    hasher.update([0]);
    hasher.update(serde_json::to_vec(request).unwrap_or_default());
    hasher.finalize().to_vec()
}

/// Submits a command and renders the writer's answer.
pub async fn submit(
    state: &AppState,
    route: &str,
    IdempotencyKey(key): IdempotencyKey,
    RequestId(request_id): RequestId,
    request: &impl Serialize,
    command: Command,
) -> Result<Response, ApiError> {
    let reply = state
        .writer()
        .submit(command, key, fingerprint(route, request), request_id)
        .await?;
    let mut response = match reply.outcome {
        Outcome::Accepted(committed) => {
            let headers = [
                (CONTENT_TYPE, HeaderValue::from_static("application/json")),
                (LEDGER_POSITION, HeaderValue::from(committed.position)),
            ];
            (StatusCode::CREATED, headers, committed_view(&committed)).into_response()
        }
        Outcome::Rejected(rejection) => ApiError::Rejected(rejection).into_response(),
    };
    if reply.replayed {
        response
            .headers_mut()
            .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// A read's body with the position it reflects in the `Ledger-Position` header.
pub fn at_position<T: Serialize>(position: i64, body: T) -> Response {
    let mut response = axum::Json(body).into_response();
    response
        .headers_mut()
        .insert(LEDGER_POSITION, HeaderValue::from(position));
    response
}
