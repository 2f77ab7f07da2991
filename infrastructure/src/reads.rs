//! The read store: the one handle every read of the read models goes through. Each read runs in
//! one read-only snapshot and reports the position of the log it reflects, so a client can tell
//! how fresh it is (and ask for at least a position it wrote). The reads themselves live beside
//! the projection that declares their tables (`projections::accounts`, `postings`, `rollups`, ...),
//! as `impl ReadStore` blocks; this module holds the snapshot, the log's own reads and the state
//! of the read source.
//!
//! The snapshot may come from the primary or from a streaming replica (`--read-database-url`),
//! possibly one of several behind a load balancer, each at its own point of replay. So
//! `min_position` is enforced where the snapshot is taken: a snapshot older than the floor is
//! dropped and taken again until the floor is reached or the wait bound ends, never served. A
//! read that waits for the asynchronous projections tells their projector (`Hurry`), which would
//! otherwise take its time under load to write bigger pages.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::{PgPool, Postgres, Transaction};
use tokio::sync::Notify;

use crate::event_store::StoredEvent;
use crate::{Error, Result};

/// How often a read waiting for `min_position` looks again at its read source.
const POSITION_POLL_INTERVAL: Duration = Duration::from_millis(5);

/// A value and the log position it reflects.
#[derive(Debug, Clone)]
pub struct AtPosition<T> {
    pub value: T,
    pub position: i64,
}

/// A read source as `/readyz` reports it.
#[derive(Debug, Clone)]
pub struct ReadSourceStatus {
    /// True on a streaming replica (in recovery), false on the primary.
    pub replica: bool,
    /// The position its projections reflect.
    pub position: i64,
    /// On a replica: how long ago the last transaction it replayed committed on the primary
    /// (grows while the primary is idle too, so read it together with the positions).
    pub replay_lag_ms: Option<i64>,
}

/// What a read signals when the asynchronous projections it needs are behind: its book's
/// projector, which paces its pages under load, then reads one at once
/// (`Projectors::hurry`), so that reads need not choose between small pages and slow reads.
/// Clones share it; a signal given while the projector is not waiting is kept for its next wait
/// (one at most).
#[derive(Debug, Clone, Default)]
pub struct Hurry(Arc<Notify>);

impl Hurry {
    pub fn signal(&self) {
        self.0.notify_one();
    }

    /// Until it is signalled.
    pub(crate) async fn signalled(&self) {
        self.0.notified().await;
    }
}

/// How long a read waits by default for the position it must reflect.
const POSITION_WAIT_DEFAULT: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct ReadStore {
    pool: PgPool,
    /// The position every snapshot must reflect at least, if a read asked for one.
    floor: Option<i64>,
    /// How long a snapshot may be retried to reach its floor; then `Error::PositionNotReached`.
    wait: Duration,
    /// Signalled when the asynchronous projections a read needs are behind.
    hurry: Option<Hurry>,
}

