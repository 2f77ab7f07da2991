//! Reads from a streaming replica (`--read-database-url`) stay honest: a read with
//! `min_position` waits until the replica has replayed that far and answers 409 if it does not
//! within the bound, never stale data; a read without it reports the older position it reflects.
//! A real PostgreSQL primary and a real replica made with pg_basebackup, replay paused by hand.

use infrastructure::local_postgres::LocalPostgres;
use ledger_tests::TestLedger;
use sqlx::Connection;

async fn set_replay(replica: &LocalPostgres, paused: bool) {
    let mut conn = sqlx::PgConnection::connect(&replica.url("postgres"))
        .await
        .expect("replica");
    let call = if paused {
        "SELECT pg_wal_replay_pause()"
    } else {
        "SELECT pg_wal_replay_resume()"
    };
    sqlx::query(call).execute(&mut conn).await.expect(call);
    let _ = conn.close().await;
}

#[tokio::test]
async fn reads_from_a_replica_wait_for_min_position_and_are_never_stale() {
    let (dir, primary, replica) = ledger_tests::primary_and_replica("replica-test").await;
    let replica_url = replica.url("ledger");
    let mut ledger = TestLedger::serve(&primary.url("ledger"), |config| {
        config.read_database_url = Some(replica_url);
        config.min_position_wait_ms = 300;
    })
    .await;
    ledger.market().await;
    let funded = ledger
        .transfer("fund", "world:bank", "alice:cash", "USD", "10.00")
        .await;
    funded.expect(201);

    // Read your write from the replica: it waits for replay.
    let read = ledger.account_at("alice:cash", funded.position()).await;
    read.expect(200);
    assert!(read.position() >= funded.position());
    let ready = ledger.get("/readyz").await;
    ready.expect(200);
    assert_eq!(ready.body["read_source"]["kind"], "replica");

    // The replica falls behind: a read past it is 409, one without min_position is older.
    set_replay(&replica, true).await;
    let paid = ledger
        .transfer("pay", "alice:cash", "bob:cash", "USD", "4.00")
        .await;
    paid.expect(201);
    let refused = ledger.account_at("alice:cash", paid.position()).await;
    assert_eq!(refused.status, 409, "{}", refused.text);
    assert_eq!(refused.code(), "position_not_reached");
    let stale = ledger.get("/v1/accounts/alice:cash").await;
    stale.expect(200);
    assert!(stale.position() < paid.position());
    let balance = |answer: &ledger_tests::Answer| answer.body["balances"][0]["balance"].clone();
    assert_eq!(balance(&stale), "10.00");
    let lagging = ledger.get("/readyz").await;
    assert!(
        lagging.body["read_source"]["lag_events"].as_i64() >= Some(1),
        "{}",
        lagging.text
    );

    // Replay resumes: the same read is answered, with the write in it.
    set_replay(&replica, false).await;
    let caught_up = ledger.account_at("alice:cash", paid.position()).await;
    caught_up.expect(200);
    assert!(caught_up.position() >= paid.position());
    assert_eq!(balance(&caught_up), "6.00");

    ledger.stop_server().await;
    replica.stop().await.expect("replica stops");
    primary.stop().await.expect("primary stops");
    let _ = std::fs::remove_dir_all(&dir);
}
