//! Where the settlement of a trade with a settlement date stands, from three events at most: the
//! trade, the latest of its partial settlements, and the event that ended its hold. Each
//! partial settlement states what stays reserved, so the parts before the latest one are never
//! needed: what has settled is what the trade reserved less what is still reserved or was
//! voided.

use std::collections::HashMap;

use domain::event::Posting;
use domain::Event;
use infrastructure::CommittedEvent;
use rust_decimal::Decimal;

use super::{posting_view, settlement_view};
use crate::views::SettlementView;

/// The settlement state of a trade booked as pending for a later settlement date (`None` for any
/// other event): `latest_part` is its latest partial settlement, `end` the event that ended its
/// hold, each if it has one.
pub fn dated_settlement_view(
    trade: &CommittedEvent,
    latest_part: Option<&CommittedEvent>,
    end: Option<&CommittedEvent>,
) -> Option<SettlementView> {
    let Event::TradeExecuted(t) = &trade.event else {
        return None;
    };
    t.settles_at?;
    let last = end.or(latest_part);
    let mut view = match last.and_then(settlement_view) {
        Some(view) => view,
        None => SettlementView {
            pending_id: t.trade_id.0,
            status: String::new(),
            position: trade.position,
            recorded_at: trade.recorded_at,
            effective_at: trade.event.effective_or(trade.recorded_at),
            postings: Vec::new(),
            released: Vec::new(),
            metadata: domain::Metadata::default(),
            settled: None,
            remaining: None,
            reason: None,
        },
    };
    let remaining = match (end, latest_part) {
        (Some(_), _) => &[][..],
        (None, Some(part)) => remaining_of(part),
        (None, None) => &t.postings[..],
    };
    view.status = dated_status(end, latest_part.is_some()).to_owned();
    view.settled = Some(
        settled_postings(trade, latest_part, end)
            .iter()
            .map(posting_view)
            .collect(),
    );
    view.remaining = Some(remaining.iter().map(posting_view).collect());
    Some(view)
}

/// What a dated trade's settlement has posted so far, per source, destination and asset in the
/// order the trade lists them (none at zero): what it reserved, less what it still reserves and
/// what its end voided. Empty for any event but a trade.
pub fn settled_postings(
    trade: &CommittedEvent,
    latest_part: Option<&CommittedEvent>,
    end: Option<&CommittedEvent>,
) -> Vec<Posting> {
    let Event::TradeExecuted(t) = &trade.event else {
        return Vec::new();
    };
    let unsettled: &[Posting] = match (end, latest_part) {
        // A post ends the hold by posting everything it still reserved.
        (Some(end), _) if matches!(end.event, Event::PendingPosted(_)) => &[],
        (Some(end), _) => end.event.released(),
        (None, Some(part)) => remaining_of(part),
        (None, None) => &t.postings,
    };
    // Sums of one trade's postings of an account never exceed the pending figures the ledger
    // kept for it as decimals, so they cannot overflow.
    let mut less: HashMap<(&str, &str, &str), Decimal> = HashMap::new();
    for p in unsettled {
        *less.entry(key(p)).or_default() += p.amount;
    }
    let mut settled: Vec<Posting> = Vec::new();
    for p in &t.postings {
        if let Some(same) = settled.iter_mut().find(|s| key(s) == key(p)) {
            same.amount += p.amount;
        } else {
            settled.push(p.clone());
        }
    }
    for s in &mut settled {
        let unsettled = less.get(&key(s)).copied().unwrap_or_default();
        s.amount -= unsettled;
    }
    settled.retain(|s| !s.amount.is_zero());
    settled
}

fn key(p: &Posting) -> (&str, &str, &str) {
    (p.source.as_str(), p.destination.as_str(), p.asset.as_str())
}

/// What a partial settlement left reserved.
fn remaining_of(part: &CommittedEvent) -> &[Posting] {
    match &part.event {
        Event::PendingPosted(e) => &e.remaining,
        _ => &[],
    }
}

/// A dated trade's settlement status: by the event that ended its hold, or open.
fn dated_status(end: Option<&CommittedEvent>, settled_in_part: bool) -> &'static str {
    match end.map(|e| &e.event) {
        Some(Event::PendingPosted(_)) => "settled",
        Some(Event::PendingVoided(e)) if e.reason.is_some() => "failed",
        Some(Event::PendingVoided(_)) => "voided",
        Some(_) => "expired",
        None if settled_in_part => "partially_settled",
        None => "pending",
    }
}
