//! The ledger's state: assets, accounts with their figures and limits, open holds and settled
//! ones, reversal links and the head; what may be read of it, and the invariants it must satisfy.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::ops::Deref;

use chrono::{DateTime, Utc};

use super::records::{Hold, Periods, Recent, SpecificLots, Timing, Undo};
use super::storage::{Account, Accounts, Assets, Figures, Limits, Slot};
use crate::error::ApplyError;
use crate::money;
use crate::values::{
    AccountCode, AccountId, AccountStatus, AssetCode, HoldOutcome, Scale, TransactionId,
};

/// An account as the state shows it: the account (its fields through `Deref`) with its figures
/// and limits by asset code, which only the state can tell from its numbers of the assets.
#[derive(Clone, Copy)]
pub struct AccountView<'a> {
    account: &'a Account,
    assets: &'a Assets,
}

impl<'a> AccountView<'a> {
    pub(super) fn new(account: &'a Account, assets: &'a Assets) -> Self {
        Self { account, assets }
    }

    pub fn account(self) -> &'a Account {
        self.account
    }

    /// The bounds in `asset`: those set for it, or by default a minimum of zero (unbounded when
    /// the account was opened with `allow_negative`) and no maximum.
    pub fn limits(&self, asset: &AssetCode) -> Limits {
        self.explicit_limits(asset)
            .unwrap_or_else(|| self.account.default_limits())
    }

    pub fn explicit_limits(&self, asset: &AssetCode) -> Option<Limits> {
        self.account
            .explicit_limits_in(self.assets.index_of(asset)?)
    }

    pub fn all_explicit_limits(&self) -> impl Iterator<Item = (&'a AssetCode, Limits)> + 'a {
        let assets = self.assets;
        self.account
            .limits
            .iter()
            .filter_map(move |(a, l)| Some((assets.code(*a)?, *l)))
    }

    /// The posted balance.
    pub fn balance(&self, asset: &AssetCode) -> i128 {
        self.figures(asset).posted
    }

    pub fn figures(&self, asset: &AssetCode) -> Figures {
        self.assets
            .index_of(asset)
            .map_or_else(Figures::default, |a| self.account.figures_in(a))
    }

    /// The posted balances that are not zero.
    pub fn balances(&self) -> impl Iterator<Item = (&'a AssetCode, i128)> + 'a {
        self.all_figures()
            .filter(|(_, f)| f.posted != 0)
            .map(|(a, f)| (a, f.posted))
    }

    /// Every asset with a posted balance or a reservation.
    pub fn all_figures(&self) -> impl Iterator<Item = (&'a AssetCode, Figures)> + 'a {
        let assets = self.assets;
        self.account
            .balances
            .iter()
            .filter_map(move |(a, f)| Some((assets.code(a)?, f)))
    }
}

impl Deref for AccountView<'_> {
    type Target = Account;

    fn deref(&self) -> &Account {
        self.account
    }
}

/// Equal when the accounts are, with the same figures and limits in the same assets (in whatever
/// order, and whatever numbers their states gave the assets).
impl PartialEq for AccountView<'_> {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.account, other.account);
        a.id == b.id
            && a.code == b.code
            && a.allow_negative == b.allow_negative
            && a.status == b.status
            && a.version == b.version
            && a.balances.len() == b.balances.len()
            && self
                .all_figures()
                .all(|(asset, f)| other.figures(asset) == f)
            && a.limits.len() == b.limits.len()
            && self
                .all_explicit_limits()
                .all(|(asset, l)| other.explicit_limits(asset) == Some(l))
    }
}

impl Eq for AccountView<'_> {}

impl fmt::Debug for AccountView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = self.account;
        f.debug_struct("Account")
            .field("id", &a.id)
            .field("code", &a.code)
            .field("allow_negative", &a.allow_negative)
            .field("status", &a.status)
            .field("version", &a.version)
            .field("balances", &self.all_figures().collect::<Vec<_>>())
            .field("limits", &self.all_explicit_limits().collect::<Vec<_>>())
            .finish()
    }
}

/// One side of a posting as it lands on an account: what the postings history records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leg {
    pub account_id: AccountId,
    pub asset: AssetCode,
    pub scale: Scale,
    /// Signed smallest units: negative for the source, positive for the destination.
    pub units: i128,
    pub balance_after: i128,
    pub counterparty_id: AccountId,
    pub posting_index: u16,
}

