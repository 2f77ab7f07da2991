//! Fencing of a paused writer, with the real binary and real signals: a writer frozen by SIGSTOP
//! (a stalled VM) keeps its TCP session, and so would keep an advisory lock forever. Its lease
//! ends that: PostgreSQL closes the silent session, another node takes over, and the paused node,
//! when it wakes, appends nothing and rejoins as a follower that forwards to the new writer.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use infrastructure::testing::TestDatabase;
use serde_json::{json, Value};

/// The lease the nodes run with, and how long a takeover may take at most: the lease, the
/// standby's 500 ms between tries, and a loaded machine's slack.
const LEASE_MS: u64 = 1_000;
const TAKEOVER_BOUND: Duration = Duration::from_secs(10);

struct Node {
    child: Child,
    url: String,
}

impl Node {
    fn start(database_url: &str) -> Node {
        // A free port: bound and released, so the node can be told its own URL.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_ledger"))
            .args(["serve", "--insecure-no-auth", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["--writer-lease-ms", &LEASE_MS.to_string()])
            .env("DATABASE_URL", database_url)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ledger serve starts");
        Node {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn readyz(client: &reqwest::Client, node: &Node) -> Option<Value> {
    let answer = client
        .get(format!("{}/readyz", node.url))
        .send()
        .await
        .ok()?;
    answer.json().await.ok()
}

/// Polls until `node` says `role` (and is ready), within `bound`; how long it took.
async fn role_within(
    client: &reqwest::Client,
    node: &Node,
    role: &str,
    bound: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        if let Some(ready) = readyz(client, node).await {
            if ready["role"] == role && ready["ready"] == true {
                return started.elapsed();
            }
        }
        assert!(
            started.elapsed() < bound,
            "{} did not become {role} within {bound:?}",
            node.url
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn get(client: &reqwest::Client, node: &Node, path: &str) -> Value {
    let answer = client.get(format!("{}{path}", node.url)).send().await;
    answer.expect("GET").json().await.expect("a JSON body")
}

async fn post(
    client: &reqwest::Client,
    node: &Node,
    path: &str,
    key: &str,
    body: Value,
) -> (u16, Value) {
    let answer = client
        .post(format!("{}{path}", node.url))
        .header("idempotency-key", key)
        .json(&body)
        .send()
        .await
        .expect("POST");
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_paused_writer_is_fenced_and_rejoins_as_a_follower() {
    let database = TestDatabase::create().await.expect("test database");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("client");
    let first = Node::start(database.url());
    role_within(&client, &first, "writer", Duration::from_secs(60)).await;
    let second = Node::start(database.url());
    role_within(&client, &second, "follower", Duration::from_secs(60)).await;
    let usd = json!({"code": "USD", "scale": 2});
    assert_eq!(post(&client, &first, "/v1/assets", "usd", usd).await.0, 201);
    for code in ["world:bank", "alice:cash"] {
        let body = json!({"code": code, "allow_negative": code == "world:bank"});
        assert_eq!(
            post(&client, &second, "/v1/accounts", code, body).await.0,
            201
        );
    }
    let pay = |n: u32| json!({"source": "world:bank", "destination": "alice:cash", "asset": "USD", "amount": format!("{n}.00")});

    first.signal("-STOP");
    let takeover = role_within(&client, &second, "writer", TAKEOVER_BOUND).await;
    eprintln!("the second node was the writer {takeover:?} after the first was paused");
    let (status, during) = post(&client, &second, "/v1/transfers", "during-pause", pay(1)).await;
    assert_eq!(status, 201, "{during}");

    first.signal("-CONT");
    // Awake, the first node still believes it is the writer until its session fails; whatever
    // it is sent meanwhile must not be appended by it. Each answer is 201 (forwarded to the new
    // writer) or a 503, never a write of its own.
    let mut acknowledged = vec![during["position"].as_i64().expect("position")];
    for n in 2..=6 {
        let (status, body) = post(
            &client,
            &first,
            "/v1/transfers",
            &format!("after-{n}"),
            pay(n),
        )
        .await;
        match status {
            201 => acknowledged.push(body["position"].as_i64().expect("position")),
            503 => {}
            other => panic!("the woken node answered {other}: {body}"),
        }
    }
    role_within(&client, &first, "follower", TAKEOVER_BOUND).await;
    let (status, forwarded) = post(&client, &first, "/v1/transfers", "after-wake", pay(7)).await;
    assert_eq!(status, 201, "{forwarded}");
    acknowledged.push(forwarded["position"].as_i64().expect("position"));

    // The log: every acknowledged write in it, no gap, the chain intact, and the first node
    // standing by behind the second.
    let events = get(&client, &second, "/v1/events?after=0&limit=1000").await;
    let items = events["items"].as_array().expect("items");
    let positions: Vec<i64> = items
        .iter()
        .map(|e| e["position"].as_i64().unwrap())
        .collect();
    assert_eq!(positions, (1..=positions.len() as i64).collect::<Vec<_>>());
    for position in &acknowledged {
        assert!(
            positions.contains(position),
            "acknowledged {position} is in the log"
        );
    }
    let verify = get(&client, &second, "/v1/audit/verify").await;
    assert_eq!(verify["intact"], true, "{verify}");
    let ready = readyz(&client, &first).await.expect("the first answers");
    assert_eq!(ready["writer"], "standby");
    assert_eq!(ready["writer_url"], second.url.as_str());
    drop(first);
    drop(second);
    database.drop_database().await.expect("drop");
}
