//! Closed periods: every close and reopen, in log order. Inline: the writer restores from it which
//! periods are closed, and refuses writes into them.

use domain::{Event, LedgerState};
use futures_util::TryStreamExt;
use sqlx::PgConnection;

use super::{Applied, Mode, Projection};
use crate::columns::{col, OnConflict, SqlType, Table, TableRows};
use crate::event_store::{StoredEvent, EVENT_COLUMNS};
use crate::reads::{AtPosition, ReadStore};
use crate::{Error, Result};

pub static PERIODS: Table = Table {
    name: "periods",
    columns: &[
        col("position", SqlType::Int8),
        col("period", SqlType::Int8),
        col("action", SqlType::Text),
        col("through", SqlType::Timestamptz),
        col("known_at_position", SqlType::Int8),
        col("trial_balance_digest", SqlType::Text),
        col("reason", SqlType::Text),
        col("recorded_at", SqlType::Timestamptz),
    ],
    on_conflict: OnConflict::Refuse,
};

pub static PROJECTION: Projection = Projection {
    name: "periods",
    tables: &[&PERIODS],
    deletes: &[],
    mode: Mode::Inline(project),
    legs: false,
};

fn project(applied: &Applied<'_>, _: &LedgerState, out: &mut [TableRows]) {
    let [periods] = out else {
        return;
    };
    match applied.event {
        Event::PeriodClosed(e) => periods.push([
            applied.position.into(),
            i64::from(e.period).into(),
            "closed".into(),
            e.through.into(),
            e.known_at_position.into(),
            e.trial_balance_digest.clone().into(),
            None::<String>.into(),
            applied.recorded_at.into(),
        ]),
        Event::PeriodReopened(e) => periods.push([
            applied.position.into(),
            i64::from(e.period).into(),
            "reopened".into(),
            None::<chrono::DateTime<chrono::Utc>>.into(),
            None::<i64>.into(),
            None::<String>.into(),
            e.reason.clone().into(),
            applied.recorded_at.into(),
        ]),
        _ => {}
    }
}

/// The events of every close and reopen, in log order.
pub(crate) async fn period_events(conn: &mut PgConnection) -> Result<Vec<StoredEvent>> {
    let query = format!(
        "SELECT {EVENT_COLUMNS} FROM periods p JOIN events e ON e.position = p.position
         ORDER BY p.position"
    );
    let mut rows = sqlx::query(&query).fetch(conn);
    let mut events = Vec::new();
    while let Some(row) = rows.try_next().await? {
        events.push(StoredEvent::from_row(&row)?);
    }
    Ok(events)
}

/// Restores which periods are closed.
pub(crate) async fn restore(conn: &mut PgConnection, state: &mut LedgerState) -> Result<()> {
    for stored in period_events(conn).await? {
        state
            .restore_period_event(&stored.decode()?)
            .map_err(|e| Error::Corrupt(format!("position {}: {e}", stored.position)))?;
    }
    Ok(())
}

impl ReadStore {
    /// Every close and reopen, in log order.
    pub async fn periods(&self) -> Result<AtPosition<Vec<StoredEvent>>> {
        let (mut tx, position) = self.snapshot_of(&[]).await?;
        let events = period_events(&mut tx).await?;
        tx.commit().await?;
        Ok(AtPosition {
            value: events,
            position,
        })
    }
}
