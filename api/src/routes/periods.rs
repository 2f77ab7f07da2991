//! Closed periods and trial balances. A close reads the trial balance as of its end from the
//! postings history and records its digest in a `PeriodClosed` event; the writer accepts it only
//! if nothing written since that read counts in the period, and otherwise the close reads again
//! (`CLOSE_ATTEMPTS_MAX`). A reopen opens the latest closed period again.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use domain::{Event, Rejection};
use infrastructure::event_store::StoredEvent;
use infrastructure::projections::effective::TrialBalanceAt;
use infrastructure::{Outcome, Reply};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::books::Book;
use crate::dry_run::{render_dry_run, DryRun};
use crate::error::{ApiError, Problem};
use crate::extract::{IdempotencyKey, JsonBody, Params, PathParam, RequestOrigin};
use crate::render::{decode_stored, period_event_view};
use crate::requests::{ClosePeriodCommand, ClosePeriodRequest, ReopenPeriodRequest};
use crate::routes::write::{
    at_position, csv_at_position, render_reply, submit, submit_answer, wants_csv, CommandRequest,
};
use crate::state::AppState;
use crate::views::{
    PeriodEventView, PeriodList, PeriodView, TrialBalanceRowView, TrialBalanceTotalView,
    TrialBalanceView,
};

/// How many times a close reads the trial balance again after writes raced it.
const CLOSE_ATTEMPTS_MAX: usize = 8;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(close_period))
        .routes(routes!(reopen_period))
        .routes(routes!(list_periods))
        .routes(routes!(get_period))
        .routes(routes!(trial_balance))
}

/// Close the books through `through` (admin): from now on every write that would count at or
/// before it is refused (422 `period_closed`). The event records the digest of the trial balance
/// as of `through`, served in full by `GET /v1/periods/{period}`.
#[utoipa::path(
    post, path = "/v1/periods/close", tag = "periods",
    params(("Idempotency-Key" = String, Header, description = "1 to 255 printable ASCII characters")),
    request_body = ClosePeriodRequest,
    responses(
        (status = 201, body = PeriodEventView),
        (status = 409, body = Problem, description = "period_close_raced: writes kept landing in the period while it was read"),
        (status = 422, body = Problem, description = "validation_error: not later than the last close, or not in the past"),
        (status = "4XX", body = Problem), (status = 503, body = Problem),
    )
)]
async fn close_period(
    State(state): State<AppState>,
    book: Book,
    IdempotencyKey(key): IdempotencyKey,
    origin: RequestOrigin,
    DryRun(dry_run): DryRun,
    JsonBody(request): JsonBody<ClosePeriodRequest>,
) -> Result<Response, ApiError> {
    let mut command = ClosePeriodCommand {
        request,
        trial_balance: None,
    };
    if dry_run {
        command.trial_balance = Some(trial_balance_for_close(&book, &command).await?);
        let item = command.write_item(origin.scoped_key(key), state.clock().now())?;
        let answer = book.writer().dry_run(vec![item], false, origin.0).await?;
        return Ok(render_dry_run(answer).into_response());
    }
    let mut answer = None;
    for _ in 0..CLOSE_ATTEMPTS_MAX {
        command.trial_balance = Some(trial_balance_for_close(&book, &command).await?);
        let submitted = submit_answer(&state, &book, key.clone(), &origin, &command).await?;
        let raced = matches!(
            &submitted,
            Ok(Reply {
                outcome: Outcome::Rejected(Rejection::PeriodCloseRaced { .. }),
                ..
            })
        );
        answer = Some(submitted);
        if !raced {
            break;
        }
    }
    let answer = answer.ok_or(ApiError::Infrastructure(
        infrastructure::Error::CommitFailed,
    ))?;
    Ok(render_reply(answer).into_response())
}

/// The trial balance a close records: as of its end, at the head the projections reflect now;
/// the position it was read at and its digest.
async fn trial_balance_for_close(
    book: &Book,
    command: &ClosePeriodCommand,
) -> Result<(i64, String), ApiError> {
    let read = book
        .reads_at(None)
        .trial_balance(command.request.through, None)
        .await?
        .value;
    Ok((read.known_at_position, read.trial_balance.digest()))
}

/// Open the latest closed period again (admin), saying why: writes may count in it once more,
/// and a later close records the trial balance anew.
#[utoipa::path(
    post, path = "/v1/periods/reopen", tag = "periods",
    params(("Idempotency-Key" = String, Header, description = "1 to 255 printable ASCII characters")),
    request_body = ReopenPeriodRequest,
    responses(
        (status = 201, body = PeriodEventView),
        (status = 422, body = Problem, description = "no_closed_period, validation_error"),
        (status = "4XX", body = Problem), (status = 503, body = Problem),
    )
)]
async fn reopen_period(
    State(state): State<AppState>,
    book: Book,
    key: IdempotencyKey,
    origin: RequestOrigin,
    dry_run: DryRun,
    JsonBody(request): JsonBody<ReopenPeriodRequest>,
) -> Result<Response, ApiError> {
    submit(&state, &book, key, origin, &request, dry_run).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PeriodParams {
    /// Answer only once the ledger reflects at least this position (409 if not reached in time).
    pub min_position: Option<i64>,
}

/// Every close and reopen, in log order.
#[utoipa::path(
    get, path = "/v1/periods", tag = "periods", params(PeriodParams),
    responses((status = 200, body = PeriodList), (status = "4XX", body = Problem), (status = 503, body = Problem))
)]
async fn list_periods(
    book: Book,
    Params(params): Params<PeriodParams>,
) -> Result<Response, ApiError> {
    let periods = book.reads_at(params.min_position).periods().await?;
    let items = periods
        .value
        .into_iter()
        .map(period_view)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(at_position(periods.position, PeriodList { items }))
}

