//! The actions on a transaction or an account that exists (`post`, `void`, `reverse`, `freeze`,
//! `unfreeze`, `close`) take an empty body as `{}`, so that `curl -X POST` without a body works,
//! with or without a JSON content type. A body that is not empty is checked as before, and the
//! OpenAPI document says the body is optional.

use ledger_tests::serde_json::{json, Value};
use ledger_tests::{Answer, TestLedger};

/// POSTs no body at all (no `Content-Length`, as `curl -X POST` sends it), with this content
/// type or none.
async fn post_nothing(ledger: &TestLedger, path: &str, key: &str, json: bool) -> Answer {
    let mut request = ledger
        .client
        .post(ledger.url(path))
        .header("idempotency-key", key);
    if json {
        request = request.header("content-type", "application/json");
    }
    TestLedger::read(request.send().await.expect("POST")).await
}

async fn hold(ledger: &TestLedger, key: &str, amount: &str) -> String {
    let answer = ledger
        .post(
            "/v1/transfers",
            key,
            &json!({"source": "alice:cash", "destination": "bob:cash", "asset": "USD",
                    "amount": amount, "pending": true}),
        )
        .await;
    answer.expect(201);
    answer.body["id"].as_str().expect("an id").to_owned()
}

#[tokio::test]
async fn each_of_the_six_actions_takes_an_empty_body_as_an_empty_object() {
    let ledger = TestLedger::start().await;
    ledger.market().await;
    ledger
        .transfer("fund", "world:bank", "alice:cash", "USD", "100.00")
        .await
        .expect(201);

    let posted = hold(&ledger, "hold-1", "10.00").await;
    let post = post_nothing(
        &ledger,
        &format!("/v1/transactions/{posted}/post"),
        "post",
        false,
    )
    .await;
    post.expect(201);
    assert_eq!(post.body["status"], "posted", "{}", post.text);

    let voided = hold(&ledger, "hold-2", "20.00").await;
    let void = post_nothing(
        &ledger,
        &format!("/v1/transactions/{voided}/void"),
        "void",
        true,
    )
    .await;
    void.expect(201);
    assert_eq!(void.body["status"], "voided", "{}", void.text);

    let reverse = post_nothing(
        &ledger,
        &format!("/v1/transactions/{posted}/reverse"),
        "reverse",
        false,
    )
    .await;
    reverse.expect(201);
    assert_eq!(reverse.body["kind"], "reversal", "{}", reverse.text);
    assert_eq!(ledger.balance("alice:cash", "USD").await, "100.00");

    for (path, key, json, status) in [
        ("/v1/accounts/bob:cash/freeze", "freeze", false, "frozen"),
        ("/v1/accounts/bob:cash/unfreeze", "unfreeze", true, "open"),
        ("/v1/accounts/broker:fees/close", "close", false, "closed"),
    ] {
        let answer = post_nothing(&ledger, path, key, json).await;
        answer.expect(201);
        assert_eq!(answer.body["status"], status, "{}", answer.text);
    }

    // An empty body and `{}` are the same request: the same key replays the first answer.
    let again = ledger
        .post(
            &format!("/v1/transactions/{voided}/void"),
            "void",
            &json!({}),
        )
        .await;
    again.expect(201);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body, void.body);
    ledger.finish().await;
}

#[tokio::test]
async fn an_action_body_that_is_not_empty_is_checked_as_before() {
    let ledger = TestLedger::start().await;
    ledger.market().await;
    let events = ledger.event_count().await;
    let path = "/v1/accounts/bob:cash/freeze";
    for (headers, body, status, code) in [
        (
            &[("content-type", "application/json")][..],
            &b"not json"[..],
            400,
            "malformed_json",
        ),
        (
            &[("content-type", "application/json")][..],
            &b" "[..],
            400,
            "malformed_json",
        ),
        (
            &[("content-type", "application/json")][..],
            &b"null"[..],
            422,
            "validation_error",
        ),
        (
            &[("content-type", "application/json")][..],
            &br#"{"why":1}"#[..],
            400,
            "invalid_request",
        ),
        (&[][..], &b"{}"[..], 415, "unsupported_media_type"),
        (
            &[("content-type", "text/plain")][..],
            &b""[..],
            415,
            "unsupported_media_type",
        ),
    ] {
        let mut headers = headers.to_vec();
        headers.push(("idempotency-key", "freeze"));
        let answer = ledger.post_raw(path, &headers, body.to_vec()).await;
        ledger.assert_refused(&answer, status, code, events).await;
    }
    // Without an idempotency key, an empty body is refused for that, not for its emptiness.
    let answer = ledger.post_raw(path, &[], Vec::new()).await;
    ledger
        .assert_refused(&answer, 400, "idempotency_key_missing", events)
        .await;
    ledger.finish().await;
}

#[tokio::test]
async fn the_openapi_document_says_an_action_body_is_optional() {
    let ledger = TestLedger::start().await;
    let document = ledger.get("/openapi.json").await;
    document.expect(200);
    let paths = &document.body["paths"];
    for path in [
        "/v1/transactions/{id}/{action}",
        "/v1/accounts/{id_or_code}/{action}",
        "/v1/trades/{id}/settle",
    ] {
        let body = &paths[path]["post"]["requestBody"];
        assert_eq!(body["required"], Value::Bool(false), "{path}: {body}");
        // The schema stays the request's (not nullable: a `null` body is still refused).
        assert!(
            body["content"]["application/json"]["schema"]["$ref"].is_string(),
            "{path}: {body}"
        );
    }
    assert_eq!(
        paths["/v1/transfers"]["post"]["requestBody"]["required"],
        true
    );
    ledger.finish().await;
}
