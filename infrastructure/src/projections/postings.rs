//! The postings history: one row per account leg, with the running balance after it. It serves
//! an account's history (with the changes of the account itself, from `accounts`), its
//! statements and its balance at a past position: the reads at the end of this file.
//! Asynchronous: it is the largest projection (two rows per transfer) and no decision reads it.
//!
//! The projector derives the legs itself (`Legs`): it resolves account codes through the
//! accounts projection and keeps the running balances it wrote. A rebuild takes them from the
//! ledger state instead, so `ledger replay` compares two independent derivations.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use domain::{AccountCode, AccountId, AssetCode, Event, Leg, Scale};
use rust_decimal::Decimal;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::accounts::{changes_before, AccountChange};
use super::balances::BalanceRecord;
use super::{transactions, Applied, Mode, Projection};
use crate::columns::{col, OnConflict, SqlType, Table, TableRows};
use crate::reads::{at_scale, AtPosition, ReadStore};
use crate::{Error, Result};

pub static POSTINGS: Table = Table {
    name: "postings",
    columns: &[
        col("account_id", SqlType::Uuid),
        col("position", SqlType::Int8),
        col("leg", SqlType::Int2),
        col("asset", SqlType::Text),
        col("amount", SqlType::Numeric),
        col("balance_after", SqlType::Numeric),
        col("transaction_id", SqlType::Uuid),
        col("counterparty_id", SqlType::Uuid),
        col("recorded_at", SqlType::Timestamptz),
        col("effective_at", SqlType::Timestamptz),
    ],
    on_conflict: OnConflict::Refuse,
};

pub static PROJECTION: Projection = Projection {
    name: "postings",
    tables: &[&POSTINGS],
    deletes: &[],
    mode: Mode::Async(project),
    legs: true,
};

fn project(applied: &Applied<'_>, out: &mut [TableRows]) {
    let ([postings], Some(id)) = (out, applied.event.transaction_id()) else {
        return;
    };
    for (index, leg) in applied.legs.iter().enumerate() {
        postings.push([
            leg.account_id.0.into(),
            applied.position.into(),
            // At most 2 × 80 legs per event (64 postings, or 2 + 16 fees): fits i16.
            (index as i16).into(),
            leg.asset.as_str().into(),
            domain::money::to_decimal(leg.units, leg.scale).into(),
            domain::money::to_decimal(leg.balance_after, leg.scale).into(),
            id.0.into(),
            leg.counterparty_id.0.into(),
            applied.recorded_at.into(),
            applied.event.effective_or(applied.recorded_at).into(),
        ]);
    }
}

/// Entries the projector keeps in each of its caches at most; past it, a cache is emptied and
/// refilled from PostgreSQL as events need it.
const CACHE_ENTRIES_MAX: usize = 1 << 18;

/// What the projector needs to derive the legs of events: account ids by code, scales, and the
/// running balance of every (account, asset) it has seen. Caches of what its own tables and the
/// inline projections hold; they are dropped whenever a write fails, since they may then be
/// ahead of what was committed.
#[derive(Default)]
pub struct Legs {
    accounts: HashMap<AccountCode, AccountId>,
    scales: HashMap<AssetCode, Scale>,
    balances: HashMap<(AccountId, AssetCode), i128>,
}

impl Legs {
    pub fn forget(&mut self) {
        *self = Self::default();
    }

    /// Loads what the events will need and is not cached: the ids of the accounts they move
    /// money between, the scales of the assets, and the last running balances.
    pub async fn prepare(&mut self, conn: &mut PgConnection, events: &[Event]) -> Result<()> {
        if self.accounts.len() > CACHE_ENTRIES_MAX || self.balances.len() > CACHE_ENTRIES_MAX {
            self.forget();
        }
        let moved = || events.iter().flat_map(Event::moved);
        let mut codes: Vec<&str> = moved()
            .flat_map(|p| [&p.source, &p.destination])
            .filter(|c| !self.accounts.contains_key(*c))
            .map(AccountCode::as_str)
            .collect();
        codes.sort_unstable();
        codes.dedup();
        let mut assets: Vec<&str> = moved()
            .map(|p| &p.asset)
            .filter(|a| !self.scales.contains_key(*a))
            .map(AssetCode::as_str)
            .collect();
        assets.sort_unstable();
        assets.dedup();
        self.load_accounts(conn, &codes).await?;
        self.load_scales(conn, &assets).await?;
        let mut pairs: Vec<(Uuid, &str)> = Vec::new();
        for posting in moved() {
            for code in [&posting.source, &posting.destination] {
                if let Some(id) = self.accounts.get(code) {
                    if !self.balances.contains_key(&(*id, posting.asset.clone())) {
                        pairs.push((id.0, posting.asset.as_str()));
                    }
                }
            }
        }
        pairs.sort_unstable();
        pairs.dedup();
        self.load_balances(conn, &pairs).await
    }

