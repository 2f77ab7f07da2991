//! `POST /v1/transactions/batch`: many commands in one request, each answered on its own, or all
//! or nothing with `atomic`.

use ledger_tests::serde_json::{json, Value};
use ledger_tests::TestLedger;

fn transfer(key: &str, source: &str, destination: &str, amount: &str) -> Value {
    json!({"idempotency_key": key, "transfer": {"source": source, "destination": destination, "asset": "USD", "amount": amount}})
}

#[tokio::test]
async fn each_command_is_answered_on_its_own_in_order() {
    let ledger = TestLedger::start().await;
    ledger.market().await;
    ledger
        .transfer("fund-bob", "world:bank", "bob:cash", "AAPL", "10")
        .await
        .expect(201);
    let batch = json!({"commands": [
        transfer("b-1", "world:bank", "alice:cash", "100"),
        transfer("b-2", "alice:cash", "bob:cash", "150"),
        {"idempotency_key": "b-3", "transaction": {"postings": [
            {"source": "alice:cash", "destination": "bob:cash", "asset": "USD", "amount": "40"},
            {"source": "alice:cash", "destination": "broker:fees", "asset": "USD", "amount": "1"}]}},
        {"idempotency_key": "b-4", "trade": {"buyer": "alice:cash", "seller": "bob:cash", "instrument": "AAPL",
            "quantity": "2", "price": "20", "currency": "USD",
            "fees": [{"payer": "alice:cash", "account": "broker:fees", "amount": "0.50"}]}},
        transfer("b-1", "world:bank", "alice:cash", "999"),
    ]});
    let answer = ledger
        .post_raw(
            "/v1/transactions/batch",
            &[("content-type", "application/json")],
            batch.to_string().into_bytes(),
        )
        .await;
    answer.expect(200);
    let results = answer.body["results"].as_array().unwrap();
    let statuses: Vec<u64> = results
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [201, 422, 201, 201, 422]);
    assert_eq!(results[1]["body"]["code"], "insufficient_funds");
    assert_eq!(results[3]["body"]["notional"], "40.00");
    assert_eq!(results[4]["body"]["code"], "idempotency_key_reused");
    let positions: Vec<i64> = results
        .iter()
        .filter_map(|r| r["position"].as_i64())
        .collect();
    assert_eq!(
        positions.windows(2).filter(|w| w[1] != w[0] + 1).count(),
        0,
        "consecutive positions"
    );
    assert_eq!(answer.position(), *positions.last().unwrap());
    assert_eq!(ledger.balance("alice:cash", "USD").await, "18.50");
    assert_eq!(ledger.balance("broker:fees", "USD").await, "1.50");

    // A command of a batch is the same request as the command posted on its own.
    let alone = ledger
        .transfer("b-1", "world:bank", "alice:cash", "USD", "100")
        .await;
    alone.expect(201);
    assert_eq!(alone.header("idempotent-replayed"), Some("true"));
    assert_eq!(alone.body, results[0]["body"]);
    let refusal = ledger
        .transfer("b-2", "alice:cash", "bob:cash", "USD", "150")
        .await;
    assert_eq!(refusal.header("idempotent-replayed"), Some("true"));
    assert_eq!(refusal.code(), "insufficient_funds");

    // The whole batch again: every answer replayed, nothing appended.
    let events = ledger.event_count().await;
    let again = ledger
        .post_raw(
            "/v1/transactions/batch",
            &[("content-type", "application/json")],
            batch.to_string().into_bytes(),
        )
        .await;
    let replayed: Vec<bool> = again.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["replayed"].as_bool().unwrap())
        .collect();
    assert_eq!(replayed, [true, true, true, true, false]);
    assert_eq!(ledger.event_count().await, events);
    ledger.finish().await;
}

