//! The writer's task. It owns the ledger's state and its PostgreSQL session (which holds the
//! ledger's advisory lock). It drains whatever is waiting into a batch, decides each command in
//! order against the in-memory state, writes the batch in one transaction, and answers every
//! request after the commit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use domain::clock::Clock;
use domain::Event;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, Row};
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use super::batch::Batch;
use super::decider::Decider;
use super::expiry::expiry_request;
use super::lease;
use super::protocol::{CommittedEvent, Outcome, StoredOutcomes, WriteRequest};
use super::replication;
use super::restore::restore;
use super::rows::BatchRows;
use super::{WriterConfig, WriterStatus};
use crate::metrics::WriterMetrics;
use crate::{Error, Result};

pub(super) struct Sequencer {
    pub(super) connect: PgConnectOptions,
    pub(super) config: WriterConfig,
    pub(super) requests: mpsc::Receiver<WriteRequest>,
    pub(super) queued: Arc<AtomicUsize>,
    pub(super) status: watch::Sender<WriterStatus>,
    pub(super) head: watch::Sender<i64>,
    pub(super) metrics: Arc<WriterMetrics>,
    /// The batch whose write failed without proof that it was not committed, if any.
    pub(super) in_doubt: Option<InDoubt>,
}

/// A batch whose write failed in a way that does not show whether PostgreSQL committed it: the
/// session broke (the server stopped, the backend was terminated, the network failed) after the
/// statement was sent. Or a batch that PostgreSQL committed but the synchronous standbys did not
/// confirm (its wait for them was cancelled): acknowledging it would promise a write that a
/// failover loses. Its requests are not answered "failed", which could be false, nor "done",
/// which may not hold, but wait until the writer holds the lock again (so the old session is
/// gone and cannot commit any more), the standbys hold everything committed so far, and it looks
/// in the log; after `deadline` they are answered `CommitOutcomeUnknown`.
pub(super) struct InDoubt {
    batch: Batch,
    deadline: tokio::time::Instant,
}

/// Whether a failed write certainly committed nothing: PostgreSQL answered the statement with an
/// ERROR, which aborts its transaction. Anything else (a broken connection, a FATAL such as a
/// terminated backend or a shutdown) may have come after the commit.
fn certainly_not_committed(e: &Error) -> bool {
    match e {
        Error::Database(sqlx::Error::Database(db)) => db
            .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
            .is_some_and(|pg| pg.severity() == sqlx::postgres::PgSeverity::Error),
        _ => false,
    }
}

/// What the writer holds while it is the leader: the session that holds the lock, and what it
/// decides against.
struct Session {
    conn: PgConnection,
    decider: Decider,
}

enum Stop {
    /// Every handle is gone: the process is shutting down.
    Shutdown,
    /// The session failed; the in-memory state may hold decisions that were not committed.
    Failed(Error),
}

