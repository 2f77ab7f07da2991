//! Reversing a transaction or trade: every posting of the original, swapped, checked against
//! statuses always and against bounds unless forced.

use crate::command::ReverseTransaction;
use crate::error::Rejection;
use crate::event::{Event, Posting, TransactionPosted};
use chrono::{DateTime, Utc};

use crate::ledger::{rfc3339, LedgerState};
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
        let effective_at = self.reversal_effective_at(c)?;
        let event = Event::TransactionPosted(TransactionPosted {
            transaction_id: c.id,
            kind: TransactionKind::Reversal,
            postings: original
                .postings
                .iter()
                .map(|p| Posting {
                    source: p.destination.clone(),
                    destination: p.source.clone(),
                    // The lots of a reversed transaction are recomputed as if it had never
                    // happened; the reversal states no cost of its own.
                    cost: None,
                    ..p.clone()
                })
                .collect(),
            metadata: c.metadata.clone(),
            pending: false,
            expires_at: None,
            reverses: Some(original.id),
            forced: c.force,
            effective_at,
        });
        let steps = self
            .steps_of(&event)
            .map_err(|e| Rejection::validation(e.0))?;
        // Force skips the bounds, never the statuses.
        self.check_steps(&steps, !c.force)?;
        Ok(event)
    }

    /// When a reversal counts: when asked, never before the original; by default when the
    /// original did if that period is still open, else when it is recorded.
    fn reversal_effective_at(
        &self,
        c: &ReverseTransaction,
    ) -> Result<Option<DateTime<Utc>>, Rejection> {
        let original = c.original.effective_at;
        let effective_at = match c.effective_at {
            Some(at) if at < original => {
                return Err(Rejection::validation(format!(
                    "effective_at {} is earlier than the original's, {}",
                    rfc3339(at),
                    rfc3339(original)
                )))
            }
            Some(at) => Some(at),
            None if self.is_closed_at(original) => None,
            // The original counts when it was recorded, which a reversal recorded later states.
            None => Some(original),
        };
        self.check_effective(effective_at)?;
        Ok(effective_at)
    }
}
