//! Relays to real brokers (RabbitMQ and NATS JetStream, from Debian's packages), with the real
//! `ledger relay` binary: the log is relayed while it is written, the relay is killed with
//! SIGKILL and started again, and the broker is restarted mid-stream. A consumer must then have
//! every position exactly once (after dropping duplicates by id), in order, and the chain must
//! verify from the messages alone.
//!
//! `LEDGER_RELAY_TEST_EVENTS` sets how many transfers are relayed (100,000 by default).

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use domain::chain::{self, ChainedEvent, Hash};
use futures_util::StreamExt;
use infrastructure::testing::brokers::{Nats, RabbitMq};
use infrastructure::testing::TestDatabase;
use serde_json::{json, Value};
use sqlx::Connection as _;

const TRANSFERS_DEFAULT: usize = 100_000;
const TRANSFERS_PER_REQUEST: usize = 1_000;
/// How long the whole relay may take to deliver everything after the last write, at most.
const DELIVERY_BOUND: Duration = Duration::from_secs(300);

fn transfers() -> usize {
    std::env::var("LEDGER_RELAY_TEST_EVENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(TRANSFERS_DEFAULT)
}

/// The messages a consumer received, in the order it received them: (id, body).
type Received = Arc<Mutex<Vec<(i64, Value)>>>;

struct RelayProcess {
    child: Child,
}

impl RelayProcess {
    fn start(database_url: &str, to: &str) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_ledger"))
            .args(["relay", "--to", to])
            .env("DATABASE_URL", database_url)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("ledger relay starts");
        Self { child }
    }

    /// kill -9: no chance to finish a page or move the checkpoint. Its stdout, for data only,
    /// stayed empty: a relay has no output, and logs go to stderr.
    fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
        let mut stdout = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            std::io::Read::read_to_string(&mut out, &mut stdout).expect("stdout read");
        }
        assert_eq!(stdout, "", "ledger relay wrote to stdout");
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A ledger with an asset and accounts, served in this process.
async fn ledger(database: &TestDatabase) -> (api::Server, String, reqwest::Client) {
    let mut config = api::ServeConfig::local(
        "127.0.0.1:0".parse().expect("address"),
        Some(database.url().to_owned()),
    );
    config.insecure_no_auth = true;
    let server = api::Server::start(&config).await.expect("ledger starts");
    let url = format!("http://{}", server.addr());
    let client = reqwest::Client::new();
    let post = |path: &str, key: &str, body: Value| {
        client
            .post(format!("{url}{path}"))
            .header("idempotency-key", key)
            .json(&body)
            .send()
    };
    let answer = post("/v1/assets", "usd", json!({"code": "USD", "scale": 2}))
        .await
        .expect("asset");
    assert_eq!(answer.status(), 201);
    for (code, negative) in [
        ("world:bank", true),
        ("alice:cash", false),
        ("bob:cash", false),
    ] {
        let body = json!({"code": code, "allow_negative": negative});
        let answer = post("/v1/accounts", code, body).await.expect("account");
        assert_eq!(answer.status(), 201);
    }
    (server, url, client)
}

/// Writes `transfers` transfers in batches, each answered before the next is sent.
async fn write_transfers(client: reqwest::Client, url: String, transfers: usize) {
    let destinations = ["alice:cash", "bob:cash"];
    for request in 0..transfers.div_ceil(TRANSFERS_PER_REQUEST) {
        let first = request * TRANSFERS_PER_REQUEST;
        let commands: Vec<Value> = (first..(first + TRANSFERS_PER_REQUEST).min(transfers))
            .map(|i| {
                json!({"idempotency_key": format!("t-{i}"), "transfer": {
                    "source": "world:bank", "destination": destinations[i % 2],
                    "asset": "USD", "amount": "1.25"}})
            })
            .collect();
        let answer = client
            .post(format!("{url}/v1/transactions/batch"))
            .json(&json!({ "commands": commands }))
            .send()
            .await
            .expect("batch sent");
        assert_eq!(answer.status(), 200, "batch {request} answered");
    }
}