impl Sequencer {
    pub(super) async fn run(mut self) {
        let mut status = WriterStatus::Starting;
        loop {
            self.status.send_replace(status);
            match self.become_leader().await {
                Ok(Some(session)) => {
                    info!(
                        head = session.decider.next_position - 1,
                        accounts = session.decider.state.account_count(),
                        idempotency_filter_bytes = session.decider.keys.memory_bytes(),
                        "this process is the ledger's writer"
                    );
                    self.status.send_replace(WriterStatus::Leader);
                    self.head.send_replace(session.decider.next_position - 1);
                    match self.lead(session).await {
                        Stop::Shutdown => return,
                        Stop::Failed(e) => {
                            error!(error = %e, "writer session failed; reconnecting and reloading state");
                            status = status_after(&e, WriterStatus::Leader);
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
                    status = status_after(&e, status);
                    self.status.send_replace(status);
                }
            }
            self.give_up_on_in_doubt_when_due();
            if !self
                .refuse_requests_for(self.config.retry_interval, refusal(status))
                .await
            {
                return;
            }
        }
    }

    /// Connects, takes the lock without waiting, and loads the state. `None` when another
    /// process holds the lock.
    async fn become_leader(&mut self) -> Result<Option<Session>> {
        // Named `ledger-writer:<ledger>` in `pg_stat_activity`, apart from the read pools'
        // sessions, so an operator (and bench/cpu.py) can tell the writer's backend.
        let options = crate::db::role_options(&self.connect, "ledger-writer");
        let mut conn = PgConnection::connect_with(&options).await?;
        let timeout_ms = self.config.statement_timeout.as_millis().to_string();
        sqlx::query("SELECT set_config('statement_timeout', $1, false)")
            .bind(&timeout_ms)
            .execute(&mut conn)
            .await?;
        if !lease::try_lock(&mut conn).await? {
            let _ = conn.close().await;
            return Ok(None);
        }
        // Nothing is answered from the log (a batch in doubt, a replay of a stored outcome) until
        // the synchronous standbys hold all of it, whoever committed it.
        replication::confirm(&mut conn, replication::CONFIRM_BOUND).await?;
        // Holding the lock, the session that sent an in-doubt batch is gone: its fate is settled.
        if let Some(in_doubt) = self.in_doubt.take() {
            match in_doubt.batch.rows().is_committed(&mut conn).await {
                Ok(true) => {
                    info!("the batch in doubt was committed; answering its requests");
                    in_doubt.batch.answer(&self.metrics);
                }
                Ok(false) => {
                    info!("the batch in doubt was not committed; its requests may be retried");
                    in_doubt.batch.fail();
                }
                Err(e) => {
                    self.in_doubt = Some(in_doubt);
                    return Err(e);
                }
            }
        }
        let mut decider = restore(&mut conn).await?;
        let future_max = chrono::Duration::from_std(self.config.effective_future_max)
            .unwrap_or(chrono::Duration::MAX);
        decider.state.set_effective_future_max(future_max);
        decider
            .state
            .set_settlement_time(self.config.settlement_time);
        lease::start_lease(&mut conn, self.config.lease).await?;
        if let Some(url) = &self.config.advertise_url {
            lease::advertise(&mut conn, url).await?;
        }
        Ok(Some(Session { conn, decider }))
    }

    /// Answers the requests of the batch in doubt `CommitOutcomeUnknown` once its deadline passed.
    fn give_up_on_in_doubt_when_due(&mut self) {
        let now = tokio::time::Instant::now();
        if let Some(in_doubt) = self.in_doubt.take_if(|d| d.deadline <= now) {
            warn!(
                "could not learn in time whether the batch in doubt was committed and replicated"
            );
            in_doubt.batch.fail_with(|| Error::CommitOutcomeUnknown);
        }
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
                        r.fail(|| Error::WriterUnavailable(reason));
                    }
                    None => return false,
                },
            }
        }
    }

    async fn lead(&mut self, mut session: Session) -> Stop {
        let mut idle_check = tokio::time::interval(self.config.heartbeat_interval());
        idle_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let first = tokio::select! {
                request = self.requests.recv() => match request {
                    Some(request) => Some(request),
                    None => {
                        lease::unlock_writer(session.conn).await;
                        return Stop::Shutdown;
                    }
                },
                _ = idle_check.tick() => {
                    if let Err(e) = lease::heartbeat(&mut session.conn).await {
                        return Stop::Failed(e);
                    }
                    // Idle, but holds may have fallen due: then a batch of their expiries.
                    if session.decider.state.holds_due(self.config.clock.now(), 1).is_empty() {
                        continue;
                    }
                    None
                }
            };
            let requests = self.drain(first, &session.decider);
            let mut writing = Batch::new(Decider::recorded_at_after(
                self.config.clock.as_ref(),
                session.decider.last_recorded_at,
            ));
            if let Err(e) = decide_with_lookup(&mut session, &mut writing, requests).await {
                writing.fail();
                return Stop::Failed(e);
            }
            // Batches are written back to back: while one is written, the next is decided from
            // what arrives, so PostgreSQL and the decisions work at the same time.
            loop {
                match self.write_while_deciding(&mut session, writing).await {
                    Ok(Some(following)) => writing = following,
                    Ok(None) => break,
                    Err(Stop::Shutdown) => {
                        lease::unlock_writer(session.conn).await;
                        return Stop::Shutdown;
                    }
                    Err(Stop::Failed(e @ Error::StandbyUnconfirmed(_))) => {
                        // The session is sound and has nothing left to commit: hand the lock
                        // back now rather than when the server notices the connection closed.
                        lease::unlock_writer(session.conn).await;
                        return Stop::Failed(e);
                    }
                    Err(stop) => return stop,
                }
            }
        }
    }

    /// The requests of a new batch: the first, whatever queued meanwhile up to `batch_max`
    /// commands (a batch request is never split), and first of all the expiry of the holds due.
    fn drain(&mut self, first: Option<WriteRequest>, decider: &Decider) -> Vec<WriteRequest> {
        let mut requests: Vec<WriteRequest> = first.into_iter().collect();
        let commands: usize = requests.iter().map(|r| r.items.len()).sum();
        self.queued.fetch_sub(commands, Ordering::AcqRel);
        self.take_queued(&mut requests, commands);
        if let Some(expiries) = expiry_request(&decider.state, self.config.clock.now()) {
            requests.insert(0, expiries);
        }
        requests
    }

    /// Writes `writing` and, while PostgreSQL works on it, decides the requests that arrive into
    /// the following batch. Answers `writing` once it has committed; returns the following batch
    /// to write next, if it has anything.
    async fn write_while_deciding(
        &mut self,
        session: &mut Session,
        writing: Batch,
    ) -> Result<Option<Batch>, Stop> {
        self.metrics
            .batch_size
            .observe(writing.command_count() as u64);
        let mut following =
            Following::new(&writing, &mut session.decider, self.config.clock.as_ref());
        let started = Instant::now();
        let written = self.write(session, &writing, &mut following).await;
        let write_time = started.elapsed();
        self.metrics
            .commit_latency_us
            .observe(write_time.as_micros() as u64);
        if let Err(e) = written {
            // `following` was decided on top of `writing` and never sent: nothing of it applied.
            self.write_failed(&e, writing);
            following.fail();
            return Err(Stop::Failed(e));
        }
        self.committed(&mut session.decider, writing, write_time);
        if let Some(e) = following.decide_error.take() {
            following.fail();
            return Err(Stop::Failed(e));
        }
        let Following {
            mut batch,
            deferred,
            closed,
            ..
        } = following;
        if !deferred.is_empty() {
            if let Err(e) = decide_with_lookup(session, &mut batch, deferred).await {
                batch.fail();
                return Err(Stop::Failed(e));
            }
        }
        if !batch.is_empty() && !closed {
            if let Err(e) = self.gather(session, &mut batch).await {
                batch.fail();
                return Err(Stop::Failed(e));
            }
        }
        match (batch.is_empty(), closed) {
            (true, true) => Err(Stop::Shutdown),
            (true, false) => Ok(None),
            (false, _) => Ok(Some(batch)),
        }
    }

    /// Lets the requests that are about to arrive join `batch` before it is written. Under load,
    /// HTTP tasks of this process are ready to hand the writer their commands at this very
    /// moment; yielding lets them run, and each batch then carries more commands for the same
    /// commit, whose cost (a statement's setup, the WAL flush, a round trip) is per batch: with
    /// many ledgers on few cores, that is what each ledger's small batches lose. When nothing
    /// arrives, the first yield returns at once and the batch is written: an idle writer pays
    /// one yield.
    async fn gather(&mut self, session: &mut Session, batch: &mut Batch) -> Result<()> {
        for _ in 0..self.config.gather_yields_max {
            tokio::task::yield_now().await;
            let mut arrived = Vec::new();
            self.take_queued(&mut arrived, batch.command_count());
            if arrived.is_empty() {
                break;
            }
            decide_with_lookup(session, batch, arrived).await?;
        }
        Ok(())
    }

    /// Moves the requests waiting in the queue to `requests` while the batch they join, of
    /// `commands` commands so far, has room under `batch_max` (a request is never split).
    fn take_queued(&mut self, requests: &mut Vec<WriteRequest>, mut commands: usize) {
        let before = commands;
        while commands < self.config.batch_max {
            match self.requests.try_recv() {
                Ok(r) => {
                    commands += r.items.len();
                    requests.push(r);
                }
                Err(_) => break,
            }
        }
        self.queued.fetch_sub(commands - before, Ordering::AcqRel);
    }

    /// Writes `writing`, deciding the requests that arrive meanwhile into `following`.
    async fn write(
        &mut self,
        session: &mut Session,
        writing: &Batch,
        following: &mut Following,
    ) -> Result<()> {
        if writing.rows().is_empty() {
            // Only replays and refusals that are not recorded: nothing to write.
            return Ok(());
        }
        let Session { conn, decider } = session;
        let write = commit(writing.rows(), conn);
        tokio::pin!(write);
        loop {
            tokio::select! {
                biased;
                written = &mut write => return written,
                request = self.requests.recv(), if following.has_room(self.config.batch_max) => {
                    match request {
                        None => following.closed = true,
                        Some(request) => {
                            self.queued.fetch_sub(request.items.len(), Ordering::AcqRel);
                            following.admit(request, writing, decider);
                        }
                    }
                }
            }
        }
    }

    /// A write that failed. If PostgreSQL answered it with an error, nothing of it was applied;
    /// otherwise its fate is in doubt until the writer holds the lock again and looks.
    fn write_failed(&mut self, e: &Error, writing: Batch) {
        self.metrics.commits_failed.fetch_add(1, Ordering::Relaxed);
        if certainly_not_committed(e) {
            writing.fail();
        } else {
            self.in_doubt = Some(InDoubt {
                batch: writing,
                deadline: tokio::time::Instant::now() + self.config.in_doubt_wait,
            });
        }
    }

    /// A batch committed: the decider learns its keys and time, followers of the head learn its
    /// position, and every request of it is answered.
    fn committed(&mut self, decider: &mut Decider, writing: Batch, write_time: Duration) {
        let (decide, hash, rows) = writing.times();
        self.metrics.record_batch([decide, hash, rows, write_time]);
        decider.last_recorded_at = writing.recorded_at();
        for key in writing.rows().idempotency_keys() {
            decider.keys.insert(key);
        }
        if let Some(position) = writing.rows().last_position() {
            self.head.send_replace(position);
        }
        writing.answer(&self.metrics);
    }
}