impl ReadStore {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            floor: None,
            wait: POSITION_WAIT_DEFAULT,
            hurry: None,
        }
    }

    /// The same store, whose reads waiting for the asynchronous projections signal `hurry` (the
    /// projector of the book, `Projectors::hurry`).
    pub fn hurrying(self, hurry: Hurry) -> Self {
        Self {
            hurry: Some(hurry),
            ..self
        }
    }

    /// The same store, whose snapshots reflect at least `min_position`: a read waits up to `wait`
    /// for its source (and the projections it reads) to reach it. No floor for `None` or a
    /// position below 1.
    pub fn at_least(&self, min_position: Option<i64>, wait: Duration) -> Self {
        Self {
            floor: min_position.filter(|p| *p > 0),
            wait,
            ..self.clone()
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The position the projections reflect now.
    pub async fn head(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT position FROM projection_head")
            .fetch_one(&self.pool)
            .await?)
    }

    /// A read-only snapshot of the inline projections and the position it reflects, at or past
    /// the floor.
    pub(crate) async fn snapshot(&self) -> Result<(Transaction<'static, Postgres>, i64)> {
        self.snapshot_of(&[]).await
    }

    /// A read-only snapshot in which the asynchronous projections `needs` reflect at least the
    /// floor and at least the inline head of the first snapshot taken: a read that follows a
    /// write sees it without naming its position. The position returned is the one they all
    /// reflect (the inline head when `needs` is empty); a read shows nothing newer from the
    /// inline projections either.
    pub(crate) async fn snapshot_of(
        &self,
        needs: &[&str],
    ) -> Result<(Transaction<'static, Postgres>, i64)> {
        let started = Instant::now();
        let mut floor = self.floor;
        let (mut first, mut hurried) = (true, false);
        loop {
            let mut tx = self.pool.begin().await?;
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .execute(&mut *tx)
                .await?;
            let (head, reflected): (i64, Option<i64>) = sqlx::query_as(
                "SELECT (SELECT position FROM projection_head),
                        (SELECT min(COALESCE(c.position, 0)) FROM UNNEST($1::text[]) AS n(name)
                         LEFT JOIN projection_checkpoints c ON c.name = n.name)",
            )
            .bind(needs)
            .fetch_one(&mut *tx)
            .await?;
            let reflected = reflected.unwrap_or(head);
            if std::mem::take(&mut first) && !needs.is_empty() {
                floor = Some(floor.unwrap_or(0).max(head));
            }
            let Some(wanted) = floor.filter(|f| reflected < *f) else {
                return Ok((tx, reflected));
            };
            drop(tx);
            if !needs.is_empty() && !std::mem::replace(&mut hurried, true) {
                // Once: the projector's next page starts after this signal, so it reads every
                // event committed before this read began.
                if let Some(hurry) = &self.hurry {
                    hurry.signal();
                }
            }
            let waited = started.elapsed();
            if waited >= self.wait {
                return Err(Error::PositionNotReached {
                    wanted,
                    current: reflected,
                    waited_ms: self.wait.as_millis() as u64,
                });
            }
            tokio::time::sleep(POSITION_POLL_INTERVAL.min(self.wait - waited)).await;
        }
    }

    /// Events after `after`, in position order.
    pub async fn events(&self, after: i64, limit: i64) -> Result<AtPosition<Vec<StoredEvent>>> {
        let (mut tx, position) = self.snapshot().await?;
        let rows = sqlx::query(
            "SELECT position, event_id, event_type, schema_version, payload, metadata, recorded_at, hash
             FROM events WHERE position > $1 ORDER BY position LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let value = rows
            .iter()
            .map(StoredEvent::from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(AtPosition { value, position })
    }

    /// The last position recorded at or before `at` (0 when none was).
    pub async fn position_at(&self, at: DateTime<Utc>) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COALESCE(max(position), 0) FROM events WHERE recorded_at <= $1",
        )
        .bind(at)
        .fetch_one(&self.pool)
        .await?)
    }

    /// The last position recorded strictly before `at` (0 when none was).
    pub async fn position_before(&self, at: DateTime<Utc>) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COALESCE(max(position), 0) FROM events WHERE recorded_at < $1",
        )
        .bind(at)
        .fetch_one(&self.pool)
        .await?)
    }

    /// What the read source is and how far it has replayed: for `/readyz`.
    pub async fn source_status(&self) -> Result<ReadSourceStatus> {
        let (replica, position, replay_lag_ms): (bool, i64, Option<i64>) = sqlx::query_as(
            "SELECT pg_is_in_recovery(), (SELECT position FROM projection_head),
                    CASE WHEN pg_is_in_recovery() THEN
                      (extract(epoch FROM now() - pg_last_xact_replay_timestamp()) * 1000)::bigint
                    END",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(ReadSourceStatus {
            replica,
            position,
            replay_lag_ms,
        })
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// A figure at its asset's scale. A zero comes back from PostgreSQL without decimal places
/// (`0`, not `0.00`); every figure is shown with exactly the asset's.
pub(crate) fn at_scale(mut value: Decimal, scale: i16) -> Decimal {
    value.rescale(u32::try_from(scale).unwrap_or(0));
    value
}
