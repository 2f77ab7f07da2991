//! Relays: every ledger's log delivered to a message broker, each ledger's events in its position
//! order, each body the same JSON as an item of `GET /v1/ledgers/{ledger}/events` (hash
//! included, so a consumer can verify the ledger's chain from the messages alone), each message
//! naming its ledger (the NATS subject and the AMQP routing key start with it, the message id is
//! `<ledger>:<position>`). A relay is one more consumer of each book: it pages through a ledger's
//! log from its own checkpoint (kept beside that book's asynchronous projections', named
//! `relay:<sink>`), publishes with broker confirms, and moves the checkpoint only past events
//! the broker confirmed. After a crash, a broker outage or a restart it resumes from that
//! checkpoint (or past it, where the broker shows that it holds every position up to a later
//! one): events after it may be published again (at least once; the position is the message id),
//! none is skipped, and nothing is published past an unconfirmed gap, because any failure ends
//! the session and the next one starts again from the checkpoint.
//!
//! A relay to a sink is one task that looks over the ledgers (`scan_interval`, or at once when a
//! writer of this process commits) and runs a follower for each ledger with events past its
//! checkpoint; a follower ends once its ledger has been idle for `follower_idle_stop`, so an idle
//! ledger costs no task, session or broker connection, and a ledger created later is found by
//! the next scan. One follower per (sink, ledger) works at a time across all processes: the
//! session that holds the pair's advisory lock (`follower::Lock::relay`) is the one that reads
//! the ledger's log and moves its checkpoint, so a follower that lost its session can no longer
//! move it. A follower is a log follower like the projector (`follower`): its session, its
//! wait, its retries after a failure are theirs; publishing is its own.

pub mod amqp;
pub mod nats;

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use domain::LedgerName;
use sqlx::postgres::PgConnectOptions;
use sqlx::{PgConnection, PgPool, Row};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn, Instrument};

use crate::db;
use crate::event_store::{self, Encode, StoredEvent};
use crate::follower::{self, Commits, Ended, Lock, Woken};
use crate::ledgers::{self, Ledger, LocalCommits};
use crate::projections::checkpoints;
use crate::{Error, Result};

/// What every relay's checkpoint name starts with.
pub const CHECKPOINT_PREFIX: &str = "relay:";

#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The broker: `amqp://…` (RabbitMQ) or `nats://…` (NATS JetStream).
    pub to: String,
    /// The sink's name, which names its checkpoint and its lock: by default the URL without
    /// credentials or query, so that two relays to the same broker share one checkpoint.
    pub name: String,
    /// Messages published and not yet confirmed by the broker, at most.
    pub in_flight_max: usize,
    /// Events read from the log per query, at most.
    pub page_events_max: i64,
    /// How often a ledger's follower looks for new events when nothing in this process says
    /// there are some.
    pub idle_poll_interval: Duration,
    /// How often the relay looks over every ledger for events past its checkpoint (a ledger
    /// created later, or written by another process), to start a follower for it.
    pub scan_interval: Duration,
    /// How long a ledger's follower waits for new events before it ends, freeing its session,
    /// lock and broker connection; the next scan (or commit here) starts it again.
    pub follower_idle_stop: Duration,
    /// Followers (ledgers relayed at once, each with a session and a broker connection) at
    /// most; while more ledgers have events to relay, a follower ends as soon as its ledger is
    /// caught up, and the next scan starts one for another.
    pub followers_max: usize,
    /// The first wait after a failed session (and the wait after a session another process's
    /// lock kept out); it doubles up to `retry_interval_max`.
    pub retry_interval_min: Duration,
    pub retry_interval_max: Duration,
}

impl RelayConfig {
    pub const IN_FLIGHT_MAX: usize = 1_000;
    pub const PAGE_EVENTS_MAX: i64 = 1_000;
    pub const FOLLOWERS_MAX: usize = 16;

    /// A relay to `to` with the default bounds; the URL must name a broker kind this ledger
    /// relays to.
    pub fn new(to: &str) -> Result<Self> {
        let name = sink_name(to)?;
        Ok(Self {
            to: to.to_owned(),
            name,
            in_flight_max: Self::IN_FLIGHT_MAX,
            page_events_max: Self::PAGE_EVENTS_MAX,
            idle_poll_interval: Duration::from_millis(50),
            scan_interval: Duration::from_secs(1),
            follower_idle_stop: Duration::from_secs(5),
            followers_max: Self::FOLLOWERS_MAX,
            retry_interval_min: Duration::from_millis(200),
            retry_interval_max: Duration::from_secs(5),
        })
    }

