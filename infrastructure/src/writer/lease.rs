//! The writer's lock and lease, and how other nodes find the writer.
//!
//! - **Lock.** One session holds the PostgreSQL advisory lock of the ledger it writes
//!   (`ledger_writer_lock_key()`, of the book the session's search path names: `WRITER_LOCK_KEY`
//!   for `default`); only the process that holds it writes, and it writes on that very session,
//!   so losing the session is losing the right to write. Each ledger's lock is its own: different
//!   ledgers' writers may be different processes.
//! - **Lease.** An advisory lock outlives a holder that is paused (a frozen VM, SIGSTOP, a long
//!   stall) while its TCP session stays up, because the kernel still answers for it. So the
//!   writer's session carries `idle_session_timeout` and `idle_in_transaction_session_timeout` set
//!   to the lease: PostgreSQL itself ends a session that sends nothing for that long, which
//!   releases the lock. The writer heartbeats well within the lease; a paused one cannot, is cut
//!   off, and when it wakes its next statement fails on the dead session: it appends nothing.
//! - **Advertisement.** On taking the lock the writer records its URL and its backend's pid in
//!   `writer_advertisement`. A follower believes the row only while that pid holds the lock
//!   (`pg_locks`), so a row left by a writer that is gone points nowhere.

use std::time::Duration;

use chrono::Utc;
use sqlx::{Connection, PgConnection, PgPool};

use crate::{Error, Result};

/// The advisory lock key the writer of ledger `default` takes ("ledger" in ASCII), as every writer
/// did before there were many ledgers (see `migrations/0014_ledgers.sql`).
pub const WRITER_LOCK_KEY: i64 = 0x6c65_6467_6572;

/// Takes the writer's lock of the session's ledger on `conn` without waiting; false when another
/// session holds it. A session whose search path names no ledger's book fails here.
pub(crate) async fn try_lock(conn: &mut PgConnection) -> Result<bool> {
    let locked: Option<bool> =
        sqlx::query_scalar("SELECT pg_try_advisory_lock(public.ledger_writer_lock_key())")
            .fetch_one(conn)
            .await?;
    locked.ok_or_else(|| Error::Corrupt("the session's search path names no ledger's book".into()))
}

/// Puts the session under the lease: from now on PostgreSQL ends it, and so releases the lock,
/// when it sends nothing for `lease`, in a transaction or not. Set once the state is loaded: a
/// long load reads without pause but may decode for seconds between statements.
pub(crate) async fn start_lease(conn: &mut PgConnection, lease: Duration) -> Result<()> {
    let lease_ms = lease.as_millis().to_string();
    sqlx::query(
        "SELECT set_config('idle_session_timeout', $1, false),
                set_config('idle_in_transaction_session_timeout', $1, false)",
    )
    .bind(&lease_ms)
    .execute(conn)
    .await?;
    Ok(())
}

/// Renews the lease: any statement does; this one also proves the session is alive.
pub(crate) async fn heartbeat(conn: &mut PgConnection) -> Result<()> {
    sqlx::query("SELECT 1").execute(conn).await?;
    Ok(())
}

/// Records where this writer can be reached, on the session that holds the lock.
pub(crate) async fn advertise(conn: &mut PgConnection, url: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO writer_advertisement (singleton, url, backend_pid, taken_at)
         VALUES (true, $1, pg_backend_pid(), $2)
         ON CONFLICT (singleton) DO UPDATE
           SET url = EXCLUDED.url, backend_pid = EXCLUDED.backend_pid, taken_at = EXCLUDED.taken_at",
    )
    .bind(url)
    .bind(Utc::now())
    .execute(conn)
    .await?;
    Ok(())
}

/// The URL of the writer that holds the lock now, if it advertised one. Ask the primary: locks
/// are not replicated, so on a replica no one ever holds it.
pub async fn current_writer_url(primary: &PgPool) -> Result<Option<String>> {
    Ok(sqlx::query_scalar(
        "SELECT w.url FROM writer_advertisement w
         JOIN pg_locks l ON l.pid = w.backend_pid
         WHERE l.locktype = 'advisory' AND l.granted
           AND l.classid::bigint = public.ledger_writer_lock_key() >> 32
           AND l.objid::bigint = public.ledger_writer_lock_key() & x'ffffffff'::bigint
           AND l.objsubid = 1
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_optional(primary)
    .await?)
}

/// Whether the writer that holds the lock has been waiting longer than `at_least` for the
/// synchronous standbys to confirm a commit (its backend waits on `SyncRep`). Ask the primary.
pub async fn writer_awaits_standby(primary: &PgPool, at_least: Duration) -> Result<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (
           SELECT 1 FROM writer_advertisement w
           JOIN pg_stat_activity a ON a.pid = w.backend_pid
           WHERE a.wait_event = 'SyncRep'
             AND clock_timestamp() - a.query_start > make_interval(secs => $1))",
    )
    .bind(at_least.as_secs_f64())
    .fetch_one(primary)
    .await?)
}

/// A session of its own holding the writer's lock, for work that must not interleave with a
/// writer (replay, import); closing the connection releases it.
pub(crate) async fn lock_writer(
    pool: &PgPool,
    held_elsewhere: &'static str,
) -> Result<PgConnection> {
    let mut conn = pool.acquire().await?.detach();
    if !try_lock(&mut conn).await? {
        let _ = conn.close().await;
        return Err(Error::WriterUnavailable(held_elsewhere));
    }
    Ok(conn)
}

/// Releases the lock before closing its session: the server ends a closed session's backend
/// only a moment later, and until then the lock would still look held to the next one who asks
/// (a server starting, or an import right after a refused one).
pub(crate) async fn unlock_writer(mut conn: PgConnection) {
    let _ = sqlx::query("SELECT pg_advisory_unlock(public.ledger_writer_lock_key())")
        .execute(&mut conn)
        .await;
    let _ = conn.close().await;
}