#[derive(Debug, Clone, Default)]
pub struct LedgerState {
    pub(super) assets: Assets,
    pub(super) accounts: Accounts,
    /// The position of the last event applied: the log is gap-free and every event is applied
    /// in order, so the next one applied is at `head + 1`.
    pub(super) head: i64,
    /// Pending transactions not yet settled, and the times the ledger acts on them by itself
    /// (expiry, or a trade's settlement) in order.
    pub(super) holds: HashMap<TransactionId, Hold>,
    pub(super) expiries: BTreeSet<(DateTime<Utc>, TransactionId)>,
    /// How each settled pending transaction ended, for a clear answer to a second settlement.
    pub(super) settled: HashMap<TransactionId, HoldOutcome>,
    /// Reversed transactions, and the reversal of each.
    pub(super) reversed: HashMap<TransactionId, TransactionId>,
    /// While a group is open: what to restore, newest last, to roll the group back.
    pub(super) journal: Option<Vec<Undo>>,
    /// The closed periods.
    pub(super) periods: Periods,
    /// When the events being decided will be recorded, and how far ahead they may count.
    pub(super) timing: Timing,
    /// What a close checks: when the latest money events count (not compared: a restored state
    /// knows less of it than a replayed one, and only ever races a close more).
    pub(super) recent: Recent,
    /// The accounts that book by specific lots, and when each last changed.
    pub(super) specific: SpecificLots,
}

/// Equal when they hold the same assets, accounts, holds, settlements, reversals and head,
/// however they were reached: in whatever order the accounts were opened and the assets defined.
impl PartialEq for LedgerState {
    fn eq(&self, other: &Self) -> bool {
        self.head == other.head
            && self.assets == other.assets
            && self.accounts.len() == other.accounts.len()
            && self
                .accounts()
                .all(|a| other.account(a.id).is_some_and(|b| a == b))
            && self.holds == other.holds
            && self.expiries == other.expiries
            && self.settled == other.settled
            && self.reversed == other.reversed
            && self.journal == other.journal
            && self.periods == other.periods
            && self
                .specific
                .accounts
                .keys()
                .collect::<std::collections::BTreeSet<_>>()
                == other.specific.accounts.keys().collect()
    }
}

impl Eq for LedgerState {}

impl LedgerState {
    pub fn new() -> Self {
        Self::default()
    }

    /// The position of the last event applied.
    pub fn head(&self) -> i64 {
        self.head
    }

    pub fn asset_scale(&self, asset: &AssetCode) -> Option<Scale> {
        self.assets.scale(asset)
    }

    /// The defined assets, in the order they were defined.
    pub fn assets(&self) -> impl Iterator<Item = (&AssetCode, Scale)> {
        self.assets.iter()
    }

