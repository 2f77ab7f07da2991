//! The single writer. One task owns the ledger's state and its PostgreSQL session (which holds the
//! ledger's advisory lock); requests reach it through a bounded queue. It drains whatever is
//! waiting into a batch, decides each command in order against the in-memory state, writes the
//! batch in one transaction, and answers every request after the commit.
//!
//! Fencing: the batches are written on the very session that holds the advisory lock, so a writer
//! that lost its session can no longer write; the primary key on `events.position` makes a second
//! writer fail rather than fork the log.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use domain::{Command, Event, LedgerState, Leg, Rejection};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, Row};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{error, info, warn};

use crate::batch::{Batch, EventMetadata};
use crate::key_filter::KeyFilter;
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

/// One command with its idempotency key and a digest of the request it came from, so that a key
/// reused for another request is noticed.
pub struct WriteItem {
    pub command: Command,
    pub idempotency_key: String,
    pub fingerprint: Vec<u8>,
}

/// What waits in the queue: one command, or a batch of them from one HTTP request.
struct WriteRequest {
    items: Vec<WriteItem>,
    /// All or nothing: if one is refused, none is applied and nothing is recorded.
    atomic: bool,
    request_id: Option<String>,
    reply: oneshot::Sender<Vec<Result<Reply>>>,
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
        let task = Sequencer {
            connect,
            config,
            requests,
            queued: queued.clone(),
            status: status_tx,
            head: head_tx,
            metrics: metrics.clone(),
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
    pub async fn submit(&self, item: WriteItem, request_id: Option<String>) -> Result<Reply> {
        let mut answers = self.submit_batch(vec![item], false, request_id).await?;
        answers.pop().unwrap_or(Err(Error::CommitFailed))
    }

    /// Queues commands that are decided in order in one batch and answered each on its own; with
    /// `atomic`, all are applied or none is.
    pub async fn submit_batch(
        &self,
        items: Vec<WriteItem>,
        atomic: bool,
        request_id: Option<String>,
    ) -> Result<Vec<Result<Reply>>> {
        let count = items.len();
        if self.queued.fetch_add(count, Ordering::AcqRel) + count > self.queue_capacity {
            self.queued.fetch_sub(count, Ordering::AcqRel);
            return Err(Error::Overloaded);
        }
        let (reply, answer) = oneshot::channel();
        let request = WriteRequest {
            items,
            atomic,
            request_id,
            reply,
        };
        if let Err(e) = self.queue.try_send(request) {
            self.queued.fetch_sub(count, Ordering::AcqRel);
            return Err(match e {
                mpsc::error::TrySendError::Full(_) => Error::Overloaded,
                mpsc::error::TrySendError::Closed(_) => Error::WriterUnavailable("shutting down"),
            });
        }
        answer
            .await
            .map_err(|_| Error::WriterUnavailable("the writer stopped"))
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

struct Sequencer {
    connect: PgConnectOptions,
    config: WriterConfig,
    requests: mpsc::Receiver<WriteRequest>,
    queued: Arc<AtomicUsize>,
    status: watch::Sender<WriterStatus>,
    head: watch::Sender<i64>,
    metrics: Arc<WriterMetrics>,
}

/// What the writer holds while it is the leader.
struct Session {
    conn: PgConnection,
    state: LedgerState,
    /// Which idempotency keys may be stored: only those are looked up.
    keys: KeyFilter,
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
    /// Decided in this batch (with the legs an accepted event put on accounts); answered once
    /// the batch commits.
    Decided(Outcome, Vec<Leg>),
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
                        idempotency_filter_bytes = session.keys.memory_bytes(),
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
            keys: loaded.keys,
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
                    Some(r) => {
                        self.queued.fetch_sub(r.items.len(), Ordering::AcqRel);
                        let answers = r.items.iter().map(|_| Err(Error::WriterUnavailable(reason))).collect();
                        let _ = r.reply.send(answers);
                    }
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
            // Whatever queued while the last batch committed joins this one, up to batch_max
            // commands (a batch request is never split).
            let mut items = first.items.len();
            let mut requests = vec![first];
            while items < self.config.batch_max {
                match self.requests.try_recv() {
                    Ok(r) => {
                        items += r.items.len();
                        requests.push(r);
                    }
                    Err(_) => break,
                }
            }
            self.queued.fetch_sub(items, Ordering::AcqRel);
            if let Err(e) = self.process(&mut session, requests).await {
                return Stop::Failed(e);
            }
        }
    }

    /// Decides and commits one batch, then answers every request in it. An error means the
    /// session must be dropped and the state reloaded; every request has been answered anyway.
    async fn process(&self, session: &mut Session, requests: Vec<WriteRequest>) -> Result<()> {
        let item_count: usize = requests.iter().map(|r| r.items.len()).sum();
        self.metrics.batch_size.observe(item_count as u64);
        let maybe_stored: Vec<&str> = requests
            .iter()
            .flat_map(|r| r.items.iter().map(|i| i.idempotency_key.as_str()))
            .filter(|key| session.keys.may_contain(key))
            .collect();
        let stored = if maybe_stored.is_empty() {
            HashMap::new()
        } else {
            match stored_outcomes(&mut session.conn, &maybe_stored).await {
                Ok(stored) => stored,
                Err(e) => {
                    answer_all_failed(requests);
                    return Err(e);
                }
            }
        };

        let recorded_at = session.next_recorded_at();
        let mut decider = Decider {
            session: &mut *session,
            stored: &stored,
            recorded_at,
            items: Vec::with_capacity(item_count),
            pending: Vec::with_capacity(item_count),
            first_with_key: HashMap::with_capacity(item_count),
        };
        for request in &requests {
            if let Err(e) = decider.decide_request(request) {
                // A decided event that cannot be applied is a bug; the state is reloaded
                // rather than trusted.
                drop(decider);
                answer_all_failed(requests);
                return Err(e);
            }
        }
        let Decider { pending, items, .. } = decider;

        let mut batch = Batch::default();
        for (p, (item, request_id)) in pending.iter().zip(&items) {
            match p {
                Pending::Decided(Outcome::Accepted(committed), legs) => {
                    let metadata = EventMetadata {
                        idempotency_key: item.idempotency_key.clone(),
                        request_id: request_id.clone(),
                    };
                    batch.push_event(
                        committed.position,
                        &committed.event,
                        legs,
                        &metadata,
                        &item.fingerprint,
                        recorded_at,
                    );
                }
                Pending::Decided(Outcome::Rejected(rejection), _) => {
                    batch.push_rejection(
                        &item.idempotency_key,
                        &item.fingerprint,
                        rejection,
                        recorded_at,
                    );
                }
                Pending::Ready(_) | Pending::SameAs(_) => {}
            }
        }
        drop(items);

        if !batch.is_empty() {
            let started = Instant::now();
            let committed = batch.write(&mut session.conn).await;
            self.metrics
                .commit_latency_us
                .observe(started.elapsed().as_micros() as u64);
            if let Err(e) = committed {
                self.metrics.commits_failed.fetch_add(1, Ordering::Relaxed);
                answer_all_failed(requests);
                return Err(e);
            }
            session.last_recorded_at = recorded_at;
            for key in batch.idempotency_keys() {
                session.keys.insert(key);
            }
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
                Pending::Decided(o, _) => Some(o.clone()),
                _ => None,
            })
            .collect();
        let count = |counter: &std::sync::atomic::AtomicU64| {
            counter.fetch_add(1, Ordering::Relaxed);
        };
        let mut pending = pending.into_iter();
        for request in requests {
            let mut answers = Vec::with_capacity(request.items.len());
            for p in pending.by_ref().take(request.items.len()) {
                answers.push(match p {
                    Pending::Ready(answer) => {
                        match &answer {
                            Ok(reply) if reply.replayed => count(&self.metrics.commands_replayed),
                            _ => count(&self.metrics.commands_rejected),
                        }
                        answer
                    }
                    Pending::Decided(outcome, _) => {
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
                });
            }
            // The client may have gone away; its answer is in the log either way.
            let _ = request.reply.send(answers);
        }
    }
}

/// The decision phase of one batch: every command in order against the in-memory state, later
/// commands seeing the effects of earlier ones.
struct Decider<'a> {
    session: &'a mut Session,
    stored: &'a HashMap<String, (Vec<u8>, Outcome)>,
    recorded_at: DateTime<Utc>,
    /// Each command of the batch with the request id of its request, in order.
    items: Vec<(&'a WriteItem, Option<String>)>,
    /// What each command waits for, parallel to `items`.
    pending: Vec<Pending>,
    /// The index of the first command of this batch with each key.
    first_with_key: HashMap<&'a str, usize>,
}

impl<'a> Decider<'a> {
    fn decide_request(&mut self, request: &'a WriteRequest) -> Result<()> {
        let group_start = self.pending.len();
        for (offset, item) in request.items.iter().enumerate() {
            let pending = self.decide_item(item)?;
            let refused_code = match &pending {
                Pending::Decided(Outcome::Rejected(r), _) => Some(r.code()),
                Pending::Ready(Err(Error::IdempotencyKeyReused)) => Some("idempotency_key_reused"),
                _ => None,
            };
            self.items.push((item, request.request_id.clone()));
            self.pending.push(pending);
            if let (true, Some(code)) = (request.atomic, refused_code) {
                self.abort_group(request, group_start, offset, code);
                break;
            }
        }
        Ok(())
    }

