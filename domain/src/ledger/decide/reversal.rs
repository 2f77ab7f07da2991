//! Reversing a transaction or trade: every posting of the original, swapped, checked against
//! statuses always and against bounds unless forced.

use crate::command::ReverseTransaction;
use crate::error::Rejection;
use crate::event::{Event, Posting, TransactionPosted};
use crate::ledger::LedgerState;
use crate::values::TransactionKind;

impl LedgerState {
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
}
