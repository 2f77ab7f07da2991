use axum::extract::State;
use axum::response::Response;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use axum::response::IntoResponse;
use infrastructure::api_keys::Scope;
use infrastructure::WriteItem;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::books::Book;
use crate::dry_run::{render_dry_reply, DryRun};
use crate::error::{ApiError, Problem};
use crate::extract::{
    ActionBody, BatchJsonBody, IdempotencyKey, JsonBody, Params, PathParam, RequestOrigin,
};
use crate::render::{
    dated_settlement_view, decode_stored, settled_postings, settlement_view, trade_view,
    transaction_view,
};
use crate::requests::{
    FailTradeCommand, FailTradeRequest, SettleTradeCommand, SettleTradeRequest, TradeCommand,
    TradeRequest, TransactionAction, TransactionActionCommand, TransactionActionRequest,
    TransactionRequest, TransferRequest,
};
use crate::routes::assets::ReadParams;
use crate::routes::write::{
    at_position, render_reply, submit, submit_answer, CommandRequest, RenderedReply,
};
use crate::state::AppState;
use crate::views::{SettlementView, TradeView, TransactionView};
use domain::command::{OpenLots, OriginalTransaction};
use domain::{AccountCode, AccountRef, Event, Rejection, TransactionId};
use infrastructure::projections::accounts::AccountKey;
use infrastructure::projections::transactions::TransactionRecord;
use infrastructure::CommittedEvent;
use infrastructure::{Outcome, Reply};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(post_transaction))
        .routes(routes!(post_batch))
        .routes(routes!(get_transaction))
        .routes(routes!(act_on_transaction))
        .routes(routes!(post_transfer))
        .routes(routes!(post_trade))
        .routes(routes!(get_trade))
        .routes(routes!(settle_trade))
        .routes(routes!(fail_trade))
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
    book: Book,
    key: IdempotencyKey,
    origin: RequestOrigin,
    dry_run: DryRun,
    JsonBody(request): JsonBody<TransactionRequest>,
) -> Result<Response, ApiError> {
    submit(&state, &book, key, origin, &request, dry_run).await
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
    book: Book,
    key: IdempotencyKey,
    origin: RequestOrigin,
    dry_run: DryRun,
    JsonBody(request): JsonBody<TransferRequest>,
) -> Result<Response, ApiError> {
    submit(&state, &book, key, origin, &request, dry_run).await
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
    book: Book,
    key: IdempotencyKey,
    origin: RequestOrigin,
    dry_run: DryRun,
    JsonBody(request): JsonBody<TradeRequest>,
) -> Result<Response, ApiError> {
    if request.lots.is_empty() {
        return submit(&state, &book, key, origin, &request, dry_run).await;
    }
    let mut command = TradeCommand {
        request,
        open_lots: None,
    };
    if dry_run.0 {
        command.open_lots = Some(open_lots(&book, &command.request, None).await?);
        return submit(&state, &book, key, origin, &command, dry_run).await;
    }
    // The named lots are checked against the lots as read; a write to the seller since makes
    // the sale race (not recorded against the key): read again once the lots show it, and retry.
    let mut changed_at = None;
    let mut answer = None;
    for _ in 0..LOTS_ATTEMPTS_MAX {
        command.open_lots = Some(open_lots(&book, &command.request, changed_at).await?);
        let submitted = submit_answer(&state, &book, key.0.clone(), &origin, &command).await?;
        changed_at = match &submitted {
            Ok(Reply {
                outcome: Outcome::Rejected(Rejection::LotsRaced { changed_at, .. }),
                ..
            }) => Some(*changed_at),
            _ => None,
        };
        answer = Some(submitted);
        if changed_at.is_none() {
            break;
        }
    }
    let answer = answer.ok_or(ApiError::Infrastructure(
        infrastructure::Error::CommitFailed,
    ))?;
    Ok(render_reply(answer).into_response())
}

/// How many times a sale that names lots reads them again after a write to the seller raced it.
const LOTS_ATTEMPTS_MAX: usize = 8;

