//! Reads in accounting time: balances as of a date (as known now, or at a position), history and
//! statements in effective order, roll-ups and trial balances as of a date. Writes are backdated
//! with `effective_at` (in the past: the server refuses later than now by default).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, DurationRound, Utc};
use ledger_tests::serde_json::{json, Value};
use ledger_tests::TestLedger;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use rust_decimal::Decimal;

/// Accounts of the scenarios, at several depths for the roll-ups. Every one may go negative, so
/// that backdated transfers recorded in any order are all accepted.
const ACCOUNTS: [&str; 5] = [
    "world:bank",
    "ops:cash",
    "ops:fees",
    "client:alice",
    "client:bob",
];

fn decimal(value: &Value) -> Decimal {
    value
        .as_str()
        .unwrap_or_else(|| panic!("an amount, not {value}"))
        .parse()
        .expect("a decimal")
}

/// A time as a query parameter.
fn q(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// A whole second some days ago: every effective time of a scenario counts after it.
fn days_ago(days: i64) -> DateTime<Utc> {
    let at = Utc::now() - Duration::days(days);
    at.duration_trunc(Duration::seconds(1)).unwrap_or(at)
}

/// The routes of ledger `name`, `default` being the root.
fn path(ledger: &str, rest: &str) -> String {
    if ledger == "default" {
        rest.to_owned()
    } else {
        let rest = rest.strip_prefix("/v1").unwrap_or(rest);
        format!("/v1/ledgers/{ledger}{rest}")
    }
}

/// Ledger `name` (created unless `default`) with USD (scale 2) and `ACCOUNTS`.
async fn books(ledger: &TestLedger, name: &str) {
    if name != "default" {
        let create = json!({"name": name});
        let key = format!("create-{name}");
        ledger.post("/v1/ledgers", &key, &create).await.expect(201);
    }
    let usd = json!({"code": "USD", "scale": 2});
    ledger
        .post(&path(name, "/v1/assets"), "usd", &usd)
        .await
        .expect(201);
    for code in ACCOUNTS {
        let open = json!({"code": code, "allow_negative": true});
        ledger
            .post(&path(name, "/v1/accounts"), &format!("open-{code}"), &open)
            .await
            .expect(201);
    }
}

/// One backdated transfer of a scenario: amounts in cents.
#[derive(Debug, Clone)]
struct Backdated {
    key: String,
    source: &'static str,
    destination: &'static str,
    cents: i64,
    effective_at: DateTime<Utc>,
}

impl Backdated {
    fn amount(&self) -> Decimal {
        Decimal::new(self.cents, 2)
    }
}

/// Records a transfer; its position.
async fn record(ledger: &TestLedger, name: &str, t: &Backdated) -> i64 {
    let body = json!({"source": t.source, "destination": t.destination, "asset": "USD",
                      "amount": t.amount().to_string(), "effective_at": q(t.effective_at)});
    let answer = ledger
        .post(&path(name, "/v1/transfers"), &t.key, &body)
        .await;
    answer.expect(201);
    answer.body["position"].as_i64().expect("a position")
}

/// An account's balances as of `as_of` (as known now, or at `known_at`), by asset; zeros left out.
async fn as_of_balances(
    ledger: &TestLedger,
    name: &str,
    account: &str,
    as_of: DateTime<Utc>,
    known_at: Option<i64>,
) -> BTreeMap<String, Decimal> {
    let known = known_at.map_or(String::new(), |p| format!("&known_at_position={p}"));
    let answer = ledger
        .get(&path(
            name,
            &format!("/v1/accounts/{account}/balances?as_of={}{known}", q(as_of)),
        ))
        .await;
    answer.expect(200);
    let stated = answer.body["as_of"]
        .as_str()
        .map(DateTime::parse_from_rfc3339);
    assert_eq!(stated.and_then(Result::ok).map(|t| t.to_utc()), Some(as_of));
    assert!(answer.body["known_at_position"].as_i64().is_some());
    answer.body["balances"]
        .as_array()
        .expect("balances")
        .iter()
        .map(|b| {
            (
                b["asset"].as_str().unwrap_or("").to_owned(),
                decimal(&b["balance"]),
            )
        })
        .filter(|(_, balance)| !balance.is_zero())
        .collect()
}

/// The trial balance as of `as_of`: (account, asset) → balance, and its digest.
async fn trial_balance(
    ledger: &TestLedger,
    name: &str,
    as_of: DateTime<Utc>,
    known_at: Option<i64>,
) -> (BTreeMap<(String, String), Decimal>, String) {
    let known = known_at.map_or(String::new(), |p| format!("&known_at_position={p}"));
    let answer = ledger
        .get(&path(
            name,
            &format!("/v1/reports/trial-balance?as_of={}{known}", q(as_of)),
        ))
        .await;
    answer.expect(200);
    let rows = answer.body["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            let account = r["account"].as_str().unwrap_or("").to_owned();
            let asset = r["asset"].as_str().unwrap_or("").to_owned();
            ((account, asset), decimal(&r["balance"]))
        })
        .filter(|(_, balance)| !balance.is_zero())
        .collect();
    (
        rows,
        answer.body["digest"].as_str().unwrap_or("").to_owned(),
    )
}