    fn checkpoint_name(&self) -> String {
        format!("{CHECKPOINT_PREFIX}{}", self.name)
    }
}

/// The URL without credentials, query or fragment: `amqp://host:5672/vhost`.
fn sink_name(to: &str) -> Result<String> {
    let (scheme, rest) = to
        .split_once("://")
        .ok_or_else(|| Error::Relay(format!("{to:?} is not a URL: use amqp://… or nats://…")))?;
    if !matches!(scheme, "amqp" | "nats") {
        return Err(Error::Relay(format!(
            "cannot relay to {scheme}://: use amqp:// (RabbitMQ) or nats:// (NATS JetStream)"
        )));
    }
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let host_and_path = rest.rsplit_once('@').map_or(rest, |(_, after)| after);
    Ok(format!("{scheme}://{host_and_path}"))
}

/// One event as a broker gets it.
pub struct Message<'a> {
    pub position: i64,
    pub event_type: &'a str,
    /// The first segment of each account the event touches, each once (`alice` of
    /// `alice:cash`), for routing.
    pub account_roots: Vec<&'a str>,
    pub body: Vec<u8>,
}

/// Where a session starts publishing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    /// The position after which to publish.
    pub after: i64,
    /// Set when the broker holds positions past `after` with a hole among them: the session
    /// publishes up to this position again (what is stored is dropped as a duplicate, the hole is
    /// filled) and then ends, so that the next one starts from a stream that has no hole.
    pub refill_through: Option<i64>,
}

impl Resume {
    pub fn after(after: i64) -> Self {
        Self {
            after,
            refill_through: None,
        }
    }
}

/// A broker's answer to one publish, still to come.
pub type Confirm = Pin<Box<dyn Future<Output = Result<()>> + Send>>;

/// A connection to a broker, ready to publish one ledger's events.
enum Sink {
    Amqp(amqp::AmqpSink),
    Nats(nats::NatsSink),
}

impl Sink {
    async fn connect(to: &str, ledger: &LedgerName) -> Result<Self> {
        if to.starts_with("amqp://") {
            Ok(Self::Amqp(amqp::AmqpSink::connect(to, ledger).await?))
        } else {
            Ok(Self::Nats(nats::NatsSink::connect(to, ledger).await?))
        }
    }

    /// Where to resume from the relay's `checkpoint`: past it when the broker shows that it
    /// holds every position up to a later one (JetStream keeps the stream; RabbitMQ's queues are
    /// consumed, so it cannot).
    async fn resume(&mut self, checkpoint: i64) -> Result<Resume> {
        match self {
            Self::Amqp(_) => Ok(Resume::after(checkpoint)),
            Self::Nats(sink) => sink.resume(checkpoint).await,
        }
    }

    async fn publish(&mut self, message: Message<'_>) -> Result<Confirm> {
        match self {
            Self::Amqp(sink) => sink.publish(&message).await,
            Self::Nats(sink) => sink.publish(message).await,
        }
    }

    async fn close(self) {
        match self {
            Self::Amqp(sink) => sink.close().await,
            Self::Nats(sink) => sink.close().await,
        }
    }
}

/// A relay to one sink, as a task: it walks the ledgers and runs a follower for each that has
/// events past its checkpoint.
pub struct Relay {
    /// The database; each follower's session works on its ledger's book.
    connect: PgConnectOptions,
    config: RelayConfig,
    encode: Encode,
    /// The commits of the writers in this process: they wake the relay as soon as there is more.
    commits: Option<LocalCommits>,
    stopped: watch::Receiver<bool>,
}

/// A running relay: its instruments, and how to stop it.
pub struct RelayHandle {
    pub name: String,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RelayHandle {
    /// Stops the relay once the messages in flight are confirmed, releasing its locks.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        let _ = self.task.await;
    }
}

impl Relay {
    /// Starts the relay to `config.to` of every ledger of the database `connect` names.
    pub fn spawn(
        connect: PgConnectOptions,
        config: RelayConfig,
        encode: Encode,
        commits: Option<LocalCommits>,
    ) -> RelayHandle {
        let (stop, stopped) = watch::channel(false);
        let name = config.name.clone();
        let relay = Relay {
            connect,
            config,
            encode,
            commits,
            stopped,
        };
        RelayHandle {
            name,
            stop,
            task: tokio::spawn(relay.run()),
        }
    }

