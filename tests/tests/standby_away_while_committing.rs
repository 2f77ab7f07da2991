//! The synchronous standby goes away while writes are committing. The writer's statement timeout
//! is short (200 ms) and cannot end a commit's wait for the standby; then the writer's backend is
//! cancelled from elsewhere (`pg_cancel_backend`), which does end it, and PostgreSQL reports the
//! commit done, with only a WARNING saying it is on the primary alone; or it is terminated
//! (`pg_terminate_backend`), which ends the wait and the session, and a new session finds the
//! commit in the log. No write gets a success answer while the standby is away, and `/readyz`
//! says why. Once it is back, every write is acknowledged or was answered in doubt and is found
//! by its idempotency key, and every acknowledged write is on the standby: the primary is then
//! shut down at once (no WAL sent after it) and the standby read on its own.
//! A real primary, a real standby made with pg_basebackup, and the real server.

use std::time::Duration;

use infrastructure::local_postgres::LocalPostgres;
use ledger_tests::serde_json::json;
use ledger_tests::{eventually, Answer, TestLedger};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio::sync::mpsc;

/// The writer's statement timeout in this test: far below how long the standby is away.
const STATEMENT_TIMEOUT_MS: u64 = 200;
/// How long a commit must have waited for the standby to show that the statement timeout did not
/// end its wait: five timeouts.
const OUTLIVED_TIMEOUT_S: f64 = 5.0 * STATEMENT_TIMEOUT_MS as f64 / 1000.0;
/// Bound on the standby (re)connecting as the synchronous one, and on the writer's commit being
/// seen waiting for it.
const STANDBY_BOUND: Duration = Duration::from_secs(30);
/// Bound on every write sent while the standby is away being answered once the wait is cut
/// short (the writer's confirmation bound, then its in-doubt wait, are a few seconds).
const ANSWER_BOUND: Duration = Duration::from_secs(30);
/// Bound on the writer leading again once the standby is back.
const RECOVERY_BOUND: Duration = Duration::from_secs(30);
/// Bound on the primary's immediate shutdown, and on the standby replaying what it flushed.
const SHUTDOWN_BOUND: Duration = Duration::from_secs(30);
/// Writes sent while the standby is away.
const WRITES_WHILE_AWAY: usize = 4;
/// The key of the write sent once the writer refuses writes for want of the standby.
const LATE_KEY: &str = "while-away-late";

async fn connect(postgres: &LocalPostgres, database: &str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(1)
        .connect(&postgres.url(database))
        .await
        .expect("connection")
}

/// How many of `keys` the ledger database behind `pool` has recorded.
async fn keys_found(pool: &PgPool, keys: &[String]) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM idempotency_keys WHERE key = ANY($1)")
        .bind(keys)
        .fetch_one(pool)
        .await
        .expect("idempotency keys")
}

async fn transfer(client: &reqwest::Client, base: &str, key: &str) -> Answer {
    let body = json!({"source": "world:bank", "destination": "alice:cash", "asset": "USD", "amount": "1.00"});
    let response = client
        .post(format!("{base}/v1/transfers"))
        .header("idempotency-key", key)
        .json(&body)
        .send()
        .await
        .expect("POST");
    TestLedger::read(response).await
}

