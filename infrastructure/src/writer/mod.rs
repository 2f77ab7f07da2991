//! The single writer. One task (`task`) owns the ledger's state (`decider`) and its PostgreSQL
//! session (which holds the ledger's advisory lock); requests (`protocol`) reach it through a
//! bounded queue. It drains whatever is waiting into a batch (`batch`), decides each command in
//! order against the in-memory state, writes the batch's rows (`rows`: events, inline
//! projections, idempotency records) in one transaction, and answers every request after the
//! commit. Holds that fall due are expired by the writer itself (`expiry`).
//!
//! Fencing: the batches are written on the very session that holds the advisory lock, and that
//! session is under a lease (`lease`), so a writer that lost its session, or was paused past
//! the lease, can no longer write; the primary key on `events.position` makes a second writer fail
//! rather than fork the log.

mod batch;
mod decider;
pub mod expiry;
pub(crate) mod idempotency;
mod key_filter;

pub mod lease;
mod protocol;
mod replication;
mod restore;
mod rows;
mod task;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use domain::clock::{Clock, SystemClock};
use sqlx::postgres::PgConnectOptions;
use tokio::sync::{mpsc, oneshot, watch};

pub use protocol::{
    AccountChange, AssetChange, Balance, CommittedEvent, DryRunAnswer, Origin, Outcome, Reply,
    WriteItem,
};
use protocol::{ReplyTo, WriteRequest};

use crate::metrics::WriterMetrics;
use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Requests that may wait for the writer; beyond this, `Error::Overloaded` at once.
    pub queue_capacity: usize,
    /// Commands decided and committed together at most.
    pub batch_max: usize,
    /// How long to wait between attempts to take the lock or reconnect.
    pub retry_interval: Duration,
    /// How often an idle writer checks that its session (and so its lock) is alive, renewing
    /// its lease; at most a quarter of the lease (see `heartbeat_interval`).
    pub idle_check_interval: Duration,
    /// How long the writer's session may send nothing before PostgreSQL ends it and so releases
    /// the lock: how long a paused writer keeps the others from taking over.
    pub lease: Duration,
    /// The time batches are recorded at and holds expire by.
    pub clock: Arc<dyn Clock>,
    /// Where other nodes reach this one to forward writes, advertised while it is the writer.
    pub advertise_url: Option<String>,
    /// Upper bound on any statement of the writer's session. It cannot end a commit's wait for
    /// the synchronous standbys (PostgreSQL disarms it before committing), and a wait ended
    /// otherwise is caught (`replication`).
    pub statement_timeout: Duration,
    /// How long the requests of a batch whose outcome is unknown (the session broke while it may
    /// have been committing, or the synchronous standbys did not confirm it) wait for the writer
    /// to find out; then `CommitOutcomeUnknown`.
    pub in_doubt_wait: Duration,
    /// How many times at most the writer yields to let arriving requests join a batch before
    /// writing it (`task::gather`); it stops at the first yield that brings none.
    pub gather_yields_max: usize,
    /// How far ahead of its recording a write may count (`effective_at`).
    pub effective_future_max: Duration,
    /// The time of day (UTC) at which trades settle on their settlement date.
    pub settlement_time: chrono::NaiveTime,
}

impl WriterConfig {
    /// How often an idle leader renews its lease: often enough that a live writer never loses it
    /// to a late tick.
    pub fn heartbeat_interval(&self) -> Duration {
        self.idle_check_interval.min(self.lease / 4)
    }
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 16_384,
            batch_max: 2_048,
            retry_interval: Duration::from_millis(500),
            idle_check_interval: Duration::from_secs(1),
            lease: Duration::from_secs(5),
            advertise_url: None,
            clock: Arc::new(SystemClock),
            statement_timeout: Duration::from_secs(30),
            in_doubt_wait: Duration::from_secs(2),
            gather_yields_max: 8,
            effective_future_max: Duration::ZERO,
            settlement_time: chrono::NaiveTime::MIN,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriterStatus {
    /// Connecting, taking the lock or loading the state.
    Starting,
    /// Another process holds the writer's lock; this one waits to take over.
    Standby,
    /// This process is the writer.
    Leader,
    /// The session failed; reconnecting and reloading.
    Recovering,
    /// The synchronous standbys have not confirmed what was committed: nothing is acknowledged
    /// (the batch in question is in doubt) until they do.
    AwaitingStandby,
}

impl WriterStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Standby => "standby",
            Self::Leader => "leader",
            Self::Recovering => "recovering",
            Self::AwaitingStandby => "awaiting_standby",
        }
    }
}

