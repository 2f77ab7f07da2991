//! The synchronous standby goes away while writes are committing. The writer's statement timeout
//! is short (200 ms) and cannot end a commit's wait for the standby; then the writer's backend is
//! cancelled from elsewhere (`pg_cancel_backend`), which does end it, and PostgreSQL reports the
//! commit done, with only a WARNING saying it is on the primary alone; or it is terminated
//! (`pg_terminate_backend`), which ends the wait and the session, and a new session finds the
//! commit in the log. No write gets a success answer while the standby is away. Once it is back, every write is acknowledged or was answered
//! in doubt and is found by its idempotency key, and every acknowledged write is on the standby:
//! the primary is then shut down at once (no WAL sent after it) and the standby read on its own.
//! A real primary, a real standby made with pg_basebackup, and the real server.

use std::time::Duration;

use infrastructure::local_postgres::LocalPostgres;
use ledger_tests::serde_json::json;
use ledger_tests::{eventually, Answer, TestLedger};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

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
/// Bound on the primary's immediate shutdown, and on the standby replaying what it received.
const SHUTDOWN_BOUND: Duration = Duration::from_secs(30);
/// Writes sent while the standby is away.
const WRITES_WHILE_AWAY: usize = 4;

async fn connect(postgres: &LocalPostgres, database: &str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(1)
        .connect(&postgres.url(database))
        .await
        .expect("connection")
}