    async fn load_accounts(&mut self, conn: &mut PgConnection, codes: &[&str]) -> Result<()> {
        if codes.is_empty() {
            return Ok(());
        }
        let rows: Vec<(String, Uuid)> =
            sqlx::query_as("SELECT code, id FROM accounts WHERE code = ANY($1)")
                .bind(codes)
                .fetch_all(conn)
                .await?;
        for (code, id) in rows {
            let code = AccountCode::try_from(code).map_err(super::assets::corrupt)?;
            self.accounts.insert(code, AccountId(id));
        }
        Ok(())
    }

    async fn load_scales(&mut self, conn: &mut PgConnection, assets: &[&str]) -> Result<()> {
        if assets.is_empty() {
            return Ok(());
        }
        let rows: Vec<(String, i16)> =
            sqlx::query_as("SELECT code, scale FROM assets WHERE code = ANY($1)")
                .bind(assets)
                .fetch_all(conn)
                .await?;
        for (code, scale) in rows {
            let asset = AssetCode::try_from(code).map_err(super::assets::corrupt)?;
            let scale = Scale::try_from(scale as u32).map_err(super::assets::corrupt)?;
            self.scales.insert(asset, scale);
        }
        Ok(())
    }

    /// The running balance after the last posting of each pair; a pair with none is at zero.
    async fn load_balances(
        &mut self,
        conn: &mut PgConnection,
        pairs: &[(Uuid, &str)],
    ) -> Result<()> {
        if pairs.is_empty() {
            return Ok(());
        }
        let (ids, assets): (Vec<Uuid>, Vec<&str>) = pairs.iter().copied().unzip();
        let rows: Vec<(Uuid, String, Option<Decimal>)> = sqlx::query_as(
            "SELECT u.account_id, u.asset, p.balance_after
             FROM UNNEST($1::uuid[], $2::text[]) AS u(account_id, asset)
             LEFT JOIN LATERAL (
                 SELECT balance_after FROM postings
                 WHERE account_id = u.account_id AND asset = u.asset
                 ORDER BY position DESC, leg DESC LIMIT 1
             ) p ON true",
        )
        .bind(&ids)
        .bind(&assets)
        .fetch_all(conn)
        .await?;
        for (id, asset, balance) in rows {
            let asset = AssetCode::try_from(asset).map_err(super::assets::corrupt)?;
            let units = match (balance, self.scales.get(&asset)) {
                (None, _) => 0,
                (Some(balance), Some(scale)) => domain::money::to_units(balance, *scale)
                    .map_err(|e| Error::Corrupt(format!("balance of {id} in {asset}: {e:?}")))?,
                (Some(_), None) => {
                    return Err(Error::Corrupt(format!(
                        "postings in undefined asset {asset}"
                    )))
                }
            };
            self.balances.insert((AccountId(id), asset), units);
        }
        Ok(())
    }

    /// The legs of an event, in the order the ledger applies them (for each moved posting, the
    /// source's and then the destination's), advancing the running balances. `prepare` must
    /// have seen the event.
    pub fn of(&mut self, event: &Event, position: i64) -> Result<Vec<Leg>> {
        let mut legs = Vec::with_capacity(2 * event.moved().len());
        for posting in event.moved() {
            let missing = |what: &str| Error::Corrupt(format!("position {position}: {what}"));
            let scale = *self
                .scales
                .get(&posting.asset)
                .ok_or_else(|| missing("a posting in an undefined asset"))?;
            let units = domain::money::to_units(posting.amount, scale)
                .map_err(|_| missing("an amount that does not fit its asset"))?;
            let account = |code: &AccountCode| {
                self.accounts
                    .get(code)
                    .copied()
                    .ok_or_else(|| missing("a posting to an account not opened"))
            };
            let (source, destination) = (account(&posting.source)?, account(&posting.destination)?);
            for (account, counterparty, delta) in
                [(source, destination, -units), (destination, source, units)]
            {
                let balance = self
                    .balances
                    .entry((account, posting.asset.clone()))
                    .or_insert(0);
                *balance = domain::money::checked_add(*balance, delta)
                    .ok_or_else(|| missing("a balance beyond the balance type"))?;
                legs.push(Leg {
                    account_id: account,
                    asset: posting.asset.clone(),
                    scale,
                    units: delta,
                    balance_after: *balance,
                    counterparty_id: counterparty,
                    posting_index: u16::try_from(legs.len() / 2).unwrap_or(u16::MAX),
                });
            }
        }
        Ok(legs)
    }
}

