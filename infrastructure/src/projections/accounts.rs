//! Accounts and the changes of the accounts themselves: their opening, status changes and limits.
//! Inline: every decision checks an account's status and bounds. Read: an account, or a page of
//! them by code, each with its status, version, balances (`balances`) and limits; and the changes
//! an account's history shows (`postings`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use domain::command::AccountStatus;
use domain::ledger::Limits;
use domain::{AccountCode, AccountId, AssetCode, Event, LedgerState, Scale};
use futures_util::TryStreamExt;
use rust_decimal::Decimal;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::assets::{corrupt, scale_of};
use super::balances::{balances_by_account, balances_of, BalanceRecord};
use super::{Applied, Mode, Projection};
use crate::columns::{col, OnConflict, SqlType, Table, TableRows};
use crate::reads::{at_scale, AtPosition, ReadStore};
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
    deletes: &[],
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
    // balance, its status, its limits or its booking method, whichever came last (as the
    // decisions count it, so that `expected_versions` means the same before and after a restart).
    let mut accounts = sqlx::query(
        "WITH status AS (
             SELECT DISTINCT ON (account_id) account_id, status, position
             FROM account_status_changes ORDER BY account_id, position DESC
         ), limits AS (
             SELECT account_id, max(position) AS position FROM account_limits GROUP BY account_id
         ), balances AS (
             SELECT account_id, max(position) AS position FROM balances GROUP BY account_id
         ), methods AS (
             SELECT account, max(position) AS position FROM booking_methods GROUP BY account
         )
         SELECT a.id, a.code, a.allow_negative, COALESCE(s.status, 'open') AS status,
                GREATEST(a.position, s.position, l.position, b.position, m.position) AS version
         FROM accounts a
         LEFT JOIN status s ON s.account_id = a.id
         LEFT JOIN limits l ON l.account_id = a.id
         LEFT JOIN balances b ON b.account_id = a.id
         LEFT JOIN methods m ON m.account = a.code",
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

#[derive(Debug, Clone)]
pub struct AccountRecord {
    pub id: Uuid,
    pub code: String,
    pub allow_negative: bool,
    pub metadata: domain::Metadata,
    pub position: i64,
    pub opened_at: DateTime<Utc>,
    /// `open`, `frozen` or `closed`.
    pub status: String,
    /// The position of the last event that changed the account.
    pub version: i64,
    pub balances: Vec<BalanceRecord>,
    /// Bounds set explicitly, per asset.
    pub limits: Vec<LimitRecord>,
}

#[derive(Debug, Clone)]
pub struct LimitRecord {
    pub asset: String,
    /// `None`: unbounded.
    pub min_balance: Option<Decimal>,
    pub max_balance: Option<Decimal>,
    pub position: i64,
}

/// A change of an account itself, as its history shows it.
#[derive(Debug, Clone)]
pub struct AccountChange {
    pub position: i64,
    pub recorded_at: DateTime<Utc>,
    pub change: AccountChangeKind,
}

#[derive(Debug, Clone)]
pub enum AccountChangeKind {
    Status(String),
    Limits(LimitRecord),
}

/// How a read names an account.
#[derive(Debug, Clone)]
pub enum AccountKey {
    Id(Uuid),
    Code(String),
}

impl ReadStore {
    pub async fn account(&self, key: &AccountKey) -> Result<AtPosition<Option<AccountRecord>>> {
        let (mut tx, position) = self.snapshot().await?;
        let (by_id, by_code) = (
            format!("{ACCOUNT_SELECT} WHERE a.id = $1"),
            format!("{ACCOUNT_SELECT} WHERE a.code = $1"),
        );
        let query = match key {
            AccountKey::Id(id) => sqlx::query(&by_id).bind(*id),
            AccountKey::Code(code) => sqlx::query(&by_code).bind(code.as_str()),
        };
        let Some(row) = query.fetch_optional(&mut *tx).await? else {
            tx.commit().await?;
            return Ok(AtPosition {
                value: None,
                position,
            });
        };
        let mut account = account_from_row(&row)?;
        account.balances = balances_of(&mut tx, account.id).await?;
        account.limits = limits_of(&mut tx, &[account.id])
            .await?
            .into_iter()
            .map(|(_, limits)| limits)
            .collect();
        tx.commit().await?;
        Ok(AtPosition {
            value: Some(account),
            position,
        })
    }

