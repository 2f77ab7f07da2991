//! Request and response bodies. Requests deserialize straight into the domain's value types, so a
//! malformed code or amount is refused while parsing; responses carry amounts as decimal strings at
//! the asset's scale.

use chrono::SubsecRound;
use chrono::{DateTime, Utc};
use domain::command::{
    BalanceFigure, BoundChange, ChangeAccountStatus, Comparison, Condition, ExpectedVersion,
    Guards, HoldTerms, OriginalTransaction, ReverseTransaction, SetAccountLimits, SettlePending,
    Settlement, StatusChange,
};
use domain::values::SignedDecimal;
use domain::{
    AccountCode, AccountId, AccountRef, AssetCode, Command, DefineAsset, ExecuteTrade,
    FeeInstruction, Metadata, OpenAccount, PositiveDecimal, PostTransaction, PostingInstruction,
    Scale, TransactionId, TransactionKind,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::routes::write::CommandRequest;
use uuid::Uuid;

// ------------------------------------------------------------------ requests

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DefineAssetRequest {
    /// 1 to 16 of `A-Z 0-9 _`.
    #[schema(value_type = String, example = "USD")]
    pub code: AssetCode,
    /// Decimal places, 0 to 18.
    #[schema(value_type = u32, minimum = 0, maximum = 18, example = 2)]
    pub scale: Scale,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenAccountRequest {
    /// Segments of `a-z 0-9 _ -` joined by `:`, at most 128 bytes.
    #[schema(value_type = String, example = "alice:cash")]
    pub code: AccountCode,
    /// Whether balances may go below zero (accounts that model the outside world).
    #[serde(default)]
    pub allow_negative: bool,
    /// A JSON object of at most 4 KiB.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: Metadata,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostingRequest {
    /// Account id or code.
    #[schema(value_type = String, example = "world:bank")]
    pub source: AccountRef,
    #[schema(value_type = String, example = "alice:cash")]
    pub destination: AccountRef,
    #[schema(value_type = String, example = "USD")]
    pub asset: AssetCode,
    /// A positive decimal string with at most the asset's decimal places.
    #[schema(value_type = String, example = "100.00")]
    pub amount: PositiveDecimal,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransactionRequest {
    /// 1 to 64 postings, applied in order, all or none.
    pub postings: Vec<PostingRequest>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: Metadata,
    /// Up to 16 conditions on balances, checked before the command; all must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<ConditionRequest>,
    /// Up to 16 accounts with the `version` the client last read (optimistic concurrency).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expected_versions: Vec<ExpectedVersionRequest>,
    /// Reserve the amounts instead of moving them, until `POST /v1/transactions/{id}/post` or
    /// `/void`, or until the hold expires.
    #[serde(default, skip_serializing_if = "is_false")]
    pub pending: bool,
    /// When a pending hold expires (RFC 3339; at most a year ahead). A time already past expires
    /// it at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Or: seconds from now until it expires, 1 to 31,536,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<u32>,
}

/// A precondition on a balance, checked against the state before the command; if one fails,
/// nothing is appended (409 `condition_failed`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConditionRequest {
    #[schema(value_type = String, example = "alice:cash")]
    pub account: AccountRef,
    #[schema(value_type = String, example = "USD")]
    pub asset: AssetCode,
    /// `available` (posted less pending debits) or `posted`.
    #[schema(value_type = String, example = "available")]
    pub balance: BalanceFigure,
    /// `gte`, `lte` or `eq`.
    #[schema(value_type = String, example = "gte")]
    pub op: Comparison,
    /// A decimal string of either sign, at most the asset's decimal places.
    #[schema(value_type = String, example = "100.00")]
    pub amount: SignedDecimal,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExpectedVersionRequest {
    #[schema(value_type = String, example = "alice:cash")]
    pub account: AccountRef,
    /// The account's `version` as last read.
    pub version: i64,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// The longest a hold may be kept.
const HOLD_LIFETIME_MAX_S: u32 = 365 * 24 * 3600;

/// A pending request's terms, with `timeout_s` turned into a time.
fn hold_terms(
    pending: bool,
    expires_at: Option<DateTime<Utc>>,
    timeout_s: Option<u32>,
) -> Result<Option<HoldTerms>, ApiError> {
    let now = Utc::now();
    let latest = now + chrono::Duration::seconds(i64::from(HOLD_LIFETIME_MAX_S));
    let expires_at = match (expires_at, timeout_s) {
        (Some(_), Some(_)) => {
            return Err(ApiError::Validation(
                "give expires_at or timeout_s, not both".into(),
            ))
        }
        (None, Some(seconds)) if seconds == 0 || seconds > HOLD_LIFETIME_MAX_S => {
            return Err(ApiError::Validation(format!(
                "timeout_s is 1 to {HOLD_LIFETIME_MAX_S}"
            )))
        }
        (None, Some(seconds)) => Some(now + chrono::Duration::seconds(i64::from(seconds))),
        (Some(at), None) if at > latest => {
            return Err(ApiError::Validation(
                "expires_at is at most a year ahead".into(),
            ))
        }
        (at, None) => at,
    };
    if !pending {
        return match expires_at {
            Some(_) => Err(ApiError::Validation(
                "expires_at and timeout_s apply to pending transactions only".into(),
            )),
            None => Ok(None),
        };
    }
    // Microseconds, as PostgreSQL keeps time.
    Ok(Some(HoldTerms {
        expires_at: expires_at.map(|at| at.trunc_subsecs(6)),
    }))
}

/// The preconditions a money-moving request carries, as the domain checks them.
fn guards(conditions: &[ConditionRequest], expected_versions: &[ExpectedVersionRequest]) -> Guards {
    Guards {
        conditions: conditions
            .iter()
            .map(|c| Condition {
                account: c.account.clone(),
                asset: c.asset.clone(),
                balance: c.balance,
                op: c.op,
                amount: c.amount,
            })
            .collect(),
        expected_versions: expected_versions
            .iter()
            .map(|v| ExpectedVersion {
                account: v.account.clone(),
                version: v.version,
            })
            .collect(),
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferRequest {
    #[schema(value_type = String, example = "alice:cash")]
    pub source: AccountRef,
    #[schema(value_type = String, example = "bob:cash")]
    pub destination: AccountRef,
    #[schema(value_type = String, example = "USD")]
    pub asset: AssetCode,
    #[schema(value_type = String, example = "25.00")]
    pub amount: PositiveDecimal,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: Metadata,
    /// Up to 16 conditions on balances, checked before the command; all must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<ConditionRequest>,
    /// Up to 16 accounts with the `version` the client last read (optimistic concurrency).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expected_versions: Vec<ExpectedVersionRequest>,
    /// Reserve the amounts instead of moving them, until `POST /v1/transactions/{id}/post` or
    /// `/void`, or until the hold expires.
    #[serde(default, skip_serializing_if = "is_false")]
    pub pending: bool,
    /// When a pending hold expires (RFC 3339; at most a year ahead). A time already past expires
    /// it at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Or: seconds from now until it expires, 1 to 31,536,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeeRequest {
    #[schema(value_type = String, example = "alice:cash")]
    pub payer: AccountRef,
    #[schema(value_type = String, example = "broker:fees")]
    pub account: AccountRef,
    /// The trade's currency when absent.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "USD")]
    pub asset: Option<AssetCode>,
    #[schema(value_type = String, example = "1.25")]
    pub amount: PositiveDecimal,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TradeRequest {
    #[schema(value_type = String, example = "alice:cash")]
    pub buyer: AccountRef,
    #[schema(value_type = String, example = "bob:cash")]
    pub seller: AccountRef,
    #[schema(value_type = String, example = "AAPL")]
    pub instrument: AssetCode,
    #[schema(value_type = String, example = "10")]
    pub quantity: PositiveDecimal,
    /// Price of one unit of the instrument in the currency; at most 18 decimal places.
    #[schema(value_type = String, example = "189.50")]
    pub price: PositiveDecimal,
    #[schema(value_type = String, example = "USD")]
    pub currency: AssetCode,
    #[serde(default)]
    pub fees: Vec<FeeRequest>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: Metadata,
    /// Up to 16 conditions on balances, checked before the command; all must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<ConditionRequest>,
    /// Up to 16 accounts with the `version` the client last read (optimistic concurrency).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expected_versions: Vec<ExpectedVersionRequest>,
    /// Reserve the amounts instead of moving them, until `POST /v1/transactions/{id}/post` or
    /// `/void`, or until the hold expires.
    #[serde(default, skip_serializing_if = "is_false")]
    pub pending: bool,
    /// When a pending hold expires (RFC 3339; at most a year ahead). A time already past expires
    /// it at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Or: seconds from now until it expires, 1 to 31,536,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<u32>,
}

/// Freeze, unfreeze or close an account (the change is the route's).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountStatusRequest {
    /// Why, for the record: a JSON object of at most 4 KiB, kept in the event.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: Metadata,
}

/// A status change as submitted: the account and the change come from the path, so they are part
/// of the idempotency fingerprint.
#[derive(Debug, Serialize)]
pub struct AccountStatusCommand {
    pub account: AccountRef,
    pub change: StatusChange,
    #[serde(flatten)]
    pub request: AccountStatusRequest,
}

/// An account's bounds in one asset. An absent field keeps its bound; `null` removes it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountLimitsRequest {
    #[schema(value_type = String, example = "USD")]
    pub asset: AssetCode,
    /// The lowest balance allowed (a credit limit when negative); `null`: unbounded. Without one,
    /// the minimum is zero, or unbounded for an account opened with `allow_negative`.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, example = "-500.00")]
    pub min_balance: Option<Option<SignedDecimal>>,
    /// The highest balance allowed; `null`: unbounded (the default).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, example = "10000.00")]
    pub max_balance: Option<Option<SignedDecimal>>,
}

/// Post, void or reverse a transaction (the action is the route's).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransactionActionRequest {
    /// `post` only: per posting of the pending transaction, in its order, the amount to post,
    /// from 0 to the amount reserved; the rest is released. Absent: post everything. A pending
    /// trade is posted whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>, example = json!(["60.00"]))]
    pub amounts: Option<Vec<SignedDecimal>>,
    /// `reverse` only: skip the balance bounds (never the account statuses), recorded in the
    /// event. Refused with 403 unless the server allows forced reversals.
    #[serde(default, skip_serializing_if = "is_false")]
    pub force: bool,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: Metadata,
}

/// What can be done to a transaction after it was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TransactionAction {
    Post,
    Void,
    Reverse,
}

/// An action as submitted, with the transaction and the action from the path, and for a reversal
/// the original as the log recorded it.
#[derive(Debug, Serialize)]
pub struct TransactionActionCommand {
    pub transaction_id: TransactionId,
    pub action: TransactionAction,
    #[serde(flatten)]
    pub request: TransactionActionRequest,
    /// Looked up from the log, so not part of what was asked (nor of the fingerprint).
    #[serde(skip)]
    pub original: Option<OriginalTransaction>,
}

impl CommandRequest for TransactionActionCommand {
    const ROUTE: &'static str = "POST /v1/transactions/{id}/{action}";

    fn command(&self) -> Result<Command, ApiError> {
        let request = &self.request;
        let only = |field: &str, action: &str| {
            Err(ApiError::Validation(format!(
                "{field} applies to {action} only"
            )))
        };
        let settlement = match self.action {
            TransactionAction::Reverse => {
                if request.amounts.is_some() {
                    return only("amounts", "post");
                }
                let original = self.original.clone().ok_or_else(|| ApiError::NotFound {
                    code: "transaction_not_found",
                    what: format!("transaction {}", self.transaction_id),
                })?;
                return Ok(Command::ReverseTransaction(ReverseTransaction {
                    id: TransactionId(Uuid::now_v7()),
                    original,
                    force: request.force,
                    metadata: request.metadata.clone(),
                }));
            }
            _ if request.force => return only("force", "reverse"),
            TransactionAction::Post => Settlement::Post {
                amounts: request.amounts.clone(),
            },
            TransactionAction::Void if request.amounts.is_some() => return only("amounts", "post"),
            TransactionAction::Void => Settlement::Void,
        };
        Ok(Command::SettlePending(SettlePending {
            pending_id: self.transaction_id,
            settlement,
            at: Utc::now(),
            metadata: request.metadata.clone(),
        }))
    }
}

/// A limits change as submitted, with the account from the path.
#[derive(Debug, Serialize)]
pub struct AccountLimitsCommand {
    pub account: AccountRef,
    #[serde(flatten)]
    pub request: AccountLimitsRequest,
}

/// A field that is present, even as `null`: `Some(None)`; an absent one stays `None` (default).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

fn bound_change(bound: Option<Option<SignedDecimal>>) -> BoundChange {
    match bound {
        None => BoundChange::Keep,
        Some(None) => BoundChange::Unbounded,
        Some(Some(value)) => BoundChange::To(value),
    }
}

// Each request becomes its command here; ids of what a command creates are chosen now (UUIDv7,
// time-ordered, so their indexes grow at the right edge), so the
// domain's decision stays pure. They are not part of the idempotency fingerprint.

impl CommandRequest for DefineAssetRequest {
    const ROUTE: &'static str = "POST /v1/assets";

    fn command(&self) -> Result<Command, ApiError> {
        Ok(Command::DefineAsset(DefineAsset {
            code: self.code.clone(),
            scale: self.scale,
        }))
    }
}

impl CommandRequest for OpenAccountRequest {
    const ROUTE: &'static str = "POST /v1/accounts";

    fn command(&self) -> Result<Command, ApiError> {
        Ok(Command::OpenAccount(OpenAccount {
            id: AccountId(Uuid::now_v7()),
            code: self.code.clone(),
            allow_negative: self.allow_negative,
            metadata: self.metadata.clone(),
        }))
    }
}

impl PostingRequest {
    fn instruction(&self) -> PostingInstruction {
        PostingInstruction {
            source: self.source.clone(),
            destination: self.destination.clone(),
            asset: self.asset.clone(),
            amount: self.amount,
        }
    }
}

impl CommandRequest for TransactionRequest {
    const ROUTE: &'static str = "POST /v1/transactions";

    fn command(&self) -> Result<Command, ApiError> {
        Ok(Command::PostTransaction(PostTransaction {
            id: TransactionId(Uuid::now_v7()),
            kind: TransactionKind::Transaction,
            postings: self
                .postings
                .iter()
                .map(PostingRequest::instruction)
                .collect(),
            metadata: self.metadata.clone(),
            guards: guards(&self.conditions, &self.expected_versions),
            pending: hold_terms(self.pending, self.expires_at, self.timeout_s)?,
        }))
    }
}

impl CommandRequest for TransferRequest {
    const ROUTE: &'static str = "POST /v1/transfers";

    fn command(&self) -> Result<Command, ApiError> {
        Ok(Command::PostTransaction(PostTransaction {
            id: TransactionId(Uuid::now_v7()),
            kind: TransactionKind::Transfer,
            postings: vec![PostingInstruction {
                source: self.source.clone(),
                destination: self.destination.clone(),
                asset: self.asset.clone(),
                amount: self.amount,
            }],
            metadata: self.metadata.clone(),
            guards: guards(&self.conditions, &self.expected_versions),
            pending: hold_terms(self.pending, self.expires_at, self.timeout_s)?,
        }))
    }
}

impl CommandRequest for TradeRequest {
    const ROUTE: &'static str = "POST /v1/trades";

    fn command(&self) -> Result<Command, ApiError> {
        Ok(Command::ExecuteTrade(ExecuteTrade {
            id: TransactionId(Uuid::now_v7()),
            buyer: self.buyer.clone(),
            seller: self.seller.clone(),
            instrument: self.instrument.clone(),
            quantity: self.quantity,
            price: self.price,
            currency: self.currency.clone(),
            fees: self
                .fees
                .iter()
                .map(|f| FeeInstruction {
                    payer: f.payer.clone(),
                    account: f.account.clone(),
                    asset: f.asset.clone(),
                    amount: f.amount,
                })
                .collect(),
            metadata: self.metadata.clone(),
            guards: guards(&self.conditions, &self.expected_versions),
            pending: hold_terms(self.pending, self.expires_at, self.timeout_s)?,
        }))
    }
}

impl CommandRequest for AccountStatusCommand {
    const ROUTE: &'static str = "POST /v1/accounts/{id_or_code}/{action}";

    fn command(&self) -> Result<Command, ApiError> {
        Ok(Command::ChangeAccountStatus(ChangeAccountStatus {
            account: self.account.clone(),
            change: self.change,
            metadata: self.request.metadata.clone(),
        }))
    }
}

impl CommandRequest for AccountLimitsCommand {
    const ROUTE: &'static str = "PATCH /v1/accounts/{id_or_code}/limits";

    fn command(&self) -> Result<Command, ApiError> {
        Ok(Command::SetAccountLimits(SetAccountLimits {
            account: self.account.clone(),
            asset: self.request.asset.clone(),
            min_balance: bound_change(self.request.min_balance),
            max_balance: bound_change(self.request.max_balance),
        }))
    }
}

// ------------------------------------------------------------------ responses

#[derive(Debug, Serialize, ToSchema)]
pub struct AssetView {
    pub code: String,
    pub scale: u32,
    /// The position of the event that defined it.
    pub position: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AssetList {
    pub items: Vec<AssetView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BalanceView {
    pub asset: String,
    /// The posted balance.
    #[schema(example = "100.00")]
    pub balance: String,
    /// Reserved by pending transactions that debit the account. Absent from balances at a past
    /// position or time, which are the posted ones.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "30.00")]
    pub pending_debits: Option<String>,
    /// Reserved by pending transactions that credit the account.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "0.00")]
    pub pending_credits: Option<String>,
    /// `balance` less `pending_debits`: what the account can still spend.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "70.00")]
    pub available: Option<String>,
    /// The position of the last event that changed these figures.
    pub position: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountView {
    pub id: Uuid,
    pub code: String,
    pub allow_negative: bool,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    /// The position of the event that opened it.
    pub position: i64,
    pub opened_at: DateTime<Utc>,
    /// `open`, `frozen` (no postings until unfrozen) or `closed` (final).
    pub status: String,
    /// The position of the last event that changed the account: pass it as `expected_versions`
    /// to apply a command only if nothing changed since.
    pub version: i64,
    pub balances: Vec<BalanceView>,
    /// Bounds set with `PATCH …/limits`, per asset.
    pub limits: Vec<LimitView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LimitView {
    pub asset: String,
    /// `null`: unbounded.
    #[schema(example = "-500.00")]
    pub min_balance: Option<String>,
    pub max_balance: Option<String>,
}

/// What a status change returns.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountStatusView {
    pub account: String,
    pub status: String,
    pub position: i64,
    pub recorded_at: DateTime<Utc>,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
}

/// What a limits change returns: the bounds in the asset from now on.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountLimitsView {
    pub account: String,
    #[serde(flatten)]
    pub limits: LimitView,
    pub position: i64,
    pub recorded_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountList {
    pub items: Vec<AccountView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PostingView {
    pub source: String,
    pub destination: String,
    pub asset: String,
    pub amount: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TransactionView {
    pub id: Uuid,
    /// `transaction`, `transfer` or `trade`.
    pub kind: String,
    pub position: i64,
    pub recorded_at: DateTime<Utc>,
    /// For a pending transaction, what it reserves.
    pub postings: Vec<PostingView>,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    /// `posted`; or for a pending transaction `pending`, then `posted`, `voided` or `expired`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// How a pending transaction was settled, once it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settlement: Option<SettlementView>,
    /// For a reversal (kind `reversal`): the transaction it reverses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reverses: Option<Uuid>,
    /// For a reversal: whether the balance bounds were skipped on request.
    #[serde(skip_serializing_if = "is_false")]
    pub forced: bool,
    /// The reversal of this transaction, once it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reversed_by: Option<Uuid>,
}

/// The settlement of a pending transaction: what a post or void returns.
#[derive(Debug, Serialize, ToSchema)]
pub struct SettlementView {
    /// The pending transaction.
    pub pending_id: Uuid,
    /// `posted`, `voided` or `expired`.
    pub status: String,
    pub position: i64,
    pub recorded_at: DateTime<Utc>,
    /// What moved (posted only): at most what was reserved, per posting.
    pub postings: Vec<PostingView>,
    /// The reservations that ended.
    pub released: Vec<PostingView>,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FeeView {
    pub payer: String,
    pub account: String,
    pub asset: String,
    pub amount: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TradeView {
    pub id: Uuid,
    pub position: i64,
    pub recorded_at: DateTime<Utc>,
    pub buyer: String,
    pub seller: String,
    pub instrument: String,
    pub quantity: String,
    pub price: String,
    pub currency: String,
    /// quantity × price, exact at the currency's scale.
    pub notional: String,
    pub fees: Vec<FeeView>,
    /// Instrument to the buyer, cash to the seller, then one posting per fee.
    pub postings: Vec<PostingView>,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    /// `posted`; or for a pending trade `pending`, then `posted`, `voided` or `expired`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settlement: Option<SettlementView>,
    /// The reversal of this trade, once it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reversed_by: Option<Uuid>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryEntryView {
    pub position: i64,
    /// The leg's index within its event.
    pub leg: i16,
    pub transaction_id: Uuid,
    pub kind: String,
    pub asset: String,
    /// Signed: negative when money left the account.
    #[schema(example = "-25.00")]
    pub amount: String,
    /// The account's balance in this asset right after this leg.
    pub balance_after: String,
    /// The account on the other side of the posting.
    pub counterparty: String,
    pub recorded_at: DateTime<Utc>,
}

/// One item of an account's history: a posting, or a change of the account itself.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HistoryItemView {
    Posting(HistoryEntryView),
    StatusChanged {
        position: i64,
        /// -1: before the postings of its position (it has none).
        leg: i16,
        status: String,
        recorded_at: DateTime<Utc>,
    },
    LimitsSet {
        position: i64,
        leg: i16,
        #[serde(flatten)]
        limits: LimitView,
        recorded_at: DateTime<Utc>,
    },
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryPage {
    pub items: Vec<HistoryItemView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    pub position: i64,
    pub event_id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    pub schema_version: i16,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    pub recorded_at: DateTime<Utc>,
    /// SHA-256 of the previous event's hash and this event's canonical bytes, hex (docs/audit.md).
    pub hash: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    pub items: Vec<EventView>,
    /// Pass as `after` for the next page (the last position returned, or `after` if none).
    pub next_after: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// This node serves reads and writes: its read source answers, and it is the writer or knows
    /// the writer to forward writes to.
    pub ready: bool,
    /// The read source answers.
    pub database: bool,
    /// This node's writer task: `leader`, `standby`, `starting` or `recovering`.
    pub writer: String,
    /// `writer` (holds the lock) or `follower` (forwards writes to the writer).
    pub role: String,
    /// Where writes go: this node's URL when it is the writer, the writer's when it is known.
    pub writer_url: Option<String>,
    /// The last position this node's writer committed (0 on a follower).
    pub position: i64,
    /// Where reads come from; `None` while it does not answer.
    pub read_source: Option<ReadSourceView>,
    /// Where each projection of the read source is in the log (empty while it does not answer).
    pub projections: Vec<ProjectionView>,
}

/// A projection's place in the log: inline ones are at the head by construction; asynchronous
/// ones trail it by what their projector has not applied yet.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectionView {
    pub name: String,
    /// `inline` (written with the events) or `async` (built by the projector after the commit).
    pub kind: String,
    /// The position it reflects.
    pub position: i64,
    /// Events of the log it does not reflect yet.
    pub lag_events: i64,
    /// How long ago the oldest event it does not reflect yet was recorded.
    pub lag_ms: i64,
}

/// Where a node's reads come from, and how far behind the primary they are.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadSourceView {
    /// `primary`, or `replica` (a streaming replica, through `--read-database-url`).
    pub kind: String,
    /// The position its snapshots reflect now.
    pub position: i64,
    /// How many events the primary holds that it has not replayed yet (0 on the primary).
    pub lag_events: i64,
    /// On a replica: how long ago the last transaction it replayed committed on the primary.
    pub replay_lag_ms: Option<i64>,
}

/// The result of walking the hash chain over the whole log.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChainReportView {
    pub intact: bool,
    pub events_verified: i64,
    pub head_position: i64,
    pub head_hash: String,
    /// The first position where the chain breaks: an altered, missing or misplaced event.
    pub first_broken_position: Option<i64>,
    pub problem: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BalancesAtView {
    pub account_id: Uuid,
    pub account: String,
    /// The balances are as the ledger stood right after this position.
    pub as_of_position: i64,
    /// The time asked for, when the request gave `at`.
    pub as_of: Option<DateTime<Utc>>,
    /// Each asset the account held by then; `position` is that of its last change.
    pub balances: Vec<BalanceView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatementView {
    pub account_id: Uuid,
    pub account: String,
    pub asset: String,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// The balance right after `opening_position`, the last event before `from`.
    pub opening_position: i64,
    pub opening_balance: String,
    /// The postings recorded in [from, to), oldest first, each with the balance after it.
    pub entries: Vec<HistoryEntryView>,
    /// The balance right after `closing_position`, the last event before `to`.
    pub closing_position: i64,
    pub closing_balance: String,
}
