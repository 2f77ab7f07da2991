//! Positions and lots: an account's books (now or as of a date) with their open lots, cost basis,
//! realized P&L and the latest mark; its realized P&L over a range of dates, as JSON or CSV; the
//! books of every account under a prefix summed; and the booking method an account's disposals
//! close lots by. Read from the `lots` and `prices` projections (asynchronous): every read waits
//! for them to reflect what was written before it, and says which position it reflects.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::{DateTime, NaiveDate, Utc};
use domain::{AccountCode, AssetCode};
use infrastructure::projections::balances::BalanceRecord;
use infrastructure::projections::lots::reads::{
    BookRead, ClosingRead, MarkAt, PositionRollupRead, PositionsAsOf, PositionsRead,
};
use infrastructure::ReadStore;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::books::Book;
use crate::dry_run::DryRun;
use crate::error::{ApiError, Problem};
use crate::extract::{IdempotencyKey, JsonBody, Params, PathParam, RequestOrigin};
use crate::requests::{BookingMethodCommand, BookingMethodRequest};
use crate::routes::write::{at_position, csv_at_position, submit, wants_csv};
use crate::state::AppState;
use crate::views::{
    BookingMethodView, LotView, MarkView, PositionRollupView, PositionTotalView, PositionView,
    PositionsView, RealizedItemView, RealizedLotView, RealizedTotalView, RealizedView,
};

/// Decimal places of a unit cost and an average cost. They are divisions: shown rounded half to
/// even at this many places, for reading only; no figure the ledger serves is computed from them.
pub const UNIT_COST_PLACES: u32 = 18;
/// Movements of an account with a trade date by `as_of` that a read of its positions as of a
/// date computes its books from at most; past it the read is refused (422).
pub const POSITIONS_AS_OF_MOVEMENTS_MAX: i64 = 100_000;
/// Closed parts a realized P&L read returns at most; a longer range is refused (422), never cut.
pub const REALIZED_PARTS_MAX: i64 = 10_000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(account_positions))
        .routes(routes!(account_realized))
        .routes(routes!(position_rollup))
        .routes(routes!(set_booking_method))
}

/// Set the booking method an account's later disposals close lots by: `fifo`, `lifo`, `hifo`
/// (highest unit cost first) or `average`. It applies from its position on; earlier closings
/// keep the method they were made by.
#[utoipa::path(
    put, path = "/v1/accounts/{id_or_code}/booking-method", tag = "accounts",
    params(("id_or_code" = String, Path, description = "Account id (UUID) or code"),
           ("Idempotency-Key" = String, Header, description = "1 to 255 printable ASCII characters")),
    request_body = BookingMethodRequest,
    responses(
        (status = 201, body = BookingMethodView),
        (status = 422, body = Problem, description = "account_not_found, account_closed, validation_error"),
        (status = "4XX", body = Problem), (status = 503, body = Problem),
    )
)]
async fn set_booking_method(
    State(state): State<AppState>,
    book: Book,
    PathParam(id_or_code): PathParam<String>,
    key: IdempotencyKey,
    origin: RequestOrigin,
    dry_run: DryRun,
    JsonBody(request): JsonBody<BookingMethodRequest>,
) -> Result<Response, ApiError> {
    let account = id_or_code
        .parse()
        .map_err(|_| super::accounts::not_found(&id_or_code))?;
    let command = BookingMethodCommand { account, request };
    submit(&state, &book, key, origin, &command, dry_run).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PositionsParams {
    /// The positions as of this time (RFC 3339): the books computed again from the movements
    /// with a trade date on or before its date (UTC), as known now, at most 100,000 of them
    /// (more: 422); balances as of it; marks at or before it.
    pub as_of: Option<DateTime<Utc>>,
    pub min_position: Option<i64>,
}

/// An account's positions: per instrument and cost currency, the quantity on the trade date and
/// settled, the open lots and their cost basis, the realized P&L, and the latest mark with the
/// market value and unrealized P&L at it.
#[utoipa::path(
    get, path = "/v1/accounts/{id_or_code}/positions", tag = "accounts",
    params(("id_or_code" = String, Path, description = "Account id (UUID) or code"), PositionsParams),
    responses((status = 200, body = PositionsView), (status = 404, body = Problem), (status = "4XX", body = Problem), (status = 503, body = Problem))
)]
async fn account_positions(
    book: Book,
    PathParam(id_or_code): PathParam<String>,
    Params(params): Params<PositionsParams>,
) -> Result<Response, ApiError> {
    let reads = book.reads_at(params.min_position);
    let (code, id) = account_of(&reads, &id_or_code).await?;
    let read = match params.as_of {
        None => reads.positions(&code, id).await?,
        Some(as_of) => {
            let read = reads
                .positions_as_of(&code, id, as_of, POSITIONS_AS_OF_MOVEMENTS_MAX)
                .await?;
            match read.value {
                PositionsAsOf::Read(value) => infrastructure::AtPosition {
                    value,
                    position: read.position,
                },
                PositionsAsOf::TooManyMovements { movements_max } => {
                    return Err(ApiError::Validation(format!(
                        "{code} has more than {movements_max} movements by {as_of}: positions as \
                         of a date compute its books from them; read them now instead"
                    )))
                }
            }
        }
    };
    let positions = position_views(read.value, params.as_of.is_some())?;
    let view = PositionsView {
        account: code.to_string(),
        position: read.position,
        as_of: params.as_of,
        positions,
    };
    Ok(at_position(read.position, view))
}

