//! Holds whose time has passed are expired, and trades whose settlement time has passed are
//! settled, by the writer itself. Every batch it decides starts with the holds that are due, as
//! commands under keys of its own, so an expiry or a settlement is an event like any other, and
//! holds that fell due while the ledger was down are acted on in its first batch after a restart.

use chrono::{DateTime, Utc};
use domain::command::{SettlePending, Settlement};
use domain::{Command, LedgerState, Metadata};
use tokio::sync::oneshot;

use super::protocol::{Origin, ReplyTo, WriteItem, WriteRequest};

/// Idempotency keys that start with this are the ledger's own; clients may not use them.
pub const INTERNAL_KEY_PREFIX: &str = "ledger:";
/// Expiries and settlements decided per batch at most; the rest follow in the next batches.
const EXPIRIES_PER_BATCH_MAX: usize = 1_000;

/// The expiry or settlement of every hold due at `at` (up to the bound), or nothing when none
/// is.
pub(crate) fn expiry_request(state: &LedgerState, at: DateTime<Utc>) -> Option<WriteRequest> {
    let due = state.holds_due(at, EXPIRIES_PER_BATCH_MAX);
    if due.is_empty() {
        return None;
    }
    let items = due
        .into_iter()
        .map(|pending_id| {
            let settles = state
                .hold(pending_id)
                .is_some_and(|h| h.settles_at.is_some());
            let (settlement, verb) = match settles {
                true => (Settlement::Due, "settle"),
                false => (Settlement::Expire, "expire"),
            };
            let key = format!("{INTERNAL_KEY_PREFIX}{verb}:{pending_id}");
            WriteItem {
                command: Command::SettlePending(SettlePending {
                    pending_id,
                    settlement,
                    at,
                    metadata: Metadata::default(),
                    effective_at: None,
                }),
                // The key names the whole request.
                fingerprint: key.as_bytes().to_vec(),
                idempotency_key: key,
            }
        })
        .collect();
    // Nobody waits for the answer: the outcome is the event.
    let (reply, _) = oneshot::channel();
    Some(WriteRequest {
        items,
        atomic: false,
        origin: Origin::default(),
        reply: ReplyTo::Write(reply),
    })
}