/// The status after the writer failed with `e`, as leader or while becoming one.
fn status_after(e: &Error, status: WriterStatus) -> WriterStatus {
    match (e, status) {
        (Error::StandbyUnconfirmed(_), _) => WriterStatus::AwaitingStandby,
        (_, WriterStatus::Leader | WriterStatus::AwaitingStandby) => WriterStatus::Recovering,
        (_, status) => status,
    }
}

/// Why a writer that is not leading refuses a request.
fn refusal(status: WriterStatus) -> &'static str {
    match status {
        WriterStatus::Standby => "another process is the writer",
        WriterStatus::AwaitingStandby => {
            "the synchronous standby has not confirmed the last commits; no write is acknowledged \
             until it does"
        }
        _ => "the writer is recovering",
    }
}

/// Writes a batch's rows, then waits for the synchronous standbys to confirm them: only then may
/// the batch be acknowledged. Whatever goes wrong after the write returned leaves the batch
/// committed on the primary, so it is `StandbyUnconfirmed` (in doubt), never an error that would
/// have the batch answered as not applied.
async fn commit(rows: &BatchRows, conn: &mut PgConnection) -> Result<()> {
    let standbys_required = rows.write(conn).await?;
    match replication::confirm_commit(conn, replication::CONFIRM_BOUND, standbys_required).await {
        Err(e @ Error::StandbyUnconfirmed(_)) => Err(e),
        Err(e) => Err(Error::StandbyUnconfirmed(format!(
            "cannot read the standbys' positions: {e}"
        ))),
        Ok(()) => Ok(()),
    }
}

