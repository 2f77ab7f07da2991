//! Reversals: which transaction reverses which. Inline: the writer refuses a second reversal.

use domain::{Event, LedgerState, TransactionId};
use futures_util::TryStreamExt;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{Applied, Mode, Projection};
use crate::columns::{col, OnConflict, SqlType, Table, TableRows};
use crate::Result;

pub static REVERSALS: Table = Table {
    name: "reversals",
    columns: &[
        col("transaction_id", SqlType::Uuid),
        col("reverses", SqlType::Uuid),
        col("position", SqlType::Int8),
    ],
    on_conflict: OnConflict::Refuse,
};

pub static PROJECTION: Projection = Projection {
    name: "reversals",
    tables: &[&REVERSALS],
    deletes: &[],
    mode: Mode::Inline(project),
    legs: false,
};

fn project(applied: &Applied<'_>, _: &LedgerState, out: &mut [TableRows]) {
    if let (Event::TransactionPosted(e), [reversals]) = (applied.event, out) {
        if let Some(original) = e.reverses {
            reversals.push([
                e.transaction_id.0.into(),
                original.0.into(),
                applied.position.into(),
            ]);
        }
    }
}

pub(crate) async fn restore(conn: &mut PgConnection, state: &mut LedgerState) -> Result<()> {
    let mut reversals =
        sqlx::query_as::<_, (Uuid, Uuid)>("SELECT reverses, transaction_id FROM reversals")
            .fetch(conn);
    while let Some((original, reversal)) = reversals.try_next().await? {
        state.restore_reversal(TransactionId(original), TransactionId(reversal))?;
    }
    Ok(())
}
