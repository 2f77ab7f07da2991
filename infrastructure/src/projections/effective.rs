//! Reads in accounting time, from the postings history: an account's balances as of a date (as
//! known now or at a position), its history and statements in effective order, the part of a
//! roll-up as of a date that sums each account (`rollups::ReadStore::rollup_as_of`), and the
//! trial balance (every account, one pass over the legs recorded by then).
//!
//! Every figure as of `T` known at `P` is the running balance at `P` (the `balance_after` of the
//! account's last leg recorded at or before `P`, one lookup of the primary key) less the legs
//! recorded by `P` that count after `T`, summed through `postings_by_effective` (account,
//! effective time, position, leg, with asset and amount included: an index-only range, the asset
//! filtered in it, as an account holds few). So a read costs what
//! counts after `T`, not the account's whole past: as of a recent date (a month end, a close) it
//! reads a few legs, and further back it reads more, at most every leg of the account. The
//! history in effective order pins its pages to the position of its first one, so that a
//! backdated entry recorded while a client pages through moves no page.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

use domain::{AccountCode, AssetCode};

use super::balances::BalanceRecord;
use super::postings::{
    history_from_row, past_balances, HistoryEntry, Statement, HISTORY_SELECT, READ_NEEDS,
};
use crate::reads::{at_scale, AtPosition, ReadStore};
use crate::{Error, Result};

/// A place in effective order: (effective time, position, leg), the order of the history with
/// `order=effective` and of its pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EffectiveCursor {
    pub effective_at: DateTime<Utc>,
    pub position: i64,
    pub leg: i16,
}

impl EffectiveCursor {
    /// After every leg: no write counts this far ahead (`--effective-future-max` is at most a
    /// year), and PostgreSQL keeps the time exactly.
    pub fn end() -> Self {
        Self {
            effective_at: DateTime::from_timestamp(253_402_300_799, 0)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
            position: i64::MAX,
            leg: i16::MAX,
        }
    }

    /// Before every leg: 0001-01-01, before anything a ledger records.
    pub fn start() -> Self {
        Self::at(DateTime::from_timestamp(-62_135_596_800, 0).unwrap_or(DateTime::<Utc>::MIN_UTC))
    }

    /// Before every leg that counts at `at` or later.
    pub fn at(at: DateTime<Utc>) -> Self {
        Self {
            effective_at: at,
            position: i64::MIN,
            leg: i16::MIN,
        }
    }
}

/// An account's balance in one asset as of `$2` known at `$3`, for the account `{account}` and
/// the asset `{asset}` of the enclosing query: `c.position`, the last leg that counts (no row when
/// none does: the account held none of the asset then), and `l.balance_after - x.later`, the
/// balance. Shared by the balances of an account and the roll-ups as of a date.
pub(super) fn as_of_laterals(account: &str, asset: &str) -> String {
    format!(
        "CROSS JOIN LATERAL (
             SELECT position FROM postings
             WHERE account_id = {account} AND asset = {asset} AND position <= $3
               AND effective_at <= $2
             ORDER BY position DESC, leg DESC LIMIT 1
         ) c
         CROSS JOIN LATERAL (
             SELECT balance_after FROM postings
             WHERE account_id = {account} AND asset = {asset} AND position <= $3
             ORDER BY position DESC, leg DESC LIMIT 1
         ) l
         CROSS JOIN LATERAL (
             SELECT COALESCE(sum(amount), 0) AS later FROM postings
             WHERE account_id = {account} AND asset = {asset} AND position <= $3
               AND effective_at > $2
         ) x"
    )
}

/// The position a read as known at `known_at` reads at (the head when `None`): never beyond what
/// the snapshot reflects, which the floor of the store (`known_at` itself) has waited for.
pub(super) fn known_at_within(known_at: Option<i64>, head: i64) -> Result<i64> {
    match known_at {
        Some(wanted) if wanted > head => Err(Error::PositionNotReached {
            wanted,
            current: head,
            waited_ms: 0,
        }),
        Some(known_at) => Ok(known_at),
        None => Ok(head),
    }
}

impl ReadStore {
    /// An account's posted balance in each asset over the legs that count at or before `as_of`,
    /// as known at `known_at` (the head when `None`); `position` is that of the last leg that
    /// counts. Assets none of whose legs count by then are left out.
    pub async fn balances_as_of(
        &self,
        account_id: Uuid,
        as_of: DateTime<Utc>,
        known_at: Option<i64>,
    ) -> Result<AtPosition<Vec<BalanceRecord>>> {
        let (mut tx, head) = self.snapshot_of(READ_NEEDS).await?;
        let known_at = known_at_within(known_at, head)?;
        let rows: Vec<(String, i16, i64, Decimal)> = sqlx::query_as(&format!(
            "SELECT a.asset, a.scale, c.position, l.balance_after - x.later
             FROM (SELECT b.asset, s.scale FROM balances b JOIN assets s ON s.code = b.asset
                   WHERE b.account_id = $1) a
             {}
             ORDER BY a.asset",
            as_of_laterals("$1", "a.asset")
        ))
        .bind(account_id)
        .bind(as_of)
        .bind(known_at)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(AtPosition {
            value: past_balances(rows),
            position: head,
        })
    }

