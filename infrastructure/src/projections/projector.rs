//! The projector: one task per asynchronous projection, following the log from the projection's
//! checkpoint. It reads a page of events, derives their rows, and writes the rows and the new
//! checkpoint in one transaction, so a crash (of the process or of PostgreSQL) at any moment
//! leaves the projection exactly at a checkpoint: it resumes there, missing nothing and applying
//! nothing twice. A session-level advisory lock per projection keeps one projector at work on it
//! across all the ledger's processes; the others stand by.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use domain::Event;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use tokio::sync::watch;
use tracing::{info, warn};

use super::postings::Legs;
use super::{checkpoints, Applied, Projection, ProjectionRows};
use crate::event_store::{self, StoredEvent};
use crate::metrics::{Histogram, LATENCY_BOUNDS_US, LATENCY_LABELS_S};
use crate::{Error, Result};

/// Advisory locks of projectors are `(PROJECTOR_LOCK_CLASS, hashtext(name))`, a key space apart
/// from the writer's one-number key.
const PROJECTOR_LOCK_CLASS: i32 = 0x1ed9;

#[derive(Debug, Clone)]
pub struct ProjectorConfig {
    /// Events read, projected and committed together at most.
    pub page_events_max: i64,
    /// How long to wait between attempts to connect or to take a projection's lock.
    pub retry_interval: Duration,
    /// How often to look for new events when no commit of this process wakes the projector
    /// (the writer is another process).
    pub idle_poll_interval: Duration,
}

impl Default for ProjectorConfig {
    fn default() -> Self {
        Self {
            page_events_max: 10_000,
            retry_interval: Duration::from_millis(500),
            idle_poll_interval: Duration::from_millis(50),
        }
    }
}

/// One asynchronous projection's instruments.
pub struct ProjectionMetrics {
    pub name: &'static str,
    /// The position its tables reflect, as last committed by this process (-1: not yet known).
    pub checkpoint: AtomicI64,
    /// The last position of the log this process has seen.
    pub head_seen: AtomicI64,
    pub events_projected: AtomicU64,
    /// Per page: how long its oldest event waited between its commit and the projection's.
    pub lag_us: Histogram,
}

impl ProjectionMetrics {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            checkpoint: AtomicI64::new(-1),
            head_seen: AtomicI64::new(0),
            events_projected: AtomicU64::new(0),
            lag_us: Histogram::new(LATENCY_BOUNDS_US, LATENCY_LABELS_S),
        }
    }
}

/// A series of `/metrics`: its name, type, help and value per projection.
type Series<'a> = (
    &'a str,
    &'a str,
    &'a str,
    &'a dyn Fn(&ProjectionMetrics) -> u64,
);

