//! Every validation rule and error code: bad input gets a clear 4xx problem document with a stable
//! code, appends nothing, and is never a 500.

use ledger_tests::serde_json::{json, Value};
use ledger_tests::TestLedger;

const JSON: (&str, &str) = ("content-type", "application/json");

/// Asserts the status and code, and that nothing was appended.
async fn refused(
    ledger: &TestLedger,
    answer: ledger_tests::Answer,
    status: u16,
    code: &str,
    events_before: i64,
) {
    ledger
        .assert_refused(&answer, status, code, events_before)
        .await;
}

#[tokio::test]
async fn malformed_requests_are_400_415_or_413() {
    let ledger = TestLedger::start_with(|c| c.body_bytes_max = 4096).await;
    ledger.market().await;
    let n = ledger.event_count().await;
    let key = ("idempotency-key", "k1");

    for body in [
        &b"{"[..],
        b"not json",
        b"{\"code\":\"EUR\",\"scale\":2} trailing",
        b"",
    ] {
        let a = ledger
            .post_raw("/v1/assets", &[JSON, key], body.to_vec())
            .await;
        refused(&ledger, a, 400, "malformed_json", n).await;
    }
    let unknown = ledger
        .post_raw(
            "/v1/assets",
            &[JSON, key],
            br#"{"code":"EUR","scale":2,"position":7}"#.to_vec(),
        )
        .await;
    refused(&ledger, unknown, 400, "invalid_request", n).await;
    let duplicate = ledger
        .post_raw(
            "/v1/transfers",
            &[JSON, key],
            br#"{"source":"world:bank","destination":"alice:cash","asset":"USD","amount":"1","amount":"1000"}"#.to_vec(),
        )
        .await;
    refused(&ledger, duplicate, 400, "invalid_request", n).await;

    let text = ledger
        .post_raw(
            "/v1/assets",
            &[("content-type", "text/plain"), key],
            br#"{"code":"EUR","scale":2}"#.to_vec(),
        )
        .await;
    refused(&ledger, text, 415, "unsupported_media_type", n).await;
    let none = ledger
        .post_raw(
            "/v1/assets",
            &[key],
            br#"{"code":"EUR","scale":2}"#.to_vec(),
        )
        .await;
    refused(&ledger, none, 415, "unsupported_media_type", n).await;

    let mut big = br#"{"code":"EUR","scale":2,"x":""#.to_vec();
    big.extend(std::iter::repeat_n(b'a', 5000));
    big.extend(br#""}"#);
    let too_large = ledger.post_raw("/v1/assets", &[JSON, key], big).await;
    refused(&ledger, too_large, 413, "payload_too_large", n).await;

    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep = ledger
        .post_raw("/v1/transactions", &[JSON, key], deep.into_bytes())
        .await;
    assert!(deep.status == 400 || deep.status == 413, "{}", deep.text);
    ledger.finish().await;
}

#[tokio::test]
async fn idempotency_key_is_required_and_bounded() {
    let ledger = TestLedger::start().await;
    let n = ledger.event_count().await;
    let body = br#"{"code":"EUR","scale":2}"#.to_vec();
    let missing = ledger.post_raw("/v1/assets", &[JSON], body.clone()).await;
    refused(&ledger, missing, 400, "idempotency_key_missing", n).await;
    let long = "k".repeat(256);
    for bad in ["", long.as_str(), "tab\tkey"] {
        let a = ledger
            .post_raw(
                "/v1/assets",
                &[JSON, ("idempotency-key", bad)],
                body.clone(),
            )
            .await;
        refused(&ledger, a, 400, "idempotency_key_invalid", n).await;
    }
    let longest = "k".repeat(255);
    ledger
        .post_raw("/v1/assets", &[JSON, ("idempotency-key", &longest)], body)
        .await
        .expect(201);
    ledger.finish().await;
}

#[tokio::test]
async fn values_that_break_the_rules_are_422() {
    let ledger = TestLedger::start().await;
    ledger.market().await;
    ledger
        .transfer("fund", "world:bank", "alice:cash", "USD", "10")
        .await
        .expect(201);
    let n = ledger.event_count().await;

    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "/v1/assets",
            json!({"code": "usd", "scale": 2}),
            "validation_error",
        ),
        (
            "/v1/assets",
            json!({"code": "TOO_LONG_ASSET_CODE", "scale": 2}),
            "validation_error",
        ),
        (
            "/v1/assets",
            json!({"code": "EUR", "scale": 19}),
            "validation_error",
        ),
        (
            "/v1/assets",
            json!({"code": "EUR", "scale": -1}),
            "validation_error",
        ),
        ("/v1/assets", json!({"code": "EUR"}), "validation_error"),
        ("/v1/accounts", json!({"code": "Alice"}), "validation_error"),
        (
            "/v1/accounts",
            json!({"code": "аlice:cash"}),
            "validation_error",
        ),
        (
            "/v1/accounts",
            json!({"code": "alice\u{200b}:cash"}),
            "validation_error",
        ),
        (
            "/v1/accounts",
            json!({"code": "alice\u{0}"}),
            "validation_error",
        ),
        (
            "/v1/accounts",
            json!({"code": "a".repeat(129)}),
            "validation_error",
        ),
        (
            "/v1/accounts",
            json!({"code": "carol", "metadata": {"x": "y".repeat(5000)}}),
            "validation_error",
        ),
        (
            "/v1/accounts",
            json!({"code": "carol", "metadata": [1]}),
            "validation_error",
        ),
    ];
    let amounts = [
        "0",
        "-1",
        "1.5e2",
        "NaN",
        "",
        "1.001",
        "79228162514264337593543950336",
    ];
    let mut transfer_cases: Vec<(&str, Value, &str)> = amounts
        .iter()
        .map(|amount| {
            let code = if *amount == "1.001" { "amount_precision" } else { "validation_error" };
            ("/v1/transfers", json!({"source": "world:bank", "destination": "alice:cash", "asset": "USD", "amount": amount}), code)
        })
        .collect();
    transfer_cases.extend([
        ("/v1/transfers", json!({"source": "world:bank", "destination": "alice:cash", "asset": "USD", "amount": 1.5}), "validation_error"),
        ("/v1/transfers", json!({"source": "world:bank", "destination": "alice:cash", "asset": "USD", "amount": 15}), "validation_error"),
        ("/v1/transfers", json!({"source": "world:bank", "destination": "alice:cash", "asset": "usd", "amount": "1"}), "validation_error"),
        ("/v1/transfers", json!({"source": "world:bank", "destination": "alice:cash", "asset": "EUR", "amount": "1"}), "asset_not_found"),
        ("/v1/transfers", json!({"source": "world:bank", "destination": "nobody:cash", "asset": "USD", "amount": "1"}), "account_not_found"),
        ("/v1/transfers", json!({"source": "00000000-0000-0000-0000-000000000000", "destination": "alice:cash", "asset": "USD", "amount": "1"}), "account_not_found"),
        ("/v1/transfers", json!({"source": "alice:cash", "destination": "alice:cash", "asset": "USD", "amount": "1"}), "validation_error"),
        ("/v1/transfers", json!({"source": "alice:cash", "destination": "bob:cash", "asset": "USD", "amount": "10.01"}), "insufficient_funds"),
        ("/v1/transfers", json!({"source": "world:bank", "destination": "alice:cash", "asset": "AAPL", "amount": "0.5"}), "amount_precision"),
        ("/v1/transactions", json!({"postings": []}), "validation_error"),
        ("/v1/transactions", json!({"postings": (0..65).map(|_| json!({"source": "world:bank", "destination": "alice:cash", "asset": "USD", "amount": "1"})).collect::<Vec<_>>()}), "validation_error"),
        ("/v1/trades", json!({"buyer": "alice:cash", "seller": "alice:cash", "instrument": "AAPL", "quantity": "1", "price": "1", "currency": "USD"}), "validation_error"),
        ("/v1/trades", json!({"buyer": "alice:cash", "seller": "bob:cash", "instrument": "USD", "quantity": "1", "price": "1", "currency": "USD"}), "validation_error"),
        ("/v1/trades", json!({"buyer": "alice:cash", "seller": "bob:cash", "instrument": "AAPL", "quantity": "1", "price": "0", "currency": "USD"}), "validation_error"),
        ("/v1/trades", json!({"buyer": "alice:cash", "seller": "bob:cash", "instrument": "AAPL", "quantity": "1", "price": "1", "currency": "USD"}), "insufficient_funds"),
    ]);
    for (i, (path, body, code)) in cases.into_iter().chain(transfer_cases).enumerate() {
        let answer = ledger.post(path, &format!("case-{i}"), &body).await;
        refused(&ledger, answer, 422, code, n).await;
    }
    ledger.finish().await;
}

