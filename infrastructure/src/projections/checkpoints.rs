//! Where each asynchronous projection is in the log. A checkpoint moves in the transaction that
//! writes the rows up to it, and only from the position its writer read: two projectors racing on
//! one projection cannot both apply the same events. Read: where every projection is, for
//! `/readyz`.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::reads::ReadStore;
use crate::{Error, Result};

/// The checkpoint of `name`, created at 0 when the projection is new (added in a later release):
/// it is then built from the start of the log.
pub async fn open(conn: &mut PgConnection, name: &str) -> Result<i64> {
    sqlx::query(
        "INSERT INTO projection_checkpoints (name, position) VALUES ($1, 0) ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .execute(&mut *conn)
    .await?;
    Ok(
        sqlx::query_scalar("SELECT position FROM projection_checkpoints WHERE name = $1")
            .bind(name)
            .fetch_one(conn)
            .await?,
    )
}

/// Moves the checkpoint of `name` from `from` to `to`, in the caller's transaction (a relay's, which
/// writes no rows with it).
pub async fn advance(conn: &mut PgConnection, name: &str, from: i64, to: i64) -> Result<()> {
    let moved = sqlx::query(&advance_sql(1))
        .bind([name])
        .bind(from)
        .bind(to)
        .execute(conn)
        .await?
        .rows_affected();
    check_advanced(&[name], from, moved)
}

/// The statement that moves the checkpoints named in a text array from one position to another,
/// with parameters numbered from `first`: the names, the position they must still be at, the new
/// one. Alone (`advance`), or after the inserts of the rows up to the new position, in one
/// statement (`ProjectionRows::insert_and_advance`). Its row count is the checkpoints it moved.
pub(crate) fn advance_sql(first: usize) -> String {
    let (names, from, to) = (first, first + 1, first + 2);
    format!(
        "UPDATE projection_checkpoints SET position = ${to}::int8, updated_at = now()
         WHERE name = ANY(${names}::text[]) AND position = ${from}::int8"
    )
}

/// An error unless the statement of `advance_sql` moved every checkpoint of `names` (`moved`): one
/// no longer at `from` was moved by another projector, and the caller's transaction must not
/// commit.
pub(crate) fn check_advanced(names: &[&str], from: i64, moved: u64) -> Result<()> {
    if moved != names.len() as u64 {
        return Err(Error::Corrupt(format!(
            "the checkpoints of {} are not all at {from} any more: another projector moved them",
            names.join(", ")
        )));
    }
    Ok(())
}

/// Sets the checkpoint of `name` (a rebuild that swapped its tables in, or an import).
pub async fn set(conn: &mut PgConnection, name: &str, position: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO projection_checkpoints (name, position) VALUES ($1, $2)
         ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, updated_at = now()",
    )
    .bind(name)
    .bind(position)
    .execute(conn)
    .await?;
    Ok(())
}

/// One projection's place in the log, as `/readyz` reports it.
#[derive(Debug, Clone)]
pub struct ProjectionStatus {
    pub name: String,
    /// `inline` or `async`.
    pub kind: &'static str,
    /// The position it reflects.
    pub position: i64,
    /// Events in the log it does not reflect yet.
    pub lag_events: i64,
    /// How long ago the oldest event it does not reflect yet was recorded (0 when none).
    pub lag_ms: i64,
}

/// Every projection's place: the inline ones at the inline head, the asynchronous ones at their
/// checkpoints (a projection without one yet at 0), all in one snapshot of `executor`.
pub async fn statuses(executor: impl sqlx::PgExecutor<'_>) -> Result<Vec<ProjectionStatus>> {
    let names: Vec<&str> = super::asynchronous().map(|p| p.name).collect();
    let rows: Vec<(String, i64, i64, Option<DateTime<Utc>>)> = sqlx::query_as(
        "SELECT n.name, COALESCE(c.position, 0), h.position,
                (SELECT recorded_at FROM events WHERE position = COALESCE(c.position, 0) + 1)
         FROM UNNEST($1::text[]) AS n(name)
         LEFT JOIN projection_checkpoints c ON c.name = n.name, projection_head h",
    )
    .bind(&names)
    .fetch_all(executor)
    .await?;
    let head = rows.first().map_or(0, |r| r.2);
    let mut statuses: Vec<ProjectionStatus> = super::PROJECTIONS
        .iter()
        .filter(|p| !p.is_async())
        .map(|p| ProjectionStatus {
            name: p.name.to_owned(),
            kind: "inline",
            position: head,
            lag_events: 0,
            lag_ms: 0,
        })
        .collect();
    let now = Utc::now();
    statuses.extend(
        rows.into_iter()
            .map(|(name, position, head, oldest)| ProjectionStatus {
                name,
                kind: "async",
                position,
                lag_events: (head - position).max(0),
                lag_ms: oldest.map_or(0, |at| (now - at).num_milliseconds().max(0)),
            }),
    );
    Ok(statuses)
}

impl ReadStore {
    /// Where every projection is in the log, as this read source has it.
    pub async fn projections(&self) -> Result<Vec<ProjectionStatus>> {
        statuses(self.pool()).await
    }
}