/// The account a path names, with its code and id; 404 when there is none.
async fn account_of(
    reads: &ReadStore,
    id_or_code: &str,
) -> Result<(AccountCode, uuid::Uuid), ApiError> {
    let key = super::accounts::account_key(id_or_code)?;
    let account = reads.account(&key).await?;
    let account = account
        .value
        .ok_or_else(|| super::accounts::not_found(id_or_code))?;
    let code = AccountCode::try_from(account.code)
        .map_err(|e| ApiError::Infrastructure(infrastructure::Error::Corrupt(e.to_string())))?;
    Ok((code, account.id))
}

/// The views of an account's books, with the figures the API derives from them; `as_of` when
/// its balances are as of a date (posted only).
fn position_views(read: PositionsRead, as_of: bool) -> Result<Vec<PositionView>, ApiError> {
    let balances: BTreeMap<&str, &BalanceRecord> = read
        .balances
        .iter()
        .map(|b| (b.asset.as_str(), b))
        .collect();
    // Lots in every currency of an instrument: what of its quantity has a cost.
    let mut costed: BTreeMap<&str, Decimal> = BTreeMap::new();
    for book in &read.books {
        *costed.entry(book.instrument.as_str()).or_default() += lots_quantity(book);
    }
    let method = read.booking_method.as_str();
    read.books
        .iter()
        .map(|book| {
            let balance = balances.get(book.instrument.as_str()).copied();
            let held = Held::of(balance, book.units, as_of);
            let all_lots = costed
                .get(book.instrument.as_str())
                .copied()
                .unwrap_or_default();
            position_view(book, method, &held, all_lots)
        })
        .collect()
}

/// An account's figures in an instrument: settled, and what holds add and take on the trade
/// date (`None` as of a date, when only the settled figure is known).
struct Held {
    settled: Decimal,
    pending: Option<Decimal>,
}

impl Held {
    fn of(balance: Option<&BalanceRecord>, units: i16, as_of: bool) -> Self {
        let zero = at(Decimal::ZERO, units);
        match balance {
            None => Self {
                settled: zero,
                pending: (!as_of).then_some(zero),
            },
            Some(b) => Self {
                settled: b.balance,
                pending: b.pending.map(|(debits, credits)| credits - debits),
            },
        }
    }

    fn quantity(&self) -> Decimal {
        self.settled + self.pending.unwrap_or_default()
    }
}

fn position_view(
    book: &BookRead,
    method: &str,
    held: &Held,
    all_lots: Decimal,
) -> Result<PositionView, ApiError> {
    let lots_quantity = lots_quantity(book);
    let cost_basis = cost_basis(book);
    let quantity = held.quantity();
    let valued = valued(
        book.mark.as_ref(),
        quantity,
        lots_quantity,
        cost_basis,
        book.scale,
    )?;
    Ok(PositionView {
        instrument: book.instrument.clone(),
        currency: book.currency.clone(),
        booking_method: method.to_owned(),
        quantity: quantity.to_string(),
        settled: held.settled.to_string(),
        unsettled: held.pending.map(|p| p.to_string()),
        lots_quantity: lots_quantity.to_string(),
        uncosted: (quantity - all_lots).to_string(),
        cost_basis: cost_basis.to_string(),
        average_cost: divided(cost_basis, lots_quantity).map(|d| d.to_string()),
        lots: book.lots.iter().map(lot_view).collect(),
        realized: book.realized.to_string(),
        mark: book.mark.as_ref().map(mark_view),
        market_value: valued.map(|v| v.0.to_string()),
        unrealized: valued.map(|v| v.1.to_string()),
    })
}

