//! Turning events and read records into response bodies. A write's response is rendered from its
//! event alone, so replaying an idempotent request renders the very same body.

use domain::event::{Fee, Posting};
use domain::Event;
use infrastructure::event_store::StoredEvent;
use infrastructure::projections::accounts::{AccountChangeKind, AccountRecord, LimitRecord};
use infrastructure::projections::balances::BalanceRecord;
use infrastructure::projections::postings::{HistoryEntry, HistoryItem};
use infrastructure::CommittedEvent;

mod settlement;

pub use settlement::{dated_settlement_view, settled_postings};

use crate::error::ApiError;
use crate::views::{
    AccountLimitsView, AccountStatusView, AccountView, AssetView, BalanceView, BookingMethodView,
    CostView, EventView, FeeView, HistoryEntryView, HistoryItemView, LimitView, PeriodEventView,
    PostingView, PriceView, SettlementView, TradeView, TransactionView,
};

/// The response body for a committed event: the view of what it created, encoded.
pub fn committed_view(committed: &CommittedEvent) -> Vec<u8> {
    let CommittedEvent {
        position,
        recorded_at,
        event,
    } = committed;
    let view = match event {
        Event::AssetDefined(e) => serde_json::to_vec(&AssetView {
            code: e.asset.to_string(),
            scale: e.scale.get(),
            position: *position,
        }),
        Event::AccountOpened(e) => serde_json::to_vec(&AccountView {
            id: e.account_id.0,
            code: e.code.to_string(),
            allow_negative: e.allow_negative,
            metadata: e.metadata.clone(),
            position: *position,
            opened_at: *recorded_at,
            status: "open".to_owned(),
            version: *position,
            balances: Vec::new(),
            limits: Vec::new(),
        }),
        Event::TransactionPosted(_) => serde_json::to_vec(&transaction_view(committed)),
        Event::TradeExecuted(_) => serde_json::to_vec(&trade_view(committed)),
        Event::PendingPosted(_) | Event::PendingVoided(_) | Event::PendingExpired(_) => {
            serde_json::to_vec(&settlement_view(committed))
        }
        Event::AccountStatusChanged(e) => serde_json::to_vec(&AccountStatusView {
            account: e.account.to_string(),
            status: e.status.as_str().to_owned(),
            position: *position,
            recorded_at: *recorded_at,
            metadata: e.metadata.clone(),
        }),
        Event::AccountLimitsSet(e) => serde_json::to_vec(&AccountLimitsView {
            account: e.account.to_string(),
            limits: LimitView {
                asset: e.asset.to_string(),
                min_balance: e.min_balance.map(|b| b.to_string()),
                max_balance: e.max_balance.map(|b| b.to_string()),
            },
            position: *position,
            recorded_at: *recorded_at,
        }),
        Event::PeriodClosed(_) | Event::PeriodReopened(_) => {
            serde_json::to_vec(&period_event_view(committed))
        }
        Event::BookingMethodSet(e) => serde_json::to_vec(&BookingMethodView {
            account: e.account.to_string(),
            booking_method: e.booking_method.as_str().to_owned(),
            position: *position,
            recorded_at: *recorded_at,
            metadata: e.metadata.clone(),
        }),
        Event::PriceMarked(e) => serde_json::to_vec(&PriceView {
            instrument: e.instrument.to_string(),
            currency: e.currency.to_string(),
            price: e.price.to_string(),
            as_of: e.as_of,
            position: *position,
            recorded_at: *recorded_at,
            metadata: e.metadata.clone(),
        }),
    };
    // Views are plain structs of strings and numbers: encoding cannot fail.
    view.unwrap_or_default()
}

/// Any money-moving event as a transaction (trades too, as kind `trade`).
pub fn transaction_view(committed: &CommittedEvent) -> Option<TransactionView> {
    let (id, kind, metadata, expires_at, reverses, forced) = match &committed.event {
        Event::TransactionPosted(e) => (
            e.transaction_id,
            e.kind.as_str(),
            &e.metadata,
            e.expires_at,
            e.reverses.map(|r| r.0),
            e.forced,
        ),
        Event::TradeExecuted(e) => (e.trade_id, "trade", &e.metadata, e.expires_at, None, false),
        _ => return None,
    };
    let trade = match &committed.event {
        Event::TradeExecuted(t) => Some(t),
        _ => None,
    };
    let effective_at = committed.event.effective_or(committed.recorded_at);
    Some(TransactionView {
        id: id.0,
        kind: kind.to_owned(),
        position: committed.position,
        recorded_at: committed.recorded_at,
        effective_at,
        postings: committed
            .event
            .postings()
            .iter()
            .map(posting_view)
            .collect(),
        metadata: metadata.clone(),
        status: initial_status(&committed.event).to_owned(),
        expires_at,
        trade_date: trade.map(|_| effective_at.date_naive()),
        settlement_date: trade.and_then(|t| t.settlement_date),
        settles_at: trade.and_then(|t| t.settles_at),
        settlement: settlement::dated_settlement_view(committed, None, None),
        reverses,
        forced,
        reversed_by: None,
    })
}

