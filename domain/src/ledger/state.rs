//! The ledger's state: assets, accounts with their figures and limits, open holds and settled
//! ones, reversal links and the head; what may be read of it, and the invariants it must satisfy.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};

use super::holds::Hold;
use super::journal::Undo;
use super::steps::Figures;
use crate::error::ApplyError;
use crate::money;
use crate::values::{
    AccountCode, AccountId, AccountStatus, AssetCode, HoldOutcome, Scale, TransactionId,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    pub code: AccountCode,
    pub allow_negative: bool,
    pub status: AccountStatus,
    /// The position of the last event that changed the account (opened it, moved one of its
    /// balances, changed its status or limits): what `expected_version` compares with.
    pub version: i64,
    /// Figures in smallest units, per asset; an account holds few assets, so a small vector.
    pub(super) balances: Vec<(AssetCode, Figures)>,
    /// Bounds set explicitly, per asset; other assets have the default ones.
    pub(super) limits: Vec<(AssetCode, Limits)>,
}

/// An account's bounds in one asset, in smallest units; `None` is unbounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub min_units: Option<i128>,
    pub max_units: Option<i128>,
}

impl Account {
    /// The bounds in `asset`: those set for it, or by default a minimum of zero (unbounded when
    /// the account was opened with `allow_negative`) and no maximum.
    pub fn limits(&self, asset: &AssetCode) -> Limits {
        self.explicit_limits(asset).unwrap_or(Limits {
            min_units: if self.allow_negative { None } else { Some(0) },
            max_units: None,
        })
    }

    pub fn explicit_limits(&self, asset: &AssetCode) -> Option<Limits> {
        self.limits
            .iter()
            .find(|(a, _)| a == asset)
            .map(|(_, limits)| *limits)
    }

    pub fn all_explicit_limits(&self) -> impl Iterator<Item = (&AssetCode, Limits)> {
        self.limits.iter().map(|(a, l)| (a, *l))
    }

    pub(super) fn set_limits(&mut self, asset: &AssetCode, limits: Limits) {
        match self.limits.iter().position(|(a, _)| a == asset) {
            Some(i) => self.limits[i].1 = limits,
            None => self.limits.push((asset.clone(), limits)),
        }
    }

    /// The posted balance.
    pub fn balance(&self, asset: &AssetCode) -> i128 {
        self.figures(asset).posted
    }

    pub fn figures(&self, asset: &AssetCode) -> Figures {
        self.balances
            .iter()
            .find(|(a, _)| a == asset)
            .map_or_else(Figures::default, |(_, f)| *f)
    }

    /// The posted balances that are not zero.
    pub fn balances(&self) -> impl Iterator<Item = (&AssetCode, i128)> {
        self.balances
            .iter()
            .filter(|(_, f)| f.posted != 0)
            .map(|(a, f)| (a, f.posted))
    }

    /// Every asset with a posted balance or a reservation.
    pub fn all_figures(&self) -> impl Iterator<Item = (&AssetCode, Figures)> {
        self.balances.iter().map(|(a, f)| (a, *f))
    }

    /// Zero figures are not kept, so that equal states are equal however they were reached.
    pub(super) fn set_figures(&mut self, asset: &AssetCode, figures: Figures) {
        match self.balances.iter().position(|(a, _)| a == asset) {
            Some(i) if figures.is_zero() => {
                self.balances.swap_remove(i);
            }
            Some(i) => self.balances[i].1 = figures,
            None if figures.is_zero() => {}
            None => self.balances.push((asset.clone(), figures)),
        }
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

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LedgerState {
    pub(super) assets: HashMap<AssetCode, Scale>,
    pub(super) account_ids: HashMap<AccountCode, AccountId>,
    pub(super) accounts: HashMap<AccountId, Account>,
    /// The position of the last event applied: the log is gap-free and every event is applied
    /// in order, so the next one applied is at `head + 1`.
    pub(super) head: i64,
    /// Pending transactions not yet settled, and their expiry times in order.
    pub(super) holds: HashMap<TransactionId, Hold>,
    pub(super) expiries: BTreeSet<(DateTime<Utc>, TransactionId)>,
    /// How each settled pending transaction ended, for a clear answer to a second settlement.
    pub(super) settled: HashMap<TransactionId, HoldOutcome>,
    /// Reversed transactions, and the reversal of each.
    pub(super) reversed: HashMap<TransactionId, TransactionId>,
    /// While a group is open: what to restore, newest last, to roll the group back.
    pub(super) journal: Option<Vec<Undo>>,
}

impl LedgerState {
    pub fn new() -> Self {
        Self::default()
    }

    /// The position of the last event applied.
    pub fn head(&self) -> i64 {
        self.head
    }

    pub fn asset_scale(&self, asset: &AssetCode) -> Option<Scale> {
        self.assets.get(asset).copied()
    }

    pub fn assets(&self) -> impl Iterator<Item = (&AssetCode, Scale)> {
        self.assets.iter().map(|(a, s)| (a, *s))
    }

    pub fn account(&self, id: AccountId) -> Option<&Account> {
        self.accounts.get(&id)
    }

    pub fn account_by_code(&self, code: &AccountCode) -> Option<&Account> {
        self.account_ids
            .get(code)
            .and_then(|id| self.accounts.get(id))
    }

    pub fn accounts(&self) -> impl Iterator<Item = &Account> {
        self.accounts.values()
    }

    pub fn account_count(&self) -> usize {
        self.accounts.len()
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

    /// Holds whose `expires_at` is at or before `at`, oldest first, at most `max`.
    pub fn holds_due(&self, at: DateTime<Utc>, max: usize) -> Vec<TransactionId> {
        self.expiries
            .iter()
            .take_while(|(expires_at, _)| *expires_at <= at)
            .take(max)
            .map(|(_, id)| *id)
            .collect()
    }

    /// The reversal of a transaction, once it has one.
    pub fn reversed_by(&self, id: TransactionId) -> Option<TransactionId> {
        self.reversed.get(&id).copied()
    }

    pub(super) fn known_account(&self, code: &AccountCode) -> Result<&Account, ApplyError> {
        self.account_by_code(code)
            .ok_or_else(|| ApplyError(format!("posting names unknown account {code}")))
    }

    /// The sum of all balances per asset. Every posting debits what it credits, so each is zero;
    /// anything else means the state was corrupted.
    pub fn totals_per_asset(&self) -> BTreeMap<AssetCode, i128> {
        let mut totals: BTreeMap<AssetCode, i128> =
            self.assets.keys().map(|a| (a.clone(), 0)).collect();
        for account in self.accounts.values() {
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
        for account in self.accounts.values() {
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
                let source = self.known_account(&posting.source)?.id;
                let destination = self.known_account(&posting.destination)?.id;
                reserved.entry((source, &posting.asset)).or_default().0 += units;
                reserved.entry((destination, &posting.asset)).or_default().1 += units;
            }
        }
        for account in self.accounts.values() {
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
