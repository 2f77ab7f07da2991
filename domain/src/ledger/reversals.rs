//! Reversals: a transaction that takes back every posting of an earlier one, swapped, linked both
//! ways. A transaction is reversed once, and a reversal is not reversed.

use super::records::Undo;
use super::state::LedgerState;
use crate::error::ApplyError;
use crate::event::{Event, TransactionPosted};
use crate::values::TransactionId;

impl LedgerState {
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
