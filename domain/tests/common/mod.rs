//! What the property and fuzz tests of the decision share: how many cases to run, and reversals
//! of earlier movements of the log, as the reads layer would hand them to the decision.

use domain::command::{OriginalTransaction, ReverseTransaction};
use domain::{Command, Event, Metadata, TransactionId};
use uuid::Uuid;

/// Cases per property: `PROPTEST_CASES` when set (for a longer run by hand), else `default`.
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What an event that moved money reverses to, if it did.
pub fn moved(event: &Event) -> Option<OriginalTransaction> {
    let (id, postings, is_reversal) = match event {
        Event::TransactionPosted(e) if !e.pending => {
            (e.transaction_id, &e.postings, e.reverses.is_some())
        }
        Event::TradeExecuted(e) if !e.pending => (e.trade_id, &e.postings, false),
        Event::PendingPosted(e) => (e.pending_id, &e.postings, false),
        _ => return None,
    };
    Some(OriginalTransaction {
        id,
        postings: postings.clone(),
        is_reversal,
        effective_at: chrono::DateTime::UNIX_EPOCH,
    })
}

/// A reversal of the n-th movement of the log (modulo their number), or of an unknown
/// transaction that moved nothing when there is none.
pub fn reverse_nth(log: &[Event], n: usize, force: bool) -> Command {
    let movements: Vec<OriginalTransaction> = log.iter().filter_map(moved).collect();
    let original = if movements.is_empty() {
        OriginalTransaction {
            id: TransactionId(Uuid::from_u128(9)),
            postings: Vec::new(),
            is_reversal: false,
            effective_at: chrono::DateTime::UNIX_EPOCH,
        }
    } else {
        movements[n % movements.len()].clone()
    };
    Command::ReverseTransaction(ReverseTransaction {
        id: TransactionId(Uuid::new_v4()),
        original,
        force,
        metadata: Metadata::default(),
        effective_at: None,
    })
}
