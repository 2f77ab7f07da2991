//! Two-phase transactions. A pending transaction or trade reserves its amounts (a hold); a
//! settlement ends the hold: posted (in whole or in part, the rest released), voided, or expired
//! by the ledger once its time has passed. A hold is settled once.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::{amount_units_signed, ApplyError, LedgerState, Rejection, Undo};
use crate::command::{SettlePending, Settlement};
use crate::event::{Event, PendingExpired, PendingPosted, PendingVoided, Posting};
use crate::money;
use crate::values::{AccountId, AssetCode, SignedDecimal, TransactionId};

/// What a pending transaction reserves, until it is settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub postings: Vec<Posting>,
    pub expires_at: Option<DateTime<Utc>>,
    /// A pending trade is posted whole or voided: a part of it would break quantity × price.
    pub trade: bool,
}

/// How a hold ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldOutcome {
    Posted,
    Voided,
    Expired,
}

impl HoldOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Posted => "posted",
            Self::Voided => "voided",
            Self::Expired => "expired",
        }
    }
}

/// What an event does to the holds, worked out before anything changes.
pub(super) enum HoldChange {
    Nothing,
    Open(TransactionId, Hold),
    Settle(TransactionId, HoldOutcome),
}

impl LedgerState {
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

    /// Restores an open hold read from the projections (its reservations are restored with the
    /// balances).
    pub fn restore_hold(&mut self, id: TransactionId, hold: Hold) -> Result<(), ApplyError> {
        if self.holds.contains_key(&id) || self.settled.contains_key(&id) {
            return Err(ApplyError(format!(
                "pending transaction {id} restored twice"
            )));
        }
        if let Some(expires_at) = hold.expires_at {
            self.expiries.insert((expires_at, id));
        }
        self.holds.insert(id, hold);
        Ok(())
    }