/// The projectors of one process: their instruments, and how to stop them.
#[derive(Clone)]
pub struct Projectors {
    metrics: Vec<Arc<ProjectionMetrics>>,
    stop: Arc<watch::Sender<bool>>,
    tasks: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Projectors {
    /// Starts a projector for every asynchronous projection. `commits` (the writer's committed
    /// position, when the writer runs in this process) wakes them as soon as there is more.
    pub fn spawn(
        connect: PgConnectOptions,
        commits: Option<watch::Receiver<i64>>,
        config: ProjectorConfig,
    ) -> Self {
        let mut metrics = Vec::new();
        let mut tasks = Vec::new();
        let (stop, stopped) = watch::channel(false);
        for projection in super::asynchronous() {
            let m = Arc::new(ProjectionMetrics::new(projection.name));
            metrics.push(m.clone());
            let task = Projector {
                connect: connect.clone(),
                commits: commits.clone(),
                follower: Follower::new(projection, config.page_events_max),
                config: config.clone(),
                metrics: m,
                stopped: stopped.clone(),
            };
            tasks.push(tokio::spawn(task.run()));
        }
        Self {
            metrics,
            stop: Arc::new(stop),
            tasks: Arc::new(std::sync::Mutex::new(tasks)),
        }
    }

    /// Stops every projector after the page it is applying, releasing its lock.
    pub async fn stop(&self) {
        self.stop.send_replace(true);
        let tasks = match self.tasks.lock() {
            Ok(mut tasks) => std::mem::take(&mut *tasks),
            Err(_) => return,
        };
        for task in tasks {
            let _ = task.await;
        }
    }

    pub fn metrics(&self) -> &[Arc<ProjectionMetrics>] {
        &self.metrics
    }

    /// Renders the projectors' series in Prometheus's text format.
    pub fn render(&self, out: &mut String) {
        let lag = |m: &ProjectionMetrics| {
            let checkpoint = m.checkpoint.load(Ordering::Relaxed).max(0);
            (m.head_seen.load(Ordering::Relaxed) - checkpoint).max(0) as u64
        };
        let series: [Series; 3] = [
            (
                "ledger_projection_position",
                "gauge",
                "The position an asynchronous projection reflects.",
                &|m| m.checkpoint.load(Ordering::Relaxed).max(0) as u64,
            ),
            (
                "ledger_projection_lag_events",
                "gauge",
                "Events of the log an asynchronous projection does not reflect yet.",
                &lag,
            ),
            (
                "ledger_projection_events_total",
                "counter",
                "Events an asynchronous projection applied.",
                &|m| m.events_projected.load(Ordering::Relaxed),
            ),
        ];
        for (name, kind, help, value) in series {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for m in &self.metrics {
                let _ = writeln!(out, "{name}{{projection=\"{}\"}} {}", m.name, value(m));
            }
        }
        let name = "ledger_projection_lag_seconds";
        let _ = writeln!(out, "# HELP {name} Per page applied: how long its oldest event waited after its commit.\n# TYPE {name} histogram");
        for m in &self.metrics {
            let labels = format!("projection=\"{}\"", m.name);
            m.lag_us.render(out, name, &labels, 1_000_000);
        }
    }
}

/// Takes the projector's lock of `name` on `conn`, if no other session holds it.
pub(crate) async fn try_lock(conn: &mut PgConnection, name: &str) -> Result<bool> {
    Ok(
        sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext($2))")
            .bind(PROJECTOR_LOCK_CLASS)
            .bind(name)
            .fetch_one(conn)
            .await?,
    )
}

/// Applies the rest of the log to `projection`, from its checkpoint `from`, on a session that
/// holds its projector's lock (a replay about to compare it).
pub(crate) async fn catch_up(
    conn: &mut PgConnection,
    projection: &'static Projection,
    from: i64,
) -> Result<()> {
    let mut follower = Follower::new(projection, ProjectorConfig::default().page_events_max);
    let mut checkpoint = from;
    while let Some((last, _)) = follower.apply_page(conn, checkpoint).await? {
        checkpoint = last;
    }
    Ok(())
}

/// Applies pages of the log to one projection.
struct Follower {
    projection: &'static Projection,
    page_events_max: i64,
    legs: Legs,
}

impl Follower {
    fn new(projection: &'static Projection, page_events_max: i64) -> Self {
        Self {
            projection,
            page_events_max,
            legs: Legs::default(),
        }
    }

    /// Applies the events after `checkpoint` (a page at most) in one transaction: the new
    /// checkpoint and the events applied, or `None` when there were none. After an error the
    /// caches may hold what was not committed: `forget` them.
    async fn apply_page(
        &mut self,
        conn: &mut PgConnection,
        checkpoint: i64,
    ) -> Result<Option<(i64, Vec<StoredEvent>)>> {
        let stored = event_store::page(&mut *conn, checkpoint, self.page_events_max).await?;
        let Some(last) = stored.last().map(|e| e.position) else {
            return Ok(None);
        };
        // The log is gap-free: a page that does not continue the checkpoint is not this log.
        if stored[0].position != checkpoint + 1 || last != checkpoint + stored.len() as i64 {
            return Err(Error::Corrupt(format!(
                "the events after {checkpoint} are not consecutive"
            )));
        }
        let events = stored
            .iter()
            .map(StoredEvent::decode)
            .collect::<Result<Vec<_>>>()?;
        let rows = self.rows_of(conn, &stored, &events).await?;
        let mut tx = conn.begin().await?;
        rows.insert_into(&mut tx, "public").await?;
        checkpoints::advance(&mut tx, self.projection.name, checkpoint, last).await?;
        tx.commit().await?;
        Ok(Some((last, stored)))
    }

