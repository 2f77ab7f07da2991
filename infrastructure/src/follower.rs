//! What every follower of a ledger's log shares: the projector (`projections::projector`), the
//! relays (`relays`) and the webhook deliverer (`webhooks::deliverer`). A follower keeps one
//! session, holding its advisory lock (so one process at a time follows for it), under an idle
//! timeout (so a paused follower loses the lock, as a paused writer does); it reads the log in
//! pages that must continue exactly where it stands; it waits for this process's writers to
//! commit, or polls; and when anything fails it starts over from its checkpoint, after a pause.
//! Each follower keeps only its own step.

use std::future::Future;
use std::time::Duration;

use domain::LedgerName;
use sha2::{Digest, Sha256};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use tokio::sync::{broadcast, watch};
use tracing::warn;

use crate::event_store::StoredEvent;
use crate::ledgers::{Ledger, LocalCommits};
use crate::{Error, Result};

/// How long a follower's session may send nothing before PostgreSQL ends it, releasing its lock
/// for another process's follower. A follower idle in its wait polls well within it.
pub const SESSION_IDLE_MAX: Duration = Duration::from_secs(30);

/// Every advisory lock class of the ledger's log followers, in one place: each is taken as
/// `pg_try_advisory_lock(class, object)`, a key space apart from the writer's one-number key
/// (`ledger_writer_lock_key()`, migrations 0014), except a relay's of a ledger other than
/// `default` (`Lock::relay`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockClass {
    /// The projector of a ledger's asynchronous projections; the object is the ledger
    /// (`ledger_lock_object()`).
    Projector,
    /// A relay to one sink; the object is derived from the sink's name (`sink_key`).
    Relay,
    /// The webhook deliverer; one per deployment, object 0.
    Webhooks,
}

impl LockClass {
    pub fn class(self) -> i32 {
        match self {
            Self::Projector => 0x1ed9,
            Self::Relay => 0x1ed5,
            Self::Webhooks => 0x1eda,
        }
    }
}

/// The top byte of the one-number lock of a relay of a ledger other than `default`: no writer's
/// lock key has it.
const RELAY_LOCK_TAG: i64 = 0x1e;

/// The second half of a follower's lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockObject {
    /// The ledger whose book the session works on.
    Ledger,
    Key(i32),
}

/// A follower's advisory lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lock {
    /// `pg_try_advisory_lock(class, object)`.
    Pair(LockClass, LockObject),
    /// `pg_try_advisory_lock(key)`: a relay's of a ledger other than `default`, which needs
    /// more than 32 bits (`Lock::relay`).
    Wide(i64),
}

impl Lock {
    pub const PROJECTOR: Self = Self::Pair(LockClass::Projector, LockObject::Ledger);
    pub const WEBHOOKS: Self = Self::Pair(LockClass::Webhooks, LockObject::Key(0));

    /// The lock of the relay to the sink named `sink` of `ledger`. Ledger `default` keeps
    /// `(Relay, sink_key(sink))`, the key every relay took before there were many ledgers, so
    /// that a process not yet upgraded and one upgraded still exclude each other. Another ledger
    /// takes one 64-bit key: `RELAY_LOCK_TAG` in its top byte, the sink's key's low 24 bits,
    /// then the ledger's id, so that two ledgers never share a lock.
    pub fn relay(sink: &str, ledger: &Ledger) -> Self {
        if ledger.name.is_default() {
            return Self::Pair(LockClass::Relay, LockObject::Key(sink_key(sink)));
        }
        let sink = i64::from(sink_key(sink)) & 0x00ff_ffff;
        Self::Wide((RELAY_LOCK_TAG << 56) | (sink << 32) | i64::from(ledger.id as u32))
    }

    /// The arguments of `pg_try_advisory_lock` and `pg_advisory_unlock`: numbers only.
    fn sql_args(self) -> String {
        match self {
            Self::Pair(class, LockObject::Ledger) => {
                format!("{}, public.ledger_lock_object()", class.class())
            }
            Self::Pair(class, LockObject::Key(key)) => format!("{}, {key}", class.class()),
            Self::Wide(key) => key.to_string(),
        }
    }
}