/// The seller's open lots in the trade's book, as the lots projection knows them (at least at
/// `min_position`): what the lots a sale names are checked against.
async fn open_lots(
    book: &Book,
    request: &TradeRequest,
    min_position: Option<i64>,
) -> Result<OpenLots, ApiError> {
    let reads = book.reads_at(min_position);
    let key = match &request.seller {
        AccountRef::Id(id) => AccountKey::Id(id.0),
        AccountRef::Code(code) => AccountKey::Code(code.to_string()),
    };
    let seller = reads
        .account(&key)
        .await?
        .value
        .ok_or_else(|| ApiError::NotFound {
            code: "account_not_found",
            what: format!("account {}", request.seller),
        })?;
    let code: AccountCode = seller
        .code
        .parse()
        .map_err(|e: domain::ValueError| ApiError::Validation(e.to_string()))?;
    let read = reads
        .open_lots(&code, &request.instrument, &request.currency)
        .await?;
    Ok(OpenLots {
        known_at_position: read.position,
        lots: read.value,
    })
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
    book: Book,
    PathParam(id): PathParam<String>,
    Params(params): Params<ReadParams>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::NotFound {
        code: "transaction_not_found",
        what: format!("transaction {id:?}"),
    };
    let uuid = parse_id(&id, "transaction_not_found", "transaction")?;
    let found = book.reads_at(params.min_position).transaction(uuid).await?;
    let read = ReadTransaction::decode(found.value.ok_or_else(not_found)?)?;
    let mut view = transaction_view(&read.recorded).ok_or_else(not_found)?;
    view.reversed_by = read.reversed_by;
    if let Some(settlement) = read.settlement_view() {
        view.status = settlement.status.clone();
        view.settlement = Some(settlement);
    }
    Ok(at_position(found.position, view))
}

/// A trade with its terms, fees and postings.
#[utoipa::path(
    get, path = "/v1/trades/{id}", tag = "trades",
    params(("id" = String, Path, description = "Trade id"), ReadParams),
    responses((status = 200, body = TradeView), (status = 404, body = Problem), (status = "4XX", body = Problem), (status = 503, body = Problem))
)]
async fn get_trade(
    book: Book,
    PathParam(id): PathParam<String>,
    Params(params): Params<ReadParams>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::NotFound {
        code: "trade_not_found",
        what: format!("trade {id:?}"),
    };
    let uuid = parse_id(&id, "trade_not_found", "trade")?;
    let found = book.reads_at(params.min_position).transaction(uuid).await?;
    let read = ReadTransaction::decode(found.value.ok_or_else(not_found)?)?;
    let mut view = trade_view(&read.recorded).ok_or_else(not_found)?;
    view.reversed_by = read.reversed_by;
    if let Some(settlement) = read.settlement_view() {
        view.status = settlement.status.clone();
        view.settlement = Some(settlement);
    }
    Ok(at_position(found.position, view))
}

/// A transaction as read, its events decoded.
struct ReadTransaction {
    recorded: CommittedEvent,
    reversed_by: Option<Uuid>,
    /// The event that ended its hold, if it was pending and has been settled.
    end: Option<CommittedEvent>,
    /// The latest partial settlement of a trade with a settlement date.
    latest_part: Option<CommittedEvent>,
}

impl ReadTransaction {
    fn decode(record: TransactionRecord) -> Result<Self, ApiError> {
        Ok(Self {
            recorded: decode_stored(record.event)?,
            reversed_by: record.reversed_by,
            end: record.settlement.map(decode_stored).transpose()?,
            latest_part: record.latest_part.map(decode_stored).transpose()?,
        })
    }

    /// How its settlement stands: for a trade with a settlement date, from the start; for any
    /// other pending transaction, the event that settled it, once one has.
    fn settlement_view(&self) -> Option<SettlementView> {
        let (part, end) = (self.latest_part.as_ref(), self.end.as_ref());
        dated_settlement_view(&self.recorded, part, end).or_else(|| end.and_then(settlement_view))
    }
}

