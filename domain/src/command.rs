//! Commands: what a client asks the ledger to do. A command names accounts as the client did (by id
//! or code) and carries amounts as the client wrote them; the decision resolves and checks them.
//! Ids of things a command creates are chosen by the caller, so the decision stays pure.

use crate::values::{
    AccountCode, AccountId, AccountRef, AssetCode, BookingMethod, Metadata, PositiveDecimal, Scale,
    SignedDecimal, TransactionId,
};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::error::ValueError;

use crate::event::Posting;

/// The vocabulary commands share with events and reads has its home in `values`; re-exported so
/// that `command::AccountStatus` and `command::TransactionKind` keep working.
pub use crate::values::{AccountStatus, TransactionKind};

/// Bounds on the size of a command, checked by the decision.
pub const POSTINGS_MAX: usize = 64;
pub const FEES_MAX: usize = 16;
/// Bounds on the conditions and expected versions one command may carry.
pub const CONDITIONS_MAX: usize = 16;
pub const EXPECTED_VERSIONS_MAX: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    DefineAsset(DefineAsset),
    OpenAccount(OpenAccount),
    PostTransaction(PostTransaction),
    ExecuteTrade(ExecuteTrade),
    ChangeAccountStatus(ChangeAccountStatus),
    SetAccountLimits(SetAccountLimits),
    SettlePending(SettlePending),
    ReverseTransaction(ReverseTransaction),
    ClosePeriod(ClosePeriod),
    ReopenPeriod(ReopenPeriod),
    SetBookingMethod(SetBookingMethod),
    MarkPrice(MarkPrice),
}

/// A transaction, transfer or trade as the log recorded it: what a reversal takes back. The
/// reads layer supplies it from the log, which never changes; the decision checks against its
/// own state that it was not reversed yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginalTransaction {
    pub id: TransactionId,
    /// What moved: the postings of a posted transaction or trade, or of the post that settled
    /// a pending one (none when it is still pending, voided or expired).
    pub postings: Vec<Posting>,
    /// Whether it is itself a reversal.
    pub is_reversal: bool,
    /// When it counts in the books (its `effective_at`, or else when it was recorded).
    pub effective_at: DateTime<Utc>,
}

/// Appends a transaction with every posting of the original swapped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReverseTransaction {
    pub id: TransactionId,
    pub original: OriginalTransaction,
    /// Skip the balance bounds (not statuses): for an operator correcting a mistake. Recorded in
    /// the event.
    pub force: bool,
    pub metadata: Metadata,
    /// When the reversal counts; absent, when the original did if that period is still open,
    /// else when it is recorded.
    pub effective_at: Option<DateTime<Utc>>,
}

/// A transaction or trade asked for as pending: its amounts are reserved (the sources' available
/// balances fall, the destinations' pending credits rise) until it is posted, voided or expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldTerms {
    pub expires_at: Option<DateTime<Utc>>,
}

impl HoldTerms {
    /// The longest a hold may be kept.
    pub const LIFETIME_MAX_S: u32 = 365 * 24 * 3600;

    /// The terms a request asks for: none unless `pending`; then an expiry given as a time, or as
    /// a timeout from `now`, at most `LIFETIME_MAX_S` ahead. Kept to microseconds, as PostgreSQL
    /// keeps time.
    pub fn of_request(
        pending: bool,
        expires_at: Option<DateTime<Utc>>,
        timeout_s: Option<u32>,
        now: DateTime<Utc>,
    ) -> Result<Option<HoldTerms>, ValueError> {
        use chrono::SubsecRound;
        let max = Self::LIFETIME_MAX_S;
        let latest = now + chrono::Duration::seconds(i64::from(max));
        let expires_at = match (expires_at, timeout_s) {
            (Some(_), Some(_)) => {
                return Err(ValueError::new("give expires_at or timeout_s, not both"))
            }
            (None, Some(seconds)) if seconds == 0 || seconds > max => {
                return Err(ValueError::new(format!("timeout_s is 1 to {max}")))
            }
            (None, Some(seconds)) => Some(now + chrono::Duration::seconds(i64::from(seconds))),
            (Some(at), None) if at > latest => {
                return Err(ValueError::new("expires_at is at most a year ahead"))
            }
            (at, None) => at,
        };
        match (pending, expires_at) {
            (false, Some(_)) => Err(ValueError::new(
                "expires_at and timeout_s apply to pending transactions only",
            )),
            (false, None) => Ok(None),
            (true, at) => Ok(Some(HoldTerms {
                expires_at: at.map(|at| at.trunc_subsecs(6)),
            })),
        }
    }
}