/// A transaction's status as its own event shows it; a settlement changes it later.
fn initial_status(event: &Event) -> &'static str {
    if event.is_pending() {
        "pending"
    } else {
        "posted"
    }
}

/// The view of a settlement event (`PendingPosted`, `PendingVoided`, `PendingExpired`).
pub fn settlement_view(committed: &CommittedEvent) -> Option<SettlementView> {
    let (pending_id, status, metadata) = match &committed.event {
        Event::PendingPosted(e) if !e.remaining.is_empty() => {
            (e.pending_id, "partially_settled", Some(&e.metadata))
        }
        Event::PendingPosted(e) => (e.pending_id, "posted", Some(&e.metadata)),
        Event::PendingVoided(e) if e.reason.is_some() => {
            (e.pending_id, "failed", Some(&e.metadata))
        }
        Event::PendingVoided(e) => (e.pending_id, "voided", Some(&e.metadata)),
        Event::PendingExpired(e) => (e.pending_id, "expired", None),
        _ => return None,
    };
    let (remaining, reason) = match &committed.event {
        Event::PendingPosted(e) if !e.remaining.is_empty() => {
            (Some(e.remaining.iter().map(posting_view).collect()), None)
        }
        Event::PendingVoided(e) => (None, e.reason.clone()),
        _ => (None, None),
    };
    Some(SettlementView {
        pending_id: pending_id.0,
        status: status.to_owned(),
        position: committed.position,
        recorded_at: committed.recorded_at,
        effective_at: committed.event.effective_or(committed.recorded_at),
        postings: committed
            .event
            .postings()
            .iter()
            .map(posting_view)
            .collect(),
        released: committed
            .event
            .released()
            .iter()
            .map(posting_view)
            .collect(),
        metadata: metadata.map_or_else(domain::Metadata::default, Clone::clone),
        settled: None,
        remaining,
        reason,
    })
}

pub fn trade_view(committed: &CommittedEvent) -> Option<TradeView> {
    let Event::TradeExecuted(t) = &committed.event else {
        return None;
    };
    let effective_at = committed.event.effective_or(committed.recorded_at);
    Some(TradeView {
        id: t.trade_id.0,
        position: committed.position,
        recorded_at: committed.recorded_at,
        effective_at,
        buyer: t.buyer.to_string(),
        seller: t.seller.to_string(),
        instrument: t.instrument.to_string(),
        quantity: t.quantity.to_string(),
        price: t.price.to_string(),
        currency: t.currency.to_string(),
        notional: t.notional.to_string(),
        fees: t.fees.iter().map(fee_view).collect(),
        postings: t.postings.iter().map(posting_view).collect(),
        metadata: t.metadata.clone(),
        status: initial_status(&committed.event).to_owned(),
        expires_at: t.expires_at,
        trade_date: effective_at.date_naive(),
        settlement_date: t.settlement_date,
        settles_at: t.settles_at,
        settlement: settlement::dated_settlement_view(committed, None, None),
        reversed_by: None,
    })
}

/// The view of a close or a reopen.
pub fn period_event_view(committed: &CommittedEvent) -> Option<PeriodEventView> {
    let mut view = PeriodEventView {
        period: 0,
        action: String::new(),
        position: committed.position,
        recorded_at: committed.recorded_at,
        through: None,
        known_at_position: None,
        trial_balance_digest: None,
        reason: None,
        metadata: domain::Metadata::default(),
    };
    match &committed.event {
        Event::PeriodClosed(e) => {
            view.period = e.period;
            view.action = "closed".to_owned();
            view.through = Some(e.through);
            view.known_at_position = Some(e.known_at_position);
            view.trial_balance_digest = Some(e.trial_balance_digest.clone());
            view.metadata = e.metadata.clone();
        }
        Event::PeriodReopened(e) => {
            view.period = e.period;
            view.action = "reopened".to_owned();
            view.reason = Some(e.reason.clone());
            view.metadata = e.metadata.clone();
        }
        _ => return None,
    }
    Some(view)
}

