//! The projector: one task that follows the log for every asynchronous projection, each from its
//! own checkpoint. Projections at the same checkpoint share each page of events, read and decoded
//! once; one that is behind (added by a later release) catches up on pages of its own until it
//! reaches the others. A page's rows and the new checkpoints are written in one statement, in one
//! transaction, so a crash (of the process or of PostgreSQL) at any moment leaves every projection
//! exactly at a checkpoint: it resumes there, missing nothing and applying nothing twice. A
//! session-level advisory lock keeps one projector at work across all the ledger's processes; the
//! others stand by.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use domain::{Event, Leg};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use tokio::sync::watch;
use tracing::info;

use super::postings::Legs;
use super::{checkpoints, Applied, Memory, Projection, ProjectionRows};
use crate::columns::SESSION_BOOK;
use crate::event_store::{self, StoredEvent};
use crate::follower::{self, Commits, Ended, Lock};
use crate::metrics::{Histogram, LATENCY_BOUNDS_US, LATENCY_LABELS_S};
use crate::reads::Hurry;
use crate::Result;

#[derive(Debug, Clone)]
pub struct ProjectorConfig {
    /// Events read, projected and committed together at most.
    pub page_events_max: i64,
    /// After a page that was not full, the next one is read once this process's writer has
    /// committed this many events past the projections: a page's cost is mostly fixed (its
    /// read, its statement, its commit), so under load fewer, bigger pages cost less per event.
    pub page_events_target: i64,
    /// ... or once this long has passed since that page started, whichever comes first: the
    /// bound on the lag the pacing adds. An event waits at most this much longer for the
    /// asynchronous projections than with pages read back to back (a read that needs them does
    /// not wait for it: it hurries the projector, `Hurry`).
    pub page_interval_max: Duration,
    /// When this process's writer's commits do not show the log's head (the writer is another
    /// process), the least time between the starts of two pages that were not full instead.
    pub page_interval_min: Duration,
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
            page_events_target: 256,
            page_interval_max: Duration::from_millis(50),
            page_interval_min: Duration::from_millis(10),
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
    /// What a read waiting for the projections signals, for a page at once.
    hurry: Hurry,
    stop: Arc<watch::Sender<bool>>,
    tasks: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Projectors {
    /// Starts the projector of every asynchronous projection. `commits` (the writer's committed
    /// position, when the writer runs in this process) wakes it as soon as there is more.
    pub fn spawn(
        connect: PgConnectOptions,
        commits: Option<watch::Receiver<i64>>,
        config: ProjectorConfig,
    ) -> Self {
        let (stop, stopped) = watch::channel(false);
        let followers: Vec<Follower> = super::asynchronous().map(Follower::new).collect();
        let metrics = followers.iter().map(|f| f.metrics.clone()).collect();
        let hurry = Hurry::default();
        let task = Projector {
            connect,
            commits: commits.map_or(Commits::None, Commits::Position),
            hurry: hurry.clone(),
            config,
            followers,
            stopped,
        };
        let tasks = vec![tokio::spawn(task.run())];
        Self {
            metrics,
            hurry,
            stop: Arc::new(stop),
            tasks: Arc::new(std::sync::Mutex::new(tasks)),
        }
    }

    /// Stops the projector after the page it is applying, releasing its lock.
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

    /// The handle a read store of the book signals when a read waits for the projections
    /// (`ReadStore::hurrying`).
    pub fn hurry(&self) -> Hurry {
        self.hurry.clone()
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

/// Takes the projector's lock of the session's ledger on `conn`, if no other session holds it.
pub(crate) async fn try_lock(conn: &mut PgConnection) -> Result<bool> {
    follower::try_lock(conn, Lock::PROJECTOR).await
}

/// Releases it before the session closes (see `follower::unlock`).
pub(crate) async fn unlock(conn: &mut PgConnection) -> Result<()> {
    follower::unlock(conn, Lock::PROJECTOR).await
}

/// Applies the rest of the log to `projections` on a session that holds the projector's lock
/// (a replay about to compare them with their rebuild).
pub(crate) async fn catch_up(
    conn: &mut PgConnection,
    projections: impl IntoIterator<Item = &'static Projection>,
) -> Result<()> {
    let mut followers: Vec<Follower> = projections.into_iter().map(Follower::new).collect();
    for follower in &mut followers {
        follower.checkpoint = checkpoints::open(conn, follower.projection.name).await?;
    }
    let page_events_max = ProjectorConfig::default().page_events_max;
    while apply_pages(conn, &mut followers, page_events_max).await? > 0 {}
    Ok(())
}

/// One asynchronous projection as the projector follows it.
struct Follower {
    projection: &'static Projection,
    /// The position its tables reflect, as committed.
    checkpoint: i64,
    /// The projector's derivation of legs, for a projection that needs them.
    legs: Option<Legs>,
    /// What a remembering projection keeps of its rows, loaded from them as pages need.
    memory: Option<Box<dyn Memory>>,
    metrics: Arc<ProjectionMetrics>,
}

impl Follower {
    fn new(projection: &'static Projection) -> Self {
        Self {
            projection,
            checkpoint: 0,
            legs: projection.legs.then(Legs::default),
            memory: projection.memory(false),
            metrics: Arc::new(ProjectionMetrics::new(projection.name)),
        }
    }

    /// What was derived but not committed may be in the caches: start them afresh.
    fn forget(&mut self) {
        if let Some(legs) = &mut self.legs {
            legs.forget();
        }
        if let Some(memory) = &mut self.memory {
            memory.forget();
        }
    }
}

/// Applies a page to each group of followers at the same checkpoint, the furthest behind first;
/// the events applied in all (0 when every follower is at the head).
async fn apply_pages(
    conn: &mut PgConnection,
    followers: &mut [Follower],
    page_events_max: i64,
) -> Result<usize> {
    let mut checkpoints: Vec<i64> = followers.iter().map(|f| f.checkpoint).collect();
    checkpoints.sort_unstable();
    checkpoints.dedup();
    let mut applied = 0;
    for checkpoint in checkpoints {
        let group: Vec<usize> = (0..followers.len())
            .filter(|i| followers[*i].checkpoint == checkpoint)
            .collect();
        if group.is_empty() {
            // It caught up with the next group during this round.
            continue;
        }
        applied += apply_page(conn, followers, &group, checkpoint, page_events_max).await?;
    }
    Ok(applied)
}

/// Applies the events after `checkpoint` (a page at most) to the followers of `group`, all at
/// that checkpoint, in one transaction; the number of events applied.
async fn apply_page(
    conn: &mut PgConnection,
    followers: &mut [Follower],
    group: &[usize],
    checkpoint: i64,
    page_events_max: i64,
) -> Result<usize> {
    let stored = event_store::page(&mut *conn, checkpoint, page_events_max).await?;
    let Some(last) = stored.last().map(|e| e.position) else {
        return Ok(0);
    };
    follower::check_consecutive(checkpoint, &stored)?;
    let events = stored
        .iter()
        .map(StoredEvent::decode)
        .collect::<Result<Vec<_>>>()?;
    let legs = legs_of(conn, followers, group, &stored, &events).await?;
    let page: Vec<Applied> = stored
        .iter()
        .zip(&events)
        .zip(&legs)
        .map(|((stored, event), legs)| Applied {
            position: stored.position,
            event,
            recorded_at: stored.recorded_at,
            legs,
        })
        .collect();
    let mut rows = ProjectionRows::new(group.iter().map(|i| followers[*i].projection));
    for applied in &page {
        rows.push(applied, None);
    }
    remember(conn, followers, group, &page, &mut rows).await?;
    // BEGIN, one statement, COMMIT: a checkpoint that moved under us fails the statement's check
    // before the commit, and the dropped transaction rolls the rows back.
    let mut tx = conn.begin().await?;
    rows.insert_and_advance(&mut tx, checkpoint, last).await?;
    tx.commit().await?;
    for i in group {
        followers[*i].checkpoint = last;
        record_page(&followers[*i].metrics, &stored, last);
    }
    Ok(stored.len())
}

/// Projects a page into the memory of every remembering follower of `group`, loading first what
/// it needs, and flushes their rows into `rows`.
async fn remember(
    conn: &mut PgConnection,
    followers: &mut [Follower],
    group: &[usize],
    page: &[Applied<'_>],
    rows: &mut ProjectionRows,
) -> Result<()> {
    for i in group {
        let follower = &mut followers[*i];
        let Some(memory) = follower.memory.as_mut() else {
            continue;
        };
        memory.prepare(&mut *conn, SESSION_BOOK, page).await?;
        for applied in page {
            memory.project(applied)?;
        }
        if let Some((out, deletes)) = rows.buffers_of(follower.projection.name) {
            memory.flush(out, deletes);
        }
    }
    Ok(())
}

/// The legs of each event, derived by the follower of `group` that needs them (none when none
/// does).
async fn legs_of(
    conn: &mut PgConnection,
    followers: &mut [Follower],
    group: &[usize],
    stored: &[StoredEvent],
    events: &[Event],
) -> Result<Vec<Vec<Leg>>> {
    let deriving = group.iter().find(|i| followers[**i].legs.is_some());
    let Some(legs) = deriving.and_then(|i| followers[*i].legs.as_mut()) else {
        return Ok(vec![Vec::new(); events.len()]);
    };
    legs.prepare(conn, events).await?;
    stored
        .iter()
        .zip(events)
        .map(|(stored, event)| legs.of(event, stored.position))
        .collect()
}

fn record_page(m: &ProjectionMetrics, stored: &[StoredEvent], last: i64) {
    m.checkpoint.store(last, Ordering::Relaxed);
    m.head_seen.fetch_max(last, Ordering::Relaxed);
    m.events_projected
        .fetch_add(stored.len() as u64, Ordering::Relaxed);
    if let Some(oldest) = stored.first() {
        let waited = (Utc::now() - oldest.recorded_at)
            .num_microseconds()
            .unwrap_or(i64::MAX);
        m.lag_us.observe(waited.max(0) as u64);
    }
}

/// The task that keeps the asynchronous projections following the log.
struct Projector {
    connect: PgConnectOptions,
    /// The committed position of this process's writer of the ledger, when it runs here.
    commits: Commits,
    /// Signalled by reads waiting for the projections: read a page now.
    hurry: Hurry,
    config: ProjectorConfig,
    followers: Vec<Follower>,
    /// Becomes true when the process stops.
    stopped: watch::Receiver<bool>,
}

impl follower::Follow for Projector {
    const WHAT: &'static str = "projector";
    const STANDS_BY: bool = true;

    /// A session's worth of following; then the followers forget what they read, to read it
    /// again from their checkpoints.
    async fn follow(&mut self) -> Result<Ended> {
        let result = self.follow_session().await;
        for follower in &mut self.followers {
            follower.forget();
        }
        result
    }
}

impl Projector {
    async fn run(mut self) {
        let stopped = self.stopped.clone();
        let retry = follower::Retry::every(self.config.retry_interval);
        follower::supervise(&mut self, stopped, retry).await;
    }

    /// Connects, takes the projector's lock, and applies pages of the log until an error, or
    /// until this process stops.
    async fn follow_session(&mut self) -> Result<Ended> {
        let session =
            follower::Session::take(&self.connect, "ledger-projector", Lock::PROJECTOR).await?;
        let Some(mut session) = session else {
            return Ok(Ended::Locked);
        };
        let conn = &mut session.conn;
        // The projections are derived data and their checkpoints move with their rows: a commit
        // lost in a crash is a page applied again from the checkpoint that survived, never a
        // page half applied. So their commits need not wait for the WAL to be flushed (or for a
        // synchronous standby), which would compete with the writer's.
        sqlx::query("SET synchronous_commit = off")
            .execute(&mut *conn)
            .await?;
        for follower in &mut self.followers {
            let name = follower.projection.name;
            follower.checkpoint = checkpoints::open(&mut *conn, name).await?;
            follower
                .metrics
                .checkpoint
                .store(follower.checkpoint, Ordering::Relaxed);
            info!(
                projection = name,
                checkpoint = follower.checkpoint,
                "projector following the log"
            );
        }
        while !*self.stopped.borrow() {
            let started = tokio::time::Instant::now();
            let page_max = self.config.page_events_max;
            let applied = apply_pages(&mut *conn, &mut self.followers, page_max).await?;
            self.note_head();
            if applied == 0 {
                self.wait_for_events().await;
            } else if (applied as i64) < page_max {
                self.pace(started).await;
            }
        }
        session.release().await;
        Ok(Ended::Done)
    }

    /// The head as this process's writer last committed it, for the lag in events.
    fn note_head(&self) {
        if let Some(head) = self.commits.head() {
            for follower in &self.followers {
                follower
                    .metrics
                    .head_seen
                    .fetch_max(head, Ordering::Relaxed);
            }
        }
    }

    /// Paces the pages after one that was not full and started at `started`: waits until this
    /// process's writer has committed `page_events_target` events past the projections,
    /// `page_interval_max` has passed since `started`, a read waits for the projections
    /// (`hurry`), or the process stops. When the writer's commits here are behind what the
    /// projections read (the writer is another process), the head is not known: it waits out
    /// `page_interval_min` instead, or for a read or the stop.
    async fn pace(&mut self, started: tokio::time::Instant) {
        let checkpoint = self.followers.iter().map(|f| f.checkpoint).min();
        let checkpoint = checkpoint.unwrap_or(0);
        let (interval, enough) = match self.commits.head() {
            Some(head) if head >= checkpoint => (
                self.config.page_interval_max,
                checkpoint.saturating_add(self.config.page_events_target),
            ),
            _ => (self.config.page_interval_min, i64::MAX),
        };
        let mut stopped = self.stopped.clone();
        tokio::select! {
            _ = self.commits.reached(enough) => {}
            _ = tokio::time::sleep_until(started + interval) => {}
            _ = self.hurry.signalled() => {}
            _ = stopped.wait_for(|s| *s) => {}
        }
    }

    /// Waits until the writer of this process commits, a read waits for the projections, the
    /// poll interval passes, or the process stops.
    async fn wait_for_events(&mut self) {
        let poll = self.config.idle_poll_interval;
        let hurried = self.hurry.signalled();
        follower::wait_for_events(&mut self.commits, &self.stopped, poll, hurried).await;
    }
}