    /// Every `scan_interval` (and whenever a writer of this process commits), starts a follower
    /// for each ledger that has events past this sink's checkpoint and none running. A follower
    /// ends once its ledger stays idle, so an idle ledger costs no task, session or broker
    /// connection.
    async fn run(self) {
        let registry = db::read_pool(
            self.connect.clone().options([("search_path", "public")]),
            &db::PoolConfig {
                max_connections: 1,
                ..db::PoolConfig::default()
            },
        );
        let mut commits = Commits::of(self.commits.as_ref(), None);
        let mut running = Running::default();
        let mut known: HashMap<LedgerName, Ledger> = HashMap::new();
        let mut pending: Vec<Ledger> = Vec::new();
        let mut scan_at = tokio::time::Instant::now();
        while !*self.stopped.borrow() {
            let mut due: Vec<Ledger> = std::mem::take(&mut pending);
            if tokio::time::Instant::now() >= scan_at {
                scan_at = tokio::time::Instant::now() + self.config.scan_interval;
                due.extend(self.scan(&registry, &mut known).await);
            }
            self.start(due, &mut running);
            let until_scan = scan_at.saturating_duration_since(tokio::time::Instant::now());
            let follower_ended = async {
                match running.tasks.join_next().await {
                    Some(ended) => ended.ok(),
                    None => std::future::pending().await,
                }
            };
            let woken =
                follower::wait_for_events(&mut commits, &self.stopped, until_scan, follower_ended)
                    .await;
            match woken {
                // A ledger this process writes: relay it now, without waiting for a scan.
                Woken::Committed(Some(name)) if !running.ledgers.contains(&name) => {
                    match known.get(&name) {
                        Some(ledger) => pending.push(ledger.clone()),
                        None => scan_at = tokio::time::Instant::now(),
                    }
                }
                // Commits were missed: look at every ledger.
                Woken::Committed(None) => scan_at = tokio::time::Instant::now(),
                Woken::Also(Some(name)) => {
                    running.ledgers.remove(&name);
                }
                _ => {}
            }
        }
        while running.tasks.join_next().await.is_some() {}
        registry.close().await;
    }

    /// The ledgers with events past this sink's checkpoint, which it then knows by name.
    async fn scan(
        &self,
        registry: &PgPool,
        known: &mut HashMap<LedgerName, Ledger>,
    ) -> Vec<Ledger> {
        match behind(registry, &self.config.checkpoint_name()).await {
            Ok(ledgers) => {
                for ledger in &ledgers {
                    known.insert(ledger.name.clone(), ledger.clone());
                }
                ledgers
            }
            Err(e) => {
                warn!(sink = %self.config.name, error = %e,
                    "relay: cannot look for ledgers with events to relay");
                Vec::new()
            }
        }
    }

    /// Starts a follower for each `due` ledger that has none running, up to `followers_max`;
    /// while others wait, the running ones end as soon as they have caught up.
    fn start(&self, due: Vec<Ledger>, running: &mut Running) {
        let mut waiting = false;
        for ledger in due {
            if running.ledgers.contains(&ledger.name) {
                continue;
            }
            if running.ledgers.len() >= self.config.followers_max {
                waiting = true;
                continue;
            }
            running.ledgers.insert(ledger.name.clone());
            let follower = Follower {
                options: ledgers::book_options(&self.connect, &ledger),
                commits: Commits::of(self.commits.as_ref(), Some(ledger.name.clone())),
                ledger,
                config: self.config.clone(),
                encode: self.encode,
                stopped: self.stopped.clone(),
                crowded: running.crowded.clone(),
            };
            running.tasks.spawn(follower.run());
        }
        running.crowded.store(waiting, Ordering::Relaxed);
    }
}

/// A relay's followers, each of one ledger.
#[derive(Default)]
struct Running {
    /// Each ends with its ledger's name.
    tasks: JoinSet<LedgerName>,
    ledgers: HashSet<LedgerName>,
    /// Set while a ledger waits for a follower and `followers_max` run: they then end as soon
    /// as they have caught up, rather than after `follower_idle_stop`.
    crowded: Arc<AtomicBool>,
}

/// The ledgers whose log goes past the checkpoint `checkpoint` (one sink's), or that has no such
/// checkpoint yet while its log has events.
async fn behind(registry: &PgPool, checkpoint: &str) -> Result<Vec<Ledger>> {
    let rows = ledgers::across_books(
        registry,
        "SELECT h.position AS head,
                COALESCE((SELECT c.position FROM {book}projection_checkpoints c
                          WHERE c.name = $1), 0) AS relayed
         FROM {book}projection_head h",
        checkpoint,
    )
    .await?;
    let mut behind = Vec::new();
    for (ledger, row) in rows {
        let head: i64 = row.try_get("head")?;
        let relayed: i64 = row.try_get("relayed")?;
        if head > relayed {
            behind.push(ledger);
        }
    }
    Ok(behind)
}

