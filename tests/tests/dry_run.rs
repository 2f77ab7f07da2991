//! `?dry_run=true` on the write routes: the writer decides the request as it would a real one and
//! answers what it would answer, with the balances before and after, but appends nothing and uses
//! up no idempotency key. The rule checked throughout: a dry run's answer is the answer of the
//! real write that immediately follows it.

use std::collections::BTreeMap;
use std::str::FromStr;

use ledger_tests::serde_json::{json, Value};
use ledger_tests::{Answer, TestLedger};
use rust_decimal::Decimal;

/// A small deterministic generator (xorshift), so that a failing sequence can be run again.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }

    /// An amount of USD from 0.01 to 150.00.
    fn usd(&mut self) -> String {
        let cents = 1 + self.below(15_000);
        format!("{}.{:02}", cents / 100, cents % 100)
    }
}

const ACCOUNTS: [&str; 5] = [
    "world:bank",
    "alice:cash",
    "bob:cash",
    "broker:fees",
    "nobody:cash",
];

fn with_dry_run(path: &str) -> String {
    format!("{path}?dry_run=true")
}

/// A write's view without what only the real write creates.
fn without_created(view: &Value) -> Value {
    let mut view = view.clone();
    if let Some(fields) = view.as_object_mut() {
        // A write that states no effective time counts when it is recorded, which a dry run is not.
        if fields.get("effective_at") == fields.get("recorded_at") {
            fields.remove("effective_at");
        }
        for field in ["id", "position", "recorded_at", "opened_at", "version"] {
            fields.remove(field);
        }
    }
    view
}

/// Asserts that a dry run's answer to one command (`dry_status`, `dry_body`) is what the real
/// write answered (`real_status`, `real_body`).
#[track_caller]
fn assert_same_answer(dry_status: u64, dry_body: &Value, real_status: u64, real_body: &Value) {
    if real_status == 201 {
        assert_eq!(dry_status, 200, "{dry_body}");
        assert_eq!(without_created(dry_body), without_created(real_body));
    } else {
        assert_eq!(dry_status, real_status, "{dry_body} vs {real_body}");
        assert_eq!(dry_body["code"], real_body["code"], "{dry_body}");
        assert_eq!(dry_body["dry_run"], true, "{dry_body}");
    }
}

/// Asserts that a dry run's balances after are what the ledger reads after the real write, at
/// `position` or later.
async fn assert_balances_after(ledger: &TestLedger, balances: &Value, position: i64) {
    let zero = json!({});
    for account in balances.as_array().expect("balances") {
        let code = account["account"].as_str().expect("an account");
        let read = ledger.account_at(code, position).await;
        read.expect(200);
        for asset in account["assets"].as_array().expect("assets") {
            let row = read.body["balances"]
                .as_array()
                .and_then(|b| b.iter().find(|b| b["asset"] == asset["asset"]))
                .unwrap_or(&zero);
            for field in ["balance", "pending_debits", "pending_credits", "available"] {
                let number =
                    |v: &Value| Decimal::from_str(v.as_str().unwrap_or("0")).expect("a decimal");
                assert_eq!(
                    number(&asset["after"][field]),
                    number(&row[field]),
                    "{code} {} {field}: dry run {asset} vs read {}",
                    asset["asset"],
                    read.body
                );
            }
        }
    }
}

/// A write: its path, key and body; `batch` when it is a batch.
struct Write {
    path: String,
    key: String,
    body: Value,
}

impl Write {
    async fn send(&self, ledger: &TestLedger, dry_run: bool) -> Answer {
        let path = match dry_run {
            true => with_dry_run(&self.path),
            false => self.path.clone(),
        };
        ledger.post(&path, &self.key, &self.body).await
    }

    fn is_batch(&self) -> bool {
        self.path.ends_with("/batch")
    }
}

/// What the generator knows of the ledger: the holds it made and the transactions it may reverse.
#[derive(Default)]
struct Known {
    holds: Vec<String>,
    posted: Vec<(String, i64)>,
    keys: Vec<(String, Value)>,
}