    pub fn account(&self, id: AccountId) -> Option<AccountView<'_>> {
        let slot = self.accounts.slot_of_id(id)?;
        self.view(slot)
    }

    pub fn account_by_code(&self, code: &AccountCode) -> Option<AccountView<'_>> {
        let slot = self.accounts.slot_of_code(code)?;
        self.view(slot)
    }

    /// The accounts, in the order they were opened.
    pub fn accounts(&self) -> impl Iterator<Item = AccountView<'_>> {
        self.accounts
            .iter()
            .map(|(_, account)| AccountView::new(account, &self.assets))
    }

    pub fn account_count(&self) -> usize {
        self.accounts.len()
    }

    fn view(&self, slot: Slot) -> Option<AccountView<'_>> {
        let account = self.accounts.get(slot)?;
        Some(AccountView::new(account, &self.assets))
    }

    pub fn hold(&self, id: TransactionId) -> Option<&Hold> {
        self.holds.get(&id)
    }

    /// The open holds, by id.
    pub fn open_holds(&self) -> Vec<TransactionId> {
        let mut ids: Vec<TransactionId> = self.holds.keys().copied().collect();
        ids.sort_by_key(|id| id.0);
        ids
    }

    /// Holds due at or before `at` (their `expires_at`, or a trade's `settles_at`), oldest
    /// first, at most `max`. A trade one of whose accounts is not open is not due: its
    /// settlement posts, which a frozen account refuses, and a refusal under the ledger's own
    /// key would stand for good. It settles once the account is unfrozen (an expiry moves
    /// nothing, so it is never held back).
    pub fn holds_due(&self, at: DateTime<Utc>, max: usize) -> Vec<TransactionId> {
        self.expiries
            .iter()
            .take_while(|(due_at, _)| *due_at <= at)
            .map(|(_, id)| *id)
            .filter(|id| !self.settlement_held_back(*id))
            .take(max)
            .collect()
    }

    /// Whether a hold that settles by itself names an account that is not open.
    fn settlement_held_back(&self, id: TransactionId) -> bool {
        let Some(hold) = self.holds.get(&id) else {
            return false;
        };
        hold.expires_at.is_none()
            && hold.settles_at.is_some()
            && hold.postings.iter().any(|posting| {
                [&posting.source, &posting.destination]
                    .into_iter()
                    .any(|code| {
                        self.known_account(code)
                            .is_ok_and(|(_, account)| account.status != AccountStatus::Open)
                    })
            })
    }

    /// The reversal of a transaction, once it has one.
    pub fn reversed_by(&self, id: TransactionId) -> Option<TransactionId> {
        self.reversed.get(&id).copied()
    }

    /// The position and the account of `code`, which a posting names.
    pub(super) fn known_account(&self, code: &AccountCode) -> Result<(Slot, &Account), ApplyError> {
        self.accounts
            .slot_of_code(code)
            .and_then(|slot| Some((slot, self.accounts.get(slot)?)))
            .ok_or_else(|| ApplyError(format!("posting names unknown account {code}")))
    }

    /// The sum of all balances per asset. Every posting debits what it credits, so each is zero;
    /// anything else means the state was corrupted.
    pub fn totals_per_asset(&self) -> BTreeMap<AssetCode, i128> {
        let mut totals: BTreeMap<AssetCode, i128> =
            self.assets().map(|(a, _)| (a.clone(), 0)).collect();
        for account in self.accounts() {
            for (asset, units) in account.balances() {
                *totals.entry(asset.clone()).or_default() += units;
            }
        }
        totals
    }

    /// Checks conservation: the sum of balances is zero for every asset, and every reservation
    /// has both sides (pending debits and pending credits sum to the same per asset).
    pub fn check_conservation(&self) -> Result<(), ApplyError> {
        for (asset, total) in self.totals_per_asset() {
            if total != 0 {
                return Err(ApplyError(format!(
                    "balances of {asset} sum to {total} smallest units, not zero"
                )));
            }
        }
        let mut pending: BTreeMap<&AssetCode, (i128, i128)> = BTreeMap::new();
        for account in self.accounts() {
            for (asset, figures) in account.all_figures() {
                let sums = pending.entry(asset).or_default();
                sums.0 += figures.pending_debits;
                sums.1 += figures.pending_credits;
            }
        }
        for (asset, (debits, credits)) in pending {
            if debits != credits {
                return Err(ApplyError(format!(
                    "pending debits of {asset} sum to {debits} smallest units, pending credits to {credits}"
                )));
            }
        }
        Ok(())
    }

    /// Checks that the accounts' reservations are exactly what the open holds reserve: how a
    /// state restored from the projections is proved against the holds it restored.
    pub fn check_holds(&self) -> Result<(), ApplyError> {
        let mut reserved: HashMap<(AccountId, &AssetCode), (i128, i128)> = HashMap::new();
        for hold in self.holds.values() {
            for posting in &hold.postings {
                let scale = self.asset_scale(&posting.asset).ok_or_else(|| {
                    ApplyError(format!("a hold in undefined asset {}", posting.asset))
                })?;
                let units = money::to_units(posting.amount, scale).map_err(|_| {
                    ApplyError(format!("a hold of {} does not fit", posting.amount))
                })?;
                let source = self.known_account(&posting.source)?.1.id;
                let destination = self.known_account(&posting.destination)?.1.id;
                reserved.entry((source, &posting.asset)).or_default().0 += units;
                reserved.entry((destination, &posting.asset)).or_default().1 += units;
            }
        }
        for account in self.accounts() {
            for (asset, figures) in account.all_figures() {
                let held = reserved.remove(&(account.id, asset)).unwrap_or_default();
                if held != (figures.pending_debits, figures.pending_credits) {
                    return Err(ApplyError(format!(
                        "{} reserves {}/{} of {asset} but its holds add up to {}/{}",
                        account.code,
                        figures.pending_debits,
                        figures.pending_credits,
                        held.0,
                        held.1
                    )));
                }
            }
        }
        match reserved.into_iter().find(|(_, held)| *held != (0, 0)) {
            Some(((id, asset), _)) => Err(ApplyError(format!(
                "holds reserve {asset} on {id}, which shows no reservation"
            ))),
            None => Ok(()),
        }
    }
}