/// One item of an account's history: a posting, or a change of the account.
#[derive(Debug, Clone)]
pub enum HistoryItem {
    Posting(HistoryEntry),
    Change(AccountChange),
}

impl HistoryItem {
    /// Where the item sorts: account changes take leg -1 (their events move no money).
    pub fn cursor(&self) -> HistoryCursor {
        match self {
            Self::Posting(p) => HistoryCursor {
                position: p.position,
                leg: p.leg,
            },
            Self::Change(c) => HistoryCursor {
                position: c.position,
                leg: -1,
            },
        }
    }
}

#[derive(Debug, Clone)]
pub struct HistoryEntry {
    pub position: i64,
    pub leg: i16,
    pub asset: String,
    /// Signed: negative when the account was the source.
    pub amount: Decimal,
    pub balance_after: Decimal,
    pub transaction_id: Uuid,
    pub kind: String,
    pub counterparty: String,
    pub recorded_at: DateTime<Utc>,
    /// When it counts in the books: its event's `effective_at`, or `recorded_at`.
    pub effective_at: DateTime<Utc>,
}

/// An account's statement in one asset over a range of positions.
#[derive(Debug, Clone)]
pub struct Statement {
    /// The balance before the range; `None` when the account held none of the asset yet.
    pub opening: Option<Decimal>,
    pub closing: Option<Decimal>,
    pub entries: Vec<HistoryEntry>,
}

/// Where a page of history starts: strictly before this (position, leg).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryCursor {
    pub position: i64,
    pub leg: i16,
}

/// The asynchronous projections a read of the postings history needs.
pub(crate) const READ_NEEDS: &[&str] = &[PROJECTION.name, transactions::PROJECTION.name];

impl ReadStore {
    /// Postings of an account and changes of the account itself (status, limits), newest first,
    /// optionally of one asset (status changes concern every asset).
    pub async fn history(
        &self,
        account_id: Uuid,
        asset: Option<&str>,
        before: Option<HistoryCursor>,
        limit: i64,
    ) -> Result<AtPosition<Vec<HistoryItem>>> {
        let (mut tx, position) = self.snapshot_of(READ_NEEDS).await?;
        let before = before.unwrap_or(HistoryCursor {
            position: i64::MAX,
            leg: i16::MAX,
        });
        let rows = postings_before(&mut tx, account_id, asset, before, limit).await?;
        let cursor = (before.position, before.leg);
        let changes = changes_before(&mut tx, account_id, asset, cursor, limit, position).await?;
        tx.commit().await?;
        let mut items = rows
            .iter()
            .map(|row| history_from_row(row).map(HistoryItem::Posting))
            .collect::<Result<Vec<_>>>()?;
        items.extend(changes.into_iter().map(HistoryItem::Change));
        let newest_first = |item: &HistoryItem| {
            let c = item.cursor();
            std::cmp::Reverse((c.position, c.leg))
        };
        items.sort_by_key(newest_first);
        items.truncate(usize::try_from(limit).unwrap_or(0));
        Ok(AtPosition {
            value: items,
            position,
        })
    }

    /// An account's balance in each asset it has held, as it stood at `position`: the running
    /// balance of its last posting at or before it. Assets not yet held then are left out.
    pub async fn balances_at(
        &self,
        account_id: Uuid,
        position: i64,
    ) -> Result<AtPosition<Vec<BalanceRecord>>> {
        let (mut tx, head) = self.snapshot_of(READ_NEEDS).await?;
        let rows: Vec<(String, i16, i64, Decimal)> = sqlx::query_as(
            "SELECT a.asset, a.scale, p.position, p.balance_after
             FROM (SELECT b.asset, s.scale FROM balances b JOIN assets s ON s.code = b.asset
                   WHERE b.account_id = $1) a
             CROSS JOIN LATERAL (
                 SELECT balance_after, position FROM postings
                 WHERE account_id = $1 AND asset = a.asset AND position <= $2
                 ORDER BY position DESC, leg DESC LIMIT 1
             ) p
             ORDER BY a.asset",
        )
        .bind(account_id)
        .bind(position)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(AtPosition {
            value: past_balances(rows),
            position: head,
        })
    }

