//! Roll-up balances: per code prefix of whole segments and asset, the posted balance, pending
//! debits and pending credits summed over every account whose code has that prefix, and per
//! prefix the number of such accounts. The prefixes of `broker:alice:cash` are `` (the whole
//! ledger), `broker`, `broker:alice` and `broker:alice:cash`. Asynchronous: each event adds its
//! changes to the rows of its accounts' prefixes (the tables add up rather than replace), so a
//! read of any prefix is one row per asset, however many accounts are under it. Read: the
//! roll-up of a prefix now, at a past position or as of a date (summed from `postings` then),
//! and of its children.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use domain::event::Posting;
use domain::{AccountCode, AssetCode, Event};
use rust_decimal::Decimal;
use sqlx::PgConnection;

use super::{effective, postings, Applied, Mode, Projection};
use crate::columns::{col, OnConflict, SqlType, Table, TableRows};
use crate::reads::{at_scale, AtPosition, ReadStore};
use crate::{Error, Result};

pub static ROLLUPS: Table = Table {
    name: "rollups",
    columns: &[
        col("prefix", SqlType::Text),
        col("asset", SqlType::Text),
        col("posted_units", SqlType::Numeric),
        col("pending_debits_units", SqlType::Numeric),
        col("pending_credits_units", SqlType::Numeric),
    ],
    on_conflict: OnConflict::Add { key_columns: 2 },
};

pub static ROLLUP_ACCOUNTS: Table = Table {
    name: "rollup_accounts",
    columns: &[
        col("parent", SqlType::Text),
        col("prefix", SqlType::Text),
        col("accounts", SqlType::Int8),
    ],
    on_conflict: OnConflict::Add { key_columns: 2 },
};

pub static PROJECTION: Projection = Projection {
    name: "rollups",
    tables: &[&ROLLUPS, &ROLLUP_ACCOUNTS],
    deletes: &[],
    mode: Mode::Async(project),
    legs: false,
};

/// The prefixes an account's figures count toward: the empty one, then each of its segments'
/// ends, the whole code last.
pub fn prefixes(code: &str) -> impl Iterator<Item = &str> {
    let ends = code.match_indices(':').map(|(i, _)| i).chain([code.len()]);
    std::iter::once("").chain(ends.map(move |end| &code[..end]))
}

/// The prefix one segment shorter (`` for a top segment, and for `` itself).
pub fn parent(prefix: &str) -> &str {
    prefix.rfind(':').map_or("", |end| &prefix[..end])
}

/// Changes to an account's figures in one asset, in smallest units (whole numbers, so that a sum
/// reads the same however its terms are grouped): posted, pending debits, pending credits.
type Figures = [Decimal; 3];

/// One change to an account's figures in one asset.
type Change<'e> = (&'e AccountCode, &'e AssetCode, Figures);

fn project(applied: &Applied<'_>, out: &mut [TableRows]) {
    let [rollups, accounts] = out else {
        return;
    };
    if let Event::AccountOpened(opened) = applied.event {
        for prefix in prefixes(opened.code.as_str()) {
            accounts.push([parent(prefix).into(), prefix.into(), 1i64.into()]);
        }
    }
    for (account, asset, [posted, pending_debits, pending_credits]) in changes(applied.event) {
        for prefix in prefixes(account.as_str()) {
            rollups.push([
                prefix.into(),
                asset.as_str().into(),
                posted.into(),
                pending_debits.into(),
                pending_credits.into(),
            ]);
        }
    }
}

/// What the event does to each account's figures (docs/events.md): a posting moves its amount
/// from the source's balance to the destination's, a pending one reserves it (a pending debit of
/// the source, a pending credit of the destination), and a settlement releases reservations.
fn changes(event: &Event) -> Vec<Change<'_>> {
    /// The changes of one posting: `source` and `destination` name which figure takes the
    /// amount (0 posted, 1 pending debits, 2 pending credits) and its sign. An amount has
    /// exactly its asset's scale (docs/events.md), so its mantissa is its smallest units.
    fn both<'e>(
        changes: &mut Vec<Change<'e>>,
        p: &'e Posting,
        source: (usize, i128),
        destination: (usize, i128),
    ) {
        let figures = |(figure, sign): (usize, i128)| {
            let mut figures = [Decimal::ZERO; 3];
            figures[figure] = Decimal::from_i128_with_scale(sign * p.amount.mantissa(), 0);
            figures
        };
        changes.push((&p.source, &p.asset, figures(source)));
        changes.push((&p.destination, &p.asset, figures(destination)));
    }
    let (plus, minus) = (1, -1);
    let mut changes = Vec::new();
    for p in event.moved() {
        both(&mut changes, p, (0, minus), (0, plus));
    }
    let reserved = if event.is_pending() {
        event.postings()
    } else {
        &[]
    };
    for p in reserved {
        both(&mut changes, p, (1, plus), (2, plus));
    }
    for p in event.released() {
        both(&mut changes, p, (1, minus), (2, minus));
    }
    changes
}