pub(crate) fn posting_view(p: &Posting) -> PostingView {
    PostingView {
        source: p.source.to_string(),
        destination: p.destination.to_string(),
        asset: p.asset.to_string(),
        amount: p.amount.to_string(),
        cost: p.cost.as_ref().map(|c| CostView {
            amount: c.amount.to_string(),
            currency: c.currency.to_string(),
        }),
    }
}

fn fee_view(f: &Fee) -> FeeView {
    FeeView {
        payer: f.payer.to_string(),
        account: f.account.to_string(),
        asset: f.asset.to_string(),
        amount: f.amount.to_string(),
    }
}

/// A stored event decoded back into the domain's event, with its position and time.
pub fn decode_stored(stored: StoredEvent) -> Result<CommittedEvent, ApiError> {
    let event = Event::decode(&stored.event_type, stored.schema_version, &stored.payload)
        .map_err(|e| ApiError::Infrastructure(infrastructure::Error::Corrupt(e.to_string())))?;
    Ok(CommittedEvent {
        position: stored.position,
        recorded_at: stored.recorded_at,
        event,
    })
}

pub fn account_view(account: AccountRecord) -> AccountView {
    AccountView {
        id: account.id,
        code: account.code,
        allow_negative: account.allow_negative,
        metadata: account.metadata,
        position: account.position,
        opened_at: account.opened_at,
        status: account.status,
        version: account.version,
        balances: account.balances.into_iter().map(balance_view).collect(),
        limits: account.limits.into_iter().map(limit_view).collect(),
    }
}

pub fn limit_view(l: LimitRecord) -> LimitView {
    LimitView {
        asset: l.asset,
        min_balance: l.min_balance.map(|b| b.to_string()),
        max_balance: l.max_balance.map(|b| b.to_string()),
    }
}

pub fn history_item_view(item: HistoryItem) -> HistoryItemView {
    match item {
        HistoryItem::Posting(p) => HistoryItemView::Posting(history_view(p)),
        HistoryItem::Change(c) => match c.change {
            AccountChangeKind::Status(status) => HistoryItemView::StatusChanged {
                position: c.position,
                leg: -1,
                status,
                recorded_at: c.recorded_at,
            },
            AccountChangeKind::Limits(limits) => HistoryItemView::LimitsSet {
                position: c.position,
                leg: -1,
                limits: limit_view(limits),
                recorded_at: c.recorded_at,
            },
        },
    }
}

pub fn balance_view(b: BalanceRecord) -> BalanceView {
    BalanceView {
        asset: b.asset,
        balance: b.balance.to_string(),
        pending_debits: b.pending.map(|(debits, _)| debits.to_string()),
        pending_credits: b.pending.map(|(_, credits)| credits.to_string()),
        available: b
            .pending
            .map(|(debits, _)| (b.balance - debits).to_string()),
        // Checked: figures near the decimal's limit leave the field out rather than panic.
        trade_date_balance: b
            .pending
            .and_then(|(debits, credits)| b.balance.checked_add(credits)?.checked_sub(debits))
            .map(|position| position.to_string()),
        position: b.position,
    }
}

pub fn history_view(h: HistoryEntry) -> HistoryEntryView {
    HistoryEntryView {
        position: h.position,
        leg: h.leg,
        transaction_id: h.transaction_id,
        kind: h.kind,
        asset: h.asset,
        amount: h.amount.to_string(),
        balance_after: h.balance_after.to_string(),
        counterparty: h.counterparty,
        recorded_at: h.recorded_at,
        effective_at: h.effective_at,
    }
}

/// An event as a relay publishes it: the JSON of an item of `GET /v1/events`.
pub fn event_json(e: &StoredEvent) -> infrastructure::Result<Vec<u8>> {
    serde_json::to_vec(&event_view(e.clone())?)
        .map_err(|e| infrastructure::Error::Corrupt(format!("an event did not encode: {e}")))
}

/// An event with its payload and metadata as the very text the hash covers.
pub fn event_view(e: StoredEvent) -> infrastructure::Result<EventView> {
    let (payload, metadata) = e.raw_json()?;
    Ok(EventView {
        position: e.position,
        event_id: e.event_id,
        event_type: e.event_type,
        schema_version: e.schema_version,
        payload,
        metadata,
        recorded_at: e.recorded_at,
        hash: domain::chain::to_hex_slice(&e.hash),
    })
}
