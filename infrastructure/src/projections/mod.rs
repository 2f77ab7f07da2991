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
//!   writer nothing. Most turn each event into rows by itself; one whose rows follow from its
//!   earlier ones (the lots: a sale closes what earlier buys opened) keeps a `Memory` of them,
//!   loaded from its tables as each page needs, and may delete rows as well as write them.
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
pub mod lots;
pub mod periods;
pub mod postings;
pub mod prices;
pub mod projector;
pub mod reversals;
pub mod rollups;
pub mod transactions;

use chrono::{DateTime, Utc};
use domain::{Event, LedgerState, Leg};
use futures_util::future::BoxFuture;
use sqlx::PgConnection;

use crate::columns::{delete_ctes, insert_ctes, PgQuery, Table, TableRows, SESSION_BOOK};
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
    /// Written after the commit by the projector, from the event and what the projection
    /// remembers of its own rows (`Memory`). The function makes a memory: `whole` for a rebuild
    /// from the start of the log, which holds all it needs from the events it is shown;
    /// otherwise it loads what each page needs from the projection's tables.
    Remembering(fn(bool) -> Box<dyn Memory>),
}

/// What a remembering projection keeps of its rows between events, and how it turns events into
/// rows and deletions. An event is `project`ed into the memory; `flush` then gives the rows to
/// write and to delete for everything projected since the last flush, which the caller writes
/// at once (deletions first): the memory then takes it that its tables hold what it flushed. A
/// memory that saw a write fail is dropped (`forget`), never flushed again.
pub trait Memory: Send {
    /// Loads from the projection's tables in `schema` what projecting `page` will need and the
    /// memory does not hold. A whole memory needs nothing.
    fn prepare<'a>(
        &'a mut self,
        conn: &'a mut PgConnection,
        schema: &'a str,
        page: &'a [Applied<'a>],
    ) -> BoxFuture<'a, Result<()>>;

    /// Projects one event, after every earlier one.
    fn project(&mut self, applied: &Applied<'_>) -> Result<()>;

    /// The rows of what changed since the last flush into `out` (a buffer per table, in
    /// declaration order), and the keys of the rows to delete first into `deletes` (a buffer per
    /// key table of `Projection::deletes`).
    fn flush(&mut self, out: &mut [TableRows], deletes: &mut [TableRows]);

    /// Drops what it holds: it is loaded again from the tables.
    fn forget(&mut self);
}

pub struct Projection {
    pub name: &'static str,
    pub tables: &'static [&'static Table],
    /// The keys by which it deletes rows of its tables, each a `Table` named after the table it
    /// deletes from, whose columns are the key columns (`Table::delete_sql`). Only a remembering
    /// projection deletes.
    pub deletes: &'static [&'static Table],
    pub mode: Mode,
    /// Whether its rows need the legs of events (the projector then derives them).
    pub legs: bool,
}

impl Projection {
    pub fn is_async(&self) -> bool {
        matches!(self.mode, Mode::Async(_) | Mode::Remembering(_))
    }

    /// Its memory, when it remembers: a whole one for a rebuild from the start of the log.
    pub fn memory(&self, whole: bool) -> Option<Box<dyn Memory>> {
        match self.mode {
            Mode::Remembering(make) => Some(make(whole)),
            Mode::Inline(_) | Mode::Async(_) => None,
        }
    }
}

/// Every projection, in the order their rows are written (and rebuilt, and compared).
pub static PROJECTIONS: [&Projection; 12] = [
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
    &lots::PROJECTION,
    &prices::PROJECTION,
];

/// The projection called `name`.
pub fn by_name(name: &str) -> Option<&'static Projection> {
    PROJECTIONS.iter().copied().find(|p| p.name == name)
}

/// The asynchronous projections, which the projector builds.
pub fn asynchronous() -> impl Iterator<Item = &'static Projection> {
    PROJECTIONS.iter().copied().filter(|p| p.is_async())
}

/// Row buffers for a set of projections: the rows to write, and the keys of rows to delete.
pub struct ProjectionRows {
    sets: Vec<Rows>,
}

