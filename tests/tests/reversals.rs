//! Reversals over HTTP: every posting swapped, linked both ways, once; the balance rules apply
//! unless an allowed `force`; and what is reversed is what moved.

use ledger_tests::serde_json::json;
use ledger_tests::{Answer, TestLedger};

fn refused(answer: &Answer, status: u16, code: &str) {
    assert_eq!(answer.status, status, "{}", answer.text);
    assert_eq!(answer.code(), code, "{}", answer.text);
}

async fn reverse(ledger: &TestLedger, id: &str, key: &str, force: bool) -> Answer {
    ledger
        .post(
            &format!("/v1/transactions/{id}/reverse"),
            key,
            &json!({"force": force, "metadata": {"reason": "entered twice"}}),
        )
        .await
}

#[tokio::test]
async fn a_transaction_is_reversed_once() {
    let mut ledger = TestLedger::start().await;
    ledger.market().await;
    ledger
        .transfer("fund", "world:bank", "alice:cash", "USD", "100.00")
        .await
        .expect(201);
    let paid = ledger
        .post(
            "/v1/transactions",
            "pay",
            &json!({"postings": [
                {"source": "alice:cash", "destination": "bob:cash", "asset": "USD", "amount": "30.00"},
                {"source": "alice:cash", "destination": "broker:fees", "asset": "USD", "amount": "0.50"}]}),
        )
        .await;
    paid.expect(201);
    let id = paid.body["id"].as_str().unwrap().to_owned();

    let reversal = reverse(&ledger, &id, "reverse", false).await;
    reversal.expect(201);
    assert_eq!(reversal.body["kind"], "reversal");
    assert_eq!(reversal.body["reverses"], id.as_str());
    assert_eq!(reversal.body["postings"][0]["source"], "bob:cash");
    assert_eq!(reversal.body["postings"][1]["source"], "broker:fees");
    assert_eq!(reversal.body["metadata"]["reason"], "entered twice");
    let reversal_id = reversal.body["id"].as_str().unwrap().to_owned();
    assert_eq!(ledger.balance("alice:cash", "USD").await, "100.00");
    assert_eq!(ledger.balance("broker:fees", "USD").await, "0.00");
    let original = ledger.get(&format!("/v1/transactions/{id}")).await;
    assert_eq!(original.body["reversed_by"], reversal_id.as_str());

    // Once, across a restart too; and never a reversal of a reversal.
    ledger.restart().await;
    let events = ledger.event_count().await;
    let again = reverse(&ledger, &id, "reverse-again", false).await;
    refused(&again, 422, "transaction_already_reversed");
    assert_eq!(again.body["context"]["reversed_by"], reversal_id.as_str());
    let of_reversal = reverse(&ledger, &reversal_id, "reverse-reversal", false).await;
    refused(&of_reversal, 422, "reversal_not_reversible");
    let unknown = reverse(
        &ledger,
        "00000000-0000-0000-0000-000000000002",
        "unknown",
        false,
    )
    .await;
    refused(&unknown, 404, "transaction_not_found");
    let bad_field = ledger
        .post(
            &format!("/v1/transactions/{id}/reverse"),
            "bad",
            &json!({"amounts": ["1"]}),
        )
        .await;
    refused(&bad_field, 422, "validation_error");
    assert_eq!(ledger.event_count().await, events);

    // A retry of the reversal with its key is the original answer.
    let retried = reverse(&ledger, &id, "reverse", false).await;
    assert_eq!(retried.header("idempotent-replayed"), Some("true"));
    assert_eq!(retried.body["id"], reversal_id.as_str());
    ledger.finish().await;
}

