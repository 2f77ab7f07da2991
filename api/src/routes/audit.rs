//! Audit: verifying the hash chain over the log.

use axum::extract::State;
use axum::response::Response;
use infrastructure::audit::{self, verify_chain};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::books::Book;
use crate::error::{ApiError, Problem};
use crate::extract::Params;
use crate::routes::write::at_position;
use crate::state::AppState;
use crate::views::ChainReportView;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(verify))
        .routes(routes!(checkpoint))
        .routes(routes!(public_key))
        .routes(routes!(consistency))
}

/// Recompute the hash chain over the whole log, from the genesis hash, and report the first
/// position where it breaks. Reads every event: minutes for a long log.
#[utoipa::path(
    get, path = "/v1/audit/verify", tag = "audit",
    responses((status = 200, body = ChainReportView), (status = 503, body = Problem))
)]
async fn verify(book: Book) -> Result<Response, ApiError> {
    let report = verify_chain(book.reads().pool(), |_, _| {}).await?;
    let position = report.head_position;
    Ok(at_position(position, ChainReportView::from(report)))
}

/// A signed statement of the log's head. Keep it somewhere the ledger's operators cannot write:
/// a later log must extend it (`/v1/audit/consistency`).
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckpointView {
    /// The ledger whose log this is; signed with the rest.
    pub ledger: String,
    pub position: i64,
    pub head_hash: String,
    /// When the head event was recorded (RFC 3339, six fractional digits); empty for an empty log.
    pub recorded_at: String,
    /// Ed25519 over `ledger:checkpoint:v2\n<ledger>\n<position>\n<head_hash>\n<recorded_at>`, hex.
    pub signature: String,
    pub public_key: String,
}

/// Sign the current head of the log.
#[utoipa::path(
    get, path = "/v1/audit/checkpoint", tag = "audit",
    responses((status = 200, body = CheckpointView), (status = 503, body = Problem))
)]
async fn checkpoint(State(state): State<AppState>, book: Book) -> Result<Response, ApiError> {
    let c = audit::checkpoint(book.reads().pool(), state.signer(), book.name().as_str()).await?;
    Ok(at_position(
        c.position,
        CheckpointView {
            ledger: c.ledger,
            position: c.position,
            head_hash: c.head_hash,
            recorded_at: c.recorded_at,
            signature: c.signature,
            public_key: c.public_key,
        },
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PublicKeyView {
    /// `Ed25519`.
    pub algorithm: String,
    /// The 32-byte public key, hex.
    pub public_key: String,
}

/// The key that verifies checkpoint signatures.
#[utoipa::path(
    get, path = "/v1/audit/public-key", tag = "audit",
    responses((status = 200, body = PublicKeyView))
)]
async fn public_key(State(state): State<AppState>) -> axum::Json<PublicKeyView> {
    axum::Json(PublicKeyView {
        algorithm: "Ed25519".to_owned(),
        public_key: state.signer().public_key_hex(),
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyParams {
    /// The earlier checkpoint's position.
    pub from: i64,
    /// The earlier checkpoint's `head_hash`, as the auditor kept it (64 hex digits).
    pub from_hash: Option<String>,
    /// The later checkpoint's position (the head when absent).
    pub to: Option<i64>,
    /// The later checkpoint's `head_hash`, as the auditor kept it (64 hex digits).
    pub to_hash: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConsistencyView {
    pub consistent: bool,
    pub from: i64,
    pub to: i64,
    /// The first position where the log disagrees with the checkpoints or with itself.
    pub first_broken_position: Option<i64>,
    pub problem: Option<String>,
}

/// Whether the log still extends an earlier checkpoint: the hash stored at `from` is the
/// auditor's, and the chain recomputed from it over (from, to] arrives at the hash stored at `to`
/// (and at `to_hash`). A history rewritten before a kept checkpoint fails this even when every
/// later hash was recomputed.
#[utoipa::path(
    get, path = "/v1/audit/consistency", tag = "audit", params(ConsistencyParams),
    responses((status = 200, body = ConsistencyView), (status = "4XX", body = Problem), (status = 503, body = Problem))
)]
async fn consistency(
    book: Book,
    Params(params): Params<ConsistencyParams>,
) -> Result<Response, ApiError> {
    for hash in [&params.from_hash, &params.to_hash].into_iter().flatten() {
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ApiError::InvalidRequest(format!(
                "{hash:?} is not a SHA-256 hash in hex (64 digits)"
            )));
        }
    }
    let head = book.reads().head().await?;
    let to = params.to.unwrap_or(head);
    if params.from < 0 || to < params.from || to > head {
        return Err(ApiError::InvalidRequest(format!(
            "need 0 <= from <= to <= {head} (the head); got from {} and to {to}",
            params.from
        )));
    }
    let report = audit::consistency(
        book.reads().pool(),
        params.from,
        params.from_hash.as_deref(),
        to,
        params.to_hash.as_deref(),
    )
    .await?;
    Ok(at_position(
        head,
        ConsistencyView {
            consistent: report.consistent,
            from: report.from,
            to: report.to,
            first_broken_position: report.first_broken_position,
            problem: report.problem,
        },
    ))
}