    /// Restores how a settled hold ended.
    pub fn restore_settled(&mut self, id: TransactionId, outcome: HoldOutcome) {
        self.settled.insert(id, outcome);
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

    pub(super) fn hold_change(&self, event: &Event) -> Result<HoldChange, ApplyError> {
        let open = |id: TransactionId, postings: &[Posting], expires_at, trade| {
            if self.holds.contains_key(&id) || self.settled.contains_key(&id) {
                return Err(ApplyError(format!("pending transaction {id} opened twice")));
            }
            Ok(HoldChange::Open(
                id,
                Hold {
                    postings: postings.to_vec(),
                    expires_at,
                    trade,
                },
            ))
        };
        let settle = |id: TransactionId, released: &[Posting], outcome| match self.holds.get(&id) {
            Some(hold) if hold.postings == released => Ok(HoldChange::Settle(id, outcome)),
            Some(_) => Err(ApplyError(format!(
                "the settlement of {id} releases other amounts than it reserved"
            ))),
            None => Err(ApplyError(format!("no open hold {id} to settle"))),
        };
        match event {
            Event::TransactionPosted(e) if e.pending => {
                open(e.transaction_id, &e.postings, e.expires_at, false)
            }
            Event::TradeExecuted(e) if e.pending => {
                open(e.trade_id, &e.postings, e.expires_at, true)
            }
            Event::PendingPosted(e) => settle(e.pending_id, &e.released, HoldOutcome::Posted),
            Event::PendingVoided(e) => settle(e.pending_id, &e.released, HoldOutcome::Voided),
            Event::PendingExpired(e) => settle(e.pending_id, &e.released, HoldOutcome::Expired),
            _ => Ok(HoldChange::Nothing),
        }
    }

    pub(super) fn change_hold(&mut self, change: HoldChange) {
        match change {
            HoldChange::Nothing => {}
            HoldChange::Open(id, hold) => {
                self.record(Undo::Hold(id, None));
                if let Some(expires_at) = hold.expires_at {
                    self.expiries.insert((expires_at, id));
                }
                self.holds.insert(id, hold);
            }
            HoldChange::Settle(id, outcome) => {
                let before = self.holds.remove(&id);
                if let Some(expires_at) = before.as_ref().and_then(|h| h.expires_at) {
                    self.expiries.remove(&(expires_at, id));
                }
                self.record(Undo::Hold(id, before));
                self.settled.insert(id, outcome);
                self.record(Undo::Settled(id));
            }
        }
    }

    /// Takes back a journalled change of a hold (see `roll_back_group`).
    pub(super) fn undo_hold(&mut self, id: TransactionId, before: Option<Hold>) {
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

    pub(super) fn undo_settled(&mut self, id: TransactionId) {
        self.settled.remove(&id);
    }

    pub(super) fn decide_settlement(&self, c: &SettlePending) -> Result<Event, Rejection> {
        let id = c.pending_id;
        let transaction_id = id.to_string();
        let Some(hold) = self.holds.get(&id) else {
            return Err(match self.settled.get(&id) {
                Some(HoldOutcome::Posted) => Rejection::PendingAlreadyPosted { transaction_id },
                Some(HoldOutcome::Voided) => Rejection::PendingAlreadyVoided { transaction_id },
                Some(HoldOutcome::Expired) => Rejection::PendingExpired { transaction_id },
                None => Rejection::PendingNotFound { transaction_id },
            });
        };
        let expired = hold.expires_at.is_some_and(|expires_at| c.at >= expires_at);
        let released = hold.postings.clone();
        let event = match &c.settlement {
            Settlement::Expire if !expired => {
                return Err(Rejection::validation(format!(
                    "pending transaction {id} has not expired yet"
                )))
            }
            Settlement::Expire => Event::PendingExpired(PendingExpired {
                pending_id: id,
                released,
            }),
            _ if expired => return Err(Rejection::PendingExpired { transaction_id }),
            Settlement::Void => Event::PendingVoided(PendingVoided {
                pending_id: id,
                released,
                metadata: c.metadata.clone(),
            }),
            Settlement::Post { amounts } => Event::PendingPosted(PendingPosted {
                pending_id: id,
                postings: match amounts {
                    None => released.clone(),
                    Some(amounts) => self.partial_postings(hold, amounts)?,
                },
                released,
                metadata: c.metadata.clone(),
            }),
        };
        self.check_event(&event)?;
        Ok(event)
    }

    /// The postings of a partial post: per reserved posting, an amount from zero up to the
    /// reserved one, at the asset's scale; postings of zero are left out.
    fn partial_postings(
        &self,
        hold: &Hold,
        amounts: &[SignedDecimal],
    ) -> Result<Vec<Posting>, Rejection> {
        if amounts.len() != hold.postings.len() {
            return Err(Rejection::validation(format!(
                "amounts has {} entries; the pending transaction has {} postings",
                amounts.len(),
                hold.postings.len()
            )));
        }
        let mut postings = Vec::with_capacity(amounts.len());
        for (index, (reserved, amount)) in hold.postings.iter().zip(amounts).enumerate() {
            let (asset, scale) = self.resolve_asset(&reserved.asset)?;
            let units = amount_units_signed(amount.get(), asset, scale)?;
            let reserved_units = money::to_units(reserved.amount, scale).unwrap_or(0);
            if units < 0 || units > reserved_units {
                return Err(Rejection::validation(format!(
                    "amount {index} ({amount}) must be from 0 to the {} reserved",
                    reserved.amount
                )));
            }
            if hold.trade && units != reserved_units {
                return Err(Rejection::validation(
                    "a pending trade is posted whole or voided, never in part",
                ));
            }
            if units > 0 {
                postings.push(Posting {
                    amount: money::to_decimal(units, scale),
                    ..reserved.clone()
                });
            }
        }
        if postings.is_empty() {
            return Err(Rejection::validation(
                "every amount is zero: nothing to post; void the pending transaction instead",
            ));
        }
        Ok(postings)
    }
}
