//! Replay: every projection rebuilt from the log equals the live one, byte for byte; a damaged
//! projection is reported (account, asset, live, replayed) and repaired by swapping.

use ledger_tests::serde_json::json;
use ledger_tests::TestLedger;

#[tokio::test]
async fn a_rebuild_equals_the_live_projections_and_repairs_them() {
    let mut ledger = TestLedger::start().await;
    ledger.market().await;
    ledger
        .transfer("fund", "world:bank", "alice:cash", "USD", "5000")
        .await
        .expect(201);
    ledger
        .transfer("fund-bob", "world:bank", "bob:cash", "AAPL", "100")
        .await
        .expect(201);
    ledger
        .post(
            "/v1/trades",
            "trade",
            &json!({"buyer": "alice:cash", "seller": "bob:cash", "instrument": "AAPL", "quantity": "10",
                    "price": "189.50", "currency": "USD",
                    "fees": [{"payer": "alice:cash", "account": "broker:fees", "amount": "1.25"}]}),
        )
        .await
        .expect(201);
    ledger
        .post(
            "/v1/transactions",
            "multi",
            &json!({"postings": [
                {"source": "alice:cash", "destination": "bob:cash", "asset": "USD", "amount": "3"},
                {"source": "bob:cash", "destination": "alice:cash", "asset": "USD", "amount": "1"},
                {"source": "alice:cash", "destination": "bob:cash", "asset": "USD", "amount": "0.5"}]}),
        )
        .await
        .expect(201);
    ledger
        .patch(
            "/v1/accounts/alice:cash/limits",
            "limits",
            &json!({"asset": "USD", "min_balance": "-100.00", "max_balance": null}),
        )
        .await
        .expect(201);
    ledger
        .post("/v1/accounts/broker:fees/freeze", "freeze", &json!({}))
        .await
        .expect(201);

    let pool = ledger.pool();
    // While the server holds the writer's lock, replay refuses.
    let busy = infrastructure::replay::replay(&pool, false, |_, _| {}).await;
    assert!(busy.is_err());
    ledger.stop_server().await;

    let report = infrastructure::replay::replay(&pool, false, |_, _| {})
        .await
        .unwrap();
    assert!(report.identical(), "{report:?}");
    assert_eq!(report.events, 12);

    // Damage a balance and a posting's running balance in the live projections.
    let mut conn = ledger.sql().await;
    sqlx::raw_sql(
        "UPDATE balances SET balance = balance + 1 WHERE account_id = (SELECT id FROM accounts WHERE code = 'bob:cash') AND asset = 'USD';
         UPDATE postings SET balance_after = 0 WHERE position = 9 AND leg = 0",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let report = infrastructure::replay::replay(&pool, false, |_, _| {})
        .await
        .unwrap();
    assert!(!report.identical());
    let count = |table: &str| {
        report
            .differing_rows
            .iter()
            .find(|(t, _)| t == table)
            .unwrap()
            .1
    };
    assert_eq!(count("balances"), 1);
    assert_eq!(count("postings"), 2, "the damaged row on each side");
    let balance = report
        .differences
        .iter()
        .find(|d| d.table == "balances")
        .unwrap();
    assert_eq!(balance.key, "bob:cash USD");
    assert_eq!(
        balance.live.as_deref(),
        Some("1898.50 (pending 0 out, 0 in) @10")
    );
    assert_eq!(
        balance.replayed.as_deref(),
        Some("1897.50 (pending 0 out, 0 in) @10")
    );

    // --swap puts the rebuilt projections in place; the next replay finds nothing.
    let swapped = infrastructure::replay::replay(&pool, true, |_, _| {})
        .await
        .unwrap();
    assert!(swapped.swapped);
    let again = infrastructure::replay::replay(&pool, false, |_, _| {})
        .await
        .unwrap();
    assert!(again.identical(), "{again:?}");
    pool.close().await;

    // The server starts on the repaired projections and serves them.
    ledger.restart().await;
    assert_eq!(ledger.balance("bob:cash", "USD").await, "1897.50");
    ledger
        .transfer("after", "alice:cash", "bob:cash", "USD", "1")
        .await
        .expect(201);
    ledger.finish().await;
}
