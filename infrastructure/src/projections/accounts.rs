//! Accounts and the changes of the accounts themselves: their opening, status changes and limits.
//! Inline: every decision checks an account's status and bounds.

use std::collections::HashMap;

use domain::command::AccountStatus;
use domain::ledger::Limits;
use domain::{AccountCode, AccountId, AssetCode, Event, LedgerState, Scale};
use futures_util::TryStreamExt;
use rust_decimal::Decimal;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::assets::{corrupt, scale_of};
use super::{Applied, Mode, Projection};
use crate::columns::{col, OnConflict, SqlType, Table, TableRows};
use crate::{Error, Result};

pub static ACCOUNTS: Table = Table {
    name: "accounts",
    columns: &[
        col("id", SqlType::Uuid),
        col("code", SqlType::Text),
        col("allow_negative", SqlType::Bool),
        col("metadata", SqlType::Text),
        col("position", SqlType::Int8),
        col("opened_at", SqlType::Timestamptz),
    ],
    on_conflict: OnConflict::Refuse,
};

pub static STATUS_CHANGES: Table = Table {
    name: "account_status_changes",
    columns: &[
        col("account_id", SqlType::Uuid),
        col("position", SqlType::Int8),
        col("status", SqlType::Text),
        col("metadata", SqlType::Text),
        col("recorded_at", SqlType::Timestamptz),
    ],
    on_conflict: OnConflict::Refuse,
};

pub static LIMITS: Table = Table {
    name: "account_limits",
    columns: &[
        col("account_id", SqlType::Uuid),
        col("asset", SqlType::Text),
        col("position", SqlType::Int8),
        col("min_balance", SqlType::Numeric),
        col("max_balance", SqlType::Numeric),
        col("recorded_at", SqlType::Timestamptz),
    ],
    on_conflict: OnConflict::Refuse,
};

pub static PROJECTION: Projection = Projection {
    name: "accounts",
    tables: &[&ACCOUNTS, &STATUS_CHANGES, &LIMITS],
    mode: Mode::Inline(project),
    legs: false,
};

fn project(applied: &Applied<'_>, state: &LedgerState, out: &mut [TableRows]) {
    let [accounts, status_changes, limits] = out else {
        return;
    };
    let (position, recorded_at) = (applied.position, applied.recorded_at);
    let changed = applied
        .event
        .account_changed()
        .and_then(|code| state.account_by_code(code))
        .map(|account| account.id.0);
    match (applied.event, changed) {
        (Event::AccountOpened(a), _) => accounts.push([
            a.account_id.0.into(),
            a.code.as_str().into(),
            a.allow_negative.into(),
            a.metadata.as_json().into(),
            position.into(),
            recorded_at.into(),
        ]),
        (Event::AccountStatusChanged(e), Some(id)) => status_changes.push([
            id.into(),
            position.into(),
            e.status.as_str().into(),
            e.metadata.as_json().into(),
            recorded_at.into(),
        ]),
        (Event::AccountLimitsSet(e), Some(id)) => limits.push([
            id.into(),
            e.asset.as_str().into(),
            position.into(),
            e.min_balance.into(),
            e.max_balance.into(),
            recorded_at.into(),
        ]),
        _ => {}
    }
}

/// Restores every account with its status and version, then the limits set explicitly.
pub(crate) async fn restore(
    conn: &mut PgConnection,
    state: &mut LedgerState,
    scales: &HashMap<String, Scale>,
) -> Result<()> {
    restore_accounts(conn, state).await?;
    restore_limits(conn, state, scales).await
}

async fn restore_accounts(conn: &mut PgConnection, state: &mut LedgerState) -> Result<()> {
    // An account's version is the position of the last event that changed it: its opening, a
    // balance, its status or its limits, whichever came last.
    let mut accounts = sqlx::query(
        "WITH status AS (
             SELECT DISTINCT ON (account_id) account_id, status, position
             FROM account_status_changes ORDER BY account_id, position DESC
         ), limits AS (
             SELECT account_id, max(position) AS position FROM account_limits GROUP BY account_id
         ), balances AS (
             SELECT account_id, max(position) AS position FROM balances GROUP BY account_id
         )
         SELECT a.id, a.code, a.allow_negative, COALESCE(s.status, 'open') AS status,
                GREATEST(a.position, s.position, l.position, b.position) AS version
         FROM accounts a
         LEFT JOIN status s ON s.account_id = a.id
         LEFT JOIN limits l ON l.account_id = a.id
         LEFT JOIN balances b ON b.account_id = a.id",
    )
    .fetch(conn);
    while let Some(row) = accounts.try_next().await? {
        let id: Uuid = row.try_get("id")?;
        let code: String = row.try_get("code")?;
        let status: AccountStatus = row.try_get::<&str, _>("status")?.parse().map_err(corrupt)?;
        state.restore_account(
            AccountId(id),
            AccountCode::try_from(code).map_err(corrupt)?,
            row.try_get("allow_negative")?,
            status,
            row.try_get("version")?,
        )?;
    }
    Ok(())
}

async fn restore_limits(
    conn: &mut PgConnection,
    state: &mut LedgerState,
    scales: &HashMap<String, Scale>,
) -> Result<()> {
    let mut limits = sqlx::query(
        "SELECT DISTINCT ON (account_id, asset) account_id, asset, min_balance, max_balance
         FROM account_limits ORDER BY account_id, asset, position DESC",
    )
    .fetch(conn);
    while let Some(row) = limits.try_next().await? {
        let account_id: Uuid = row.try_get("account_id")?;
        let asset: String = row.try_get("asset")?;
        let scale = scale_of(scales, &asset, "limits")?;
        let units = |bound: Option<Decimal>| {
            bound
                .map(|b| domain::money::to_units(b, scale))
                .transpose()
                .map_err(|e| Error::Corrupt(format!("limit of {account_id} in {asset}: {e:?}")))
        };
        let limits = Limits {
            min_units: units(row.try_get("min_balance")?)?,
            max_units: units(row.try_get("max_balance")?)?,
        };
        let asset = AssetCode::try_from(asset).map_err(corrupt)?;
        state.restore_limits(AccountId(account_id), &asset, limits)?;
    }
    Ok(())
}