/// The accounts whose code starts with a prefix (whole segments), and their sums per asset.
#[derive(Debug, Clone)]
pub struct Rollup {
    pub prefix: String,
    pub accounts: i64,
    pub balances: Vec<RollupBalance>,
}

/// A roll-up at a past position, or why it was not summed.
#[derive(Debug, Clone)]
pub enum PastRollup {
    /// Posted figures only (`pending` is `None`): pending ones are not kept per position.
    Summed(Rollup),
    TooManyAccounts {
        accounts_max: i64,
    },
}

#[derive(Debug, Clone)]
pub struct RollupBalance {
    pub asset: String,
    pub posted: Decimal,
    /// Pending debits and credits, summed; kept for now, not per position (`None` at a past one).
    pub pending: Option<(Decimal, Decimal)>,
}

/// The asynchronous projection a read of roll-ups needs.
const READ_NEEDS: &[&str] = &[PROJECTION.name];

impl ReadStore {
    /// The roll-up of `prefix` (whole segments; `` for the whole ledger), in every asset or in
    /// `asset`: one row per asset, however many accounts are under it.
    pub async fn rollup(&self, prefix: &str, asset: Option<&str>) -> Result<AtPosition<Rollup>> {
        let (mut tx, position) = self.snapshot_of(READ_NEEDS).await?;
        let counted: Vec<(String, i64)> = sqlx::query_as(
            "SELECT prefix, accounts FROM rollup_accounts WHERE parent = $1 AND prefix = $2",
        )
        .bind(parent(prefix))
        .bind(prefix)
        .fetch_all(&mut *tx)
        .await?;
        let mut found = rollups_of(&mut tx, counted, asset).await?;
        tx.commit().await?;
        let value = found.pop().unwrap_or_else(|| Rollup {
            prefix: prefix.to_owned(),
            accounts: 0,
            balances: Vec::new(),
        });
        Ok(AtPosition { value, position })
    }

    /// The roll-up of `prefix` as it stood right after `position`: the posted balance of each
    /// account opened by then, from its last posting at or before it, summed per asset (pending
    /// figures are not kept per position, as for one account's balances at a position). The
    /// present roll-up is kept up to date; a past one reads every account's history, so it is
    /// refused, as `TooManyAccounts`, when more than `accounts_max` accounts are under `prefix`.
    pub async fn rollup_at(
        &self,
        prefix: &str,
        asset: Option<&str>,
        position: i64,
        accounts_max: i64,
    ) -> Result<AtPosition<PastRollup>> {
        let (mut tx, head) = self.snapshot_of(postings::READ_NEEDS).await?;
        let Some(accounts) = count_under(&mut tx, prefix, position, accounts_max).await? else {
            tx.commit().await?;
            return Ok(too_many(accounts_max, head));
        };
        let balances = past_balances(&mut tx, prefix, position, asset).await?;
        tx.commit().await?;
        Ok(summed(prefix, accounts, balances, head))
    }

