//! Request bodies, each beside the command it becomes, one file a family of commands. Requests
//! deserialize straight into the domain's value types, so a malformed code or amount is refused
//! while parsing.
//!
//! Each request becomes its command here; ids of what a command creates are chosen now (UUIDv7,
//! time-ordered, so their indexes grow at the right edge), so the domain's decision stays pure.
//! They are not part of the idempotency fingerprint.

mod accounts;
mod actions;
mod assets;
mod periods;
mod prices;
mod settlement;
mod trades;
mod transactions;

pub use accounts::{
    AccountLimitsCommand, AccountLimitsRequest, AccountStatusCommand, AccountStatusRequest,
    BookingMethodCommand, BookingMethodRequest, OpenAccountRequest,
};
pub use actions::{TransactionAction, TransactionActionCommand, TransactionActionRequest};
pub use assets::DefineAssetRequest;
pub use periods::{ClosePeriodCommand, ClosePeriodRequest, ReopenPeriodRequest};
pub use prices::{MarkInBatch, MarkRequest, Marks, PricesRequest, MARKS_MAX};
pub use settlement::{FailTradeCommand, FailTradeRequest, SettleTradeCommand, SettleTradeRequest};

use crate::error::ApiError;
pub use trades::{FeeRequest, TradeRequest};
pub use transactions::{
    ConditionRequest, CostRequest, ExpectedVersionRequest, PostingRequest, TransactionRequest,
    TransferRequest,
};

/// An `effective_at` as asked: kept to the microsecond, as the log keeps time; finer is refused
/// rather than cut.
pub(crate) fn effective_time(
    at: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
    at.map(|at| micros_time("effective_at", at)).transpose()
}

/// A time a request states (`field`), kept to the microsecond as the log keeps time; finer is
/// refused rather than cut.
pub(crate) fn micros_time(
    field: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<chrono::DateTime<chrono::Utc>, ApiError> {
    if !at.timestamp_subsec_nanos().is_multiple_of(1_000) {
        return Err(ApiError::Validation(format!(
            "{field} has at most six fractional digits (microseconds)"
        )));
    }
    Ok(at)
}