/// The relay of one ledger to one sink, while it has events to relay.
struct Follower {
    /// A session on the ledger's book.
    options: PgConnectOptions,
    ledger: Ledger,
    config: RelayConfig,
    encode: Encode,
    /// Commits of this process's writer of the ledger: they wake the follower.
    commits: Commits,
    stopped: watch::Receiver<bool>,
    /// Set when other ledgers wait for a follower: end as soon as caught up.
    crowded: Arc<AtomicBool>,
}

impl follower::Follow for Follower {
    const WHAT: &'static str = "relay";
    /// Another process relays this ledger to this sink: the relay starts this follower again
    /// while the ledger has events past the checkpoint.
    const STANDS_BY: bool = false;

    async fn follow(&mut self) -> Result<Ended> {
        let lock = Lock::relay(&self.config.name, &self.ledger);
        let session = follower::Session::take(&self.options, "ledger-relay", lock).await?;
        let Some(mut session) = session else {
            return Ok(Ended::Locked);
        };
        let result = self.publish_log(&mut session.conn).await;
        if result.is_ok() {
            session.release().await;
        }
        result
    }
}

impl Follower {
    /// Relays the ledger, after failures again, until it stays idle or the relay stops; its
    /// ledger's name.
    async fn run(mut self) -> LedgerName {
        let span =
            tracing::info_span!("relay", sink = %self.config.name, ledger = %self.ledger.name);
        let stopped = self.stopped.clone();
        let retry = follower::Retry {
            first: self.config.retry_interval_min,
            max: self.config.retry_interval_max,
        };
        follower::supervise(&mut self, stopped, retry)
            .instrument(span)
            .await;
        self.ledger.name
    }

    /// Connects to the broker and publishes the ledger's log from the checkpoint, on `conn`
    /// that holds the (sink, ledger) lock, until the ledger stays idle, the relay stops, or an
    /// error.
    async fn publish_log(&mut self, conn: &mut PgConnection) -> Result<Ended> {
        let name = self.config.checkpoint_name();
        let mut position = checkpoints::open(&mut *conn, &name).await?;
        let mut sink = Sink::connect(&self.config.to, &self.ledger.name).await?;
        // What the broker holds past the checkpoint (a crash between its confirm and our
        // checkpoint) is not published again, once it shows there is no hole in it.
        let resume = sink.resume(position).await?;
        self.checkpoint(conn, &name, &mut position, resume.after)
            .await?;
        info!(
            position,
            refill_through = resume.refill_through,
            "relay following the ledger's log"
        );
        // Pages are published back to back: while the broker confirms one, the next is read and
        // published, up to `in_flight_max` unconfirmed. The checkpoint follows what is confirmed.
        let mut in_flight = InFlight::after(position);
        let mut published = position;
        let refilled = |published: i64| resume.refill_through.is_some_and(|end| published >= end);
        let mut idle_since = tokio::time::Instant::now();
        while !*self.stopped.borrow() && !refilled(published) {
            let page =
                event_store::page(&mut *conn, published, self.config.page_events_max).await?;
            let Some(last) = page.last().map(|e| e.position) else {
                in_flight.confirm_all().await?;
                self.checkpoint(conn, &name, &mut position, in_flight.confirmed)
                    .await?;
                if idle_since.elapsed() >= self.config.follower_idle_stop
                    || self.crowded.load(Ordering::Relaxed)
                {
                    break;
                }
                self.wait_for_events().await;
                continue;
            };
            idle_since = tokio::time::Instant::now();
            follower::check_consecutive(published, &page)?;
            self.publish_page(&mut sink, &page, &mut in_flight).await?;
            published = last;
            self.checkpoint(conn, &name, &mut position, in_flight.confirmed)
                .await?;
        }
        in_flight.confirm_all().await?;
        self.checkpoint(conn, &name, &mut position, in_flight.confirmed)
            .await?;
        sink.close().await;
        Ok(Ended::Done)
    }

    /// Moves the checkpoint from `position` to `confirmed`, if the broker confirmed more.
    async fn checkpoint(
        &self,
        conn: &mut PgConnection,
        name: &str,
        position: &mut i64,
        confirmed: i64,
    ) -> Result<()> {
        if confirmed > *position {
            checkpoints::advance(conn, name, *position, confirmed).await?;
            *position = confirmed;
        }
        Ok(())
    }