/// What a book's open lots hold (negative when short).
fn lots_quantity(book: &BookRead) -> Decimal {
    let sum: Decimal = book.lots.iter().map(|l| l.quantity).sum();
    at(sum, book.units)
}

/// What a book's open lots cost, a short lot's amount (what its sale brought) taken off.
fn cost_basis(book: &BookRead) -> Decimal {
    let sum: Decimal = book
        .lots
        .iter()
        .map(|l| signed_cost(l.quantity, l.amount))
        .sum();
    at(sum, book.scale)
}

fn signed_cost(quantity: Decimal, amount: Decimal) -> Decimal {
    if quantity.is_sign_negative() {
        -amount
    } else {
        amount
    }
}

fn lot_view(lot: &domain::lots::Lot) -> LotView {
    let cost = signed_cost(lot.quantity, lot.amount);
    LotView {
        lot_id: lot.lot_id.clone(),
        transaction_id: lot.transaction_id.0,
        trade_date: lot.date,
        quantity: lot.quantity.to_string(),
        cost: cost.to_string(),
        unit_cost: divided(cost, lot.quantity).map_or_else(String::new, |d| d.to_string()),
    }
}

fn mark_view(mark: &MarkAt) -> MarkView {
    MarkView {
        price: mark.price.to_string(),
        as_of: mark.as_of,
        position: mark.position,
    }
}

/// The market value (`quantity` × price) and the unrealized P&L of the lots (`lots_quantity` ×
/// price − `cost_basis`) at a mark, exactly, with at least the currency's `scale` places.
fn valued(
    mark: Option<&MarkAt>,
    quantity: Decimal,
    lots_quantity: Decimal,
    cost_basis: Decimal,
    scale: i16,
) -> Result<Option<(Decimal, Decimal)>, ApiError> {
    let Some(mark) = mark else {
        return Ok(None);
    };
    let market_value = exact_product(quantity, mark.price)?;
    let unrealized = exact_product(lots_quantity, mark.price)? - cost_basis;
    Ok(Some((
        at_least(market_value, scale),
        at_least(unrealized, scale),
    )))
}

/// `a × b` with every digit, or a refusal: a value is never rounded to fit.
fn exact_product(a: Decimal, b: Decimal) -> Result<Decimal, ApiError> {
    let (a, b) = (a.normalize(), b.normalize());
    let places = a.scale() + b.scale();
    let product = a
        .checked_mul(b)
        .filter(|p| places <= 28 && p.scale() == places);
    product.ok_or_else(|| {
        ApiError::Validation(format!(
            "{a} × {b} has more digits than a decimal holds: it cannot be shown exactly"
        ))
    })
}

/// A figure with its own places, and at least `scale` of them.
fn at_least(value: Decimal, scale: i16) -> Decimal {
    let value = value.normalize();
    match u32::try_from(scale) {
        Ok(scale) if value.scale() < scale => at(value, scale as i16),
        _ => value,
    }
}

/// `amount ÷ quantity` at `UNIT_COST_PLACES`, rounded half to even; `None` for no quantity.
fn divided(amount: Decimal, quantity: Decimal) -> Option<Decimal> {
    let quotient = amount.checked_div(quantity)?;
    let mut rounded =
        quotient.round_dp_with_strategy(UNIT_COST_PLACES, RoundingStrategy::MidpointNearestEven);
    rounded.rescale(UNIT_COST_PLACES);
    Some(rounded)
}