    /// An account's postings strictly before `before` in effective order, newest first, in one
    /// asset or every asset, as known at `known_at` (the head when `None`), at most `limit`; each
    /// with the balance of its asset right after it in that order (not the recorded order's).
    /// The position is that it was read at: `known_at`.
    pub async fn history_effective(
        &self,
        account_id: Uuid,
        asset: Option<&str>,
        before: Option<EffectiveCursor>,
        known_at: Option<i64>,
        limit: i64,
    ) -> Result<AtPosition<Vec<HistoryEntry>>> {
        let (mut tx, head) = self.snapshot_of(READ_NEEDS).await?;
        let known_at = known_at_within(known_at, head)?;
        let before = before.unwrap_or_else(EffectiveCursor::end);
        // Per asset, the index in effective order, newest first: a page of each, merged.
        let rows = sqlx::query(&format!(
            "SELECT h.* FROM (SELECT asset FROM balances
                              WHERE account_id = $1 AND ($2::text IS NULL OR asset = $2)) b
             CROSS JOIN LATERAL (
                 {HISTORY_SELECT} WHERE p.account_id = $1 AND p.asset = b.asset
                   AND p.position <= $3 AND (p.effective_at, p.position, p.leg) < ($4, $5, $6)
                 ORDER BY p.effective_at DESC, p.position DESC, p.leg DESC LIMIT $7
             ) h
             ORDER BY h.effective_at DESC, h.position DESC, h.leg DESC LIMIT $7"
        ))
        .bind(account_id)
        .bind(asset)
        .bind(known_at)
        .bind(before.effective_at)
        .bind(before.position)
        .bind(before.leg)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        let mut entries = rows
            .iter()
            .map(history_from_row)
            .collect::<Result<Vec<_>>>()?;
        let mut running: HashMap<String, Decimal> = HashMap::new();
        for entry in &entries {
            if !running.contains_key(&entry.asset) {
                let balance =
                    balance_before(&mut tx, account_id, &entry.asset, known_at, before).await?;
                running.insert(entry.asset.clone(), balance);
            }
        }
        tx.commit().await?;
        for entry in &mut entries {
            let balance = running.entry(entry.asset.clone()).or_default();
            entry.balance_after = at_scale(*balance, entry.balance_after.scale() as i16);
            *balance -= entry.amount;
        }
        Ok(AtPosition {
            value: entries,
            position: known_at,
        })
    }

    /// An account's statement in one asset over the effective times [from, to) (from the
    /// beginning, up to now, when absent), as known at the head: the balance as of just before
    /// `from`, the legs in effective order (at most `limit`), each with the balance after it in
    /// that order, and the balance as of just before `to`. The position is the head it was read at.
    pub async fn statement_effective(
        &self,
        account_id: Uuid,
        asset: &str,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        limit: i64,
    ) -> Result<AtPosition<Statement>> {
        let (mut tx, head) = self.snapshot_of(READ_NEEDS).await?;
        let from = from.map_or_else(EffectiveCursor::start, EffectiveCursor::at);
        let to = to.map_or_else(EffectiveCursor::end, EffectiveCursor::at);
        let has_legs = latest_balance(&mut tx, account_id, asset, head)
            .await?
            .is_some();
        let opening = balance_before(&mut tx, account_id, asset, head, from).await?;
        let closing = balance_before(&mut tx, account_id, asset, head, to).await?;
        let rows = sqlx::query(&format!(
            "{HISTORY_SELECT} WHERE p.account_id = $1 AND p.asset = $2 AND p.position <= $3
               AND (p.effective_at, p.position, p.leg) >= ($4, $5, $6)
               AND (p.effective_at, p.position, p.leg) < ($7, $8, $9)
             ORDER BY p.effective_at, p.position, p.leg LIMIT $10"
        ))
        .bind(account_id)
        .bind(asset)
        .bind(head)
        .bind(from.effective_at)
        .bind(from.position)
        .bind(from.leg)
        .bind(to.effective_at)
        .bind(to.position)
        .bind(to.leg)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut entries = rows
            .iter()
            .map(history_from_row)
            .collect::<Result<Vec<_>>>()?;
        let mut balance = opening;
        for entry in &mut entries {
            balance += entry.amount;
            entry.balance_after = at_scale(balance, entry.balance_after.scale() as i16);
        }
        let value = Statement {
            opening: has_legs.then_some(opening),
            closing: has_legs.then_some(closing),
            entries,
        };
        Ok(AtPosition {
            value,
            position: head,
        })
    }
}