fn transfer_body(rng: &mut Rng) -> Value {
    let source = rng.pick(&[
        "world:bank",
        "world:bank",
        "alice:cash",
        "alice:cash",
        "bob:cash",
        "nobody:cash",
    ]);
    let destination = rng.pick(&ACCOUNTS);
    json!({"source": source, "destination": destination, "asset": "USD", "amount": rng.usd()})
}

fn trade_body(rng: &mut Rng) -> Value {
    json!({"buyer": "alice:cash", "seller": "bob:cash", "instrument": "AAPL",
           "quantity": (1 + rng.below(6)).to_string(), "price": (1 + rng.below(60)).to_string(),
           "currency": "USD",
           "fees": [{"payer": "alice:cash", "account": "broker:fees", "amount": "0.25"}]})
}

fn batch_body(rng: &mut Rng, n: usize) -> Value {
    let commands: Vec<Value> = (0..2 + rng.below(4))
        .map(|i| {
            let key = format!("batch-{n}-{i}");
            match rng.below(4) {
                0 => json!({"idempotency_key": key, "trade": trade_body(rng)}),
                _ => json!({"idempotency_key": key, "transfer": transfer_body(rng)}),
            }
        })
        .collect();
    json!({"atomic": rng.below(2) == 0, "commands": commands})
}

/// The next random write.
fn next_write(rng: &mut Rng, known: &Known, n: usize) -> Write {
    let key = format!("w-{n}");
    let write = |path: &str, key: String, body: Value| Write {
        path: path.to_owned(),
        key,
        body,
    };
    match rng.below(10) {
        0 | 1 if !known.holds.is_empty() => {
            let hold = &known.holds[rng.below(known.holds.len() as u64) as usize];
            let action = rng.pick(&["post", "void"]);
            write(&format!("/v1/transactions/{hold}/{action}"), key, json!({}))
        }
        2 if !known.posted.is_empty() => {
            let (id, _) = &known.posted[rng.below(known.posted.len() as u64) as usize];
            write(&format!("/v1/transactions/{id}/reverse"), key, json!({}))
        }
        3 if !known.keys.is_empty() => {
            let (key, body) = known.keys[rng.below(known.keys.len() as u64) as usize].clone();
            write("/v1/transfers", key, body)
        }
        4 => write("/v1/trades", key, trade_body(rng)),
        5 => write("/v1/transactions/batch", key, batch_body(rng, n)),
        6 => {
            let mut body = transfer_body(rng);
            body["pending"] = json!(true);
            write("/v1/transfers", key, body)
        }
        _ => write("/v1/transfers", key, transfer_body(rng)),
    }
}

/// Learns from a real write's answer what later writes may refer to.
fn learn(known: &mut Known, write: &Write, real: &Answer) {
    if real.status != 201 || write.path != "/v1/transfers" {
        return;
    }
    let id = real.body["id"].as_str().unwrap_or_default().to_owned();
    if real.body["status"] == "pending" {
        known.holds.push(id);
    } else {
        known.posted.push((id, real.position()));
    }
    known.keys.push((write.key.clone(), write.body.clone()));
}

async fn market(ledger: &TestLedger) {
    ledger.market().await;
    ledger
        .transfer("fund-bob", "world:bank", "bob:cash", "AAPL", "1000")
        .await
        .expect(201);
    ledger
        .transfer("fund-alice", "world:bank", "alice:cash", "USD", "500")
        .await
        .expect(201);
}