/// Shuts the primary down at once, as a crash would: SIGQUIT to the postmaster is PostgreSQL's
/// immediate shutdown, in which the WAL senders send nothing more.
async fn crash(primary: &LocalPostgres) {
    let pid_file = primary.data_dir().join("postmaster.pid");
    let pid = std::fs::read_to_string(&pid_file).expect("postmaster.pid");
    let pid = pid.lines().next().expect("the postmaster's pid").trim();
    let status = std::process::Command::new("kill")
        .args(["-QUIT", pid])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -QUIT {pid}: {status}");
    eventually(SHUTDOWN_BOUND, "the primary shuts down", || async {
        (!pid_file.exists()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_cancelled_wait_for_the_standby_is_not_acknowledged() {
    standby_away_while_committing("pg_cancel_backend").await;
}

#[tokio::test]
async fn a_terminated_wait_for_the_standby_is_not_acknowledged() {
    standby_away_while_committing("pg_terminate_backend").await;
}

/// The scenario, with the writer's wait for the standby ended by `end_the_wait` (a function of
/// a backend's pid).
async fn standby_away_while_committing(end_the_wait: &str) {
    let mut cluster = Cluster::start().await;
    let mut ledger = TestLedger::serve(&cluster.primary.url("ledger"), |config| {
        config.writer_statement_timeout_ms = STATEMENT_TIMEOUT_MS;
    })
    .await;
    ledger.market().await;
    // The keys `market` used, acknowledged with the standby there.
    let mut acknowledged: Vec<String> = ["asset-USD", "asset-AAPL", "account-world:bank"]
        .into_iter()
        .map(str::to_owned)
        .collect();

    cluster.stop_standby().await;
    let away: Vec<String> = (0..WRITES_WHILE_AWAY)
        .map(|i| format!("while-away-{i}"))
        .collect();
    let mut answers = send_transfers(&ledger, &away);
    let writer_pid = cluster.writer_commit_waiting().await;
    let waiting = ready_when_writer_is(&ledger, "awaiting_standby").await;
    assert_eq!(waiting.status, 503, "{}", waiting.text);
    if let Ok((key, answer)) = answers.try_recv() {
        panic!("{key} was answered while its commit waits for the standby: {answer:?}");
    }

    let ended: bool = sqlx::query_scalar(&format!("SELECT {end_the_wait}($1)"))
        .bind(writer_pid)
        .fetch_one(&cluster.db)
        .await
        .expect(end_the_wait);
    assert!(ended, "{end_the_wait}");
    let in_doubt = answered_in_doubt(&mut answers).await;
    assert_eq!(
        keys_found(&cluster.db, &in_doubt).await,
        in_doubt.len() as i64,
        "the writes in doubt were committed on the primary"
    );
    // Meanwhile the writer says why it is not ready, and refuses writes rather than acknowledge.
    let ready = ready_when_writer_is(&ledger, "awaiting_standby").await;
    assert_eq!(ready.status, 503, "{}", ready.text);
    let refused = transfer(&ledger.client, &ledger.base, LATE_KEY).await;
    assert_eq!(refused.status, 503, "{}", refused.text);
    assert_eq!(refused.code(), "writer_unavailable");

    // The standby is back: the writer leads again, and every write is found by its key.
    cluster.restart_standby().await;
    ready_when_writer_is(&ledger, "leader").await.expect(200);
    for key in away
        .iter()
        .map(String::as_str)
        .chain([LATE_KEY, "after-return"])
    {
        let retried = transfer(&ledger.client, &ledger.base, key).await;
        retried.expect(201);
        let replayed = retried.header("idempotent-replayed") == Some("true");
        let was_in_doubt = in_doubt.iter().any(|k| k == key);
        assert_eq!(replayed, was_in_doubt, "{key}: {retried:?}");
        acknowledged.push(key.to_owned());
    }

    ledger.stop_server().await;
    cluster.crash_primary_and_find(&acknowledged).await;
}

/// Sends a transfer for each key at once; each answer arrives on the channel as it comes.
fn send_transfers(
    ledger: &TestLedger,
    keys: &[String],
) -> mpsc::UnboundedReceiver<(String, Answer)> {
    let (answered, answers) = mpsc::unbounded_channel();
    for key in keys {
        let (client, base, key) = (ledger.client.clone(), ledger.base.clone(), key.clone());
        let answered = answered.clone();
        tokio::spawn(async move {
            let answer = transfer(&client, &base, &key).await;
            let _ = answered.send((key, answer));
        });
    }
    answers
}

/// Takes the answers of the writes sent while the standby is away: none a success, and at least
/// one in doubt. Returns the keys of those in doubt.
async fn answered_in_doubt(answers: &mut mpsc::UnboundedReceiver<(String, Answer)>) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + ANSWER_BOUND;
    let mut in_doubt = Vec::new();
    for _ in 0..WRITES_WHILE_AWAY {
        let (key, answer) = tokio::time::timeout_at(deadline, answers.recv())
            .await
            .expect("every write sent while the standby is away is answered in time")
            .expect("a write task ended without an answer");
        assert_eq!(
            answer.status, 503,
            "{key} was answered while the standby is away: {}",
            answer.text
        );
        match answer.code() {
            "commit_outcome_unknown" => in_doubt.push(key),
            "commit_failed" | "writer_unavailable" => {}
            other => panic!("{key}: {other}: {}", answer.text),
        }
    }
    assert!(!in_doubt.is_empty(), "the batch cut short was not in doubt");
    in_doubt
}

/// `/readyz` once it names this state of the writer.
async fn ready_when_writer_is(ledger: &TestLedger, state: &str) -> Answer {
    eventually(
        RECOVERY_BOUND,
        &format!("the writer is {state}"),
        || async {
            let ready = ledger.get("/readyz").await;
            (ready.body["writer"] == state).then_some(ready)
        },
    )
    .await
}

/// A primary and its synchronous standby, in a scratch directory.
struct Cluster {
    dir: std::path::PathBuf,
    primary: LocalPostgres,
    replica: Option<LocalPostgres>,
    replica_dir: std::path::PathBuf,
    /// On the primary's `postgres` database, and on the ledger's.
    admin: PgPool,
    db: PgPool,
}

impl Cluster {
    async fn start() -> Self {
        let (dir, primary, replica) = ledger_tests::primary_and_replica("sync-standby-test").await;
        let admin = connect(&primary, "postgres").await;
        sqlx::query("ALTER SYSTEM SET synchronous_standby_names = '*'")
            .execute(&admin)
            .await
            .expect("synchronous_standby_names");
        sqlx::query("SELECT pg_reload_conf()")
            .execute(&admin)
            .await
            .expect("reload");
        let cluster = Self {
            replica_dir: replica.data_dir().to_path_buf(),
            replica: Some(replica),
            db: connect(&primary, "ledger").await,
            admin,
            primary,
            dir,
        };
        cluster.sync_standbys_become(1).await;
        cluster
    }

    async fn sync_standbys_become(&self, count: i64) {
        eventually(
            STANDBY_BOUND,
            &format!("{count} synchronous standby"),
            || async {
                let found: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'",
                )
                .fetch_one(&self.admin)
                .await
                .expect("pg_stat_replication");
                (found == count).then_some(())
            },
        )
        .await;
    }

    /// The standby goes away: commits wait for it.
    async fn stop_standby(&mut self) {
        if let Some(replica) = self.replica.take() {
            replica.stop().await.expect("replica stops");
        }
        self.sync_standbys_become(0).await;
    }

    async fn restart_standby(&mut self) {
        let replica = LocalPostgres::start(&self.replica_dir)
            .await
            .expect("replica restarts");
        self.replica = Some(replica);
        self.sync_standbys_become(1).await;
    }

    /// The writer's backend, once its commit has outlived its statement timeout many times over
    /// and still waits for the standby.
    async fn writer_commit_waiting(&self) -> i32 {
        eventually(STANDBY_BOUND, "the writer's commit waits", || async {
            sqlx::query_scalar(
                "SELECT a.pid FROM pg_stat_activity a
                 JOIN writer_advertisement w ON w.backend_pid = a.pid
                 WHERE a.wait_event = 'SyncRep'
                   AND clock_timestamp() - a.query_start > make_interval(secs => $1)",
            )
            .bind(OUTLIVED_TIMEOUT_S)
            .fetch_optional(&self.db)
            .await
            .expect("pg_stat_activity")
        })
        .await
    }

    /// None is lost: with the primary gone at once, the standby alone holds every key in `keys`.
    /// Nothing more can reach it and it only replays what it flushed, so a key still missing at
    /// the bound was lost. (Its replay position is no sign of the end: it stops short of a record
    /// the stream cut in the middle.)
    async fn crash_primary_and_find(self, keys: &[String]) {
        self.db.close().await;
        self.admin.close().await;
        crash(&self.primary).await;
        let replica = self.replica.expect("the standby runs");
        let standby = connect(&replica, "ledger").await;
        eventually(
            SHUTDOWN_BOUND,
            "every acknowledged write is on the standby",
            || async { (keys_found(&standby, keys).await == keys.len() as i64).then_some(()) },
        )
        .await;
        standby.close().await;
        replica.stop().await.expect("replica stops");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
