//! Webhooks, end to end: the real server delivering to a real HTTP receiver on loopback.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api::ServeConfig;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use infrastructure::webhooks::signing;
use ledger_tests::{eventually, Answer, TestLedger};
use serde_json::{json, Value};

/// How long a test waits for deliveries to reach a state.
const WAIT: Duration = Duration::from_secs(60);

/// How the receiver answers one request.
#[derive(Debug, Clone, Copy)]
enum Behaviour {
    Status(u16),
    /// Never answers: the ledger's request times out.
    Hang,
}

/// A request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    /// The ledger the delivery names (`Ledger-Name`).
    ledger: String,
    position: i64,
    signature: String,
    body: Bytes,
    /// What it answered (0: it hung).
    answered: u16,
}

#[derive(Default)]
struct Script {
    next: VecDeque<Behaviour>,
    otherwise: Option<Behaviour>,
    received: Vec<Received>,
}

/// A local HTTP receiver: answers requests by its script, then by `otherwise`.
struct Receiver {
    addr: SocketAddr,
    script: Arc<Mutex<Script>>,
    task: tokio::task::JoinHandle<()>,
}

async fn receive(
    State(script): State<Arc<Mutex<Script>>>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let behaviour = {
        let mut script = script.lock().unwrap();
        let behaviour = script
            .next
            .pop_front()
            .or(script.otherwise)
            .unwrap_or(Behaviour::Status(200));
        script.received.push(Received {
            path,
            ledger: header(signing::LEDGER_HEADER),
            position: header(signing::POSITION_HEADER).parse().unwrap_or(-1),
            signature: header(signing::SIGNATURE_HEADER),
            body,
            answered: match behaviour {
                Behaviour::Status(s) => s,
                Behaviour::Hang => 0,
            },
        });
        behaviour
    };
    match behaviour {
        Behaviour::Status(status) => StatusCode::from_u16(status).unwrap(),
        Behaviour::Hang => std::future::pending().await,
    }
}

impl Receiver {
    async fn start(next: Vec<Behaviour>, otherwise: Behaviour) -> Self {
        let script = Arc::new(Mutex::new(Script {
            next: next.into(),
            otherwise: Some(otherwise),
            received: Vec::new(),
        }));
        let app = axum::Router::new()
            .route("/{path}", axum::routing::post(receive))
            .with_state(script.clone());
        let (addr, task) = ledger_tests::serve_on_loopback(app).await;
        Self { addr, script, task }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }

    fn answer_from_now_on(&self, behaviour: Behaviour) {
        self.script.lock().unwrap().otherwise = Some(behaviour);
    }

    fn received(&self) -> Vec<Received> {
        self.script.lock().unwrap().received.clone()
    }

