//! Whether what the writer committed is on the synchronous standbys, as its acknowledgement
//! promises.
//!
//! A commit with synchronous replication waits until the standbys named by
//! `synchronous_standby_names` have it. `statement_timeout` cannot end that wait: PostgreSQL
//! disarms the statement's timeout before it commits (the writer's batch is one statement,
//! committed implicitly), and the writer's lease timeouts count only idle time. But a cancel from
//! elsewhere (`pg_cancel_backend` of the writer's backend, a client tool cancelling it) does end
//! it, and PostgreSQL then reports the commit as done, keeping it locally and saying so only in a
//! WARNING that sqlx does not surface. So after every commit the writer asks the primary itself
//! (`pg_stat_replication`) whether enough synchronous standbys have reached the WAL it has
//! flushed; a batch they have not confirmed within `CONFIRM_BOUND` is in doubt, not acknowledged.

use std::sync::LazyLock;
use std::time::Duration;

use sqlx::{PgConnection, Row};

use crate::{Error, Result};

/// How long a commit may go unconfirmed by the standbys before its batch is in doubt. A commit
/// whose wait ended normally is confirmed already, up to WAL that other sessions flushed after
/// it, which a connected standby confirms within a round trip: this bound is reached only when
/// the wait was cut short and the standby is away.
pub(super) const CONFIRM_BOUND: Duration = Duration::from_secs(1);

/// How often the standbys' positions are read again while a commit is unconfirmed.
const CONFIRM_POLL: Duration = Duration::from_millis(1);

/// The settings that say how many standbys a commit waits for, the primary's flushed WAL, and the
/// position each synchronous standby reported for the level of `synchronous_commit` (replay for
/// `remote_apply`, write for `remote_write`, flush otherwise). LSNs as byte offsets.
static STANDBYS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "
SELECT {REQUIREMENT_COLUMNS},
       pg_has_role('pg_read_all_stats', 'USAGE') AS can_see,
       (pg_current_wal_flush_lsn() - '0/0'::pg_lsn)::int8 AS flushed,
       coalesce((SELECT array_agg(coalesce((CASE current_setting('synchronous_commit')
                                     WHEN 'remote_apply' THEN replay_lsn
                                     WHEN 'remote_write' THEN write_lsn
                                     ELSE flush_lsn END - '0/0'::pg_lsn)::int8, 0))
                 FROM pg_stat_replication
                 WHERE sync_state IN ('sync', 'quorum')), '{{}}') AS standbys"
    )
});

/// What the primary says about its synchronous standbys at one moment.
struct Standbys {
    /// How many standbys must hold a commit before it is acknowledged (0: none).
    required: usize,
    /// Whether this session's role may read the standbys' positions.
    can_see: bool,
    /// The primary's flushed WAL: it holds every commit made so far.
    flushed: i64,
    /// The position of each synchronous standby.
    positions: Vec<i64>,
}

impl Standbys {
    async fn read(conn: &mut PgConnection) -> Result<Self> {
        let row = sqlx::query(STANDBYS.as_str()).fetch_one(conn).await?;
        Ok(Self {
            required: required_of(&row)?,
            can_see: row.try_get("can_see")?,
            flushed: row.try_get("flushed")?,
            positions: row.try_get("standbys")?,
        })
    }

    fn hold(&self, lsn: i64) -> bool {
        self.positions.iter().filter(|p| **p >= lsn).count() >= self.required
    }
}

/// The settings that say how many standbys a commit waits for, as the columns `names`, `level`
/// and `senders` of a query: the writer's batch statement returns them, so that a commit that
/// waits for none costs no second round trip. Read in the statement, they are the settings its
/// commit ran under: a backend takes a configuration reload only between statements.
pub(crate) const REQUIREMENT_COLUMNS: &str =
    "current_setting('synchronous_standby_names') AS names,
       current_setting('synchronous_commit') AS level,
       current_setting('max_wal_senders')::int AS senders";

