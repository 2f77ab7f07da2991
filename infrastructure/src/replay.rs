//! Rebuilding every projection from the log into fresh tables, comparing them with the live ones
//! row by row (as text, so byte for byte), and optionally swapping them in. The projections are
//! derived data: this is both the audit that proves them and the repair that restores them.

use std::time::Instant;

use domain::chain::Hash;
use std::collections::HashMap;

use domain::{AccountId, AssetCode, Event, LedgerState};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};

use crate::audit::{chain_row, page, StoredRow, PAGE_EVENTS};
use crate::projection::{insert_balances, BalanceRow, ProjectionRows};
use crate::writer_lock::{lock_writer, unlock_writer};
use crate::{Error, Result};

/// The projection tables, rebuilt and compared in this order.
const TABLES: [&str; 10] = [
    "assets",
    "accounts",
    "transactions",
    "postings",
    "account_status_changes",
    "account_limits",
    "holds",
    "hold_settlements",
    "reversals",
    "balances",
];
/// Differing rows reported per table at most (the count is always complete).
const DIFFERENCES_SHOWN_MAX: i64 = 100;

#[derive(Debug, Clone, Serialize)]
pub struct Difference {
    pub table: String,
    /// Which row: for balances `account asset`, otherwise the row's key columns.
    pub key: String,
    pub live: Option<String>,
    pub replayed: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    pub events: i64,
    pub seconds: f64,
    pub events_per_second: f64,
    /// Rows that differ, per table (complete counts).
    pub differing_rows: Vec<(String, i64)>,
    /// Up to 100 differing rows per table.
    pub differences: Vec<Difference>,
    pub chain_intact: bool,
    pub swapped: bool,
}

impl ReplayReport {
    pub fn identical(&self) -> bool {
        self.chain_intact && self.differing_rows.iter().all(|(_, n)| *n == 0)
    }
}

/// Replays the whole log into the schema `ledger_replay` and compares. Holds the writer's lock
/// throughout, so nothing is written meanwhile: run it with the ledger stopped, or on a copy.
pub async fn replay(
    pool: &PgPool,
    swap: bool,
    mut progress: impl FnMut(i64, i64),
) -> Result<ReplayReport> {
    let mut conn = lock_writer(
        pool,
        "a ledger server holds the writer lock: stop it, or replay a copy of the database",
    )
    .await?;
    let result = replay_locked(&mut conn, pool, swap, &mut progress).await;
    unlock_writer(conn).await;
    result
}

/// Folds stored events, in position order, into the ledger state and the projection rows, and
/// follows the hash chain: what a replay and an import share.
pub(crate) struct Rebuild {
    state: LedgerState,
    pub(crate) chain_head: Hash,
    /// False once a stored hash differs from the one recomputed.
    pub(crate) chain_intact: bool,
    projections: ProjectionRows,
    /// Every balance row so far, the latest of each: written once, at the end.
    balances: HashMap<(AccountId, AssetCode), BalanceRow>,
}

impl Rebuild {
    pub(crate) fn new() -> Self {
        Self {
            state: LedgerState::new(),
            chain_head: domain::chain::genesis(),
            chain_intact: true,
            projections: ProjectionRows::default(),
            balances: HashMap::new(),
        }
    }

    /// Chains, decodes and applies one event; returns whether its stored hash is the one the
    /// chain gives. An event the state refuses to apply means the log is not one this ledger
    /// could have written.
    pub(crate) fn push(&mut self, row: &StoredRow) -> Result<bool> {
        let hash = chain_row(&self.chain_head, row);
        let matches = hash.as_slice() == row.hash.as_slice();
        self.chain_intact &= matches;
        self.chain_head = hash;
        let event = Event::decode(&row.event_type, row.schema_version, row.payload.clone())
            .map_err(|e| Error::Corrupt(format!("position {}: {e}", row.position)))?;
        let legs = self
            .state
            .apply(&event)
            .map_err(|e| Error::Corrupt(format!("position {}: {e}", row.position)))?;
        self.projections
            .push(row.position, &event, &legs, row.recorded_at, &self.state);
        Ok(matches)
    }

    /// The projection rows gathered since the last call, balances excepted (kept for `finish`).
    pub(crate) fn take_projections(&mut self) -> ProjectionRows {
        let mut projections = std::mem::take(&mut self.projections);
        self.balances.extend(projections.take_balances());
        projections
    }

    /// Checks the invariants on the rebuilt state (every asset sums to zero, reservations have
    /// both sides), then writes the balances table of `schema`.
    pub(crate) async fn finish(mut self, conn: &mut PgConnection, schema: &str) -> Result<()> {
        self.state.check_conservation()?;
        self.balances.extend(self.projections.take_balances());
        insert_balances(conn, schema, &self.balances).await
    }
}

