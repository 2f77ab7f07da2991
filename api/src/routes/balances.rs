//! Roll-up balances: the sums over every account whose code starts with some segments, per
//! asset, and the next segments under a prefix with theirs. Both are read from the `rollups`
//! projection (one row per prefix and asset), never summed over accounts.

use axum::extract::State;
use axum::response::Response;
use chrono::{DateTime, Utc};
use domain::{AccountCode, AssetCode};
use infrastructure::projections::rollups::{PastRollup, Rollup};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::books::Book;
use crate::error::{ApiError, Problem};
use crate::extract::Params;
use crate::routes::write::at_position;
use crate::state::AppState;
use crate::views::{AccountTree, RollupBalanceView, RollupView, TreeNodeView};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(balances))
        .routes(routes!(account_tree))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct BalancesParams {
    /// Whole code segments, `broker` or `broker:` (the same); absent or empty: every account.
    pub prefix: Option<String>,
    /// Only this asset.
    pub asset: Option<String>,
    /// The sums as they stood right after this position: posted balances only (pending figures
    /// are not kept per position), from each account's history, for at most
    /// `--rollup-at-accounts-max` accounts under the prefix (more: 422).
    pub at_position: Option<i64>,
    /// The sums as of this time (RFC 3339) in the books: posted balances over the entries
    /// effective at or before it, of at most `--rollup-at-accounts-max` accounts (more: 422). Not
    /// with `at_position` (recorded order).
    pub as_of: Option<DateTime<Utc>>,
    /// With `as_of`: as known at this position (the entries recorded at or before it; waited
    /// for like `min_position`). Default: the head.
    pub known_at_position: Option<i64>,
    pub min_position: Option<i64>,
}

/// A roll-up as of a date, optionally as known at a position: the parameters, checked.
struct AsOf {
    as_of: DateTime<Utc>,
    known_at: Option<i64>,
}

/// `as_of` (effective time) excludes `at_position` (recorded order); `known_at_position` goes
/// with `as_of`.
fn as_of_param(params: &BalancesParams) -> Result<Option<AsOf>, ApiError> {
    let refuse = |why: &str| Err(ApiError::InvalidRequest(why.into()));
    match (params.as_of, params.known_at_position) {
        (Some(_), _) if params.at_position.is_some() => refuse(
            "as_of (effective time) does not go with at_position (recorded order): give \
             known_at_position to read as of a date as known at a position",
        ),
        (None, Some(_)) => refuse("known_at_position goes with as_of"),
        (_, Some(p)) if p < 0 => refuse("known_at_position is negative"),
        (Some(as_of), known_at) => Ok(Some(AsOf { as_of, known_at })),
        (None, None) => Ok(None),
    }
}

/// The sums per asset over every account whose code starts with `prefix` (whole segments:
/// `broker` covers `broker:alice`, not `brokerage`), and how many accounts that is. Read-your-
/// writes as every read: it reflects at least `min_position`, or the head when the read began.
#[utoipa::path(
    get, path = "/v1/balances", tag = "accounts", params(BalancesParams),
    responses((status = 200, body = RollupView), (status = "4XX", body = Problem), (status = 503, body = Problem))
)]
async fn balances(
    State(state): State<AppState>,
    book: Book,
    Params(params): Params<BalancesParams>,
) -> Result<Response, ApiError> {
    let prefix = segments(params.prefix.as_deref())?;
    let as_of = as_of_param(&params)?;
    let asset = params
        .asset
        .map(|a| {
            a.parse::<AssetCode>()
                .map_err(|e| ApiError::InvalidRequest(e.to_string()))
        })
        .transpose()?;
    let asset = asset.as_ref().map(AssetCode::as_str);
    let accounts_max = state.limits().rollup_at_accounts_max;
    if let Some(as_of) = as_of {
        let rollup = book
            .reads_as_of(params.min_position, as_of.known_at)?
            .rollup_as_of(&prefix, asset, as_of.as_of, as_of.known_at, accounts_max)
            .await?;
        let known_at = as_of.known_at.unwrap_or(rollup.position);
        let PastRollup::Summed(sums) = rollup.value else {
            return Err(too_many_accounts(&prefix, accounts_max, "as_of"));
        };
        let view = RollupView {
            as_of: Some(as_of.as_of),
            known_at_position: Some(known_at),
            ..rollup_view(sums, known_at)
        };
        return Ok(at_position(rollup.position, view));
    }
    let Some(past) = params.at_position else {
        let rollup = book
            .reads_at(params.min_position)
            .rollup(&prefix, asset)
            .await?;
        let position = rollup.position;
        return Ok(at_position(position, rollup_view(rollup.value, position)));
    };
    let rollup = book
        .reads_as_of(params.min_position, Some(past))?
        .rollup_at(&prefix, asset, past, accounts_max)
        .await?;
    match rollup.value {
        PastRollup::Summed(sums) => Ok(at_position(rollup.position, rollup_view(sums, past))),
        PastRollup::TooManyAccounts { accounts_max } => {
            Err(too_many_accounts(&prefix, accounts_max, "at_position"))
        }
    }
}