/// A figure with exactly `scale` places (a sum of none is `0`).
fn at(mut value: Decimal, scale: i16) -> Decimal {
    value.rescale(u32::try_from(scale).unwrap_or(0));
    value
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RealizedParams {
    /// The first trade date (YYYY-MM-DD) of closings to include; from the first when absent.
    pub from: Option<NaiveDate>,
    /// The last trade date included; to the last when absent.
    pub to: Option<NaiveDate>,
    /// Only closings of this instrument.
    pub instrument: Option<String>,
    pub min_position: Option<i64>,
}

/// An account's realized P&L over a range of trade dates: each closing (a disposal that closed
/// long lots, or a purchase that closed short ones) with the lots it closed, each part's cost,
/// proceeds, realized P&L and holding period; totals per instrument and currency. `Accept:
/// text/csv` for CSV, one row per closed part. At most 10,000 parts (more: 422).
#[utoipa::path(
    get, path = "/v1/accounts/{id_or_code}/realized", tag = "accounts",
    params(("id_or_code" = String, Path, description = "Account id (UUID) or code"), RealizedParams),
    responses(
        (status = 200, body = RealizedView, description = "JSON, or CSV with `Accept: text/csv`: one row per closed part"),
        (status = 404, body = Problem), (status = "4XX", body = Problem), (status = 503, body = Problem)
    )
)]
async fn account_realized(
    book: Book,
    PathParam(id_or_code): PathParam<String>,
    headers: HeaderMap,
    Params(params): Params<RealizedParams>,
) -> Result<Response, ApiError> {
    check_dates(params.from, params.to)?;
    let instrument = params
        .instrument
        .as_deref()
        .map(|i| {
            i.parse::<AssetCode>()
                .map_err(|e| ApiError::InvalidRequest(e.to_string()))
        })
        .transpose()?;
    let reads = book.reads_at(params.min_position);
    let (code, _) = account_of(&reads, &id_or_code).await?;
    let instrument = instrument.as_ref().map(AssetCode::as_str);
    let read = reads
        .realized(
            &code,
            params.from,
            params.to,
            instrument,
            REALIZED_PARTS_MAX,
        )
        .await?;
    let parts = read.value.ok_or_else(|| {
        ApiError::Validation(format!(
            "the range holds more than {REALIZED_PARTS_MAX} closed parts; choose a shorter one"
        ))
    })?;
    if wants_csv(&headers) {
        return Ok(csv_at_position(read.position, realized_csv(&parts)));
    }
    let view = RealizedView {
        account: code.to_string(),
        position: read.position,
        from: params.from,
        to: params.to,
        totals: realized_totals(&parts),
        items: realized_items(parts),
    };
    Ok(at_position(read.position, view))
}

/// The dates a range of trade dates may name: years 1 to 9999, `from` not after `to`.
fn check_dates(from: Option<NaiveDate>, to: Option<NaiveDate>) -> Result<(), ApiError> {
    let first = NaiveDate::from_ymd_opt(1, 1, 1);
    let last = NaiveDate::from_ymd_opt(9999, 12, 31);
    for date in [from, to].into_iter().flatten() {
        if Some(date) < first || Some(date) > last {
            return Err(ApiError::InvalidRequest(format!(
                "{date} is not a date of years 1 to 9999"
            )));
        }
    }
    match (from, to) {
        (Some(from), Some(to)) if from > to => {
            Err(ApiError::InvalidRequest("from is after to".into()))
        }
        _ => Ok(()),
    }
}

/// The closed parts grouped by closing: one item per (position, instrument, currency), in the
/// order read (trade date, position).
fn realized_items(parts: Vec<ClosingRead>) -> Vec<RealizedItemView> {
    let mut items: Vec<(ClosingRead, Vec<ClosingRead>)> = Vec::new();
    for part in parts {
        let same = items.last().is_some_and(|(first, _)| {
            (first.position, &first.instrument, &first.currency)
                == (part.position, &part.instrument, &part.currency)
        });
        match (same, items.last_mut()) {
            (true, Some((_, group))) => group.push(part),
            _ => items.push((part.clone(), vec![part])),
        }
    }
    items
        .into_iter()
        .map(|(first, group)| {
            let sum =
                |f: fn(&ClosingRead) -> Decimal, scale: i16| at(group.iter().map(f).sum(), scale);
            let (cost, proceeds) = (
                sum(|p| p.cost, first.scale),
                sum(|p| p.proceeds, first.scale),
            );
            RealizedItemView {
                transaction_id: first.transaction_id,
                position: first.position,
                date: first.closed,
                quantity: sum(|p| p.quantity, first.units).to_string(),
                cost: cost.to_string(),
                proceeds: proceeds.to_string(),
                realized: (proceeds - cost).to_string(),
                lots: group.iter().map(realized_lot).collect(),
                instrument: first.instrument,
                currency: first.currency,
            }
        })
        .collect()
}

fn realized_lot(part: &ClosingRead) -> RealizedLotView {
    RealizedLotView {
        lot_id: part.lot_id.clone(),
        opened: part.opened,
        quantity: part.quantity.to_string(),
        cost: part.cost.to_string(),
        proceeds: part.proceeds.to_string(),
        realized: (part.proceeds - part.cost).to_string(),
        holding_days: (part.closed - part.opened).num_days(),
    }
}

