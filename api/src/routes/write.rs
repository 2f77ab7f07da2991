//! The path every command takes: fingerprint the request, queue the command for the writer, and
//! answer from its outcome (the same way for a first answer and for a replay).

use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use domain::Command;
use infrastructure::{Reply, WriteItem};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::books::Book;
use crate::dry_run::{render_dry_run, DryRun};
use crate::error::ApiError;
use crate::extract::{IdempotencyKey, RequestOrigin};
use crate::state::AppState;

/// A write's answer, rendered (`crate::reply`): re-exported for the routes.
pub use crate::reply::{render_reply, RenderedReply, IDEMPOTENT_REPLAYED, LEDGER_POSITION};

/// A request that becomes one command.
pub trait CommandRequest: Serialize {
    /// The route it is posted to on its own; part of the idempotency fingerprint, so a key used
    /// for a transfer cannot be replayed as a trade. A command in a batch has the same
    /// fingerprint as the same command posted on its own.
    const ROUTE: &'static str;

    /// The command, or why the request cannot be one (rules that need no ledger state).
    /// `now` turns relative times of the request (a hold's `timeout_s`) into times.
    fn command(&self, now: DateTime<Utc>) -> Result<Command, ApiError>;

    /// A digest of what was asked: the route and the parsed request in its canonical encoding,
    /// so that whitespace or field order do not matter but any difference in content does.
    fn fingerprint(&self) -> Vec<u8> {
        let mut hasher = Sha256::new();
        hasher.update(Self::ROUTE.as_bytes());
        hasher.update([0]);
        hasher.update(serde_json::to_vec(self).unwrap_or_default());
        hasher.finalize().to_vec()
    }

    fn write_item(
        &self,
        idempotency_key: String,
        now: DateTime<Utc>,
    ) -> Result<WriteItem, ApiError> {
        Ok(WriteItem {
            command: self.command(now)?,
            idempotency_key,
            fingerprint: self.fingerprint(),
        })
    }
}

/// Submits one command and answers as the writer decided.
pub async fn submit(
    state: &AppState,
    book: &Book,
    IdempotencyKey(key): IdempotencyKey,
    origin: RequestOrigin,
    request: &impl CommandRequest,
    DryRun(dry_run): DryRun,
) -> Result<Response, ApiError> {
    if dry_run {
        let item = request.write_item(origin.scoped_key(key), state.clock().now())?;
        let answer = book.writer().dry_run(vec![item], false, origin.0).await?;
        return Ok(render_dry_run(answer).into_response());
    }
    let answer = submit_answer(state, book, key, &origin, request).await?;
    Ok(render_reply(answer).into_response())
}

/// Submits one command and returns the writer's answer, to be rendered. Failures to queue
/// (overloaded, no writer) are the request's own errors, not a stored answer.
pub async fn submit_answer(
    state: &AppState,
    book: &Book,
    key: String,
    origin: &RequestOrigin,
    request: &impl CommandRequest,
) -> Result<Result<Reply, infrastructure::Error>, ApiError> {
    let item = request.write_item(origin.scoped_key(key), state.clock().now())?;
    match book.writer().submit(item, origin.0.clone()).await {
        Err(
            e @ (infrastructure::Error::Overloaded | infrastructure::Error::WriterUnavailable(_)),
        ) => Err(e.into()),
        other => Ok(other),
    }
}

/// A read's body with the position it reflects in the `Ledger-Position` header.
pub fn at_position<T: Serialize>(position: i64, body: T) -> Response {
    let mut response = axum::Json(body).into_response();
    response
        .headers_mut()
        .insert(LEDGER_POSITION, HeaderValue::from(position));
    response
}

/// Whether a read asked for CSV (`Accept: text/csv`).
pub fn wants_csv(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/csv"))
}

/// A read's CSV body with the position it reflects in the `Ledger-Position` header.
pub fn csv_at_position(position: i64, csv: String) -> axum::response::Response {
    use axum::http::header::CONTENT_TYPE;
    use axum::response::IntoResponse;
    let mut response = ([(CONTENT_TYPE, "text/csv; charset=utf-8")], csv).into_response();
    response
        .headers_mut()
        .insert(LEDGER_POSITION, axum::http::HeaderValue::from(position));
    response
}
