//! The single writer. One task owns the ledger's state and its PostgreSQL session (which holds the
//! ledger's advisory lock); requests reach it through a bounded queue. It drains whatever is
//! waiting into a batch, decides each command in order against the in-memory state, writes the
//! batch in one transaction, and answers every request after the commit.
//!
//! Fencing: the batches are written on the very session that holds the advisory lock, so a writer
//! that lost its session can no longer write; the primary key on `events.position` makes a second
//! writer fail rather than fork the log.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use domain::{Command, Event, LedgerState, Rejection};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, Row};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, info, warn};

use crate::batch::{Batch, EventMetadata};
use crate::load::load_state;
use crate::metrics::WriterMetrics;
use crate::{Error, Result};

/// The advisory lock key every writer of a ledger database takes ("ledger" in ASCII).
pub const WRITER_LOCK_KEY: i64 = 0x6c65_6467_6572;

#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Requests that may wait for the writer; beyond this, `Error::Overloaded` at once.
    pub queue_capacity: usize,
    /// Commands decided and committed together at most.
    pub batch_max: usize,
    /// How long to wait between attempts to take the lock or reconnect.
    pub retry_interval: Duration,
    /// How often an idle writer checks that its session (and so its lock) is alive.
    pub idle_check_interval: Duration,
    /// Upper bound on any statement of the writer's session.
    pub statement_timeout: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 16_384,
            batch_max: 2_048,
            retry_interval: Duration::from_millis(500),
            idle_check_interval: Duration::from_secs(1),
            statement_timeout: Duration::from_secs(30),
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
}

impl WriterStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Standby => "standby",
            Self::Leader => "leader",
            Self::Recovering => "recovering",
        }
    }
}

/// An event as committed: its position and time in the log.
#[derive(Debug, Clone, PartialEq)]
pub struct CommittedEvent {
    pub position: i64,
    pub recorded_at: DateTime<Utc>,
    pub event: Event,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Accepted(CommittedEvent),
    Rejected(Rejection),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub outcome: Outcome,
    /// True when this is the stored answer to an earlier request with the same key.
    pub replayed: bool,
}

pub struct WriteRequest {
    pub command: Command,
    pub idempotency_key: String,
    /// A digest of the request, so that a key reused for another request is noticed.
    pub fingerprint: Vec<u8>,
    pub request_id: Option<String>,
    reply: oneshot::Sender<Result<Reply>>,
}

/// A handle to the writer; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<WriteRequest>,
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
        let task = Sequencer {
            connect,
            config,
            requests,
            status: status_tx,
            head: head_tx,
            metrics: metrics.clone(),
        };
        let join = tokio::spawn(task.run());
        (
            Self {
                queue,
                status,
                head,
                metrics,
            },
            join,
        )
    }

    /// Queues a command and waits for its answer. Never waits for queue space: a full queue is
    /// `Error::Overloaded` at once.
    pub async fn submit(
        &self,
        command: Command,
        idempotency_key: String,
        fingerprint: Vec<u8>,
        request_id: Option<String>,
    ) -> Result<Reply> {
        let (reply, answer) = oneshot::channel();
        let request = WriteRequest {
            command,
            idempotency_key,
            fingerprint,
            request_id,
            reply,
        };
        self.queue.try_send(request).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => Error::Overloaded,
            mpsc::error::TrySendError::Closed(_) => Error::WriterUnavailable("shutting down"),
        })?;
        answer
            .await
            .map_err(|_| Error::WriterUnavailable("the writer stopped"))?
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

    /// Requests waiting in the queue.
    pub fn queue_depth(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }

    pub fn metrics(&self) -> &WriterMetrics {
        &self.metrics
    }
}

struct Sequencer {
    connect: PgConnectOptions,
    config: WriterConfig,
    requests: mpsc::Receiver<WriteRequest>,
    status: watch::Sender<WriterStatus>,
    head: watch::Sender<i64>,
    metrics: Arc<WriterMetrics>,
}

/// What the writer holds while it is the leader.
struct Session {
    conn: PgConnection,
    state: LedgerState,
    next_position: i64,
    last_recorded_at: DateTime<Utc>,
}

enum Stop {
    /// Every handle is gone: the process is shutting down.
    Shutdown,
    /// The session failed; the in-memory state may hold decisions that were not committed.
    Failed(Error),
}

/// What a request in a batch is waiting for.
enum Pending {
    /// Answered without a commit (a stored replay, or a reused key).
    Ready(Result<Reply>),
    /// Decided in this batch; answered once the batch commits.
    Decided(Outcome),
    /// The same key and request as an earlier one in this batch: gets its outcome, as a replay.
    SameAs(usize),
}

