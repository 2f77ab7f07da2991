//! The domain's errors: a value that is not well formed, and a command the ledger refuses.

use serde::{Deserialize, Serialize};

/// A value that does not satisfy its type's rules; the message says which rule, for a person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValueError(String);

impl ValueError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// Why the ledger refused a command. A refusal appends nothing and changes no state; it is stored
/// with the idempotency key, so a retry gets the same answer. The serialized form is stable: the
/// `code` tag is part of the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Rejection {
    #[error("{message}")]
    ValidationError { message: String },
    #[error("asset {asset} is not defined")]
    AssetNotFound { asset: String },
    #[error("asset {asset} is already defined with scale {scale}")]
    DuplicateAsset { asset: String, scale: u32 },
    #[error("account {account} does not exist")]
    AccountNotFound { account: String },
    #[error("account {account} already exists")]
    DuplicateAccount { account: String },
    #[error("{message}")]
    AmountPrecision { message: String },
    #[error("account {account} has {balance} {asset}; this needs {required} {asset}")]
    InsufficientFunds {
        account: String,
        asset: String,
        balance: String,
        required: String,
        /// The account's lowest allowed balance when it is not zero (a credit limit).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min_balance: Option<String>,
    },
    #[error(
        "account {account} would hold {balance_after} {asset}, above its maximum of {max_balance}"
    )]
    BalanceLimitExceeded {
        account: String,
        asset: String,
        balance_after: String,
        max_balance: String,
    },
    #[error("account {account} is frozen: it accepts no postings until unfrozen")]
    AccountFrozen { account: String },
    #[error("account {account} is closed")]
    AccountClosed { account: String },
    #[error("account {account} is not frozen")]
    AccountNotFrozen { account: String },
    #[error("account {account} still holds {balance} {asset}; only an account with every balance zero can be closed")]
    AccountNotEmpty {
        account: String,
        asset: String,
        balance: String,
    },
    /// Boxed: the largest refusal, and refusals travel in every decision's `Result`.
    #[error("{0}")]
    ConditionFailed(Box<ConditionFailure>),
    #[error("account {account} still has pending holds in {asset} ({pending_debits} out, {pending_credits} in): post or void them first")]
    AccountHasHolds {
        account: String,
        asset: String,
        pending_debits: String,
        pending_credits: String,
    },
    #[error("no pending transaction {transaction_id}")]
    PendingNotFound { transaction_id: String },
    #[error("pending transaction {transaction_id} was already posted")]
    PendingAlreadyPosted { transaction_id: String },
    #[error("pending transaction {transaction_id} was already voided")]
    PendingAlreadyVoided { transaction_id: String },
    #[error("pending transaction {transaction_id} has expired")]
    PendingExpired { transaction_id: String },
    #[error("transaction {transaction_id} was already reversed by {reversed_by}")]
    TransactionAlreadyReversed {
        transaction_id: String,
        reversed_by: String,
    },
    #[error("transaction {transaction_id} is itself a reversal and is not reversed; post a new transaction instead")]
    ReversalNotReversible { transaction_id: String },
    #[error("account {account} is at version {actual}, not the expected {expected}")]
    VersionMismatch {
        account: String,
        expected: i64,
        actual: i64,
    },
    #[error("{message}")]
    BalanceOverflow { message: String },
    /// Another command of the same atomic batch was refused, so none of them was applied.
    #[error(
        "the atomic batch was not applied: command {failed_index} was refused ({failed_code})"
    )]
    BatchAborted {
        failed_index: usize,
        failed_code: String,
    },
    #[error("effective_at {effective_at} is later than the latest allowed now, {latest}")]
    EffectiveInFuture {
        effective_at: String,
        latest: String,
    },
    #[error("effective_at {effective_at} falls in period {period}, closed through {closed_through}: write into an open period instead")]
    PeriodClosed {
        effective_at: String,
        period: u32,
        closed_through: String,
    },
    /// The close was decided against a trial balance that entries recorded since may change:
    /// the caller reads it again and retries.
    #[error("{message}")]
    PeriodCloseRaced { message: String },
    #[error("no period is closed: there is nothing to reopen")]
    NoClosedPeriod,
    /// A close through `closing_through` is being retried after writes raced it: writes into
    /// the period wait for it (retry shortly; the close either lands, and they are refused as
    /// `period_closed`, or does not, and they are taken).
    #[error("the period through {closing_through} is being closed; retry shortly")]
    PeriodClosing { closing_through: String },
    /// The named lots were checked against open lots that events recorded since may change:
    /// the caller reads them again and retries.
    #[error("{message}")]
    LotsRaced { message: String, changed_at: i64 },
}

impl Rejection {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::ValidationError { .. } => "validation_error",
            Self::AssetNotFound { .. } => "asset_not_found",
            Self::DuplicateAsset { .. } => "duplicate_asset",
            Self::AccountNotFound { .. } => "account_not_found",
            Self::DuplicateAccount { .. } => "duplicate_account",
            Self::AmountPrecision { .. } => "amount_precision",
            Self::InsufficientFunds { .. } => "insufficient_funds",
            Self::BalanceLimitExceeded { .. } => "balance_limit_exceeded",
            Self::AccountFrozen { .. } => "account_frozen",
            Self::AccountClosed { .. } => "account_closed",
            Self::AccountNotFrozen { .. } => "account_not_frozen",
            Self::AccountNotEmpty { .. } => "account_not_empty",
            Self::ConditionFailed(_) => "condition_failed",
            Self::VersionMismatch { .. } => "version_mismatch",
            Self::AccountHasHolds { .. } => "account_has_holds",
            Self::PendingNotFound { .. } => "pending_not_found",
            Self::PendingAlreadyPosted { .. } => "pending_already_posted",
            Self::PendingAlreadyVoided { .. } => "pending_already_voided",
            Self::PendingExpired { .. } => "pending_expired",
            Self::TransactionAlreadyReversed { .. } => "transaction_already_reversed",
            Self::ReversalNotReversible { .. } => "reversal_not_reversible",
            Self::BalanceOverflow { .. } => "balance_overflow",
            Self::BatchAborted { .. } => "batch_aborted",
            Self::EffectiveInFuture { .. } => "effective_in_future",
            Self::PeriodClosed { .. } => "period_closed",
            Self::PeriodCloseRaced { .. } => "period_close_raced",
            Self::NoClosedPeriod => "no_closed_period",
            Self::PeriodClosing { .. } => "period_closing",
            Self::LotsRaced { .. } => "lots_raced",
        }
    }

    /// A refusal that says nothing about the command, only about a moment of the writer (a close
    /// in progress): not recorded against the idempotency key, so a retry is decided afresh.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::PeriodCloseRaced { .. } | Self::PeriodClosing { .. } | Self::LotsRaced { .. }
        )
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::ValidationError {
            message: message.into(),
        }
    }
}

/// Which condition of a command failed, and the balance it found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("condition {index} failed: the {figure} balance of {account} in {asset} is {actual}, not {op} {amount}")]
pub struct ConditionFailure {
    pub index: usize,
    pub account: String,
    pub asset: String,
    pub figure: String,
    pub op: String,
    pub amount: String,
    pub actual: String,
}

/// An event that cannot be applied to the state: the log or the projections are not what the
/// ledger wrote. Never expected; reported loudly rather than skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event cannot be applied: {0}")]
pub struct ApplyError(pub String);
