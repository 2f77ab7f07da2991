//! The undo journal of an atomic batch. While a group is open, every change `apply` makes is
//! recorded with what it replaced, so that a batch abandoned half way leaves the state exactly as
//! it was before its first event.

use std::collections::HashSet;

use super::records::{Hold, Undo};
use super::state::{AccountView, LedgerState};
use super::storage::{Account, Slot};
use crate::values::TransactionId;

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
                // Taken back newest first, an asset defined or an account opened in the group
                // is the last one the state holds when its turn comes.
                Undo::AssetDefined(asset) => self.assets.forget_last(&asset),
                Undo::AccountOpened(id) => self.accounts.forget_last(id),
                Undo::Account(slot, before) => {
                    if let Some(account) = self.accounts.get_mut(slot) {
                        *account = before;
                    }
                }
                Undo::Hold(id, before) => self.undo_hold(id, before),
                Undo::Settled(id) => self.undo_settled(id),
                Undo::Reversed(id) => {
                    self.reversed.remove(&id);
                }
                Undo::Head(head) => self.head = head,
                Undo::Periods(periods) => self.periods = periods,
                undo @ (Undo::RunPushed | Undo::RunExtended(_) | Undo::BackdatedPushed) => {
                    self.undo_recent(&undo)
                }
                Undo::Specific(account, before) => match before {
                    Some(position) => {
                        self.specific.accounts.insert(account, position);
                    }
                    None => {
                        self.specific.accounts.remove(&account);
                    }
                },
            }
        }
    }

    /// The accounts the open group opened or changed, in the order it first touched them: each
    /// as it was before the group (`None` when the group opened it) and as it is now. How a dry
    /// run tells what its commands would do to the accounts, before it takes them back.
    pub fn group_changes(&self) -> Vec<(Option<AccountView<'_>>, AccountView<'_>)> {
        let Some(journal) = &self.journal else {
            return Vec::new();
        };
        let mut seen: HashSet<Slot> = HashSet::new();
        let mut touched: Vec<(Slot, Option<&Account>)> = Vec::new();
        for undo in journal {
            let (slot, before) = match undo {
                Undo::AccountOpened(id) => match self.accounts.slot_of_id(*id) {
                    Some(slot) => (slot, None),
                    None => continue,
                },
                Undo::Account(slot, before) => (*slot, Some(before)),
                _ => continue,
            };
            if seen.insert(slot) {
                touched.push((slot, before));
            }
        }
        touched
            .into_iter()
            .filter_map(|(slot, before)| {
                let after = AccountView::new(self.accounts.get(slot)?, &self.assets);
                Some((before.map(|b| AccountView::new(b, &self.assets)), after))
            })
            .collect()
    }

    /// Takes back a journalled change of a hold (see `roll_back_group`).
    fn undo_hold(&mut self, id: TransactionId, before: Option<Hold>) {
        if let Some(due_at) = self.holds.remove(&id).and_then(|h| h.due_at()) {
            self.expiries.remove(&(due_at, id));
        }
        if let Some(hold) = before {
            if let Some(due_at) = hold.due_at() {
                self.expiries.insert((due_at, id));
            }
            self.holds.insert(id, hold);
        }
    }

    fn undo_settled(&mut self, id: TransactionId) {
        self.settled.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::command::{
        Command, DefineAsset, OpenAccount, PostTransaction, PostingInstruction, TransactionKind,
    };
    use crate::ledger::storage::Account;
    use crate::values::{AccountId, AssetCode};
    use crate::values::{Metadata, Scale};

    fn run(state: &mut LedgerState, command: Command) {
        let event = state.decide(&command).unwrap();
        state.apply(&event).unwrap();
    }

    fn define(state: &mut LedgerState, code: &str) {
        run(
            state,
            Command::DefineAsset(DefineAsset {
                code: code.parse().unwrap(),
                scale: 2u32.try_into().unwrap(),
            }),
        );
    }

    fn open(state: &mut LedgerState, n: u128, code: &str) {
        run(
            state,
            Command::OpenAccount(OpenAccount {
                booking_method: None,
                id: AccountId(Uuid::from_u128(n)),
                code: code.parse().unwrap(),
                allow_negative: code == "world",
                metadata: Metadata::default(),
            }),
        );
    }

    fn post(state: &mut LedgerState, source: &str, destination: &str, asset: &str, amount: &str) {
        run(
            state,
            Command::PostTransaction(PostTransaction {
                id: TransactionId(Uuid::new_v4()),
                kind: TransactionKind::Transaction,
                postings: vec![PostingInstruction {
                    cost: None,
                    source: source.parse().unwrap(),
                    destination: destination.parse().unwrap(),
                    asset: asset.parse().unwrap(),
                    amount: amount.parse().unwrap(),
                }],
                metadata: Metadata::default(),
                guards: Default::default(),
                pending: None,
                effective_at: None,
            }),
        );
    }

    /// The storage as it is laid out: the accounts in their order, with their figures by asset
    /// number in their order, and the assets in theirs.
    fn layout(state: &LedgerState) -> (Vec<Account>, Vec<(AssetCode, Scale)>) {
        (
            state.accounts.iter().map(|(_, a)| a.clone()).collect(),
            state.assets().map(|(a, s)| (a.clone(), s)).collect(),
        )
    }

    #[test]
    fn rolling_back_leaves_the_storage_as_it_was() {
        let mut state = LedgerState::new();
        define(&mut state, "USD");
        define(&mut state, "AAPL");
        open(&mut state, 1, "world");
        open(&mut state, 2, "alice");
        post(&mut state, "world", "alice", "USD", "5");
        post(&mut state, "world", "alice", "AAPL", "1");
        let before = layout(&state);

        state.begin_group();
        define(&mut state, "EUR");
        open(&mut state, 3, "bob");
        open(&mut state, 4, "carol");
        post(&mut state, "world", "bob", "EUR", "1");
        post(&mut state, "world", "alice", "EUR", "2");
        // Alice's first balance is emptied: another takes its place in the account.
        post(&mut state, "alice", "carol", "USD", "5");
        post(&mut state, "alice", "bob", "AAPL", "1");
        state.roll_back_group();

        assert_eq!(layout(&state), before);
        assert!(state.accounts.is_consistent());
        assert!(state.assets.is_consistent());
        assert!(state.account_by_code(&"bob".parse().unwrap()).is_none());
        assert!(state.asset_scale(&"EUR".parse().unwrap()).is_none());
        // What was taken back can be done again, at the same positions.
        define(&mut state, "EUR");
        open(&mut state, 3, "bob");
        post(&mut state, "world", "bob", "EUR", "1");
        assert!(state.accounts.is_consistent());
        assert!(state.assets.is_consistent());
        let third = state.accounts().nth(2).map(|a| a.code.to_string());
        assert_eq!(third.as_deref(), Some("bob"));
        let bob = state.account_by_code(&"bob".parse().unwrap()).unwrap();
        assert_eq!(bob.balance(&"EUR".parse().unwrap()), 100);
        assert!(state.check_conservation().is_ok());
    }

    #[test]
    fn a_group_tells_which_accounts_it_changed_and_how() {
        let mut state = LedgerState::new();
        define(&mut state, "USD");
        open(&mut state, 1, "world");
        open(&mut state, 2, "alice");
        open(&mut state, 3, "idle");
        post(&mut state, "world", "alice", "USD", "5");
        let usd: AssetCode = "USD".parse().unwrap();

        state.begin_group();
        open(&mut state, 4, "bob");
        post(&mut state, "alice", "bob", "USD", "2");
        post(&mut state, "alice", "bob", "USD", "1");
        let changes: Vec<(String, Option<i128>, i128)> = state
            .group_changes()
            .into_iter()
            .map(|(before, after)| {
                (
                    after.code.to_string(),
                    before.map(|b| b.balance(&usd)),
                    after.balance(&usd),
                )
            })
            .collect();
        assert_eq!(
            changes,
            vec![
                ("bob".to_owned(), None, 300),
                ("alice".to_owned(), Some(500), 200),
            ]
        );
        state.roll_back_group();
        assert!(state.group_changes().is_empty());
        assert!(state.account_by_code(&"bob".parse().unwrap()).is_none());
    }
}