/// Compares a dry run with the real write that followed it, and its balances with the reads.
async fn assert_dry_run_matches(ledger: &TestLedger, write: &Write, dry: &Answer, real: &Answer) {
    if write.is_batch() {
        dry.expect(200);
        real.expect(200);
        assert_eq!(dry.body["dry_run"], true);
        assert!(dry.header("ledger-position").is_none());
        let (dry_results, real_results) = (&dry.body["results"], &real.body["results"]);
        let pairs = dry_results.as_array().into_iter().flatten();
        for (d, r) in pairs.zip(real_results.as_array().into_iter().flatten()) {
            let (ds, rs) = (d["status"].as_u64(), r["status"].as_u64());
            assert_same_answer(ds.unwrap_or(0), &d["body"], rs.unwrap_or(0), &r["body"]);
            assert!(d["position"].is_null());
        }
        let position = real.header("ledger-position").and_then(|p| p.parse().ok());
        let head = ledger.event_count().await;
        assert_balances_after(ledger, &dry.body["balances"], position.unwrap_or(head)).await;
        return;
    }
    if real.status == 201 {
        dry.expect(200);
        assert_eq!(dry.body["dry_run"], true, "{}", dry.text);
        assert!(dry.header("ledger-position").is_none());
        let replayed = real.header("idempotent-replayed") == Some("true");
        assert_eq!(dry.body["replayed"], replayed, "{}", dry.text);
        assert_same_answer(200, &dry.body["result"], 201, &real.body);
        assert_balances_after(ledger, &dry.body["balances"], real.position()).await;
    } else {
        assert_eq!(dry.status, real.status, "{} vs {}", dry.text, real.text);
        assert_eq!(dry.code(), real.code());
        assert_eq!(dry.body["dry_run"], true);
    }
}

#[tokio::test]
async fn every_random_dry_run_answers_what_the_real_write_that_follows_answers() {
    let ledger = TestLedger::start().await;
    market(&ledger).await;
    let seed = 0x5eed_d0d0 ^ std::process::id() as u64;
    println!("seed {seed}");
    let mut rng = Rng(seed | 1);
    let mut known = Known::default();
    let mut outcomes: BTreeMap<(String, u16), usize> = BTreeMap::new();
    for n in 0..120 {
        let write = next_write(&mut rng, &known, n);
        if write.path.ends_with("/reverse") {
            // The reversal reads what the transaction moved: wait for it to be readable.
            for (id, position) in &known.posted {
                let _ = ledger
                    .get(&format!("/v1/transactions/{id}?min_position={position}"))
                    .await;
            }
        }
        let events = ledger.event_count().await;
        let dry = write.send(&ledger, true).await;
        assert_eq!(ledger.event_count().await, events, "the dry run appended");
        let real = write.send(&ledger, false).await;
        assert_dry_run_matches(&ledger, &write, &dry, &real).await;
        learn(&mut known, &write, &real);
        let route = write.path.rsplit('/').next().unwrap_or_default().to_owned();
        *outcomes.entry((route, real.status)).or_default() += 1;
    }
    println!("{outcomes:?}");
    let refused = outcomes.iter().filter(|((_, s), _)| *s >= 400).count();
    assert!(refused >= 2, "some refusals: {outcomes:?}");
    assert!(outcomes.len() >= 8, "many kinds of answers: {outcomes:?}");
    ledger.finish().await;
}

/// The head of the log (its last position and hash) and how many idempotency records there are.
async fn log_state(ledger: &TestLedger) -> (i64, Option<Vec<u8>>, i64) {
    let mut conn = ledger.sql().await;
    let head: (Option<i64>, Option<Vec<u8>>) =
        sqlx::query_as("SELECT position, hash FROM events ORDER BY position DESC LIMIT 1")
            .fetch_optional(&mut conn)
            .await
            .expect("head")
            .unwrap_or((None, None));
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys")
        .fetch_one(&mut conn)
        .await
        .expect("keys");
    (head.0.unwrap_or(0), head.1, keys)
}

