use axum::extract::{Path, State};
use axum::response::Response;
use domain::{AccountCode, AssetCode};
use infrastructure::{AccountKey, HistoryCursor};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::dto::{AccountList, AccountView, HistoryPage, OpenAccountRequest};
use crate::error::{ApiError, Problem};
use crate::extract::{IdempotencyKey, JsonBody, Params, RequestId};
use crate::render::{account_view, history_view};
use crate::routes::assets::ReadParams;
use crate::routes::write::{at_position, submit};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(open_account, list_accounts))
        .routes(routes!(get_account))
        .routes(routes!(account_history))
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
    key: IdempotencyKey,
    request_id: RequestId,
    JsonBody(request): JsonBody<OpenAccountRequest>,
) -> Result<Response, ApiError> {
    submit(&state, key, request_id, &request).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only accounts whose code starts with this.
    pub prefix: Option<String>,
    /// 1 to 1000; 100 when absent.
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
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
    Params(params): Params<ListParams>,
) -> Result<Response, ApiError> {
    let limit = state.page_size(params.limit)?;
    let prefix = params.prefix.unwrap_or_default();
    let prefix_valid = prefix.len() <= AccountCode::MAX_LEN
        && prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-:".contains(&b));
    if !prefix_valid {
        return Err(ApiError::Validation(format!(
            "prefix {prefix:?} cannot start an account code"
        )));
    }
    let after = params
        .cursor
        .map(|c| {
            c.parse::<AccountCode>().map_err(|_| {
                ApiError::InvalidRequest("cursor is not one this server issued".into())
            })
        })
        .transpose()?;
    state.reach_position(params.min_position).await?;
    let page = state
        .reads()
        .accounts(&prefix, after.as_ref().map(AccountCode::as_str), limit + 1)
        .await?;
    let mut items: Vec<AccountView> = page.value.into_iter().map(account_view).collect();
    let next_cursor = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|a| a.code.clone())
    } else {
        None
    };
    Ok(at_position(
        page.position,
        AccountList { items, next_cursor },
    ))
}

/// How a path names an account: a UUID is an id, anything else a code.
fn account_key(id_or_code: &str) -> Result<AccountKey, ApiError> {
    if let Ok(id) = Uuid::parse_str(id_or_code) {
        return Ok(AccountKey::Id(id));
    }
    id_or_code
        .parse::<AccountCode>()
        .map(|code| AccountKey::Code(code.to_string()))
        .map_err(|_| not_found(id_or_code))
}

fn not_found(id_or_code: &str) -> ApiError {
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
    State(state): State<AppState>,
    Path(id_or_code): Path<String>,
    Params(params): Params<ReadParams>,
) -> Result<Response, ApiError> {
    let key = account_key(&id_or_code)?;
    state.reach_position(params.min_position).await?;
    let account = state.reads().account(&key).await?;
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
    /// 1 to 1000; 100 when absent.
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    pub min_position: Option<i64>,
}

fn parse_history_cursor(cursor: &str) -> Option<HistoryCursor> {
    let (position, leg) = cursor.split_once('.')?;
    Some(HistoryCursor {
        position: position.parse().ok().filter(|p| *p > 0)?,
        leg: leg.parse().ok().filter(|l| *l >= 0)?,
    })
}

/// The account's postings, newest first, each with the balance right after it.
#[utoipa::path(
    get, path = "/v1/accounts/{id_or_code}/history", tag = "accounts",
    params(("id_or_code" = String, Path, description = "Account id (UUID) or code"), HistoryParams),
    responses((status = 200, body = HistoryPage), (status = 404, body = Problem), (status = "4XX", body = Problem), (status = 503, body = Problem))
)]
async fn account_history(
    State(state): State<AppState>,
    Path(id_or_code): Path<String>,
    Params(params): Params<HistoryParams>,
) -> Result<Response, ApiError> {
    let key = account_key(&id_or_code)?;
    let limit = state.page_size(params.limit)?;
    let asset = params
        .asset
        .map(|a| {
            a.parse::<AssetCode>()
                .map_err(|e| ApiError::Validation(e.to_string()))
        })
        .transpose()?;
    let before = params
        .cursor
        .map(|c| {
            parse_history_cursor(&c).ok_or_else(|| {
                ApiError::InvalidRequest("cursor is not one this server issued".into())
            })
        })
        .transpose()?;
    state.reach_position(params.min_position).await?;
    let account = state.reads().account(&key).await?;
    let account = account.value.ok_or_else(|| not_found(&id_or_code))?;
    let page = state
        .reads()
        .history(
            account.id,
            asset.as_ref().map(AssetCode::as_str),
            before,
            limit + 1,
        )
        .await?;
    let mut items: Vec<_> = page.value.into_iter().map(history_view).collect();
    let next_cursor = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|h| format!("{}.{}", h.position, h.leg))
    } else {
        None
    };
    Ok(at_position(
        page.position,
        HistoryPage { items, next_cursor },
    ))
}