/// How many standbys the primary streams to synchronously.
async fn sync_standbys(primary: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'")
        .fetch_one(primary)
        .await
        .expect("pg_stat_replication")
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
    let dir = std::env::temp_dir().join(format!(
        "ledger-sync-standby-test-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    let primary = LocalPostgres::start(&dir.join("primary"))
        .await
        .expect("primary");
    let replica = primary
        .start_replica(&dir.join("replica"))
        .await
        .expect("replica");
    let admin = connect(&primary, "postgres").await;
    sqlx::query("ALTER SYSTEM SET synchronous_standby_names = '*'")
        .execute(&admin)
        .await
        .expect("synchronous_standby_names");
    sqlx::query("SELECT pg_reload_conf()")
        .execute(&admin)
        .await
        .expect("reload");
    eventually(STANDBY_BOUND, "the standby is synchronous", || async {
        (sync_standbys(&admin).await == 1).then_some(())
    })
    .await;

    let mut ledger = TestLedger::serve(&primary.url("ledger"), |config| {
        config.writer_statement_timeout_ms = STATEMENT_TIMEOUT_MS;
    })
    .await;
    ledger.market().await;
    // The keys `market` used, acknowledged with the standby there.
    let mut acknowledged: Vec<String> = ["asset-USD", "asset-AAPL", "account-world:bank"]
        .into_iter()
        .map(str::to_owned)
        .collect();

    // The standby goes away: commits wait for it.
    let replica_dir = replica.data_dir().to_path_buf();
    replica.stop().await.expect("replica stops");
    eventually(STANDBY_BOUND, "the primary has no standby", || async {
        (sync_standbys(&admin).await == 0).then_some(())
    })
    .await;
    let away: Vec<String> = (0..WRITES_WHILE_AWAY)
        .map(|i| format!("while-away-{i}"))
        .collect();
    let (answered, mut answers) = tokio::sync::mpsc::unbounded_channel();
    for key in &away {
        let (client, base, key) = (ledger.client.clone(), ledger.base.clone(), key.clone());
        let answered = answered.clone();
        tokio::spawn(async move {
            let answer = transfer(&client, &base, &key).await;
            let _ = answered.send((key, answer));
        });
    }

    // The writer's commit outlives its statement timeout many times over, still waiting.
    let db = connect(&primary, "ledger").await;
    let writer_pid: i32 = eventually(STANDBY_BOUND, "the writer's commit waits", || async {
        sqlx::query_scalar(
            "SELECT a.pid FROM pg_stat_activity a
             JOIN writer_advertisement w ON w.backend_pid = a.pid
             WHERE a.wait_event = 'SyncRep'
               AND clock_timestamp() - a.query_start > make_interval(secs => $1)",
        )
        .bind(OUTLIVED_TIMEOUT_S)
        .fetch_optional(&db)
        .await
        .expect("pg_stat_activity")
    })
    .await;
    if let Ok((key, answer)) = answers.try_recv() {
        panic!("{key} was answered while its commit waits for the standby: {answer:?}");
    }

    // Cancelled from elsewhere, the commit stops waiting and is kept on the primary only.
    let ended: bool = sqlx::query_scalar(&format!("SELECT {end_the_wait}($1)"))
        .bind(writer_pid)
        .fetch_one(&db)
        .await
        .expect(end_the_wait);
    assert!(ended, "{end_the_wait}");
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
            "commit_outcome_unknown" => in_doubt.push(key.clone()),
            "commit_failed" | "writer_unavailable" => {}
            other => panic!("{key}: {other}: {}", answer.text),
        }
    }
    assert!(!in_doubt.is_empty(), "the batch cut short was not in doubt");
    let on_primary_only: i64 =
        sqlx::query_scalar("SELECT count(*) FROM idempotency_keys WHERE key = ANY($1)")
            .bind(&in_doubt)
            .fetch_one(&db)
            .await
            .expect("keys on the primary");
    assert_eq!(
        on_primary_only,
        in_doubt.len() as i64,
        "the writes in doubt were committed on the primary"
    );

    // Meanwhile the node says why it is not ready, and refuses writes rather than acknowledge.
    let ready = eventually(ANSWER_BOUND, "readiness names the standby", || async {
        let ready = ledger.get("/readyz").await;
        (ready.body["writer"] == "awaiting_standby").then_some(ready)
    })
    .await;
    assert_eq!(ready.status, 503, "{}", ready.text);
    let refused = transfer(&ledger.client, &ledger.base, "while-away-late").await;
    assert_eq!(refused.status, 503, "{}", refused.text);
    assert_eq!(refused.code(), "writer_unavailable");

    // The standby is back: the writer leads again, and every write is found by its key.
    let replica = LocalPostgres::start(&replica_dir)
        .await
        .expect("replica restarts");
    eventually(
        STANDBY_BOUND,
        "the standby is synchronous again",
        || async { (sync_standbys(&admin).await == 1).then_some(()) },
    )
    .await;
    eventually(RECOVERY_BOUND, "the writer leads again", || async {
        (ledger.get("/readyz").await.body["writer"] == "leader").then_some(())
    })
    .await;
    for key in away.iter().chain(["while-away-late".to_owned()].iter()) {
        let retried = transfer(&ledger.client, &ledger.base, key).await;
        retried.expect(201);
        let replayed = retried.header("idempotent-replayed") == Some("true");
        assert_eq!(replayed, in_doubt.contains(key), "{key}: {retried:?}");
        acknowledged.push(key.clone());
    }
    transfer(&ledger.client, &ledger.base, "after-return")
        .await
        .expect(201);
    acknowledged.push("after-return".to_owned());

    // None is lost: with the primary gone at once, the standby alone holds every acknowledged write.
    ledger.stop_server().await;
    db.close().await;
    admin.close().await;
    crash(&primary).await;
    let standby = connect(&replica, "ledger").await;
    eventually(
        SHUTDOWN_BOUND,
        "the standby replays what it received",
        || async {
            sqlx::query_scalar::<_, bool>(
                "SELECT pg_last_wal_replay_lsn() >= pg_last_wal_receive_lsn()",
            )
            .fetch_one(&standby)
            .await
            .expect("standby positions")
            .then_some(())
        },
    )
    .await;
    let on_standby: i64 =
        sqlx::query_scalar("SELECT count(*) FROM idempotency_keys WHERE key = ANY($1)")
            .bind(&acknowledged)
            .fetch_one(&standby)
            .await
            .expect("keys on the standby");
    assert_eq!(on_standby, acknowledged.len() as i64, "{acknowledged:?}");

    standby.close().await;
    replica.stop().await.expect("replica stops");
    let _ = std::fs::remove_dir_all(&dir);
}
