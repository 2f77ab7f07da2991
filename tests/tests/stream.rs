//! The live event stream: catch up, follow, resume with Last-Event-ID, every position exactly
//! once and in order; a client that stops reading is disconnected with a reason.

use std::sync::Arc;
use std::time::Duration;

use ledger_tests::serde_json::{json, Value};
use ledger_tests::TestLedger;

/// Reads SSE messages from a response: (id, event, data).
struct Messages {
    response: reqwest::Response,
    buffer: String,
}

impl Messages {
    async fn next(&mut self) -> Option<(Option<i64>, String, Value)> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, String::from("message"), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = v.trim().parse().ok();
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() && id.is_none() {
                    continue; // a keep-alive comment
                }
                return Some((
                    id,
                    event,
                    ledger_tests::serde_json::from_str(&data).unwrap_or(Value::Null),
                ));
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.response.chunk())
                .await
                .expect("the stream goes quiet for too long")
                .ok()??;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

async fn open(ledger: &TestLedger, last_event_id: Option<i64>) -> Messages {
    open_at(ledger, "/v1/events/stream", last_event_id).await
}

async fn open_at(ledger: &TestLedger, path: &str, last_event_id: Option<i64>) -> Messages {
    let mut request = ledger.client.get(ledger.url(path));
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id.to_string());
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    Messages {
        response,
        buffer: String::new(),
    }
}

#[tokio::test]
async fn a_subscriber_sees_every_position_once_in_order_across_a_reconnect() {
    let ledger = Arc::new(TestLedger::start().await);
    ledger.define_asset("USD", 2).await.expect(201);
    ledger.open_account("world:bank", true).await.expect(201);
    for i in 0..10 {
        ledger
            .open_account(&format!("user:{i}"), false)
            .await
            .expect(201);
    }
    const CLIENTS: usize = 16;
    const WRITES: usize = 20;
    let expected_head = 12 + (CLIENTS * WRITES) as i64;

    let mut stream = open(&ledger, None).await;
    let writers: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let ledger = ledger.clone();
            tokio::spawn(async move {
                for n in 0..WRITES {
                    ledger
                        .transfer(
                            &format!("w{c}-{n}"),
                            "world:bank",
                            &format!("user:{}", (c + n) % 10),
                            "USD",
                            "1",
                        )
                        .await
                        .expect(201);
                }
            })
        })
        .collect();

    let mut seen = Vec::new();
    // Read part of the log, then drop the connection mid-stream.
    while seen.len() < 100 {
        let (id, event, data) = stream.next().await.expect("an event");
        let id = id.expect("every event has an id");
        assert_eq!(data["position"], id);
        assert_eq!(data["type"], event);
        seen.push(id);
    }
    drop(stream);
    // Resume from the last id seen.
    let mut stream = open(&ledger, seen.last().copied()).await;
    while *seen.last().unwrap() < expected_head {
        let (id, _, _) = stream.next().await.expect("an event");
        seen.push(id.unwrap());
    }
    for w in writers {
        w.await.unwrap();
    }
    assert_eq!(
        seen,
        (1..=expected_head).collect::<Vec<_>>(),
        "every position exactly once, in order"
    );

    // Following: a new write arrives on the open stream.
    ledger
        .transfer("late", "world:bank", "user:0", "USD", "1")
        .await
        .expect(201);
    let (id, event, data) = stream.next().await.unwrap();
    assert_eq!(id, Some(expected_head + 1));
    assert_eq!(event, "TransactionPosted");
    assert_eq!(data["metadata"]["idempotency_key"], "late");
    // Stopping the server ends the stream (an endless response must not hold up a shutdown).
    Arc::try_unwrap(ledger).ok().unwrap().finish().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected_with_a_reason() {
    let ledger = TestLedger::start_with(|c| {
        c.stream_buffer_events = 8;
        c.stream_stall_ms = 300;
    })
    .await;
    ledger.market().await;
    // Enough events to fill the socket buffers as well as the stream's own.
    for round in 0..4 {
        let commands: Vec<Value> = (0..8000)
            .map(|i| json!({"idempotency_key": format!("r{round}-{i}"),
                            "transfer": {"source": "world:bank", "destination": "alice:cash", "asset": "USD", "amount": "0.01",
                                         "metadata": {"padding": "x".repeat(200)}}}))
            .collect();
        ledger
            .post_raw(
                "/v1/transactions/batch",
                &[("content-type", "application/json")],
                json!({"commands": commands}).to_string().into_bytes(),
            )
            .await
            .expect(200);
    }
    let mut stream = open(&ledger, None).await;
    // Do not read for a while: the server gives up on this client.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut last = 0;
    let mut reason = None;
    while let Some((id, event, data)) = stream.next().await {
        if event == "error" {
            reason = Some(data);
            break;
        }
        let id = id.unwrap();
        assert_eq!(id, last + 1, "no gap before the disconnect");
        last = id;
    }
    let reason = reason.expect("an error message before the end");
    assert_eq!(reason["code"], "consumer_too_slow");
    assert!(last < 32_006, "it was cut off before the end ({last})");
    // And it can resume where it stopped.
    let mut resumed = open(&ledger, Some(last)).await;
    let (id, _, _) = resumed.next().await.unwrap();
    assert_eq!(id, Some(last + 1));
    drop(resumed);
    ledger.finish().await;
}

/// `/v1/ledgers/{ledger}/events/stream` is that ledger's log only: its positions from 1, in
/// order, as its `GET …/events` gives them, then its new events as they commit; another
/// ledger's writes, meanwhile, do not appear.
#[tokio::test]
async fn a_ledgers_stream_is_its_own_log() {
    let ledger = TestLedger::start().await;
    for name in ["a", "b"] {
        ledger
            .post("/v1/ledgers", name, &json!({"name": name}))
            .await
            .expect(201);
        let prefix = format!("/v1/ledgers/{name}");
        ledger
            .post(
                &format!("{prefix}/assets"),
                "usd",
                &json!({"code": "USD", "scale": 2}),
            )
            .await
            .expect(201);
    }
    // `b` has more events than `a`: a stream mixing them would show positions `a` lacks.
    for i in 0..3 {
        ledger
            .post(
                "/v1/ledgers/b/accounts",
                &format!("open-{i}"),
                &json!({"code": format!("user:{i}")}),
            )
            .await
            .expect(201);
    }
    let logged = ledger.get("/v1/ledgers/a/events?after=0").await;
    logged.expect(200);
    let logged = logged.body["items"].as_array().unwrap().clone();
    let mut stream = open_at(&ledger, "/v1/ledgers/a/events/stream", None).await;
    for event in &logged {
        let (id, _, data) = stream.next().await.expect("an event");
        assert_eq!(id, event["position"].as_i64());
        assert_eq!(&data, event, "as a's log has it");
    }
    ledger
        .post(
            "/v1/ledgers/b/accounts",
            "open-late",
            &json!({"code": "late:b"}),
        )
        .await
        .expect(201);
    ledger
        .post(
            "/v1/ledgers/a/accounts",
            "open-late",
            &json!({"code": "late:a"}),
        )
        .await
        .expect(201);
    let (id, event, data) = stream.next().await.expect("a's new event");
    assert_eq!(id, Some(logged.len() as i64 + 1), "a's next position");
    assert_eq!(event, "AccountOpened");
    assert_eq!(data["payload"]["code"], "late:a", "not b's");
    drop(stream);
    ledger.finish().await;
}
