//! Two-phase transactions over HTTP: a hold reserves, a post (whole or in part) moves, a void or
//! an expiry releases; each hold is settled once; expiry is an event the ledger appends itself,
//! also for holds that fell due while it was down; and the log still proves every balance.

use std::time::Duration;

use ledger_tests::serde_json::{json, Value};
use ledger_tests::{Answer, TestLedger};

/// (balance, pending_debits, pending_credits, available) of an account in USD.
async fn usd(ledger: &TestLedger, account: &str) -> (String, String, String, String) {
    let answer = ledger.get(&format!("/v1/accounts/{account}")).await;
    answer.expect(200);
    let balances = answer.body["balances"].as_array().unwrap();
    let usd = balances.iter().find(|b| b["asset"] == "USD").unwrap();
    let text = |field: &str| usd[field].as_str().unwrap().to_owned();
    (
        text("balance"),
        text("pending_debits"),
        text("pending_credits"),
        text("available"),
    )
}

fn figures(
    balance: &str,
    debits: &str,
    credits: &str,
    available: &str,
) -> (String, String, String, String) {
    (
        balance.into(),
        debits.into(),
        credits.into(),
        available.into(),
    )
}

async fn hold(ledger: &TestLedger, key: &str, amount: &str, extra: Value) -> Answer {
    let mut body = json!({"source": "alice:cash", "destination": "bob:cash", "asset": "USD",
                          "amount": amount, "pending": true});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let answer = ledger.post("/v1/transfers", key, &body).await;
    answer.expect(201);
    assert_eq!(answer.body["status"], "pending");
    answer
}

async fn status_of(ledger: &TestLedger, id: &str) -> String {
    let answer = ledger.get(&format!("/v1/transactions/{id}")).await;
    answer.expect(200);
    answer.body["status"].as_str().unwrap().to_owned()
}