fn realized_totals(parts: &[ClosingRead]) -> Vec<RealizedTotalView> {
    let mut totals: BTreeMap<(&str, &str), (Decimal, i16)> = BTreeMap::new();
    for part in parts {
        let key = (part.instrument.as_str(), part.currency.as_str());
        let total = totals.entry(key).or_insert((Decimal::ZERO, part.scale));
        total.0 += part.proceeds - part.cost;
    }
    totals
        .into_iter()
        .map(
            |((instrument, currency), (realized, scale))| RealizedTotalView {
                instrument: instrument.to_owned(),
                currency: currency.to_owned(),
                realized: at(realized, scale).to_string(),
            },
        )
        .collect()
}

/// One row per closed part.
fn realized_csv(parts: &[ClosingRead]) -> String {
    let mut out = String::from(
        "transaction_id,position,date,instrument,currency,lot_id,opened,quantity,cost,proceeds,realized,holding_days\n",
    );
    for p in parts {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{}\n",
            p.transaction_id,
            p.position,
            p.closed,
            p.instrument,
            p.currency,
            p.lot_id,
            p.opened,
            p.quantity,
            p.cost,
            p.proceeds,
            p.proceeds - p.cost,
            (p.closed - p.opened).num_days()
        ));
    }
    out
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RollupParams {
    /// Whole code segments, `acme` or `acme:` (the same); absent or empty: every account. At
    /// most `--rollup-at-accounts-max` accounts under it (more: 422).
    pub prefix: Option<String>,
    pub min_position: Option<i64>,
}

/// The positions of every account whose code starts with `prefix`, summed per instrument and
/// currency: quantity, the lots' quantity and cost basis, realized P&L, and the latest mark with
/// the market value and unrealized P&L at it.
#[utoipa::path(
    get, path = "/v1/positions", tag = "accounts", params(RollupParams),
    responses((status = 200, body = PositionRollupView), (status = "4XX", body = Problem), (status = 503, body = Problem))
)]
async fn position_rollup(
    State(state): State<AppState>,
    book: Book,
    Params(params): Params<RollupParams>,
) -> Result<Response, ApiError> {
    let prefix = super::balances::segments(params.prefix.as_deref())?;
    let accounts_max = state.limits().rollup_at_accounts_max;
    let read = book
        .reads_at(params.min_position)
        .position_rollup(&prefix, accounts_max)
        .await?;
    let (accounts, rows) = match read.value {
        PositionRollupRead::Summed { accounts, rows } => (accounts, rows),
        PositionRollupRead::TooManyAccounts { accounts_max } => {
            return Err(ApiError::Validation(format!(
                "more than {accounts_max} accounts are under {prefix:?}: a positions roll-up \
                 sums each one's books, so it is served for at most that many \
                 (--rollup-at-accounts-max); ask for a longer prefix"
            )))
        }
    };
    let positions = rows
        .into_iter()
        .map(|row| {
            let mark = row.mark.as_ref();
            let valued = valued(
                mark,
                row.quantity,
                row.lots_quantity,
                row.cost_basis,
                row.scale,
            )?;
            Ok(PositionTotalView {
                instrument: row.instrument,
                currency: row.currency,
                quantity: row.quantity.to_string(),
                lots_quantity: row.lots_quantity.to_string(),
                cost_basis: row.cost_basis.to_string(),
                realized: row.realized.to_string(),
                mark: row.mark.as_ref().map(mark_view),
                market_value: valued.map(|v| v.0.to_string()),
                unrealized: valued.map(|v| v.1.to_string()),
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let view = PositionRollupView {
        prefix,
        accounts,
        position: read.position,
        positions,
    };
    Ok(at_position(read.position, view))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Decimal {
        text.parse().unwrap()
    }

    #[test]
    fn a_product_is_exact_or_refused() {
        assert_eq!(exact_product(d("10"), d("190.255")).unwrap(), d("1902.55"));
        assert_eq!(exact_product(d("-2.5"), d("4")).unwrap(), d("-10"));
        assert_eq!(at_least(d("1902.5"), 2).to_string(), "1902.50");
        assert_eq!(at_least(d("1902.555"), 2).to_string(), "1902.555");
        let long = d("1.234567890123456789");
        assert!(exact_product(long, long).is_err());
    }

    #[test]
    fn a_unit_cost_has_eighteen_places_rounded_half_to_even() {
        assert_eq!(
            divided(d("10.00"), d("3")).unwrap().to_string(),
            "3.333333333333333333"
        );
        assert_eq!(
            divided(d("-40.00"), d("-2")).unwrap().to_string(),
            "20.000000000000000000"
        );
        assert!(divided(d("1"), Decimal::ZERO).is_none());
    }
}
