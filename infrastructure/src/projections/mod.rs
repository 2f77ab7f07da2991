//! Projections: the read models derived from the log. Each is one module that declares its
//! tables, turns an event into their rows, and serves the reads of them (its records and an
//! `impl ReadStore` block, through the snapshot of `crate::reads`); it is registered once, in
//! `PROJECTIONS`. Two kinds:
//!
//! - **inline**: written by the writer in the same transaction as the events, because the
//!   writer's decisions (restored from them at start-up) and its strictest reads need them at the
//!   log's head: assets, accounts and their changes, balances, holds, reversals. (Idempotency
//!   records are written in the same transaction too, but they record commands, refusals
//!   included, not events: they are the writer's own (`writer::idempotency`), not a projection of the
//!   log.)
//! - **asynchronous**: built after the commit by the projector (`projector`), which follows the
//!   log and keeps one checkpoint per projection, in the same transaction as the rows it writes:
//!   the postings history, the transactions index and the roll-ups by code prefix. They cost the
//!   writer nothing.
//!
//! Every projection is rebuilt from the log by `replay`, and the rebuild must equal the live one
//! row for row.

pub mod accounts;
pub mod assets;
pub mod balances;
pub mod booking_methods;
pub mod checkpoints;
pub mod dues;
pub mod effective;
pub mod holds;
pub mod periods;
pub mod postings;
pub mod projector;
pub mod reversals;
pub mod rollups;
pub mod transactions;

use chrono::{DateTime, Utc};
use domain::{Event, LedgerState, Leg};
use sqlx::PgConnection;

use crate::columns::{insert_ctes, PgQuery, Table, TableRows, SESSION_BOOK};
use crate::Result;

/// An event as the projections see it: where it is in the log, when it was recorded, and the
/// legs it posted on accounts (each with the running balance after it).
pub struct Applied<'a> {
    pub position: i64,
    pub event: &'a Event,
    pub recorded_at: DateTime<Utc>,
    pub legs: &'a [Leg],
}

/// How a projection turns an event into rows: `out` holds a row buffer per table it declares, in
/// declaration order.
#[derive(Clone, Copy)]
pub enum Mode {
    /// Written in the writer's commit. Reads the ledger state after the event (which resolves
    /// account codes and holds the figures after it).
    Inline(fn(&Applied<'_>, &LedgerState, &mut [TableRows])),
    /// Written after the commit by the projector, from the event and its legs alone.
    Async(fn(&Applied<'_>, &mut [TableRows])),
}

pub struct Projection {
    pub name: &'static str,
    pub tables: &'static [&'static Table],
    pub mode: Mode,
    /// Whether its rows need the legs of events (the projector then derives them).
    pub legs: bool,
}

impl Projection {
    pub fn is_async(&self) -> bool {
        matches!(self.mode, Mode::Async(_))
    }
}

/// Every projection, in the order their rows are written (and rebuilt, and compared).
pub static PROJECTIONS: [&Projection; 10] = [
    &assets::PROJECTION,
    &accounts::PROJECTION,
    &balances::PROJECTION,
    &holds::PROJECTION,
    &reversals::PROJECTION,
    &periods::PROJECTION,
    &booking_methods::PROJECTION,
    &postings::PROJECTION,
    &transactions::PROJECTION,
    &rollups::PROJECTION,
];

/// The projection called `name`.
pub fn by_name(name: &str) -> Option<&'static Projection> {
    PROJECTIONS.iter().copied().find(|p| p.name == name)
}

/// The asynchronous projections, which the projector builds.
pub fn asynchronous() -> impl Iterator<Item = &'static Projection> {
    PROJECTIONS.iter().copied().filter(|p| p.is_async())
}

/// Row buffers for a set of projections.
pub struct ProjectionRows {
    sets: Vec<(&'static Projection, Vec<TableRows>)>,
}

impl ProjectionRows {
    pub fn new(projections: impl IntoIterator<Item = &'static Projection>) -> Self {
        Self {
            sets: projections
                .into_iter()
                .map(|p| (p, p.tables.iter().map(|t| TableRows::new(t)).collect()))
                .collect(),
        }
    }

    /// The inline projections: what the writer writes with each batch.
    pub fn inline() -> Self {
        Self::new(PROJECTIONS.iter().copied().filter(|p| !p.is_async()))
    }

    /// The same projections, with no rows.
    pub fn emptied(&self) -> Self {
        Self::new(self.sets.iter().map(|(p, _)| *p))
    }

    pub fn tables(&self) -> Vec<&'static Table> {
        self.sets
            .iter()
            .flat_map(|(p, _)| p.tables.iter().copied())
            .collect()
    }

    pub fn rows(&self) -> impl Iterator<Item = &TableRows> {
        self.sets.iter().flat_map(|(_, rows)| rows)
    }

    pub fn is_empty(&self) -> bool {
        self.rows().all(TableRows::is_empty)
    }

    /// Adds the rows of an event. Inline projections need the state after the event; without
    /// it (the projector), only asynchronous ones are in the set.
    pub fn push(&mut self, applied: &Applied<'_>, state: Option<&LedgerState>) {
        for (projection, rows) in &mut self.sets {
            match (projection.mode, state) {
                (Mode::Inline(project), Some(state)) => project(applied, state, rows),
                (Mode::Async(project), _) => project(applied, rows),
                (Mode::Inline(_), None) => {
                    debug_assert!(false, "{} projected without a state", projection.name)
                }
            }
        }
    }

    /// Inserts the rows into the tables of `schema`: the replay's schema for a replay, the
    /// session's book (`SESSION_BOOK`) for an import. One statement.
    pub async fn insert_into(&self, conn: &mut PgConnection, schema: &str) -> Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        let statement = self.statement(schema, |_| "SELECT 1".to_owned());
        self.bound(&statement).execute(conn).await?;
        Ok(())
    }

    /// Inserts the rows into the session's book and moves the checkpoint of every projection of
    /// the set from `from` to `to`, in one statement: the projector's page, one round trip in its
    /// transaction. An error when a checkpoint was no longer at `from` (`check_advanced`): the
    /// caller's transaction must then not commit.
    pub async fn insert_and_advance(
        &self,
        conn: &mut PgConnection,
        from: i64,
        to: i64,
    ) -> Result<()> {
        let statement = self.statement(SESSION_BOOK, checkpoints::advance_sql);
        let names: Vec<&str> = self.sets.iter().map(|(p, _)| p.name).collect();
        let moved = self
            .bound(&statement)
            .bind(&names)
            .bind(from)
            .bind(to)
            .execute(conn)
            .await?
            .rows_affected();
        checkpoints::check_advanced(&names, from, moved)
    }

    /// The inserts of every table of the set into `schema`, as data-modifying `WITH` queries,
    /// then `main`, given the number of its first parameter. The statement is the same for every
    /// batch of the set (empty arrays insert nothing), so it is prepared once per session.
    fn statement(&self, schema: &str, main: impl FnOnce(usize) -> String) -> String {
        let (ctes, next) = insert_ctes(&self.tables(), schema);
        format!("WITH {ctes}\n{}", main(next))
    }

    /// `statement` with the rows bound, table by table, in the order of its parameters.
    fn bound<'q>(&'q self, statement: &'q str) -> PgQuery<'q> {
        self.rows()
            .fold(sqlx::query(statement), |query, rows| rows.bind(query))
    }
}