    fn decide_item(&mut self, item: &'a WriteItem) -> Result<Pending> {
        let key = item.idempotency_key.as_str();
        if let Some((fingerprint, outcome)) = self.stored.get(key) {
            return Ok(Pending::Ready(if *fingerprint == item.fingerprint {
                Ok(Reply {
                    outcome: outcome.clone(),
                    replayed: true,
                })
            } else {
                Err(Error::IdempotencyKeyReused)
            }));
        }
        if let Some(&earlier) = self.first_with_key.get(key) {
            let same_request = self.items[earlier].0.fingerprint == item.fingerprint;
            return Ok(if same_request {
                Pending::SameAs(earlier)
            } else {
                Pending::Ready(Err(Error::IdempotencyKeyReused))
            });
        }
        self.first_with_key.insert(key, self.pending.len());
        let session = &mut *self.session;
        Ok(match session.state.decide(&item.command) {
            Ok(event) => {
                let legs = session.state.apply(&event)?;
                let position = session.next_position;
                session.next_position += 1;
                Pending::Decided(
                    Outcome::Accepted(CommittedEvent {
                        position,
                        recorded_at: self.recorded_at,
                        event,
                    }),
                    legs,
                )
            }
            Err(rejection) => Pending::Decided(Outcome::Rejected(rejection), Vec::new()),
        })
    }