/// A relay's key of a sink: the first four bytes of the SHA-256 of the sink's name.
fn sink_key(sink: &str) -> i32 {
    let digest = Sha256::digest(sink.as_bytes());
    i32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// Takes the lock on `conn`; false when another session holds it.
pub(crate) async fn try_lock(conn: &mut PgConnection, lock: Lock) -> Result<bool> {
    let sql = format!("SELECT pg_try_advisory_lock({})", lock.sql_args());
    let locked: Option<bool> = sqlx::query_scalar(&sql).fetch_one(conn).await?;
    locked.ok_or_else(|| Error::Corrupt("the session's search path names no ledger's book".into()))
}

/// Releases it before the session closes: the server ends a closed session's backend only a
/// moment later, and until then the lock would still look held (to a replay run next).
pub(crate) async fn unlock(conn: &mut PgConnection, lock: Lock) -> Result<()> {
    let sql = format!("SELECT pg_advisory_unlock({})", lock.sql_args());
    sqlx::query(&sql).execute(conn).await?;
    Ok(())
}

/// A follower's session, holding its lock, under `SESSION_IDLE_MAX`.
pub(crate) struct Session {
    pub conn: PgConnection,
    lock: Lock,
}

impl Session {
    /// Connects as `role` (named `<role>:<ledger>`, `db::role_options`) and takes the lock;
    /// `None` when another process holds it.
    pub async fn take(options: &PgConnectOptions, role: &str, lock: Lock) -> Result<Option<Self>> {
        let options = crate::db::role_options(options, role);
        let mut conn = PgConnection::connect_with(&options).await?;
        if !try_lock(&mut conn, lock).await? {
            let _ = conn.close().await;
            return Ok(None);
        }
        // A process that stops answering (a paused VM) keeps its session, and so the lock: the
        // server ends a session that sent nothing for this long, and another process's follower
        // takes over. A healthy one speaks after every wait, and no wait is longer than
        // `WAIT_MAX`.
        sqlx::query("SELECT set_config('idle_session_timeout', $1, false)")
            .bind(format!("{}ms", SESSION_IDLE_MAX.as_millis()))
            .execute(&mut conn)
            .await?;
        Ok(Some(Self { conn, lock }))
    }

    /// Releases the lock and closes the session.
    pub async fn release(mut self) {
        let _ = unlock(&mut self.conn, self.lock).await;
        let _ = self.conn.close().await;
    }
}

/// The log is gap-free: a page that does not continue `after` exactly is not this log.
pub(crate) fn check_consecutive(after: i64, page: &[StoredEvent]) -> Result<()> {
    let (Some(first), Some(last)) = (page.first(), page.last()) else {
        return Ok(());
    };
    if first.position != after + 1 || last.position != after + page.len() as i64 {
        return Err(Error::Corrupt(format!(
            "the events after {after} are not consecutive"
        )));
    }
    Ok(())
}

/// How a follower's session ended, when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Another process's follower holds the lock.
    Locked,
    /// Nothing more for now: the process stops, or (a relay's follower) its ledger stayed idle.
    Done,
}

/// A follower's own step: follow the log for one session, until another process holds the lock,
/// there is nothing more to do, or something fails.
pub(crate) trait Follow {
    /// Its name in the log.
    const WHAT: &'static str;
    /// Whether it stands by while another process holds its lock, trying again now and then
    /// (the projector, the deliverer), or ends (a relay's follower of one ledger: its relay
    /// starts it again while the ledger has events to relay).
    const STANDS_BY: bool;
    fn follow(&mut self) -> impl Future<Output = Result<Ended>> + Send;
}

/// The pauses of `supervise`: after a session another process's lock kept out, `first`; after
/// failures in a row, from `first`, doubling up to `max`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Retry {
    pub first: Duration,
    pub max: Duration,
}

impl Retry {
    /// The same pause every time.
    pub fn every(interval: Duration) -> Self {
        Self {
            first: interval,
            max: interval,
        }
    }
}