#[tokio::test]
async fn dry_runs_move_no_head_and_use_up_no_idempotency_key() {
    let ledger = TestLedger::start().await;
    market(&ledger).await;
    let before = log_state(&ledger).await;
    let transfer =
        json!({"source": "alice:cash", "destination": "bob:cash", "asset": "USD", "amount": "10"});
    for _ in 0..3 {
        let dry = ledger
            .post(&with_dry_run("/v1/transfers"), "k-1", &transfer)
            .await;
        dry.expect(200);
        assert_eq!(dry.body["replayed"], false);
        let alice = &dry.body["balances"][0];
        assert_eq!(alice["account"], "alice:cash");
        assert_eq!(alice["assets"][0]["before"]["balance"], "500.00");
        assert_eq!(alice["assets"][0]["after"]["available"], "490.00");
    }
    let open = json!({"code": "carol:cash"});
    ledger
        .post(&with_dry_run("/v1/accounts"), "k-2", &open)
        .await
        .expect(200);
    let hold = json!({"source": "alice:cash", "destination": "bob:cash", "asset": "USD", "amount": "5", "pending": true});
    ledger
        .post(&with_dry_run("/v1/transfers"), "k-3", &hold)
        .await
        .expect(200);
    assert_eq!(
        log_state(&ledger).await,
        before,
        "a dry run moved the head or kept a key"
    );

    // The key was not used up: the real write with it is a first write, not a replay.
    let real = ledger.post("/v1/transfers", "k-1", &transfer).await;
    real.expect(201);
    assert!(real.header("idempotent-replayed").is_none());
    assert_eq!(real.position(), before.0 + 1);

    // Once used, a dry run with the key answers what the real write would: the replay, or
    // idempotency_key_reused for another request.
    let replay = ledger
        .post(&with_dry_run("/v1/transfers"), "k-1", &transfer)
        .await;
    replay.expect(200);
    assert_eq!(replay.body["replayed"], true);
    assert_eq!(replay.body["result"]["position"], real.position());
    assert_eq!(replay.body["balances"], json!([]));
    let other =
        json!({"source": "alice:cash", "destination": "bob:cash", "asset": "USD", "amount": "11"});
    let reused = ledger
        .post(&with_dry_run("/v1/transfers"), "k-1", &other)
        .await;
    assert_eq!(reused.code(), "idempotency_key_reused");
    assert_eq!(reused.body["dry_run"], true);
    let after_real = log_state(&ledger).await;
    assert_eq!(after_real.0, before.0 + 1);
    assert_eq!(after_real.2, before.2 + 1);
    ledger.finish().await;
}

#[tokio::test]
async fn a_refusal_is_the_real_problem_document_marked_as_a_dry_run() {
    let ledger = TestLedger::start().await;
    market(&ledger).await;
    let events = ledger.event_count().await;
    let overdraw =
        json!({"source": "bob:cash", "destination": "alice:cash", "asset": "USD", "amount": "1"});
    let dry = ledger
        .post(&with_dry_run("/v1/transfers"), "r-1", &overdraw)
        .await;
    ledger
        .assert_refused(&dry, 422, "insufficient_funds", events)
        .await;
    assert_eq!(dry.body["dry_run"], true);
    let unknown =
        json!({"source": "alice:cash", "destination": "nobody", "asset": "USD", "amount": "1"});
    let dry = ledger
        .post(
            &with_dry_run("/v1/ledgers/default/transfers"),
            "r-2",
            &unknown,
        )
        .await;
    ledger
        .assert_refused(&dry, 422, "account_not_found", events)
        .await;
    assert_eq!(dry.body["dry_run"], true);
    let duplicate = json!({"code": "USD", "scale": 2});
    let dry = ledger
        .post(&with_dry_run("/v1/assets"), "r-3", &duplicate)
        .await;
    ledger
        .assert_refused(&dry, 409, "duplicate_asset", events)
        .await;
    assert_eq!(dry.body["dry_run"], true);
    // A misspelt parameter never makes a real write.
    let typo = ledger
        .post("/v1/transfers?dryrun=true", "r-4", &overdraw)
        .await;
    assert_eq!(typo.status, 400, "{}", typo.text);
    // An atomic batch is refused whole, as the real one is, and would change nothing.
    let batch = json!({"atomic": true, "commands": [
        {"idempotency_key": "b-1", "transfer": {"source": "world:bank", "destination": "bob:cash", "asset": "USD", "amount": "3"}},
        {"idempotency_key": "b-2", "transfer": {"source": "bob:cash", "destination": "alice:cash", "asset": "USD", "amount": "50"}}]});
    let dry = ledger
        .post(&with_dry_run("/v1/transactions/batch"), "b", &batch)
        .await;
    dry.expect(200);
    let statuses: Vec<&Value> = dry.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["status"])
        .collect();
    assert_eq!(statuses, [422, 422]);
    assert_eq!(dry.body["results"][0]["body"]["code"], "batch_aborted");
    assert_eq!(dry.body["results"][1]["body"]["code"], "insufficient_funds");
    assert_eq!(dry.body["balances"], json!([]));
    assert_eq!(ledger.event_count().await, events);
    // Account changes too: a freeze, limits.
    let freeze = ledger
        .post(
            &with_dry_run("/v1/accounts/bob:cash/freeze"),
            "f",
            &json!({}),
        )
        .await;
    freeze.expect(200);
    assert_eq!(freeze.body["result"]["status"], "frozen");
    let limits = json!({"asset": "USD", "min_balance": "-100"});
    let set = ledger
        .patch(&with_dry_run("/v1/accounts/bob:cash/limits"), "l", &limits)
        .await;
    set.expect(200);
    assert_eq!(ledger.event_count().await, events);
    ledger.finish().await;
}

