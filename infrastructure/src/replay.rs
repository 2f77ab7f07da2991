//! Rebuilding every projection from the log into fresh tables, comparing them with the live ones
//! row by row (as text, so byte for byte), and optionally swapping them in. The projections are
//! derived data: this is both the audit that proves them and the repair that restores them.

use std::time::Instant;

use domain::chain::Hash;
use domain::LedgerState;
use serde::Serialize;
use sqlx::{PgConnection, PgPool};

use crate::event_store::{self, Link, StoredEvent, PAGE_EVENTS};
use crate::projections::{self, projector, Applied, Memory, Projection, ProjectionRows};
use crate::writer_lock::{lock_writer, unlock_writer};
use crate::{Error, Result};

/// How long a replay waits for the projector's lock, and how often it asks.
const PROJECTOR_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
const PROJECTOR_LOCK_POLL: std::time::Duration = std::time::Duration::from_millis(100);
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

/// Replays the whole log of the book the pool's sessions work on (see `ledgers`) into a scratch
/// schema beside it (`<book>_replay`) and compares every projection. Holds
/// the writer's lock throughout, so nothing is written meanwhile: run it with the ledger
/// stopped, or on a copy.
pub async fn replay(
    pool: &PgPool,
    swap: bool,
    progress: impl FnMut(i64, i64),
) -> Result<ReplayReport> {
    replay_projections(pool, None, swap, progress).await
}

/// `replay`, of one projection (`Some(name)`) or of all.
pub async fn replay_projections(
    pool: &PgPool,
    only: Option<&str>,
    swap: bool,
    mut progress: impl FnMut(i64, i64),
) -> Result<ReplayReport> {
    let selected: Vec<&'static Projection> = match only {
        None => projections::PROJECTIONS.to_vec(),
        Some(name) => vec![projections::by_name(name).ok_or_else(|| unknown_projection(name))?],
    };
    let mut conn = lock_writer(
        pool,
        "a ledger server holds the writer lock: stop it, or replay a copy of the database",
    )
    .await?;
    let result = replay_locked(&mut conn, pool, &selected, swap, &mut progress).await;
    let _ = projector::unlock(&mut conn).await;
    unlock_writer(conn).await;
    result
}

fn unknown_projection(name: &str) -> Error {
    let names: Vec<&str> = projections::PROJECTIONS.iter().map(|p| p.name).collect();
    Error::UnknownProjection(format!(
        "no projection is called {name:?}; the projections are {}",
        names.join(", ")
    ))
}

/// Folds stored events, in position order, into the ledger state and the projection rows, and
/// follows the hash chain: what a replay and an import share. The legs come from the state, so
/// a rebuild of the postings history checks the projector's own derivation of them.
pub(crate) struct Rebuild {
    state: LedgerState,
    pub(crate) chain_head: Hash,
    /// False once a stored hash differs from the one recomputed.
    pub(crate) chain_intact: bool,
    rows: ProjectionRows,
    /// The memories of the remembering projections: whole ones, which never read their tables,
    /// so that a rebuild compares with the projector's loaded ones.
    memories: Vec<(&'static Projection, Box<dyn Memory>)>,
}

impl Rebuild {
    pub(crate) fn new(projections: impl IntoIterator<Item = &'static Projection>) -> Self {
        let projections: Vec<&'static Projection> = projections.into_iter().collect();
        let memories = projections
            .iter()
            .filter_map(|p| Some((*p, p.memory(true)?)))
            .collect();
        Self {
            state: LedgerState::new(),
            chain_head: domain::chain::genesis(),
            chain_intact: true,
            rows: ProjectionRows::new(projections),
            memories,
        }
    }