/// Runs `follower` until the process stops, or its session ends `Done`: after a session that
/// ended (another process holds the lock, or it failed, which is logged), after a pause, again.
/// A follower that does not stand by ends after the pause that follows `Locked`.
pub(crate) async fn supervise<F: Follow>(
    follower: &mut F,
    mut stopped: watch::Receiver<bool>,
    retry: Retry,
) {
    let mut after_failure = retry.first;
    while !*stopped.borrow() {
        let (pause, locked) = match follower.follow().await {
            Ok(Ended::Done) => return,
            Ok(Ended::Locked) => (retry.first, true),
            Err(e) => {
                let pause = after_failure;
                after_failure = (after_failure * 2).min(retry.max);
                warn!(error = %e, retry_ms = pause.as_millis() as u64,
                    "{} stopped; resuming from its checkpoint", F::WHAT);
                (pause, false)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stopped.wait_for(|s| *s) => {}
        }
        if locked && !F::STANDS_BY {
            return;
        }
    }
}

/// The longest wait for events: a follower speaks to its session after each (it reads the log,
/// or pings), so it stays well within `SESSION_IDLE_MAX` whatever poll it is configured with.
pub const WAIT_MAX: Duration = Duration::from_secs(SESSION_IDLE_MAX.as_secs() / 3);

/// The commits of this process's writers that wake a follower in its wait.
pub(crate) enum Commits {
    /// No writer runs here (or they are gone): the follower polls.
    None,
    /// The committed position of the writer of the follower's ledger (the projector's).
    Position(watch::Receiver<i64>),
    /// Every writer's commits, by ledger (`LocalCommits`): of the ledger `of` only (a relay's
    /// follower), or of every ledger (`None`: the deliverer).
    Ledgers {
        notices: broadcast::Receiver<LedgerName>,
        of: Option<LedgerName>,
    },
}

impl Commits {
    /// The commits of `ledger` (of every ledger: `None`), by the writers in this process.
    pub fn of(local: Option<&LocalCommits>, ledger: Option<LedgerName>) -> Self {
        match local {
            Some(local) => Self::Ledgers {
                notices: local.subscribe(),
                of: ledger,
            },
            None => Self::None,
        }
    }

    /// The next commit the follower cares about: the ledger, when commits come by ledger and
    /// none was missed. A writer that is gone is forgotten: from then on, never.
    async fn next(&mut self) -> Option<LedgerName> {
        loop {
            let gone = match self {
                Self::None => std::future::pending().await,
                Self::Position(position) => match position.changed().await {
                    Ok(()) => return None,
                    Err(_) => true,
                },
                Self::Ledgers { notices, of } => match notices.recv().await {
                    Ok(name) if of.as_ref().is_none_or(|of| *of == name) => return Some(name),
                    Ok(_) => false,
                    Err(broadcast::error::RecvError::Lagged(_)) => return None,
                    Err(broadcast::error::RecvError::Closed) => true,
                },
            };
            if gone {
                *self = Self::None;
            }
        }
    }

    /// The position this process's writer of the ledger last committed, when commits come by
    /// position.
    pub fn head(&self) -> Option<i64> {
        match self {
            Self::Position(head) => Some(*head.borrow()),
            _ => None,
        }
    }

    /// Until this process's writer of the ledger has committed `position`: never when commits do
    /// not come by position, or the writer is gone.
    pub async fn reached(&mut self, position: i64) {
        if let Self::Position(head) = self {
            if head.wait_for(|head| *head >= position).await.is_ok() {
                return;
            }
        }
        std::future::pending().await
    }

    /// The commits noticed since the last wait, without waiting: each ledger's name, or `None`
    /// where some were missed.
    pub fn noticed(&mut self) -> Vec<Option<LedgerName>> {
        let mut noticed = Vec::new();
        if let Self::Ledgers { notices, of } = self {
            loop {
                match notices.try_recv() {
                    Ok(name) if of.as_ref().is_none_or(|of| *of == name) => {
                        noticed.push(Some(name))
                    }
                    Ok(_) => {}
                    Err(broadcast::error::TryRecvError::Lagged(_)) => noticed.push(None),
                    Err(_) => break,
                }
            }
        }
        noticed
    }
}

/// What ended a follower's wait.
pub(crate) enum Woken<T> {
    /// A writer of this process committed: in this ledger, when commits come by ledger and
    /// none was missed.
    Committed(Option<LedgerName>),
    /// Whatever else the follower waits for.
    Also(T),
    /// The poll interval passed.
    Polled,
    /// The process stops.
    Stopped,
}

/// Waits until a writer of this process commits (`commits`), `also` ends, `poll` passes (at most
/// `WAIT_MAX`), or the process stops.
pub(crate) async fn wait_for_events<T>(
    commits: &mut Commits,
    stopped: &watch::Receiver<bool>,
    poll: Duration,
    also: impl Future<Output = T>,
) -> Woken<T> {
    let mut stopped = stopped.clone();
    tokio::select! {
        committed = commits.next() => Woken::Committed(committed),
        woken = also => Woken::Also(woken),
        _ = tokio::time::sleep(poll.min(WAIT_MAX)) => Woken::Polled,
        _ = stopped.wait_for(|s| *s) => Woken::Stopped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn ledger(id: i32, name: &str) -> Ledger {
        Ledger {
            id,
            name: name.parse().unwrap(),
            schema: format!("ledger_{id}"),
            metadata: "{}".into(),
            created_at: Utc::now(),
        }
    }

    #[test]
    fn each_sink_and_ledger_has_its_own_relay_lock_and_default_keeps_the_old_one() {
        let sink = "nats://127.0.0.1:4222";
        assert_eq!(
            Lock::relay(sink, &ledger(1, "default")),
            Lock::Pair(LockClass::Relay, LockObject::Key(sink_key(sink)))
        );
        let (a, b) = (
            Lock::relay(sink, &ledger(2, "a")),
            Lock::relay(sink, &ledger(3, "b")),
        );
        assert_ne!(a, b);
        assert_ne!(a, Lock::relay("amqp://127.0.0.1:5672/%2f", &ledger(2, "a")));
        let Lock::Wide(key) = a else {
            panic!("a 64-bit key")
        };
        assert_eq!(key >> 56, RELAY_LOCK_TAG);
        assert_eq!(key & 0xffff_ffff, 2);
    }

    #[test]
    fn the_lock_keys_are_those_of_earlier_releases() {
        assert_eq!(
            Lock::PROJECTOR.sql_args(),
            "7897, public.ledger_lock_object()"
        );
        assert_eq!(Lock::WEBHOOKS.sql_args(), "7898, 0");
        let sink = "nats://127.0.0.1:4222";
        let default = Lock::relay(sink, &ledger(1, "default"));
        assert_eq!(default.sql_args(), format!("7893, {}", sink_key(sink)));
    }
}