    /// An account's statement in one asset over the positions (after, up_to]: the balance
    /// before, the postings in order (at most `limit`), and the balance after.
    pub async fn statement(
        &self,
        account_id: Uuid,
        asset: &str,
        after: i64,
        up_to: i64,
        limit: i64,
    ) -> Result<Statement> {
        let (mut tx, _) = self.snapshot_of(READ_NEEDS).await?;
        const BALANCE_AT: &str = "SELECT p.balance_after, s.scale
             FROM postings p JOIN assets s ON s.code = p.asset
             WHERE p.account_id = $1 AND p.asset = $2 AND p.position <= $3
             ORDER BY p.position DESC, p.leg DESC LIMIT 1";
        let mut balance_at = Vec::with_capacity(2);
        for position in [after, up_to] {
            balance_at.push(
                sqlx::query_as::<_, (Decimal, i16)>(BALANCE_AT)
                    .bind(account_id)
                    .bind(asset)
                    .bind(position)
                    .fetch_optional(&mut *tx)
                    .await?
                    .map(|(balance, scale)| at_scale(balance, scale)),
            );
        }
        let rows = sqlx::query(&format!(
            "{HISTORY_SELECT} WHERE p.account_id = $1 AND p.asset = $2 AND p.position > $3 AND p.position <= $4
             ORDER BY p.position, p.leg LIMIT $5"
        ))
        .bind(account_id)
        .bind(asset)
        .bind(after)
        .bind(up_to)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Statement {
            opening: balance_at[0],
            closing: balance_at[1],
            entries: rows
                .iter()
                .map(history_from_row)
                .collect::<Result<Vec<_>>>()?,
        })
    }
}

pub(super) const HISTORY_SELECT: &str =
    "SELECT p.position, p.leg, p.asset, p.amount, p.balance_after, s.scale,
        p.transaction_id, t.kind, c.code AS counterparty, p.recorded_at, p.effective_at
    FROM postings p
    JOIN transactions t ON t.id = p.transaction_id
    JOIN accounts c ON c.id = p.counterparty_id
    JOIN assets s ON s.code = p.asset";

/// The postings of an account strictly before the cursor, in one asset or in every asset, newest
/// first, at most `limit`: rows for `history_from_row`.
async fn postings_before(
    conn: &mut PgConnection,
    account_id: Uuid,
    asset: Option<&str>,
    before: HistoryCursor,
    limit: i64,
) -> Result<Vec<PgRow>> {
    let rows = match asset {
        Some(asset) => {
            sqlx::query(&format!(
                "{HISTORY_SELECT} WHERE p.account_id = $1 AND p.asset = $2 AND (p.position, p.leg) < ($3, $4)
                 ORDER BY p.position DESC, p.leg DESC LIMIT $5"
            ))
            .bind(account_id)
            .bind(asset)
            .bind(before.position)
            .bind(before.leg)
            .bind(limit)
            .fetch_all(conn)
            .await?
        }
        None => {
            sqlx::query(&format!(
                "{HISTORY_SELECT} WHERE p.account_id = $1 AND (p.position, p.leg) < ($2, $3)
                 ORDER BY p.position DESC, p.leg DESC LIMIT $4"
            ))
            .bind(account_id)
            .bind(before.position)
            .bind(before.leg)
            .bind(limit)
            .fetch_all(conn)
            .await?
        }
    };
    Ok(rows)
}

pub(super) fn history_from_row(row: &PgRow) -> Result<HistoryEntry> {
    Ok(HistoryEntry {
        position: row.try_get("position")?,
        leg: row.try_get("leg")?,
        asset: row.try_get("asset")?,
        amount: row.try_get("amount")?,
        balance_after: at_scale(row.try_get("balance_after")?, row.try_get("scale")?),
        transaction_id: row.try_get("transaction_id")?,
        kind: row.try_get("kind")?,
        counterparty: row.try_get("counterparty")?,
        recorded_at: row.try_get("recorded_at")?,
        effective_at: row.try_get("effective_at")?,
    })
}

/// Balances as they stood in the past, from rows of (asset, scale, position of the last leg
/// counted, balance): no reservations, which are known only now.
pub(crate) fn past_balances(rows: Vec<(String, i16, i64, Decimal)>) -> Vec<BalanceRecord> {
    rows.into_iter()
        .map(|(asset, scale, position, balance)| BalanceRecord {
            asset,
            balance: at_scale(balance, scale),
            pending: None,
            position,
        })
        .collect()
}