struct Rows {
    projection: &'static Projection,
    rows: Vec<TableRows>,
    deletes: Vec<TableRows>,
}

impl ProjectionRows {
    pub fn new(projections: impl IntoIterator<Item = &'static Projection>) -> Self {
        let buffers =
            |tables: &[&'static Table]| tables.iter().map(|t| TableRows::new(t)).collect();
        Self {
            sets: projections
                .into_iter()
                .map(|projection| Rows {
                    projection,
                    rows: buffers(projection.tables),
                    deletes: buffers(projection.deletes),
                })
                .collect(),
        }
    }

    /// The inline projections: what the writer writes with each batch.
    pub fn inline() -> Self {
        Self::new(PROJECTIONS.iter().copied().filter(|p| !p.is_async()))
    }

    /// The same projections, with no rows.
    pub fn emptied(&self) -> Self {
        Self::new(self.sets.iter().map(|set| set.projection))
    }

    pub fn tables(&self) -> Vec<&'static Table> {
        self.sets
            .iter()
            .flat_map(|set| set.projection.tables.iter().copied())
            .collect()
    }

    pub fn rows(&self) -> impl Iterator<Item = &TableRows> {
        self.sets.iter().flat_map(|set| &set.rows)
    }

    fn deletes(&self) -> impl Iterator<Item = &TableRows> {
        self.sets.iter().flat_map(|set| &set.deletes)
    }

    pub fn is_empty(&self) -> bool {
        self.rows().chain(self.deletes()).all(TableRows::is_empty)
    }

    /// The buffers of the projection called `name`, if it is in the set: its rows' and its
    /// deletions', for its memory to flush into.
    pub fn buffers_of(&mut self, name: &str) -> Option<(&mut [TableRows], &mut [TableRows])> {
        let set = self
            .sets
            .iter_mut()
            .find(|set| set.projection.name == name)?;
        Some((&mut set.rows, &mut set.deletes))
    }

    /// Adds the rows of an event. Inline projections need the state after the event; without
    /// it (the projector), only asynchronous ones are in the set.
    pub fn push(&mut self, applied: &Applied<'_>, state: Option<&LedgerState>) {
        for set in &mut self.sets {
            match (set.projection.mode, state) {
                (Mode::Inline(project), Some(state)) => project(applied, state, &mut set.rows),
                (Mode::Async(project), _) => project(applied, &mut set.rows),
                // Its memory projects it, and flushes into these buffers (`buffers_of`).
                (Mode::Remembering(_), _) => {}
                (Mode::Inline(_), None) => {
                    debug_assert!(false, "{} projected without a state", set.projection.name)
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
        self.delete_from(conn, schema).await?;
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
        self.delete_from(conn, SESSION_BOOK).await?;
        let statement = self.statement(SESSION_BOOK, checkpoints::advance_sql);
        let names: Vec<&str> = self.sets.iter().map(|set| set.projection.name).collect();
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

    /// Deletes the rows whose keys the set holds from the tables of `schema`, in one statement
    /// before the inserts (a row deleted and written again in one statement would be touched
    /// twice by it): none when no key is held, which is most pages.
    async fn delete_from(&self, conn: &mut PgConnection, schema: &str) -> Result<()> {
        if self.deletes().all(TableRows::is_empty) {
            return Ok(());
        }
        let keys: Vec<&'static Table> = self
            .sets
            .iter()
            .flat_map(|set| set.projection.deletes.iter().copied())
            .collect();
        let (ctes, _) = delete_ctes(&keys, schema);
        let statement = format!("WITH {ctes}\nSELECT 1");
        self.deletes()
            .fold(sqlx::query(&statement), |query, keys| keys.bind(query))
            .execute(conn)
            .await?;
        Ok(())
    }

    /// `statement` with the rows bound, table by table, in the order of its parameters.
    fn bound<'q>(&'q self, statement: &'q str) -> PgQuery<'q> {
        self.rows()
            .fold(sqlx::query(statement), |query, rows| rows.bind(query))
    }
}