    /// Accounts whose code starts with `prefix`, in code order, after the code `after`.
    pub async fn accounts(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<AtPosition<Vec<AccountRecord>>> {
        let (mut tx, position) = self.snapshot().await?;
        // Codes are ASCII below 0x7f and compare byte by byte, so every code that starts with
        // `prefix` sorts between `prefix` and `prefix || '\x7f'`.
        let upper = format!("{prefix}\u{7f}");
        let lower = match after {
            Some(after) if after >= prefix => after,
            _ => prefix,
        };
        let inclusive = after.is_none_or(|a| a < prefix);
        let rows = sqlx::query(&format!(
            "{ACCOUNT_SELECT}
             WHERE (a.code > $1 OR ($2 AND a.code = $1)) AND a.code < $3
             ORDER BY a.code LIMIT $4"
        ))
        .bind(lower)
        .bind(inclusive)
        .bind(&upper)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        let mut accounts = rows
            .iter()
            .map(account_from_row)
            .collect::<Result<Vec<_>>>()?;
        let ids: Vec<Uuid> = accounts.iter().map(|a| a.id).collect();
        let mut by_account = balances_by_account(&mut tx, &ids).await?;
        let mut limits = limits_of(&mut tx, &ids).await?;
        tx.commit().await?;
        for account in &mut accounts {
            account.limits = limits
                .extract_if(.., |(id, _)| *id == account.id)
                .map(|(_, l)| l)
                .collect();
        }
        for account in &mut accounts {
            account.balances = by_account.remove(&account.id).unwrap_or_default();
        }
        Ok(AtPosition {
            value: accounts,
            position,
        })
    }
}

/// An account with its status (the latest change, `open` when none) and version (the position of
/// the last event that changed it).
const ACCOUNT_SELECT: &str = "
    SELECT a.id, a.code, a.allow_negative, a.metadata, a.position, a.opened_at,
        COALESCE((SELECT s.status FROM account_status_changes s WHERE s.account_id = a.id
                  ORDER BY s.position DESC LIMIT 1), 'open') AS status,
        GREATEST(a.position,
            (SELECT max(s.position) FROM account_status_changes s WHERE s.account_id = a.id),
            (SELECT max(l.position) FROM account_limits l WHERE l.account_id = a.id),
            (SELECT max(b.position) FROM balances b WHERE b.account_id = a.id),
            (SELECT max(m.position) FROM booking_methods m WHERE m.account = a.code)) AS version
    FROM accounts a";

fn account_from_row(row: &PgRow) -> Result<AccountRecord> {
    Ok(AccountRecord {
        id: row.try_get("id")?,
        code: row.try_get("code")?,
        allow_negative: row.try_get("allow_negative")?,
        metadata: domain::Metadata::parse(row.try_get("metadata")?)
            .map_err(|e| Error::Corrupt(format!("an account's stored metadata: {e}")))?,
        position: row.try_get("position")?,
        opened_at: row.try_get("opened_at")?,
        status: row.try_get("status")?,
        version: row.try_get("version")?,
        balances: Vec::new(),
        limits: Vec::new(),
    })
}

/// The current limits of the accounts, per asset.
async fn limits_of(conn: &mut PgConnection, ids: &[Uuid]) -> Result<Vec<(Uuid, LimitRecord)>> {
    let rows = sqlx::query(
        "SELECT DISTINCT ON (l.account_id, l.asset) l.account_id, l.asset, l.min_balance,
                l.max_balance, l.position, s.scale
         FROM account_limits l JOIN assets s ON s.code = l.asset WHERE l.account_id = ANY($1)
         ORDER BY l.account_id, l.asset, l.position DESC",
    )
    .bind(ids)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("account_id")?, limit_from_row(row)?)))
        .collect()
}

/// A limit as set, at its asset's scale like every other figure (a zero comes back from
/// PostgreSQL as `0`, where the event says `0.00`).
fn limit_from_row(row: &PgRow) -> Result<LimitRecord> {
    let scale: i16 = row.try_get("scale")?;
    let bound = |column: &str| -> Result<Option<Decimal>> {
        let value: Option<Decimal> = row.try_get(column)?;
        Ok(value.map(|v| at_scale(v, scale)))
    };
    Ok(LimitRecord {
        asset: row.try_get("asset")?,
        min_balance: bound("min_balance")?,
        max_balance: bound("max_balance")?,
        position: row.try_get("position")?,
    })
}

/// The changes of an account itself that an account's history shows (`postings`): its status
/// changes, and its limits in `asset` or in every asset, before the history cursor (`before`:
/// position and leg) and at most at `position`, newest first, at most `limit` of each. A change
/// takes leg -1 (its event moves no money), so it sorts before the postings of its position:
/// it is after the cursor only when the cursor points at a later position.
pub(crate) async fn changes_before(
    conn: &mut PgConnection,
    account_id: Uuid,
    asset: Option<&str>,
    before: (i64, i16),
    limit: i64,
    position: i64,
) -> Result<Vec<AccountChange>> {
    let statuses: Vec<(i64, DateTime<Utc>, String)> = sqlx::query_as(
        "SELECT position, recorded_at, status FROM account_status_changes
         WHERE account_id = $1 AND (position, -1) < ($2, $3) AND position <= $5
         ORDER BY position DESC LIMIT $4",
    )
    .bind(account_id)
    .bind(before.0)
    .bind(before.1)
    .bind(limit)
    .bind(position)
    .fetch_all(&mut *conn)
    .await?;
    let limit_rows = sqlx::query(
        "SELECT l.asset, l.min_balance, l.max_balance, l.position, l.recorded_at, s.scale
         FROM account_limits l JOIN assets s ON s.code = l.asset
         WHERE l.account_id = $1 AND ($2::text IS NULL OR l.asset = $2)
           AND (l.position, -1) < ($3, $4) AND l.position <= $6
         ORDER BY l.position DESC LIMIT $5",
    )
    .bind(account_id)
    .bind(asset)
    .bind(before.0)
    .bind(before.1)
    .bind(limit)
    .bind(position)
    .fetch_all(&mut *conn)
    .await?;
    let mut changes: Vec<AccountChange> = statuses
        .into_iter()
        .map(|(position, recorded_at, status)| AccountChange {
            position,
            recorded_at,
            change: AccountChangeKind::Status(status),
        })
        .collect();
    for row in &limit_rows {
        let limits = limit_from_row(row)?;
        changes.push(AccountChange {
            position: limits.position,
            recorded_at: row.try_get("recorded_at")?,
            change: AccountChangeKind::Limits(limits),
        });
    }
    Ok(changes)
}