/// The batch decided while another is written. A request that arrives is decided into it at
/// once, unless it needs the database (a key that may have been stored before, or that the batch
/// being written uses): then it and every request after it wait until that batch has committed.
struct Following {
    batch: Batch,
    deferred: Vec<WriteRequest>,
    deferred_commands: usize,
    /// A decision failed: the state can no longer be trusted, so everything after the commit in
    /// progress fails and the writer reloads.
    decide_error: Option<Error>,
    /// Every handle is gone: finish what is in hand, then stop.
    closed: bool,
}

impl Following {
    fn new(writing: &Batch, decider: &mut Decider, clock: &dyn Clock) -> Self {
        let mut following = Self {
            batch: Batch::new(Decider::recorded_at_after(clock, writing.recorded_at())),
            deferred: Vec::new(),
            deferred_commands: 0,
            decide_error: None,
            closed: false,
        };
        // Holds due by now expire or settle first in the following batch. Their keys are the
        // ledger's own and their holds are open in the state, so a stored outcome can only be a
        // refusal: admitted like any request, such a key is looked up rather than recorded twice
        // (which would fail the batch and reload the writer, again and again).
        if let Some(expiries) = expiry_request(&decider.state, clock.now()) {
            following.admit(expiries, writing, decider);
        }
        following
    }