/// The running balance of an account in an asset after its last leg recorded at or before
/// `known_at`: the sum of every leg known then. `None` when it has none.
async fn latest_balance(
    conn: &mut PgConnection,
    account_id: Uuid,
    asset: &str,
    known_at: i64,
) -> Result<Option<Decimal>> {
    Ok(sqlx::query_scalar(
        "SELECT balance_after FROM postings
         WHERE account_id = $1 AND asset = $2 AND position <= $3
         ORDER BY position DESC, leg DESC LIMIT 1",
    )
    .bind(account_id)
    .bind(asset)
    .bind(known_at)
    .fetch_optional(conn)
    .await?)
}

/// The balance of an account in an asset over the legs known at `known_at` that come strictly
/// before `key` in effective order: every leg known then, less those at or after `key` (those
/// counting later through the index alone, those counting at the same time by position and leg).
async fn balance_before(
    conn: &mut PgConnection,
    account_id: Uuid,
    asset: &str,
    known_at: i64,
    key: EffectiveCursor,
) -> Result<Decimal> {
    let Some(total) = latest_balance(&mut *conn, account_id, asset, known_at).await? else {
        return Ok(Decimal::ZERO);
    };
    let later: Decimal = sqlx::query_scalar(
        "SELECT COALESCE((SELECT sum(amount) FROM postings
                          WHERE account_id = $1 AND asset = $2 AND position <= $3
                            AND effective_at > $4), 0)
              + COALESCE((SELECT sum(amount) FROM postings
                          WHERE account_id = $1 AND asset = $2 AND position <= $3
                            AND effective_at = $4 AND (position, leg) >= ($5, $6)), 0)",
    )
    .bind(account_id)
    .bind(asset)
    .bind(known_at)
    .bind(key.effective_at)
    .bind(key.position)
    .bind(key.leg)
    .fetch_one(conn)
    .await?;
    Ok(total - later)
}

/// A trial balance and the positions it was read at.
#[derive(Debug, Clone)]
pub struct TrialBalanceAt {
    pub as_of: DateTime<Utc>,
    /// The position it is as known at: every entry at or before it, none after.
    pub known_at_position: i64,
    pub trial_balance: domain::trial_balance::TrialBalance,
}

impl ReadStore {
    /// Every account's posted balance in every asset over the entries that count at or before
    /// `as_of`, as known at `known_at` (the head the projections reflect when `None`): a scan of
    /// the postings recorded up to then, one pass. `None` when `known_at` is beyond that head.
    pub async fn trial_balance(
        &self,
        as_of: DateTime<Utc>,
        known_at: Option<i64>,
    ) -> Result<AtPosition<TrialBalanceAt>> {
        let (mut tx, head) = self.snapshot_of(READ_NEEDS).await?;
        let known_at = known_at_within(known_at, head)?;
        let rows: Vec<(String, String, i16, Decimal)> = sqlx::query_as(
            "SELECT a.code, p.asset, s.scale, sum(p.amount)
             FROM postings p JOIN accounts a ON a.id = p.account_id JOIN assets s ON s.code = p.asset
             WHERE p.effective_at <= $1 AND p.position <= $2
             GROUP BY a.code, p.asset, s.scale",
        )
        .bind(as_of)
        .bind(known_at)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut balances = Vec::with_capacity(rows.len());
        for (account, asset, scale, sum) in rows {
            let corrupt = |what: String| Error::Corrupt(format!("trial balance: {what}"));
            let scale = domain::Scale::try_from(u32::try_from(scale).unwrap_or(u32::MAX))
                .map_err(|e| corrupt(format!("scale of {asset}: {e}")))?;
            let units = domain::money::to_units(sum, scale)
                .map_err(|e| corrupt(format!("{sum} {asset} of {account}: {e:?}")))?;
            let account = AccountCode::try_from(account).map_err(|e| corrupt(e.to_string()))?;
            let asset = AssetCode::try_from(asset).map_err(|e| corrupt(e.to_string()))?;
            balances.push(((account, asset), (units, scale)));
        }
        let trial_balance = domain::trial_balance::TrialBalance::from_units(balances);
        // Every posting debits what it credits: read back, each asset must sum to zero.
        if let Some((asset, total)) = trial_balance
            .totals()
            .into_iter()
            .find(|(_, t)| !t.is_zero())
        {
            return Err(Error::Corrupt(format!(
                "the trial balance as of {as_of} at position {known_at} sums to {total} {asset}"
            )));
        }
        Ok(AtPosition {
            value: TrialBalanceAt {
                as_of,
                known_at_position: known_at,
                trial_balance,
            },
            position: head,
        })
    }
}
