//! The ledger's state and its two functions: `decide` (may this command happen, and as which event?)
//! and `apply` (what an event does to the state). `decide` never changes the state; `apply` is the
//! only thing that does, so replaying the log through `apply` gives the same state that the writer
//! had when it decided.
//!
//! The code is split by phase: `state` holds the types, what may be read of them and the
//! invariant checks; `restore` rebuilds a state from the projections; `decide` has one module per
//! family of commands; `apply` changes the state, with `holds` and `reversals` for what an event
//! does to the open holds and the reversal links, and `journal` to take back an atomic batch.
//! `steps` is shared by deciding and applying, so that what was checked is what is applied.
//! `storage` is how the accounts and assets are kept, compactly: accounts by position, assets
//! by number.

mod apply;
mod decide;
mod holds;
mod journal;
mod periods;
mod records;
mod restore;
mod reversals;
mod specific;
mod state;
mod steps;
mod storage;

pub use crate::values::HoldOutcome;
pub use decide::{FAIL_REASON_BYTES_MAX, PRICE_SCALE_MAX, SETTLEMENT_DAYS_MAX};
pub use periods::{rfc3339, RECENT_BACKDATED_MAX, RECENT_RUNS_MAX, REOPEN_REASON_BYTES_MAX};
pub use records::{ClosedPeriod, Hold, Periods};
pub use state::{AccountView, LedgerState, Leg};
pub use storage::{Account, Figures, Limits};