    fn has_room(&self, batch_max: usize) -> bool {
        !self.closed && self.batch.command_count() + self.deferred_commands < batch_max
    }

    fn decide(&mut self, decider: &mut Decider, request: WriteRequest) {
        if let Err(e) = self.batch.add(decider, request, &StoredOutcomes::new()) {
            self.decide_error = Some(e);
        }
    }

    fn admit(&mut self, request: WriteRequest, writing: &Batch, decider: &mut Decider) {
        let needs_database = self.decide_error.is_some()
            || !self.deferred.is_empty()
            || request.items.iter().any(|item| {
                let key = item.idempotency_key.as_str();
                writing.has_key(key) || decider.keys.may_contain(key)
            });
        if needs_database {
            self.deferred_commands += request.items.len();
            self.deferred.push(request);
        } else {
            self.decide(decider, request);
        }
    }

    /// Answers everything with a retryable failure: none of it was written.
    fn fail(self) {
        self.batch.fail();
        for request in self.deferred {
            request.fail(|| Error::CommitFailed);
        }
    }
}

/// Decides requests into `batch`, first asking the database about the keys that may have been
/// stored. On an error every request is in `batch` (or answered), so `batch.fail()` answers them.
async fn decide_with_lookup(
    session: &mut Session,
    batch: &mut Batch,
    requests: Vec<WriteRequest>,
) -> Result<()> {
    let maybe_stored: Vec<&str> = requests
        .iter()
        .flat_map(|r| r.items.iter().map(|i| i.idempotency_key.as_str()))
        .filter(|key| session.decider.keys.may_contain(key))
        .collect();
    let stored = if maybe_stored.is_empty() {
        StoredOutcomes::new()
    } else {
        match stored_outcomes(&mut session.conn, &maybe_stored).await {
            Ok(stored) => stored,
            Err(e) => {
                for request in requests {
                    request.fail(|| Error::CommitFailed);
                }
                return Err(e);
            }
        }
    };
    let mut requests = requests.into_iter();
    for request in requests.by_ref() {
        if let Err(e) = batch.add(&mut session.decider, request, &stored) {
            for rest in requests {
                rest.fail(|| Error::CommitFailed);
            }
            return Err(e);
        }
    }
    Ok(())
}

