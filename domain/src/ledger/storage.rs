//! How the state keeps its accounts and assets, compactly enough for millions of accounts: the
//! accounts in one vector in the order they were opened, found by id or code through two tables
//! of positions (each code is kept once, in its account); the assets numbered in the order they
//! were defined, so that an account's figures and limits name an asset by its number; and the
//! figures of an account's first asset kept in the account itself, since most accounts hold one.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};

use hashbrown::HashTable;

use crate::error::ApplyError;
use crate::money;
use crate::values::{AccountCode, AccountId, AccountStatus, AssetCode, Scale};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    pub code: AccountCode,
    pub allow_negative: bool,
    pub status: AccountStatus,
    /// The position of the last event that changed the account (opened it, moved one of its
    /// balances, changed its status or limits): what `expected_version` compares with.
    pub version: i64,
    /// Figures in smallest units, per asset (by the state's number of the asset).
    pub(super) balances: Balances,
    /// Bounds set explicitly, per asset; other assets have the default ones.
    pub(super) limits: Vec<(AssetIndex, Limits)>,
}

/// An account's bounds in one asset, in smallest units; `None` is unbounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub min_units: Option<i128>,
    pub max_units: Option<i128>,
}

impl Account {
    /// The bounds in `asset`: those set for it, or else the default ones.
    pub(super) fn limits_in(&self, asset: AssetIndex) -> Limits {
        self.explicit_limits_in(asset)
            .unwrap_or_else(|| self.default_limits())
    }

    /// The bounds in an asset with none set: a minimum of zero (unbounded when the account was
    /// opened with `allow_negative`) and no maximum.
    pub(super) fn default_limits(&self) -> Limits {
        Limits {
            min_units: if self.allow_negative { None } else { Some(0) },
            max_units: None,
        }
    }

    pub(super) fn explicit_limits_in(&self, asset: AssetIndex) -> Option<Limits> {
        self.limits
            .iter()
            .find(|(a, _)| *a == asset)
            .map(|(_, limits)| *limits)
    }

    pub(super) fn set_limits(&mut self, asset: AssetIndex, limits: Limits) {
        match self.limits.iter().position(|(a, _)| *a == asset) {
            Some(i) => self.limits[i].1 = limits,
            None => self.limits.push((asset, limits)),
        }
    }

    pub(super) fn figures_in(&self, asset: AssetIndex) -> Figures {
        self.balances.get(asset)
    }

    /// Zero figures are not kept, so that equal states are equal however they were reached.
    pub(super) fn set_figures(&mut self, asset: AssetIndex, figures: Figures) {
        self.balances.set(asset, figures);
    }
}

/// An account's figures in one asset, in smallest units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Figures {
    pub posted: i128,
    /// Reserved by pending transactions that debit the account.
    pub pending_debits: i128,
    /// Reserved by pending transactions that credit the account.
    pub pending_credits: i128,
}

impl Figures {
    /// Posted less pending debits: what the account may still spend, and what `min_balance`
    /// bounds.
    pub fn available(&self) -> i128 {
        self.posted - self.pending_debits
    }

    /// Posted plus pending credits: the balance if every pending credit were posted, and what
    /// `max_balance` bounds.
    pub fn ceiling(&self) -> i128 {
        self.posted + self.pending_credits
    }

    pub fn is_zero(&self) -> bool {
        *self == Self::default()
    }

    /// `self + delta`, within the balance type, with reservations never below zero.
    pub(super) fn plus(&self, delta: &Figures) -> Option<Figures> {
        let pending_debits = money::checked_add(self.pending_debits, delta.pending_debits)?;
        let pending_credits = money::checked_add(self.pending_credits, delta.pending_credits)?;
        (pending_debits >= 0 && pending_credits >= 0).then_some(())?;
        Some(Figures {
            posted: money::checked_add(self.posted, delta.posted)?,
            pending_debits,
            pending_credits,
        })
    }
}

/// A defined asset's number: assets are numbered from zero in the order they were defined.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct AssetIndex(u32);

/// An account's position in the state: accounts are numbered from zero in the order they were
/// opened (or restored), and keep their position for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Slot(u32);

/// The defined assets, by number and by code.
#[derive(Debug, Clone, Default)]
pub(super) struct Assets {
    defined: Vec<(AssetCode, Scale)>,
    numbers: HashMap<AssetCode, AssetIndex>,
}

impl Assets {
    pub(super) fn index_of(&self, code: &AssetCode) -> Option<AssetIndex> {
        self.numbers.get(code).copied()
    }

    /// The asset's number, its code as the state keeps it, and its scale.
    pub(super) fn get(&self, code: &AssetCode) -> Option<(AssetIndex, &AssetCode, Scale)> {
        let index = self.index_of(code)?;
        let (code, scale) = self.defined.get(index.0 as usize)?;
        Some((index, code, *scale))
    }