    /// Publishes a page in order, keeping at most `in_flight_max` messages unconfirmed. Any
    /// refusal or failure is an error: what was not confirmed is then published again from the
    /// checkpoint by the next session.
    async fn publish_page(
        &self,
        sink: &mut Sink,
        page: &[StoredEvent],
        in_flight: &mut InFlight,
    ) -> Result<()> {
        for stored in page {
            while in_flight.confirms.len() >= self.config.in_flight_max {
                in_flight.confirm_oldest().await?;
            }
            let event = stored.decode()?;
            let message = Message {
                position: stored.position,
                event_type: &stored.event_type,
                account_roots: account_roots(&event),
                body: (self.encode)(stored)?,
            };
            let confirm = sink.publish(message).await?;
            in_flight.confirms.push_back((stored.position, confirm));
        }
        Ok(())
    }

    /// Waits until the ledger's log may have grown, or the relay stops: woken by this process's
    /// writer of the ledger when there is one, and in any case after `idle_poll_interval` (the
    /// writer may be another process).
    async fn wait_for_events(&mut self) {
        let poll = self.config.idle_poll_interval;
        let nothing_else = std::future::pending::<()>();
        follower::wait_for_events(&mut self.commits, &self.stopped, poll, nothing_else).await;
    }
}

/// Messages published and not yet confirmed, oldest first, with their positions, and the last
/// position up to which the broker confirmed everything.
struct InFlight {
    confirms: VecDeque<(i64, Confirm)>,
    confirmed: i64,
}

impl InFlight {
    fn after(position: i64) -> Self {
        Self {
            confirms: VecDeque::new(),
            confirmed: position,
        }
    }

    /// Waits for the broker's answer to the oldest message: confirmed, everything up to it is.
    async fn confirm_oldest(&mut self) -> Result<()> {
        if let Some((position, confirm)) = self.confirms.pop_front() {
            confirm.await?;
            self.confirmed = position;
        }
        Ok(())
    }

    async fn confirm_all(&mut self) -> Result<()> {
        while !self.confirms.is_empty() {
            self.confirm_oldest().await?;
        }
        Ok(())
    }
}

/// The first segment of each account the event touches, each once.
fn account_roots(event: &domain::Event) -> Vec<&str> {
    let mut roots: Vec<&str> = Vec::new();
    for account in event.accounts_touched() {
        let root = account.as_str().split(':').next().unwrap_or_default();
        if !roots.contains(&root) {
            roots.push(root);
        }
    }
    roots
}

/// One relay's place in one ledger's log, from its checkpoint.
#[derive(Debug, Clone)]
pub struct RelayStatus {
    pub sink: String,
    pub ledger: LedgerName,
    pub position: i64,
    pub lag_events: i64,
    /// How long ago the oldest event not yet confirmed by the broker was recorded (0: none).
    pub lag_ms: i64,
}

/// Every relay's place in every ledger, from the checkpoints (whichever process runs it): a
/// snapshot per book, read through the registry's pool.
pub async fn statuses(registry: &PgPool) -> Result<Vec<RelayStatus>> {
    let rows = ledgers::across_books(
        registry,
        "SELECT c.name, c.position, h.position AS head,
                (SELECT recorded_at FROM {book}events WHERE position = c.position + 1) AS oldest
         FROM {book}projection_checkpoints c, {book}projection_head h
         WHERE starts_with(c.name, $1)",
        CHECKPOINT_PREFIX,
    )
    .await?;
    let now = Utc::now();
    let mut statuses = rows
        .into_iter()
        .map(|(ledger, row)| {
            let name: String = row.try_get("name")?;
            let position: i64 = row.try_get("position")?;
            let head: i64 = row.try_get("head")?;
            let oldest: Option<chrono::DateTime<Utc>> = row.try_get("oldest")?;
            Ok(RelayStatus {
                sink: name
                    .strip_prefix(CHECKPOINT_PREFIX)
                    .unwrap_or(&name)
                    .to_owned(),
                ledger: ledger.name,
                position,
                lag_events: (head - position).max(0),
                lag_ms: oldest.map_or(0, |at| (now - at).num_milliseconds().max(0)),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    statuses.sort_by(|a, b| (&a.sink, &a.ledger).cmp(&(&b.sink, &b.ledger)));
    Ok(statuses)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sink_is_named_by_its_url_without_credentials_or_query() {
        assert_eq!(
            sink_name("amqp://guest:secret@127.0.0.1:5672/%2f?heartbeat=10").unwrap(),
            "amqp://127.0.0.1:5672/%2f"
        );
        assert_eq!(
            sink_name("nats://127.0.0.1:4222").unwrap(),
            "nats://127.0.0.1:4222"
        );
        assert!(sink_name("kafka://127.0.0.1:9092").is_err());
        assert!(sink_name("127.0.0.1:5672").is_err());
    }
}