/// How many synchronous standbys a commit waits for, from `REQUIREMENT_COLUMNS`.
pub(crate) fn required_of(row: &sqlx::postgres::PgRow) -> Result<usize> {
    let names: String = row.try_get("names")?;
    let level: String = row.try_get("level")?;
    let senders: i32 = row.try_get("senders")?;
    // The conditions of PostgreSQL's own `SyncRepRequested` and `SyncStandbysDefined`.
    let waits = senders > 0 && !matches!(level.as_str(), "off" | "local");
    Ok(if waits { required_standbys(&names) } else { 0 })
}

/// `confirm` after a commit whose own statement read that it waits for `required` standbys
/// (`REQUIREMENT_COLUMNS`): none, and there is nothing to confirm.
pub(crate) async fn confirm_commit(
    conn: &mut PgConnection,
    bound: Duration,
    required: usize,
) -> Result<()> {
    if required == 0 {
        return Ok(());
    }
    confirm(conn, bound).await
}

/// Waits, at most `bound`, until the synchronous standbys hold everything the primary has
/// flushed now, and so every commit made so far on any session. `Error::StandbyUnconfirmed` when
/// they do not: what was committed is then on the primary only, and must not be acknowledged.
pub(crate) async fn confirm(conn: &mut PgConnection, bound: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + bound;
    let mut standbys = Standbys::read(conn).await?;
    let target = standbys.flushed;
    loop {
        if standbys.required == 0 || standbys.hold(target) {
            return Ok(());
        }
        if !standbys.can_see {
            return Err(Error::StandbyUnconfirmed(
                "the writer's database role cannot read the standbys' positions in \
                 pg_stat_replication; grant it pg_monitor"
                    .into(),
            ));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::StandbyUnconfirmed(format!(
                "{} synchronous standby(s) must hold WAL up to byte {target}; they are at {:?}",
                standbys.required, standbys.positions
            )));
        }
        tokio::time::sleep(CONFIRM_POLL).await;
        standbys = Standbys::read(conn).await?;
    }
}

/// How many standbys a commit waits for under `synchronous_standby_names`:
/// `[FIRST] n (names…)` and `ANY n (names…)` say `n`; a bare list of names (or `*`) means one;
/// empty means none.
fn required_standbys(names: &str) -> usize {
    let names = names.trim();
    if names.is_empty() {
        return 0;
    }
    let lower = names.to_ascii_lowercase();
    let rest = ["first", "any"]
        .iter()
        .find_map(|method| {
            lower
                .strip_prefix(method)
                .filter(|r| r.starts_with(char::is_whitespace))
        })
        .unwrap_or(&lower)
        .trim_start();
    let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let after = rest[digits..].trim_start();
    match rest[..digits].parse::<usize>() {
        Ok(n) if after.starts_with('(') => n,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::required_standbys;

    #[test]
    fn the_number_of_standbys_is_read_as_postgresql_reads_it() {
        assert_eq!(required_standbys(""), 0);
        assert_eq!(required_standbys("  "), 0);
        assert_eq!(required_standbys("*"), 1);
        assert_eq!(required_standbys("node_b"), 1);
        assert_eq!(required_standbys("node_b, node_c"), 1);
        assert_eq!(required_standbys("2 (node_b, node_c)"), 2);
        assert_eq!(required_standbys("FIRST 2 (node_b, node_c)"), 2);
        assert_eq!(required_standbys("first 1(node_b,node_c)"), 1);
        assert_eq!(required_standbys("ANY 2 (b, c, d)"), 2);
        assert_eq!(required_standbys("any 3 (*)"), 3);
        // Standbys whose names only look like the keywords.
        assert_eq!(required_standbys("first, any"), 1);
        assert_eq!(required_standbys("firstnode"), 1);
        assert_eq!(required_standbys("\"1\""), 1);
    }
}