    pub(super) fn scale(&self, code: &AssetCode) -> Option<Scale> {
        self.get(code).map(|(_, _, scale)| scale)
    }

    pub(super) fn code(&self, index: AssetIndex) -> Option<&AssetCode> {
        self.defined.get(index.0 as usize).map(|(code, _)| code)
    }

    /// In the order they were defined.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&AssetCode, Scale)> {
        self.defined.iter().map(|(code, scale)| (code, *scale))
    }

    /// Defines an asset, refusing one defined already.
    pub(super) fn define(&mut self, code: AssetCode, scale: Scale) -> Result<(), ApplyError> {
        if self.numbers.contains_key(&code) {
            return Err(ApplyError(format!("asset {code} defined twice")));
        }
        let index = u32::try_from(self.defined.len())
            .map(AssetIndex)
            .map_err(|_| ApplyError(format!("asset {code} is one asset too many")))?;
        self.numbers.insert(code.clone(), index);
        self.defined.push((code, scale));
        Ok(())
    }

    /// Takes back the definition of `code`, the last asset defined (see `roll_back_group`).
    pub(super) fn forget_last(&mut self, code: &AssetCode) {
        if self.defined.last().is_some_and(|(last, _)| last == code) {
            self.defined.pop();
            self.numbers.remove(code);
        }
    }
    /// Every asset is found by its code at its number, and nothing else is.
    #[cfg(test)]
    pub(super) fn is_consistent(&self) -> bool {
        self.numbers.len() == self.defined.len()
            && (0..)
                .map(AssetIndex)
                .zip(&self.defined)
                .all(|(index, (code, _))| self.index_of(code) == Some(index))
    }
}

/// Equal when they define the same codes with the same scales, in whatever order.
impl PartialEq for Assets {
    fn eq(&self, other: &Self) -> bool {
        self.defined.len() == other.defined.len()
            && self
                .iter()
                .all(|(code, scale)| other.scale(code) == Some(scale))
    }
}

impl Eq for Assets {}

/// The accounts, by position, and the positions by id and by code.
#[derive(Clone, Default)]
pub(super) struct Accounts {
    list: Vec<Account>,
    /// Positions in `list`, hashed by the id of the account there.
    by_id: HashTable<u32>,
    /// Positions in `list`, hashed by the code of the account there.
    by_code: HashTable<u32>,
    hasher: RandomState,
}

impl Accounts {
    pub(super) fn len(&self) -> usize {
        self.list.len()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (Slot, &Account)> {
        (0..).map(Slot).zip(&self.list)
    }

    pub(super) fn get(&self, slot: Slot) -> Option<&Account> {
        self.list.get(slot.0 as usize)
    }

    pub(super) fn get_mut(&mut self, slot: Slot) -> Option<&mut Account> {
        self.list.get_mut(slot.0 as usize)
    }

    pub(super) fn slot_of_id(&self, id: AccountId) -> Option<Slot> {
        let list = &self.list;
        self.by_id
            .find(self.hasher.hash_one(id), |&i| {
                list.get(i as usize).is_some_and(|a| a.id == id)
            })
            .map(|&i| Slot(i))
    }

    pub(super) fn slot_of_code(&self, code: &AccountCode) -> Option<Slot> {
        let list = &self.list;
        self.by_code
            .find(self.hasher.hash_one(code), |&i| {
                list.get(i as usize).is_some_and(|a| a.code == *code)
            })
            .map(|&i| Slot(i))
    }

    /// Adds an account at the next position, refusing an id or a code that exists already.
    pub(super) fn open(&mut self, account: Account) -> Result<(), ApplyError> {
        if self.slot_of_code(&account.code).is_some() || self.slot_of_id(account.id).is_some() {
            return Err(ApplyError(format!(
                "account {} would exist twice",
                account.code
            )));
        }
        let position = u32::try_from(self.list.len())
            .map_err(|_| ApplyError(format!("account {} is one account too many", account.code)))?;
        let (id_hash, code_hash) = (
            self.hasher.hash_one(account.id),
            self.hasher.hash_one(&account.code),
        );
        self.list.push(account);
        let Self {
            list,
            by_id,
            by_code,
            hasher,
        } = self;
        by_id.insert_unique(id_hash, position, |&i| rehash(list, hasher, i, |a| &a.id));
        by_code.insert_unique(code_hash, position, |&i| {
            rehash(list, hasher, i, |a| &a.code)
        });
        Ok(())
    }

    /// Takes back the opening of the account `id`, the last one opened (see `roll_back_group`,
    /// which takes changes back newest first).
    pub(super) fn forget_last(&mut self, id: AccountId) {
        let Some(Slot(position)) = self.slot_of_id(id) else {
            return;
        };
        if position as usize + 1 != self.list.len() {
            return;
        }
        let Some(account) = self.list.pop() else {
            return;
        };
        let (id_hash, code_hash) = (
            self.hasher.hash_one(account.id),
            self.hasher.hash_one(&account.code),
        );
        if let Ok(entry) = self.by_id.find_entry(id_hash, |&i| i == position) {
            entry.remove();
        }
        if let Ok(entry) = self.by_code.find_entry(code_hash, |&i| i == position) {
            entry.remove();
        }
    }

    /// Every account is found by its id and by its code at its position, and nothing else is.
    #[cfg(test)]
    pub(super) fn is_consistent(&self) -> bool {
        self.by_id.len() == self.list.len()
            && self.by_code.len() == self.list.len()
            && self.iter().all(|(slot, account)| {
                self.slot_of_id(account.id) == Some(slot)
                    && self.slot_of_code(&account.code) == Some(slot)
            })
    }
}

/// The hash of what `key` takes of the account at position `i`, for a table that grows.
fn rehash<K: Hash + ?Sized>(
    list: &[Account],
    hasher: &RandomState,
    i: u32,
    key: impl Fn(&Account) -> &K,
) -> u64 {
    list.get(i as usize)
        .map_or(0, |account| hasher.hash_one(key(account)))
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(&self.list).finish()
    }
}

