//! Roll-up balances: after random workloads (transfers, holds posted in part or voided), the
//! roll-up of every code prefix equals the sum of its accounts' balances, figure by figure, and
//! the tree lists the next segments under a prefix with theirs, page by page. The roll-ups are a
//! projection like any other: a rebuild from the log equals them.

use std::collections::BTreeMap;

use ledger_tests::serde_json::{json, Value};
use ledger_tests::TestLedger;
use rust_decimal::Decimal;

/// Codes at several depths, an account with accounts under it (`house`), and a code that
/// shares letters but not a segment with another (`brokerage` and `broker`).
const ACCOUNTS: [&str; 8] = [
    "world:bank",
    "broker:alice:cash",
    "broker:alice:margin",
    "broker:bob:cash",
    "broker:fees",
    "brokerage:ops",
    "house",
    "house:fees:eu",
];
const ASSETS: [&str; 2] = ["USD", "EUR"];

/// A small deterministic generator, so that a failure can be replayed with its seed.
struct Random(u64);

impl Random {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// Figures as (posted, pending debits, pending credits, available) per asset.
type Sums = BTreeMap<String, [Decimal; 4]>;

fn decimal(value: &Value) -> Decimal {
    value
        .as_str()
        .expect("an amount")
        .parse()
        .expect("a decimal")
}

/// Random transfers and holds (each held transfer is then posted in part, posted whole, voided
/// or left open); refusals (insufficient funds) are part of the workload. The last position.
async fn random_workload(ledger: &TestLedger, seed: u64, operations: usize) -> i64 {
    let mut random = Random(seed);
    let mut last = 0;
    for i in 0..operations {
        let source = ACCOUNTS[random.below(ACCOUNTS.len())];
        let destination = ACCOUNTS[random.below(ACCOUNTS.len())];
        if source == destination {
            continue;
        }
        let asset = ASSETS[random.below(ASSETS.len())];
        let amount = format!("{}.{:02}", 1 + random.below(200), random.below(100));
        let pending = random.below(3) == 0;
        let body = json!({"source": source, "destination": destination, "asset": asset,
                          "amount": amount, "pending": pending});
        let answer = ledger
            .post("/v1/transfers", &format!("op-{seed}-{i}"), &body)
            .await;
        if answer.status != 201 {
            continue;
        }
        last = last.max(answer.position());
        if !pending {
            continue;
        }
        let id = answer.body["id"].as_str().expect("id").to_owned();
        let (action, settle) = match random.below(4) {
            0 => ("post", json!({"amounts": ["1.00"]})),
            1 => ("post", json!({})),
            2 => ("void", json!({})),
            _ => continue,
        };
        let key = format!("settle-{seed}-{i}");
        let settled = ledger
            .post(&format!("/v1/transactions/{id}/{action}"), &key, &settle)
            .await;
        if settled.status == 201 {
            last = last.max(settled.position());
        }
    }
    last
}

/// The sums of the accounts whose code is `prefix` or starts with `prefix:`, read one by one.
async fn summed(ledger: &TestLedger, prefix: &str, at: i64) -> (i64, Sums) {
    let mut accounts = 0;
    let mut sums = Sums::new();
    let under =
        |code: &str| prefix.is_empty() || code == prefix || code.starts_with(&format!("{prefix}:"));
    for code in ACCOUNTS.iter().filter(|c| under(c)) {
        accounts += 1;
        let account = ledger.account_at(code, at).await;
        account.expect(200);
        for balance in account.body["balances"].as_array().expect("balances") {
            let figures = sums
                .entry(balance["asset"].as_str().expect("asset").to_owned())
                .or_insert([Decimal::ZERO; 4]);
            for (sum, field) in figures.iter_mut().zip([
                "balance",
                "pending_debits",
                "pending_credits",
                "available",
            ]) {
                *sum += decimal(&balance[field]);
            }
        }
    }
    (accounts, sums)
}

fn rolled_up(rollup: &Value) -> (i64, Sums) {
    let sums = rollup["balances"]
        .as_array()
        .expect("balances")
        .iter()
        .map(|b| {
            let figures = ["posted", "pending_debits", "pending_credits", "available"]
                .map(|field| decimal(&b[field]));
            (b["asset"].as_str().expect("asset").to_owned(), figures)
        })
        .collect();
    (rollup["accounts"].as_i64().expect("accounts"), sums)
}

/// Every prefix of whole segments of the accounts, the whole ledger (``) first.
fn every_prefix() -> Vec<String> {
    let mut prefixes = vec![String::new()];
    for code in ACCOUNTS {
        let segments: Vec<&str> = code.split(':').collect();
        for depth in 1..=segments.len() {
            let prefix = segments[..depth].join(":");
            if !prefixes.contains(&prefix) {
                prefixes.push(prefix);
            }
        }
    }
    prefixes
}

#[tokio::test]
async fn every_rollup_equals_the_sum_of_its_accounts_after_random_workloads() {
    let mut ledger = TestLedger::start().await;
    for asset in ASSETS {
        ledger.define_asset(asset, 2).await.expect(201);
    }
    for code in ACCOUNTS {
        ledger
            .open_account(code, code == "world:bank")
            .await
            .expect(201);
    }
    for asset in ASSETS {
        for code in &ACCOUNTS[1..] {
            let key = format!("fund-{code}-{asset}");
            ledger
                .transfer(&key, "world:bank", code, asset, "500.00")
                .await
                .expect(201);
        }
    }
    for seed in [7, 11, 13] {
        let at = random_workload(&ledger, seed, 120).await;
        for prefix in every_prefix() {
            let rollup = ledger
                .get(&format!("/v1/balances?prefix={prefix}&min_position={at}"))
                .await;
            rollup.expect(200);
            assert!(rollup.position() >= at);
            assert_eq!(rollup.body["prefix"], json!(prefix));
            assert_eq!(
                rolled_up(&rollup.body),
                summed(&ledger, &prefix, at).await,
                "the roll-up of {prefix:?} after seed {seed}"
            );
        }
    }
    // Money is conserved: over the whole ledger every asset sums to zero, and what is reserved
    // as debits is reserved as credits.
    let whole = ledger.get("/v1/balances").await;
    for (asset, [posted, debits, credits, _]) in rolled_up(&whole.body).1 {
        assert_eq!(posted, Decimal::ZERO, "{asset} sums to zero");
        assert_eq!(debits, credits, "{asset} reserved on both sides");
    }
    let report = ledger.stop_and_replay().await;
    assert!(
        report.identical(),
        "the roll-ups rebuilt from the log equal the live ones: {:?}",
        report.differences
    );
    ledger.finish().await;
}

#[tokio::test]
async fn the_tree_lists_the_next_segments_with_their_rollups_page_by_page() {
    let ledger = TestLedger::start().await;
    ledger.define_asset("USD", 2).await.expect(201);
    for code in ACCOUNTS {
        ledger
            .open_account(code, code == "world:bank")
            .await
            .expect(201);
    }
    let at = ledger
        .transfer("fund", "world:bank", "broker:alice:cash", "USD", "12.50")
        .await;
    at.expect(201);

    let top = ledger
        .get(&format!("/v1/accounts/tree?min_position={}", at.position()))
        .await;
    top.expect(200);
    let segments: Vec<&str> = top.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["segment"].as_str().expect("segment"))
        .collect();
    assert_eq!(segments, ["broker", "brokerage", "house", "world"]);

