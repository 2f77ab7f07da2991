use axum::extract::State;
use axum::response::Response;
use domain::command::StatusChange;
use domain::{AccountCode, AccountRef, AssetCode};
use infrastructure::projections::dues::{LadderItem, LadderRange};
use infrastructure::projections::effective::EffectiveCursor;
use infrastructure::projections::postings::Statement;
use infrastructure::{AccountKey, HistoryCursor, ReadStore};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use axum::http::HeaderMap;
use chrono::{DateTime, NaiveDate, Utc};
use domain::Rejection;
use rust_decimal::Decimal;

use crate::books::Book;
use crate::dry_run::DryRun;
use crate::error::{ApiError, Problem};
use crate::extract::{ActionBody, IdempotencyKey, JsonBody, Params, PathParam, RequestOrigin};
use crate::render::{account_view, balance_view, history_item_view, history_view};
use crate::requests::{
    AccountLimitsCommand, AccountLimitsRequest, AccountStatusCommand, AccountStatusRequest,
    OpenAccountRequest,
};
use crate::routes::assets::ReadParams;
use crate::routes::write::{at_position, csv_at_position, submit, wants_csv};
use crate::state::AppState;
use crate::views::{
    AccountLimitsView, AccountList, AccountStatusView, AccountView, BalancesAtView, EntryOrder,
    HistoryItemView, HistoryPage, SettlementLadderItemView, SettlementLadderView,
    SettlementTotalView, StatementView,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(open_account, list_accounts))
        .routes(routes!(get_account))
        .routes(routes!(account_history))
        .routes(routes!(account_balances))
        .routes(routes!(account_statement))
        .routes(routes!(account_settlements))
        .routes(routes!(change_account_status))
        .routes(routes!(set_account_limits))
}

/// A command on an account named in the path: by id, or by code (a path that is neither names no
/// account, which the decision reports as `account_not_found`).
fn path_account(id_or_code: &str) -> Result<AccountRef, ApiError> {
    id_or_code
        .parse::<AccountRef>()
        .map_err(|_| not_found(id_or_code))
}

/// Freeze, unfreeze or close an account. A frozen account accepts no postings (debits or credits)
/// until unfrozen; reads still work. Only an account whose every balance is zero can be closed,
/// and closed is final. The body may be `{}` or carry `metadata` saying why.
#[utoipa::path(
    post, path = "/v1/accounts/{id_or_code}/{action}", tag = "accounts",
    params(("id_or_code" = String, Path, description = "Account id (UUID) or code"),
           ("action" = String, Path, description = "`freeze`, `unfreeze` or `close`"),
           ("Idempotency-Key" = String, Header, description = "1 to 255 printable ASCII characters")),
    request_body(content = AccountStatusRequest, description = "Optional: an empty body is `{}`"),
    responses(
        (status = 201, body = AccountStatusView),
        (status = 422, body = Problem, description = "account_frozen, account_not_frozen, account_not_empty, account_closed, account_not_found"),
        (status = "4XX", body = Problem), (status = 503, body = Problem),
    )
)]
async fn change_account_status(
    State(state): State<AppState>,
    book: Book,
    PathParam((id_or_code, action)): PathParam<(String, String)>,
    key: IdempotencyKey,
    origin: RequestOrigin,
    dry_run: DryRun,
    ActionBody(request): ActionBody<AccountStatusRequest>,
) -> Result<Response, ApiError> {
    let change = match action.as_str() {
        "freeze" => StatusChange::Freeze,
        "unfreeze" => StatusChange::Unfreeze,
        "close" => StatusChange::Close,
        _ => return Err(ApiError::RouteNotFound),
    };
    let command = AccountStatusCommand {
        account: path_account(&id_or_code)?,
        change,
        request,
    };
    submit(&state, &book, key, origin, &command, dry_run).await
}