impl Sequencer {
    async fn run(mut self) {
        let mut status = WriterStatus::Starting;
        loop {
            self.status.send_replace(status);
            match self.become_leader().await {
                Ok(Some(session)) => {
                    info!(
                        head = session.next_position - 1,
                        accounts = session.state.account_count(),
                        "this process is the ledger's writer"
                    );
                    self.status.send_replace(WriterStatus::Leader);
                    self.head.send_replace(session.next_position - 1);
                    match self.lead(session).await {
                        Stop::Shutdown => return,
                        Stop::Failed(e) => {
                            error!(error = %e, "writer session failed; reconnecting and reloading state");
                            status = WriterStatus::Recovering;
                            // Try again at once: a failed batch usually leaves PostgreSQL healthy.
                            continue;
                        }
                    }
                }
                Ok(None) => {
                    if status != WriterStatus::Standby {
                        info!("another process holds the writer lock; standing by to take over");
                    }
                    status = WriterStatus::Standby;
                    self.status.send_replace(status);
                }
                Err(e) => {
                    warn!(error = %e, "writer cannot start yet");
                    if status == WriterStatus::Leader {
                        status = WriterStatus::Recovering;
                    }
                    self.status.send_replace(status);
                }
            }
            let reason = match status {
                WriterStatus::Standby => "another process is the writer",
                _ => "the writer is recovering",
            };
            if !self
                .refuse_requests_for(self.config.retry_interval, reason)
                .await
            {
                return;
            }
        }
    }

    /// Connects, takes the lock without waiting, and loads the state. `None` when another
    /// process holds the lock.
    async fn become_leader(&self) -> Result<Option<Session>> {
        let mut conn = PgConnection::connect_with(&self.connect).await?;
        let timeout_ms = self.config.statement_timeout.as_millis().to_string();
        sqlx::query("SELECT set_config('statement_timeout', $1, false)")
            .bind(&timeout_ms)
            .execute(&mut conn)
            .await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(WRITER_LOCK_KEY)
            .fetch_one(&mut conn)
            .await?;
        if !locked {
            let _ = conn.close().await;
            return Ok(None);
        }
        let loaded = load_state(&mut conn).await?;
        Ok(Some(Session {
            conn,
            state: loaded.state,
            next_position: loaded.head + 1,
            last_recorded_at: loaded.last_recorded_at,
        }))
    }

    /// Answers every request that arrives within `duration` with `WriterUnavailable`. False when
    /// every handle is gone.
    async fn refuse_requests_for(&mut self, duration: Duration, reason: &'static str) -> bool {
        let deadline = tokio::time::sleep(duration);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => return true,
                request = self.requests.recv() => match request {
                    Some(r) => { let _ = r.reply.send(Err(Error::WriterUnavailable(reason))); }
                    None => return false,
                },
            }
        }
    }

    async fn lead(&mut self, mut session: Session) -> Stop {
        let mut idle_check = tokio::time::interval(self.config.idle_check_interval);
        idle_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let first = tokio::select! {
                request = self.requests.recv() => request,
                _ = idle_check.tick() => {
                    if let Err(e) = sqlx::query("SELECT 1").execute(&mut session.conn).await {
                        return Stop::Failed(e.into());
                    }
                    continue;
                }
            };
            let Some(first) = first else {
                let _ = session.conn.close().await;
                return Stop::Shutdown;
            };
            let mut requests =
                Vec::with_capacity(self.requests.len().min(self.config.batch_max) + 1);
            requests.push(first);
            while requests.len() < self.config.batch_max {
                match self.requests.try_recv() {
                    Ok(r) => requests.push(r),
                    Err(_) => break,
                }
            }
            if let Err(e) = self.process(&mut session, requests).await {
                return Stop::Failed(e);
            }
        }
    }

    /// Decides and commits one batch, then answers every request in it. An error means the
    /// session must be dropped and the state reloaded; every request has been answered anyway.
    async fn process(&self, session: &mut Session, requests: Vec<WriteRequest>) -> Result<()> {
        self.metrics.batch_size.observe(requests.len() as u64);
        let keys: Vec<&str> = requests
            .iter()
            .map(|r| r.idempotency_key.as_str())
            .collect();
        let stored = match stored_outcomes(&mut session.conn, &keys).await {
            Ok(stored) => stored,
            Err(e) => {
                answer_all_failed(requests);
                return Err(e);
            }
        };

        let recorded_at = session.next_recorded_at();
        let mut batch = Batch::default();
        let mut pending: Vec<Pending> = Vec::with_capacity(requests.len());
        let mut first_with_key: HashMap<&str, usize> = HashMap::new();
        for (index, request) in requests.iter().enumerate() {
            let key = request.idempotency_key.as_str();
            if let Some((fingerprint, outcome)) = stored.get(key) {
                pending.push(Pending::Ready(if *fingerprint == request.fingerprint {
                    Ok(Reply {
                        outcome: outcome.clone(),
                        replayed: true,
                    })
                } else {
                    Err(Error::IdempotencyKeyReused)
                }));
                continue;
            }
            if let Some(&earlier) = first_with_key.get(key) {
                pending.push(if requests[earlier].fingerprint == request.fingerprint {
                    Pending::SameAs(earlier)
                } else {
                    Pending::Ready(Err(Error::IdempotencyKeyReused))
                });
                continue;
            }
            first_with_key.insert(key, index);
            match session.state.decide(&request.command) {
                Ok(event) => {
                    let legs = match session.state.apply(&event) {
                        Ok(legs) => legs,
                        Err(e) => {
                            // A decided event that cannot be applied is a bug; the state is
                            // reloaded rather than trusted.
                            answer_all_failed(requests);
                            return Err(e.into());
                        }
                    };
                    let position = session.next_position;
                    session.next_position += 1;
                    let metadata = EventMetadata {
                        idempotency_key: request.idempotency_key.clone(),
                        request_id: request.request_id.clone(),
                    };
                    batch.push_event(
                        position,
                        &event,
                        &legs,
                        &metadata,
                        &request.fingerprint,
                        recorded_at,
                    );
                    pending.push(Pending::Decided(Outcome::Accepted(CommittedEvent {
                        position,
                        recorded_at,
                        event,
                    })));
                }
                Err(rejection) => {
                    batch.push_rejection(key, &request.fingerprint, &rejection, recorded_at);
                    pending.push(Pending::Decided(Outcome::Rejected(rejection)));
                }
            }
        }

        if !batch.is_empty() {
            let started = Instant::now();
            let committed = commit(&mut session.conn, &batch).await;
            self.metrics
                .commit_latency_us
                .observe(started.elapsed().as_micros() as u64);
            if let Err(e) = committed {
                self.metrics.commits_failed.fetch_add(1, Ordering::Relaxed);
                answer_all_failed(requests);
                return Err(e);
            }
            session.last_recorded_at = recorded_at;
            if let Some(position) = batch.last_position() {
                self.head.send_replace(position);
            }
        }
        self.answer(requests, pending);
        Ok(())
    }

    fn answer(&self, requests: Vec<WriteRequest>, pending: Vec<Pending>) {
        let outcomes: Vec<Option<Outcome>> = pending
            .iter()
            .map(|p| match p {
                Pending::Decided(o) => Some(o.clone()),
                _ => None,
            })
            .collect();
        let count = |counter: &std::sync::atomic::AtomicU64| {
            counter.fetch_add(1, Ordering::Relaxed);
        };
        for (request, pending) in requests.into_iter().zip(pending) {
            let answer = match pending {
                Pending::Ready(answer) => {
                    count(&self.metrics.commands_replayed);
                    answer
                }
                Pending::Decided(outcome) => {
                    match outcome {
                        Outcome::Accepted(_) => count(&self.metrics.commands_accepted),
                        Outcome::Rejected(_) => count(&self.metrics.commands_rejected),
                    }
                    Ok(Reply {
                        outcome,
                        replayed: false,
                    })
                }
                Pending::SameAs(earlier) => {
                    count(&self.metrics.commands_replayed);
                    outcomes[earlier]
                        .clone()
                        .map(|outcome| Reply {
                            outcome,
                            replayed: true,
                        })
                        .ok_or(Error::CommitFailed)
                }
            };
            // The client may have gone away; its answer is in the log either way.
            let _ = request.reply.send(answer);
        }
    }
}

