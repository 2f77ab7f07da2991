//! Balances: the posted figure and the reservations of every (account, asset), and the position
//! of the event that last changed them. Inline: the writer decides against them, and the
//! strictest reads (a balance right after a transfer) read them. One row per (account, asset),
//! written once per batch however many events of it touched the pair.

use std::collections::HashMap;

use domain::{AccountId, AssetCode, LedgerState, Scale};
use futures_util::TryStreamExt;
use rust_decimal::Decimal;
use sqlx::{PgConnection, Row};

use super::assets::{corrupt, scale_of};
use super::{Applied, Mode, Projection};
use crate::columns::{col, OnConflict, SqlType, Table, TableRows};
use crate::{Error, Result};

pub static BALANCES: Table = Table {
    name: "balances",
    columns: &[
        col("account_id", SqlType::Uuid),
        col("asset", SqlType::Text),
        col("balance", SqlType::Numeric),
        col("position", SqlType::Int8),
        col("pending_debits", SqlType::Numeric),
        col("pending_credits", SqlType::Numeric),
    ],
    on_conflict: OnConflict::Update { key_columns: 2 },
};

pub static PROJECTION: Projection = Projection {
    name: "balances",
    tables: &[&BALANCES],
    mode: Mode::Inline(project),
    legs: false,
};

/// The figures after the event of every (account, asset) it touched, reservations included,
/// read from the state. When later events of the same batch touch them again, their rows
/// replace these.
fn project(applied: &Applied<'_>, state: &LedgerState, out: &mut [TableRows]) {
    let [balances] = out else {
        return;
    };
    let event = applied.event;
    for posting in event.postings().iter().chain(event.released()) {
        let Some(scale) = state.asset_scale(&posting.asset) else {
            continue;
        };
        for code in [&posting.source, &posting.destination] {
            let Some(account) = state.account_by_code(code) else {
                continue;
            };
            let figures = account.figures(&posting.asset);
            let decimal = |units| domain::money::to_decimal(units, scale);
            balances.push([
                account.id.0.into(),
                posting.asset.as_str().into(),
                decimal(figures.posted).into(),
                applied.position.into(),
                decimal(figures.pending_debits).into(),
                decimal(figures.pending_credits).into(),
            ]);
        }
    }
}

/// Restores every balance and reservation into `state`.
pub(crate) async fn restore(
    conn: &mut PgConnection,
    state: &mut LedgerState,
    scales: &HashMap<String, Scale>,
) -> Result<()> {
    let mut balances = sqlx::query(
        "SELECT account_id, asset, balance, pending_debits, pending_credits FROM balances",
    )
    .fetch(conn);
    while let Some(row) = balances.try_next().await? {
        let account_id = AccountId(row.try_get("account_id")?);
        let asset: String = row.try_get("asset")?;
        let scale = scale_of(scales, &asset, "balance")?;
        let units = |column: &str| -> Result<i128> {
            let value: Decimal = row.try_get(column)?;
            domain::money::to_units(value, scale).map_err(|e| {
                Error::Corrupt(format!(
                    "{column} {value} of {account_id} in {asset} does not fit the asset: {e:?}"
                ))
            })
        };
        let (posted, pending_debits, pending_credits) = (
            units("balance")?,
            units("pending_debits")?,
            units("pending_credits")?,
        );
        let asset = AssetCode::try_from(asset.clone()).map_err(corrupt)?;
        state.restore_balance(account_id, &asset, posted)?;
        state.restore_pending(account_id, &asset, pending_debits, pending_credits)?;
    }
    Ok(())
}