/// The stored fingerprint and outcome of each key of the batch that was seen before.
async fn stored_outcomes(conn: &mut PgConnection, keys: &[&str]) -> Result<StoredOutcomes> {
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::atomic::AtomicU8;

    use domain::command::DefineAsset;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpStream, UnixListener, UnixStream};

    use super::*;
    use crate::db::{migrate, read_pool, PoolConfig};
    use crate::testing::TestDatabase;
    use crate::writer::{Origin, WriteItem, Writer};
    use domain::Command;

    /// Where the proxy cuts the next connection it carries.
    const PASS: u8 = 0;
    /// Drop what the client sends next: PostgreSQL never sees the statement.
    const CUT_REQUEST: u8 = 1;
    /// Forward the statement but drop PostgreSQL's answer: it committed, the client cannot know.
    const CUT_ANSWER: u8 = 2;

    /// A unix-socket proxy in front of PostgreSQL that can break a session at a chosen moment.
    struct Proxy {
        dir: PathBuf,
        mode: Arc<AtomicU8>,
    }

    impl Proxy {
        fn start(upstream: &PgConnectOptions) -> Proxy {
            let dir = std::env::temp_dir().join(format!("ledger-proxy-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&dir).expect("proxy directory");
            let listener =
                UnixListener::bind(dir.join(format!(".s.PGSQL.{}", upstream.get_port())))
                    .expect("proxy socket");
            let upstream_path = upstream
                .get_socket()
                .cloned()
                .or_else(|| {
                    let host = upstream.get_host();
                    host.starts_with('/').then(|| PathBuf::from(host))
                })
                .map(|dir| dir.join(format!(".s.PGSQL.{}", upstream.get_port())));
            let tcp = format!("{}:{}", upstream.get_host(), upstream.get_port());
            let mode = Arc::new(AtomicU8::new(PASS));
            let proxy_mode = mode.clone();
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let server: Box<dyn Stream> = match &upstream_path {
                        Some(path) => Box::new(UnixStream::connect(path).await.expect("upstream")),
                        None => Box::new(TcpStream::connect(&tcp).await.expect("upstream")),
                    };
                    tokio::spawn(carry(client, server, proxy_mode.clone()));
                }
            });
            Proxy { dir, mode }
        }

        fn cut_next(&self, mode: u8) {
            self.mode.store(mode, Ordering::SeqCst);
        }
    }

    trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
    impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

    /// Copies both ways until either side closes, or until the armed cut drops both.
    async fn carry(mut client: UnixStream, server: Box<dyn Stream>, mode: Arc<AtomicU8>) {
        let (mut server_read, mut server_write) = tokio::io::split(server);
        let mut to_server = [0u8; 64 * 1024];
        let mut to_client = [0u8; 64 * 1024];
        loop {
            tokio::select! {
                n = client.read(&mut to_server) => match n {
                    Ok(n) if n > 0 => {
                        if mode.compare_exchange(CUT_REQUEST, PASS, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
                            return;
                        }
                        if server_write.write_all(&to_server[..n]).await.is_err() {
                            return;
                        }
                    }
                    _ => return,
                },
                n = server_read.read(&mut to_client) => match n {
                    Ok(n) if n > 0 => {
                        if mode.compare_exchange(CUT_ANSWER, PASS, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
                            return;
                        }
                        if client.write_all(&to_client[..n]).await.is_err() {
                            return;
                        }
                    }
                    _ => return,
                },
            }
        }
    }

    fn define(code: &str) -> WriteItem {
        WriteItem {
            command: Command::DefineAsset(DefineAsset {
                code: code.parse().expect("asset code"),
                scale: 2u32.try_into().expect("scale"),
            }),
            idempotency_key: format!("define-{code}"),
            fingerprint: code.as_bytes().to_vec(),
        }
    }

    async fn leader(writer: &Writer) {
        for _ in 0..200 {
            if writer.status() == WriterStatus::Leader {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the writer did not become the leader");
    }

    /// A batch whose session breaks after PostgreSQL committed it is answered as committed, and
    /// one whose statement never arrived as failed: the answer is what the log holds.
    #[tokio::test]
    async fn a_broken_session_answers_what_the_log_holds() {
        let database = TestDatabase::create().await.expect("test database");
        let options = crate::db::connect_options(database.url()).expect("options");
        let pool = read_pool(options.clone(), &PoolConfig::default());
        migrate(&pool).await.expect("migrate");
        let proxy = Proxy::start(&options);
        let config = WriterConfig {
            retry_interval: Duration::from_millis(50),
            idle_check_interval: Duration::from_secs(3600),
            ..WriterConfig::default()
        };
        let (writer, task) = Writer::spawn(options.clone().socket(&proxy.dir), config);
        leader(&writer).await;
        // The first write of a session prepares its statement: cut after that, so that the
        // answer cut is the commit's.
        writer
            .submit(define("GBP"), Origin::default())
            .await
            .expect("first write");

        proxy.cut_next(CUT_ANSWER);
        let reply = writer
            .submit(define("USD"), Origin::default())
            .await
            .expect("committed");
        assert!(
            matches!(&reply.outcome, Outcome::Accepted(e) if e.position == 2),
            "{reply:?}"
        );
        assert!(!reply.replayed);

        leader(&writer).await;
        proxy.cut_next(CUT_REQUEST);
        let lost = writer.submit(define("EUR"), Origin::default()).await;
        assert!(matches!(lost, Err(Error::CommitFailed)), "{lost:?}");

        // The writer recovered with the committed batch in its state, and the failed one gone.
        leader(&writer).await;
        let again = writer
            .submit(define("USD"), Origin::default())
            .await
            .expect("replay");
        assert!(again.replayed, "{again:?}");
        let eur = writer
            .submit(define("EUR"), Origin::default())
            .await
            .expect("retry");
        assert!(
            matches!(&eur.outcome, Outcome::Accepted(e) if e.position == 3),
            "{eur:?}"
        );
        let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&pool)
            .await
            .expect("count");
        assert_eq!(events, 3);

        drop(writer);
        task.await.expect("writer task");
        pool.close().await;
        let _ = std::fs::remove_dir_all(&proxy.dir);
        database.drop_database().await.expect("drop");
    }
}
