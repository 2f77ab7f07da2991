//! Applying events: the only thing that changes the state. Replaying the log through `apply` gives
//! the state the writer had when it decided.

use super::records::Undo;
use super::state::{LedgerState, Leg};
use super::steps::Effect;
use super::storage::Slot;
use super::storage::{Account, Figures, Limits};
use crate::error::ApplyError;
use crate::event::Event;
use crate::money;
use crate::values::{AccountStatus, AssetCode};

impl LedgerState {
    /// Applies an event. It checks everything before it changes anything, so a failed apply leaves
    /// the state as it was. Returns the legs the event's postings put on accounts, in order.
    pub fn apply(&mut self, event: &Event) -> Result<Vec<Leg>, ApplyError> {
        let position = self.head + 1;
        let legs = match event {
            Event::AssetDefined(e) => {
                self.assets.define(e.asset.clone(), e.scale)?;
                self.record(Undo::AssetDefined(e.asset.clone()));
                Vec::new()
            }
            Event::AccountOpened(e) => {
                self.restore_account(
                    e.account_id,
                    e.code.clone(),
                    e.allow_negative,
                    AccountStatus::Open,
                    position,
                )?;
                self.record(Undo::AccountOpened(e.account_id));
                Vec::new()
            }
            Event::TransactionPosted(_)
            | Event::TradeExecuted(_)
            | Event::PendingPosted(_)
            | Event::PendingVoided(_)
            | Event::PendingExpired(_) => {
                // Everything is checked before anything changes.
                let hold_change = self.hold_change(event)?;
                let reverses = self.reversal_of(event)?;
                let legs = self.apply_steps(event, position)?;
                self.change_hold(hold_change);
                if let (Some(original), Some(reversal)) = (reverses, event.transaction_id()) {
                    self.record_reversal(original, reversal);
                }
                self.note_effective(event, position);
                legs
            }
            Event::BookingMethodSet(e) => {
                let (slot, _) = self.known_account(&e.account)?;
                self.change_account(slot, position, |_| {});
                Vec::new()
            }
            Event::PriceMarked(_) => Vec::new(),
            Event::PeriodClosed(_) | Event::PeriodReopened(_) => {
                self.apply_period(event)?;
                Vec::new()
            }
            Event::AccountStatusChanged(e) => {
                let (slot, _) = self.known_account(&e.account)?;
                self.change_account(slot, position, |account| account.status = e.status);
                Vec::new()
            }
            Event::AccountLimitsSet(e) => {
                let (slot, _) = self.known_account(&e.account)?;
                let (asset, _, scale) = self
                    .assets
                    .get(&e.asset)
                    .ok_or_else(|| ApplyError(format!("limits in undefined asset {}", e.asset)))?;
                let units = |bound: Option<rust_decimal::Decimal>| {
                    bound
                        .map(|b| money::to_units(b, scale))
                        .transpose()
                        .map_err(|_| ApplyError(format!("limit does not fit {}", e.asset)))
                };
                let limits = Limits {
                    min_units: units(e.min_balance)?,
                    max_units: units(e.max_balance)?,
                };
                self.change_account(slot, position, |account| account.set_limits(asset, limits));
                Vec::new()
            }
        };
        self.note_specific(event, position);
        self.record(Undo::Head(self.head));
        self.head = position;
        Ok(legs)
    }

    /// Changes an account (journalled) and makes `position` its version.
    fn change_account(&mut self, slot: Slot, position: i64, change: impl FnOnce(&mut Account)) {
        let Some(account) = self.accounts.get_mut(slot) else {
            return;
        };
        if let Some(journal) = &mut self.journal {
            journal.push(Undo::Account(slot, account.clone()));
        }
        change(account);
        account.version = position;
    }

    /// Performs an event's steps: the accounts' figures change, and the steps that move money
    /// become the legs the postings history records.
    fn apply_steps(&mut self, event: &Event, position: i64) -> Result<Vec<Leg>, ApplyError> {
        let steps = self.steps_of(event)?;
        let walked = self.walk(&steps).map_err(|index| {
            ApplyError(format!(
                "step {index} leaves the balance type or releases more than was reserved"
            ))
        })?;
        // Debits equal credits per asset, posted and pending: true by construction, asserted
        // because money depends on it.
        let mut net: Vec<(&AssetCode, Figures)> = Vec::new();
        for step in &steps {
            let slot = match net.iter().position(|(a, _)| *a == step.asset) {
                Some(slot) => slot,
                None => {
                    net.push((step.asset, Figures::default()));
                    net.len() - 1
                }
            };
            let sums = &mut net[slot].1;
            sums.posted += step.delta.posted;
            sums.pending_debits += step.delta.pending_debits;
            sums.pending_credits += step.delta.pending_credits;
        }
        if let Some((asset, sums)) = net
            .iter()
            .find(|(_, s)| s.posted != 0 || s.pending_debits != s.pending_credits)
        {
            return Err(ApplyError(format!(
                "postings in {asset} do not balance: {sums:?}"
            )));
        }
        let mut legs = Vec::new();
        for (step, (_, after)) in steps.iter().zip(&walked) {
            self.change_account(step.slot, position, |account| {
                account.set_figures(step.asset_index, *after)
            });
            if step.effect == Effect::Move {
                legs.push(Leg {
                    account_id: step.account,
                    asset: step.asset.clone(),
                    scale: step.scale,
                    units: step.delta.posted,
                    balance_after: after.posted,
                    counterparty_id: step.counterparty,
                    posting_index: u16::try_from(legs.len() / 2).unwrap_or(u16::MAX),
                });
            }
        }
        Ok(legs)
    }
}
