//! Marks: every `PriceMarked`, the price of one unit of an instrument in a currency as of a time.
//! Asynchronous: no decision reads them. Read: the latest mark of a pair at or before a time
//! (what values a position), and every mark, newest first.

use chrono::{DateTime, Utc};
use domain::Event;
use rust_decimal::Decimal;

use super::{Applied, Mode, Projection};
use crate::columns::{col, OnConflict, SqlType, Table, TableRows};
use crate::reads::{AtPosition, ReadStore};
use crate::Result;

pub static PRICES: Table = Table {
    name: "prices",
    columns: &[
        col("position", SqlType::Int8),
        col("instrument", SqlType::Text),
        col("currency", SqlType::Text),
        col("price", SqlType::Numeric),
        col("as_of", SqlType::Timestamptz),
        col("recorded_at", SqlType::Timestamptz),
    ],
    on_conflict: OnConflict::Refuse,
};

pub static PROJECTION: Projection = Projection {
    name: "prices",
    tables: &[&PRICES],
    deletes: &[],
    mode: Mode::Async(project),
    legs: false,
};

fn project(applied: &Applied<'_>, out: &mut [TableRows]) {
    if let (Event::PriceMarked(e), [prices]) = (applied.event, out) {
        prices.push([
            applied.position.into(),
            e.instrument.as_str().into(),
            e.currency.as_str().into(),
            e.price.into(),
            e.as_of.into(),
            applied.recorded_at.into(),
        ]);
    }
}

/// A mark as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub instrument: String,
    pub currency: String,
    pub price: Decimal,
    pub as_of: DateTime<Utc>,
    /// The position of its `PriceMarked`.
    pub position: i64,
    pub recorded_at: DateTime<Utc>,
}

/// The asynchronous projection a read of marks needs.
pub(crate) const READ_NEEDS: &[&str] = &[PROJECTION.name];

/// The latest mark of a pair at or before a time, for the query it is part of: the pair is
/// `{instrument}` and `{currency}`, the time `{as_of}` (SQL expressions). Ties of `as_of` go to
/// the mark recorded last.
pub(crate) fn latest_mark_sql(instrument: &str, currency: &str, as_of: &str) -> String {
    format!(
        "SELECT price, as_of, position FROM prices
         WHERE instrument = {instrument} AND currency = {currency} AND as_of <= {as_of}
         ORDER BY as_of DESC, position DESC LIMIT 1"
    )
}

type MarkRow = (i64, String, String, Decimal, DateTime<Utc>, DateTime<Utc>);

fn mark_of((position, instrument, currency, price, as_of, recorded_at): MarkRow) -> Mark {
    Mark {
        instrument,
        currency,
        price,
        as_of,
        position,
        recorded_at,
    }
}

impl ReadStore {
    /// The latest mark of `instrument` in `currency` at or before `as_of`.
    pub async fn latest_mark(
        &self,
        instrument: &str,
        currency: &str,
        as_of: DateTime<Utc>,
    ) -> Result<AtPosition<Option<Mark>>> {
        let (mut tx, position) = self.snapshot_of(READ_NEEDS).await?;
        let row: Option<MarkRow> = sqlx::query_as(
            "SELECT position, instrument, currency, price, as_of, recorded_at FROM prices
             WHERE instrument = $1 AND currency = $2 AND as_of <= $3
             ORDER BY as_of DESC, position DESC LIMIT 1",
        )
        .bind(instrument)
        .bind(currency)
        .bind(as_of)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(AtPosition {
            value: row.map(mark_of),
            position,
        })
    }

    /// Marks newest first (by position), of one instrument and currency when given, recorded
    /// before position `before` when given, at most `limit`.
    pub async fn marks(
        &self,
        instrument: Option<&str>,
        currency: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<AtPosition<Vec<Mark>>> {
        let (mut tx, position) = self.snapshot_of(READ_NEEDS).await?;
        let rows: Vec<MarkRow> = sqlx::query_as(
            "SELECT position, instrument, currency, price, as_of, recorded_at FROM prices
             WHERE ($1::text IS NULL OR instrument = $1) AND ($2::text IS NULL OR currency = $2)
               AND position < $3
             ORDER BY position DESC LIMIT $4",
        )
        .bind(instrument)
        .bind(currency)
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(AtPosition {
            value: rows.into_iter().map(mark_of).collect(),
            position,
        })
    }
}