/// Waits, within a bound, until the ledger itself has expired the hold.
async fn wait_until_expired(ledger: &TestLedger, id: &str) {
    for _ in 0..100 {
        if status_of(ledger, id).await == "expired" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("hold {id} did not expire within 10 s");
}

fn refused(answer: &Answer, status: u16, code: &str) {
    assert_eq!(answer.status, status, "{}", answer.text);
    assert_eq!(answer.code(), code, "{}", answer.text);
}

#[tokio::test]
async fn a_hold_partially_posted_and_a_hold_voided() {
    let ledger = TestLedger::start().await;
    ledger.market().await;
    ledger
        .transfer("fund", "world:bank", "alice:cash", "USD", "100.00")
        .await
        .expect(201); // 7

    let held = hold(&ledger, "hold-1", "80.00", json!({})).await; // 8
    let id = held.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        usd(&ledger, "alice:cash").await,
        figures("100.00", "80.00", "0.00", "20.00")
    );
    assert_eq!(
        usd(&ledger, "bob:cash").await,
        figures("0.00", "0.00", "80.00", "0.00")
    );
    // The reservation is spoken for.
    let spend = ledger
        .transfer("spend", "alice:cash", "world:bank", "USD", "20.01")
        .await;
    refused(&spend, 422, "insufficient_funds");
    assert_eq!(spend.body["context"]["balance"], "20.00");

    // Post 60 of the 80: the rest is released.
    let posted = ledger
        .post(
            &format!("/v1/transactions/{id}/post"),
            "post-1",
            &json!({"amounts": ["60.00"], "metadata": {"ticket": "A-1"}}),
        )
        .await;
    posted.expect(201);
    assert_eq!(posted.body["status"], "posted");
    assert_eq!(posted.body["postings"][0]["amount"], "60.00");
    assert_eq!(posted.body["released"][0]["amount"], "80.00");
    assert_eq!(posted.position(), 9);
    assert_eq!(
        usd(&ledger, "alice:cash").await,
        figures("40.00", "0.00", "0.00", "40.00")
    );
    assert_eq!(
        usd(&ledger, "bob:cash").await,
        figures("60.00", "0.00", "0.00", "60.00")
    );
    let shown = ledger.get(&format!("/v1/transactions/{id}")).await;
    assert_eq!(shown.body["status"], "posted");
    assert_eq!(shown.body["settlement"]["position"], 9);
    assert_eq!(shown.body["postings"][0]["amount"], "80.00");

    // Settled once: both a second post and a void are refused, appending nothing.
    for (action, key) in [("post", "post-2"), ("void", "void-1")] {
        let again = ledger
            .post(&format!("/v1/transactions/{id}/{action}"), key, &json!({}))
            .await;
        refused(&again, 422, "pending_already_posted");
    }
    // A retry of the post with its key is the original answer.
    let retried = ledger
        .post(
            &format!("/v1/transactions/{id}/post"),
            "post-1",
            &json!({"amounts": ["60.00"], "metadata": {"ticket": "A-1"}}),
        )
        .await;
    assert_eq!(retried.header("idempotent-replayed"), Some("true"));
    assert_eq!(retried.body, posted.body);

    // A second hold, voided.
    let second = hold(&ledger, "hold-2", "40.00", json!({})).await; // 10
    let second_id = second.body["id"].as_str().unwrap().to_owned();
    let voided = ledger
        .post(
            &format!("/v1/transactions/{second_id}/void"),
            "void-2",
            &json!({}),
        )
        .await;
    voided.expect(201); // 11
    assert_eq!(voided.body["status"], "voided");
    assert_eq!(
        usd(&ledger, "alice:cash").await,
        figures("40.00", "0.00", "0.00", "40.00")
    );
    let after_void = ledger
        .post(
            &format!("/v1/transactions/{second_id}/post"),
            "post-3",
            &json!({}),
        )
        .await;
    refused(&after_void, 422, "pending_already_voided");

    // Refusals of the request itself.
    let unknown = ledger
        .post(
            "/v1/transactions/00000000-0000-0000-0000-000000000001/post",
            "unknown",
            &json!({}),
        )
        .await;
    refused(&unknown, 422, "pending_not_found");
    let third = hold(&ledger, "hold-3", "10.00", json!({})).await; // 12
    let third_id = third.body["id"].as_str().unwrap().to_owned();
    for (key, action, body, status, code) in [
        (
            "bad-1",
            "post",
            json!({"amounts": ["10.01"]}),
            422,
            "validation_error",
        ),
        (
            "bad-2",
            "post",
            json!({"amounts": ["1", "1"]}),
            422,
            "validation_error",
        ),
        (
            "bad-3",
            "post",
            json!({"amounts": ["0.001"]}),
            422,
            "amount_precision",
        ),
        (
            "bad-4",
            "void",
            json!({"amounts": ["1"]}),
            422,
            "validation_error",
        ),
        (
            "bad-5",
            "post",
            json!({"amount": "1"}),
            400,
            "invalid_request",
        ),
        ("bad-6", "settle", json!({}), 404, "route_not_found"),
    ] {
        let answer = ledger
            .post(&format!("/v1/transactions/{third_id}/{action}"), key, &body)
            .await;
        refused(&answer, status, code);
    }
    for (key, extra, code) in [
        (
            "terms-1",
            json!({"pending": false, "timeout_s": 10}),
            "validation_error",
        ),
        (
            "terms-2",
            json!({"timeout_s": 10, "expires_at": "2030-01-01T00:00:00Z"}),
            "validation_error",
        ),
        ("terms-3", json!({"timeout_s": 0}), "validation_error"),
        (
            "terms-4",
            json!({"expires_at": "2999-01-01T00:00:00Z"}),
            "validation_error",
        ),
    ] {
        let mut body = json!({"source": "alice:cash", "destination": "bob:cash", "asset": "USD",
                              "amount": "1.00", "pending": true});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        refused(&ledger.post("/v1/transfers", key, &body).await, 422, code);
    }
    let internal = ledger
        .transfer("ledger:expire:x", "alice:cash", "bob:cash", "USD", "1.00")
        .await;
    refused(&internal, 400, "idempotency_key_invalid");
    assert_eq!(ledger.event_count().await, 12);

    // An account with a hold does not close.
    let close = ledger
        .post("/v1/accounts/alice:cash/close", "close", &json!({}))
        .await;
    refused(&close, 422, "account_not_empty");

    // The independent verifier follows holds and settlements to the same balances.
    let path = ledger.export().await;
    let (ok, independent) = ledger_tests::python_verify(&path);
    assert!(ok, "{independent}");
    ledger.assert_verifier_agrees(&independent).await;
    let _ = std::fs::remove_file(path);
    ledger.finish().await;
}

