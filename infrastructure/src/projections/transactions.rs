//! The transactions index: every transaction, transfer and trade by id, with its kind and the
//! position of the event that records it. Asynchronous: only reads use it.

use domain::Event;

use super::{Applied, Mode, Projection};
use crate::columns::{col, OnConflict, SqlType, Table, TableRows};

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