const WRITERS: usize = 4;
const WRITES_EACH: usize = 40;

/// One writer of the load: funds its `a` account from the world and moves from `a` to `b`,
/// some of which overdraw. Returns the positions of its accepted writes and the balances (in
/// cents) of `a` and `b` as a reference model computes them.
async fn real_writer(ledger: &TestLedger, writer: usize) -> (Vec<i64>, i64, i64) {
    let mut rng = Rng(0x9e37_79b9 + writer as u64);
    let (a, b) = (format!("w{writer}:a"), format!("w{writer}:b"));
    let (mut a_cents, mut b_cents, mut positions) = (0i64, 0i64, Vec::new());
    for n in 0..WRITES_EACH {
        let cents = 1 + rng.below(5_000) as i64;
        let amount = format!("{}.{:02}", cents / 100, cents % 100);
        let key = format!("load-{writer}-{n}");
        let fund = rng.below(2) == 0;
        let source = if fund { "world:bank" } else { a.as_str() };
        let destination = if fund { a.as_str() } else { b.as_str() };
        let answer = ledger
            .transfer(&key, source, destination, "USD", &amount)
            .await;
        let accepted = fund || a_cents >= cents;
        if accepted {
            answer.expect(201);
            positions.push(answer.position());
            a_cents += if fund { cents } else { -cents };
            b_cents += if fund { 0 } else { cents };
        } else {
            assert_eq!(answer.code(), "insufficient_funds");
        }
    }
    (positions, a_cents, b_cents)
}