/// An account's figures per asset, as a list: the first entry in the account itself, the others
/// in a vector. Zero figures are not kept, so that equal states are equal however they were
/// reached; an empty first entry (zero figures) means an empty list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Balances {
    first_asset: AssetIndex,
    first: Figures,
    rest: Vec<(AssetIndex, Figures)>,
}

impl Balances {
    /// In the order of a vector to which assets are pushed and from which they are removed by
    /// `swap_remove`: the order the state kept before the first entry moved into the account.
    pub(super) fn iter(&self) -> impl Iterator<Item = (AssetIndex, Figures)> + '_ {
        let first = (!self.first.is_zero()).then_some((self.first_asset, self.first));
        first.into_iter().chain(self.rest.iter().copied())
    }

    pub(super) fn len(&self) -> usize {
        if self.first.is_zero() {
            0
        } else {
            1 + self.rest.len()
        }
    }

    pub(super) fn get(&self, asset: AssetIndex) -> Figures {
        self.iter()
            .find(|(a, _)| *a == asset)
            .map_or_else(Figures::default, |(_, f)| f)
    }

    pub(super) fn set(&mut self, asset: AssetIndex, figures: Figures) {
        let held = self.iter().position(|(a, _)| a == asset);
        match held {
            Some(0) if figures.is_zero() => {
                // What `swap_remove(0)` does: the last entry takes the first place.
                (self.first_asset, self.first) = self.rest.pop().unwrap_or_default();
            }
            Some(0) => self.first = figures,
            Some(i) if figures.is_zero() => {
                self.rest.swap_remove(i - 1);
            }
            Some(i) => {
                if let Some(entry) = self.rest.get_mut(i - 1) {
                    entry.1 = figures;
                }
            }
            None if figures.is_zero() => {}
            None if self.first.is_zero() => (self.first_asset, self.first) = (asset, figures),
            None => self.rest.push((asset, figures)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(posted: i128) -> Figures {
        Figures {
            posted,
            ..Figures::default()
        }
    }

    /// The balances keep the order, and the contents, of the vector they replace.
    #[test]
    fn balances_behave_as_a_vector_with_swap_remove() {
        let mut balances = Balances::default();
        let mut vector: Vec<(AssetIndex, Figures)> = Vec::new();
        let script: &[(u32, i128)] = &[
            (0, 5),
            (1, 6),
            (2, 7),
            (3, 8),
            (0, 0),
            (1, 9),
            (3, 0),
            (4, 1),
            (2, 0),
            (1, 0),
            (4, 0),
            (4, 0),
            (5, 2),
            (5, 3),
        ];
        for &(asset, posted) in script {
            let (asset, figures) = (AssetIndex(asset), figures(posted));
            balances.set(asset, figures);
            match vector.iter().position(|(a, _)| *a == asset) {
                Some(i) if figures.is_zero() => {
                    vector.swap_remove(i);
                }
                Some(i) => vector[i].1 = figures,
                None if figures.is_zero() => {}
                None => vector.push((asset, figures)),
            }
            assert_eq!(balances.iter().collect::<Vec<_>>(), vector);
            assert_eq!(balances.len(), vector.len());
            for probe in 0..6 {
                let expected = vector
                    .iter()
                    .find(|(a, _)| a.0 == probe)
                    .map_or_else(Figures::default, |(_, f)| *f);
                assert_eq!(balances.get(AssetIndex(probe)), expected);
            }
        }
    }
}
