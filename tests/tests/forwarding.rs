//! Every node takes every request: a node that is not the writer forwards writes to the one that
//! is and relays its answer unchanged; with no writer, a write is 503 `writer_unavailable`; when
//! the writer goes, another node takes over and continues the log.

use std::time::Duration;

use ledger_tests::serde_json::{json, Value};
use ledger_tests::{eventually, Answer, TestLedger};

/// How long a takeover or a lookup of the writer may take in these tests: the standby retries
/// the lock every 500 ms.
const TAKEOVER_BOUND: Duration = Duration::from_secs(10);

/// A second server on the first one's database, with the same admin key.
async fn follower_of(writer: &TestLedger) -> TestLedger {
    let admin_key = writer.admin_key.clone();
    TestLedger::serve(&writer.database_url, |config| {
        config.insecure_no_auth = admin_key.is_none();
        config.bootstrap_admin_key = admin_key;
    })
    .await
}

/// Waits until `/readyz` on `node` says `role`, and returns what it said.
async fn role_is(node: &TestLedger, role: &str) -> Value {
    eventually(
        TAKEOVER_BOUND,
        &format!("{} becomes {role}", node.base),
        || async {
            let ready = node.get("/readyz").await;
            (ready.status == 200 && ready.body["role"] == role).then_some(ready.body)
        },
    )
    .await
}

fn same_answer(a: &Answer, b: &Answer) {
    assert_eq!(a.status, b.status, "{} / {}", a.text, b.text);
    assert_eq!(a.body, b.body);
    assert_eq!(a.header("ledger-position"), b.header("ledger-position"));
    assert_eq!(a.header("content-type"), b.header("content-type"));
}

#[tokio::test]
async fn a_follower_forwards_writes_to_the_writer_and_relays_its_answer_unchanged() {
    let writer = TestLedger::start_secured().await;
    writer.market().await;
    let follower = follower_of(&writer).await;
    let ready = role_is(&follower, "follower").await;
    assert_eq!(ready["writer"], "standby");
    assert_eq!(ready["writer_url"], writer.base.as_str());
    assert_eq!(
        role_is(&writer, "writer").await["writer_url"],
        writer.base.as_str()
    );

    // A write through the follower is the writer's: same position, same body on replay anywhere.
    let via_follower = follower
        .transfer("pay-1", "world:bank", "alice:cash", "USD", "25.00")
        .await;
    via_follower.expect(201);
    assert_eq!(via_follower.header("idempotent-replayed"), None);
    let replayed_on_writer = writer
        .transfer("pay-1", "world:bank", "alice:cash", "USD", "25.00")
        .await;
    same_answer(&via_follower, &replayed_on_writer);
    assert_eq!(
        replayed_on_writer.header("idempotent-replayed"),
        Some("true")
    );
    let replayed_on_follower = follower
        .transfer("pay-1", "world:bank", "alice:cash", "USD", "25.00")
        .await;
    same_answer(&via_follower, &replayed_on_follower);
    assert_eq!(
        replayed_on_follower.header("idempotent-replayed"),
        Some("true")
    );

    // A refusal is relayed as the writer gave it, and stored under the key like any answer.
    let refused = follower
        .transfer("pay-2", "alice:cash", "bob:cash", "USD", "1000.00")
        .await;
    assert_eq!(refused.status, 422);
    assert_eq!(refused.code(), "insufficient_funds");
    let refused_again = writer
        .transfer("pay-2", "alice:cash", "bob:cash", "USD", "1000.00")
        .await;
    same_answer(&refused, &refused_again);
    // The same key with another request is refused the same way through either node.
    let reused = follower
        .transfer("pay-1", "world:bank", "alice:cash", "USD", "26.00")
        .await;
    assert_eq!(reused.status, 422);
    assert_eq!(reused.code(), "idempotency_key_reused");

    // A request the follower cannot authenticate never travels: 401 from the follower itself.
    let anonymous = follower
        .call_as(
            None,
            reqwest::Method::POST,
            "/v1/transfers",
            Some("pay-3"),
            Some(&json!({"source": "world:bank", "destination": "alice:cash", "asset": "USD", "amount": "1"})),
        )
        .await;
    assert_eq!(anonymous.status, 401);

    // Read your write on the other node.
    let read = follower
        .account_at("alice:cash", via_follower.position())
        .await;
    read.expect(200);
    assert!(read.position() >= via_follower.position());
    assert_eq!(follower.balance("alice:cash", "USD").await, "25.00");

    let mut follower = follower;
    follower.stop_server().await;
    writer.finish().await;
}

#[tokio::test]
async fn with_no_writer_a_write_is_503_writer_unavailable_with_retry_after() {
    let first = TestLedger::start().await;
    first.market().await;
    let database_url = first.database_url.clone();
    let mut first = first;
    first.stop_server().await;
    // Someone who is not a ledger node holds the writer's lock: no node is the writer.
    let mut holder = first.sql().await;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(infrastructure::writer_lock::WRITER_LOCK_KEY)
        .fetch_one(&mut holder)
        .await
        .unwrap();
    assert!(locked);
    let node = TestLedger::serve(&database_url, |_| {}).await;
    let refused = eventually(TAKEOVER_BOUND, "the node stands by", || async {
        let a = node
            .transfer("pay-1", "world:bank", "alice:cash", "USD", "1")
            .await;
        (a.status == 503).then_some(a)
    })
    .await;
    assert_eq!(refused.code(), "writer_unavailable");
    assert!(refused.header("retry-after").is_some());
    let ready = node.get("/readyz").await;
    ready.expect(503);
    assert_eq!(ready.body["role"], "follower");
    assert_eq!(ready.body["writer_url"], Value::Null);
    // Reads still work.
    node.get("/v1/accounts/alice:cash").await.expect(200);

    // The lock is free again: the node becomes the writer and the write goes through.
    drop(holder);
    role_is(&node, "writer").await;
    node.transfer("pay-1", "world:bank", "alice:cash", "USD", "1")
        .await
        .expect(201);
    let mut node = node;
    node.stop_server().await;
    first.finish().await;
}