/// The reference model: each account's balance over the transfers effective at or before `at`.
fn model_as_of(transfers: &[Backdated], at: DateTime<Utc>) -> BTreeMap<(String, String), Decimal> {
    let mut balances: BTreeMap<(String, String), Decimal> = BTreeMap::new();
    for t in transfers.iter().filter(|t| t.effective_at <= at) {
        *balances.entry((t.source.into(), "USD".into())).or_default() -= t.amount();
        *balances
            .entry((t.destination.into(), "USD".into()))
            .or_default() += t.amount();
    }
    balances.retain(|_, balance| !balance.is_zero());
    balances
}

/// The times worth reading as of: each effective time, a microsecond before it, and after all.
fn times_of_interest(transfers: &[Backdated]) -> Vec<DateTime<Utc>> {
    let mut times: Vec<DateTime<Utc>> = transfers
        .iter()
        .flat_map(|t| [t.effective_at, t.effective_at - Duration::microseconds(1)])
        .collect();
    times.extend(transfers.iter().map(|t| t.effective_at).max());
    let now = Utc::now();
    times.push(now.duration_trunc(Duration::microseconds(1)).unwrap_or(now));
    times.sort();
    times.dedup();
    times
}

/// Transfers between the accounts, effective within ten days from `base`, several at the same
/// time (on the hour), keyed by their index.
fn backdated_transfers(base: DateTime<Utc>) -> impl Strategy<Value = Vec<Backdated>> {
    let one = (
        0..ACCOUNTS.len(),
        1..ACCOUNTS.len(),
        1i64..100_000,
        0i64..240,
    );
    proptest::collection::vec(one, 1..8).prop_map(move |drawn| {
        drawn
            .into_iter()
            .enumerate()
            .map(|(i, (source, shift, cents, hours))| Backdated {
                key: format!("t{i}"),
                source: ACCOUNTS[source],
                destination: ACCOUNTS[(source + shift) % ACCOUNTS.len()],
                cents,
                effective_at: base + Duration::hours(hours),
            })
            .collect()
    })
}