#[tokio::test]
async fn holds_expire_by_themselves_also_across_a_restart() {
    let mut ledger = TestLedger::start().await;
    ledger.market().await;
    ledger
        .transfer("fund", "world:bank", "alice:cash", "USD", "100.00")
        .await
        .expect(201);
    let first = hold(&ledger, "hold-1", "30.00", json!({"timeout_s": 60})).await;
    let first_id = first.body["id"].as_str().unwrap().to_owned();
    assert!(first.body["expires_at"].is_string());
    ledger.clock.advance(Duration::from_secs(61));
    wait_until_expired(&ledger, &first_id).await;
    assert_eq!(
        usd(&ledger, "alice:cash").await,
        figures("100.00", "0.00", "0.00", "100.00")
    );
    let late = ledger
        .post(
            &format!("/v1/transactions/{first_id}/post"),
            "late",
            &json!({}),
        )
        .await;
    refused(&late, 422, "pending_expired");
    // The expiry is an event of its own, under the ledger's own key.
    let events = ledger.get("/v1/events?after=0&limit=100").await;
    let expiry = events.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "PendingExpired")
        .unwrap()
        .clone();
    assert_eq!(expiry["payload"]["pending_id"], first_id.as_str());
    assert_eq!(
        expiry["metadata"]["idempotency_key"],
        format!("ledger:expire:{first_id}")
    );

    // A hold that falls due while the ledger is down expires when it is back.
    let second = hold(&ledger, "hold-2", "30.00", json!({"timeout_s": 60})).await;
    let second_id = second.body["id"].as_str().unwrap().to_owned();
    ledger.stop_server().await;
    ledger.clock.advance(Duration::from_secs(61));
    ledger.restart().await;
    wait_until_expired(&ledger, &second_id).await;
    assert_eq!(
        usd(&ledger, "alice:cash").await,
        figures("100.00", "0.00", "0.00", "100.00")
    );

    // A hold past its time cannot be posted even before its expiry event is appended: here the
    // time is already past when it is created.
    let third = hold(
        &ledger,
        "hold-3",
        "1.00",
        json!({"expires_at": "2020-01-01T00:00:00Z"}),
    )
    .await;
    let third_id = third.body["id"].as_str().unwrap().to_owned();
    wait_until_expired(&ledger, &third_id).await;

    // The log proves it all: a rebuild equals the live projections.
    let report = ledger.stop_and_replay().await;
    assert!(report.identical(), "{report:?}");
    ledger.finish().await;
}

#[tokio::test]
async fn a_pending_trade_is_posted_whole() {
    let ledger = TestLedger::start().await;
    ledger.market().await;
    ledger
        .transfer("fund", "world:bank", "alice:cash", "USD", "2000.00")
        .await
        .expect(201);
    ledger
        .transfer("shares", "world:bank", "bob:cash", "AAPL", "10")
        .await
        .expect(201);
    let trade = ledger
        .post(
            "/v1/trades",
            "trade",
            &json!({"buyer": "alice:cash", "seller": "bob:cash", "instrument": "AAPL", "quantity": "10",
                    "price": "189.50", "currency": "USD", "pending": true}),
        )
        .await;
    trade.expect(201);
    assert_eq!(trade.body["status"], "pending");
    let id = trade.body["id"].as_str().unwrap().to_owned();
    assert_eq!(ledger.balance("bob:cash", "AAPL").await, "10");
    let part = ledger
        .post(
            &format!("/v1/transactions/{id}/post"),
            "part",
            &json!({"amounts": ["5", "947.50"]}),
        )
        .await;
    refused(&part, 422, "validation_error");
    ledger
        .post(&format!("/v1/transactions/{id}/post"), "whole", &json!({}))
        .await
        .expect(201);
    assert_eq!(ledger.balance("alice:cash", "AAPL").await, "10");
    assert_eq!(ledger.balance("alice:cash", "USD").await, "105.00");
    let shown = ledger.get(&format!("/v1/trades/{id}")).await;
    assert_eq!(shown.body["status"], "posted");
    ledger.finish().await;
}
