//! Balance effects. Every event that touches balances is a list of steps, each changing one
//! account's figures in one asset: the posted balance, pending debits, pending credits. Deciding
//! runs the steps on a scratch copy and checks statuses and bounds; applying runs them for real.
//! Both derive the steps from the event in the same way, so what was checked is what is applied.

use super::state::LedgerState;
use super::storage::{Account, AssetIndex, Figures, Slot};
use crate::error::{ApplyError, Rejection};
use crate::event::{Event, Posting};
use crate::money;
use crate::values::{AccountId, AccountStatus, AssetCode, Scale};

/// What a posting does to its two accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Effect {
    /// Money moves: the source's posted balance falls, the destination's rises.
    Move,
    /// A pending transaction reserves the amount: pending debits and credits rise.
    Reserve,
    /// A settlement ends a reservation: pending debits and credits fall.
    Release,
}

impl Effect {
    /// What the effect does to the source's figures and to the destination's, for `units`.
    fn deltas(self, units: i128) -> (Figures, Figures) {
        let figures = |posted, pending_debits, pending_credits| Figures {
            posted,
            pending_debits,
            pending_credits,
        };
        match self {
            Effect::Move => (figures(-units, 0, 0), figures(units, 0, 0)),
            Effect::Reserve => (figures(0, units, 0), figures(0, 0, units)),
            Effect::Release => (figures(0, -units, 0), figures(0, 0, -units)),
        }
    }
}

/// One account's change in one asset.
#[derive(Debug, Clone)]
pub(super) struct Step<'a> {
    pub account: AccountId,
    /// Where the state keeps the account.
    pub slot: Slot,
    pub counterparty: AccountId,
    pub asset: &'a AssetCode,
    /// The state's number of the asset.
    pub asset_index: AssetIndex,
    pub scale: Scale,
    pub delta: Figures,
    pub effect: Effect,
}

