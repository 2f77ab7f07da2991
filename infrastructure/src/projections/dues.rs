//! What each open hold has due in and out for each account it names, per asset, with the time a
//! trade with a settlement date settles: the settlement ladder of an account. Part of the holds
//! projection (inline), so that a ladder and the pending figures of `balances` it must add up to
//! are read from one snapshot. A row is rewritten whenever its hold opens, settles in part or
//! ends; an ended hold's rows stay at zero, out of the partial index a ladder reads, so a ladder
//! costs what the account's open holds cost, not what the whole ledger's do.

use std::collections::HashMap;

use chrono::NaiveDate;
use domain::event::Posting;
use domain::{AccountCode, AssetCode, Event, LedgerState, TransactionId};
use rust_decimal::Decimal;
use sqlx::Row;
use uuid::Uuid;

use super::Applied;
use crate::columns::{col, OnConflict, SqlType, Table, TableRows};
use crate::reads::{at_scale, AtPosition, ReadStore};
use crate::{Error, Result};

pub static DUES: Table = Table {
    name: "hold_dues",
    columns: &[
        col("account_id", SqlType::Uuid),
        col("transaction_id", SqlType::Uuid),
        col("asset", SqlType::Text),
        col("settles_at", SqlType::Timestamptz),
        col("due_in", SqlType::Numeric),
        col("due_out", SqlType::Numeric),
    ],
    on_conflict: OnConflict::Update { key_columns: 3 },
};

/// The rows of the hold `id` after an event that opened, reduced or ended it: for every account
/// and asset the event names (which, with what a partial settlement leaves, covers every one the
/// hold named before), what the hold reserves from now on (zero once it has ended).
pub(super) fn project(
    applied: &Applied<'_>,
    state: &LedgerState,
    id: TransactionId,
    dues: &mut TableRows,
) {
    let event = applied.event;
    let remaining: &[Posting] = match event {
        Event::PendingPosted(e) => &e.remaining,
        _ if event.is_pending() || !event.released().is_empty() => &[],
        _ => return,
    };
    let hold = state.hold(id);
    let reserved = hold.map_or(&[][..], |h| &h.postings[..]);
    let settles_at = hold.and_then(|h| h.settles_at);
    let mut named: Vec<(&AccountCode, &AssetCode)> = Vec::new();
    for p in event
        .postings()
        .iter()
        .chain(event.released())
        .chain(remaining)
    {
        for pair in [(&p.source, &p.asset), (&p.destination, &p.asset)] {
            if !named.contains(&pair) {
                named.push(pair);
            }
        }
    }
    for (code, asset) in named {
        let (Some(account), Some(scale)) = (state.account_by_code(code), state.asset_scale(asset))
        else {
            continue;
        };
        let (due_in, due_out) = due(reserved, code, asset, scale.get());
        dues.push([
            account.id.0.into(),
            id.0.into(),
            asset.as_str().into(),
            settles_at.into(),
            due_in.into(),
            due_out.into(),
        ]);
    }
}

/// What `postings` bring into `account` and take out of it in `asset`, at the asset's scale.
/// An account's reservations never exceed the pending figures the ledger keeps for it as
/// decimals, so these sums cannot overflow.
fn due(
    postings: &[Posting],
    account: &AccountCode,
    asset: &AssetCode,
    scale: u32,
) -> (Decimal, Decimal) {
    let (mut due_in, mut due_out) = (Decimal::ZERO, Decimal::ZERO);
    for p in postings.iter().filter(|p| &p.asset == asset) {
        if &p.destination == account {
            due_in += p.amount;
        }
        if &p.source == account {
            due_out += p.amount;
        }
    }
    due_in.rescale(scale);
    due_out.rescale(scale);
    (due_in, due_out)
}

/// What an account has due in and out in one asset on one settlement date (`None`: holds that
/// have none, settled when a client posts them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LadderItem {
    pub date: Option<NaiveDate>,
    pub asset: String,
    pub due_in: Decimal,
    pub due_out: Decimal,
}

/// An account's settlement ladder: its items in date order (undated last) then asset order,
/// and its totals per asset over all its open holds, which equal its pending figures.
#[derive(Debug, Clone)]
pub struct Ladder {
    pub items: Vec<LadderItem>,
    /// One per asset, `date` always `None`.
    pub totals: Vec<LadderItem>,
}

/// Which settlement dates a ladder lists: `from` and `to` inclusive. With either, holds
/// without a settlement date are left out of the items (never out of the totals).
#[derive(Debug, Clone, Copy, Default)]
pub struct LadderRange {
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
}

