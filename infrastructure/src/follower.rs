//! What every follower of a ledger's log shares: the projector (`projections::projector`), and
//! the relays and the webhook deliverer as they come over to it. A follower keeps one session,
//! holding its advisory lock (so one process at a time follows for it), under an idle timeout
//! (so a paused follower loses the lock, as a paused writer does); it reads the log in pages that
//! must continue exactly where it stands; it waits for this process's writer to commit, or polls;
//! and when anything fails it starts over from its checkpoint, after a pause. Each follower keeps
//! only its own step.

use std::future::Future;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use tokio::sync::watch;
use tracing::warn;

use crate::event_store::StoredEvent;
use crate::{Error, Result};

/// How long a follower's session may send nothing before PostgreSQL ends it, releasing its lock
/// for another process's follower. A follower idle in its wait polls well within it.
pub const SESSION_IDLE_MAX: Duration = Duration::from_secs(30);

/// Every advisory lock class of the ledger's log followers, in one place: each is taken as
/// `pg_try_advisory_lock(class, object)`, a key space apart from the writer's one-number key
/// (`ledger_writer_lock_key()`, migrations 0014).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockClass {
    /// The projector of a ledger's asynchronous projections; the object is the ledger
    /// (`ledger_lock_object()`).
    Projector,
    /// A relay to one sink; the object is derived from the sink's name.
    Relay,
    /// The webhook deliverer; one per deployment.
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

/// The second half of a follower's lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockObject {
    /// The ledger whose book the session works on.
    Ledger,
    Key(i32),
}

impl LockObject {
    fn sql(self) -> String {
        match self {
            Self::Ledger => "public.ledger_lock_object()".to_owned(),
            Self::Key(key) => key.to_string(),
        }
    }
}

/// Takes the lock on `conn`; false when another session holds it.
pub(crate) async fn try_lock(
    conn: &mut PgConnection,
    class: LockClass,
    object: LockObject,
) -> Result<bool> {
    let locked: Option<bool> = sqlx::query_scalar(&format!(
        "SELECT pg_try_advisory_lock($1, {})",
        object.sql()
    ))
    .bind(class.class())
    .fetch_one(conn)
    .await?;
    locked.ok_or_else(|| Error::Corrupt("the session's search path names no ledger's book".into()))
}

/// Releases it before the session closes: the server ends a closed session's backend only a
/// moment later, and until then the lock would still look held (to a replay run next).
pub(crate) async fn unlock(
    conn: &mut PgConnection,
    class: LockClass,
    object: LockObject,
) -> Result<()> {
    sqlx::query(&format!("SELECT pg_advisory_unlock($1, {})", object.sql()))
        .bind(class.class())
        .execute(conn)
        .await?;
    Ok(())
}

/// A follower's session, holding its lock, under `SESSION_IDLE_MAX`.
pub(crate) struct Session {
    pub conn: PgConnection,
    class: LockClass,
    object: LockObject,
}

impl Session {
    /// Connects as `role` and takes the lock; `None` when another process holds it.
    pub async fn take(
        options: &PgConnectOptions,
        role: &str,
        class: LockClass,
        object: LockObject,
    ) -> Result<Option<Self>> {
        let options = crate::db::role_options(options, role);
        let mut conn = PgConnection::connect_with(&options).await?;
        if !try_lock(&mut conn, class, object).await? {
            let _ = conn.close().await;
            return Ok(None);
        }
        sqlx::query("SELECT set_config('idle_session_timeout', $1, false)")
            .bind(format!("{}ms", SESSION_IDLE_MAX.as_millis()))
            .execute(&mut conn)
            .await?;
        Ok(Some(Self {
            conn,
            class,
            object,
        }))
    }

    /// Releases the lock and closes the session.
    pub async fn release(mut self) {
        let _ = unlock(&mut self.conn, self.class, self.object).await;
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

/// A follower's own step: follow the log until another process holds the lock (`Ok`), the
/// process stops (`Ok`), or something fails.
pub(crate) trait Follow {
    /// Its name in the log.
    const WHAT: &'static str;
    fn follow(&mut self) -> impl Future<Output = Result<()>> + Send;
}

/// Runs `follower` until the process stops: each time it ends (another process holds the lock,
/// or it failed, which is logged), after `retry_interval`, again.
pub(crate) async fn supervise<F: Follow>(
    follower: &mut F,
    mut stopped: watch::Receiver<bool>,
    retry_interval: Duration,
) {
    while !*stopped.borrow() {
        if let Err(e) = follower.follow().await {
            warn!(error = %e, "{} stopped; resuming from its checkpoint", F::WHAT);
        }
        tokio::select! {
            _ = tokio::time::sleep(retry_interval) => {}
            _ = stopped.wait_for(|s| *s) => {}
        }
    }
}

/// Waits until this process's writer commits (when it runs here), for `poll`, or until the
/// process stops. A writer that is gone is forgotten: from then on, polls.
pub(crate) async fn wait_for_events(
    commits: &mut Option<watch::Receiver<i64>>,
    stopped: &watch::Receiver<bool>,
    poll: Duration,
) {
    let poll = tokio::time::sleep(poll);
    let mut stopped = stopped.clone();
    let stop = stopped.wait_for(|s| *s);
    match commits {
        Some(watching) => {
            tokio::select! {
                changed = watching.changed() => {
                    if changed.is_err() {
                        *commits = None;
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
