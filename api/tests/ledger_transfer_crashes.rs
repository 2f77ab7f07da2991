//! Transfers between ledgers never half-happen: the real `ledger` binary is killed (it aborts, as
//! kill -9 would end it, at a step the test hook `LEDGER_TEST_CRASH_AT` names) at every step of
//! the protocol, for transfers that end posted and transfers that end voided, then started
//! again. After recovery every transfer is posted on both sides or voided on both, the
//! settlement accounts mirror each other, and every ledger's chain verifies
//! (`ledger verify --all-ledgers`).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use api::ledger_transfers::STEPS;
use infrastructure::testing::{eventually, TestDatabase};
use serde_json::{json, Value};

/// How long a server may take to start, and a transfer to be recovered (the recovery loop takes
/// over after 2 s, and looks every second).
const BOUND: Duration = Duration::from_secs(60);

struct Node {
    child: Child,
    base: String,
    client: reqwest::Client,
}

impl Node {
    /// `ledger serve` on the database, on a free loopback port, with the crash hook when given.
    async fn start(database_url: &str, crash_at: Option<&str>) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_ledger"));
        command
            .args([
                "serve",
                "--insecure-no-auth",
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .env("DATABASE_URL", database_url)
            .env("RUST_LOG", "warn")
            .env_remove("LEDGER_TEST_CRASH_AT")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(step) = crash_at {
            command.env("LEDGER_TEST_CRASH_AT", step);
        }
        let node = Self {
            child: command.spawn().expect("ledger serve"),
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
        };
        let base = node.base.clone();
        let client = node.client.clone();
        eventually(BOUND, "ledger serve becomes ready", || {
            let (client, base) = (client.clone(), base.clone());
            async move {
                let ready = client.get(format!("{base}/readyz")).send().await.ok()?;
                (ready.status() == 200).then_some(())
            }
        })
        .await;
        node
    }

    async fn post(&self, path: &str, key: &str, body: Value) -> Option<(u16, Value)> {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header("idempotency-key", key)
            .json(&body)
            .send()
            .await
            .ok()?;
        let status = response.status().as_u16();
        Some((status, response.json().await.unwrap_or(Value::Null)))
    }

    async fn get(&self, path: &str) -> Value {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("JSON")
    }

    /// Waits for the process to end by itself (it aborted at its step).
    fn crashed(mut self) -> bool {
        let started = Instant::now();
        while started.elapsed() < BOUND {
            if let Ok(Some(status)) = self.child.try_wait() {
                return !status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        false
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn setup(node: &Node) {
    for name in ["a", "b", "c"] {
        node.post(
            "/v1/ledgers",
            &format!("ledger-{name}"),
            json!({"name": name}),
        )
        .await
        .expect("created");
        let prefix = format!("/v1/ledgers/{name}");
        node.post(
            &format!("{prefix}/assets"),
            "usd",
            json!({"code": "USD", "scale": 2}),
        )
        .await
        .expect("asset");
        for (code, negative) in [
            ("world:bank", true),
            ("x:cash", false),
            ("frozen:cash", false),
        ] {
            node.post(
                &format!("{prefix}/accounts"),
                &format!("open-{code}"),
                json!({"code": code, "allow_negative": negative}),
            )
            .await
            .expect("account");
        }
        node.post(
            &format!("{prefix}/transfers"),
            "fund",
            json!({"source": "world:bank", "destination": "x:cash", "asset": "USD", "amount": "1000.00"}),
        )
        .await
        .expect("funded");
        node.post(
            &format!("{prefix}/accounts/frozen:cash/freeze"),
            "freeze",
            json!({}),
        )
        .await
        .expect("frozen");
    }
}

/// The status of a transaction in a ledger, "absent" when there is none.
async fn status(node: &Node, ledger: &str, id: &Value) -> String {
    let answer = node
        .get(&format!(
            "/v1/ledgers/{ledger}/transactions/{}",
            id.as_str().unwrap_or_default()
        ))
        .await;
    answer["status"].as_str().unwrap_or("absent").to_owned()
}

#[tokio::test]
async fn a_kill_at_every_step_ends_with_both_sides_posted_or_both_voided() {
    let database = TestDatabase::create().await.expect("test database");
    let url = database.url().to_owned();
    let node = Node::start(&url, None).await;
    setup(&node).await;
    node.stop();

    let ledgers = ["a", "b", "c"];
    let mut keys = Vec::new();
    let mut kills = 0;
    for (i, step) in STEPS.iter().enumerate() {
        // One that posts and one that the destination refuses (a frozen account), per step.
        for (j, destination) in ["x:cash", "frozen:cash"].into_iter().enumerate() {
            let (from, to) = (ledgers[(i + j) % 3], ledgers[(i + j + 1) % 3]);
            let node = Node::start(&url, Some(step)).await;
            let key = format!("crash-{step}-{destination}");
            let answer = node
                .post(
                    "/v1/ledger-transfers",
                    &key,
                    json!({"source_ledger": from, "source": "x:cash", "destination_ledger": to,
                           "destination": destination, "asset": "USD", "amount": "10.00"}),
                )
                .await;
            // A step the transfer never reaches (the void path settles no posted hold) ends
            // normally; then the node is killed here instead.
            if node.crashed() {
                kills += 1;
            } else {
                eprintln!("{step} {destination}: not reached ({answer:?})");
            }
            keys.push(key);
        }
    }
    // Started again, the recovery loop finishes every transfer.
    let node = Node::start(&url, None).await;
    let transfers = eventually(BOUND, "every transfer posted or voided", || async {
        let listed = node.get("/v1/ledger-transfers?limit=100").await;
        let items = listed["items"].as_array().cloned().unwrap_or_default();
        let finished = items.len() == keys.len()
            && items
                .iter()
                .all(|t| t["state"] == "posted" || t["state"] == "voided");
        finished.then_some(items)
    })
    .await;
    let (mut posted, mut voided, mut mismatches) = (0, 0, 0);
    for t in &transfers {
        let source = status(
            &node,
            t["source_ledger"].as_str().unwrap(),
            &t["source_transaction"],
        )
        .await;
        let destination = status(
            &node,
            t["destination_ledger"].as_str().unwrap(),
            &t["destination_transaction"],
        )
        .await;
        let agrees = match t["state"].as_str() {
            Some("posted") => {
                posted += 1;
                source == "posted" && destination == "posted"
            }
            _ => {
                voided += 1;
                [&source, &destination]
                    .iter()
                    .all(|s| *s == "voided" || *s == "absent")
            }
        };
        if !agrees {
            mismatches += 1;
            eprintln!("MISMATCH {t}: source {source}, destination {destination}");
        }
    }
    eprintln!(
        "ledger transfers killed at every step: transfers {}, kills {kills}, both posted {posted}, both voided {voided}, mismatches {mismatches}",
        transfers.len()
    );
    assert_eq!(mismatches, 0);
    assert_eq!(
        posted,
        STEPS.len(),
        "every transfer to an open account posts"
    );
    assert_eq!(
        voided,
        STEPS.len(),
        "every transfer to a frozen account is voided"
    );
    assert_eq!(kills, 2 * STEPS.len(), "the node was killed at every step");
    node.stop();

    // Every chain verifies and the settlement accounts mirror each other.
    let verify = Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args(["verify", "--all-ledgers"])
        .env("DATABASE_URL", &url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("ledger verify");
    let stdout = String::from_utf8_lossy(&verify.stdout);
    assert!(
        verify.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(lines.len(), 5, "default, a, b, c and the mirror: {stdout}");
    let mirror = &lines[4]["settlement_mirror"];
    assert_eq!(mirror["holds"], true, "{stdout}");
    assert_eq!(mirror["checked"], true, "{stdout}");
    let _ = database.drop_database().await;
}