/// Open rows only: the condition of the partial index `hold_dues_open`, written the same so
/// that the planner uses it.
const OPEN: &str = "(d.due_in <> 0 OR d.due_out <> 0)";

impl ReadStore {
    /// The settlement ladder of the account `account_id`, with at most `limit` items, checked
    /// against the account's pending figures in the same snapshot: a ladder that does not add
    /// up to them is an error, never an answer.
    pub async fn settlement_ladder(
        &self,
        account_id: Uuid,
        range: LadderRange,
        limit: i64,
    ) -> Result<AtPosition<Ladder>> {
        let (mut tx, position) = self.snapshot().await?;
        let items = sqlx::query(&format!(
            "SELECT (d.settles_at AT TIME ZONE 'UTC')::date AS date, d.asset,
                    sum(d.due_in) AS due_in, sum(d.due_out) AS due_out, s.scale
             FROM hold_dues d JOIN assets s ON s.code = d.asset
             WHERE d.account_id = $1 AND {OPEN}
               AND (($2::date IS NULL AND $3::date IS NULL) OR (d.settles_at IS NOT NULL
                    AND ($2::date IS NULL OR (d.settles_at AT TIME ZONE 'UTC')::date >= $2)
                    AND ($3::date IS NULL OR (d.settles_at AT TIME ZONE 'UTC')::date <= $3)))
             GROUP BY 1, d.asset, s.scale
             ORDER BY 1 NULLS LAST, d.asset
             LIMIT $4"
        ))
        .bind(account_id)
        .bind(range.from)
        .bind(range.to)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        let totals = sqlx::query(&format!(
            "SELECT NULL::date AS date, d.asset, sum(d.due_in) AS due_in,
                    sum(d.due_out) AS due_out, s.scale
             FROM hold_dues d JOIN assets s ON s.code = d.asset
             WHERE d.account_id = $1 AND {OPEN}
             GROUP BY d.asset, s.scale ORDER BY d.asset"
        ))
        .bind(account_id)
        .fetch_all(&mut *tx)
        .await?;
        let pending: Vec<(String, Decimal, Decimal)> = sqlx::query_as(
            "SELECT asset, pending_credits, pending_debits FROM balances WHERE account_id = $1",
        )
        .bind(account_id)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let ladder = Ladder {
            items: items.iter().map(ladder_item).collect::<Result<_>>()?,
            totals: totals.iter().map(ladder_item).collect::<Result<_>>()?,
        };
        check_against_pending(account_id, &ladder.totals, &pending)?;
        Ok(AtPosition {
            value: ladder,
            position,
        })
    }
}

fn ladder_item(row: &sqlx::postgres::PgRow) -> Result<LadderItem> {
    let scale: i16 = row.try_get("scale")?;
    Ok(LadderItem {
        date: row.try_get("date")?,
        asset: row.try_get("asset")?,
        due_in: at_scale(row.try_get("due_in")?, scale),
        due_out: at_scale(row.try_get("due_out")?, scale),
    })
}

/// Totals per asset must equal the pending figures of `balances`: due in is what pending
/// transactions credit, due out what they debit. Both are written by the writer in the same
/// commits, so a difference is a defect, reported rather than served.
fn check_against_pending(
    account_id: Uuid,
    totals: &[LadderItem],
    pending: &[(String, Decimal, Decimal)],
) -> Result<()> {
    let mut figures: HashMap<&str, (Decimal, Decimal)> = pending
        .iter()
        .map(|(asset, credits, debits)| (asset.as_str(), (*credits, *debits)))
        .collect();
    for total in totals {
        let (credits, debits) = figures.remove(total.asset.as_str()).unwrap_or_default();
        if (total.due_in, total.due_out) != (credits, debits) {
            return Err(unequal(account_id, &total.asset, total, credits, debits));
        }
    }
    match figures
        .into_iter()
        .find(|(_, f)| !f.0.is_zero() || !f.1.is_zero())
    {
        Some((asset, (credits, debits))) => {
            let none = LadderItem {
                date: None,
                asset: asset.to_owned(),
                due_in: Decimal::ZERO,
                due_out: Decimal::ZERO,
            };
            Err(unequal(account_id, asset, &none, credits, debits))
        }
        None => Ok(()),
    }
}

fn unequal(
    account_id: Uuid,
    asset: &str,
    total: &LadderItem,
    credits: Decimal,
    debits: Decimal,
) -> Error {
    Error::Corrupt(format!(
        "the settlement ladder of account {account_id} in {asset} has {} due in and {} due out, \
         but its pending credits are {credits} and its pending debits {debits}",
        total.due_in, total.due_out
    ))
}