/// A transaction as the log recorded it, for its reversal: what moved (for a pending one, what
/// its post moved; nothing if it is still pending, voided or expired).
async fn original(book: &Book, id: TransactionId) -> Result<OriginalTransaction, ApiError> {
    let found = book.reads().transaction(id.0).await?;
    let record = found.value.ok_or_else(|| ApiError::NotFound {
        code: "transaction_not_found",
        what: format!("transaction {id}"),
    })?;
    let ReadTransaction {
        recorded,
        end: settlement,
        latest_part,
        ..
    } = ReadTransaction::decode(record)?;
    let event = &recorded.event;
    // What moved, and when it counts: a pending transaction's post, or the transaction itself.
    // A trade settled in parts moved all of them: what settled, as of its last settlement.
    let (postings, effective_at) = match settlement {
        Some(ref end) if latest_part.is_some() => (
            settled_postings(&recorded, latest_part.as_ref(), Some(end)),
            end.event.effective_or(end.recorded_at),
        ),
        Some(
            posted @ CommittedEvent {
                event: Event::PendingPosted(_),
                ..
            },
        ) => (
            posted.event.postings().to_vec(),
            posted.event.effective_or(posted.recorded_at),
        ),
        _ if event.is_pending() => (Vec::new(), event.effective_or(recorded.recorded_at)),
        _ => (
            event.postings().to_vec(),
            event.effective_or(recorded.recorded_at),
        ),
    };
    let is_reversal = matches!(event, Event::TransactionPosted(t) if t.reverses.is_some());
    Ok(OriginalTransaction {
        id,
        postings,
        is_reversal,
        effective_at,
    })
}

/// Act on a recorded transaction or trade. `post` moves what a pending one reserved (or, with
/// `amounts`, up to it per posting, releasing the rest); `void` releases it all (a hold is settled
/// once: `pending_already_posted`, `pending_already_voided`, `pending_expired`, also when its
/// `expires_at` has passed, or `pending_not_found`). `reverse` appends a transaction of kind
/// `reversal` with every posting of what moved swapped, linked both ways; a transaction is
/// reversed once and a reversal is not reversed (`transaction_already_reversed`,
/// `reversal_not_reversible`); the balance rules apply unless `force`, which needs an API key
/// with the `admin` scope (403 `forbidden` otherwise) and is recorded in the event.
#[utoipa::path(
    post, path = "/v1/transactions/{id}/{action}", tag = "transactions",
    params(("id" = String, Path, description = "The transaction's id"),
           ("action" = String, Path, description = "`post`, `void` or `reverse`"),
           ("Idempotency-Key" = String, Header, description = "1 to 255 printable ASCII characters")),
    request_body(content = TransactionActionRequest, description = "Optional: an empty body is `{}`"),
    responses(
        (status = 201, description = "`post`, `void`: a SettlementView; `reverse`: the reversal, a TransactionView", body = SettlementView),
        (status = 403, body = Problem, description = "forbidden: force needs the admin scope"),
        (status = 404, body = Problem, description = "transaction_not_found (reverse)"),
        (status = 422, body = Problem, description = "pending_not_found, pending_already_posted, pending_already_voided, pending_expired, transaction_already_reversed, reversal_not_reversible, insufficient_funds, account_frozen, validation_error, amount_precision"),
        (status = "4XX", body = Problem), (status = 503, body = Problem),
    )
)]
// An axum handler: each argument is an extractor.
#[allow(clippy::too_many_arguments)]
async fn act_on_transaction(
    State(state): State<AppState>,
    book: Book,
    PathParam((id, action)): PathParam<(String, String)>,
    key: IdempotencyKey,
    origin: RequestOrigin,
    dry_run: DryRun,
    caller: Caller,
    ActionBody(request): ActionBody<TransactionActionRequest>,
) -> Result<Response, ApiError> {
    let action = match action.as_str() {
        "post" => TransactionAction::Post,
        "void" => TransactionAction::Void,
        "reverse" => TransactionAction::Reverse,
        _ => return Err(ApiError::RouteNotFound),
    };
    let (code, what) = match action {
        TransactionAction::Reverse => ("transaction_not_found", "transaction"),
        _ => ("pending_not_found", "pending transaction"),
    };
    let transaction_id = TransactionId(parse_id(&id, code, what)?);
    if request.force && action == TransactionAction::Reverse && !caller.allows(Scope::Admin) {
        return Err(ApiError::Forbidden(
            "a forced reversal needs an API key with the admin scope".into(),
        ));
    }
    let original = match action {
        TransactionAction::Reverse => Some(original(&book, transaction_id).await?),
        _ => None,
    };
    let command = TransactionActionCommand {
        transaction_id,
        action,
        request,
        original,
    };
    submit(&state, &book, key, origin, &command, dry_run).await
}

