//! Account lifecycle, limits and preconditions over HTTP: each rule's success and every refusal,
//! each refusal appending nothing, and all of it surviving a restart (the writer reloads status,
//! limits and versions from the projections).

use ledger_tests::serde_json::{json, Value};
use ledger_tests::TestLedger;

async fn account(ledger: &TestLedger, code: &str) -> Value {
    let answer = ledger.get(&format!("/v1/accounts/{code}")).await;
    answer.expect(200);
    answer.body
}

/// The account's history items, newest first, as (type, position).
async fn history_types(ledger: &TestLedger, code: &str) -> Vec<(String, i64)> {
    let answer = ledger.get(&format!("/v1/accounts/{code}/history")).await;
    answer.expect(200);
    answer.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["type"].as_str().unwrap().to_owned(),
                i["position"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// Asserts a refusal with its status and code, and that nothing was appended.
async fn refused(
    ledger: &TestLedger,
    answer: &ledger_tests::Answer,
    status: u16,
    code: &str,
    events: i64,
) {
    assert_eq!(answer.status, status, "{}", answer.text);
    assert_eq!(answer.code(), code, "{}", answer.text);
    assert_eq!(
        answer.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(ledger.event_count().await, events);
}

#[tokio::test]
async fn freeze_unfreeze_and_close() {
    let mut ledger = TestLedger::start().await;
    ledger.market().await; // positions 1..=6
    ledger
        .transfer("fund", "world:bank", "alice:cash", "USD", "10.00")
        .await
        .expect(201); // 7

    let frozen = ledger
        .post(
            "/v1/accounts/alice:cash/freeze",
            "freeze",
            &json!({"metadata": {"reason": "fraud review"}}),
        )
        .await;
    frozen.expect(201);
    assert_eq!(frozen.body["status"], "frozen");
    assert_eq!(frozen.body["metadata"]["reason"], "fraud review");
    assert_eq!(frozen.position(), 8);
    let alice = account(&ledger, "alice:cash").await;
    assert_eq!(alice["status"], "frozen");
    assert_eq!(alice["version"], 8);

    // No debits, no credits; reads still work.
    let debit = ledger
        .transfer("debit", "alice:cash", "bob:cash", "USD", "1.00")
        .await;
    refused(&ledger, &debit, 422, "account_frozen", 8).await;
    let credit = ledger
        .transfer("credit", "world:bank", "alice:cash", "USD", "1.00")
        .await;
    refused(&ledger, &credit, 422, "account_frozen", 8).await;
    let again = ledger
        .post("/v1/accounts/alice:cash/freeze", "freeze-again", &json!({}))
        .await;
    refused(&ledger, &again, 422, "account_frozen", 8).await;
    assert_eq!(ledger.balance("alice:cash", "USD").await, "10.00");

    // A restart keeps the status.
    ledger.restart().await;
    let debit = ledger
        .transfer("debit-2", "alice:cash", "bob:cash", "USD", "1.00")
        .await;
    refused(&ledger, &debit, 422, "account_frozen", 8).await;

    ledger
        .post("/v1/accounts/alice:cash/unfreeze", "unfreeze", &json!({}))
        .await
        .expect(201); // 9
    let not_frozen = ledger
        .post(
            "/v1/accounts/alice:cash/unfreeze",
            "unfreeze-again",
            &json!({}),
        )
        .await;
    refused(&ledger, &not_frozen, 422, "account_not_frozen", 9).await;

    // Closing needs every balance at zero.
    let not_empty = ledger
        .post("/v1/accounts/alice:cash/close", "close", &json!({}))
        .await;
    refused(&ledger, &not_empty, 422, "account_not_empty", 9).await;
    assert_eq!(not_empty.body["context"]["balance"], "10.00");
    ledger
        .transfer("empty", "alice:cash", "world:bank", "USD", "10.00")
        .await
        .expect(201); // 10
    ledger
        .post("/v1/accounts/alice:cash/close", "close-2", &json!({}))
        .await
        .expect(201); // 11
    for (path, key) in [
        ("freeze", "after-close-1"),
        ("unfreeze", "after-close-2"),
        ("close", "after-close-3"),
    ] {
        let answer = ledger
            .post(&format!("/v1/accounts/alice:cash/{path}"), key, &json!({}))
            .await;
        refused(&ledger, &answer, 422, "account_closed", 11).await;
    }
    let credit = ledger
        .transfer("credit-closed", "world:bank", "alice:cash", "USD", "1.00")
        .await;
    refused(&ledger, &credit, 422, "account_closed", 11).await;

    // Every change is in the account's history, with the postings.
    assert_eq!(
        history_types(&ledger, "alice:cash").await,
        vec![
            ("status_changed".to_owned(), 11),
            ("posting".to_owned(), 10),
            ("status_changed".to_owned(), 9),
            ("status_changed".to_owned(), 8),
            ("posting".to_owned(), 7),
        ]
    );
    // Paging through it one item at a time gives the same, with no gap or repeat.
    let mut cursor: Option<String> = None;
    let mut paged = Vec::new();
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/accounts/alice:cash/history?limit=1&cursor={c}"),
            None => "/v1/accounts/alice:cash/history?limit=1".to_owned(),
        };
        let page = ledger.get(&path).await;
        page.expect(200);
        for item in page.body["items"].as_array().unwrap() {
            paged.push(item["position"].as_i64().unwrap());
        }
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(paged, vec![11, 10, 9, 8, 7]);

    // An unknown account, and a body with a field that is not there.
    let unknown = ledger
        .post("/v1/accounts/nobody:cash/freeze", "unknown", &json!({}))
        .await;
    refused(&ledger, &unknown, 422, "account_not_found", 11).await;
    let extra = ledger
        .post(
            "/v1/accounts/bob:cash/freeze",
            "extra",
            &json!({"status": "open"}),
        )
        .await;
    refused(&ledger, &extra, 400, "invalid_request", 11).await;
    let delete = ledger
        .post("/v1/accounts/bob:cash/delete", "delete", &json!({}))
        .await;
    refused(&ledger, &delete, 404, "route_not_found", 11).await;
    ledger.finish().await;
}

#[tokio::test]
async fn limits_bound_every_debit_and_credit() {
    let mut ledger = TestLedger::start().await;
    ledger.market().await;
    // A credit limit: alice may go down to -500.00 USD.
    let set = ledger
        .patch(
            "/v1/accounts/alice:cash/limits",
            "credit-line",
            &json!({"asset": "USD", "min_balance": "-500.00"}),
        )
        .await;
    set.expect(201);
    assert_eq!(set.body["min_balance"], "-500.00");
    assert_eq!(set.body["max_balance"], Value::Null);
    ledger
        .transfer("spend", "alice:cash", "bob:cash", "USD", "500.00")
        .await
        .expect(201); // 8
    let over = ledger
        .transfer("over", "alice:cash", "bob:cash", "USD", "0.01")
        .await;
    refused(&ledger, &over, 422, "insufficient_funds", 8).await;
    assert_eq!(over.body["context"]["min_balance"], "-500.00");

    // A maximum on bob, keeping his minimum (absent field) at its default of zero.
    ledger
        .patch(
            "/v1/accounts/bob:cash/limits",
            "cap",
            &json!({"asset": "USD", "max_balance": "600"}),
        )
        .await
        .expect(201); // 9
    let capped = ledger
        .transfer("cap-hit", "world:bank", "bob:cash", "USD", "100.01")
        .await;
    refused(&ledger, &capped, 422, "balance_limit_exceeded", 9).await;
    assert_eq!(capped.body["context"]["max_balance"], "600.00");
    ledger
        .transfer("cap-ok", "world:bank", "bob:cash", "USD", "100.00")
        .await
        .expect(201); // 10

    // Refusals of the change itself.
    for (key, body, status, code) in [
        (
            "bad-1",
            json!({"asset": "USD", "min_balance": "-0.001"}),
            422,
            "amount_precision",
        ),
        (
            "bad-2",
            json!({"asset": "USD", "min_balance": "10", "max_balance": "5"}),
            422,
            "validation_error",
        ),
        (
            "bad-3",
            json!({"asset": "EUR", "min_balance": "0"}),
            422,
            "asset_not_found",
        ),
        (
            "bad-4",
            json!({"asset": "USD", "min_balance": -5}),
            422,
            "validation_error",
        ),
        (
            "bad-5",
            json!({"asset": "USD", "minimum": "5"}),
            400,
            "invalid_request",
        ),
    ] {
        let answer = ledger
            .patch("/v1/accounts/carol:cash/limits", key, &body)
            .await;
        // For an account that does not exist, only what fails while parsing comes first.
        let (carol_status, carol_code) = match key {
            "bad-4" | "bad-5" => (status, code),
            _ => (422, "account_not_found"),
        };
        refused(&ledger, &answer, carol_status, carol_code, 10).await;
        let answer = ledger
            .patch("/v1/accounts/bob:cash/limits", &format!("{key}-bob"), &body)
            .await;
        refused(&ledger, &answer, status, code, 10).await;
    }

    // The account shows its limits; they survive a restart and still bind.
    ledger.restart().await;
    let alice = account(&ledger, "alice:cash").await;
    assert_eq!(
        alice["limits"],
        json!([{"asset": "USD", "min_balance": "-500.00", "max_balance": null}])
    );
    // Every bound at the asset's scale, as in the event: a zero minimum too (PostgreSQL gives a
    // zero back without its decimals).
    assert_eq!(
        account(&ledger, "bob:cash").await["limits"],
        json!([{"asset": "USD", "min_balance": "0.00", "max_balance": "600.00"}])
    );
    let over = ledger
        .transfer("over-2", "world:bank", "bob:cash", "USD", "0.01")
        .await;
    refused(&ledger, &over, 422, "balance_limit_exceeded", 10).await;
    let over = ledger
        .transfer("over-3", "alice:cash", "broker:fees", "USD", "0.01")
        .await;
    refused(&ledger, &over, 422, "insufficient_funds", 10).await;

    // null lifts a bound.
    ledger
        .patch(
            "/v1/accounts/alice:cash/limits",
            "unbounded",
            &json!({"asset": "USD", "min_balance": null}),
        )
        .await
        .expect(201); // 11
    ledger
        .transfer("deep", "alice:cash", "broker:fees", "USD", "10000.00")
        .await
        .expect(201); // 12
    assert_eq!(ledger.balance("alice:cash", "USD").await, "-10500.00");
    assert_eq!(
        history_types(&ledger, "alice:cash").await[..2],
        [("posting".to_owned(), 12), ("limits_set".to_owned(), 11)]
    );
    ledger.finish().await;
}

#[tokio::test]
async fn conditions_and_expected_versions_guard_a_write() {
    let ledger = TestLedger::start().await;
    ledger.market().await;
    ledger
        .transfer("fund", "world:bank", "alice:cash", "USD", "100.00")
        .await
        .expect(201); // 7
    let version = account(&ledger, "alice:cash").await["version"]
        .as_i64()
        .unwrap();
    assert_eq!(version, 7);
    let pay = |key: &'static str, guards: Value| {
        let mut body = json!({"source": "alice:cash", "destination": "bob:cash", "asset": "USD", "amount": "10.00"});
        for (k, v) in guards.as_object().unwrap() {
            body[k] = v.clone();
        }
        let ledger = &ledger;
        async move { ledger.post("/v1/transfers", key, &body).await }
    };
    let failed = pay(
        "cond-1",
        json!({"conditions": [
            {"account": "alice:cash", "asset": "USD", "balance": "available", "op": "gte", "amount": "100"},
            {"account": "bob:cash", "asset": "USD", "balance": "posted", "op": "eq", "amount": "5"}]}),
    )
    .await;
    refused(&ledger, &failed, 409, "condition_failed", 7).await;
    assert_eq!(failed.body["context"]["index"], 1);
    assert_eq!(failed.body["context"]["actual"], "0.00");

    let stale = pay(
        "ver-1",
        json!({"expected_versions": [{"account": "alice:cash", "version": 6}]}),
    )
    .await;
    refused(&ledger, &stale, 409, "version_mismatch", 7).await;
    assert_eq!(stale.body["context"]["actual"], 7);

    let passed = pay(
        "both",
        json!({"conditions": [{"account": "alice:cash", "asset": "USD", "balance": "available", "op": "gte", "amount": "10.00"}],
               "expected_versions": [{"account": "alice:cash", "version": 7}]}),
    )
    .await;
    passed.expect(201);
    assert_eq!(account(&ledger, "alice:cash").await["version"], 8);
    // The same guarded request retried is the same answer, not a version mismatch.
    let retried = pay(
        "both",
        json!({"conditions": [{"account": "alice:cash", "asset": "USD", "balance": "available", "op": "gte", "amount": "10.00"}],
               "expected_versions": [{"account": "alice:cash", "version": 7}]}),
    )
    .await;
    retried.expect(201);
    assert_eq!(retried.header("idempotent-replayed"), Some("true"));

    // Malformed guards are refused before they reach the ledger.
    for (key, guards, status, code) in [
        (
            "bad-op",
            json!({"conditions": [{"account": "alice:cash", "asset": "USD", "balance": "available", "op": "gt", "amount": "1"}]}),
            422,
            "validation_error",
        ),
        (
            "bad-amount",
            json!({"conditions": [{"account": "alice:cash", "asset": "USD", "balance": "available", "op": "gte", "amount": "1e3"}]}),
            422,
            "validation_error",
        ),
        (
            "bad-field",
            json!({"conditions": [{"account": "alice:cash", "asset": "USD", "balance": "available", "op": "gte", "amount": "1", "extra": 1}]}),
            400,
            "invalid_request",
        ),
        (
            "bad-account",
            json!({"expected_versions": [{"account": "nobody:x", "version": 1}]}),
            422,
            "account_not_found",
        ),
    ] {
        let answer = pay(key, guards).await;
        refused(&ledger, &answer, status, code, 8).await;
    }
    let too_many: Vec<Value> = (0..17)
        .map(|_| json!({"account": "alice:cash", "asset": "USD", "balance": "posted", "op": "gte", "amount": "0"}))
        .collect();
    let answer = pay("too-many", json!({"conditions": too_many})).await;
    refused(&ledger, &answer, 422, "validation_error", 8).await;

    // Trades and plain transactions take the same guards.
    let trade = ledger
        .post(
            "/v1/trades",
            "trade",
            &json!({"buyer": "alice:cash", "seller": "bob:cash", "instrument": "AAPL", "quantity": "1",
                    "price": "1.00", "currency": "USD",
                    "expected_versions": [{"account": "bob:cash", "version": 1}]}),
        )
        .await;
    refused(&ledger, &trade, 409, "version_mismatch", 8).await;
    let transaction = ledger
        .post(
            "/v1/transactions",
            "transaction",
            &json!({"postings": [{"source": "alice:cash", "destination": "bob:cash", "asset": "USD", "amount": "1"}],
                    "conditions": [{"account": "bob:cash", "asset": "USD", "balance": "posted", "op": "lte", "amount": "9.99"}]}),
        )
        .await;
    refused(&ledger, &transaction, 409, "condition_failed", 8).await;
    ledger.finish().await;
}
