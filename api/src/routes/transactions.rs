use axum::extract::{Path, State};
use axum::response::Response;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::dto::{TradeRequest, TradeView, TransactionRequest, TransactionView, TransferRequest};
use crate::error::{ApiError, Problem};
use crate::extract::{IdempotencyKey, JsonBody, Params, RequestId};
use crate::render::{decode_stored, trade_view, transaction_view};
use crate::routes::assets::ReadParams;
use crate::routes::write::{at_position, submit};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(post_transaction))
        .routes(routes!(get_transaction))
        .routes(routes!(post_transfer))
        .routes(routes!(post_trade))
        .routes(routes!(get_trade))
}

/// Post a transaction: 1 to 64 postings applied in order, all or none. No balance of an account
/// that does not allow negatives may go below zero at any step.
#[utoipa::path(
    post, path = "/v1/transactions", tag = "transactions",
    params(("Idempotency-Key" = String, Header, description = "1 to 255 printable ASCII characters")),
    request_body = TransactionRequest,
    responses(
        (status = 201, body = TransactionView),
        (status = 422, body = Problem, description = "insufficient_funds, account_not_found, asset_not_found, amount_precision, validation_error, idempotency_key_reused"),
        (status = "4XX", body = Problem), (status = 503, body = Problem),
    )
)]
async fn post_transaction(
    State(state): State<AppState>,
    key: IdempotencyKey,
    request_id: RequestId,
    JsonBody(request): JsonBody<TransactionRequest>,
) -> Result<Response, ApiError> {
    let command = request.command();
    submit(
        &state,
        "POST /v1/transactions",
        key,
        request_id,
        &request,
        command,
    )
    .await
}

/// Transfer: a transaction with one posting.
#[utoipa::path(
    post, path = "/v1/transfers", tag = "transactions",
    params(("Idempotency-Key" = String, Header, description = "1 to 255 printable ASCII characters")),
    request_body = TransferRequest,
    responses(
        (status = 201, body = TransactionView),
        (status = 422, body = Problem),
        (status = "4XX", body = Problem), (status = 503, body = Problem),
    )
)]
async fn post_transfer(
    State(state): State<AppState>,
    key: IdempotencyKey,
    request_id: RequestId,
    JsonBody(request): JsonBody<TransferRequest>,
) -> Result<Response, ApiError> {
    let command = request.command();
    submit(
        &state,
        "POST /v1/transfers",
        key,
        request_id,
        &request,
        command,
    )
    .await
}

/// Execute a trade, delivery versus payment: `quantity` of the instrument from seller to buyer,
/// `quantity × price` of the currency from buyer to seller, and each fee from its payer, in one
/// atomic event. An inexact notional is refused (`amount_precision`), never rounded.
#[utoipa::path(
    post, path = "/v1/trades", tag = "trades",
    params(("Idempotency-Key" = String, Header, description = "1 to 255 printable ASCII characters")),
    request_body = TradeRequest,
    responses(
        (status = 201, body = TradeView),
        (status = 422, body = Problem),
        (status = "4XX", body = Problem), (status = 503, body = Problem),
    )
)]
async fn post_trade(
    State(state): State<AppState>,
    key: IdempotencyKey,
    request_id: RequestId,
    JsonBody(request): JsonBody<TradeRequest>,
) -> Result<Response, ApiError> {
    let command = request.command();
    submit(
        &state,
        "POST /v1/trades",
        key,
        request_id,
        &request,
        command,
    )
    .await
}

fn parse_id(id: &str, code: &'static str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::NotFound {
        code,
        what: format!("{what} {id:?}"),
    })
}

/// A transaction, transfer or trade (a trade shows as its postings, with kind `trade`).
#[utoipa::path(
    get, path = "/v1/transactions/{id}", tag = "transactions",
    params(("id" = String, Path, description = "Transaction id"), ReadParams),
    responses((status = 200, body = TransactionView), (status = 404, body = Problem), (status = "4XX", body = Problem), (status = 503, body = Problem))
)]
async fn get_transaction(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Params(params): Params<ReadParams>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::NotFound {
        code: "transaction_not_found",
        what: format!("transaction {id:?}"),
    };
    let uuid = parse_id(&id, "transaction_not_found", "transaction")?;
    state.reach_position(params.min_position).await?;
    let found = state.reads().transaction(uuid).await?;
    let (_, stored) = found.value.ok_or_else(not_found)?;
    let view = transaction_view(&decode_stored(stored)?).ok_or_else(not_found)?;
    Ok(at_position(found.position, view))
}

/// A trade with its terms, fees and postings.
#[utoipa::path(
    get, path = "/v1/trades/{id}", tag = "trades",
    params(("id" = String, Path, description = "Trade id"), ReadParams),
    responses((status = 200, body = TradeView), (status = 404, body = Problem), (status = "4XX", body = Problem), (status = 503, body = Problem))
)]
async fn get_trade(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Params(params): Params<ReadParams>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::NotFound {
        code: "trade_not_found",
        what: format!("trade {id:?}"),
    };
    let uuid = parse_id(&id, "trade_not_found", "trade")?;
    state.reach_position(params.min_position).await?;
    let found = state.reads().transaction(uuid).await?;
    let (_, stored) = found.value.ok_or_else(not_found)?;
    let view = trade_view(&decode_stored(stored)?).ok_or_else(not_found)?;
    Ok(at_position(found.position, view))
}
