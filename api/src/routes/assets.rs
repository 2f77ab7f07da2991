use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::books::Book;
use crate::dry_run::DryRun;
use crate::error::{ApiError, Problem};
use crate::extract::{IdempotencyKey, JsonBody, Params, RequestOrigin};
use crate::requests::DefineAssetRequest;
use crate::routes::write::{at_position, submit};
use crate::state::AppState;
use crate::views::{AssetList, AssetView};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(define_asset, list_assets))
}

/// Define an asset and its scale. Defined once: a second definition is refused.
#[utoipa::path(
    post, path = "/v1/assets", tag = "assets",
    params(("Idempotency-Key" = String, Header, description = "1 to 255 printable ASCII characters")),
    request_body = DefineAssetRequest,
    responses(
        (status = 201, body = AssetView, description = "Defined; `Ledger-Position` header gives its position"),
        (status = 409, body = Problem, description = "duplicate_asset"),
        (status = "4XX", body = Problem), (status = 503, body = Problem),
    )
)]
async fn define_asset(
    State(state): State<AppState>,
    book: Book,
    key: IdempotencyKey,
    origin: RequestOrigin,
    dry_run: DryRun,
    JsonBody(request): JsonBody<DefineAssetRequest>,
) -> Result<Response, ApiError> {
    submit(&state, &book, key, origin, &request, dry_run).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReadParams {
    /// Answer only once the ledger reflects at least this position (409 if not reached in time).
    pub min_position: Option<i64>,
}

/// All assets, by code.
#[utoipa::path(
    get, path = "/v1/assets", tag = "assets", params(ReadParams),
    responses((status = 200, body = AssetList), (status = "4XX", body = Problem), (status = 503, body = Problem))
)]
async fn list_assets(book: Book, Params(params): Params<ReadParams>) -> Result<Response, ApiError> {
    let assets = book.reads_at(params.min_position).assets().await?;
    let items = assets
        .value
        .into_iter()
        .map(|a| AssetView {
            code: a.code,
            scale: u32::try_from(a.scale).unwrap_or_default(),
            position: a.position,
        })
        .collect();
    Ok(at_position(assets.position, AssetList { items }))
}