impl LedgerState {
    /// The steps of an event: its releases first (a settlement frees its reservations before it
    /// moves money), then its postings, moved or reserved. For each posting, the source's step
    /// and then the destination's.
    pub(super) fn steps_of<'a>(&self, event: &'a Event) -> Result<Vec<Step<'a>>, ApplyError> {
        let mut steps = Vec::with_capacity(2 * (event.released().len() + event.postings().len()));
        self.push_steps(event.released(), Effect::Release, &mut steps)?;
        let effect = if event.is_pending() {
            Effect::Reserve
        } else {
            Effect::Move
        };
        self.push_steps(event.postings(), effect, &mut steps)?;
        Ok(steps)
    }

    fn push_steps<'a>(
        &self,
        postings: &'a [Posting],
        effect: Effect,
        steps: &mut Vec<Step<'a>>,
    ) -> Result<(), ApplyError> {
        for posting in postings {
            let (asset_index, _, scale) = self.assets.get(&posting.asset).ok_or_else(|| {
                ApplyError(format!("posting in undefined asset {}", posting.asset))
            })?;
            let units = money::to_units(posting.amount, scale)
                .ok()
                .filter(|u| *u > 0)
                .ok_or_else(|| {
                    ApplyError(format!(
                        "posting amount {} is not a positive amount of {}",
                        posting.amount, posting.asset
                    ))
                })?;
            // Every posting the ledger decides has two different accounts; a step list is built
            // from events it decided and from the originals of reversals, so this only refuses
            // a malformed original or a damaged log.
            if posting.source == posting.destination {
                return Err(ApplyError(format!(
                    "posting moves {} from account {} to itself",
                    posting.asset, posting.source
                )));
            }
            let (source_slot, source) = self.known_account(&posting.source)?;
            let (destination_slot, destination) = self.known_account(&posting.destination)?;
            let (debit, credit) = effect.deltas(units);
            for (slot, account, counterparty, delta) in [
                (source_slot, source.id, destination.id, debit),
                (destination_slot, destination.id, source.id, credit),
            ] {
                steps.push(Step {
                    account,
                    slot,
                    counterparty,
                    asset: &posting.asset,
                    asset_index,
                    scale,
                    delta,
                    effect,
                });
            }
        }
        Ok(())
    }

    /// Runs the steps in order on a scratch copy of the figures they touch: each step's figures
    /// before and after, or the index of the first step that leaves the balance type's range or
    /// releases more than was reserved.
    pub(super) fn walk(&self, steps: &[Step<'_>]) -> Result<Vec<(Figures, Figures)>, usize> {
        // At most 2 × (64 + 64) entries: a linear scan beats hashing at this size.
        let mut scratch: Vec<(Slot, AssetIndex, Figures)> = Vec::with_capacity(steps.len());
        let mut walked = Vec::with_capacity(steps.len());
        for (index, step) in steps.iter().enumerate() {
            let slot = match scratch
                .iter()
                .position(|(s, a, _)| *s == step.slot && *a == step.asset_index)
            {
                Some(slot) => slot,
                None => {
                    let figures = self
                        .accounts
                        .get(step.slot)
                        .map_or_else(Figures::default, |a| a.figures_in(step.asset_index));
                    scratch.push((step.slot, step.asset_index, figures));
                    scratch.len() - 1
                }
            };
            let before = scratch[slot].2;
            let after = before.plus(&step.delta).ok_or(index)?;
            scratch[slot].2 = after;
            walked.push((before, after));
        }
        Ok(walked)
    }

    /// Checks the steps of an event being decided: every account that moves or reserves money is
    /// open, and at every step no available balance falls below its account's minimum and no
    /// ceiling rises above its maximum. A step that improves a figure already beyond its bound is
    /// allowed: a bound changed later applies to what comes later.
    pub(super) fn check_steps(
        &self,
        steps: &[Step<'_>],
        check_bounds: bool,
    ) -> Result<(), Rejection> {
        for step in steps.iter().filter(|s| s.effect != Effect::Release) {
            let account = self.account_of(step)?;
            let code = account.code.to_string();
            match account.status {
                AccountStatus::Open => {}
                AccountStatus::Frozen => return Err(Rejection::AccountFrozen { account: code }),
                AccountStatus::Closed => return Err(Rejection::AccountClosed { account: code }),
            }
        }
        let walked = self.walk(steps).map_err(|index| {
            let step = &steps[index];
            let account = self
                .accounts
                .get(step.slot)
                .map_or_else(String::new, |a| a.code.to_string());
            Rejection::BalanceOverflow {
                message: format!(
                    "the balance of {account} in {} would leave the range of the balance type",
                    step.asset
                ),
            }
        })?;
        if !check_bounds {
            return Ok(());
        }
        for (step, (before, after)) in steps.iter().zip(walked) {
            let account = self.account_of(step)?;
            let limits = account.limits_in(step.asset_index);
            let shown = |units| money::to_decimal(units, step.scale).to_string();
            if let Some(min) = limits.min_units {
                if after.available() < min && after.available() < before.available() {
                    return Err(Rejection::InsufficientFunds {
                        account: account.code.to_string(),
                        asset: step.asset.to_string(),
                        balance: shown(before.available()),
                        required: shown(before.available() - after.available()),
                        min_balance: (min != 0).then(|| shown(min)),
                    });
                }
            }
            if let Some(max) = limits.max_units {
                if after.ceiling() > max && after.ceiling() > before.ceiling() {
                    return Err(Rejection::BalanceLimitExceeded {
                        account: account.code.to_string(),
                        asset: step.asset.to_string(),
                        balance_after: shown(after.ceiling()),
                        max_balance: shown(max),
                    });
                }
            }
        }
        Ok(())
    }

    fn account_of(&self, step: &Step<'_>) -> Result<&Account, Rejection> {
        self.accounts
            .get(step.slot)
            .ok_or_else(|| Rejection::AccountNotFound {
                account: step.account.to_string(),
            })
    }
}
