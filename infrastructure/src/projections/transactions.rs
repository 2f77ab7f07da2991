//! The transactions index: every transaction, transfer and trade by id, with its kind and the
//! position of the event that records it. Asynchronous: only reads use it. Read: a transaction
//! by id, with its event, its reversal (`reversals`) and its settlement (`holds`).

use domain::Event;
use sqlx::Row;
use uuid::Uuid;

use super::{Applied, Mode, Projection};
use crate::columns::{col, OnConflict, SqlType, Table, TableRows};
use crate::event_store::{StoredEvent, EVENT_COLUMNS};
use crate::reads::{AtPosition, ReadStore};
use crate::Result;

pub static TRANSACTIONS: Table = Table {
    name: "transactions",
    columns: &[
        col("id", SqlType::Uuid),
        col("kind", SqlType::Text),
        col("position", SqlType::Int8),
    ],
    on_conflict: OnConflict::Refuse,
};

pub static PROJECTION: Projection = Projection {
    name: "transactions",
    tables: &[&TRANSACTIONS],
    deletes: &[],
    mode: Mode::Async(project),
    legs: false,
};

/// The kind of a transaction as the index records it; settlements are filed under the pending
/// transaction they settle, not here.
fn kind_of(event: &Event) -> Option<&'static str> {
    match event {
        Event::TransactionPosted(e) => Some(e.kind.as_str()),
        Event::TradeExecuted(_) => Some("trade"),
        _ => None,
    }
}

fn project(applied: &Applied<'_>, out: &mut [TableRows]) {
    let [transactions] = out else {
        return;
    };
    if let (Some(id), Some(kind)) = (applied.event.transaction_id(), kind_of(applied.event)) {
        transactions.push([id.0.into(), kind.into(), applied.position.into()]);
    }
}

/// A transaction, transfer or trade: its kind, its event, and the event that settled it when it
/// was pending and has been settled.
#[derive(Debug, Clone)]
pub struct TransactionRecord {
    pub kind: String,
    /// The reversal of this transaction, once it has one.
    pub reversed_by: Option<Uuid>,
    pub event: StoredEvent,
    pub settlement: Option<StoredEvent>,
    /// For a trade with a settlement date settled in part: the latest of those parts (it
    /// states what stays reserved).
    pub latest_part: Option<StoredEvent>,
}

/// The asynchronous projection a read of a transaction needs.
const READ_NEEDS: &[&str] = &[PROJECTION.name];

impl ReadStore {
    /// The event recording a transaction, transfer or trade, with its kind, and for a pending
    /// one the event that settled it, once one has, and the latest partial settlement, if any.
    pub async fn transaction(&self, id: Uuid) -> Result<AtPosition<Option<TransactionRecord>>> {
        let (mut tx, position) = self.snapshot_of(READ_NEEDS).await?;
        let row = sqlx::query(&format!(
            "SELECT t.kind, r.transaction_id AS reversed_by, {EVENT_COLUMNS}
             FROM transactions t JOIN events e ON e.position = t.position
             LEFT JOIN reversals r ON r.reverses = t.id AND r.position <= $2
             WHERE t.id = $1"
        ))
        .bind(id)
        .bind(position)
        .fetch_optional(&mut *tx)
        .await?;
        let settlement = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM hold_settlements s JOIN events e ON e.position = s.position
             WHERE s.transaction_id = $1 AND s.position <= $2"
        ))
        .bind(id)
        .bind(position)
        .fetch_optional(&mut *tx)
        .await?;
        let latest_part = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM hold_parts p JOIN events e ON e.position = p.position
             WHERE p.transaction_id = $1 AND p.position <= $2
             ORDER BY p.position DESC LIMIT 1"
        ))
        .bind(id)
        .bind(position)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        let value = match row {
            Some(row) => Some(TransactionRecord {
                kind: row.try_get("kind")?,
                reversed_by: row.try_get("reversed_by")?,
                event: StoredEvent::from_row(&row)?,
                settlement: settlement.as_ref().map(StoredEvent::from_row).transpose()?,
                latest_part: latest_part
                    .as_ref()
                    .map(StoredEvent::from_row)
                    .transpose()?,
            }),
            None => None,
        };
        Ok(AtPosition { value, position })
    }
}
