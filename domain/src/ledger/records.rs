//! What the state keeps besides accounts and assets: the open holds, and the changes an atomic
//! batch may have to take back. Plain records: `holds` and `journal` say what happens to them.

use chrono::{DateTime, Utc};

use super::storage::{Account, Slot};
use crate::event::Posting;
use crate::values::{AccountId, AssetCode, TransactionId};

/// What a pending transaction reserves, until it is settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub postings: Vec<Posting>,
    pub expires_at: Option<DateTime<Utc>>,
    /// When the hold counts in the books: a settlement never counts earlier.
    pub effective_at: DateTime<Utc>,
    /// A pending trade is posted whole or voided: a part of it would break quantity × price.
    pub trade: bool,
}

/// One change the journal can take back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Undo {
    AssetDefined(AssetCode),
    /// An account opened (the last one the state holds when its turn comes to be taken back).
    AccountOpened(AccountId),
    /// The account at a position as it was before a change.
    Account(Slot, Account),
    /// A hold as it was; `None` when it did not exist.
    Hold(TransactionId, Option<Hold>),
    /// A settlement recorded (to be forgotten on rollback).
    Settled(TransactionId),
    /// A reversal of this transaction recorded.
    Reversed(TransactionId),
    Head(i64),
    /// The periods as they were before a close or a reopen.
    Periods(super::periods::Periods),
    /// A run of `Recent` pushed, or extended from this last position, or a backdated event noted.
    RunPushed,
    RunExtended(i64),
    BackdatedPushed,
}