    let first = ledger.get("/v1/accounts/tree?prefix=broker:&limit=2").await;
    first.expect(200);
    let items = first.body["items"].as_array().expect("items");
    assert_eq!(items[0]["segment"], "alice");
    assert_eq!(items[0]["prefix"], "broker:alice");
    assert_eq!(items[0]["accounts"], 2);
    assert_eq!(items[0]["balances"][0]["posted"], "12.50");
    assert_eq!(items[1]["segment"], "bob");
    let cursor = first.body["next_cursor"].as_str().expect("a next page");
    let second = ledger
        .get(&format!(
            "/v1/accounts/tree?prefix=broker&limit=2&cursor={cursor}"
        ))
        .await;
    second.expect(200);
    let items = second.body["items"].as_array().expect("items");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["segment"], "fees");
    assert!(second.body["next_cursor"].is_null());

    // `house` is an account and has accounts under it: both count.
    let house = ledger.get("/v1/balances?prefix=house").await;
    assert_eq!(house.body["accounts"], 2);
    let bad = ledger.get("/v1/balances?prefix=broker::alice").await;
    bad.expect(400);
    let unknown = ledger.get("/v1/balances?prefix=nobody").await;
    unknown.expect(200);
    assert_eq!(unknown.body["accounts"], 0);
    ledger.finish().await;
}