/// Set an account's balance bounds in one asset: `min_balance` (negative: a credit limit) and
/// `max_balance`. Every later debit and credit is checked against them.
#[utoipa::path(
    patch, path = "/v1/accounts/{id_or_code}/limits", tag = "accounts",
    params(("id_or_code" = String, Path, description = "Account id (UUID) or code"),
           ("Idempotency-Key" = String, Header, description = "1 to 255 printable ASCII characters")),
    request_body = AccountLimitsRequest,
    responses(
        (status = 201, body = AccountLimitsView),
        (status = 422, body = Problem, description = "validation_error, amount_precision, account_closed, account_not_found, asset_not_found"),
        (status = "4XX", body = Problem), (status = 503, body = Problem),
    )
)]
async fn set_account_limits(
    State(state): State<AppState>,
    book: Book,
    PathParam(id_or_code): PathParam<String>,
    key: IdempotencyKey,
    origin: RequestOrigin,
    dry_run: DryRun,
    JsonBody(request): JsonBody<AccountLimitsRequest>,
) -> Result<Response, ApiError> {
    let command = AccountLimitsCommand {
        account: path_account(&id_or_code)?,
        request,
    };
    submit(&state, &book, key, origin, &command, dry_run).await
}

/// Open an account. Its code is unique and never changes.
#[utoipa::path(
    post, path = "/v1/accounts", tag = "accounts",
    params(("Idempotency-Key" = String, Header, description = "1 to 255 printable ASCII characters")),
    request_body = OpenAccountRequest,
    responses(
        (status = 201, body = AccountView),
        (status = 409, body = Problem, description = "duplicate_account"),
        (status = "4XX", body = Problem), (status = 503, body = Problem),
    )
)]
async fn open_account(
    State(state): State<AppState>,
    book: Book,
    key: IdempotencyKey,
    origin: RequestOrigin,
    dry_run: DryRun,
    JsonBody(request): JsonBody<OpenAccountRequest>,
) -> Result<Response, ApiError> {
    submit(&state, &book, key, origin, &request, dry_run).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only accounts whose code starts with this.
    pub prefix: Option<String>,
    /// 1 to 1000 (anything else is a 400, never clamped); 100 when absent.
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page: opaque and authenticated, good only with the same
    /// filters; a forged or altered cursor is a 400.
    pub cursor: Option<String>,
    pub min_position: Option<i64>,
}

/// Accounts in code order, with their balances.
#[utoipa::path(
    get, path = "/v1/accounts", tag = "accounts", params(ListParams),
    responses((status = 200, body = AccountList), (status = "4XX", body = Problem), (status = 503, body = Problem))
)]
async fn list_accounts(
    State(state): State<AppState>,
    book: Book,
    Params(params): Params<ListParams>,
) -> Result<Response, ApiError> {
    let limit = state.page_size(params.limit)?;
    let prefix = params.prefix.unwrap_or_default();
    let prefix_valid = prefix.len() <= AccountCode::MAX_LEN
        && prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-:".contains(&b));
    if !prefix_valid {
        return Err(ApiError::InvalidRequest(format!(
            "prefix {prefix:?} cannot start an account code"
        )));
    }
    let scope = ["accounts", prefix.as_str()];
    let after = params
        .cursor
        .map(|c| state.cursors().open(&scope, &c))
        .transpose()?;
    let page = book
        .reads_at(params.min_position)
        .accounts(&prefix, after.as_deref(), limit + 1)
        .await?;
    let items: Vec<AccountView> = page.value.into_iter().map(account_view).collect();
    let (items, next_cursor) = state.cursors().page(&scope, items, limit, |a| &a.code);
    Ok(at_position(
        page.position,
        AccountList { items, next_cursor },
    ))
}

/// How a path names an account: a UUID is an id, anything else a code, which must be valid (a
/// look-alike, invisible or control character is a 422, as in a command).
pub(super) fn account_key(id_or_code: &str) -> Result<AccountKey, ApiError> {
    if let Ok(id) = Uuid::parse_str(id_or_code) {
        return Ok(AccountKey::Id(id));
    }
    id_or_code
        .parse::<AccountCode>()
        .map(|code| AccountKey::Code(code.to_string()))
        .map_err(|e| ApiError::Validation(e.to_string()))
}

