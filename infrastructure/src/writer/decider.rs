//! What the writer decides against while it leads: the ledger state, the idempotency keys that
//! may be stored, the head of the hash chain and the next position. It is restored from the
//! projections when the writer takes over, and changed only by the batches it decides; if one
//! fails to commit, the writer drops it and restores again.

use chrono::{DateTime, Utc};
use domain::chain::Hash;
use domain::clock::Clock;
use domain::LedgerState;

use super::key_filter::KeyFilter;

pub(crate) struct Decider {
    pub state: LedgerState,
    /// Which idempotency keys may be stored: only those are looked up.
    pub keys: KeyFilter,
    /// The hash of the last event decided (committed or not).
    pub chain_head: Hash,
    pub next_position: i64,
    /// The time recorded for the last batch committed: the next is never earlier.
    pub last_recorded_at: DateTime<Utc>,
}

impl Decider {
    /// The time recorded for a batch: now, at PostgreSQL's microsecond precision, and never
    /// earlier than `floor` (the previous batch), so that time order agrees with log order.
    pub fn recorded_at_after(clock: &dyn Clock, floor: DateTime<Utc>) -> DateTime<Utc> {
        let now = clock.now();
        let now = DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now);
        now.max(floor)
    }
}
