//! Relays: the log delivered to a message broker, every event in position order, each body the
//! same JSON as an item of `GET /v1/events` (hash included, so a consumer can verify the chain
//! from the messages alone). A relay is one more consumer of the event store: it pages through
//! the log from its own checkpoint (kept beside the asynchronous projections', named
//! `relay:<sink>`), publishes with broker confirms, and moves the checkpoint only past events
//! the broker confirmed. After a crash, a broker outage or a restart it resumes from that
//! checkpoint (or past it, where the broker shows that it holds every position up to a later
//! one): events after it may be published again (at least once; the position is the message id),
//! none is skipped, and nothing is published past an unconfirmed gap, because any failure ends
//! the session and the next one starts again from the checkpoint.
//!
//! One relay per sink works at a time across all processes: the session that holds the sink's
//! advisory lock is the one that reads the log and moves the checkpoint, so a relay that lost
//! its session can no longer move it.

pub mod amqp;
pub mod nats;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use chrono::Utc;
use sha2::{Digest, Sha256};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::event_store::{self, Encode, StoredEvent};
use crate::projections::checkpoints;
use crate::{Error, Result};

/// A relay's advisory locks, `(RELAY_LOCK_CLASS, hash of the sink's name)`: a key space apart
/// from the writer's and the projector's.
const RELAY_LOCK_CLASS: i32 = 0x1ed5;

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
    /// How often to look for new events when nothing in this process says there are some.
    pub idle_poll_interval: Duration,
    /// The first wait after a failed session; it doubles up to `retry_interval_max`.
    pub retry_interval_min: Duration,
    pub retry_interval_max: Duration,
}

