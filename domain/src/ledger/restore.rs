//! Restoring the state from the projections when the writer starts, rather than replaying the
//! log. Each restore refuses what would make the state inconsistent; the caller proves the whole
//! with `check_conservation` and `check_holds` once everything is restored.

use super::records::Hold;
use super::state::LedgerState;
use super::storage::Balances;
use super::storage::{Account, Figures, Limits};
use crate::error::ApplyError;
use crate::event::{AssetDefined, Event};
use crate::values::{
    AccountCode, AccountId, AccountStatus, AssetCode, HoldOutcome, Scale, TransactionId,
};

impl LedgerState {
    /// Sets the head when the state is restored from the projections rather than replayed.
    pub fn restore_head(&mut self, head: i64) {
        self.head = head;
        self.forget_recent();
        self.specific.known_after = head;
    }

    /// Restores an asset read from the projections when the writer starts.
    pub fn restore_asset(&mut self, asset: AssetCode, scale: Scale) -> Result<(), ApplyError> {
        self.apply(&Event::AssetDefined(AssetDefined { asset, scale }))
            .map(drop)
    }

    /// Restores an account read from the projections when the writer starts (without balances).
    pub fn restore_account(
        &mut self,
        id: AccountId,
        code: AccountCode,
        allow_negative: bool,
        status: AccountStatus,
        version: i64,
    ) -> Result<(), ApplyError> {
        self.accounts.open(Account {
            id,
            code,
            allow_negative,
            status,
            version,
            balances: Balances::default(),
            limits: Vec::new(),
        })
    }

    /// Restores limits read from the projections when the writer starts.
    pub fn restore_limits(
        &mut self,
        account_id: AccountId,
        asset: &AssetCode,
        limits: Limits,
    ) -> Result<(), ApplyError> {
        let asset = self
            .assets
            .index_of(asset)
            .ok_or_else(|| ApplyError(format!("limits in undefined asset {asset}")))?;
        self.account_mut(account_id)
            .ok_or_else(|| ApplyError(format!("limits of unknown account {account_id}")))?
            .set_limits(asset, limits);
        Ok(())
    }

    /// Restores a balance read from the projections when the writer starts. The caller checks
    /// conservation once everything is restored.
    pub fn restore_balance(
        &mut self,
        account_id: AccountId,
        asset: &AssetCode,
        units: i128,
    ) -> Result<(), ApplyError> {
        self.restore_figures(account_id, asset, |f| f.posted = units)
    }

    /// Restores an account's reservations in an asset, read from the projections.
    pub fn restore_pending(
        &mut self,
        account_id: AccountId,
        asset: &AssetCode,
        pending_debits: i128,
        pending_credits: i128,
    ) -> Result<(), ApplyError> {
        self.restore_figures(account_id, asset, |f| {
            f.pending_debits = pending_debits;
            f.pending_credits = pending_credits;
        })
    }

    fn restore_figures(
        &mut self,
        account_id: AccountId,
        asset: &AssetCode,
        change: impl FnOnce(&mut Figures),
    ) -> Result<(), ApplyError> {
        let asset = self
            .assets
            .index_of(asset)
            .ok_or_else(|| ApplyError(format!("balance in undefined asset {asset}")))?;
        let account = self
            .account_mut(account_id)
            .ok_or_else(|| ApplyError(format!("balance of unknown account {account_id}")))?;
        let mut figures = account.figures_in(asset);
        change(&mut figures);
        account.set_figures(asset, figures);
        Ok(())
    }

    fn account_mut(&mut self, id: AccountId) -> Option<&mut Account> {
        let slot = self.accounts.slot_of_id(id)?;
        self.accounts.get_mut(slot)
    }

    /// Restores an open hold read from the projections (its reservations are restored with the
    /// balances).
    pub fn restore_hold(&mut self, id: TransactionId, hold: Hold) -> Result<(), ApplyError> {
        if self.holds.contains_key(&id) || self.settled.contains_key(&id) {
            return Err(ApplyError(format!(
                "pending transaction {id} restored twice"
            )));
        }
        if let Some(due_at) = hold.due_at() {
            self.expiries.insert((due_at, id));
        }
        self.holds.insert(id, hold);
        Ok(())
    }

    /// Restores what an open hold settled in part still reserves.
    pub fn restore_hold_remaining(
        &mut self,
        id: TransactionId,
        remaining: Vec<crate::event::Posting>,
    ) -> Result<(), ApplyError> {
        let hold = self
            .holds
            .get_mut(&id)
            .ok_or_else(|| ApplyError(format!("a part of {id}, which is not an open hold")))?;
        hold.postings = remaining;
        Ok(())
    }

    /// Restores how a settled hold ended.
    pub fn restore_settled(&mut self, id: TransactionId, outcome: HoldOutcome) {
        self.settled.insert(id, outcome);
    }

    /// Restores a reversal read from the projections.
    pub fn restore_reversal(
        &mut self,
        original: TransactionId,
        reversal: TransactionId,
    ) -> Result<(), ApplyError> {
        match self.reversed.insert(original, reversal) {
            Some(_) => Err(ApplyError(format!("transaction {original} reversed twice"))),
            None => Ok(()),
        }
    }
}