    async fn rows_of(
        &mut self,
        conn: &mut PgConnection,
        stored: &[StoredEvent],
        events: &[Event],
    ) -> Result<ProjectionRows> {
        if self.projection.legs {
            self.legs.prepare(conn, events).await?;
        }
        let mut rows = ProjectionRows::new([self.projection]);
        for (stored, event) in stored.iter().zip(events) {
            let legs = if self.projection.legs {
                self.legs.of(event, stored.position)?
            } else {
                Vec::new()
            };
            let applied = Applied {
                position: stored.position,
                event,
                recorded_at: stored.recorded_at,
                legs: &legs,
            };
            rows.push(&applied, None);
        }
        Ok(rows)
    }
}

/// The task that keeps one projection following the log.
struct Projector {
    connect: PgConnectOptions,
    commits: Option<watch::Receiver<i64>>,
    config: ProjectorConfig,
    metrics: Arc<ProjectionMetrics>,
    follower: Follower,
    /// Becomes true when the process stops.
    stopped: watch::Receiver<bool>,
}

impl Projector {
    async fn run(mut self) {
        let name = self.follower.projection.name;
        while !*self.stopped.borrow() {
            if let Err(e) = self.follow().await {
                warn!(projection = name, error = %e, "projector stopped; resuming from its checkpoint");
            }
            // What was derived but not committed may be in the caches: start them afresh.
            self.follower.legs.forget();
            let mut stopped = self.stopped.clone();
            tokio::select! {
                _ = tokio::time::sleep(self.config.retry_interval) => {}
                _ = stopped.wait_for(|s| *s) => {}
            }
        }
    }

    /// Connects, takes the projection's lock, and applies pages of the log until an error. `Ok`
    /// when another process holds the lock.
    async fn follow(&mut self) -> Result<()> {
        let name = self.follower.projection.name;
        let options = self
            .connect
            .clone()
            .application_name(&format!("ledger-projector:{name}"));
        let mut conn = PgConnection::connect_with(&options).await?;
        if !try_lock(&mut conn, name).await? {
            let _ = conn.close().await;
            return Ok(());
        }
        let mut checkpoint = checkpoints::open(&mut conn, name).await?;
        info!(projection = name, checkpoint, "projector following the log");
        self.metrics.checkpoint.store(checkpoint, Ordering::Relaxed);
        while !*self.stopped.borrow() {
            match self.follower.apply_page(&mut conn, checkpoint).await? {
                Some((last, stored)) => {
                    self.record_page(&stored, last);
                    checkpoint = last;
                }
                None => self.wait_for_events().await,
            }
        }
        // Released before closing: the server ends a closed session's backend only a moment
        // later, and until then the lock would still look held (to a replay run next).
        sqlx::query("SELECT pg_advisory_unlock($1, hashtext($2))")
            .bind(PROJECTOR_LOCK_CLASS)
            .bind(name)
            .execute(&mut conn)
            .await?;
        let _ = conn.close().await;
        Ok(())
    }

    /// Waits until the writer of this process commits, for the poll interval, or until the
    /// process stops.
    async fn wait_for_events(&mut self) {
        let poll = tokio::time::sleep(self.config.idle_poll_interval);
        let mut stopped = self.stopped.clone();
        let stop = stopped.wait_for(|s| *s);
        match &mut self.commits {
            Some(commits) => {
                tokio::select! {
                    changed = commits.changed() => {
                        if changed.is_err() {
                            self.commits = None;
                        }
                    }
                    _ = poll => {}
                    _ = stop => {}
                }
            }
            None => {
                tokio::select! {
                    _ = poll => {}
                    _ = stop => {}
                }
            }
        }
    }

    fn record_page(&self, stored: &[StoredEvent], last: i64) {
        let m = &self.metrics;
        m.checkpoint.store(last, Ordering::Relaxed);
        let head = self
            .commits
            .as_ref()
            .map_or(last, |c| *c.borrow())
            .max(last);
        m.head_seen.fetch_max(head, Ordering::Relaxed);
        m.events_projected
            .fetch_add(stored.len() as u64, Ordering::Relaxed);
        if let Some(oldest) = stored.first() {
            let waited = (Utc::now() - oldest.recorded_at)
                .num_microseconds()
                .unwrap_or(i64::MAX);
            m.lag_us.observe(waited.max(0) as u64);
        }
    }
}