    /// The positions it accepted (answered 2xx) on `path`, in the order they came.
    fn accepted(&self, path: &str) -> Vec<i64> {
        self.received()
            .into_iter()
            .filter(|r| r.path == path && (200..300).contains(&r.answered))
            .map(|r| r.position)
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Receivers on loopback, short timeouts and retries: a test waits milliseconds, not minutes.
fn fast(config: &mut ServeConfig) {
    config.webhook_allow_private = true;
    config.webhook_timeout_ms = 1_000;
    config.webhook_retry_base_ms = 10;
    config.webhook_retry_max_ms = 100;
}

async fn subscribe(ledger: &TestLedger, request: Value) -> Answer {
    let answer = ledger
        .client
        .post(ledger.url("/v1/admin/webhooks"))
        .json(&request)
        .send()
        .await
        .expect("POST");
    TestLedger::read(answer).await
}

async fn head(ledger: &TestLedger) -> i64 {
    ledger.event_count().await
}

/// Waits until the subscription's cursor reaches `position`.
async fn delivered_through(ledger: &TestLedger, id: &str, position: i64) -> Value {
    eventually(WAIT, "the cursor reaches the head", || async {
        let answer = ledger.get(&format!("/v1/admin/webhooks/{id}")).await;
        answer.expect(200);
        (answer.body["cursor"].as_i64() >= Some(position)).then_some(answer.body)
    })
    .await
}

async fn deliveries(ledger: &TestLedger, id: &str) -> Vec<Value> {
    let answer = ledger
        .get(&format!("/v1/admin/webhooks/{id}/deliveries?limit=1000"))
        .await;
    answer.expect(200);
    let mut items = answer.body["items"].as_array().unwrap().clone();
    items.reverse();
    items
}

/// The log as `GET /v1/events` gives it.
async fn events(ledger: &TestLedger) -> Vec<Value> {
    let answer = ledger.get("/v1/events?after=0&limit=1000").await;
    answer.expect(200);
    answer.body["items"].as_array().unwrap().clone()
}

async fn some_transfers(ledger: &TestLedger, tag: &str, n: usize) {
    for i in 0..n {
        ledger
            .transfer(
                &format!("{tag}-{i}"),
                "world:bank",
                "alice:cash",
                "USD",
                "1.00",
            )
            .await
            .expect(201);
    }
}

#[tokio::test]
async fn a_receiver_that_fails_then_times_out_then_recovers_gets_every_event_in_order_signed() {
    let receiver = Receiver::start(
        vec![Behaviour::Status(500), Behaviour::Hang],
        Behaviour::Status(200),
    )
    .await;
    let ledger = TestLedger::start_with(fast).await;
    ledger.market().await;
    let created = subscribe(&ledger, json!({"url": receiver.url("hook"), "after": 0})).await;
    created.expect(201);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let secret = created.body["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    some_transfers(&ledger, "pay", 3).await;
    let head = head(&ledger).await;
    delivered_through(&ledger, &id, head).await;

    assert_eq!(receiver.accepted("hook"), (1..=head).collect::<Vec<_>>());
    let log = events(&ledger).await;
    let now = chrono::Utc::now().timestamp();
    for received in receiver.received() {
        signing::verify(&received.signature, &secret, &received.body, now, 60)
            .unwrap_or_else(|e| panic!("position {}: {e}", received.position));
        let body: Value = serde_json::from_slice(&received.body).unwrap();
        assert_eq!(
            body,
            log[received.position as usize - 1],
            "the body is the event"
        );
    }
    let attempts = deliveries(&ledger, &id).await;
    let first: Vec<(&str, i64)> = attempts[..3]
        .iter()
        .map(|a| {
            (
                a["outcome"].as_str().unwrap(),
                a["attempt"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        first,
        [("rejected", 1), ("timeout", 2), ("delivered", 3)],
        "{attempts:?}"
    );
    assert!(attempts.iter().take(3).all(|a| a["position"] == 1));
    assert_eq!(attempts[0]["status_code"], 500);
    assert!(attempts[1]["error"].as_str().unwrap().contains("no answer"));
    assert!(attempts.iter().all(|a| a["latency_ms"].as_i64() >= Some(0)));
    let metrics = ledger.get("/metrics").await.text;
    assert!(metrics.contains("ledger_webhook_deliveries_total{outcome=\"timeout\"} 1"));
    assert!(metrics.contains(&format!(
        "ledger_webhook_lag_events{{subscription=\"{id}\"}}"
    )));
    // The secret is shown once.
    let listed = ledger.get("/v1/admin/webhooks").await;
    assert!(!listed.text.contains(&secret));
    assert!(!ledger
        .get(&format!("/v1/admin/webhooks/{id}"))
        .await
        .text
        .contains(&secret));
    ledger.finish().await;
}

#[tokio::test]
async fn failures_in_a_row_disable_the_subscription() {
    let receiver = Receiver::start(vec![], Behaviour::Status(503)).await;
    let ledger = TestLedger::start_with(|config| {
        fast(config);
        config.webhook_failures_max = 3;
    })
    .await;
    ledger.market().await;
    let created = subscribe(&ledger, json!({"url": receiver.url("hook"), "after": 0})).await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let disabled = eventually(WAIT, "the subscription is disabled", || async {
        let answer = ledger.get(&format!("/v1/admin/webhooks/{id}")).await;
        (answer.body["enabled"] == false).then_some(answer.body)
    })
    .await;
    assert!(disabled["disabled_reason"]
        .as_str()
        .unwrap()
        .contains("3 failed deliveries in a row"));
    assert_eq!(disabled["cursor"], 0);
    assert_eq!(disabled["consecutive_failures"], 3);
    let attempts = deliveries(&ledger, &id).await;
    assert_eq!(attempts.len(), 3);
    assert!(attempts
        .iter()
        .all(|a| a["position"] == 1 && a["status_code"] == 503));
    let listed = ledger.get("/v1/admin/webhooks").await;
    assert_eq!(listed.body["items"][0]["enabled"], false);
    assert_eq!(receiver.received().len(), 3);

    // Enabled again once the receiver is repaired: it resumes from the cursor.
    receiver.answer_from_now_on(Behaviour::Status(204));
    let enabled = ledger
        .post(&format!("/v1/admin/webhooks/{id}/enable"), "e", &json!({}))
        .await;
    enabled.expect(200);
    assert_eq!(enabled.body["consecutive_failures"], 0);
    let head = head(&ledger).await;
    delivered_through(&ledger, &id, head).await;
    assert_eq!(receiver.accepted("hook"), (1..=head).collect::<Vec<_>>());
    ledger.finish().await;
}

/// Whether an event of the log touches an account under `alice`.
fn touches_alice(event: &Value) -> bool {
    let payload = &event["payload"];
    let under = |v: &Value| {
        v.as_str()
            .is_some_and(|c| c == "alice" || c.starts_with("alice:"))
    };
    under(&payload["code"])
        || payload["postings"].as_array().is_some_and(|postings| {
            postings
                .iter()
                .any(|p| under(&p["source"]) || under(&p["destination"]))
        })
}

#[tokio::test]
async fn filters_by_event_type_and_by_account_prefix() {
    let receiver = Receiver::start(vec![], Behaviour::Status(200)).await;
    let ledger = TestLedger::start_with(fast).await;
    let by_type = subscribe(
        &ledger,
        json!({"url": receiver.url("opened"), "event_types": ["AccountOpened"]}),
    )
    .await;
    by_type.expect(201);
    let by_account = subscribe(
        &ledger,
        json!({"url": receiver.url("alice"), "account_prefix": "alice"}),
    )
    .await;
    by_account.expect(201);
    ledger.market().await;
    some_transfers(&ledger, "to-alice", 2).await;
    ledger
        .transfer("to-bob", "world:bank", "bob:cash", "USD", "5.00")
        .await
        .expect(201);
    let head = head(&ledger).await;
    for created in [&by_type, &by_account] {
        delivered_through(&ledger, created.body["id"].as_str().unwrap(), head).await;
    }
    let log = events(&ledger).await;
    let positions = |keep: &dyn Fn(&Value) -> bool| -> Vec<i64> {
        log.iter()
            .filter(|e| keep(e))
            .map(|e| e["position"].as_i64().unwrap())
            .collect()
    };
    let opened = positions(&|e| e["type"] == "AccountOpened");
    assert_eq!(opened.len(), 4);
    assert_eq!(receiver.accepted("opened"), opened);
    let alice = positions(&touches_alice);
    assert_eq!(alice.len(), 3, "alice's opening and two transfers");
    assert_eq!(receiver.accepted("alice"), alice);
    // Events that match nothing moved the cursors without a request.
    let attempts = deliveries(&ledger, by_account.body["id"].as_str().unwrap()).await;
    assert_eq!(attempts.len(), 3);

    let refused = subscribe(
        &ledger,
        json!({"url": receiver.url("x"), "event_types": ["Nope"]}),
    )
    .await;
    assert_eq!(refused.status, 422);
    let refused = subscribe(
        &ledger,
        json!({"url": receiver.url("x"), "account_prefix": "Alice"}),
    )
    .await;
    assert_eq!(refused.status, 422);
    ledger.finish().await;
}

/// A subscription may ask for closes and reopens by type; a backdated entry's body carries its
/// `effective_at`, and every body is the event as `GET /v1/events` gives it, byte for byte.
#[tokio::test]
async fn closes_reopens_and_effective_times_are_delivered_as_the_log_holds_them() {
    let receiver = Receiver::start(vec![], Behaviour::Status(200)).await;
    let ledger = TestLedger::start_with(fast).await;
    let types = ["TransactionPosted", "PeriodClosed", "PeriodReopened"];
    let created = subscribe(
        &ledger,
        json!({"url": receiver.url("periods"), "event_types": types}),
    )
    .await;
    created.expect(201);
    ledger.market().await;
    let backdated = json!({"source": "world:bank", "destination": "alice:cash", "asset": "USD",
                           "amount": "3.00", "effective_at": "2026-01-05T09:00:00.25Z"});
    let answer = ledger.post("/v1/transfers", "backdated", &backdated).await;
    answer.expect(201);
    let through = json!({"through": "2026-01-31T23:59:59.999999Z"});
    let answer = ledger.post("/v1/periods/close", "close", &through).await;
    answer.expect(201);
    let reason = json!({"reason": "a late invoice"});
    let answer = ledger.post("/v1/periods/reopen", "reopen", &reason).await;
    answer.expect(201);
    let head = head(&ledger).await;
    delivered_through(&ledger, created.body["id"].as_str().unwrap(), head).await;

    let log = events(&ledger).await;
    let received = receiver.received();
    let bodies: Vec<Value> = received
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    let kinds: Vec<&str> = bodies.iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, types);
    for (r, body) in received.iter().zip(&bodies) {
        assert_eq!(body, &log[r.position as usize - 1], "the body is the event");
    }
    assert_eq!(
        bodies[0]["payload"]["effective_at"],
        "2026-01-05T09:00:00.250000Z"
    );
    assert_eq!(bodies[1]["payload"]["period"], 1);
    assert_eq!(bodies[2]["payload"]["reason"], "a late invoice");
    ledger.finish().await;
}

#[tokio::test]
async fn without_allow_private_a_loopback_receiver_is_refused_and_nothing_is_sent() {
    let receiver = Receiver::start(vec![], Behaviour::Status(200)).await;
    let ledger = TestLedger::start().await;
    // An address in the URL is refused at once.
    let literal = subscribe(&ledger, json!({"url": receiver.url("hook")})).await;
    assert_eq!(literal.status, 422, "{}", literal.text);
    assert_eq!(literal.code(), "validation_error");
    assert!(literal.body["detail"]
        .as_str()
        .unwrap()
        .contains("loopback"));
    // A name is resolved at delivery, and its address refused then.
    let url = format!("http://localhost:{}/hook", receiver.addr.port());
    let created = subscribe(&ledger, json!({"url": url, "after": 0})).await;
    created.expect(201);
    let id = created.body["id"].as_str().unwrap().to_owned();
    ledger.market().await;
    let refused = eventually(WAIT, "a refused attempt is logged", || async {
        deliveries(&ledger, &id).await.into_iter().next()
    })
    .await;
    assert_eq!(refused["outcome"], "refused");
    assert_eq!(refused["position"], 1);
    assert_eq!(refused["status_code"], Value::Null);
    let error = refused["error"].as_str().unwrap();
    assert!(
        error.contains("localhost") && error.contains("loopback"),
        "{error}"
    );
    assert!(receiver.received().is_empty(), "nothing was sent");
    let subscription = ledger.get(&format!("/v1/admin/webhooks/{id}")).await;
    assert_eq!(subscription.body["cursor"], 0);
    ledger.finish().await;
}

#[tokio::test]
async fn the_cursor_survives_a_restart_and_delivery_resumes_without_a_gap() {
    let receiver = Receiver::start(vec![], Behaviour::Status(200)).await;
    let mut ledger = TestLedger::start_with(fast).await;
    ledger.market().await;
    let created = subscribe(&ledger, json!({"url": receiver.url("hook"), "after": 0})).await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let first_head = head(&ledger).await;
    delivered_through(&ledger, &id, first_head).await;

    // The receiver goes down; events keep coming; the ledger restarts meanwhile.
    receiver.answer_from_now_on(Behaviour::Status(502));
    some_transfers(&ledger, "while-down", 3).await;
    eventually(WAIT, "a failed attempt after the first head", || async {
        deliveries(&ledger, &id)
            .await
            .into_iter()
            .find(|a| a["outcome"] == "rejected")
    })
    .await;
    ledger.restart_with(fast).await;
    let cursor = ledger.get(&format!("/v1/admin/webhooks/{id}")).await.body["cursor"].clone();
    assert_eq!(cursor, first_head, "the cursor moved only with 2xx answers");
    receiver.answer_from_now_on(Behaviour::Status(200));
    some_transfers(&ledger, "after-restart", 2).await;
    let head = head(&ledger).await;
    delivered_through(&ledger, &id, head).await;
    assert_eq!(receiver.accepted("hook"), (1..=head).collect::<Vec<_>>());
    ledger.finish().await;
}

/// Whether `/metrics` on `node` says its deliverer holds the lock.
async fn delivers(node: &TestLedger) -> bool {
    let metrics = node.get("/metrics").await.text;
    metrics
        .lines()
        .any(|line| line == "ledger_webhook_deliverer_active 1")
}

#[tokio::test]
async fn one_node_delivers_while_another_stands_by_and_takes_over_when_it_stops() {
    let receiver = Receiver::start(vec![], Behaviour::Status(200)).await;
    let mut first = TestLedger::start_with(fast).await;
    first.market().await;
    let created = subscribe(&first, json!({"url": receiver.url("hook"), "after": 0})).await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let second = TestLedger::serve(&first.database_url, fast).await;
    delivered_through(&second, &id, head(&first).await).await;
    assert!(delivers(&first).await);
    assert!(!delivers(&second).await, "the second node stands by");

    first.stop_server().await;
    eventually(WAIT, "the second node delivers", || async {
        delivers(&second).await.then_some(())
    })
    .await;
    // Written through the second node once it has taken over the writer's role as well.
    for i in 0..2 {
        eventually(WAIT, "a write through the second node", || async {
            let key = format!("after-takeover-{i}");
            let answer = second
                .transfer(&key, "world:bank", "alice:cash", "USD", "1.00")
                .await;
            (answer.status == 201).then_some(())
        })
        .await;
    }
    let head = head(&second).await;
    delivered_through(&second, &id, head).await;
    assert_eq!(receiver.accepted("hook"), (1..=head).collect::<Vec<_>>());
    second.finish().await;
    first.finish().await;
}

/// Creates ledger `name` with USD, world:bank (may go negative) and alice:cash.
async fn open_ledger(ledger: &TestLedger, name: &str) {
    ledger.create_ledger_with_usd(name, &["alice:cash"]).await;
}

async fn transfers_in(ledger: &TestLedger, name: &str, n: usize) {
    for i in 0..n {
        ledger
            .post(
                &format!("/v1/ledgers/{name}/transfers"),
                &format!("t-{i}"),
                &json!({"source": "world:bank", "destination": "alice:cash",
                    "asset": "USD", "amount": "1.00"}),
            )
            .await
            .expect(201);
    }
}

async fn ledger_head(ledger: &TestLedger, name: &str) -> i64 {
    let answer = ledger.get(&format!("/v1/ledgers/{name}")).await;
    answer.expect(200);
    answer.body["head_position"].as_i64().unwrap()
}

impl Receiver {
    /// What it accepted on `path`, per ledger named, in the order it came: positions.
    fn accepted_in(&self, path: &str, ledger: &str) -> Vec<i64> {
        self.received()
            .into_iter()
            .filter(|r| r.path == path && r.ledger == ledger && (200..300).contains(&r.answered))
            .map(|r| r.position)
            .collect()
    }
}

/// A subscription of ledger `a` gets `a`'s events only; one of every ledger gets each ledger's,
/// a ledger created after it from its start, each delivery naming its ledger and each ledger's
/// in its own position order.
#[tokio::test]
async fn a_subscription_follows_its_ledger_or_every_ledger_each_delivery_naming_its_ledger() {
    let receiver = Receiver::start(vec![], Behaviour::Status(200)).await;
    let ledger = TestLedger::start_with(fast).await;
    ledger.define_asset("EUR", 2).await.expect(201);
    open_ledger(&ledger, "a").await;
    let unknown = subscribe(&ledger, json!({"url": receiver.url("x"), "ledger": "nope"})).await;
    unknown.expect(404);
    assert_eq!(unknown.code(), "ledger_not_found");
    let only_a = subscribe(
        &ledger,
        json!({"url": receiver.url("only-a"), "ledger": "a", "after": 0}),
    )
    .await;
    only_a.expect(201);
    assert_eq!(only_a.body["ledger"], "a");
    let every = subscribe(&ledger, json!({"url": receiver.url("every"), "after": 0})).await;
    every.expect(201);
    assert_eq!(every.body["ledger"], Value::Null);
    // Created after the subscriptions: delivered from its start to the one of every ledger.
    open_ledger(&ledger, "b").await;
    transfers_in(&ledger, "a", 7).await;
    transfers_in(&ledger, "b", 3).await;
    let heads: Vec<(&str, i64)> = vec![
        ("default", ledger_head(&ledger, "default").await),
        ("a", ledger_head(&ledger, "a").await),
        ("b", ledger_head(&ledger, "b").await),
    ];
    assert_ne!(heads[1].1, heads[2].1, "the ledgers' heads differ");
    let every_id = every.body["id"].as_str().unwrap().to_owned();
    let only_a_id = only_a.body["id"].as_str().unwrap().to_owned();
    let view = eventually(WAIT, "every ledger delivered", || async {
        let answer = ledger.get(&format!("/v1/admin/webhooks/{every_id}")).await;
        answer.expect(200);
        let cursors = &answer.body["cursors"];
        heads
            .iter()
            .all(|(name, head)| cursors[name].as_i64() == Some(*head))
            .then_some(answer.body)
    })
    .await;
    assert_eq!(view["cursor"], heads[0].1, "cursor: default's");
    for (name, head) in &heads {
        assert_eq!(
            receiver.accepted_in("every", name),
            (1..=*head).collect::<Vec<_>>(),
            "ledger {name}, in its order, once"
        );
    }
    let a = delivered_through(&ledger, &only_a_id, heads[1].1).await;
    assert_eq!(a["cursors"], json!({"a": heads[1].1}));
    assert_eq!(
        receiver.accepted_in("only-a", "a"),
        (1..=heads[1].1).collect::<Vec<_>>()
    );
    let others: Vec<Received> = receiver
        .received()
        .into_iter()
        .filter(|r| r.path == "only-a" && r.ledger != "a")
        .collect();
    assert!(others.is_empty(), "only a's events: {others:?}");
    // Each delivery's body is the event as its ledger's log has it.
    let b_events = ledger.get("/v1/ledgers/b/events?after=0&limit=1000").await;
    let delivered_b: Vec<Value> = receiver
        .received()
        .into_iter()
        .filter(|r| r.path == "every" && r.ledger == "b")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    assert_eq!(&delivered_b, b_events.body["items"].as_array().unwrap());
    let log = deliveries(&ledger, &every_id).await;
    assert!(
        log.iter().any(|d| d["ledger"] == "b"),
        "the log names the ledger"
    );
    ledger.finish().await;
}