impl Session {
    /// The time recorded for the next batch: now, at PostgreSQL's microsecond precision, and
    /// never earlier than the previous batch, so that time order agrees with log order.
    fn next_recorded_at(&self) -> DateTime<Utc> {
        let now = Utc::now();
        let now = DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now);
        now.max(self.last_recorded_at)
    }
}

async fn commit(conn: &mut PgConnection, batch: &Batch) -> Result<()> {
    let mut tx = conn.begin().await?;
    batch.write(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

fn answer_all_failed(requests: Vec<WriteRequest>) {
    for request in requests {
        let _ = request.reply.send(Err(Error::CommitFailed));
    }
}

/// The stored fingerprint and outcome of each key of the batch that was seen before.
async fn stored_outcomes(
    conn: &mut PgConnection,
    keys: &[&str],
) -> Result<HashMap<String, (Vec<u8>, Outcome)>> {
    let rows = sqlx::query(
        "SELECT k.key, k.fingerprint, k.rejection,
                e.position, e.event_type, e.schema_version, e.payload, e.recorded_at
         FROM idempotency_keys k LEFT JOIN events e ON e.position = k.position
         WHERE k.key = ANY($1)",
    )
    .bind(keys)
    .fetch_all(conn)
    .await?;
    let mut stored = HashMap::with_capacity(rows.len());
    for row in rows {
        let key: String = row.try_get("key")?;
        let fingerprint: Vec<u8> = row.try_get("fingerprint")?;
        let rejection: Option<serde_json::Value> = row.try_get("rejection")?;
        let outcome = match rejection {
            Some(rejection) => Outcome::Rejected(
                serde_json::from_value(rejection)
                    .map_err(|e| Error::Corrupt(format!("stored refusal for key {key:?}: {e}")))?,
            ),
            None => {
                let event_type: String = row.try_get("event_type")?;
                let event = Event::decode(
                    &event_type,
                    row.try_get("schema_version")?,
                    row.try_get("payload")?,
                )
                .map_err(|e| Error::Corrupt(e.to_string()))?;
                Outcome::Accepted(CommittedEvent {
                    position: row.try_get("position")?,
                    recorded_at: row.try_get("recorded_at")?,
                    event,
                })
            }
        };
        stored.insert(key, (fingerprint, outcome));
    }
    Ok(stored)
}