async fn head(database: &TestDatabase) -> i64 {
    let mut conn = sqlx::PgConnection::connect(database.url())
        .await
        .expect("database");
    sqlx::query_scalar("SELECT position FROM projection_head")
        .fetch_one(&mut conn)
        .await
        .expect("head")
}

/// The position the relay's broker confirmed (its checkpoint; 0 before it has one).
async fn relayed(database: &TestDatabase) -> i64 {
    let mut conn = sqlx::PgConnection::connect(database.url())
        .await
        .expect("database");
    sqlx::query_scalar(
        "SELECT COALESCE(MAX(position), 0) FROM projection_checkpoints WHERE name LIKE 'relay:%'",
    )
    .fetch_one(&mut conn)
    .await
    .expect("checkpoint")
}

/// Polls until the relay's checkpoint is at least `position`, within `bound`.
async fn relayed_at_least(database: &TestDatabase, position: i64, bound: Duration) {
    let started = Instant::now();
    loop {
        let at = relayed(database).await;
        if at >= position {
            return;
        }
        assert!(
            started.elapsed() < bound,
            "the relay reached only {at} of {position} within {bound:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls until the message for `position` was received, within `bound` (every one before it
/// came first, or `verify` says which did not).
async fn received_through(received: &Received, position: i64, bound: Duration) {
    let started = Instant::now();
    loop {
        let got = received
            .lock()
            .expect("lock")
            .iter()
            .map(|(id, _)| *id)
            .max();
        if got.is_some_and(|id| id >= position) {
            return;
        }
        assert!(
            started.elapsed() < bound,
            "position {position} did not arrive within {bound:?} (the highest was {got:?})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Drops duplicates by id; then every position from 1 to `head` must be there once, in order,
/// and each message's hash must chain from the one before.
fn verify(received: &[(i64, Value)], head: i64) -> usize {
    let mut previous: Hash = chain::genesis();
    let mut next = 1;
    let mut duplicates = 0;
    for (id, body) in received {
        if *id < next {
            duplicates += 1;
            continue;
        }
        assert_eq!(*id, next, "position {next} expected, {id} came first");
        assert_eq!(
            body["position"],
            json!(id),
            "the message id is its position"
        );
        // Hashed as given: the message carries the time in the form the chain covers.
        let recorded_at = body["recorded_at"].as_str().expect("recorded_at");
        // These events hold no numbers a `Value` could respell, so its text is the hashed text.
        let canonical = |v: &Value| domain::json::canonicalize(&v.to_string()).expect("JSON");
        let (payload, metadata) = (canonical(&body["payload"]), canonical(&body["metadata"]));
        let event = ChainedEvent {
            position: *id,
            event_id: serde_json::from_value(body["event_id"].clone()).expect("event_id"),
            event_type: body["type"].as_str().expect("type"),
            schema_version: body["schema_version"].as_i64().expect("version") as i16,
            recorded_at,
            payload: &payload,
            metadata: &metadata,
        };
        let hash = chain::chain(&previous, &event);
        assert_eq!(
            body["hash"].as_str(),
            Some(chain::to_hex_slice(&hash).as_str()),
            "the chain breaks at {id}"
        );
        previous = hash;
        next += 1;
    }
    assert_eq!(next - 1, head, "every position up to the head arrived");
    duplicates
}

async fn relay_metric(url: &str) -> String {
    reqwest::get(format!("{url}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text")
        .lines()
        .filter(|l| l.starts_with("ledger_relay_"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The scenario for either broker: relay while writing, kill -9 the relay once a third of the
/// log is confirmed and start it again, restart the broker at two thirds, and wait until the
/// relay's checkpoint is at the head (as `/metrics` shows it). The head.
async fn relay_through_a_kill_and_a_broker_restart(
    database: &TestDatabase,
    to: &str,
    restart_broker: impl FnOnce() + Send + 'static,
) -> i64 {
    let (server, url, client) = ledger(database).await;
    let transfers = transfers() as i64;
    let writing = tokio::spawn(write_transfers(client, url.clone(), transfers as usize));
    let relay = RelayProcess::start(database.url(), to);
    relayed_at_least(database, transfers / 3, DELIVERY_BOUND).await;
    relay.kill();
    let _relay = RelayProcess::start(database.url(), to);
    relayed_at_least(database, transfers * 2 / 3, DELIVERY_BOUND).await;
    tokio::task::spawn_blocking(restart_broker)
        .await
        .expect("broker restarted");
    writing.await.expect("every write answered");
    let head = head(database).await;
    let started = Instant::now();
    let caught_up = format!("ledger_relay_lag_events{{sink=\"{}\"}} 0", sink_of(to));
    let position = format!("ledger_relay_position{{sink=\"{}\"}} {head}", sink_of(to));
    loop {
        let metrics = relay_metric(&url).await;
        if metrics.contains(&caught_up) && metrics.contains(&position) {
            break;
        }
        assert!(
            started.elapsed() < DELIVERY_BOUND,
            "the relay never reached {head}: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop().await.expect("ledger stops");
    head
}

fn sink_of(to: &str) -> String {
    let (scheme, rest) = to.split_once("://").expect("url");
    let rest = rest.rsplit_once('@').map_or(rest, |(_, after)| after);
    format!("{scheme}://{rest}")
}

/// How long the test's consumer waits for any one answer from RabbitMQ (connect, open a channel,
/// start consuming, a liveness check) before it drops the connection and connects again.
const CONSUMER_STEP_BOUND: Duration = Duration::from_secs(5);
/// How long the consumer's stream may stay quiet before the consumer checks that its connection
/// still answers.
const CONSUMER_QUIET_BOUND: Duration = Duration::from_secs(1);

/// Consumes the durable queue `verify`, bound to every event, acknowledging each message after
/// recording it; reconnects while the broker is away. Every wait on the broker is bounded: a
/// connection to a broker that was restarted can go quiet instead of failing (the stream neither
/// yields nor ends, the status still says connected), and a consumer stuck on one would never see
/// the rest of the log.
async fn consume_rabbitmq(url: String, received: Received) {
    loop {
        match tokio::time::timeout(CONSUMER_STEP_BOUND, rabbitmq_session(&url)).await {
            Ok(Ok((connection, channel, consumer))) => {
                let ended = consume_until_stuck(&channel, consumer, &received).await;
                eprintln!("test consumer: reconnecting ({ended})");
                let _ = tokio::time::timeout(
                    CONSUMER_STEP_BOUND,
                    connection.close(200, "reconnecting".into()),
                )
                .await;
            }
            Ok(Err(e)) => eprintln!("test consumer: cannot consume yet: {e}"),
            Err(_) => eprintln!("test consumer: no answer within {CONSUMER_STEP_BOUND:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Connects and starts consuming `verify`, up to 1,000 messages unacknowledged.
async fn rabbitmq_session(
    url: &str,
) -> lapin::Result<(lapin::Connection, lapin::Channel, lapin::Consumer)> {
    use lapin::options::{BasicConsumeOptions, BasicQosOptions};
    use lapin::types::FieldTable;
    let connection =
        lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    channel.basic_qos(1_000, BasicQosOptions::default()).await?;
    let consumer = channel
        .basic_consume(
            "verify".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok((connection, channel, consumer))
}

/// Records and acknowledges deliveries until the stream ends or fails, or goes quiet on a channel
/// that no longer answers a passive declare of its queue within the bound. Why it stopped.
async fn consume_until_stuck(
    channel: &lapin::Channel,
    mut consumer: lapin::Consumer,
    received: &Received,
) -> String {
    use lapin::options::{BasicAckOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;
    loop {
        let delivery = match tokio::time::timeout(CONSUMER_QUIET_BOUND, consumer.next()).await {
            Ok(Some(Ok(delivery))) => delivery,
            Ok(Some(Err(e))) => return format!("the stream failed: {e}"),
            Ok(None) => return "the stream ended".into(),
            Err(_) => {
                let passive = QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                };
                let check = channel.queue_declare("verify".into(), passive, FieldTable::default());
                match tokio::time::timeout(CONSUMER_STEP_BOUND, check).await {
                    Ok(Ok(_)) => continue,
                    Ok(Err(e)) => return format!("quiet, and the channel fails: {e}"),
                    Err(_) => return "quiet, and the channel does not answer".into(),
                }
            }
        };
        let id = delivery
            .properties
            .message_id()
            .as_ref()
            .and_then(|id| id.as_str().parse::<i64>().ok())
            .expect("message_id is a position");
        let body: Value = serde_json::from_slice(&delivery.data).expect("JSON body");
        received.lock().expect("lock").push((id, body));
        match tokio::time::timeout(
            CONSUMER_STEP_BOUND,
            delivery.ack(BasicAckOptions::default()),
        )
        .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return format!("an ack failed: {e}"),
            Err(_) => return "an ack was not sent".into(),
        }
    }
}

/// Declares the durable queue `verify`, bound to every event of the exchange, before anything
/// is published (a topic exchange drops what no queue is bound for).
async fn declare_verify_queue(url: &str) {
    use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;
    let connection = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
        .await
        .expect("RabbitMQ");
    let channel = connection.create_channel().await.expect("channel");
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(
            "ledger.events".into(),
            lapin::ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await
        .expect("exchange");
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare("verify".into(), durable, FieldTable::default())
        .await
        .expect("queue");
    channel
        .queue_bind(
            "verify".into(),
            "ledger.events".into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("binding");
    let _ = connection.close(200, "declared".into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_gets_every_position_once_in_order_across_a_relay_kill_and_a_broker_restart() {
    let broker = Arc::new(Mutex::new(
        RabbitMq::start().expect("rabbitmq-server starts"),
    ));
    let url = broker.lock().expect("lock").url();
    declare_verify_queue(&url).await;
    let received: Received = Arc::default();
    let consumer = tokio::spawn(consume_rabbitmq(url.clone(), received.clone()));
    let database = TestDatabase::create().await.expect("database");
    let restarting = broker.clone();
    let head = relay_through_a_kill_and_a_broker_restart(&database, &url, move || {
        let mut broker = restarting.lock().expect("lock");
        broker.pause();
        broker.resume().expect("rabbitmq-server starts again");
    })
    .await;
    received_through(&received, head, DELIVERY_BOUND).await;
    consumer.abort();
    let duplicates = verify(&received.lock().expect("lock"), head);
    eprintln!("RabbitMQ: {head} positions, {duplicates} duplicates dropped by id");
    database.drop_database().await.expect("dropped");
}

/// Reads the whole stream `LEDGER` from its first message: JetStream keeps it, so a consumer
/// can start after the fact.
async fn read_jetstream(url: &str, count: usize) -> Vec<(i64, Value)> {
    use async_nats::jetstream::consumer::pull;
    let client = async_nats::connect(url).await.expect("NATS");
    let jetstream = async_nats::jetstream::new(client);
    let stream = jetstream.get_stream("LEDGER").await.expect("stream");
    let consumer = stream
        .create_consumer(pull::OrderedConfig::default())
        .await
        .expect("consumer");
    let mut messages = consumer.messages().await.expect("messages");
    let mut received = Vec::with_capacity(count);
    while received.len() < count {
        let message = tokio::time::timeout(DELIVERY_BOUND, messages.next())
            .await
            .expect("the stream ends too early")
            .expect("a message")
            .expect("a readable message");
        let id = message
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .and_then(|id| id.as_str().parse::<i64>().ok())
            .expect("Nats-Msg-Id is a position");
        received.push((id, serde_json::from_slice(&message.payload).expect("JSON")));
    }
    received
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_stores_every_position_exactly_once_across_a_relay_kill_and_a_broker_restart() {
    let broker = Arc::new(Mutex::new(Nats::start().expect("nats-server starts")));
    let url = broker.lock().expect("lock").url();
    let database = TestDatabase::create().await.expect("database");
    let restarting = broker.clone();
    let head = relay_through_a_kill_and_a_broker_restart(&database, &url, move || {
        let mut broker = restarting.lock().expect("lock");
        broker.pause();
        broker.resume().expect("nats-server starts again");
    })
    .await;
    let stored = read_jetstream(&url, head as usize).await;
    let duplicates = verify(&stored, head);
    assert_eq!(duplicates, 0, "JetStream holds each position once");
    database.drop_database().await.expect("dropped");
}