/// Dry runs, single and batched, over the writers' accounts until every writer is done.
async fn dry_run_loop(ledger: &TestLedger, done: &std::sync::atomic::AtomicUsize) -> usize {
    let mut rng = Rng(0x0dd_ba11);
    let mut count = 0;
    while done.load(std::sync::atomic::Ordering::SeqCst) < WRITERS {
        let w = rng.below(WRITERS as u64);
        let transfer = json!({"source": format!("w{w}:a"), "destination": format!("w{w}:b"),
                              "asset": "USD", "amount": rng.usd()});
        let key = format!("load-{w}-{}", rng.below(WRITES_EACH as u64));
        let answer = if rng.below(3) == 0 {
            let batch = json!({"atomic": rng.below(2) == 0, "commands": [
                {"idempotency_key": format!("dry-{count}"), "transfer": transfer},
                {"idempotency_key": key, "transfer": transfer}]});
            ledger
                .post(&with_dry_run("/v1/transactions/batch"), "x", &batch)
                .await
        } else {
            ledger
                .post(
                    &with_dry_run("/v1/transfers"),
                    &format!("dry-{count}"),
                    &transfer,
                )
                .await
        };
        assert!(
            answer.status == 200 || answer.status == 422,
            "{}",
            answer.text
        );
        assert_eq!(answer.body["dry_run"], true, "{}", answer.text);
        assert!(answer.header("ledger-position").is_none());
        count += 1;
    }
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_of_dry_runs_under_full_write_load_appends_nothing() {
    let ledger = TestLedger::start().await;
    market(&ledger).await;
    for w in 0..WRITERS {
        for side in ["a", "b"] {
            ledger
                .open_account(&format!("w{w}:{side}"), false)
                .await
                .expect(201);
        }
    }
    let setup = ledger.event_count().await;
    let done = std::sync::atomic::AtomicUsize::new(0);
    let writers = futures_util::future::join_all((0..WRITERS).map(|w| {
        let (ledger, done) = (&ledger, &done);
        async move {
            let result = real_writer(ledger, w).await;
            done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            result
        }
    }));
    let (results, dry_runs) = tokio::join!(writers, dry_run_loop(&ledger, &done));
    assert!(dry_runs > 0);

    let positions: Vec<i64> = results.iter().flat_map(|(p, _, _)| p.clone()).collect();
    assert_eq!(ledger.event_count().await, setup + positions.len() as i64);
    let mut conn = ledger.sql().await;
    let logged: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE position = ANY($1)")
        .bind(&positions)
        .fetch_one(&mut conn)
        .await
        .expect("logged");
    assert_eq!(
        logged,
        positions.len() as i64,
        "every real write is in the log"
    );
    let head = positions.iter().max().copied().unwrap_or(setup);
    for (w, (_, a_cents, b_cents)) in results.iter().enumerate() {
        for (side, cents) in [("a", a_cents), ("b", b_cents)] {
            let read = ledger.account_at(&format!("w{w}:{side}"), head).await;
            let balance = read.body["balances"]
                .as_array()
                .and_then(|b| b.iter().find(|b| b["asset"] == "USD"))
                .and_then(|b| b["balance"].as_str())
                .map_or(Decimal::ZERO, |b| Decimal::from_str(b).expect("a decimal"));
            assert_eq!(balance, Decimal::new(*cents, 2), "w{w}:{side}");
        }
    }
    ledger.finish().await;
}

#[tokio::test]
async fn a_transfer_between_ledgers_dry_runs_in_both_and_records_nothing() {
    let ledger = TestLedger::start().await;
    ledger.create_ledger_with_usd("fund-a", &["alice"]).await;
    ledger.create_ledger_with_usd("fund-b", &["bob"]).await;
    let fund =
        json!({"source": "world:bank", "destination": "alice", "asset": "USD", "amount": "100"});
    ledger
        .post("/v1/ledgers/fund-a/transfers", "fund", &fund)
        .await
        .expect(201);
    let body = |amount: &str| {
        json!({"source_ledger": "fund-a", "source": "alice", "destination_ledger": "fund-b",
               "destination": "bob", "asset": "USD", "amount": amount})
    };
    let events = ledger.event_count().await;
    let path = with_dry_run("/v1/ledger-transfers");
    let refused = ledger.post(&path, "x-1", &body("150")).await;
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert_eq!(refused.code(), "insufficient_funds");
    assert_eq!(refused.body["dry_run"], true);

    let dry = ledger.post(&path, "x-2", &body("40")).await;
    dry.expect(200);
    assert_eq!(dry.body["dry_run"], true);
    assert_eq!(dry.body["result"]["state"], "posted");
    let after = |ledger_name: &str, account: &str| {
        dry.body["balances"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["ledger"] == ledger_name && c["account"] == account)
            .map(|c| c["assets"][0]["after"]["balance"].clone())
    };
    assert_eq!(after("fund-a", "alice"), Some(json!("60.00")));
    assert_eq!(after("fund-b", "bob"), Some(json!("40.00")));
    assert_eq!(ledger.event_count().await, events);
    let listed = ledger.get("/v1/ledger-transfers").await;
    assert_eq!(listed.body["items"], json!([]), "nothing recorded");

    // The real transfer with the same key is a first one; a dry run after it is its replay.
    let real = ledger
        .post("/v1/ledger-transfers", "x-2", &body("40"))
        .await;
    real.expect(201);
    assert!(real.header("idempotent-replayed").is_none());
    let replay = ledger.post(&path, "x-2", &body("40")).await;
    replay.expect(200);
    assert_eq!(replay.body["replayed"], true);
    assert_eq!(replay.body["result"]["id"], real.body["id"]);
    ledger.finish().await;
}