/// Alice pays bob 100.00, who spends 60.00 of it: the payment's id.
async fn payment_partly_spent(ledger: &TestLedger) -> String {
    ledger.market().await;
    ledger
        .transfer("fund", "world:bank", "alice:cash", "USD", "100.00")
        .await
        .expect(201);
    let paid = ledger
        .transfer("pay", "alice:cash", "bob:cash", "USD", "100.00")
        .await;
    ledger
        .transfer("spent", "bob:cash", "world:bank", "USD", "60.00")
        .await
        .expect(201);
    paid.body["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_reversal_meets_the_balance_rules_unless_an_admin_forces_it() {
    let ledger = TestLedger::start_secured().await;
    let id = payment_partly_spent(&ledger).await;
    let writer = ledger
        .post(
            "/v1/admin/keys",
            "-",
            &json!({"name": "payments service", "scopes": ["read", "write"]}),
        )
        .await;
    writer.expect(201);
    let writer = writer.body["secret"].as_str().unwrap().to_owned();
    let reverse_as = |key: &'static str, force: bool, secret: String| {
        let ledger = &ledger;
        let id = id.clone();
        async move {
            ledger
                .call_as(
                    Some(&secret),
                    reqwest::Method::POST,
                    &format!("/v1/transactions/{id}/reverse"),
                    Some(key),
                    Some(&json!({"force": force})),
                )
                .await
        }
    };
    refused(
        &reverse_as("r-1", false, writer.clone()).await,
        422,
        "insufficient_funds",
    );
    // A key with the write scope may not force.
    let events = ledger.event_count().await;
    let answer = reverse_as("r-2", true, writer).await;
    ledger
        .assert_refused(&answer, 403, "forbidden", events)
        .await;

    // An admin may: the reversal goes through and says it was forced.
    let forced = reverse(&ledger, &id, "r-3", true).await;
    forced.expect(201);
    assert_eq!(forced.body["forced"], true);
    assert_eq!(ledger.balance("bob:cash", "USD").await, "-60.00");
    ledger.finish().await;
}

#[tokio::test]
async fn what_is_reversed_is_what_moved() {
    let ledger = TestLedger::start().await;
    ledger.market().await;
    ledger
        .transfer("fund", "world:bank", "alice:cash", "USD", "2000.00")
        .await
        .expect(201);
    // A hold: nothing moved yet, so nothing to reverse; then its partial post is what reverses.
    let held = ledger
        .post(
            "/v1/transfers",
            "hold",
            &json!({"source": "alice:cash", "destination": "bob:cash", "asset": "USD",
                    "amount": "80.00", "pending": true}),
        )
        .await;
    let hold_id = held.body["id"].as_str().unwrap().to_owned();
    refused(
        &reverse(&ledger, &hold_id, "r-hold", false).await,
        422,
        "validation_error",
    );
    ledger
        .post(
            &format!("/v1/transactions/{hold_id}/post"),
            "post",
            &json!({"amounts": ["60.00"]}),
        )
        .await
        .expect(201);
    let reversal = reverse(&ledger, &hold_id, "r-posted", false).await;
    reversal.expect(201);
    assert_eq!(reversal.body["postings"][0]["amount"], "60.00");
    assert_eq!(ledger.balance("alice:cash", "USD").await, "2000.00");

    // A trade reverses whole: the shares back, the cash back, the fee back.
    ledger
        .transfer("shares", "world:bank", "bob:cash", "AAPL", "10")
        .await
        .expect(201);
    let trade = ledger
        .post(
            "/v1/trades",
            "trade",
            &json!({"buyer": "alice:cash", "seller": "bob:cash", "instrument": "AAPL", "quantity": "10",
                    "price": "100", "currency": "USD",
                    "fees": [{"payer": "alice:cash", "account": "broker:fees", "amount": "1.25"}]}),
        )
        .await;
    trade.expect(201);
    let trade_id = trade.body["id"].as_str().unwrap().to_owned();
    reverse(&ledger, &trade_id, "r-trade", false)
        .await
        .expect(201);
    assert_eq!(ledger.balance("alice:cash", "USD").await, "2000.00");
    assert_eq!(ledger.balance("alice:cash", "AAPL").await, "0");
    assert_eq!(ledger.balance("bob:cash", "AAPL").await, "10");
    let shown = ledger.get(&format!("/v1/trades/{trade_id}")).await;
    assert!(shown.body["reversed_by"].is_string());

    // The log proves it: a rebuild equals the live projections, reversals included.
    let mut ledger = ledger;
    let report = ledger.stop_and_replay().await;
    assert!(report.identical(), "{report:?}");
    ledger.finish().await;
}
