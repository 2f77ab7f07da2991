//! Transactions and transfers, and what every money-moving request may carry: conditions on
//! balances, expected account versions, and the terms of a pending hold.

use chrono::{DateTime, Utc};
use domain::command::{
    BalanceFigure, Comparison, Condition, CostInstruction, ExpectedVersion, Guards, HoldTerms,
};
use domain::values::SignedDecimal;
use domain::{
    AccountRef, AssetCode, Command, Metadata, PositiveDecimal, PostTransaction, PostingInstruction,
    TransactionId, TransactionKind,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::ApiError;
use crate::is_false;
use crate::routes::write::CommandRequest;

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
    /// What the units cost, for the lots (not on a pending transaction): it opens a lot at this
    /// cost in the destination and closes lots in the source with it as proceeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<CostRequest>,
}

/// The total cost of a posting's units, in another asset: `{"amount": "1505.00", "currency":
/// "USD"}`, at most the currency's decimal places.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CostRequest {
    #[schema(value_type = String, example = "1505.00")]
    pub amount: PositiveDecimal,
    #[schema(value_type = String, example = "USD")]
    pub currency: AssetCode,
}

impl CostRequest {
    fn instruction(&self) -> CostInstruction {
        CostInstruction {
            amount: self.amount,
            currency: self.currency.clone(),
        }
    }
}

impl PostingRequest {
    fn instruction(&self) -> PostingInstruction {
        PostingInstruction {
            cost: self.cost.as_ref().map(CostRequest::instruction),
            source: self.source.clone(),
            destination: self.destination.clone(),
            asset: self.asset.clone(),
            amount: self.amount,
        }
    }
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
    /// When it counts in the books (RFC 3339, at most microseconds): in the past back to the end
    /// of the last closed period (exclusive), or ahead by at most the server's
    /// `--effective-future-max`. Absent: when it is recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_at: Option<DateTime<Utc>>,
}

impl CommandRequest for TransactionRequest {
    const ROUTE: &'static str = "POST /v1/transactions";

    fn command(&self, now: DateTime<Utc>) -> Result<Command, ApiError> {
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
            pending: hold_terms(self.pending, self.expires_at, self.timeout_s, now)?,
            effective_at: super::effective_time(self.effective_at)?,
        }))
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
    /// What the units cost, for the lots (not on a pending transfer): it opens a lot at this
    /// cost in the destination and closes lots in the source with it as proceeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<CostRequest>,
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
    /// When it counts in the books (RFC 3339, at most microseconds): in the past back to the end
    /// of the last closed period (exclusive), or ahead by at most the server's
    /// `--effective-future-max`. Absent: when it is recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_at: Option<DateTime<Utc>>,
}

impl CommandRequest for TransferRequest {
    const ROUTE: &'static str = "POST /v1/transfers";

    fn command(&self, now: DateTime<Utc>) -> Result<Command, ApiError> {
        Ok(Command::PostTransaction(PostTransaction {
            id: TransactionId(Uuid::now_v7()),
            kind: TransactionKind::Transfer,
            postings: vec![PostingInstruction {
                cost: self.cost.as_ref().map(CostRequest::instruction),
                source: self.source.clone(),
                destination: self.destination.clone(),
                asset: self.asset.clone(),
                amount: self.amount,
            }],
            metadata: self.metadata.clone(),
            guards: guards(&self.conditions, &self.expected_versions),
            pending: hold_terms(self.pending, self.expires_at, self.timeout_s, now)?,
            effective_at: super::effective_time(self.effective_at)?,
        }))
    }
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

/// The preconditions a money-moving request carries, as the domain checks them.
pub(super) fn guards(
    conditions: &[ConditionRequest],
    expected_versions: &[ExpectedVersionRequest],
) -> Guards {
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

/// A pending request's terms, with `timeout_s` turned into a time from `now` (the rule is the
/// domain's: `HoldTerms::of_request`).
pub(super) fn hold_terms(
    pending: bool,
    expires_at: Option<DateTime<Utc>>,
    timeout_s: Option<u32>,
    now: DateTime<Utc>,
) -> Result<Option<HoldTerms>, ApiError> {
    HoldTerms::of_request(pending, expires_at, timeout_s, now)
        .map_err(|e| ApiError::Validation(e.to_string()))
}