#[tokio::test]
async fn an_atomic_batch_applies_all_or_nothing() {
    let ledger = TestLedger::start().await;
    ledger.market().await;
    let events = ledger.event_count().await;
    let refused = json!({"atomic": true, "commands": [
        transfer("a-1", "world:bank", "alice:cash", "100"),
        transfer("a-2", "alice:cash", "bob:cash", "60"),
        transfer("a-3", "alice:cash", "bob:cash", "60"),
        transfer("a-4", "world:bank", "bob:cash", "1"),
    ]});
    let answer = ledger
        .post_raw(
            "/v1/transactions/batch",
            &[("content-type", "application/json")],
            refused.to_string().into_bytes(),
        )
        .await;
    answer.expect(200);
    let codes: Vec<&str> = answer.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["body"]["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        [
            "batch_aborted",
            "batch_aborted",
            "insufficient_funds",
            "batch_aborted"
        ]
    );
    assert_eq!(
        answer.body["results"][0]["body"]["context"]["failed_index"],
        2
    );
    assert_eq!(ledger.event_count().await, events);
    assert_eq!(ledger.balance("alice:cash", "USD").await, "0");

    // Nothing was recorded under the keys: the corrected batch goes through with the same keys.
    let fixed = json!({"atomic": true, "commands": [
        transfer("a-1", "world:bank", "alice:cash", "100"),
        transfer("a-2", "alice:cash", "bob:cash", "60"),
        transfer("a-3", "alice:cash", "bob:cash", "40"),
        transfer("a-4", "world:bank", "bob:cash", "1"),
    ]});
    let answer = ledger
        .post_raw(
            "/v1/transactions/batch",
            &[("content-type", "application/json")],
            fixed.to_string().into_bytes(),
        )
        .await;
    let statuses: Vec<u64> = answer.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [201, 201, 201, 201]);
    assert_eq!(
        answer.body["results"][0]["position"].as_i64(),
        Some(events + 1),
        "positions of the refused batch were not used"
    );
    assert_eq!(ledger.balance("bob:cash", "USD").await, "101.00");
    ledger.finish().await;
}

#[tokio::test]
async fn batch_requests_are_validated() {
    let ledger = TestLedger::start().await;
    ledger.market().await;
    let events = ledger.event_count().await;
    let too_many: Vec<Value> = (0..8001)
        .map(|i| transfer(&format!("k{i}"), "world:bank", "alice:cash", "1"))
        .collect();
    for (body, status, code) in [
        (json!({"commands": []}), 422, "validation_error"),
        (json!({"commands": too_many}), 422, "validation_error"),
        (
            json!({"commands": [{"idempotency_key": "x"}]}),
            422,
            "validation_error",
        ),
        (
            json!({"commands": [{"idempotency_key": "", "transfer": {"source": "world:bank", "destination": "alice:cash", "asset": "USD", "amount": "1"}}]}),
            422,
            "validation_error",
        ),
        (
            json!({"commands": [{"idempotency_key": "x", "transfer": {"source": "world:bank", "destination": "alice:cash", "asset": "USD", "amount": "1"},
                               "trade": {"buyer": "alice:cash", "seller": "bob:cash", "instrument": "AAPL", "quantity": "1", "price": "1", "currency": "USD"}}]}),
            422,
            "validation_error",
        ),
        (
            json!({"commands": [transfer("x", "world:bank", "alice:cash", "1")], "speed": "fast"}),
            400,
            "invalid_request",
        ),
    ] {
        let answer = ledger
            .post_raw(
                "/v1/transactions/batch",
                &[("content-type", "application/json")],
                body.to_string().into_bytes(),
            )
            .await;
        assert_eq!(answer.status, status, "{}", answer.text);
        assert_eq!(answer.code(), code);
    }
    assert_eq!(ledger.event_count().await, events);

    // 8,000 is allowed.
    let most: Vec<Value> = (0..8000)
        .map(|i| transfer(&format!("m{i}"), "world:bank", "alice:cash", "0.01"))
        .collect();
    let answer = ledger
        .post_raw(
            "/v1/transactions/batch",
            &[("content-type", "application/json")],
            json!({"commands": most}).to_string().into_bytes(),
        )
        .await;
    answer.expect(200);
    assert_eq!(ledger.balance("alice:cash", "USD").await, "80.00");
    assert_eq!(ledger.event_count().await, events + 8000);
    ledger.finish().await;
}
