//! What the state keeps besides accounts and assets: the open holds, the closed periods and what a
//! close checks, and the changes an atomic batch may have to take back. Plain records: `holds`,
//! `periods` and `journal` say what happens to them.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Duration, NaiveTime, Utc};

use super::storage::{Account, Slot};
use crate::event::Posting;
use crate::values::{AccountCode, AccountId, AssetCode, TransactionId};

/// What a pending transaction reserves, until it is settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub postings: Vec<Posting>,
    pub expires_at: Option<DateTime<Utc>>,
    /// When the hold counts in the books: a settlement never counts earlier.
    pub effective_at: DateTime<Utc>,
    /// A pending trade is posted whole or voided: a part of it would break quantity × price.
    /// A trade with a settlement date is the exception: it may settle in parts.
    pub trade: bool,
    /// When the ledger posts what a trade with a settlement date still reserves.
    pub settles_at: Option<DateTime<Utc>>,
}

impl Hold {
    /// When the ledger acts on the hold by itself: it expires, or it settles.
    pub fn due_at(&self) -> Option<DateTime<Utc>> {
        self.expires_at.or(self.settles_at)
    }
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
    Periods(Periods),
    /// A run of `Recent` pushed, or extended from this last position, or a backdated event noted.
    RunPushed,
    RunExtended(i64),
    BackdatedPushed,
    /// An account's entry among the `specific` ones as it was (`None`: not among them).
    Specific(AccountCode, Option<i64>),
}

/// The accounts that book by `specific` lots, each with the position of the last event that
/// touched it: a sale's named lots were read from the lots projection at some position, and are
/// accepted only if nothing touched the seller since (`specific`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecificLots {
    pub(super) accounts: HashMap<AccountCode, i64>,
    /// What touched an account at or before this position is not known here (before a restore).
    pub(super) known_after: i64,
}

/// A period of the books that is closed now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClosedPeriod {
    pub period: u32,
    pub through: DateTime<Utc>,
}

/// The closed periods, oldest first (a reopen takes back the latest), and how many closes the
/// ledger has recorded: the number of the next.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Periods {
    pub(super) closed: Vec<ClosedPeriod>,
    pub(super) closes: u32,
}

impl Periods {
    /// The latest period closed now.
    pub fn latest(&self) -> Option<ClosedPeriod> {
        self.closed.last().copied()
    }
}

/// What the decision knows of the latest money events' effective times (`periods` says how it
/// is kept and read).
#[derive(Debug, Clone, Default)]
pub(super) struct Recent {
    /// (first position, last position, recorded time) of each run of money events recorded at
    /// one time, oldest first. Recording times never go back, so the first run ending after a
    /// position has the earliest recording time of the money events after it.
    pub(super) runs: VecDeque<(i64, i64, DateTime<Utc>)>,
    /// (position, effective time) of money events that count earlier than they were recorded.
    pub(super) backdated: VecDeque<(i64, DateTime<Utc>)>,
    /// What happened at or before this position is not known here (before the state was restored,
    /// or fallen out).
    pub(super) known_after: i64,
    /// A close being retried after writes raced it: (through, until when writes into the period
    /// wait). Not of the log: a moment of the writer, which a restart forgets.
    pub(super) closing: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

/// The time settings of a decision: when the events being decided will be recorded, and how far
/// ahead of that an effective time may be.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timing {
    pub recording_at: DateTime<Utc>,
    pub future_max: Duration,
    /// The time of day (UTC) at which trades settle on their settlement date.
    pub settlement_time: NaiveTime,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            recording_at: DateTime::UNIX_EPOCH,
            future_max: Duration::zero(),
            settlement_time: NaiveTime::MIN,
        }
    }
}