/// Settle a trade with a settlement date before that date: everything it still reserves, or
/// with `amounts` a part of it (the rest stays reserved, and the ledger posts it at
/// `settles_at`; a part may be settled again). On a two-phase trade (`pending`) it is
/// `POST /v1/transactions/{id}/post`: whole only. A hold is settled once
/// (`pending_already_posted`, `pending_already_voided` also after a failed settlement,
/// `pending_expired`, `pending_not_found`).
#[utoipa::path(
    post, path = "/v1/trades/{id}/settle", tag = "trades",
    params(("id" = String, Path, description = "The trade's id"),
           ("Idempotency-Key" = String, Header, description = "1 to 255 printable ASCII characters")),
    request_body(content = SettleTradeRequest, description = "Optional: an empty body is `{}`"),
    responses(
        (status = 201, description = "The settlement: status `posted`, or `partially_settled` with what stays `remaining`", body = SettlementView),
        (status = 422, body = Problem, description = "pending_not_found, pending_already_posted, pending_already_voided, pending_expired, insufficient_funds, account_frozen, validation_error, amount_precision"),
        (status = "4XX", body = Problem), (status = 503, body = Problem),
    )
)]
async fn settle_trade(
    State(state): State<AppState>,
    book: Book,
    PathParam(id): PathParam<String>,
    key: IdempotencyKey,
    origin: RequestOrigin,
    dry_run: DryRun,
    ActionBody(request): ActionBody<SettleTradeRequest>,
) -> Result<Response, ApiError> {
    let trade_id = TransactionId(parse_id(&id, "pending_not_found", "pending trade")?);
    let command = SettleTradeCommand { trade_id, request };
    submit(&state, &book, key, origin, &command, dry_run).await
}

/// Record that a trade's settlement failed, for a reason: what it has not settled yet is voided
/// (parts settled before stay settled). Only a trade's settlement fails (a pending transaction
/// is voided); a hold is settled once, as for `/settle`.
#[utoipa::path(
    post, path = "/v1/trades/{id}/fail", tag = "trades",
    params(("id" = String, Path, description = "The trade's id"),
           ("Idempotency-Key" = String, Header, description = "1 to 255 printable ASCII characters")),
    request_body = FailTradeRequest,
    responses(
        (status = 201, description = "The failed settlement: status `failed`, with its `reason`", body = SettlementView),
        (status = 422, body = Problem, description = "pending_not_found, pending_already_posted, pending_already_voided, pending_expired, validation_error"),
        (status = "4XX", body = Problem), (status = 503, body = Problem),
    )
)]
async fn fail_trade(
    State(state): State<AppState>,
    book: Book,
    PathParam(id): PathParam<String>,
    key: IdempotencyKey,
    origin: RequestOrigin,
    dry_run: DryRun,
    JsonBody(request): JsonBody<FailTradeRequest>,
) -> Result<Response, ApiError> {
    let trade_id = TransactionId(parse_id(&id, "pending_not_found", "pending trade")?);
    let command = FailTradeCommand { trade_id, request };
    submit(&state, &book, key, origin, &command, dry_run).await
}

/// One command of a batch: its own idempotency key and exactly one of `transaction`, `transfer`
/// or `trade`, each as its own endpoint takes it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchCommand {
    /// 1 to 255 printable ASCII characters; the same key and command posted on its own are the
    /// same request.
    pub idempotency_key: String,
    pub transaction: Option<TransactionRequest>,
    pub transfer: Option<TransferRequest>,
    pub trade: Option<TradeRequest>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// All or nothing: when one command is refused, none is applied, nothing is recorded under
    /// any of the keys (so the same batch may be sent again), and every other command answers
    /// 422 `batch_aborted`.
    #[serde(default)]
    pub atomic: bool,
    /// 1 to 8,000 commands, decided in this order.
    pub commands: Vec<BatchCommand>,
}