/// Both ledgers agree with each other and with the model, account by account and in their trial
/// balances, at every time of interest.
async fn same_books_as_of(
    ledger: &TestLedger,
    names: [&str; 2],
    transfers: &[Backdated],
) -> Result<(), TestCaseError> {
    for at in times_of_interest(transfers) {
        let expected = model_as_of(transfers, at);
        let mut digests = Vec::new();
        for name in names {
            let mut accounts = BTreeMap::new();
            for account in ACCOUNTS {
                for (asset, balance) in as_of_balances(ledger, name, account, at, None).await {
                    accounts.insert((account.to_owned(), asset), balance);
                }
            }
            prop_assert_eq!(&accounts, &expected, "{} as of {}", name, at);
            let (rows, digest) = trial_balance(ledger, name, at, None).await;
            prop_assert_eq!(&rows, &expected, "trial balance of {} as of {}", name, at);
            digests.push(digest);
        }
        prop_assert_eq!(&digests[0], &digests[1], "digests as of {}", at);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_backdated_entries_are_recorded_in_does_not_change_the_books_as_of_any_date() {
    let ledger = TestLedger::start().await;
    let base = days_ago(30);
    let cases = backdated_transfers(base)
        .prop_flat_map(|t| (Just(t.clone()).prop_shuffle(), Just(t).prop_shuffle()));
    let mut runner = TestRunner::new(Config {
        cases: 6,
        max_shrink_iters: 16,
        failure_persistence: None,
        ..Config::default()
    });
    let case = std::sync::atomic::AtomicUsize::new(0);
    let handle = tokio::runtime::Handle::current();
    let outcome = runner.run(&cases, |(first, second)| {
        let case = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let names = [format!("asof{case}a"), format!("asof{case}b")];
        tokio::task::block_in_place(|| {
            handle.block_on(async {
                for (name, order) in names.iter().zip([&first, &second]) {
                    books(&ledger, name).await;
                    for t in order {
                        record(&ledger, name, t).await;
                    }
                }
                same_books_as_of(&ledger, [&names[0], &names[1]], &first).await
            })
        })
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
    ledger.finish().await;
}

#[tokio::test]
async fn as_of_a_date_as_known_at_a_position_is_what_was_read_before_a_backdated_correction() {
    let ledger = TestLedger::start().await;
    books(&ledger, "default").await;
    let base = days_ago(20);
    let pay = |key: &str, cents, hours| Backdated {
        key: key.into(),
        source: "world:bank",
        destination: "client:alice",
        cents,
        effective_at: base + Duration::hours(hours),
    };
    record(&ledger, "default", &pay("salary", 100_000, 24)).await;
    record(&ledger, "default", &pay("bonus", 20_000, 72)).await;
    let month_end = base + Duration::hours(48);
    let before = ledger
        .get(&format!(
            "/v1/accounts/client:alice/balances?as_of={}",
            q(month_end)
        ))
        .await;
    before.expect(200);
    let known_at = before.body["known_at_position"].as_i64().expect("known at");
    assert_eq!(before.body["as_of_position"], known_at);
    assert_eq!(before.body["balances"][0]["balance"], "1000.00");
    let (trial_before, digest_before) = trial_balance(&ledger, "default", month_end, None).await;

    // A correction recorded now, effective before the month end: the salary was 900.00.
    let correction = Backdated {
        key: "correction".into(),
        source: "client:alice",
        destination: "world:bank",
        cents: 10_000,
        effective_at: base + Duration::hours(30),
    };
    record(&ledger, "default", &correction).await;
    let now_known = as_of_balances(&ledger, "default", "client:alice", month_end, None).await;
    assert_eq!(now_known["USD"], Decimal::new(90_000, 2));
    let then_known = ledger
        .get(&format!(
            "/v1/accounts/client:alice/balances?as_of={}&known_at_position={known_at}",
            q(month_end)
        ))
        .await;
    then_known.expect(200);
    assert_eq!(then_known.body["balances"], before.body["balances"]);
    assert_eq!(then_known.body["known_at_position"], known_at);
    let (trial_then, digest_then) =
        trial_balance(&ledger, "default", month_end, Some(known_at)).await;
    assert_eq!((trial_then, digest_then), (trial_before, digest_before));
    // Recorded order is untouched: balances at the position read before are the same too.
    let at_position = ledger
        .get(&format!(
            "/v1/accounts/client:alice/balances?at_position={known_at}"
        ))
        .await;
    assert_eq!(at_position.body["balances"][0]["balance"], "1200.00");
    ledger.finish().await;
}

#[tokio::test]
async fn as_of_does_not_mix_with_recorded_time_and_a_position_to_come_is_not_served() {
    let ledger = TestLedger::start_with(|c| c.min_position_wait_ms = 100).await;
    books(&ledger, "default").await;
    let t = "2026-01-01T00:00:00Z";
    for (query, status, code) in [
        (
            format!("balances?as_of={t}&at_position=3"),
            400,
            "invalid_request",
        ),
        (format!("balances?as_of={t}&at={t}"), 400, "invalid_request"),
        (
            "balances?known_at_position=3".to_owned(),
            400,
            "invalid_request",
        ),
        (
            format!("balances?as_of={t}&known_at_position=-1"),
            400,
            "invalid_request",
        ),
        (
            "balances?as_of=yesterday".to_owned(),
            400,
            "invalid_request",
        ),
        (
            format!("balances?as_of={t}&known_at_position=100000"),
            409,
            "position_not_reached",
        ),
        ("history?order=sideways".to_owned(), 400, "invalid_request"),
        (
            "statement?asset=USD&order=sideways".to_owned(),
            400,
            "invalid_request",
        ),
    ] {
        let answer = ledger
            .get(&format!("/v1/accounts/client:alice/{query}"))
            .await;
        assert_eq!(answer.status, status, "{query}: {}", answer.text);
        assert_eq!(answer.code(), code, "{query}");
    }
    for query in [
        format!("as_of={t}&at_position=3"),
        "known_at_position=3".to_owned(),
        format!("as_of={t}&known_at_position=-2"),
    ] {
        let answer = ledger.get(&format!("/v1/balances?{query}")).await;
        assert_eq!(answer.status, 400, "{query}: {}", answer.text);
        assert_eq!(answer.code(), "invalid_request", "{query}");
    }
    ledger.finish().await;
}

/// One leg of the reference model of an account's history: (effective µs, position, leg, amount).
type ModelLeg = (i64, i64, i16, Decimal);

/// Every page of alice's history in effective order, `limit` a page; before reading the second
/// page, `meanwhile` is recorded (it must show on no page).
async fn history_pages(ledger: &TestLedger, limit: usize, meanwhile: &Backdated) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    let mut known_at = None;
    loop {
        let after = cursor
            .as_ref()
            .map_or(String::new(), |c| format!("&cursor={c}"));
        let page = ledger
            .get(&format!(
                "/v1/accounts/client:alice/history?order=effective&limit={limit}{after}"
            ))
            .await;
        page.expect(200);
        let page_known_at = page.body["known_at_position"].as_i64();
        assert!(
            known_at.is_none() || known_at == page_known_at,
            "pages move"
        );
        if known_at.is_none() {
            record(ledger, "default", meanwhile).await;
        }
        known_at = page_known_at;
        items.extend(
            page.body["items"]
                .as_array()
                .expect("items")
                .iter()
                .cloned(),
        );
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return items,
        }
    }
}

#[tokio::test]
async fn history_in_effective_order_runs_its_balance_in_that_order_page_by_page() {
    let ledger = TestLedger::start().await;
    books(&ledger, "default").await;
    let base = days_ago(10);
    // Recorded out of effective order, two at the same time, one leaving alice below zero as of
    // its date although she held enough when it was recorded.
    let plan: [(i64, i64, bool); 4] = [
        (100_000, 50, true),
        (-30_000, 10, false),
        (5_000, 50, true),
        (2_500, 30, true),
    ];
    let mut model: Vec<ModelLeg> = Vec::new();
    for (i, (cents, hours, to_alice)) in plan.into_iter().enumerate() {
        let (source, destination) = if to_alice {
            ("world:bank", "client:alice")
        } else {
            ("client:alice", "ops:cash")
        };
        let t = Backdated {
            key: format!("h{i}"),
            source,
            destination,
            cents: cents.abs(),
            effective_at: base + Duration::hours(hours),
        };
        let position = record(&ledger, "default", &t).await;
        let leg = if to_alice { 1 } else { 0 };
        model.push((
            t.effective_at.timestamp_micros(),
            position,
            leg,
            Decimal::new(cents, 2),
        ));
    }
    model.sort();
    let mut running = Decimal::ZERO;
    let mut expected: Vec<(i64, i16, Decimal)> = model
        .iter()
        .map(|(_, position, leg, amount)| {
            running += amount;
            (*position, *leg, running)
        })
        .collect();
    expected.reverse();
    let late = Backdated {
        key: "late".into(),
        source: "world:bank",
        destination: "client:alice",
        cents: 700,
        effective_at: base + Duration::hours(5),
    };
    let items = history_pages(&ledger, 1, &late).await;
    let got: Vec<(i64, i16, Decimal)> = items
        .iter()
        .map(|e| {
            assert_eq!(e["type"], "posting");
            assert!(e["recorded_at"].is_string() && e["effective_at"].is_string());
            let leg = e["leg"].as_i64().unwrap_or(-1) as i16;
            (
                e["position"].as_i64().unwrap_or(0),
                leg,
                decimal(&e["balance_after"]),
            )
        })
        .collect();
    assert_eq!(got, expected);
    assert!(got.iter().any(|(_, _, balance)| balance.is_sign_negative()));

    // Read again, the late entry is there, first of all in effective order.
    let again = ledger
        .get("/v1/accounts/client:alice/history?order=effective&limit=100")
        .await;
    let last = again.body["items"]
        .as_array()
        .and_then(|i| i.last().cloned());
    assert_eq!(
        last.map(|e| e["balance_after"].clone()),
        Some(json!("7.00"))
    );
    // The recorded order shows the effective times too.
    let recorded = ledger.get("/v1/accounts/client:alice/history").await;
    assert!(recorded.body["items"][0]["effective_at"].is_string());
    ledger.finish().await;
}

#[tokio::test]
async fn a_statement_in_effective_order_opens_and_closes_as_of_its_dates() {
    let ledger = TestLedger::start().await;
    books(&ledger, "default").await;
    let base = days_ago(10);
    let at = |hours| base + Duration::hours(hours);
    for (key, cents, hours) in [
        ("s1", 10_000, 40),
        ("s2", 2_000, 5),
        ("s3", 300, 20),
        ("s4", 40, 60),
    ] {
        let t = Backdated {
            key: key.into(),
            source: "world:bank",
            destination: "client:bob",
            cents,
            effective_at: at(hours),
        };
        record(&ledger, "default", &t).await;
    }
    let statement = ledger
        .get(&format!(
            "/v1/accounts/client:bob/statement?asset=USD&order=effective&from={}&to={}",
            q(at(20)),
            q(at(60))
        ))
        .await;
    statement.expect(200);
    let s = &statement.body;
    assert_eq!(s["order"], "effective");
    assert_eq!(s["opening_balance"], "20.00");
    let entries: Vec<(&str, &str)> = s["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            let text = |field: &str| e[field].as_str().unwrap_or("");
            (text("amount"), text("balance_after"))
        })
        .collect();
    assert_eq!(entries, [("3.00", "23.00"), ("100.00", "123.00")]);
    assert_eq!(s["closing_balance"], "123.00");
    // In recorded order the same dates select by recording time: nothing was recorded then.
    let recorded = ledger
        .get(&format!(
            "/v1/accounts/client:bob/statement?asset=USD&from={}&to={}",
            q(at(20)),
            q(at(60))
        ))
        .await;
    assert_eq!(recorded.body["entries"], json!([]));
    ledger.finish().await;
}

/// Sums of as-of balances of the accounts under `prefix` (whole segments), by asset.
fn under(
    balances: &BTreeMap<(String, String), Decimal>,
    prefix: &str,
) -> BTreeMap<String, Decimal> {
    let mut sums: BTreeMap<String, Decimal> = BTreeMap::new();
    for ((account, asset), balance) in balances {
        if prefix.is_empty() || account == prefix || account.starts_with(&format!("{prefix}:")) {
            *sums.entry(asset.clone()).or_default() += balance;
        }
    }
    sums.retain(|_, sum| !sum.is_zero());
    sums
}

#[tokio::test]
async fn roll_ups_trial_balance_and_accounts_agree_as_of_every_date() {
    let ledger = TestLedger::start_with(|c| c.rollup_at_accounts_max = 3).await;
    books(&ledger, "default").await;
    let base = days_ago(15);
    let mut transfers = Vec::new();
    for (i, hours) in [30, 2, 17, 30, 9, 44, 1].into_iter().enumerate() {
        let t = Backdated {
            key: format!("r{i}"),
            source: ACCOUNTS[i % ACCOUNTS.len()],
            destination: ACCOUNTS[(i + 1 + i % 3) % ACCOUNTS.len()],
            cents: 1_000 + 37 * i as i64,
            effective_at: base + Duration::hours(hours),
        };
        record(&ledger, "default", &t).await;
        transfers.push(t);
    }
    for at in times_of_interest(&transfers) {
        let mut accounts = BTreeMap::new();
        for account in ACCOUNTS {
            for (asset, balance) in as_of_balances(&ledger, "default", account, at, None).await {
                accounts.insert((account.to_owned(), asset), balance);
            }
        }
        let (trial, _) = trial_balance(&ledger, "default", at, None).await;
        assert_eq!(trial, accounts, "as of {at}");
        for prefix in ["ops", "client", "world", "ops:fees"] {
            let rollup = ledger
                .get(&format!("/v1/balances?prefix={prefix}&as_of={}", q(at)))
                .await;
            rollup.expect(200);
            assert!(rollup.body["known_at_position"].as_i64().is_some());
            let sums: BTreeMap<String, Decimal> = rollup.body["balances"]
                .as_array()
                .expect("balances")
                .iter()
                .map(|b| {
                    (
                        b["asset"].as_str().unwrap_or("").to_owned(),
                        decimal(&b["posted"]),
                    )
                })
                .filter(|(_, posted)| !posted.is_zero())
                .collect();
            assert_eq!(sums, under(&accounts, prefix), "{prefix} as of {at}");
        }
    }
    // The whole ledger is five accounts: more than --rollup-at-accounts-max.
    let too_many = ledger
        .get(&format!("/v1/balances?as_of={}", q(Utc::now())))
        .await;
    assert_eq!(too_many.status, 422, "{}", too_many.text);
    ledger.finish().await;
}
