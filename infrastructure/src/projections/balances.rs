//! Balances: the posted figure and the reservations of every (account, asset), and the position
//! of the event that last changed them. Inline: the writer decides against them, and the
//! strictest reads (a balance right after a transfer) read them. One row per (account, asset),
//! written once per batch however many events of it touched the pair. Read: an account's
//! balances now, with the accounts that carry them (`accounts`).

use std::collections::HashMap;

use domain::{AccountId, AssetCode, LedgerState, Scale};
use futures_util::TryStreamExt;
use rust_decimal::Decimal;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::assets::{corrupt, scale_of};
use super::{Applied, Mode, Projection};
use crate::columns::{col, OnConflict, SqlType, Table, TableRows};
use crate::reads::at_scale;
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
    deletes: &[],
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

#[derive(Debug, Clone)]
pub struct BalanceRecord {
    pub asset: String,
    pub balance: Decimal,
    /// Reservations of pending transactions; known now, not at a past position (`None` then).
    pub pending: Option<(Decimal, Decimal)>,
    /// The position of the last event that changed this balance.
    pub position: i64,
}

/// An account's balances now, in asset order, reservations included.
pub(crate) async fn balances_of(
    conn: &mut PgConnection,
    account_id: Uuid,
) -> Result<Vec<BalanceRecord>> {
    let rows: Vec<(String, Decimal, i64, Decimal, Decimal, i16)> = sqlx::query_as(
        "SELECT b.asset, b.balance, b.position, b.pending_debits, b.pending_credits, s.scale
         FROM balances b JOIN assets s ON s.code = b.asset
         WHERE b.account_id = $1 ORDER BY b.asset",
    )
    .bind(account_id)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(asset, balance, position, debits, credits, scale)| {
            current(asset, balance, position, debits, credits, scale)
        })
        .collect())
}

/// The balances now of the accounts `ids`, by account, each in asset order.
pub(crate) async fn balances_by_account(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Vec<BalanceRecord>>> {
    let balances: Vec<(Uuid, String, Decimal, i64, Decimal, Decimal, i16)> = sqlx::query_as(
        "SELECT b.account_id, b.asset, b.balance, b.position, b.pending_debits,
             b.pending_credits, s.scale
         FROM balances b JOIN assets s ON s.code = b.asset
         WHERE b.account_id = ANY($1) ORDER BY b.account_id, b.asset",
    )
    .bind(ids)
    .fetch_all(conn)
    .await?;
    let mut by_account: HashMap<Uuid, Vec<BalanceRecord>> = HashMap::new();
    for (account_id, asset, balance, position, debits, credits, scale) in balances {
        by_account
            .entry(account_id)
            .or_default()
            .push(current(asset, balance, position, debits, credits, scale));
    }
    Ok(by_account)
}

/// A balance as it stands now, its figures at the asset's scale.
fn current(
    asset: String,
    balance: Decimal,
    position: i64,
    debits: Decimal,
    credits: Decimal,
    scale: i16,
) -> BalanceRecord {
    BalanceRecord {
        asset,
        balance: at_scale(balance, scale),
        pending: Some((at_scale(debits, scale), at_scale(credits, scale))),
        position,
    }
}
