//! Reversals: a transaction that takes back every posting of an earlier one, swapped, linked both
//! ways. A transaction is reversed once, and a reversal is not reversed.

use super::{ApplyError, LedgerState, Rejection, Undo};
use crate::command::{ReverseTransaction, TransactionKind};
use crate::event::{Event, Posting, TransactionPosted};
use crate::values::TransactionId;

impl LedgerState {
    /// The reversal of a transaction, once it has one.
    pub fn reversed_by(&self, id: TransactionId) -> Option<TransactionId> {
        self.reversed.get(&id).copied()
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

    pub(super) fn decide_reversal(&self, c: &ReverseTransaction) -> Result<Event, Rejection> {
        let original = &c.original;
        let transaction_id = original.id.to_string();
        if let Some(reversal) = self.reversed.get(&original.id) {
            return Err(Rejection::TransactionAlreadyReversed {
                transaction_id,
                reversed_by: reversal.to_string(),
            });
        }
        if original.is_reversal {
            return Err(Rejection::ReversalNotReversible { transaction_id });
        }
        if self.holds.contains_key(&original.id) {
            return Err(Rejection::validation(format!(
                "transaction {transaction_id} is pending and has moved nothing: void it instead"
            )));
        }
        if original.postings.is_empty() {
            return Err(Rejection::validation(format!(
                "transaction {transaction_id} moved nothing (it was voided or expired): there is nothing to reverse"
            )));
        }
        let event = Event::TransactionPosted(TransactionPosted {
            transaction_id: c.id,
            kind: TransactionKind::Reversal,
            postings: original
                .postings
                .iter()
                .map(|p| Posting {
                    source: p.destination.clone(),
                    destination: p.source.clone(),
                    ..p.clone()
                })
                .collect(),
            metadata: c.metadata.clone(),
            pending: false,
            expires_at: None,
            reverses: Some(original.id),
            forced: c.force,
        });
        let steps = self
            .steps_of(&event)
            .map_err(|e| Rejection::validation(e.0))?;
        // Force skips the bounds, never the statuses.
        self.check_steps(&steps, !c.force)?;
        Ok(event)
    }

    /// What a reversal event records: the original it reverses, checked not to be reversed yet.
    pub(super) fn reversal_of(&self, event: &Event) -> Result<Option<TransactionId>, ApplyError> {
        let Event::TransactionPosted(TransactionPosted {
            reverses: Some(original),
            ..
        }) = event
        else {
            return Ok(None);
        };
        match self.reversed.get(original) {
            Some(_) => Err(ApplyError(format!("transaction {original} reversed twice"))),
            None => Ok(Some(*original)),
        }
    }

    pub(super) fn record_reversal(&mut self, original: TransactionId, reversal: TransactionId) {
        self.reversed.insert(original, reversal);
        self.record(Undo::Reversed(original));
    }
}
