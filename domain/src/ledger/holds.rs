//! Two-phase transactions. A pending transaction or trade reserves its amounts (a hold); a
//! settlement ends the hold: posted (in whole or in part, the rest released), voided, or expired
//! by the ledger once its time has passed. A hold is settled once.

use super::records::{Hold, Undo};
use super::state::LedgerState;
use crate::error::ApplyError;
use crate::event::{Event, Posting};
use crate::values::{HoldOutcome, TransactionId};

/// What an event does to the holds, worked out before anything changes.
pub(super) enum HoldChange {
    Nothing,
    Open(TransactionId, Hold),
    Settle(TransactionId, HoldOutcome),
}

impl LedgerState {
    pub(super) fn hold_change(&self, event: &Event) -> Result<HoldChange, ApplyError> {
        let effective_at = event.effective_or(self.timing.recording_at);
        let open = |id: TransactionId, postings: &[Posting], expires_at, trade| {
            if self.holds.contains_key(&id) || self.settled.contains_key(&id) {
                return Err(ApplyError(format!("pending transaction {id} opened twice")));
            }
            Ok(HoldChange::Open(
                id,
                Hold {
                    postings: postings.to_vec(),
                    expires_at,
                    effective_at,
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
}
