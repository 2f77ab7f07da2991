//! A model check in the style of Jepsen's bank test, against the real server. Eight concurrent
//! clients transfer money between a few accounts (many transfers are refused for insufficient
//! funds), read balances, retry with the same `Idempotency-Key` (after an answer they read, and
//! after an answer they dropped on purpose by closing the connection as soon as the request was
//! sent), and reuse a key with a different request. Afterwards the log is read in position order
//! and replayed into a plain single-threaded model (a map of `Decimal` balances), and every
//! observation is checked against it:
//!
//! - every acknowledged write (201) is in the log exactly once, at the position it answered, with
//!   the postings it asked for; every refusal (4xx) is not in the log at all;
//! - every retry answered what the original answered (status and body), marked as replayed;
//! - no account that may not go negative ever does, at any position of the log;
//! - every refusal for insufficient funds was right: at some position the command could have been
//!   decided at (after every write acknowledged before it was sent, before any write sent after
//!   it was answered), the source held less than the amount, and exactly the balance the refusal
//!   reports;
//! - every balance read equals the model's balance at the position the read reports, and that
//!   position lies within the read's window in the same sense: it reflects every write
//!   acknowledged before the read was sent (reads after writes see them), and none sent after it
//!   was answered;
//! - the final balances equal the model's, and each asset sums to zero.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ledger_tests::serde_json::{json, Value};
use ledger_tests::TestLedger;
use rust_decimal::Decimal;
use tokio::io::AsyncWriteExt;

const CLIENTS: usize = 8;
/// Operations per client, and a bound on the time each may take.
const OPS_PER_CLIENT: usize = 500;
const LOAD_TIME_MAX: Duration = Duration::from_secs(8);
const ACCOUNTS: [&str; 4] = ["m:a", "m:b", "m:c", "m:d"];
const WORLD: &str = "m:world";
const FUNDING: &str = "100.00";

/// A small deterministic generator (SplitMix64), one per client.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Debug, Clone)]
struct Transfer {
    source: String,
    destination: String,
    amount: Decimal,
}

impl Transfer {
    fn body(&self) -> Value {
        json!({
            "source": self.source,
            "destination": self.destination,
            "asset": "USD",
            "amount": self.amount.to_string(),
        })
    }
}

/// One write as a client saw it: from sending its first request to reading the answer it keeps.
#[derive(Debug)]
struct Write {
    key: String,
    transfer: Transfer,
    sent: Instant,
    acked: Instant,
    status: u16,
    position: Option<i64>,
    body: Value,
    /// Whether the first answer was dropped by the client (the answer kept is the retry's).
    dropped: bool,
    /// Whether the answer kept was a replay: after a dropped answer, the dropped request was
    /// carried out.
    replayed: bool,
}

#[derive(Debug)]
struct Read {
    account: String,
    sent: Instant,
    done: Instant,
    position: i64,
    balance: Decimal,
}

/// An answer as a client read it: status, body, and the `Idempotent-Replayed` header.
#[derive(Debug)]
struct Seen {
    status: u16,
    text: String,
    replayed: Option<String>,
}

impl Seen {
    fn of(answer: &ledger_tests::Answer) -> Self {
        Self {
            status: answer.status,
            text: answer.text.clone(),
            replayed: answer.header("idempotent-replayed").map(str::to_owned),
        }
    }
}

#[derive(Debug)]
struct Retry {
    key: String,
    first: Seen,
    again: Seen,
}

#[derive(Default)]
struct History {
    writes: Vec<Write>,
    reads: Vec<Read>,
    /// Retries that must have answered what the first answer did.
    retries: Vec<Retry>,
    /// Keys reused with a different request, and what that answered.
    reused: Vec<(String, u16, String)>,
}

/// Sends a transfer and closes the connection as soon as the request is written, without
/// reading the answer.
async fn send_and_drop(addr: &str, key: &str, body: &Value, rng: &mut Rng) {
    let body = body.to_string();
    let request = format!(
        "POST /v1/transfers HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Idempotency-Key: {key}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("request written");
    // Sometimes give the server a moment to start on it, so that the answer is really dropped
    // and not just the request.
    if rng.below(2) == 0 {
        tokio::time::sleep(Duration::from_micros(rng.below(3000))).await;
    }
    drop(stream);
}

fn balance_of(body: &Value, asset: &str) -> Decimal {
    body["balances"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["asset"] == asset))
        .and_then(|b| b["balance"].as_str())
        .map_or(Decimal::ZERO, |s| Decimal::from_str(s).expect("a balance"))
}