    /// Chains, decodes and applies one event; returns how it extends the chain. An event the
    /// state refuses to apply means the log is not one this ledger could have written.
    pub(crate) fn push(&mut self, stored: &StoredEvent) -> Result<Link> {
        let link = stored.link(&self.chain_head);
        let (Link::Intact(head)
        | Link::Respelled(head, _)
        | Link::Broken(head)
        | Link::NotCanonical(head)) = &link;
        self.chain_intact &= link.problem(stored.position).is_none();
        self.chain_head = *head;
        let event = stored.decode()?;
        self.state.set_recording_at(stored.recorded_at);
        let legs = self
            .state
            .apply(&event)
            .map_err(|e| Error::Corrupt(format!("position {}: {e}", stored.position)))?;
        let applied = Applied {
            position: stored.position,
            event: &event,
            recorded_at: stored.recorded_at,
            legs: &legs,
        };
        self.rows.push(&applied, Some(&self.state));
        for (projection, memory) in &mut self.memories {
            memory.project(&applied).map_err(|e| {
                Error::Corrupt(format!(
                    "position {}: {}: {e}",
                    stored.position, projection.name
                ))
            })?;
        }
        Ok(link)
    }

    /// Writes the rows gathered since the last call into the tables of `schema`.
    pub(crate) async fn write(&mut self, conn: &mut PgConnection, schema: &str) -> Result<()> {
        for (projection, memory) in &mut self.memories {
            if let Some((out, deletes)) = self.rows.buffers_of(projection.name) {
                memory.flush(out, deletes);
            }
        }
        let emptied = self.rows.emptied();
        let rows = std::mem::replace(&mut self.rows, emptied);
        rows.insert_into(conn, schema).await
    }