/// A query parameter naming an asset; malformed is a 400 like every bad query parameter.
fn asset_param(asset: &str) -> Result<AssetCode, ApiError> {
    asset
        .parse::<AssetCode>()
        .map_err(|e| ApiError::InvalidRequest(e.to_string()))
}

pub(super) fn not_found(id_or_code: &str) -> ApiError {
    ApiError::NotFound {
        code: "account_not_found",
        what: format!("account {id_or_code:?}"),
    }
}

/// An account and its balance in every asset it holds.
#[utoipa::path(
    get, path = "/v1/accounts/{id_or_code}", tag = "accounts",
    params(("id_or_code" = String, Path, description = "Account id (UUID) or code"), ReadParams),
    responses((status = 200, body = AccountView), (status = 404, body = Problem), (status = "4XX", body = Problem), (status = 503, body = Problem))
)]
async fn get_account(
    book: Book,
    PathParam(id_or_code): PathParam<String>,
    Params(params): Params<ReadParams>,
) -> Result<Response, ApiError> {
    let key = account_key(&id_or_code)?;
    let account = book.reads_at(params.min_position).account(&key).await?;
    let view = account
        .value
        .map(account_view)
        .ok_or_else(|| not_found(&id_or_code))?;
    Ok(at_position(account.position, view))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HistoryParams {
    /// Only postings in this asset.
    pub asset: Option<String>,
    /// 1 to 1000 (anything else is a 400, never clamped); 100 when absent.
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page: opaque and authenticated, good only with the same
    /// filters and order; a forged or altered cursor is a 400.
    pub cursor: Option<String>,
    /// `recorded` (the default): postings and account changes in the log's order. `effective`:
    /// postings alone, by effective time (ties by position and leg), each with the running
    /// balance in that order; every page as known at the position of the first.
    pub order: Option<EntryOrder>,
    pub min_position: Option<i64>,
}

/// The content of a history cursor in effective order:
/// `<effective_at µs>.<position>.<leg>.<known_at_position>` of the last posting of the page.
fn parse_effective_cursor(cursor: &str) -> Option<(EffectiveCursor, i64)> {
    let mut parts = cursor.split('.');
    let micros: i64 = parts.next()?.parse().ok()?;
    let position = parts.next()?.parse().ok().filter(|p| *p > 0)?;
    let leg = parts.next()?.parse().ok().filter(|l| *l >= 0)?;
    let known_at = parts.next()?.parse().ok().filter(|p| *p >= position)?;
    let cursor = EffectiveCursor {
        effective_at: DateTime::from_timestamp_micros(micros)?,
        position,
        leg,
    };
    parts.next().is_none().then_some((cursor, known_at))
}

/// The content of a history cursor: `<position>.<leg>` of the last posting of the page.
fn parse_history_cursor(cursor: &str) -> Option<HistoryCursor> {
    let (position, leg) = cursor.split_once('.')?;
    Some(HistoryCursor {
        position: position.parse().ok().filter(|p| *p > 0)?,
        // -1: an account change, which sorts before the postings of its position.
        leg: leg.parse().ok().filter(|l| *l >= -1)?,
    })
}

/// The account's history, newest first: its postings, each with the balance right after it, and
/// the changes of the account itself (`status_changed`, `limits_set`).
#[utoipa::path(
    get, path = "/v1/accounts/{id_or_code}/history", tag = "accounts",
    params(("id_or_code" = String, Path, description = "Account id (UUID) or code"), HistoryParams),
    responses((status = 200, body = HistoryPage), (status = 404, body = Problem), (status = "4XX", body = Problem), (status = 503, body = Problem))
)]
async fn account_history(
    State(state): State<AppState>,
    book: Book,
    PathParam(id_or_code): PathParam<String>,
    Params(params): Params<HistoryParams>,
) -> Result<Response, ApiError> {
    let key = account_key(&id_or_code)?;
    let limit = state.page_size(params.limit)?;
    let asset = params.asset.as_deref().map(asset_param).transpose()?;
    let reads = book.reads_at(params.min_position);
    let account = reads.account(&key).await?;
    let account = account.value.ok_or_else(|| not_found(&id_or_code))?;
    if params.order == Some(EntryOrder::Effective) {
        let page = Page {
            cursor: params.cursor,
            limit,
            min_position: params.min_position,
        };
        return history_in_effective_order(&state, &book, account.id, asset.as_ref(), page).await;
    }
    // A cursor is good for the account and asset filter it was issued for.
    let account_id = account.id.to_string();
    let scope = [
        "history",
        account_id.as_str(),
        asset.as_ref().map_or("", AssetCode::as_str),
    ];
    let before = params
        .cursor
        .map(|c| {
            let content = state.cursors().open(&scope, &c)?;
            parse_history_cursor(&content).ok_or_else(|| {
                ApiError::InvalidRequest("cursor is not one this server issued".into())
            })
        })
        .transpose()?;
    let page = reads
        .history(
            account.id,
            asset.as_ref().map(AssetCode::as_str),
            before,
            limit + 1,
        )
        .await?;
    let mut items = page.value;
    let next_cursor = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|h| {
            let c = h.cursor();
            state
                .cursors()
                .issue(&scope, &format!("{}.{}", c.position, c.leg))
        })
    } else {
        None
    };
    let items = items.into_iter().map(history_item_view).collect();
    Ok(at_position(
        page.position,
        HistoryPage {
            items,
            next_cursor,
            known_at_position: None,
        },
    ))
}