/// A roll-up in the past (`at_position` or `as_of`, `param`) refused for its accounts.
fn too_many_accounts(prefix: &str, accounts_max: i64, param: &str) -> ApiError {
    ApiError::Validation(format!(
        "more than {accounts_max} accounts are under {prefix:?}: a roll-up at a past position or \
         as of a date sums each one's history, so it is served for at most that many \
         (--rollup-at-accounts-max); ask for a longer prefix, or omit {param} for the present \
         roll-up"
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TreeParams {
    /// Whole code segments; absent or empty: the top segments.
    pub prefix: Option<String>,
    /// 1 to 1000 (anything else is a 400, never clamped); 100 when absent.
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page: opaque and authenticated, good only with the same
    /// prefix; a forged or altered cursor is a 400.
    pub cursor: Option<String>,
    pub min_position: Option<i64>,
}

/// The next code segments under `prefix`, in code order, each with its roll-up per asset and
/// its number of accounts: a page of one index range, however many accounts there are. (An
/// account coded `tree` is read by its id: this path is the tree.)
#[utoipa::path(
    get, path = "/v1/accounts/tree", tag = "accounts", params(TreeParams),
    responses((status = 200, body = AccountTree), (status = "4XX", body = Problem), (status = 503, body = Problem))
)]
async fn account_tree(
    State(state): State<AppState>,
    book: Book,
    Params(params): Params<TreeParams>,
) -> Result<Response, ApiError> {
    let prefix = segments(params.prefix.as_deref())?;
    let limit = state.page_size(params.limit)?;
    let scope = ["accounts/tree", prefix.as_str()];
    let after = params
        .cursor
        .map(|c| state.cursors().open(&scope, &c))
        .transpose()?;
    let page = book
        .reads_at(params.min_position)
        .rollup_children(&prefix, after.as_deref(), limit + 1)
        .await?;
    let position = page.position;
    let (children, next_cursor) = state
        .cursors()
        .page(&scope, page.value, limit, |c| &c.prefix);
    let items = children
        .into_iter()
        .map(|child| {
            let segment = child
                .prefix
                .rsplit(':')
                .next()
                .unwrap_or_default()
                .to_owned();
            TreeNodeView {
                segment,
                rollup: rollup_view(child, position),
            }
        })
        .collect();
    Ok(at_position(
        position,
        AccountTree {
            prefix,
            items,
            next_cursor,
        },
    ))
}

/// A prefix of whole segments, without the trailing `:` it may be written with; `` for none.
pub(super) fn segments(prefix: Option<&str>) -> Result<String, ApiError> {
    let prefix = prefix.unwrap_or_default();
    let prefix = prefix.strip_suffix(':').unwrap_or(prefix);
    if prefix.is_empty() {
        return Ok(String::new());
    }
    let valid = prefix.len() <= AccountCode::MAX_LEN
        && prefix.split(':').all(|segment| {
            !segment.is_empty()
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-".contains(&b))
        });
    if !valid {
        return Err(ApiError::InvalidRequest(format!(
            "prefix {prefix:?} is not whole code segments (a-z, 0-9, _ and - joined by ':')"
        )));
    }
    Ok(prefix.to_owned())
}

fn rollup_view(rollup: Rollup, position: i64) -> RollupView {
    RollupView {
        prefix: rollup.prefix,
        accounts: rollup.accounts,
        balances: rollup
            .balances
            .into_iter()
            .map(|b| RollupBalanceView {
                available: b.pending.map(|(debits, _)| (b.posted - debits).to_string()),
                pending_debits: b.pending.map(|(debits, _)| debits.to_string()),
                pending_credits: b.pending.map(|(_, credits)| credits.to_string()),
                asset: b.asset,
                posted: b.posted.to_string(),
            })
            .collect(),
        position,
        as_of: None,
        known_at_position: None,
    }
}