#[tokio::test]
async fn duplicates_are_409() {
    let ledger = TestLedger::start().await;
    ledger.market().await;
    let n = ledger.event_count().await;
    let asset = ledger
        .post("/v1/assets", "again-1", &json!({"code": "USD", "scale": 4}))
        .await;
    refused(&ledger, asset, 409, "duplicate_asset", n).await;
    let same = ledger
        .post("/v1/assets", "again-2", &json!({"code": "USD", "scale": 2}))
        .await;
    refused(&ledger, same, 409, "duplicate_asset", n).await;
    let account = ledger
        .post("/v1/accounts", "again-3", &json!({"code": "alice:cash"}))
        .await;
    refused(&ledger, account, 409, "duplicate_account", n).await;
    ledger.finish().await;
}

#[tokio::test]
async fn reads_refuse_bad_parameters_and_unknown_things() {
    let ledger = TestLedger::start().await;
    ledger.market().await;
    for (path, status, code) in [
        ("/v1/accounts/nobody:cash", 404, "account_not_found"),
        ("/v1/accounts/NOT A CODE", 422, "validation_error"),
        (
            "/v1/accounts/00000000-0000-0000-0000-000000000000",
            404,
            "account_not_found",
        ),
        ("/v1/accounts/nobody:cash/history", 404, "account_not_found"),
        (
            "/v1/transactions/00000000-0000-0000-0000-000000000000",
            404,
            "transaction_not_found",
        ),
        ("/v1/transactions/not-a-uuid", 404, "transaction_not_found"),
        (
            "/v1/trades/00000000-0000-0000-0000-000000000000",
            404,
            "trade_not_found",
        ),
        ("/v1/accounts?limit=0", 400, "invalid_request"),
        ("/v1/accounts?limit=1001", 400, "invalid_request"),
        ("/v1/accounts?limit=-5", 400, "invalid_request"),
        ("/v1/accounts?limit=ten", 400, "invalid_request"),
        (
            "/v1/accounts?cursor=%27%3B%20DROP%20TABLE%20events%3B--",
            400,
            "invalid_request",
        ),
        (
            "/v1/accounts?prefix=%27%20OR%201%3D1",
            400,
            "invalid_request",
        ),
        ("/v1/accounts?colour=blue", 400, "invalid_request"),
        (
            "/v1/accounts/alice:cash/history?cursor=9999-x",
            400,
            "invalid_request",
        ),
        (
            "/v1/accounts/alice:cash/history?asset=usd",
            400,
            "invalid_request",
        ),
        ("/v1/events?after=-1", 400, "invalid_request"),
        ("/v1/events?limit=100000", 400, "invalid_request"),
        ("/v1/nothing-here", 404, "route_not_found"),
    ] {
        let answer = ledger.get(path).await;
        assert_eq!(answer.status, status, "{path}: {}", answer.text);
        assert_eq!(answer.code(), code, "{path}");
    }
    let wrong_method = ledger
        .client
        .delete(ledger.url("/v1/assets"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status().as_u16(), 405);
    ledger.finish().await;
}