/// The answer to one command of a batch: what posting it on its own would have answered.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResult {
    pub status: u16,
    /// True when this is the stored answer to an earlier request with the same key.
    pub replayed: bool,
    /// The position of the command's event, when it was accepted.
    pub position: Option<i64>,
    /// The created transaction or trade, or a problem document.
    #[schema(value_type = Object)]
    pub body: Box<RawValue>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResponse {
    /// One result per command, in order.
    pub results: Vec<BatchResult>,
    /// Present (true) with `?dry_run=true`: nothing was written; each result is what the real
    /// batch would answer (`200` and the would-be view for an acceptance, with no `position`).
    #[serde(skip_serializing_if = "crate::is_false")]
    pub dry_run: bool,
    /// With `?dry_run=true`: every account the batch would open or change, before its first
    /// command and after its last (empty when an atomic batch would be refused).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub balances: Option<Vec<crate::dry_run::AccountChangeView>>,
}

impl From<RenderedReply> for BatchResult {
    fn from(reply: RenderedReply) -> Self {
        BatchResult {
            status: reply.status.as_u16(),
            replayed: reply.replayed,
            position: reply.position,
            body: crate::dry_run::raw(reply.body),
        }
    }
}

impl BatchCommand {
    /// The command as the writer takes it, or why it cannot be one (`index`: its place in the
    /// batch, for the message; `origin`: who sent it, which scopes its key).
    pub fn write_item(
        self,
        index: usize,
        origin: &RequestOrigin,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<WriteItem, ApiError> {
        let IdempotencyKey(key) = IdempotencyKey::parse(self.idempotency_key.as_bytes())
            .map_err(|e| ApiError::Validation(format!("command {index}: {e}")))?;
        let key = origin.scoped_key(key);
        let in_batch = |e: ApiError| ApiError::Validation(format!("command {index}: {e}"));
        match (self.transaction, self.transfer, self.trade) {
            (Some(r), None, None) => r.write_item(key, now).map_err(in_batch),
            (None, Some(r), None) => r.write_item(key, now).map_err(in_batch),
            (None, None, Some(r)) => r.write_item(key, now).map_err(in_batch),
            _ => Err(ApiError::Validation(format!(
                "command {index} must have exactly one of transaction, transfer or trade"
            ))),
        }
    }
}

/// Post up to 8,000 transactions, transfers and trades in one request. They are decided in order,
/// in one batch of the writer, and each is answered on its own, as if posted alone (and replayed
/// by its own key); with `atomic`, all are applied or none is. The request needs no
/// `Idempotency-Key` header: each command carries its own.
#[utoipa::path(
    post, path = "/v1/transactions/batch", tag = "transactions",
    request_body = BatchRequest,
    responses(
        (status = 200, body = BatchResponse, description = "One result per command; `Ledger-Position` is the last position written"),
        (status = "4XX", body = Problem), (status = 503, body = Problem),
    )
)]
async fn post_batch(
    State(state): State<AppState>,
    book: Book,
    origin: RequestOrigin,
    DryRun(dry_run): DryRun,
    BatchJsonBody(request): BatchJsonBody<BatchRequest>,
) -> Result<Response, ApiError> {
    let max = state.limits().batch_commands_max;
    if request.commands.is_empty() || request.commands.len() > max {
        return Err(ApiError::Validation(format!(
            "a batch has 1 to {max} commands; this one has {}",
            request.commands.len()
        )));
    }
    let now = state.clock().now();
    let items = request
        .commands
        .into_iter()
        .enumerate()
        .map(|(index, command)| command.write_item(index, &origin, now))
        .collect::<Result<Vec<_>, _>>()?;
    if dry_run {
        let answer = book
            .writer()
            .dry_run(items, request.atomic, origin.0)
            .await?;
        let results = answer.replies.into_iter().map(render_dry_reply);
        return Ok(axum::Json(BatchResponse {
            results: results.map(BatchResult::from).collect(),
            dry_run: true,
            balances: Some(crate::dry_run::balances_view(answer.balances)),
        })
        .into_response());
    }
    let answers = book
        .writer()
        .submit_batch(items, request.atomic, origin.0)
        .await?;
    let mut last_position = None;
    let results = answers
        .into_iter()
        .map(|answer| {
            let reply = render_reply(answer);
            last_position = reply.position.max(last_position);
            BatchResult::from(reply)
        })
        .collect();
    let body = BatchResponse {
        results,
        dry_run: false,
        balances: None,
    };
    Ok(match last_position {
        Some(position) => at_position(position, body),
        None => axum::Json(body).into_response(),
    })
}
