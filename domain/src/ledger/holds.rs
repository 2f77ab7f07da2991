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
    /// A part settled; the hold reserves `remaining` from now on.
    Reduce(TransactionId, Vec<Posting>),
    Settle(TransactionId, HoldOutcome),
}

impl LedgerState {
    pub(super) fn hold_change(&self, event: &Event) -> Result<HoldChange, ApplyError> {
        let effective_at = event.effective_or(self.timing.recording_at);
        let open = |id: TransactionId, postings: &[Posting], expires_at, settles_at| {
            if self.holds.contains_key(&id) || self.settled.contains_key(&id) {
                return Err(ApplyError(format!("pending transaction {id} opened twice")));
            }
            Ok(HoldChange::Open(
                id,
                Hold {
                    postings: postings.to_vec(),
                    expires_at,
                    effective_at,
                    trade: matches!(event, Event::TradeExecuted(_)),
                    settles_at,
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
                open(e.transaction_id, &e.postings, e.expires_at, None)
            }
            Event::TradeExecuted(e) if e.pending => {
                open(e.trade_id, &e.postings, e.expires_at, e.settles_at)
            }
            Event::PendingPosted(e) if !e.remaining.is_empty() => {
                self.reduce(e.pending_id, &e.released, &e.remaining)
            }
            Event::PendingPosted(e) => settle(e.pending_id, &e.released, HoldOutcome::Posted),
            Event::PendingVoided(e) => settle(e.pending_id, &e.released, HoldOutcome::Voided),
            Event::PendingExpired(e) => settle(e.pending_id, &e.released, HoldOutcome::Expired),
            _ => Ok(HoldChange::Nothing),
        }
    }

    /// A part of a hold settled: what it released and what remains must add up, per source,
    /// destination and asset, to what it reserved.
    fn reduce(
        &self,
        id: TransactionId,
        released: &[Posting],
        remaining: &[Posting],
    ) -> Result<HoldChange, ApplyError> {
        let hold = self
            .holds
            .get(&id)
            .ok_or_else(|| ApplyError(format!("no open hold {id} to settle in part")))?;
        let parts = released.iter().chain(remaining);
        if hold.settles_at.is_none() || sums(&hold.postings) != sums(parts) {
            return Err(ApplyError(format!(
                "the partial settlement of {id} does not add up to what it reserved"
            )));
        }
        Ok(HoldChange::Reduce(id, remaining.to_vec()))
    }

    pub(super) fn change_hold(&mut self, change: HoldChange) {
        match change {
            HoldChange::Nothing => {}
            HoldChange::Open(id, hold) => {
                self.record(Undo::Hold(id, None));
                if let Some(due_at) = hold.due_at() {
                    self.expiries.insert((due_at, id));
                }
                self.holds.insert(id, hold);
            }
            HoldChange::Reduce(id, remaining) => {
                if let Some(hold) = self.holds.get_mut(&id) {
                    let before = std::mem::replace(&mut hold.postings, remaining);
                    let before = Hold {
                        postings: before,
                        ..hold.clone()
                    };
                    self.record(Undo::Hold(id, Some(before)));
                }
            }
            HoldChange::Settle(id, outcome) => {
                let before = self.holds.remove(&id);
                if let Some(due_at) = before.as_ref().and_then(Hold::due_at) {
                    self.expiries.remove(&(due_at, id));
                }
                self.record(Undo::Hold(id, before));
                self.settled.insert(id, outcome);
                self.record(Undo::Settled(id));
            }
        }
    }
}

/// Amounts per source, destination and asset: what a partial settlement must conserve.
fn sums<'a>(
    postings: impl IntoIterator<Item = &'a Posting>,
) -> std::collections::BTreeMap<(&'a str, &'a str, &'a str), rust_decimal::Decimal> {
    let mut sums = std::collections::BTreeMap::new();
    for p in postings {
        let key = (p.source.as_str(), p.destination.as_str(), p.asset.as_str());
        *sums.entry(key).or_default() += p.amount;
    }
    sums
}
