//! Balances at a past position or time, and statements: served from the postings history.

use ledger_tests::serde_json::Value;
use ledger_tests::TestLedger;

fn balance_of(body: &Value, asset: &str) -> Option<String> {
    body["balances"]
        .as_array()?
        .iter()
        .find(|b| b["asset"] == asset)
        .map(|b| b["balance"].as_str().unwrap_or("").to_owned())
}

async fn recorded_at(ledger: &TestLedger, position: i64) -> String {
    let events = ledger
        .get(&format!("/v1/events?after={}&limit=1", position - 1))
        .await;
    events.body["items"][0]["recorded_at"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// alice: +100 (7), −30 to bob (8), +5 (9), +10 from bob (10).
async fn history(ledger: &TestLedger) {
    ledger.market().await;
    ledger
        .transfer("p7", "world:bank", "alice:cash", "USD", "100")
        .await
        .expect(201);
    ledger
        .transfer("p8", "alice:cash", "bob:cash", "USD", "30")
        .await
        .expect(201);
    ledger
        .transfer("p9", "world:bank", "alice:cash", "USD", "5")
        .await
        .expect(201);
    ledger
        .transfer("p10", "bob:cash", "alice:cash", "USD", "10")
        .await
        .expect(201);
}

#[tokio::test]
async fn balances_as_they_stood_at_a_position_or_a_time() {
    let ledger = TestLedger::start_with(|c| c.min_position_wait_ms = 200).await;
    history(&ledger).await;
    for (position, alice, bob) in [
        (6, None, None),
        (7, Some("100.00"), None),
        (8, Some("70.00"), Some("30.00")),
        (9, Some("75.00"), Some("30.00")),
        (10, Some("85.00"), Some("20.00")),
    ] {
        let a = ledger
            .get(&format!(
                "/v1/accounts/alice:cash/balances?at_position={position}"
            ))
            .await;
        a.expect(200);
        assert_eq!(a.body["as_of_position"], position);
        assert_eq!(
            balance_of(&a.body, "USD").as_deref(),
            alice,
            "alice at {position}"
        );
        let b = ledger
            .get(&format!(
                "/v1/accounts/bob:cash/balances?at_position={position}"
            ))
            .await;
        assert_eq!(
            balance_of(&b.body, "USD").as_deref(),
            bob,
            "bob at {position}"
        );
    }
    // By time: right after the last event recorded at or before it.
    let at = recorded_at(&ledger, 8).await;
    let by_time = ledger
        .get(&format!(
            "/v1/accounts/alice:cash/balances?at={}",
            at.replace('+', "%2B")
        ))
        .await;
    by_time.expect(200);
    assert_eq!(by_time.body["as_of_position"], 8);
    assert_eq!(balance_of(&by_time.body, "USD").as_deref(), Some("70.00"));
    let before_everything = ledger
        .get("/v1/accounts/alice:cash/balances?at=2000-01-01T00:00:00Z")
        .await;
    assert_eq!(before_everything.body["balances"], Value::Array(vec![]));
    // Now, when neither is given.
    let now = ledger.get("/v1/accounts/alice:cash/balances").await;
    assert_eq!(balance_of(&now.body, "USD").as_deref(), Some("85.00"));

    for (path, status, code) in [
        (
            "/v1/accounts/alice:cash/balances?at_position=1000",
            409,
            "position_not_reached",
        ),
        (
            "/v1/accounts/alice:cash/balances?at_position=-1",
            400,
            "invalid_request",
        ),
        (
            "/v1/accounts/alice:cash/balances?at_position=8&at=2026-01-01T00:00:00Z",
            400,
            "invalid_request",
        ),
        (
            "/v1/accounts/alice:cash/balances?at=yesterday",
            400,
            "invalid_request",
        ),
        (
            "/v1/accounts/nobody:cash/balances",
            404,
            "account_not_found",
        ),
    ] {
        let a = ledger.get(path).await;
        assert_eq!(a.status, status, "{path}: {}", a.text);
        assert_eq!(a.code(), code, "{path}");
    }
    ledger.finish().await;
}

#[tokio::test]
async fn a_statement_adds_up_from_opening_to_closing() {
    let ledger = TestLedger::start().await;
    history(&ledger).await;
    let from = recorded_at(&ledger, 8).await.replace('+', "%2B");
    let to = recorded_at(&ledger, 10).await.replace('+', "%2B");
    let statement = ledger
        .get(&format!(
            "/v1/accounts/alice:cash/statement?asset=USD&from={from}&to={to}"
        ))
        .await;
    statement.expect(200);
    let s = &statement.body;
    assert_eq!(s["opening_position"], 7);
    assert_eq!(s["opening_balance"], "100.00");
    let amounts: Vec<&str> = s["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["amount"].as_str().unwrap())
        .collect();
    assert_eq!(amounts, ["-30.00", "5.00"]);
    assert_eq!(s["closing_position"], 9);
    assert_eq!(s["closing_balance"], "75.00");
    // opening + postings = closing, as decimals.
    let sum: rust_decimal::Decimal = amounts
        .iter()
        .map(|a| a.parse::<rust_decimal::Decimal>().unwrap())
        .sum();
    assert_eq!(
        "100.00".parse::<rust_decimal::Decimal>().unwrap() + sum,
        "75.00".parse::<rust_decimal::Decimal>().unwrap()
    );

    // The whole history: from nothing to now.
    let all = ledger
        .get("/v1/accounts/alice:cash/statement?asset=USD")
        .await;
    assert_eq!(all.body["opening_balance"], "0.00");
    assert_eq!(all.body["entries"].as_array().unwrap().len(), 4);
    assert_eq!(all.body["closing_balance"], "85.00");
    assert_eq!(all.body["closing_position"], 10);

    // CSV: the same rows.
    let csv = ledger
        .client
        .get(ledger.url("/v1/accounts/alice:cash/statement?asset=USD"))
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert!(csv.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let text = csv.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1 + 1 + 4 + 1);
    assert!(lines[0].starts_with("row,position,leg,recorded_at,effective_at"));
    assert_eq!(lines[1], "opening,0,,,,,,,,0.00");
    assert!(
        lines[2].starts_with("posting,7,") && lines[2].ends_with(",world:bank,100.00,100.00"),
        "{}",
        lines[2]
    );
    assert_eq!(*lines.last().unwrap(), "closing,10,,,,,,,,85.00");

    for (path, status, code) in [
        ("/v1/accounts/alice:cash/statement", 400, "invalid_request"),
        ("/v1/accounts/alice:cash/statement?asset=usd", 400, "invalid_request"),
        ("/v1/accounts/alice:cash/statement?asset=EUR", 422, "asset_not_found"),
        ("/v1/accounts/alice:cash/statement?asset=USD&from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z", 400, "invalid_request"),
    ] {
        let a = ledger.get(path).await;
        assert_eq!(a.status, status, "{path}: {}", a.text);
        assert_eq!(a.code(), code, "{path}");
    }
    ledger.finish().await;
}