async fn client(ledger: Arc<TestLedger>, id: usize, deadline: Instant) -> History {
    let mut rng = Rng(0x5EED_0000 + id as u64);
    let mut history = History::default();
    let addr = ledger.base.trim_start_matches("http://").to_owned();
    for n in 0..OPS_PER_CLIENT {
        if Instant::now() > deadline {
            break;
        }
        let choice = rng.below(100);
        if choice < 30 {
            // A balance read.
            let account = ACCOUNTS[rng.below(ACCOUNTS.len() as u64) as usize].to_owned();
            let sent = Instant::now();
            let answer = ledger.get(&format!("/v1/accounts/{account}")).await;
            let done = Instant::now();
            answer.expect(200);
            history.reads.push(Read {
                balance: balance_of(&answer.body, "USD"),
                position: answer.position(),
                account,
                sent,
                done,
            });
            continue;
        }
        // A transfer: mostly between the accounts, sometimes a top-up from the world.
        let source = if rng.below(20) == 0 {
            WORLD.to_owned()
        } else {
            ACCOUNTS[rng.below(ACCOUNTS.len() as u64) as usize].to_owned()
        };
        // And sometimes back to the world, so that balances stay within reach of the amounts.
        let destination = loop {
            let d = if rng.below(20) == 0 {
                WORLD
            } else {
                ACCOUNTS[rng.below(ACCOUNTS.len() as u64) as usize]
            };
            if d != source {
                break d.to_owned();
            }
        };
        let transfer = Transfer {
            source,
            destination,
            amount: Decimal::new(1 + rng.below(6000) as i64, 2),
        };
        let key = format!("model-{id}-{n}");
        let body = transfer.body();
        let dropped = choice >= 85;
        let sent = Instant::now();
        if dropped {
            send_and_drop(&addr, &key, &body, &mut rng).await;
        }
        let answer = ledger.post("/v1/transfers", &key, &body).await;
        let acked = Instant::now();
        assert!(
            answer.status == 201 || answer.status == 422,
            "{key}: {}",
            answer.text
        );
        let position = (answer.status == 201).then(|| answer.position());
        // Retry: after a dropped answer always (the retry's answer must then be stable), and
        // otherwise now and then; sometimes reuse the key with another amount instead.
        if dropped || rng.below(4) == 0 {
            let again = ledger.post("/v1/transfers", &key, &body).await;
            history.retries.push(Retry {
                key: key.clone(),
                first: Seen::of(&answer),
                again: Seen::of(&again),
            });
        }
        if rng.below(20) == 0 {
            let other = Transfer {
                amount: transfer.amount + Decimal::ONE,
                ..transfer.clone()
            };
            let reused = ledger.post("/v1/transfers", &key, &other.body()).await;
            history
                .reused
                .push((key.clone(), reused.status, reused.text));
        }
        history.writes.push(Write {
            key,
            transfer,
            sent,
            acked,
            status: answer.status,
            position,
            replayed: answer.header("idempotent-replayed") == Some("true"),
            body: answer.body,
            dropped,
        });
    }
    history
}