async fn replay_locked(
    conn: &mut PgConnection,
    pool: &PgPool,
    swap: bool,
    progress: &mut impl FnMut(i64, i64),
) -> Result<ReplayReport> {
    let started = Instant::now();
    let mut ddl =
        String::from("DROP SCHEMA IF EXISTS ledger_replay CASCADE; CREATE SCHEMA ledger_replay;");
    for table in TABLES {
        ddl.push_str(&format!(
            "CREATE TABLE ledger_replay.{table} (LIKE public.{table} INCLUDING ALL);"
        ));
    }
    sqlx::raw_sql(&ddl).execute(&mut *conn).await?;

    let head: i64 = sqlx::query_scalar("SELECT COALESCE(max(position), 0) FROM events")
        .fetch_one(&mut *conn)
        .await?;
    let mut rebuild = Rebuild::new();
    let mut after = 0;
    while after < head {
        let rows = page(pool, after, PAGE_EVENTS.min(head - after)).await?;
        let Some(last) = rows.last() else {
            break;
        };
        after = last.position;
        for row in &rows {
            rebuild.push(row)?;
        }
        rebuild
            .take_projections()
            .insert_into(&mut *conn, "ledger_replay")
            .await?;
        progress(after, head);
    }
    let chain_intact = rebuild.chain_intact;
    rebuild.finish(&mut *conn, "ledger_replay").await?;
    let seconds = started.elapsed().as_secs_f64();

    let (differing_rows, differences) = compare(&mut *conn).await?;
    let mut report = ReplayReport {
        events: head,
        seconds,
        events_per_second: head as f64 / seconds.max(1e-9),
        differing_rows,
        differences,
        chain_intact,
        swapped: false,
    };
    if swap {
        let mut ddl = String::from(
            "BEGIN; DROP SCHEMA IF EXISTS ledger_replaced CASCADE; CREATE SCHEMA ledger_replaced;",
        );
        for table in TABLES {
            ddl.push_str(&format!(
                "ALTER TABLE public.{table} SET SCHEMA ledger_replaced; ALTER TABLE ledger_replay.{table} SET SCHEMA public;"
            ));
        }
        ddl.push_str("COMMIT; DROP SCHEMA ledger_replaced CASCADE;");
        sqlx::raw_sql(&ddl).execute(&mut *conn).await?;
        report.swapped = true;
    }
    sqlx::raw_sql("DROP SCHEMA IF EXISTS ledger_replay CASCADE")
        .execute(&mut *conn)
        .await?;
    Ok(report)
}

/// Rows of each table that are not in both versions, compared as their JSON text.
async fn compare(conn: &mut PgConnection) -> Result<(Vec<(String, i64)>, Vec<Difference>)> {
    let mut counts = Vec::new();
    let mut differences = Vec::new();
    for &table in &TABLES[..TABLES.len() - 1] {
        let count: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM (
               (SELECT row_to_json(t)::text FROM public.{table} t EXCEPT ALL SELECT row_to_json(t)::text FROM ledger_replay.{table} t)
               UNION ALL
               (SELECT row_to_json(t)::text FROM ledger_replay.{table} t EXCEPT ALL SELECT row_to_json(t)::text FROM public.{table} t)
             ) d"
        ))
        .fetch_one(&mut *conn)
        .await?;
        if count > 0 {
            let rows: Vec<(String, String)> = sqlx::query_as(&format!(
                "(SELECT 'live', row FROM (SELECT row_to_json(t)::text AS row FROM public.{table} t EXCEPT ALL SELECT row_to_json(t)::text FROM ledger_replay.{table} t) a LIMIT $1)
                 UNION ALL
                 (SELECT 'replayed', row FROM (SELECT row_to_json(t)::text AS row FROM ledger_replay.{table} t EXCEPT ALL SELECT row_to_json(t)::text FROM public.{table} t) b LIMIT $1)"
            ))
            .bind(DIFFERENCES_SHOWN_MAX)
            .fetch_all(&mut *conn)
            .await?;
            for (side, row) in rows {
                let (live, replayed) = if side == "live" {
                    (Some(row), None)
                } else {
                    (None, Some(row))
                };
                differences.push(Difference {
                    table: table.to_owned(),
                    key: String::new(),
                    live,
                    replayed,
                });
            }
        }
        counts.push((table.to_owned(), count));
    }
    // Balances side by side: account, asset, live value, replayed value.
    let rows: Vec<(String, String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT COALESCE(a.code, COALESCE(l.account_id, r.account_id)::text), COALESCE(l.asset, r.asset),
                l.balance::text || ' (pending ' || l.pending_debits || ' out, ' || l.pending_credits || ' in) @' || l.position,
                r.balance::text || ' (pending ' || r.pending_debits || ' out, ' || r.pending_credits || ' in) @' || r.position
         FROM public.balances l
         FULL OUTER JOIN ledger_replay.balances r ON r.account_id = l.account_id AND r.asset = l.asset
         LEFT JOIN public.accounts a ON a.id = COALESCE(l.account_id, r.account_id)
         WHERE (l.balance::text, l.pending_debits::text, l.pending_credits::text, l.position)
               IS DISTINCT FROM (r.balance::text, r.pending_debits::text, r.pending_credits::text, r.position)
         ORDER BY 1, 2",
    )
    .fetch_all(&mut *conn)
    .await?;
    counts.push(("balances".to_owned(), rows.len() as i64));
    for (account, asset, live, replayed) in rows.into_iter().take(DIFFERENCES_SHOWN_MAX as usize) {
        differences.push(Difference {
            table: "balances".to_owned(),
            key: format!("{account} {asset}"),
            live,
            replayed,
        });
    }
    Ok((counts, differences))
}