fn period_view(stored: StoredEvent) -> Result<PeriodEventView, ApiError> {
    let committed = decode_stored(stored)?;
    period_event_view(&committed).ok_or_else(|| {
        ApiError::Infrastructure(infrastructure::Error::Corrupt(format!(
            "the period at position {} is not a close or a reopen",
            committed.position
        )))
    })
}

/// A close and the trial balance it fixed, recomputed from the postings history and checked
/// against the digest the close recorded.
#[utoipa::path(
    get, path = "/v1/periods/{period}", tag = "periods",
    params(("period" = u32, Path, description = "The close's number: 1 for the ledger's first"), PeriodParams),
    responses((status = 200, body = PeriodView), (status = 404, body = Problem), (status = "4XX", body = Problem), (status = 503, body = Problem))
)]
async fn get_period(
    book: Book,
    PathParam(period): PathParam<String>,
    Params(params): Params<PeriodParams>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::NotFound {
        code: "period_not_found",
        what: format!("period {period}"),
    };
    let number: u32 = period.parse().map_err(|_| not_found())?;
    let reads = book.reads_at(params.min_position);
    let periods = reads.periods().await?;
    let mut close = None;
    let mut reopened = false;
    for stored in periods.value {
        match &decode_stored(stored.clone())?.event {
            Event::PeriodClosed(e) if e.period == number => close = Some(stored),
            Event::PeriodReopened(e) if e.period == number => reopened = true,
            _ => {}
        }
    }
    let close = period_view(close.ok_or_else(not_found)?)?;
    let (Some(through), Some(known_at), Some(digest)) = (
        close.through,
        close.known_at_position,
        close.trial_balance_digest.clone(),
    ) else {
        return Err(not_found());
    };
    let read = reads.trial_balance(through, Some(known_at)).await?;
    let trial_balance = trial_balance_view(read.value);
    // Read back, the trial balance must be the one the close fixed.
    if trial_balance.digest != digest {
        return Err(ApiError::Infrastructure(infrastructure::Error::Corrupt(
            format!(
                "period {number}: the trial balance now has digest {}, the close recorded {digest}",
                trial_balance.digest
            ),
        )));
    }
    let view = PeriodView {
        close,
        reopened,
        trial_balance,
    };
    Ok(at_position(read.position, view))
}

fn trial_balance_view(read: TrialBalanceAt) -> TrialBalanceView {
    let tb = &read.trial_balance;
    TrialBalanceView {
        as_of: read.as_of,
        known_at_position: read.known_at_position,
        rows: tb
            .rows()
            .iter()
            .map(|r| TrialBalanceRowView {
                account: r.account.to_string(),
                asset: r.asset.to_string(),
                balance: r.balance.to_string(),
            })
            .collect(),
        totals: tb
            .totals()
            .into_iter()
            .map(|(asset, total)| TrialBalanceTotalView {
                asset: asset.to_string(),
                total: total.to_string(),
            })
            .collect(),
        digest: tb.digest(),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TrialBalanceParams {
    /// Entries that count at or before this time (RFC 3339).
    pub as_of: DateTime<Utc>,
    /// As known at this position: entries recorded later are left out. Default: the head.
    pub known_at_position: Option<i64>,
    /// Answer only once the ledger reflects at least this position (409 if not reached in time).
    pub min_position: Option<i64>,
}

/// The trial balance as of a time: every account's posted balance in every asset where it is
/// not zero, and the sum per asset (zero). `Accept: text/csv` for CSV. A scan of the postings
/// recorded up to `known_at_position`.
#[utoipa::path(
    get, path = "/v1/reports/trial-balance", tag = "periods", params(TrialBalanceParams),
    responses(
        (status = 200, body = TrialBalanceView, description = "JSON, or CSV with `Accept: text/csv`: `account,asset,balance`, one row per balance, then one per asset with `account` empty and the total"),
        (status = "4XX", body = Problem), (status = 503, body = Problem)
    )
)]
async fn trial_balance(
    book: Book,
    headers: HeaderMap,
    Params(params): Params<TrialBalanceParams>,
) -> Result<Response, ApiError> {
    let known_at = params.known_at_position;
    if known_at.is_some_and(|p| p < 0) {
        return Err(ApiError::InvalidRequest(
            "known_at_position is negative".into(),
        ));
    }
    let reads = book.reads_at(params.min_position.max(known_at));
    let read = reads.trial_balance(params.as_of, known_at).await?;
    let view = trial_balance_view(read.value);
    if !wants_csv(&headers) {
        return Ok(at_position(read.position, view));
    }
    let mut csv = String::from("account,asset,balance\n");
    for row in &view.rows {
        csv.push_str(&format!("{},{},{}\n", row.account, row.asset, row.balance));
    }
    for total in &view.totals {
        csv.push_str(&format!(",{},{}\n", total.asset, total.total));
    }
    Ok(csv_at_position(read.position, csv))
}
