//! Prices: marks are events (`PriceMarked`), so that every market value and unrealized P&L the
//! ledger serves can be reproduced from the log. A mark is recorded alone or in a batch that is
//! recorded all or none; the `prices` projection serves the latest mark at or before a time, and
//! every mark newest first.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use domain::AssetCode;
use infrastructure::projections::prices::Mark;
use infrastructure::{Reply, WriteItem};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::books::Book;
use crate::dry_run::{render_dry_reply, DryRun};
use crate::error::{ApiError, Problem};
use crate::extract::{IdempotencyKey, JsonBody, Params, RequestOrigin};
use crate::requests::{MarkInBatch, Marks, PricesRequest};
use crate::routes::write::{at_position, render_reply, submit, CommandRequest, RenderedReply};
use crate::state::AppState;
use crate::views::{MarkRecordView, MarksView, PriceList, PricesAnswer, PricesDryRunAnswer};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(post_prices, get_prices))
}

/// Record a mark: the price of one unit of `instrument` in `currency` as of a time, never later
/// than now (422 `validation_error`). Or `marks`: up to 1,000, decided in order and recorded all
/// or none (a refused one answers for the batch). Marks move no money; positions read the latest
/// at or before the time they are valued at.
#[utoipa::path(
    post, path = "/v1/prices", tag = "accounts",
    params(("Idempotency-Key" = String, Header, description = "1 to 255 printable ASCII characters")),
    request_body = PricesRequest,
    responses(
        (status = 201, body = PricesAnswer, description = "One mark: its PriceView; `marks`: a MarksView"),
        (status = 200, body = PricesDryRunAnswer, description = "`?dry_run=true` that would be accepted: nothing was written"),
        (status = 422, body = Problem, description = "validation_error (a mark in the future), asset_not_found"),
        (status = "4XX", body = Problem), (status = 503, body = Problem),
    )
)]
async fn post_prices(
    State(state): State<AppState>,
    book: Book,
    key: IdempotencyKey,
    origin: RequestOrigin,
    dry_run: DryRun,
    JsonBody(request): JsonBody<PricesRequest>,
) -> Result<Response, ApiError> {
    let marks = match request.marks()? {
        Marks::One(mark) => return submit(&state, &book, key, origin, &mark, dry_run).await,
        Marks::Batch(marks) => marks,
    };
    let IdempotencyKey(key) = key;
    let scoped = origin.scoped_key(key);
    let now = state.clock().now();
    let items = (0..marks.len())
        .map(|index| {
            // Each mark's own key, which no client key can be (`ledger:` is the ledger's own).
            let key = format!(
                "{}marks:{index}:{scoped}",
                infrastructure::INTERNAL_KEY_PREFIX
            );
            MarkInBatch {
                marks: &marks,
                index,
            }
            .write_item(key, now)
        })
        .collect::<Result<Vec<WriteItem>, ApiError>>()?;
    let (replies, dry) = if dry_run.0 {
        let answer = book.writer().dry_run(items, true, origin.0).await?;
        let replies: Vec<RenderedReply> =
            answer.replies.into_iter().map(render_dry_reply).collect();
        (replies, true)
    } else {
        let answers: Vec<Result<Reply, infrastructure::Error>> =
            book.writer().submit_batch(items, true, origin.0).await?;
        (answers.into_iter().map(render_reply).collect(), false)
    };
    Ok(batch_answer(replies, dry))
}