impl RelayConfig {
    pub const IN_FLIGHT_MAX: usize = 1_000;
    pub const PAGE_EVENTS_MAX: i64 = 1_000;

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

/// A connection to a broker, ready to publish.
enum Sink {
    Amqp(amqp::AmqpSink),
    Nats(nats::NatsSink),
}

impl Sink {
    async fn connect(to: &str) -> Result<Self> {
        if to.starts_with("amqp://") {
            Ok(Self::Amqp(amqp::AmqpSink::connect(to).await?))
        } else {
            Ok(Self::Nats(nats::NatsSink::connect(to).await?))
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

/// A relay to one sink, as a task.
pub struct Relay {
    connect: PgConnectOptions,
    config: RelayConfig,
    encode: Encode,
    /// The writer's committed position, when the writer runs in this process: it wakes the
    /// relay as soon as there is more.
    commits: Option<watch::Receiver<i64>>,
    stopped: watch::Receiver<bool>,
}

/// A running relay: its instruments, and how to stop it.
pub struct RelayHandle {
    pub name: String,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RelayHandle {
    /// Stops the relay once the messages in flight are confirmed, releasing its lock.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        let _ = self.task.await;
    }
}

impl Relay {
    pub fn spawn(
        connect: PgConnectOptions,
        config: RelayConfig,
        encode: Encode,
        commits: Option<watch::Receiver<i64>>,
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

    async fn run(mut self) {
        let mut retry = self.config.retry_interval_min;
        while !*self.stopped.borrow() {
            match self.follow().await {
                // Stopped, or another process relays to this sink: wait as after a success.
                Ok(()) => retry = self.config.retry_interval_min,
                Err(e) => {
                    warn!(sink = %self.config.name, error = %e, retry_ms = retry.as_millis() as u64,
                        "relay stopped; resuming from its checkpoint");
                }
            }
            let mut stopped = self.stopped.clone();
            tokio::select! {
                _ = tokio::time::sleep(retry) => {}
                _ = stopped.wait_for(|s| *s) => {}
            }
            retry = (retry * 2).min(self.config.retry_interval_max);
        }
    }

    /// Takes the sink's lock, connects to the broker and publishes the log from the checkpoint
    /// until an error. `Ok` when another process holds the lock, or when this one stops.
    async fn follow(&mut self) -> Result<()> {
        let options = crate::db::role_options(&self.connect, "ledger-relay");
        let mut conn = PgConnection::connect_with(&options).await?;
        let lock = lock_key(&self.config.name);
        if !try_lock(&mut conn, lock).await? {
            let _ = conn.close().await;
            return Ok(());
        }
        let name = self.config.checkpoint_name();
        let mut position = checkpoints::open(&mut conn, &name).await?;
        let mut sink = Sink::connect(&self.config.to).await?;
        // What the broker holds past the checkpoint (a crash between its confirm and our
        // checkpoint) is not published again, once it shows there is no hole in it.
        let resume = sink.resume(position).await?;
        self.checkpoint(&mut conn, &name, &mut position, resume.after)
            .await?;
        info!(sink = %self.config.name, position, refill_through = resume.refill_through,
            "relay following the log");
        // Pages are published back to back: while the broker confirms one, the next is read and
        // published, up to `in_flight_max` unconfirmed. The checkpoint follows what is confirmed.
        let mut in_flight = InFlight::after(position);
        let mut published = position;
        let refilled = |published: i64| resume.refill_through.is_some_and(|end| published >= end);
        while !*self.stopped.borrow() && !refilled(published) {
            let page = event_store::page(&mut conn, published, self.config.page_events_max).await?;
            let Some(last) = page.last().map(|e| e.position) else {
                in_flight.confirm_all().await?;
                self.checkpoint(&mut conn, &name, &mut position, in_flight.confirmed)
                    .await?;
                self.wait_for_events(published).await;
                continue;
            };
            if page[0].position != published + 1 || last != published + page.len() as i64 {
                return Err(Error::Corrupt(format!(
                    "the events after {published} are not consecutive"
                )));
            }
            self.publish_page(&mut sink, &page, &mut in_flight).await?;
            published = last;
            self.checkpoint(&mut conn, &name, &mut position, in_flight.confirmed)
                .await?;
        }
        in_flight.confirm_all().await?;
        self.checkpoint(&mut conn, &name, &mut position, in_flight.confirmed)
            .await?;
        sink.close().await;
        unlock(&mut conn, lock).await?;
        let _ = conn.close().await;
        Ok(())
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

    /// Waits until the log may have grown past `position`, or the relay stops: woken by this
    /// process's writer when it has one, and in any case after `idle_poll_interval` (the writer
    /// may be another process).
    async fn wait_for_events(&mut self, position: i64) {
        let mut stopped = self.stopped.clone();
        let poll = tokio::time::sleep(self.config.idle_poll_interval);
        let committed = async {
            match &mut self.commits {
                Some(commits) => commits.wait_for(|head| *head > position).await.is_ok(),
                None => false,
            }
        };
        tokio::select! {
            woken = committed => {
                if !woken {
                    // The writer is gone (the process is stopping): poll from now on.
                    self.commits = None;
                }
            }
            _ = poll => {}
            _ = stopped.wait_for(|s| *s) => {}
        }
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

/// The second half of the sink's lock key: the first four bytes of the SHA-256 of its name.
fn lock_key(name: &str) -> i32 {
    let digest = Sha256::digest(name.as_bytes());
    i32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

async fn try_lock(conn: &mut PgConnection, key: i32) -> Result<bool> {
    Ok(sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
        .bind(RELAY_LOCK_CLASS)
        .bind(key)
        .fetch_one(conn)
        .await?)
}

async fn unlock(conn: &mut PgConnection, key: i32) -> Result<()> {
    sqlx::query("SELECT pg_advisory_unlock($1, $2)")
        .bind(RELAY_LOCK_CLASS)
        .bind(key)
        .execute(conn)
        .await?;
    Ok(())
}

/// One relay's place in the log, from its checkpoint.
#[derive(Debug, Clone)]
pub struct RelayStatus {
    pub sink: String,
    pub position: i64,
    pub lag_events: i64,
    /// How long ago the oldest event not yet confirmed by the broker was recorded (0: none).
    pub lag_ms: i64,
}

/// Every relay's place, from the checkpoints (whichever process runs it), in one snapshot.
pub async fn statuses(executor: impl sqlx::PgExecutor<'_>) -> Result<Vec<RelayStatus>> {
    let rows: Vec<(String, i64, i64, Option<chrono::DateTime<Utc>>)> = sqlx::query_as(
        "SELECT c.name, c.position, h.position,
                (SELECT recorded_at FROM events WHERE position = c.position + 1)
         FROM projection_checkpoints c, projection_head h
         WHERE c.name LIKE 'relay:%' ORDER BY c.name",
    )
    .fetch_all(executor)
    .await?;
    let now = Utc::now();
    Ok(rows
        .into_iter()
        .map(|(name, position, head, oldest)| RelayStatus {
            sink: name
                .strip_prefix(CHECKPOINT_PREFIX)
                .unwrap_or(&name)
                .to_owned(),
            position,
            lag_events: (head - position).max(0),
            lag_ms: oldest.map_or(0, |at| (now - at).num_milliseconds().max(0)),
        })
        .collect())
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