/// What a client asked of a page: its cursor, its size and the position it must reflect.
struct Page {
    cursor: Option<String>,
    limit: i64,
    min_position: Option<i64>,
}

/// A page of an account's postings in effective order, newest first. The first page is read at
/// the head; its cursor carries that position, so every later page is read as known at it.
async fn history_in_effective_order(
    state: &AppState,
    book: &Book,
    account_id: Uuid,
    asset: Option<&AssetCode>,
    page: Page,
) -> Result<Response, ApiError> {
    let account = account_id.to_string();
    let scope = [
        "history",
        account.as_str(),
        asset.map_or("", AssetCode::as_str),
        "effective",
    ];
    let before = page
        .cursor
        .map(|c| {
            let content = state.cursors().open(&scope, &c)?;
            parse_effective_cursor(&content).ok_or_else(|| {
                ApiError::InvalidRequest("cursor is not one this server issued".into())
            })
        })
        .transpose()?;
    let known_at = before.map(|(_, known_at)| known_at);
    let read = book
        .reads_as_of(page.min_position, known_at)?
        .history_effective(
            account_id,
            asset.map(AssetCode::as_str),
            before.map(|(cursor, _)| cursor),
            known_at,
            page.limit + 1,
        )
        .await?;
    let (known_at, mut entries) = (read.position, read.value);
    let next_cursor = if entries.len() as i64 > page.limit {
        entries.truncate(page.limit as usize);
        entries.last().map(|e| {
            let content = format!(
                "{}.{}.{}.{known_at}",
                e.effective_at.timestamp_micros(),
                e.position,
                e.leg
            );
            state.cursors().issue(&scope, &content)
        })
    } else {
        None
    };
    let items = entries
        .into_iter()
        .map(|e| HistoryItemView::Posting(history_view(e)))
        .collect();
    Ok(at_position(
        known_at,
        HistoryPage {
            items,
            next_cursor,
            known_at_position: Some(known_at),
        },
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct BalancesParams {
    /// Balances right after this position.
    pub at_position: Option<i64>,
    /// Balances as they stood at this time (RFC 3339): right after the last event recorded at or
    /// before it.
    pub at: Option<DateTime<Utc>>,
    /// Balances as of this time (RFC 3339) in the books: over every entry effective at or before
    /// it. Not with `at_position` or `at`, which are recorded time.
    pub as_of: Option<DateTime<Utc>>,
    /// With `as_of`: as known at this position, over the entries recorded at or before it alone
    /// (a position still to come is waited for, like `min_position`). Default: the head.
    pub known_at_position: Option<i64>,
    pub min_position: Option<i64>,
}

/// `at_position` and `at` (recorded time) exclude each other and `as_of` (effective time);
/// `known_at_position` goes with `as_of`.
fn check_balances_params(params: &BalancesParams) -> Result<(), ApiError> {
    let refuse = |why: &str| Err(ApiError::InvalidRequest(why.into()));
    if params.at_position.is_some() && params.at.is_some() {
        return refuse("give at_position or at, not both");
    }
    if params.as_of.is_some() && (params.at_position.is_some() || params.at.is_some()) {
        return refuse(
            "as_of (effective time) does not go with at_position or at (recorded time): \
             give known_at_position to read as of a date as known at a position",
        );
    }
    if params.known_at_position.is_some() && params.as_of.is_none() {
        return refuse("known_at_position goes with as_of");
    }
    if params.known_at_position.is_some_and(|p| p < 0) {
        return refuse("known_at_position is negative");
    }
    Ok(())
}

/// An account's balances now, at a past position or time (recorded time), or as of a date in
/// the books (effective time, optionally as known at a position), from the postings history.
#[utoipa::path(
    get, path = "/v1/accounts/{id_or_code}/balances", tag = "accounts",
    params(("id_or_code" = String, Path, description = "Account id (UUID) or code"), BalancesParams),
    responses((status = 200, body = BalancesAtView), (status = 404, body = Problem), (status = "4XX", body = Problem), (status = 503, body = Problem))
)]
async fn account_balances(
    book: Book,
    PathParam(id_or_code): PathParam<String>,
    Params(params): Params<BalancesParams>,
) -> Result<Response, ApiError> {
    let key = account_key(&id_or_code)?;
    check_balances_params(&params)?;
    let floor = params.at_position.or(params.known_at_position);
    let reads = book.reads_as_of(params.min_position, floor)?;
    let account = reads.account(&key).await?;
    let account = account.value.ok_or_else(|| not_found(&id_or_code))?;
    if let Some(as_of) = params.as_of {
        let known_at = params.known_at_position;
        let balances = reads.balances_as_of(account.id, as_of, known_at).await?;
        let known_at = known_at.unwrap_or(balances.position);
        let view = BalancesAtView {
            account_id: account.id,
            account: account.code,
            as_of_position: known_at,
            at: None,
            as_of: Some(as_of),
            known_at_position: Some(known_at),
            balances: balances.value.into_iter().map(balance_view).collect(),
        };
        return Ok(at_position(balances.position, view));
    }
    let as_of_position = match (params.at_position, params.at) {
        (Some(position), _) => position,
        (None, Some(at)) => reads.position_at(at).await?,
        (None, None) => i64::MAX,
    };
    let balances = reads.balances_at(account.id, as_of_position).await?;
    let view = BalancesAtView {
        account_id: account.id,
        account: account.code,
        as_of_position: as_of_position.min(balances.position),
        at: params.at,
        as_of: None,
        known_at_position: None,
        balances: balances.value.into_iter().map(balance_view).collect(),
    };
    Ok(at_position(balances.position, view))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StatementParams {
    pub asset: String,
    /// Start of the period (RFC 3339), inclusive; the beginning of the log when absent. A
    /// recorded time, or with `order=effective` an effective time.
    pub from: Option<DateTime<Utc>>,
    /// End of the period (RFC 3339), exclusive; now when absent. Recorded or effective, as `from`.
    pub to: Option<DateTime<Utc>>,
    /// `recorded` (the default): the postings recorded in the period, in the log's order, with
    /// the balances recorded with them. `effective`: those effective in the period, by effective
    /// time (ties by position and leg), the balances computed in that order, as known now.
    pub order: Option<EntryOrder>,
    pub min_position: Option<i64>,
}

/// Postings in a statement at most; a longer period is refused rather than cut short.
const STATEMENT_ENTRIES_MAX: i64 = 10_000;

/// A statement as read, with the positions its balances are at and the head it was read at.
struct StatementRead {
    statement: Statement,
    opening_position: i64,
    closing_position: i64,
    head: i64,
}

/// The statement of an account in one asset over the period of `params`, in its order.
async fn read_statement(
    reads: &ReadStore,
    account_id: Uuid,
    asset: &str,
    params: &StatementParams,
    head: i64,
) -> Result<StatementRead, ApiError> {
    let limit = STATEMENT_ENTRIES_MAX + 1;
    if params.order == Some(EntryOrder::Effective) {
        let read = reads
            .statement_effective(account_id, asset, params.from, params.to, limit)
            .await?;
        return Ok(StatementRead {
            statement: read.value,
            opening_position: read.position,
            closing_position: read.position,
            head: read.position,
        });
    }
    let after = match params.from {
        Some(from) => reads.position_before(from).await?,
        None => 0,
    };
    let up_to = match params.to {
        Some(to) => reads.position_before(to).await?.min(head),
        None => head,
    };
    let statement = reads
        .statement(account_id, asset, after, up_to, limit)
        .await?;
    Ok(StatementRead {
        statement,
        opening_position: after,
        closing_position: up_to,
        head,
    })
}

/// A statement of one asset over a period: opening balance, every posting with its running
/// balance, closing balance (opening + postings = closing). `Accept: text/csv` for CSV. With
/// `order=effective`, over effective times, in that order.
#[utoipa::path(
    get, path = "/v1/accounts/{id_or_code}/statement", tag = "accounts",
    params(("id_or_code" = String, Path, description = "Account id (UUID) or code"), StatementParams),
    responses(
        (status = 200, body = StatementView, description = "JSON, or CSV with `Accept: text/csv`: one row for the opening balance, one per posting, one for the closing balance"),
        (status = 404, body = Problem), (status = "4XX", body = Problem), (status = 503, body = Problem)
    )
)]
async fn account_statement(
    book: Book,
    PathParam(id_or_code): PathParam<String>,
    headers: HeaderMap,
    Params(params): Params<StatementParams>,
) -> Result<Response, ApiError> {
    let key = account_key(&id_or_code)?;
    let asset = asset_param(&params.asset)?;
    if let (Some(from), Some(to)) = (params.from, params.to) {
        if from > to {
            return Err(ApiError::InvalidRequest("from is after to".into()));
        }
    }
    let reads = book.reads_at(params.min_position);
    let account = reads.account(&key).await?;
    let head = account.position;
    let account = account.value.ok_or_else(|| not_found(&id_or_code))?;
    let scale = reads.asset_scale(asset.as_str()).await?.ok_or_else(|| {
        ApiError::Rejected(Rejection::AssetNotFound {
            asset: asset.to_string(),
        })
    })?;
    let read = read_statement(&reads, account.id, asset.as_str(), &params, head).await?;
    if read.statement.entries.len() as i64 > STATEMENT_ENTRIES_MAX {
        return Err(ApiError::Validation(format!(
            "the period holds more than {STATEMENT_ENTRIES_MAX} postings; choose a shorter one"
        )));
    }
    let head = read.head;
    let zero = Decimal::new(0, u32::try_from(scale).unwrap_or(0));
    let opening = read.statement.opening.unwrap_or(zero);
    let closing = read.statement.closing.unwrap_or(zero);
    // Read back, the history must add up: opening + postings = closing.
    let sum: Decimal = read.statement.entries.iter().map(|e| e.amount).sum();
    if opening + sum != closing {
        return Err(ApiError::Infrastructure(infrastructure::Error::Corrupt(
            format!(
                "statement of {} in {asset}: {opening} + {sum} != {closing}",
                account.code
            ),
        )));
    }
    let view = StatementView {
        account_id: account.id,
        account: account.code,
        asset: asset.to_string(),
        from: params.from,
        to: params.to,
        order: params.order.unwrap_or_default(),
        opening_position: read.opening_position,
        opening_balance: opening.to_string(),
        entries: read
            .statement
            .entries
            .into_iter()
            .map(history_view)
            .collect(),
        closing_position: read.closing_position,
        closing_balance: closing.to_string(),
    };
    if wants_csv(&headers) {
        return Ok(csv_at_position(head, statement_csv(&view)));
    }
    Ok(at_position(head, view))
}

