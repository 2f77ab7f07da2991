//! Holds (pending transactions and trades) and their settlements. Inline: the writer must know
//! which holds are open, with their postings, to post, void or expire them.

use domain::ledger::{Hold, HoldOutcome};
use domain::{Event, LedgerState, TransactionId};
use futures_util::TryStreamExt;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::{Applied, Mode, Projection};
use crate::columns::{col, OnConflict, SqlType, Table, TableRows};
use crate::event_store::{StoredEvent, EVENT_COLUMNS};
use crate::{Error, Result};

pub static HOLDS: Table = Table {
    name: "holds",
    columns: &[
        col("transaction_id", SqlType::Uuid),
        col("position", SqlType::Int8),
        col("expires_at", SqlType::Timestamptz),
        col("settles_at", SqlType::Timestamptz),
    ],
    on_conflict: OnConflict::Refuse,
};

pub static SETTLEMENTS: Table = Table {
    name: "hold_settlements",
    columns: &[
        col("transaction_id", SqlType::Uuid),
        col("outcome", SqlType::Text),
        col("position", SqlType::Int8),
        col("recorded_at", SqlType::Timestamptz),
    ],
    on_conflict: OnConflict::Refuse,
};

/// Partial settlements that leave the rest of a trade reserved: the latest one of an open hold
/// says what it still reserves.
pub static PARTS: Table = Table {
    name: "hold_parts",
    columns: &[
        col("position", SqlType::Int8),
        col("transaction_id", SqlType::Uuid),
    ],
    on_conflict: OnConflict::Refuse,
};

pub static PROJECTION: Projection = Projection {
    name: "holds",
    tables: &[&HOLDS, &SETTLEMENTS, &PARTS, &super::dues::DUES],
    deletes: &[],
    mode: Mode::Inline(project),
    legs: false,
};

/// How a settlement event ended its hold.
pub(crate) fn outcome_of(event: &Event) -> Option<HoldOutcome> {
    match event {
        Event::PendingPosted(_) => Some(HoldOutcome::Posted),
        Event::PendingVoided(_) => Some(HoldOutcome::Voided),
        Event::PendingExpired(_) => Some(HoldOutcome::Expired),
        _ => None,
    }
}

fn project(applied: &Applied<'_>, state: &LedgerState, out: &mut [TableRows]) {
    let ([holds, settlements, parts, dues], Some(id)) = (out, applied.event.transaction_id())
    else {
        return;
    };
    let event = applied.event;
    super::dues::project(applied, state, id, dues);
    if let Event::PendingPosted(e) = event {
        if !e.remaining.is_empty() {
            parts.push([applied.position.into(), id.0.into()]);
            return;
        }
    }
    if event.is_pending() {
        let (expires_at, settles_at) = match event {
            Event::TransactionPosted(e) => (e.expires_at, None),
            Event::TradeExecuted(e) => (e.expires_at, e.settles_at),
            _ => (None, None),
        };
        holds.push([
            id.0.into(),
            applied.position.into(),
            expires_at.into(),
            settles_at.into(),
        ]);
    }
    if let Some(outcome) = outcome_of(event) {
        settlements.push([
            id.0.into(),
            outcome.as_str().into(),
            applied.position.into(),
            applied.recorded_at.into(),
        ]);
    }
}

/// Restores the open holds, with their postings from the events that opened them, then which
/// holds were settled and how.
pub(crate) async fn restore(conn: &mut PgConnection, state: &mut LedgerState) -> Result<()> {
    let open_holds = format!(
        "SELECT h.transaction_id, {EVENT_COLUMNS}
         FROM holds h JOIN events e ON e.position = h.position
         WHERE NOT EXISTS (SELECT 1 FROM hold_settlements s WHERE s.transaction_id = h.transaction_id)"
    );
    let mut holds = sqlx::query(&open_holds).fetch(&mut *conn);
    while let Some(row) = holds.try_next().await? {
        let stored = StoredEvent::from_row(&row)?;
        let (id, hold) = hold_of(&stored.decode()?, stored.position, stored.recorded_at)?;
        let expected: Uuid = row.try_get("transaction_id")?;
        if id.0 != expected {
            return Err(Error::Corrupt(format!(
                "the hold {expected} points at the event of {id}"
            )));
        }
        state.restore_hold(id, hold)?;
    }
    drop(holds);
    restore_parts(conn, state).await?;
    let mut settled =
        sqlx::query_as::<_, (Uuid, String)>("SELECT transaction_id, outcome FROM hold_settlements")
            .fetch(conn);
    while let Some((id, outcome)) = settled.try_next().await? {
        let outcome = [
            HoldOutcome::Posted,
            HoldOutcome::Voided,
            HoldOutcome::Expired,
        ]
        .into_iter()
        .find(|o| o.as_str() == outcome)
        .ok_or_else(|| Error::Corrupt(format!("hold outcome {outcome:?}")))?;
        state.restore_settled(TransactionId(id), outcome);
    }
    Ok(())
}

/// Open holds settled in part reserve what the latest of their partial settlements left.
async fn restore_parts(conn: &mut PgConnection, state: &mut LedgerState) -> Result<()> {
    let latest_parts = format!(
        "SELECT DISTINCT ON (p.transaction_id) {EVENT_COLUMNS}
         FROM hold_parts p JOIN events e ON e.position = p.position
         WHERE NOT EXISTS (SELECT 1 FROM hold_settlements s WHERE s.transaction_id = p.transaction_id)
         ORDER BY p.transaction_id, p.position DESC"
    );
    let mut parts = sqlx::query(&latest_parts).fetch(&mut *conn);
    while let Some(row) = parts.try_next().await? {
        let stored = StoredEvent::from_row(&row)?;
        let Event::PendingPosted(part) = stored.decode()? else {
            return Err(Error::Corrupt(format!(
                "the hold part at position {} is not a partial settlement",
                stored.position
            )));
        };
        state.restore_hold_remaining(part.pending_id, part.remaining)?;
    }
    Ok(())
}

fn hold_of(
    event: &Event,
    position: i64,
    recorded_at: chrono::DateTime<chrono::Utc>,
) -> Result<(TransactionId, Hold)> {
    let effective_at = event.effective_or(recorded_at);
    match event {
        Event::TransactionPosted(e) if e.pending => Ok((
            e.transaction_id,
            Hold {
                settles_at: None,
                postings: e.postings.clone(),
                expires_at: e.expires_at,
                effective_at,
                trade: false,
            },
        )),
        Event::TradeExecuted(e) if e.pending => Ok((
            e.trade_id,
            Hold {
                settles_at: e.settles_at,
                postings: e.postings.clone(),
                expires_at: e.expires_at,
                effective_at,
                trade: true,
            },
        )),
        _ => Err(Error::Corrupt(format!(
            "the hold at position {position} is not a pending transaction"
        ))),
    }
}