    /// Checks the invariant on the rebuilt state: every asset sums to zero.
    pub(crate) fn finish(self) -> Result<()> {
        self.state.check_conservation()?;
        Ok(())
    }
}

async fn replay_locked(
    conn: &mut PgConnection,
    pool: &PgPool,
    selected: &[&'static Projection],
    swap: bool,
    progress: &mut impl FnMut(i64, i64),
) -> Result<ReplayReport> {
    let started = Instant::now();
    // The projector must not write while the asynchronous projections are compared or
    // swapped: hold its lock too. A server killed a moment ago may still hold it until
    // PostgreSQL notices its session is gone: wait for that, within a bound.
    let deadline = Instant::now() + PROJECTOR_LOCK_WAIT;
    while !projector::try_lock(conn).await? {
        if Instant::now() >= deadline {
            return Err(Error::WriterUnavailable(
                "a ledger server is running the projector: stop it, or replay a copy of the database",
            ));
        }
        tokio::time::sleep(PROJECTOR_LOCK_POLL).await;
    }
    // The book being replayed is the one the session's search path names; its rebuild goes into
    // a scratch schema beside it.
    let book: String = sqlx::query_scalar("SELECT current_schema()")
        .fetch_one(&mut *conn)
        .await?;
    let (scratch, replaced) = (format!("{book}_replay"), format!("{book}_replaced"));
    let tables: Vec<&str> = selected
        .iter()
        .flat_map(|p| p.tables.iter().map(|t| t.name))
        .collect();
    let mut ddl = format!("DROP SCHEMA IF EXISTS {scratch} CASCADE; CREATE SCHEMA {scratch};");
    for table in &tables {
        ddl.push_str(&format!(
            "CREATE TABLE {scratch}.{table} (LIKE {book}.{table} INCLUDING ALL);"
        ));
    }
    sqlx::raw_sql(&ddl).execute(&mut *conn).await?;

    let head = event_store::last(&mut *conn)
        .await?
        .map_or(0, |(p, _, _)| p);
    // Asynchronous projections are compared as of the log's head. With the projector's lock
    // held here, one that is behind is one whose projector stopped before reaching the head:
    // catch it up first, as the projector would have.
    projector::catch_up(conn, selected.iter().copied().filter(|p| p.is_async())).await?;
    let mut rebuild = Rebuild::new(selected.iter().copied());
    let mut after = 0;
    while after < head {
        let events = event_store::page(pool, after, PAGE_EVENTS.min(head - after)).await?;
        let Some(last) = events.last() else {
            break;
        };
        after = last.position;
        for event in &events {
            rebuild.push(event)?;
        }
        rebuild.write(&mut *conn, &scratch).await?;
        progress(after, head);
    }
    let chain_intact = rebuild.chain_intact;
    rebuild.finish()?;
    let seconds = started.elapsed().as_secs_f64();

    let (differing_rows, differences) = compare(&mut *conn, &book, &scratch, &tables).await?;
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
        let mut ddl =
            format!("BEGIN; DROP SCHEMA IF EXISTS {replaced} CASCADE; CREATE SCHEMA {replaced};",);
        for table in &tables {
            ddl.push_str(&format!(
                "ALTER TABLE {book}.{table} SET SCHEMA {replaced}; ALTER TABLE {scratch}.{table} SET SCHEMA {book};"
            ));
        }
        for projection in selected.iter().filter(|p| p.is_async()) {
            ddl.push_str(&format!(
                "UPDATE projection_checkpoints SET position = {head}, updated_at = now() WHERE name = '{}';",
                projection.name
            ));
        }
        ddl.push_str(&format!("COMMIT; DROP SCHEMA {replaced} CASCADE;"));
        sqlx::raw_sql(&ddl).execute(&mut *conn).await?;
        report.swapped = true;
    }
    sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS {scratch} CASCADE"))
        .execute(&mut *conn)
        .await?;
    Ok(report)
}

/// Rows of each table that are not in both versions, compared as their JSON text.
async fn compare(
    conn: &mut PgConnection,
    book: &str,
    scratch: &str,
    tables: &[&str],
) -> Result<(Vec<(String, i64)>, Vec<Difference>)> {
    let mut counts = Vec::new();
    let mut differences = Vec::new();
    for &table in tables.iter().filter(|t| **t != "balances") {
        let count: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM (
               (SELECT row_to_json(t)::text FROM {book}.{table} t EXCEPT ALL SELECT row_to_json(t)::text FROM {scratch}.{table} t)
               UNION ALL
               (SELECT row_to_json(t)::text FROM {scratch}.{table} t EXCEPT ALL SELECT row_to_json(t)::text FROM {book}.{table} t)
             ) d"
        ))
        .fetch_one(&mut *conn)
        .await?;
        if count > 0 {
            let rows: Vec<(String, String)> = sqlx::query_as(&format!(
                "(SELECT 'live', row FROM (SELECT row_to_json(t)::text AS row FROM {book}.{table} t EXCEPT ALL SELECT row_to_json(t)::text FROM {scratch}.{table} t) a LIMIT $1)
                 UNION ALL
                 (SELECT 'replayed', row FROM (SELECT row_to_json(t)::text AS row FROM {scratch}.{table} t EXCEPT ALL SELECT row_to_json(t)::text FROM {book}.{table} t) b LIMIT $1)"
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
    if !tables.contains(&"balances") {
        return Ok((counts, differences));
    }
    // Balances side by side: account, asset, live value, replayed value.
    let rows: Vec<(String, String, Option<String>, Option<String>)> = sqlx::query_as(&format!(
        "SELECT COALESCE(a.code, COALESCE(l.account_id, r.account_id)::text), COALESCE(l.asset, r.asset),
                l.balance::text || ' (pending ' || l.pending_debits || ' out, ' || l.pending_credits || ' in) @' || l.position,
                r.balance::text || ' (pending ' || r.pending_debits || ' out, ' || r.pending_credits || ' in) @' || r.position
         FROM {book}.balances l
         FULL OUTER JOIN {scratch}.balances r ON r.account_id = l.account_id AND r.asset = l.asset
         LEFT JOIN {book}.accounts a ON a.id = COALESCE(l.account_id, r.account_id)
         WHERE (l.balance::text, l.pending_debits::text, l.pending_credits::text, l.position)
               IS DISTINCT FROM (r.balance::text, r.pending_debits::text, r.pending_credits::text, r.position)
         ORDER BY 1, 2",
    ))
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
