//! `?dry_run=true` on every write route: the writer decides the request exactly as it would
//! decide it for real, against the state a write queued at the same moment would see, answers
//! what it would answer and how the accounts would change, and takes it all back (see
//! `infrastructure::Writer::dry_run`). Nothing is appended, no idempotency key is used up.
//!
//! The answer to an accepted dry run is `200` (nothing was created, so not `201`) with no
//! `Ledger-Position` header, and a body `DryRunView`: `dry_run: true`, the view the real write
//! would return as `result` (without the `position`, `recorded_at`, `opened_at`, `version`, and
//! an `effective_at` the write did not state, that only a real write gets, unless the answer is the replay of an earlier real write, whose
//! are real), and every account the request would open or change with its figures before and
//! after. A refusal is the very problem document the real write would get, with `dry_run: true`.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use infrastructure::{AccountChange, Balance, DryRunAnswer, Outcome, Reply};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::extract::Params;
use crate::render::committed_view;
use crate::reply::RenderedReply;

/// Whether a write is a dry run: `?dry_run=true`. Any other query parameter is refused (400), so
/// that a misspelt `dry_run` never makes a real write.
#[derive(Debug, Clone, Copy, Default)]
pub struct DryRun(pub bool);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DryRunParams {
    #[serde(default)]
    dry_run: bool,
}

impl<S: Send + Sync> FromRequestParts<S> for DryRun {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Params(params) = Params::<DryRunParams>::from_request_parts(parts, state).await?;
        Ok(Self(params.dry_run))
    }
}

/// The answer to an accepted dry run of one command.
#[derive(Debug, Serialize, ToSchema)]
pub struct DryRunView {
    /// Always true: nothing was written.
    pub dry_run: bool,
    /// True when the real write would replay the stored answer to an earlier request with the
    /// same key (then `result` is that answer, and nothing would change).
    pub replayed: bool,
    /// What the real write would return (a TransactionView, TradeView, SettlementView, AccountView,
    /// AssetView, AccountStatusView or AccountLimitsView), without the `position`, `recorded_at`,
    /// `opened_at` and `version` only a real write gets, unless `replayed`.
    #[schema(value_type = Object)]
    pub result: Box<RawValue>,
    /// Every account the write would open or change, in the order it first touches them.
    pub balances: Vec<AccountChangeView>,
}

/// An account's figures before and after a dry run.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountChangeView {
    /// The ledger the account is in: only in the answer to a transfer between ledgers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ledger: Option<String>,
    pub account: String,
    /// True when the write would open it.
    pub opened: bool,
    /// Every asset in which it has figures before or after.
    pub assets: Vec<AssetChangeView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AssetChangeView {
    pub asset: String,
    pub before: DryRunBalanceView,
    pub after: DryRunBalanceView,
}

/// The figures as `GET /v1/accounts/{id_or_code}/balances` shows them.
#[derive(Debug, Serialize, ToSchema)]
pub struct DryRunBalanceView {
    /// The posted balance.
    #[schema(example = "100.00")]
    pub balance: String,
    #[schema(example = "30.00")]
    pub pending_debits: String,
    #[schema(example = "0.00")]
    pub pending_credits: String,
    /// `balance` less `pending_debits`.
    #[schema(example = "70.00")]
    pub available: String,
}

fn balance_view(b: Balance) -> DryRunBalanceView {
    DryRunBalanceView {
        balance: b.posted.to_string(),
        pending_debits: b.pending_debits.to_string(),
        pending_credits: b.pending_credits.to_string(),
        available: (b.posted - b.pending_debits).to_string(),
    }
}

pub fn balances_view(changes: Vec<AccountChange>) -> Vec<AccountChangeView> {
    changes
        .into_iter()
        .map(|c| AccountChangeView {
            ledger: None,
            account: c.account.to_string(),
            opened: c.opened,
            assets: c
                .assets
                .into_iter()
                .map(|a| AssetChangeView {
                    asset: a.asset.to_string(),
                    before: balance_view(a.before),
                    after: balance_view(a.after),
                })
                .collect(),
        })
        .collect()
}

/// The fields of a write's view that only a real write gets.
const INVENTED: [&str; 4] = ["position", "recorded_at", "opened_at", "version"];

/// A dry run's answer to one command, rendered as a batch entry: `200` and the would-be view when
/// accepted, the real write's problem document marked `dry_run` when refused.
pub fn render_dry_reply(answer: Result<Reply, infrastructure::Error>) -> RenderedReply {
    let (outcome, replayed) = match answer {
        Ok(reply) => (Ok(reply.outcome), reply.replayed),
        Err(e) => (Err(ApiError::from(e)), false),
    };
    let refusal = match outcome {
        Ok(Outcome::Accepted(committed)) => {
            let mut body = committed_view(&committed);
            if !replayed {
                let undated = committed.event.effective_at().is_none();
                body = without_invented(&body, undated).unwrap_or(body);
            }
            return RenderedReply {
                status: StatusCode::OK,
                body,
                position: None,
                replayed,
            };
        }
        Ok(Outcome::Rejected(rejection)) => ApiError::Rejected(rejection),
        Err(error) => error,
    };
    let mut problem = refusal.problem();
    problem.dry_run = true;
    RenderedReply {
        status: StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body: serde_json::to_vec(&problem).unwrap_or_default(),
        position: None,
        replayed,
    }
}

/// The view without what only a real write gets; without `effective_at` too when the write
/// stated none (it would be the recording time the real write gets).
fn without_invented(body: &[u8], undated: bool) -> Option<Vec<u8>> {
    let mut view: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body).ok()?;
    strip_invented(&mut view, undated);
    // A trade with a settlement date shows its settlement state from the start, with the
    // trade's own position and times while nothing has settled: invented there as well.
    if let Some(serde_json::Value::Object(settlement)) = view.get_mut("settlement") {
        strip_invented(settlement, undated);
    }
    serde_json::to_vec(&view).ok()
}

fn strip_invented(fields: &mut serde_json::Map<String, serde_json::Value>, undated: bool) {
    for field in INVENTED {
        fields.remove(field);
    }
    if undated {
        fields.remove("effective_at");
    }
}

/// The answer to a dry run of one command: `DryRunView` when accepted, the problem otherwise.
pub fn render_dry_run(answer: DryRunAnswer) -> RenderedReply {
    let DryRunAnswer {
        mut replies,
        balances,
    } = answer;
    let reply = render_dry_reply(
        replies
            .pop()
            .unwrap_or(Err(infrastructure::Error::CommitFailed)),
    );
    if !reply.status.is_success() {
        return reply;
    }
    let view = DryRunView {
        dry_run: true,
        replayed: reply.replayed,
        result: raw(reply.body),
        balances: balances_view(balances),
    };
    RenderedReply {
        body: serde_json::to_vec(&view).unwrap_or_default(),
        ..reply
    }
}

/// Encoded JSON as a raw value (`null` if it were not JSON, which a rendered view always is).
pub fn raw(body: Vec<u8>) -> Box<RawValue> {
    RawValue::from_string(String::from_utf8_lossy(&body).into_owned())
        .unwrap_or_else(|_| RawValue::NULL.to_owned())
}