/// The balances of the model right after each position of the log (index = position).
type Timeline = Vec<HashMap<String, Decimal>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_clients_agree_with_a_sequential_model_of_the_log() {
    let ledger = TestLedger::start().await;
    ledger.define_asset("USD", 2).await.expect(201);
    ledger.open_account(WORLD, true).await.expect(201);
    let mut setup = Vec::new();
    for account in ACCOUNTS {
        ledger.open_account(account, false).await.expect(201);
        let key = format!("fund-{account}");
        let transfer = Transfer {
            source: WORLD.to_owned(),
            destination: account.to_owned(),
            amount: Decimal::from_str(FUNDING).expect("amount"),
        };
        let sent = Instant::now();
        let answer = ledger.post("/v1/transfers", &key, &transfer.body()).await;
        answer.expect(201);
        setup.push(Write {
            key,
            transfer,
            sent,
            acked: Instant::now(),
            status: 201,
            position: Some(answer.position()),
            body: answer.body,
            dropped: false,
            replayed: false,
        });
    }

    // The load.
    let ledger = Arc::new(ledger);
    let started = Instant::now();
    let deadline = started + LOAD_TIME_MAX;
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|id| tokio::spawn(client(ledger.clone(), id, deadline)))
        .collect();
    let mut history = History {
        writes: setup,
        ..History::default()
    };
    for task in tasks {
        let h = task.await.expect("client");
        history.writes.extend(h.writes);
        history.reads.extend(h.reads);
        history.retries.extend(h.retries);
        history.reused.extend(h.reused);
    }
    let load_time = started.elapsed();

    // The log, in position order.
    let mut events = Vec::new();
    let mut after = 0;
    loop {
        let page = ledger
            .get(&format!("/v1/events?after={after}&limit=1000"))
            .await;
        page.expect(200);
        let items = page.body["items"].as_array().expect("items").clone();
        if items.is_empty() {
            break;
        }
        after = page.body["next_after"].as_i64().expect("next_after");
        events.extend(items);
    }
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event["position"], i as i64 + 1, "positions have gaps");
    }
    let head = events.len() as i64;

    // Replay it into the model.
    let mut balances: HashMap<String, Decimal> = HashMap::new();
    let mut allow_negative: HashMap<String, bool> = HashMap::new();
    let mut timeline: Timeline = vec![balances.clone()];
    let mut logged: HashMap<String, Vec<(i64, Vec<Transfer>)>> = HashMap::new();
    for event in &events {
        let position = event["position"].as_i64().expect("position");
        let payload = &event["payload"];
        let mut postings = Vec::new();
        match event["type"].as_str().expect("type") {
            "AccountOpened" => {
                let code = payload["code"].as_str().expect("code").to_owned();
                allow_negative.insert(code, payload["allow_negative"] == true);
            }
            "TransactionPosted" => {
                assert_ne!(payload["pending"], true, "no holds were asked for");
                for p in payload["postings"].as_array().expect("postings") {
                    assert_eq!(p["asset"], "USD");
                    let posting = Transfer {
                        source: p["source"].as_str().expect("source").to_owned(),
                        destination: p["destination"].as_str().expect("destination").to_owned(),
                        amount: Decimal::from_str(p["amount"].as_str().expect("amount"))
                            .expect("amount"),
                    };
                    *balances.entry(posting.source.clone()).or_default() -= posting.amount;
                    *balances.entry(posting.destination.clone()).or_default() += posting.amount;
                    postings.push(posting);
                }
            }
            "AssetDefined" => {}
            other => panic!("unexpected event {other} at {position}"),
        }
        for (account, balance) in &balances {
            assert!(
                *balance >= Decimal::ZERO || allow_negative.get(account) == Some(&true),
                "{account} overdrawn to {balance} at position {position}"
            );
        }
        let key = event["metadata"]["idempotency_key"]
            .as_str()
            .unwrap_or_else(|| panic!("no idempotency key at {position}"))
            .to_owned();
        logged.entry(key).or_default().push((position, postings));
        timeline.push(balances.clone());
    }
    let at = |position: i64, account: &str| -> Decimal {
        timeline[position as usize]
            .get(account)
            .copied()
            .unwrap_or_default()
    };

    // Every acknowledged write is in the log exactly once, where it said, as it was asked;
    // every refusal is not.
    let (mut accepted, mut refused) = (0, 0);
    for write in &history.writes {
        let entries = logged.get(&write.key).map_or(&[][..], Vec::as_slice);
        match write.status {
            201 => {
                accepted += 1;
                assert_eq!(entries.len(), 1, "{} logged {:?}", write.key, entries);
                let (position, postings) = &entries[0];
                assert_eq!(Some(*position), write.position, "{}", write.key);
                assert_eq!(write.body["position"], *position, "{}", write.key);
                assert_eq!(postings.len(), 1, "{}", write.key);
                assert_eq!(postings[0].source, write.transfer.source, "{}", write.key);
                assert_eq!(
                    postings[0].destination, write.transfer.destination,
                    "{}",
                    write.key
                );
                assert_eq!(postings[0].amount, write.transfer.amount, "{}", write.key);
            }
            _ => {
                refused += 1;
                assert!(entries.is_empty(), "refused {} is in the log", write.key);
            }
        }
    }
    // The log holds nothing else: the setup and the clients' writes.
    let writes_by_key: HashMap<&str, &Write> =
        history.writes.iter().map(|w| (w.key.as_str(), w)).collect();
    for key in logged.keys() {
        assert!(
            writes_by_key.contains_key(key.as_str())
                || key.starts_with("asset-")
                || key.starts_with("account-"),
            "{key} is in the log but no client wrote it"
        );
    }

    // Retries answered the original answer, as a replay.
    for Retry { key, first, again } in &history.retries {
        assert_eq!(again.status, first.status, "{key}");
        assert_eq!(again.text, first.text, "{key}");
        assert_eq!(again.replayed.as_deref(), Some("true"), "{key}");
    }
    for (key, status, text) in &history.reused {
        assert_eq!(*status, 422, "{key}: {text}");
        assert!(text.contains("idempotency_key_reused"), "{key}: {text}");
    }

    // The window of positions an operation may have seen: after every write acknowledged before
    // it was sent, before every write sent after it was answered.
    let accepted_writes: Vec<&Write> = history.writes.iter().filter(|w| w.status == 201).collect();
    let window = |sent: Instant, done: Instant| -> (i64, i64) {
        let low = accepted_writes
            .iter()
            .filter(|w| w.acked < sent)
            .filter_map(|w| w.position)
            .max()
            .unwrap_or(0);
        let high = accepted_writes
            .iter()
            .filter(|w| w.sent > done)
            .filter_map(|w| w.position)
            .min()
            .map_or(head, |p| p - 1);
        (low, high)
    };

    // Every refusal for insufficient funds was right at some position it could have been
    // decided at, and reported the balance there.
    let mut insufficient = 0;
    for write in history.writes.iter().filter(|w| w.status != 201) {
        assert_eq!(write.body["code"], "insufficient_funds", "{:?}", write);
        insufficient += 1;
        let source = &write.transfer.source;
        let reported = Decimal::from_str(
            write.body["context"]["balance"]
                .as_str()
                .expect("the balance in the refusal"),
        )
        .expect("a balance");
        assert!(reported < write.transfer.amount, "{:?}", write);
        let (low, high) = window(write.sent, write.acked);
        assert!(low <= high, "{}: empty window {low}..={high}", write.key);
        assert!(
            (low..=high).any(|p| at(p, source) == reported),
            "{}: refused with {source} at {reported}, which it never held in positions {low}..={high}: {:?}",
            write.key,
            (low..=high).map(|p| at(p, source)).collect::<Vec<_>>()
        );
    }

    // Every read saw the model's balance at the position it reports, within its window.
    for read in &history.reads {
        let (low, high) = window(read.sent, read.done);
        assert!(
            (low..=high).contains(&read.position),
            "a read of {} at {} outside its window {low}..={high}",
            read.account,
            read.position
        );
        assert_eq!(
            read.balance,
            at(read.position, &read.account),
            "a read of {} at position {}",
            read.account,
            read.position
        );
    }

    // The final balances are the model's, and sum to zero.
    let mut total = Decimal::ZERO;
    for account in ACCOUNTS.iter().chain([&WORLD]) {
        let answer = ledger.get(&format!("/v1/accounts/{account}")).await;
        answer.expect(200);
        assert_eq!(answer.position(), head);
        let balance = balance_of(&answer.body, "USD");
        assert_eq!(balance, at(head, account), "{account}");
        total += balance;
    }
    assert_eq!(total, Decimal::ZERO);
    let sums: BTreeMap<String, Decimal> = ledger.balance_sums().await.into_iter().collect();
    assert_eq!(sums.get("USD").copied(), Some(Decimal::ZERO));

    // A guard on the workload itself: it must have exercised what it checks.
    let dropped = history.writes.iter().filter(|w| w.dropped).count();
    let dropped_and_done = history
        .writes
        .iter()
        .filter(|w| w.dropped && w.replayed)
        .count();
    eprintln!(
        "model: {} clients, {:.1} s of load, {head} events, {accepted} writes accepted, \
         {refused} refused ({insufficient} for insufficient funds), {} reads, {} retries \
         ({dropped} after a dropped answer, {dropped_and_done} of whose requests had been carried \
         out), {} keys reused",
        CLIENTS,
        load_time.as_secs_f64(),
        history.reads.len(),
        history.retries.len(),
        history.reused.len()
    );
    assert!(accepted > 200, "only {accepted} writes accepted");
    assert!(insufficient > 20, "only {insufficient} refusals");
    assert!(
        history.reads.len() > 100,
        "only {} reads",
        history.reads.len()
    );
    assert!(dropped > 50, "only {dropped} dropped answers");
    assert!(
        dropped_and_done > 10,
        "only {dropped_and_done} dropped answers to requests that were carried out"
    );
    assert!(!history.reused.is_empty());

    Arc::into_inner(ledger)
        .expect("clients done")
        .finish()
        .await;
}