    /// Abandons an atomic group whose command at `failed_index` was refused: undoes what the
    /// group applied, gives its positions back, records nothing, and answers every command of
    /// the group with why the group was refused.
    fn abort_group(
        &mut self,
        request: &'a WriteRequest,
        group_start: usize,
        failed_index: usize,
        failed_code: &'static str,
    ) {
        let decided = self.pending.split_off(group_start);
        self.items.truncate(group_start);
        for pending in decided.iter().rev() {
            if let Pending::Decided(Outcome::Accepted(committed), legs) = pending {
                self.session.state.undo(&committed.event, legs);
                self.session.next_position -= 1;
            }
        }
        self.first_with_key.retain(|_, index| *index < group_start);
        let mut decided = decided.into_iter();
        for (offset, item) in request.items.iter().enumerate() {
            let answer = match decided.next() {
                Some(Pending::Decided(Outcome::Rejected(rejection), _))
                    if offset == failed_index =>
                {
                    Ok(Reply {
                        outcome: Outcome::Rejected(rejection),
                        replayed: false,
                    })
                }
                Some(Pending::Ready(answer)) if offset == failed_index => answer,
                _ => Ok(Reply {
                    outcome: Outcome::Rejected(Rejection::BatchAborted {
                        failed_index,
                        failed_code: failed_code.to_owned(),
                    }),
                    replayed: false,
                }),
            };
            self.items.push((item, request.request_id.clone()));
            self.pending.push(Pending::Ready(answer));
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

fn answer_all_failed(requests: Vec<WriteRequest>) {
    for request in requests {
        let answers = request
            .items
            .iter()
            .map(|_| Err(Error::CommitFailed))
            .collect();
        let _ = request.reply.send(answers);
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