/// The answer to a batch of marks: the refusal that stopped it (rather than the `batch_aborted`
/// of the others), or every mark's view, with the last position and `Idempotent-Replayed` when
/// every mark was a replay.
fn batch_answer(replies: Vec<RenderedReply>, dry_run: bool) -> Response {
    let code_of = |reply: &RenderedReply| {
        serde_json::from_slice::<serde_json::Value>(&reply.body)
            .ok()
            .and_then(|problem| problem["code"].as_str().map(str::to_owned))
    };
    let refused: Vec<&RenderedReply> = replies.iter().filter(|r| !r.status.is_success()).collect();
    if let Some(first) = refused.first() {
        let cause = refused
            .iter()
            .find(|r| code_of(r).as_deref() != Some("batch_aborted"))
            .unwrap_or(first);
        return RenderedReply {
            status: cause.status,
            body: cause.body.clone(),
            position: None,
            replayed: cause.replayed,
        }
        .into_response();
    }
    let position = replies.iter().filter_map(|r| r.position).max();
    let replayed = !replies.is_empty() && replies.iter().all(|r| r.replayed);
    let status = replies.first().map(|r| r.status);
    let view = MarksView {
        marks: replies
            .into_iter()
            .map(|r| crate::dry_run::raw(r.body))
            .collect(),
        dry_run,
    };
    RenderedReply {
        status: status.unwrap_or(axum::http::StatusCode::CREATED),
        body: serde_json::to_vec(&view).unwrap_or_default(),
        position,
        replayed,
    }
    .into_response()
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PricesParams {
    pub instrument: Option<String>,
    pub currency: Option<String>,
    /// The latest mark of `instrument` in `currency` (both needed) at or before this time
    /// (RFC 3339): one item, or none.
    pub as_of: Option<DateTime<Utc>>,
    /// Without `as_of`: 1 to 1000 marks a page (anything else is a 400); 100 when absent.
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page: opaque and authenticated, good only with the same
    /// filters.
    pub cursor: Option<String>,
    pub min_position: Option<i64>,
}

/// Marks: with `as_of`, the latest of a pair at or before it; otherwise every mark, of a pair or
/// an instrument or a currency when given, newest first (by position), a page at a time.
#[utoipa::path(
    get, path = "/v1/prices", tag = "accounts", params(PricesParams),
    responses((status = 200, body = PriceList), (status = "4XX", body = Problem), (status = 503, body = Problem))
)]
async fn get_prices(
    State(state): State<AppState>,
    book: Book,
    Params(params): Params<PricesParams>,
) -> Result<Response, ApiError> {
    let asset = |a: Option<&str>| {
        a.map(|a| {
            a.parse::<AssetCode>()
                .map_err(|e| ApiError::InvalidRequest(e.to_string()))
        })
        .transpose()
    };
    let instrument = asset(params.instrument.as_deref())?;
    let currency = asset(params.currency.as_deref())?;
    let reads = book.reads_at(params.min_position);
    if let Some(as_of) = params.as_of {
        let (Some(instrument), Some(currency)) = (&instrument, &currency) else {
            return Err(ApiError::InvalidRequest(
                "as_of goes with both instrument and currency".into(),
            ));
        };
        if params.cursor.is_some() || params.limit.is_some() {
            return Err(ApiError::InvalidRequest(
                "as_of reads one mark: no limit or cursor".into(),
            ));
        }
        let read = reads
            .latest_mark(instrument.as_str(), currency.as_str(), as_of)
            .await?;
        let items = read.value.into_iter().map(mark_record_view).collect();
        let list = PriceList {
            items,
            next_cursor: None,
        };
        return Ok(at_position(read.position, list));
    }
    let limit = state.page_size(params.limit)?;
    let filters = [
        "prices",
        instrument.as_ref().map_or("", AssetCode::as_str),
        currency.as_ref().map_or("", AssetCode::as_str),
    ];
    let before = params
        .cursor
        .map(|c| {
            let content = state.cursors().open(&filters, &c)?;
            content.parse::<i64>().map_err(|_| {
                ApiError::InvalidRequest("cursor is not one this server issued".into())
            })
        })
        .transpose()?;
    let read = reads
        .marks(
            instrument.as_ref().map(AssetCode::as_str),
            currency.as_ref().map(AssetCode::as_str),
            before,
            limit + 1,
        )
        .await?;
    let mut marks = read.value;
    let next_cursor = if marks.len() as i64 > limit {
        marks.truncate(limit as usize);
        marks
            .last()
            .map(|m| state.cursors().issue(&filters, &m.position.to_string()))
    } else {
        None
    };
    let items = marks.into_iter().map(mark_record_view).collect();
    Ok(at_position(read.position, PriceList { items, next_cursor }))
}

fn mark_record_view(mark: Mark) -> MarkRecordView {
    MarkRecordView {
        instrument: mark.instrument,
        currency: mark.currency,
        price: mark.price.to_string(),
        as_of: mark.as_of,
        position: mark.position,
        recorded_at: mark.recorded_at,
    }
}