    /// The roll-up of `prefix` as of `as_of` as known at `known_at` (the head when `None`): the
    /// sum per asset of the balances as of `as_of` (`balances_as_of`) of every account opened by
    /// `known_at`, posted figures only. Each account is its running balance at `known_at` less
    /// its legs that count after `as_of`, through `postings_by_effective`: no table kept per day,
    /// so nothing more for the projector to write and no bucket to choose, and what a read costs
    /// is what counts after `as_of` in the accounts under the prefix. So, like `rollup_at`, it is
    /// refused as `TooManyAccounts` past `accounts_max` accounts.
    pub async fn rollup_as_of(
        &self,
        prefix: &str,
        asset: Option<&str>,
        as_of: DateTime<Utc>,
        known_at: Option<i64>,
        accounts_max: i64,
    ) -> Result<AtPosition<PastRollup>> {
        let (mut tx, head) = self.snapshot_of(postings::READ_NEEDS).await?;
        let known_at = effective::known_at_within(known_at, head)?;
        let Some(accounts) = count_under(&mut tx, prefix, known_at, accounts_max).await? else {
            tx.commit().await?;
            return Ok(too_many(accounts_max, head));
        };
        let sums: Vec<(String, i16, Decimal)> = sqlx::query_as(&format!(
            "SELECT b.asset, s.scale, sum(l.balance_after - x.later)
             FROM accounts a
             JOIN balances b ON b.account_id = a.id AND ($4::text IS NULL OR b.asset = $4)
             JOIN assets s ON s.code = b.asset
             {}
             WHERE {}
             GROUP BY b.asset, s.scale ORDER BY b.asset",
            effective::as_of_laterals("a.id", "b.asset"),
            under(prefix, "$3"),
        ))
        .bind(prefix)
        .bind(as_of)
        .bind(known_at)
        .bind(asset)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let balances = sums_at_scale(prefix, sums)?;
        Ok(summed(prefix, accounts, balances, head))
    }

    /// The next segments under `prefix` in code order, after the child prefix `after`, at most
    /// `limit`, each with its roll-up: one range of an index, whatever the number of accounts.
    pub async fn rollup_children(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: i64,
    ) -> Result<AtPosition<Vec<Rollup>>> {
        let (mut tx, position) = self.snapshot_of(READ_NEEDS).await?;
        let children: Vec<(String, i64)> = sqlx::query_as(
            "SELECT prefix, accounts FROM rollup_accounts
             WHERE parent = $1 AND prefix <> '' AND prefix > $2 ORDER BY prefix LIMIT $3",
        )
        .bind(prefix)
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        let value = rollups_of(&mut tx, children, None).await?;
        tx.commit().await?;
        Ok(AtPosition { value, position })
    }
}

/// The condition on `accounts a` that selects the accounts under the prefix `$1` opened by the
/// position `opened_by` (a parameter). Codes under `p` are `p` itself and `p:…`, all within [`p`,
/// `p;`) (`;` follows `:` in bytes): one range of the code index, whose few other codes (`p-x`,
/// `p0`) the second condition drops. Two texts, not one with `$1 = ''`, so that the plan is that
/// range.
pub(super) fn under(prefix: &str, opened_by: &str) -> String {
    if prefix.is_empty() {
        format!("a.position <= {opened_by} AND $1 = ''")
    } else {
        format!(
            "a.position <= {opened_by} AND a.code >= $1 AND a.code < $1 || ';'
             AND (a.code = $1 OR left(a.code, length($1) + 1) = $1 || ':')"
        )
    }
}

/// How many accounts opened by `position` are under `prefix`; `None` when more than
/// `accounts_max` are (counting stops there).
pub(super) async fn count_under(
    conn: &mut PgConnection,
    prefix: &str,
    position: i64,
    accounts_max: i64,
) -> Result<Option<i64>> {
    let accounts: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM (SELECT 1 FROM accounts a WHERE {} LIMIT $3) l",
        under(prefix, "$2")
    ))
    .bind(prefix)
    .bind(position)
    .bind(accounts_max + 1)
    .fetch_one(conn)
    .await?;
    Ok((accounts <= accounts_max).then_some(accounts))
}

fn too_many(accounts_max: i64, head: i64) -> AtPosition<PastRollup> {
    AtPosition {
        value: PastRollup::TooManyAccounts { accounts_max },
        position: head,
    }
}

fn summed(
    prefix: &str,
    accounts: i64,
    balances: Vec<RollupBalance>,
    head: i64,
) -> AtPosition<PastRollup> {
    AtPosition {
        value: PastRollup::Summed(Rollup {
            prefix: prefix.to_owned(),
            accounts,
            balances,
        }),
        position: head,
    }
}

/// The posted balances, summed per asset (or in `asset` alone), of the accounts under a prefix
/// opened by `position`, as they stood right after it.
async fn past_balances(
    conn: &mut PgConnection,
    prefix: &str,
    position: i64,
    asset: Option<&str>,
) -> Result<Vec<RollupBalance>> {
    let sums: Vec<(String, i16, Decimal)> = sqlx::query_as(&format!(
        "SELECT b.asset, s.scale, sum(p.balance_after)
         FROM accounts a
         JOIN balances b ON b.account_id = a.id AND ($3::text IS NULL OR b.asset = $3)
         JOIN assets s ON s.code = b.asset
         CROSS JOIN LATERAL (
             SELECT balance_after FROM postings
             WHERE account_id = a.id AND asset = b.asset AND position <= $2
             ORDER BY position DESC, leg DESC LIMIT 1
         ) p
         WHERE {}
         GROUP BY b.asset, s.scale ORDER BY b.asset",
        under(prefix, "$2")
    ))
    .bind(prefix)
    .bind(position)
    .bind(asset)
    .fetch_all(conn)
    .await?;
    sums_at_scale(prefix, sums)
}

