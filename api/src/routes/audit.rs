//! Audit: verifying the hash chain over the log.

use axum::extract::State;
use axum::response::Response;
use infrastructure::audit::verify_chain;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::dto::ChainReportView;
use crate::error::{ApiError, Problem};
use crate::routes::write::at_position;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(verify))
}

/// Recompute the hash chain over the whole log, from the genesis hash, and report the first
/// position where it breaks. Reads every event: minutes for a long log.
#[utoipa::path(
    get, path = "/v1/audit/verify", tag = "audit",
    responses((status = 200, body = ChainReportView), (status = 503, body = Problem))
)]
async fn verify(State(state): State<AppState>) -> Result<Response, ApiError> {
    let report = verify_chain(state.reads().pool(), |_, _| {}).await?;
    let position = report.head_position;
    Ok(at_position(
        position,
        ChainReportView {
            intact: report.intact(),
            events_verified: report.events_verified,
            head_position: report.head_position,
            head_hash: report.head_hash,
            first_broken_position: report.first_broken_position,
            problem: report.problem,
        },
    ))
}