/// A handle to the writer; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<WriteRequest>,
    /// Commands queued (a batch request counts as its size), bounded by `queue_capacity`.
    queued: Arc<AtomicUsize>,
    queue_capacity: usize,
    status: watch::Receiver<WriterStatus>,
    head: watch::Receiver<i64>,
    metrics: Arc<WriterMetrics>,
}

impl Writer {
    /// Starts the writer task. It runs until every `Writer` handle is dropped, then finishes the
    /// batch in hand and returns.
    pub fn spawn(
        connect: PgConnectOptions,
        config: WriterConfig,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (queue, requests) = mpsc::channel(config.queue_capacity);
        let (status_tx, status) = watch::channel(WriterStatus::Starting);
        let (head_tx, head) = watch::channel(0);
        let metrics = Arc::new(WriterMetrics::default());
        let queued = Arc::new(AtomicUsize::new(0));
        let queue_capacity = config.queue_capacity;
        let task = task::Sequencer {
            connect,
            config,
            requests,
            queued: queued.clone(),
            status: status_tx,
            head: head_tx,
            metrics: metrics.clone(),
            in_doubt: None,
        };
        let join = tokio::spawn(task.run());
        (
            Self {
                queue,
                queued,
                queue_capacity,
                status,
                head,
                metrics,
            },
            join,
        )
    }

    /// Queues a command and waits for its answer. Never waits for queue space: a full queue is
    /// `Error::Overloaded` at once.
    pub async fn submit(&self, item: WriteItem, origin: Origin) -> Result<Reply> {
        let mut answers = self.submit_batch(vec![item], false, origin).await?;
        answers.pop().unwrap_or(Err(Error::CommitFailed))
    }

    /// Queues commands that are decided in order in one batch and answered each on its own; with
    /// `atomic`, all are applied or none is.
    pub async fn submit_batch(
        &self,
        items: Vec<WriteItem>,
        atomic: bool,
        origin: Origin,
    ) -> Result<Vec<Result<Reply>>> {
        let (reply, answer) = oneshot::channel();
        self.enqueue(items, atomic, origin, ReplyTo::Write(reply))?;
        answer
            .await
            .map_err(|_| Error::WriterUnavailable("the writer stopped"))
    }

    /// Decides commands exactly as `submit_batch` would, against the state a write queued now
    /// would see, and answers what they would be answered and how they would change the
    /// accounts; then takes them back. Nothing is appended, recorded or relayed, and no
    /// idempotency key is used up.
    pub async fn dry_run(
        &self,
        items: Vec<WriteItem>,
        atomic: bool,
        origin: Origin,
    ) -> Result<DryRunAnswer> {
        let (reply, answer) = oneshot::channel();
        self.enqueue(items, atomic, origin, ReplyTo::DryRun(reply))?;
        answer
            .await
            .map_err(|_| Error::WriterUnavailable("the writer stopped"))
    }

    /// Queues a request. Never waits for queue space: a full queue is `Error::Overloaded` at once.
    fn enqueue(
        &self,
        items: Vec<WriteItem>,
        atomic: bool,
        origin: Origin,
        reply: ReplyTo,
    ) -> Result<()> {
        let count = items.len();
        if self.queued.fetch_add(count, Ordering::AcqRel) + count > self.queue_capacity {
            self.queued.fetch_sub(count, Ordering::AcqRel);
            return Err(Error::Overloaded);
        }
        let request = WriteRequest {
            items,
            atomic,
            origin,
            reply,
        };
        self.queue.try_send(request).map_err(|e| {
            self.queued.fetch_sub(count, Ordering::AcqRel);
            match e {
                mpsc::error::TrySendError::Full(_) => Error::Overloaded,
                mpsc::error::TrySendError::Closed(_) => Error::WriterUnavailable("shutting down"),
            }
        })
    }

    pub fn status(&self) -> WriterStatus {
        *self.status.borrow()
    }

    /// The position of the last batch this writer committed (0 before its first).
    pub fn committed_position(&self) -> i64 {
        *self.head.borrow()
    }

    /// A receiver that changes whenever the writer commits.
    pub fn watch_committed(&self) -> watch::Receiver<i64> {
        self.head.clone()
    }

    /// Commands waiting in the queue.
    pub fn queue_depth(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    pub fn metrics(&self) -> &WriterMetrics {
        &self.metrics
    }
}
