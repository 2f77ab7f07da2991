//! Asynchronous projections: the projector follows the log after the writer's commit, keeps a
//! checkpoint per projection, and survives losing its session mid-page; a projection added later
//! is built from the log while the ledger serves; every read sees what was written before it, and
//! is not held up by the projector's pacing.

use std::time::Duration;

use ledger_tests::serde_json::{json, Value};
use ledger_tests::{eventually, Answer, TestLedger};

/// A batch of `n` transfers from alice to bob, 0.01 each, under keys `{prefix}-{i}`.
fn transfers(prefix: &str, n: usize) -> Value {
    let commands: Vec<Value> = (0..n)
        .map(|i| {
            json!({"idempotency_key": format!("{prefix}-{i}"), "transfer": {
                "source": "alice:cash", "destination": "bob:cash", "asset": "USD", "amount": "0.01"}})
        })
        .collect();
    json!({ "commands": commands })
}

async fn fund(ledger: &TestLedger) {
    ledger.market().await;
    ledger
        .transfer("fund", "world:bank", "alice:cash", "USD", "100000")
        .await
        .expect(201);
}

async fn checkpoint(ledger: &TestLedger, name: &str) -> Option<i64> {
    let mut conn = ledger.sql().await;
    sqlx::query_scalar("SELECT position FROM projection_checkpoints WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut conn)
        .await
        .expect("checkpoint")
}

/// Pays bob 1 from alice under key `pay-{i}`, then reads bob's history at once, which must show
/// the payment without being told its position; the payment.
async fn pay_then_read_history(ledger: &TestLedger, i: usize) -> Answer {
    let paid = ledger
        .transfer(&format!("pay-{i}"), "alice:cash", "bob:cash", "USD", "1")
        .await;
    paid.expect(201);
    let history = ledger.get("/v1/accounts/bob:cash/history?limit=1").await;
    history.expect(200);
    assert_eq!(history.position(), paid.position(), "{}", history.text);
    paid
}

#[tokio::test]
async fn a_history_read_right_after_a_write_sees_it_without_naming_its_position() {
    let ledger = TestLedger::start().await;
    fund(&ledger).await;
    for i in 0..20 {
        let paid = pay_then_read_history(&ledger, i).await;
        let id = paid.body["id"].as_str().expect("id").to_owned();
        ledger
            .get(&format!("/v1/transactions/{id}"))
            .await
            .expect(200);
    }
    ledger.finish().await;
}

#[tokio::test]
async fn a_read_waiting_for_the_projections_is_served_at_once_however_the_projector_paces() {
    // After a page that was not full, the projector waits 10 s or for more events than these
    // writes make: each read that follows a write is served promptly only because, finding the
    // history behind, it hurries the projector. (A read may wait 20 s, so a projector that was
    // not hurried shows here as slow, not as 409.)
    let ledger = TestLedger::start_with(|config| {
        config.projector.page_interval_max = Duration::from_secs(10);
        config.projector.page_events_target = 1_000_000;
        config.min_position_wait_ms = 20_000;
    })
    .await;
    fund(&ledger).await;
    let writes_and_reads = async {
        for i in 0..5 {
            pay_then_read_history(&ledger, i).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), writes_and_reads)
        .await
        .expect("every read served well before the projector's 10 s pacing ends");
    ledger.finish().await;
}

#[tokio::test]
async fn the_projector_resumes_from_its_checkpoint_after_losing_its_session_mid_page() {
    let mut ledger = TestLedger::start().await;
    fund(&ledger).await;
    let mut conn = ledger.sql().await;
    let (mut killed_mid_page, mut rounds) = (0, 0);
    while killed_mid_page < 3 {
        assert!(rounds < 30, "the projector was never caught mid-page");
        rounds += 1;
        ledger
            .post(
                "/v1/transactions/batch",
                &format!("batch-{rounds}"),
                &transfers(&format!("r{rounds}"), 2_000),
            )
            .await
            .expect(200);
        let head = ledger.event_count().await;
        // The projector is in a transaction while it writes a page: end its session
        // there, as a crash of its process or of its backend would.
        while checkpoint(&ledger, "postings").await < Some(head) {
            let terminated: Option<bool> = sqlx::query_scalar(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE application_name = 'ledger-projector:default' AND xact_start IS NOT NULL
                 LIMIT 1",
            )
            .fetch_optional(&mut conn)
            .await
            .expect("terminate");
            if terminated == Some(true) {
                killed_mid_page += 1;
                break;
            }
        }
    }
    let head = ledger.event_count().await;
    eventually(
        Duration::from_secs(30),
        "the projector catches up",
        || async { (checkpoint(&ledger, "postings").await == Some(head)).then_some(()) },
    )
    .await;
    let postings: i64 = sqlx::query_scalar("SELECT count(*) FROM postings")
        .fetch_one(&mut conn)
        .await
        .expect("count");
    // Two legs per transfer: the funding one and 2,000 per round; none missed, none twice.
    assert_eq!(postings, 2 * (1 + rounds * 2_000));
    drop(conn);
    let report = ledger.stop_and_replay().await;
    assert!(report.identical(), "{report:?}");
    ledger.finish().await;
}

#[tokio::test]
async fn a_projection_added_later_is_built_from_the_log_while_the_ledger_serves() {
    let mut ledger = TestLedger::start().await;
    fund(&ledger).await;
    ledger
        .post("/v1/transactions/batch", "b", &transfers("t", 500))
        .await
        .expect(200);
    let before = ledger.get("/v1/accounts/bob:cash/history?limit=1000").await;
    before.expect(200);
    ledger.stop_server().await;
    // As a release that adds the postings history would find the database: no rows, no
    // checkpoint.
    let mut conn = ledger.sql().await;
    sqlx::raw_sql("DELETE FROM projection_checkpoints WHERE name = 'postings'; TRUNCATE postings;")
        .execute(&mut conn)
        .await
        .expect("drop the projection");
    ledger.restart().await;
    // The history waits for the projection to reach the head, and is the same as before.
    let after = ledger.get("/v1/accounts/bob:cash/history?limit=1000").await;
    after.expect(200);
    assert_eq!(after.body["items"], before.body["items"]);
    assert_eq!(
        checkpoint(&ledger, "postings").await,
        Some(ledger.event_count().await)
    );
    drop(conn);
    let report = ledger.stop_and_replay().await;
    assert!(report.identical(), "{report:?}");
    ledger.finish().await;
}

#[tokio::test]
async fn lag_is_reported_per_projection_and_one_projection_can_be_replayed_alone() {
    let mut ledger = TestLedger::start().await;
    fund(&ledger).await;
    let head = ledger.event_count().await;
    let ready = eventually(Duration::from_secs(10), "projections caught up", || async {
        let ready = ledger.get("/readyz").await;
        let projections = ready.body["projections"].as_array()?.clone();
        projections
            .iter()
            .all(|p| p["position"] == json!(head) && p["lag_events"] == json!(0))
            .then_some(projections)
    })
    .await;
    let kinds: Vec<(String, String)> = ready
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or("").to_owned(),
                p["kind"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert!(
        kinds.contains(&("balances".to_owned(), "inline".to_owned())),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("postings".to_owned(), "async".to_owned())),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("transactions".to_owned(), "async".to_owned())),
        "{kinds:?}"
    );
    let metrics = ledger.get("/metrics").await;
    assert!(
        metrics.text.contains(&format!(
            "ledger_projection_position{{projection=\"postings\"}} {head}"
        )),
        "{}",
        metrics.text
    );
    assert!(metrics
        .text
        .contains("ledger_projection_lag_seconds_bucket{projection=\"transactions\""));

    ledger.stop_server().await;
    let pool = ledger.pool();
    let one = infrastructure::replay::replay_projections(&pool, Some("postings"), false, |_, _| {})
        .await
        .expect("replay postings");
    assert!(one.identical(), "{one:?}");
    assert_eq!(
        one.differing_rows.len(),
        1,
        "only the postings table: {one:?}"
    );
    let unknown =
        infrastructure::replay::replay_projections(&pool, Some("ledgers"), false, |_, _| {}).await;
    assert!(
        matches!(unknown, Err(infrastructure::Error::UnknownProjection(_))),
        "{unknown:?}"
    );
    pool.close().await;
    ledger.finish().await;
}