#[tokio::test]
async fn an_account_cannot_take_the_code_of_the_tree_route_but_may_live_under_it() {
    // `GET /v1/accounts/tree` is a route of its own, so an account coded `tree` could never be
    // read by code: opening one is refused, and `tree:…` codes, which no route shadows, are fine.
    let ledger = TestLedger::start().await;
    let n = ledger.event_count().await;
    let refused = ledger.open_account("tree", false).await;
    ledger
        .assert_refused(&refused, 422, "validation_error", n)
        .await;
    ledger.open_account("tree:oak", false).await.expect(201);
    let oak = ledger.get("/v1/accounts/tree:oak").await;
    oak.expect(200);
    assert_eq!(oak.body["code"], "tree:oak");
    let tree = ledger.get("/v1/accounts/tree").await;
    tree.expect(200);
    assert_eq!(tree.body["items"][0]["prefix"], "tree", "{}", tree.text);
    ledger.finish().await;
}

/// The posted balances at `position` of the accounts under `prefix`, read one by one.
async fn posted_at(ledger: &TestLedger, prefix: &str, position: i64) -> BTreeMap<String, Decimal> {
    let under =
        |code: &str| prefix.is_empty() || code == prefix || code.starts_with(&format!("{prefix}:"));
    let mut sums = BTreeMap::new();
    for code in ACCOUNTS.iter().filter(|c| under(c)) {
        let answer = ledger
            .get(&format!(
                "/v1/accounts/{code}/balances?at_position={position}"
            ))
            .await;
        answer.expect(200);
        for balance in answer.body["balances"].as_array().expect("balances") {
            *sums
                .entry(balance["asset"].as_str().expect("asset").to_owned())
                .or_insert(Decimal::ZERO) += decimal(&balance["balance"]);
        }
    }
    sums
}

#[tokio::test]
async fn a_rollup_at_a_past_position_equals_its_accounts_balances_then() {
    let ledger = TestLedger::start_with(|config| config.rollup_at_accounts_max = 4).await;
    for asset in ASSETS {
        ledger.define_asset(asset, 2).await.expect(201);
    }
    for code in ACCOUNTS {
        let allow_negative = code == "world:bank";
        ledger.open_account(code, allow_negative).await.expect(201);
        for asset in ASSETS {
            if !allow_negative {
                let key = format!("fund-{code}-{asset}");
                ledger
                    .transfer(&key, "world:bank", code, asset, "500.00")
                    .await
                    .expect(201);
            }
        }
    }
    let mut positions = Vec::new();
    for seed in [3, 5] {
        positions.push(random_workload(&ledger, seed, 60).await);
    }
    // Positions between the workloads, and one early on, before some accounts had any money.
    positions.push(12);
    let small = every_prefix().into_iter().filter(|p| {
        !p.is_empty()
            && ACCOUNTS
                .iter()
                .filter(|c| *c == p || c.starts_with(&format!("{p}:")))
                .count()
                <= 4
    });
    for prefix in small {
        for &position in &positions {
            let past = ledger
                .get(&format!(
                    "/v1/balances?prefix={prefix}&at_position={position}"
                ))
                .await;
            past.expect(200);
            assert_eq!(past.body["position"], position);
            let balances = past.body["balances"].as_array().expect("balances");
            let shown: BTreeMap<String, Decimal> = balances
                .iter()
                .map(|b| {
                    assert!(b.get("pending_debits").is_none(), "posted only: {b}");
                    (
                        b["asset"].as_str().expect("asset").to_owned(),
                        decimal(&b["posted"]),
                    )
                })
                .collect();
            assert_eq!(
                shown,
                posted_at(&ledger, &prefix, position).await,
                "{prefix:?} at {position}"
            );
        }
    }
    // At the head, a past roll-up is the present one's posted figures.
    let head = ledger.get("/v1/balances?prefix=broker:alice").await;
    let at_head = ledger
        .get(&format!(
            "/v1/balances?prefix=broker:alice&at_position={}",
            head.body["position"]
        ))
        .await;
    let posted = |v: &Value| -> Vec<(Value, Value)> {
        v["balances"]
            .as_array()
            .expect("balances")
            .iter()
            .map(|b| (b["asset"].clone(), b["posted"].clone()))
            .collect()
    };
    assert_eq!(posted(&head.body), posted(&at_head.body));
    // More accounts than the configured bound (the whole ledger has 8 by then): refused, not cut
    // short; and a position still to come is waited for, then refused like any min_position that
    // never arrives.
    let whole = ledger
        .get(&format!("/v1/balances?at_position={}", positions[0]))
        .await;
    assert_eq!(whole.status, 422, "{}", whole.text);
    assert_eq!(whole.code(), "validation_error");
    let future = ledger
        .get("/v1/balances?prefix=house&at_position=999999")
        .await;
    assert_eq!(future.status, 409, "{}", future.text);
    let negative = ledger.get("/v1/balances?prefix=house&at_position=-1").await;
    assert_eq!(negative.status, 400, "{}", negative.text);
    ledger.finish().await;
}