/// One row for the opening balance, one per posting, one for the closing balance.
fn statement_csv(view: &StatementView) -> String {
    let mut out = String::from(
        "row,position,leg,recorded_at,effective_at,transaction_id,kind,counterparty,amount,balance\n",
    );
    out.push_str(&format!(
        "opening,{},,,,,,,,{}\n",
        view.opening_position, view.opening_balance
    ));
    for e in &view.entries {
        out.push_str(&format!(
            "posting,{},{},{},{},{},{},{},{},{}\n",
            e.position,
            e.leg,
            e.recorded_at
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            e.effective_at
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            e.transaction_id,
            e.kind,
            e.counterparty,
            e.amount,
            e.balance_after
        ));
    }
    out.push_str(&format!(
        "closing,{},,,,,,,,{}\n",
        view.closing_position, view.closing_balance
    ));
    out
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SettlementsParams {
    /// The first settlement date listed (`YYYY-MM-DD`), inclusive. With `from` or `to`, holds
    /// without a settlement date are left out of `items` (never out of `totals`).
    #[param(value_type = Option<String>, format = Date)]
    pub from: Option<NaiveDate>,
    /// The last settlement date listed (`YYYY-MM-DD`), inclusive.
    #[param(value_type = Option<String>, format = Date)]
    pub to: Option<NaiveDate>,
    pub min_position: Option<i64>,
}

/// Items of a settlement ladder at most (dates × assets); a longer one is refused rather than
/// cut short: narrow it with `from` and `to`.
const LADDER_ITEMS_MAX: i64 = 10_000;

/// The account's settlement ladder: per settlement date and asset, what its open holds have due
/// in and out. Trades booked as pending for a later settlement date are listed on that date;
/// holds without one (two-phase transactions and trades) with `date: null`, so that the totals
/// per asset equal the account's `pending_credits` (due in) and `pending_debits` (due out); the
/// read checks that they do, and fails (500) rather than answer a ladder that does not add up.
#[utoipa::path(
    get, path = "/v1/accounts/{id_or_code}/settlements", tag = "accounts",
    params(("id_or_code" = String, Path, description = "Account id (UUID) or code"), SettlementsParams),
    responses((status = 200, body = SettlementLadderView), (status = 404, body = Problem), (status = "4XX", body = Problem), (status = 503, body = Problem))
)]
async fn account_settlements(
    book: Book,
    PathParam(id_or_code): PathParam<String>,
    Params(params): Params<SettlementsParams>,
) -> Result<Response, ApiError> {
    let key = account_key(&id_or_code)?;
    if let (Some(from), Some(to)) = (params.from, params.to) {
        if from > to {
            return Err(ApiError::InvalidRequest(format!(
                "from {from} is after to {to}"
            )));
        }
    }
    let reads = book.reads_at(params.min_position);
    let account = reads.account(&key).await?;
    let account = account.value.ok_or_else(|| not_found(&id_or_code))?;
    let range = LadderRange {
        from: params.from,
        to: params.to,
    };
    let ladder = reads
        .settlement_ladder(account.id, range, LADDER_ITEMS_MAX + 1)
        .await?;
    if ladder.value.items.len() as i64 > LADDER_ITEMS_MAX {
        return Err(ApiError::Validation(format!(
            "the ladder has more than {LADDER_ITEMS_MAX} items: narrow it with from and to"
        )));
    }
    let view = SettlementLadderView {
        account: account.code,
        position: ladder.position,
        items: ladder
            .value
            .items
            .into_iter()
            .map(ladder_item_view)
            .collect(),
        totals: ladder
            .value
            .totals
            .into_iter()
            .map(|t| SettlementTotalView {
                asset: t.asset,
                due_in: t.due_in.to_string(),
                due_out: t.due_out.to_string(),
            })
            .collect(),
    };
    Ok(at_position(ladder.position, view))
}

fn ladder_item_view(item: LadderItem) -> SettlementLadderItemView {
    SettlementLadderItemView {
        date: item.date,
        asset: item.asset,
        due_in: item.due_in.to_string(),
        due_out: item.due_out.to_string(),
    }
}
