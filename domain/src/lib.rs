//! The ledger's domain: pure Rust, no I/O. Value types that cannot hold invalid values, commands,
//! events, and the decision logic with its invariants (`LedgerState::decide` and `apply`).

pub mod chain;
pub mod clock;
pub mod command;
pub mod error;
pub mod event;
pub mod json;
pub mod ledger;
pub mod lots;
pub mod money;
pub mod trial_balance;
pub mod values;

pub use command::{
    Command, DefineAsset, ExecuteTrade, FeeInstruction, OpenAccount, PostTransaction,
    PostingInstruction, TransactionKind,
};
pub use error::{ApplyError, Rejection, ValueError};
pub use event::{Event, Posting};
pub use ledger::{Account, AccountView, LedgerState, Leg};
pub use values::{
    AccountCode, AccountId, AccountRef, AssetCode, BookingMethod, LedgerName, Metadata,
    PositiveDecimal, Scale, TransactionId,
};