#[tokio::test]
async fn when_the_writer_stops_a_follower_takes_over_and_continues_the_log() {
    let mut first = TestLedger::start().await;
    first.market().await;
    let second = follower_of(&first).await;
    role_is(&second, "follower").await;
    let written = first
        .transfer("via-first", "world:bank", "alice:cash", "USD", "5")
        .await;
    written.expect(201);

    first.stop_server().await;
    role_is(&second, "writer").await;
    let taken_over = second
        .transfer("via-second", "world:bank", "alice:cash", "USD", "1")
        .await;
    taken_over.expect(201);
    assert_eq!(taken_over.position(), written.position() + 1);
    assert_eq!(second.balance("alice:cash", "USD").await, "6.00");
    let mut second = second;
    second.stop_server().await;
    first.finish().await;
}

#[tokio::test]
async fn each_ledger_has_its_own_writer_and_a_follower_forwards_to_it() {
    let first = TestLedger::start_secured().await;
    first.market().await;
    first
        .post("/v1/ledgers", "create-b", &json!({"name": "b"}))
        .await
        .expect(201);
    let second = follower_of(&first).await;
    role_is(&second, "follower").await;
    // Ledger b is used first on the second node: its writer is there, while `default`'s stays
    // on the first.
    second
        .post(
            "/v1/ledgers/b/assets",
            "usd",
            &json!({"code": "USD", "scale": 2}),
        )
        .await
        .expect(201);
    assert_eq!(writer_of_b(&second).await, "leader");
    eventually(TAKEOVER_BOUND, "the first node stands by for b", || async {
        (writer_of_b(&first).await == "standby").then_some(())
    })
    .await;
    // Writes to b through the first node go to the second; writes to `default` through the
    // second go to the first.
    let via_first = first
        .post(
            "/v1/ledgers/b/accounts",
            "open-x",
            &json!({"code": "x:cash", "allow_negative": true}),
        )
        .await;
    via_first.expect(201);
    assert_eq!(via_first.position(), 2);
    let replayed = second
        .post(
            "/v1/ledgers/b/accounts",
            "open-x",
            &json!({"code": "x:cash", "allow_negative": true}),
        )
        .await;
    same_answer(&via_first, &replayed);
    let via_second = second
        .transfer("pay", "world:bank", "alice:cash", "USD", "5.00")
        .await;
    via_second.expect(201);
    assert_eq!(role_is(&first, "writer").await["role"], "writer");
    assert_eq!(first.balance("alice:cash", "USD").await, "5.00");
    second.finish().await;
    first.finish().await;
}

/// This node's writer of ledger b, as `GET /v1/ledgers/b` tells.
async fn writer_of_b(node: &TestLedger) -> Value {
    node.get("/v1/ledgers/b").await.body["writer"].clone()
}

#[tokio::test]
async fn a_transfer_between_ledgers_written_on_different_nodes_ends_on_both() {
    let first = TestLedger::start().await;
    let second = follower_of(&first).await;
    role_is(&second, "follower").await;
    // Ledger a is written by the second node, ledger b by the first.
    for (node, name) in [(&second, "a"), (&first, "b")] {
        node.create_ledger_with_usd(name, &["x:cash"]).await;
        let prefix = format!("/v1/ledgers/{name}");
        node.post(
            &format!("{prefix}/transfers"),
            "fund",
            &json!({"source": "world:bank", "destination": "x:cash", "asset": "USD", "amount": "50.00"}),
        )
        .await
        .expect(201);
        assert_eq!(node.get(&prefix).await.body["writer"], "leader");
    }
    // Asked of the first node, which writes b only: it does b's steps, the second node's
    // recovery loop a's.
    let asked = first
        .post(
            "/v1/ledger-transfers",
            "across",
            &json!({"source_ledger": "a", "source": "x:cash", "destination_ledger": "b",
                    "destination": "x:cash", "asset": "USD", "amount": "20.00"}),
        )
        .await;
    assert!(asked.status == 201 || asked.status == 202, "{}", asked.text);
    let id = asked.body["id"].as_str().unwrap().to_owned();
    let done = eventually(TAKEOVER_BOUND * 3, "the transfer finishes", || async {
        let got = first.get(&format!("/v1/ledger-transfers/{id}")).await;
        (got.body["state"] == "posted").then_some(got.body)
    })
    .await;
    assert_eq!(done["state"], "posted");
    let balance = |node: &TestLedger, name: &str| {
        let path = format!("/v1/ledgers/{name}/accounts/x:cash");
        let node = node.base.clone();
        async move {
            let answer: Value = reqwest::get(format!("{node}{path}"))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            answer["balances"][0]["balance"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    assert_eq!(balance(&first, "a").await, "30.00");
    assert_eq!(balance(&second, "b").await, "70.00");
    second.finish().await;
    first.finish().await;
}
