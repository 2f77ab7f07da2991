//! The hash chain: every event is chained, `GET /v1/audit/verify` names the first position where
//! an altered, deleted or reordered log breaks, and an independent verifier (Python, standard
//! library only) agrees with the server on an export.

use std::path::PathBuf;
use std::process::Command;

use ledger_tests::serde_json::{json, Value};
use ledger_tests::TestLedger;

async fn activity(ledger: &TestLedger) {
    ledger.market().await; // positions 1..=6
    ledger
        .transfer("fund", "world:bank", "alice:cash", "USD", "5000")
        .await
        .expect(201); // 7
    ledger
        .transfer("fund-bob", "world:bank", "bob:cash", "AAPL", "100")
        .await
        .expect(201); // 8
    ledger
        .post(
            "/v1/trades",
            "trade",
            &json!({"buyer": "alice:cash", "seller": "bob:cash", "instrument": "AAPL", "quantity": "10",
                    "price": "189.50", "currency": "USD",
                    "fees": [{"payer": "alice:cash", "account": "broker:fees", "amount": "1.25"}],
                    "metadata": {"note": "line\nbreak \"quoted\" é"}}),
        )
        .await
        .expect(201); // 9
    ledger
        .transfer("pay", "alice:cash", "bob:cash", "USD", "0.05")
        .await
        .expect(201); // 10
}

/// Runs SQL as the superuser would, with the append-only trigger off.
async fn tamper(ledger: &TestLedger, sql: &str) {
    let mut conn = ledger.sql().await;
    sqlx::raw_sql(&format!(
        "ALTER TABLE events DISABLE TRIGGER events_no_update_or_delete; {sql}; ALTER TABLE events ENABLE TRIGGER events_no_update_or_delete;"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
}

async fn export(ledger: &TestLedger) -> PathBuf {
    let database = ledger.database.as_ref().unwrap();
    let path = std::env::temp_dir().join(format!("{}.ndjson", database.name()));
    let pool = infrastructure::db::read_pool(
        infrastructure::db::connect_options(&ledger.database_url).unwrap(),
        &infrastructure::db::PoolConfig::default(),
    );
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    infrastructure::audit::export(&pool, 0, &mut file)
        .await
        .unwrap();
    pool.close().await;
    path
}

fn python_verify(path: &PathBuf) -> (bool, Value) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tools/verify_export.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(path)
        .output()
        .expect("python3 runs");
    let report: Value =
        ledger_tests::serde_json::from_slice(&output.stdout).expect("a JSON report");
    (output.status.success(), report)
}

#[tokio::test]
async fn an_untouched_log_verifies_here_and_independently() {
    let ledger = TestLedger::start().await;
    activity(&ledger).await;
    let report = ledger.get("/v1/audit/verify").await;
    report.expect(200);
    assert_eq!(report.body["intact"], true);
    assert_eq!(report.body["events_verified"], 10);
    assert_eq!(report.body["head_position"], 10);
    let events = ledger.get("/v1/events?after=9").await;
    assert_eq!(events.body["items"][0]["hash"], report.body["head_hash"]);

    let path = export(&ledger).await;
    let (ok, independent) = python_verify(&path);
    assert!(ok, "{independent}");
    assert_eq!(independent["head_hash"], report.body["head_hash"]);
    assert_eq!(independent["head_position"], 10);
    // The balances it recomputed from the postings are the ones the ledger serves.
    for (account, asset) in [
        ("alice:cash", "USD"),
        ("bob:cash", "USD"),
        ("bob:cash", "AAPL"),
        ("broker:fees", "USD"),
        ("world:bank", "USD"),
    ] {
        assert_eq!(
            independent["balances"][format!("{account} {asset}")]
                .as_str()
                .unwrap(),
            ledger.balance(account, asset).await,
            "{account} {asset}"
        );
    }
    let _ = std::fs::remove_file(path);
    ledger.finish().await;
}

#[tokio::test]
async fn altered_deleted_and_reordered_events_are_named() {
    let ledger = TestLedger::start().await;
    activity(&ledger).await;
    let broken_at = |report: &ledger_tests::Answer| report.body["first_broken_position"].as_i64();

    // An altered amount.
    tamper(&ledger, "UPDATE events SET payload = jsonb_set(payload, '{postings,0,amount}', '\"5000000.00\"') WHERE position = 7").await;
    let report = ledger.get("/v1/audit/verify").await;
    assert_eq!(report.body["intact"], false);
    assert_eq!(broken_at(&report), Some(7));
    let path = export(&ledger).await;
    let (ok, independent) = python_verify(&path);
    assert!(!ok);
    assert_eq!(independent["first_broken_position"], 7);
    let _ = std::fs::remove_file(path);
    tamper(&ledger, "UPDATE events SET payload = jsonb_set(payload, '{postings,0,amount}', '\"5000.00\"') WHERE position = 7").await;
    assert_eq!(
        ledger.get("/v1/audit/verify").await.body["intact"],
        true,
        "restored"
    );

    // An altered timestamp or metadata breaks it too.
    tamper(
        &ledger,
        "UPDATE events SET metadata = '{\"idempotency_key\":\"other\"}' WHERE position = 9",
    )
    .await;
    assert_eq!(broken_at(&ledger.get("/v1/audit/verify").await), Some(9));
    tamper(
        &ledger,
        "UPDATE events SET metadata = '{\"idempotency_key\":\"trade\"}' WHERE position = 9",
    )
    .await;

    // Two events swapped.
    tamper(
        &ledger,
        "UPDATE events SET position = position + 1000 WHERE position IN (7, 8);
         UPDATE events SET position = 8 WHERE position = 1007;
         UPDATE events SET position = 7 WHERE position = 1008",
    )
    .await;
    assert_eq!(broken_at(&ledger.get("/v1/audit/verify").await), Some(7));
    tamper(
        &ledger,
        "UPDATE events SET position = position + 1000 WHERE position IN (7, 8);
         UPDATE events SET position = 8 WHERE position = 1007;
         UPDATE events SET position = 7 WHERE position = 1008",
    )
    .await;
    assert_eq!(
        ledger.get("/v1/audit/verify").await.body["intact"],
        true,
        "restored"
    );

    // A deleted event (the idempotency record pointing at it goes first).
    tamper(
        &ledger,
        "DELETE FROM idempotency_keys WHERE position = 5; DELETE FROM events WHERE position = 5",
    )
    .await;
    let report = ledger.get("/v1/audit/verify").await;
    assert_eq!(broken_at(&report), Some(5));
    assert!(report.body["problem"].as_str().unwrap().contains("missing"));
    ledger.finish().await;
}