/// Sums of balances per asset, at the asset's scale.
fn sums_at_scale(prefix: &str, sums: Vec<(String, i16, Decimal)>) -> Result<Vec<RollupBalance>> {
    sums.into_iter()
        .map(|(asset, scale, posted)| {
            // Balances at the asset's scale sum to no more digits than it: anything else is
            // a damaged projection, never rounded away.
            if i64::from(posted.scale()) > i64::from(scale) {
                return Err(Error::Corrupt(format!(
                    "the sum of {asset} balances under {prefix:?} has more digits than scale {scale}"
                )));
            }
            Ok(RollupBalance {
                asset,
                posted: at_scale(posted, scale),
                pending: None,
            })
        })
        .collect::<Result<Vec<_>>>()
}

/// The roll-ups of the prefixes `counted` (each with its number of accounts, as read from
/// `rollup_accounts` in the same snapshot), in their order, in every asset or in `asset`.
async fn rollups_of(
    conn: &mut PgConnection,
    counted: Vec<(String, i64)>,
    asset: Option<&str>,
) -> Result<Vec<Rollup>> {
    let prefixes: Vec<&str> = counted.iter().map(|(prefix, _)| prefix.as_str()).collect();
    // Stored in smallest units; shown at the asset's scale. One index lookup per prefix, whatever
    // the statistics say: `prefix = ANY($1)` with a page of prefixes was planned as a scan of the
    // whole table while `rollups` had no statistics yet (a new or rebuilt table, before
    // autovacuum analyzes it), 15 ms at 20,000 accounts. `OFFSET 0` keeps the lateral subquery
    // from being flattened into a join that could be planned the same way.
    let sums: Vec<(String, String, i16, Decimal, Decimal, Decimal)> = sqlx::query_as(
        "SELECT r.prefix, r.asset, s.scale, r.posted_units, r.pending_debits_units,
                r.pending_credits_units
         FROM UNNEST($1::text[]) AS n(prefix)
         CROSS JOIN LATERAL (SELECT * FROM rollups r WHERE r.prefix = n.prefix
                             AND ($2::text IS NULL OR r.asset = $2) OFFSET 0) r
         JOIN assets s ON s.code = r.asset
         ORDER BY r.prefix, r.asset",
    )
    .bind(&prefixes)
    .bind(asset)
    .fetch_all(&mut *conn)
    .await?;
    let mut by_prefix: HashMap<String, Vec<RollupBalance>> = HashMap::new();
    for (prefix, asset, scale, posted, pending_debits, pending_credits) in sums {
        let at_scale = |units: Decimal| {
            let scale = u32::try_from(scale).ok().filter(|s| *s <= 28);
            match (units.scale(), scale) {
                (0, Some(scale)) => Ok(Decimal::from_i128_with_scale(units.mantissa(), scale)),
                _ => Err(Error::Corrupt(format!(
                    "the roll-up of {prefix:?} in {asset} is not whole units: {units}"
                ))),
            }
        };
        let balance = RollupBalance {
            posted: at_scale(posted)?,
            pending: Some((at_scale(pending_debits)?, at_scale(pending_credits)?)),
            asset,
        };
        by_prefix.entry(prefix).or_default().push(balance);
    }
    Ok(counted
        .into_iter()
        .map(|(prefix, accounts)| Rollup {
            balances: by_prefix.remove(&prefix).unwrap_or_default(),
            prefix,
            accounts,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_counts_toward_the_ledger_each_of_its_segments_and_itself() {
        let all: Vec<&str> = prefixes("broker:alice:cash").collect();
        assert_eq!(all, ["", "broker", "broker:alice", "broker:alice:cash"]);
        assert_eq!(prefixes("bank").collect::<Vec<_>>(), ["", "bank"]);
        assert_eq!(parent("broker:alice:cash"), "broker:alice");
        assert_eq!(parent("broker"), "");
        assert_eq!(parent(""), "");
    }
}
