//! The undo journal of an atomic batch. While a group is open, every change `apply` makes is
//! recorded with what it replaced, so that a batch abandoned half way leaves the state exactly as
//! it was before its first event.

use super::holds::Hold;
use super::state::{Account, LedgerState};
use crate::values::{AccountId, AssetCode, TransactionId};

/// One change the journal can take back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Undo {
    AssetDefined(AssetCode),
    /// The account as it was before a change; `None` when the change opened it.
    Account(AccountId, Option<Account>),
    /// A hold as it was; `None` when it did not exist.
    Hold(TransactionId, Option<Hold>),
    /// A settlement recorded (to be forgotten on rollback).
    Settled(TransactionId),
    /// A reversal of this transaction recorded.
    Reversed(TransactionId),
    Head(i64),
}

impl LedgerState {
    pub(super) fn record(&mut self, undo: Undo) {
        if let Some(journal) = &mut self.journal {
            journal.push(undo);
        }
    }

    /// Opens a group of events that `roll_back_group` can take back whole: how an atomic batch
    /// is abandoned when one of its commands is refused.
    pub fn begin_group(&mut self) {
        self.journal = Some(Vec::new());
    }

    /// Keeps what the group applied.
    pub fn end_group(&mut self) {
        self.journal = None;
    }

    /// Restores the state to what it was at `begin_group`.
    pub fn roll_back_group(&mut self) {
        let Some(journal) = self.journal.take() else {
            return;
        };
        for undo in journal.into_iter().rev() {
            match undo {
                Undo::AssetDefined(asset) => {
                    self.assets.remove(&asset);
                }
                Undo::Account(id, Some(before)) => {
                    self.accounts.insert(id, before);
                }
                Undo::Account(id, None) => {
                    if let Some(account) = self.accounts.remove(&id) {
                        self.account_ids.remove(&account.code);
                    }
                }
                Undo::Hold(id, before) => self.undo_hold(id, before),
                Undo::Settled(id) => self.undo_settled(id),
                Undo::Reversed(id) => {
                    self.reversed.remove(&id);
                }
                Undo::Head(head) => self.head = head,
            }
        }
    }

    /// Takes back a journalled change of a hold (see `roll_back_group`).
    fn undo_hold(&mut self, id: TransactionId, before: Option<Hold>) {
        if let Some(expires_at) = self.holds.remove(&id).and_then(|h| h.expires_at) {
            self.expiries.remove(&(expires_at, id));
        }
        if let Some(hold) = before {
            if let Some(expires_at) = hold.expires_at {
                self.expiries.insert((expires_at, id));
            }
            self.holds.insert(id, hold);
        }
    }

    fn undo_settled(&mut self, id: TransactionId) {
        self.settled.remove(&id);
    }
}