/// What becomes of a pending transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Settlement {
    /// Move the money: the whole amounts, or per posting an amount up to the reserved one (zero
    /// posts nothing of that posting); what is not posted is released.
    Post {
        amounts: Option<Vec<SignedDecimal>>,
    },
    Void,
    /// Appended by the ledger itself once `expires_at` has passed.
    Expire,
    /// Appended by the ledger itself once a trade's `settles_at` has passed: posts what the
    /// trade still reserves.
    Due,
    /// A trade's settlement failed: what it has not settled yet is voided, for this reason.
    Fail {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlePending {
    pub pending_id: TransactionId,
    pub settlement: Settlement,
    /// When it was asked: a hold past its `expires_at` can no longer be posted or voided.
    pub at: DateTime<Utc>,
    pub metadata: Metadata,
    /// When the settlement counts in the books: never before the hold does.
    pub effective_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusChange {
    Freeze,
    Unfreeze,
    Close,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeAccountStatus {
    pub account: AccountRef,
    pub change: StatusChange,
    pub metadata: Metadata,
}

/// One bound of a limit as a change asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BoundChange {
    /// Leave the bound as it is.
    Keep,
    /// No bound.
    Unbounded,
    To(SignedDecimal),
}

/// Sets an account's balance bounds in one asset: `min_balance` (a credit limit when negative)
/// and `max_balance`, checked against every later debit and credit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetAccountLimits {
    pub account: AccountRef,
    pub asset: AssetCode,
    pub min_balance: BoundChange,
    pub max_balance: BoundChange,
}

/// Which figure of a balance a condition reads. `available` is the posted balance less pending
/// debits; with no holds on the account the two are equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BalanceFigure {
    Available,
    Posted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    Gte,
    Lte,
    Eq,
}

impl Comparison {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gte => "gte",
            Self::Lte => "lte",
            Self::Eq => "eq",
        }
    }
}

/// A client's precondition on a balance, checked against the state before the command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    pub account: AccountRef,
    pub asset: AssetCode,
    pub balance: BalanceFigure,
    pub op: Comparison,
    pub amount: SignedDecimal,
}

/// Optimistic concurrency: the command applies only if the account's version (the position of
/// the last event that changed it) is still this one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedVersion {
    pub account: AccountRef,
    pub version: i64,
}

/// The preconditions a money-moving command may carry; all must hold or nothing is appended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Guards {
    pub conditions: Vec<Condition>,
    pub expected_versions: Vec<ExpectedVersion>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefineAsset {
    pub code: AssetCode,
    pub scale: Scale,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenAccount {
    pub id: AccountId,
    pub code: AccountCode,
    pub allow_negative: bool,
    pub metadata: Metadata,
    pub booking_method: Option<BookingMethod>,
}

/// Changes how an account's later disposals close lots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetBookingMethod {
    pub account: AccountRef,
    pub booking_method: BookingMethod,
    pub metadata: Metadata,
}

/// Records a mark: the price of one unit of `instrument` in `currency` as of a time, never later
/// than it is recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkPrice {
    pub instrument: AssetCode,
    pub currency: AssetCode,
    pub price: PositiveDecimal,
    pub as_of: DateTime<Utc>,
    pub metadata: Metadata,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostingInstruction {
    pub source: AccountRef,
    pub destination: AccountRef,
    pub asset: AssetCode,
    pub amount: PositiveDecimal,
    /// What the units cost, for the lots: `amount` of `currency` for the whole posting.
    pub cost: Option<CostInstruction>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostInstruction {
    pub amount: PositiveDecimal,
    pub currency: AssetCode,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostTransaction {
    pub id: TransactionId,
    pub kind: TransactionKind,
    pub postings: Vec<PostingInstruction>,
    pub metadata: Metadata,
    pub guards: Guards,
    /// Reserve instead of moving: see `HoldTerms`.
    pub pending: Option<HoldTerms>,
    /// When it counts in the books; absent, when it is recorded.
    pub effective_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeInstruction {
    pub payer: AccountRef,
    pub account: AccountRef,
    /// The fee's asset; the trade's currency when absent.
    pub asset: Option<AssetCode>,
    pub amount: PositiveDecimal,
}

/// Delivery versus payment: `quantity` of `instrument` from seller to buyer and
/// `quantity × price` of `currency` from buyer to seller, plus fees, all or nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecuteTrade {
    pub id: TransactionId,
    pub buyer: AccountRef,
    pub seller: AccountRef,
    pub instrument: AssetCode,
    pub quantity: PositiveDecimal,
    pub price: PositiveDecimal,
    pub currency: AssetCode,
    pub fees: Vec<FeeInstruction>,
    pub metadata: Metadata,
    pub guards: Guards,
    pub pending: Option<HoldTerms>,
    /// When it counts in the books (its date is the trade date); absent, when it is recorded.
    pub effective_at: Option<DateTime<Utc>>,
    /// When it settles; absent, on the trade date, at once. A later date books the trade as
    /// pending until the ledger posts it at the settlement time of that date.
    pub settlement_date: Option<NaiveDate>,
}

/// Closes the books through `through`: the trial balance as of then, as known at
/// `known_at_position`, has `trial_balance_digest` (read from the postings history by the caller,
/// as a reversal's original is). The decision checks that nothing after that position takes
/// effect at or before `through`, so the digest stays true.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClosePeriod {
    pub through: DateTime<Utc>,
    pub known_at_position: i64,
    pub trial_balance_digest: String,
    pub metadata: Metadata,
}

/// Opens the latest closed period again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReopenPeriod {
    pub reason: String,
    pub metadata: Metadata,
}
