//! Settlement dates: a trade that settles after its trade date is reserved on the trade date and
//! posted by the ledger itself at the settlement time of its settlement date; before that it may
//! settle early, in parts, or fail. Accounts show the settled and trade-date positions, and a
//! ladder of what is due in and out per settlement date, which adds up to the pending figures.
//!
//! The tests move the server's clock (`TestLedger::clock`) instead of waiting for a date, and
//! wait on what the API shows, never for a time.

use std::time::Duration;

use chrono::{Days, NaiveDate, NaiveTime};
use domain::clock::Clock;
use ledger_tests::serde_json::{json, Value};
use ledger_tests::{eventually, Answer, TestLedger};

/// How long the ledger has to settle a trade by itself once its time has passed.
const SETTLES_WITHIN: Duration = Duration::from_secs(10);
/// How far from midnight (UTC) a test's writes start, so that "today" holds while they run.
const MIDNIGHT_MARGIN: chrono::Duration = chrono::Duration::minutes(10);
/// A day, to move the clock by.
const DAY: Duration = Duration::from_secs(86_400);

/// Moves the clock on, when midnight (UTC) is near, to well after it: the date every write of
/// the test is recorded on. Returns it.
fn today(ledger: &TestLedger) -> NaiveDate {
    let now = ledger.clock.now();
    let midnight = now.date_naive().and_time(NaiveTime::MIN).and_utc();
    let since = now - midnight;
    let until = chrono::Duration::days(1) - since;
    if until < MIDNIGHT_MARGIN {
        ledger
            .clock
            .advance((until + MIDNIGHT_MARGIN).to_std().unwrap());
    } else if since < MIDNIGHT_MARGIN {
        ledger
            .clock
            .advance((MIDNIGHT_MARGIN - since).to_std().unwrap());
    }
    ledger.clock.now().date_naive()
}

fn days_after(date: NaiveDate, days: u64) -> NaiveDate {
    date.checked_add_days(Days::new(days)).unwrap()
}

/// USD (2), AAPL (0); alice has 5000.00 USD, bob 100 AAPL.
async fn funded_market(ledger: &TestLedger) {
    ledger.market().await;
    ledger
        .transfer("fund-alice", "world:bank", "alice:cash", "USD", "5000.00")
        .await
        .expect(201);
    ledger
        .transfer("fund-bob", "world:bank", "bob:cash", "AAPL", "100")
        .await
        .expect(201);
}

/// Alice buys `quantity` AAPL from bob at 100.00 USD, paying broker:fees 1.00 USD: postings
/// AAPL bob → alice, USD alice → bob, USD alice → broker:fees.
fn buy(quantity: &str, settlement_date: NaiveDate) -> Value {
    json!({"buyer": "alice:cash", "seller": "bob:cash", "instrument": "AAPL",
           "quantity": quantity, "price": "100.00", "currency": "USD",
           "fees": [{"payer": "alice:cash", "account": "broker:fees", "amount": "1.00"}],
           "settlement_date": settlement_date.to_string()})
}

async fn trade(ledger: &TestLedger, key: &str, body: &Value) -> String {
    let answer = ledger.post("/v1/trades", key, body).await;
    answer.expect(201);
    answer.body["id"].as_str().unwrap().to_owned()
}

/// Posting amounts, in order.
fn amounts(postings: &Value) -> Vec<&str> {
    postings
        .as_array()
        .unwrap_or_else(|| panic!("postings: {postings}"))
        .iter()
        .map(|p| p["amount"].as_str().unwrap())
        .collect()
}

/// An account's figures in an asset: balance, pending debits, pending credits, available and
/// trade-date balance.
async fn figures(ledger: &TestLedger, account: &str, asset: &str) -> [String; 5] {
    let answer = ledger.get(&format!("/v1/accounts/{account}")).await;
    answer.expect(200);
    let balance = answer.body["balances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["asset"] == asset)
        .unwrap_or_else(|| panic!("{account} holds no {asset}: {}", answer.text))
        .clone();
    [
        "balance",
        "pending_debits",
        "pending_credits",
        "available",
        "trade_date_balance",
    ]
    .map(|field| balance[field].as_str().unwrap().to_owned())
}

/// Waits until the trade's status is `status`.
async fn wait_for_status(ledger: &TestLedger, id: &str, status: &str) -> Value {
    eventually(SETTLES_WITHIN, &format!("trade {id} {status}"), || async {
        let answer = ledger.get(&format!("/v1/trades/{id}")).await;
        answer.expect(200);
        (answer.body["status"] == status).then_some(answer.body)
    })
    .await
}

/// The ladder of an account, after checking that its totals equal the account's pending
/// figures in every asset it holds (and that a ladder lists nothing the account does not hold).
async fn ladder(ledger: &TestLedger, account: &str, query: &str) -> Value {
    let answer = ledger
        .get(&format!("/v1/accounts/{account}/settlements{query}"))
        .await;
    answer.expect(200);
    assert_eq!(answer.body["account"], account);
    assert_eq!(answer.body["position"], answer.position());
    let read = ledger.account_at(account, answer.position()).await;
    read.expect(200);
    let totals = answer.body["totals"].as_array().unwrap();
    for balance in read.body["balances"].as_array().unwrap() {
        let total = totals.iter().find(|t| t["asset"] == balance["asset"]);
        let zero = |field: &str| {
            balance[field]
                .as_str()
                .unwrap()
                .trim_matches(['0', '.'])
                .is_empty()
        };
        match total {
            Some(total) => {
                assert_eq!(
                    total["due_in"], balance["pending_credits"],
                    "{}",
                    answer.text
                );
                assert_eq!(
                    total["due_out"], balance["pending_debits"],
                    "{}",
                    answer.text
                );
            }
            None => assert!(
                zero("pending_credits") && zero("pending_debits"),
                "{balance}"
            ),
        }
    }
    answer.body
}

/// A ladder item as `[date, asset, due_in, due_out]` (date `null` for holds without one).
fn items(ladder: &Value) -> Vec<[Value; 4]> {
    ladder["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            [
                i["date"].clone(),
                i["asset"].clone(),
                i["due_in"].clone(),
                i["due_out"].clone(),
            ]
        })
        .collect()
}

fn item(date: Option<NaiveDate>, asset: &str, due_in: &str, due_out: &str) -> [Value; 4] {
    [
        date.map_or(Value::Null, |d| json!(d.to_string())),
        json!(asset),
        json!(due_in),
        json!(due_out),
    ]
}

fn refused(answer: &Answer, status: u16, code: &str) {
    assert_eq!(answer.status, status, "{}", answer.text);
    assert_eq!(answer.code(), code, "{}", answer.text);
}

#[tokio::test]
async fn a_t_plus_1_buy_stays_pending_is_on_the_ladder_and_settles_by_itself() {
    let mut ledger = TestLedger::start().await;
    funded_market(&ledger).await;
    let today = today(&ledger);
    let t1 = days_after(today, 1);

    let booked = ledger.post("/v1/trades", "buy", &buy("10", t1)).await;
    booked.expect(201);
    let id = booked.body["id"].as_str().unwrap().to_owned();
    assert_eq!(booked.body["status"], "pending", "{}", booked.text);
    assert_eq!(booked.body["trade_date"], today.to_string());
    assert_eq!(booked.body["settlement_date"], t1.to_string());
    assert_eq!(booked.body["settles_at"], format!("{t1}T00:00:00Z"));
    let settlement = &booked.body["settlement"];
    assert_eq!(settlement["status"], "pending");
    assert_eq!(amounts(&settlement["settled"]), Vec::<&str>::new());
    assert_eq!(amounts(&settlement["remaining"]), ["10", "1000.00", "1.00"]);

    // Reserved on the trade date: the settled position is unchanged, the trade-date one moved.
    assert_eq!(
        figures(&ledger, "alice:cash", "USD").await,
        ["5000.00", "1001.00", "0.00", "3999.00", "3999.00"]
    );
    assert_eq!(
        figures(&ledger, "alice:cash", "AAPL").await,
        ["0", "0", "10", "0", "10"]
    );
    let alice = ladder(&ledger, "alice:cash", "").await;
    assert_eq!(
        items(&alice),
        [
            item(Some(t1), "AAPL", "10", "0"),
            item(Some(t1), "USD", "0.00", "1001.00")
        ]
    );
    let bob = ladder(&ledger, "bob:cash", "").await;
    assert_eq!(
        items(&bob),
        [
            item(Some(t1), "AAPL", "0", "10"),
            item(Some(t1), "USD", "1000.00", "0.00")
        ]
    );
    let later = ladder(
        &ledger,
        "alice:cash",
        &format!("?from={}", days_after(t1, 1)),
    )
    .await;
    assert!(items(&later).is_empty(), "{later}");
    assert_eq!(later["totals"], alice["totals"]);

    // The settlement date comes: the ledger posts the trade by itself, under its own key.
    ledger.clock.advance(DAY);
    let settled = wait_for_status(&ledger, &id, "settled").await;
    let settlement = &settled["settlement"];
    assert_eq!(settlement["status"], "settled");
    assert_eq!(amounts(&settlement["settled"]), ["10", "1000.00", "1.00"]);
    assert_eq!(amounts(&settlement["remaining"]), Vec::<&str>::new());
    assert_eq!(
        figures(&ledger, "alice:cash", "USD").await,
        ["3999.00", "0.00", "0.00", "3999.00", "3999.00"]
    );
    assert_eq!(
        figures(&ledger, "alice:cash", "AAPL").await,
        ["10", "0", "0", "10", "10"]
    );
    assert!(items(&ladder(&ledger, "alice:cash", "").await).is_empty());
    let events = ledger.get("/v1/events?after=0&limit=100").await;
    let last = events.body["items"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["type"], "PendingPosted");
    assert_eq!(
        last["metadata"]["idempotency_key"],
        format!("ledger:settle:{id}")
    );

    let report = ledger.stop_and_replay().await;
    assert!(report.identical(), "{report:?}");
    ledger.finish().await;
}

/// A frozen account refuses postings, the ledger's own settlement of a due trade among them.
/// The trade waits, the writer goes on (it once recorded the refusal under its own key and then
/// failed every batch recording it again), and it settles by itself once the account thaws.
#[tokio::test]
async fn a_trade_due_while_its_buyer_is_frozen_settles_once_the_buyer_is_unfrozen() {
    let mut ledger = TestLedger::start().await;
    funded_market(&ledger).await;
    let today = today(&ledger);
    let id = trade(&ledger, "buy", &buy("10", days_after(today, 1))).await;
    ledger
        .post("/v1/accounts/alice:cash/freeze", "freeze", &json!({}))
        .await
        .expect(201);

    ledger.clock.advance(DAY);
    // Every batch starts with the holds due: these writes make several, each acknowledged.
    for n in 0..5 {
        ledger
            .transfer(
                &format!("after-{n}"),
                "world:bank",
                "bob:cash",
                "USD",
                "1.00",
            )
            .await
            .expect(201);
    }
    let waiting = ledger.get(&format!("/v1/trades/{id}")).await;
    waiting.expect(200);
    assert_eq!(waiting.body["status"], "pending", "{}", waiting.text);
    assert_eq!(
        figures(&ledger, "alice:cash", "USD").await,
        ["5000.00", "1001.00", "0.00", "3999.00", "3999.00"]
    );
    ledger.get("/readyz").await.expect(200);

    ledger
        .post("/v1/accounts/alice:cash/unfreeze", "unfreeze", &json!({}))
        .await
        .expect(201);
    wait_for_status(&ledger, &id, "settled").await;
    assert_eq!(
        figures(&ledger, "alice:cash", "AAPL").await,
        ["10", "0", "0", "10", "10"]
    );
    let report = ledger.stop_and_replay().await;
    assert!(report.identical(), "{report:?}");
    ledger.finish().await;
}

#[tokio::test]
async fn a_trade_dated_today_settles_at_once_and_impossible_dates_are_refused() {
    let ledger = TestLedger::start().await;
    funded_market(&ledger).await;
    let today = today(&ledger);

    let at_once = ledger.post("/v1/trades", "today", &buy("1", today)).await;
    at_once.expect(201);
    assert_eq!(at_once.body["status"], "posted", "{}", at_once.text);
    assert_eq!(at_once.body["settlement_date"], today.to_string());
    assert!(at_once.body.get("settles_at").is_none(), "{}", at_once.text);
    assert!(at_once.body.get("settlement").is_none(), "{}", at_once.text);
    assert_eq!(
        figures(&ledger, "alice:cash", "AAPL").await,
        ["1", "0", "0", "1", "1"]
    );

    // Backdated to yesterday and settling today: its settlement time has passed, so it settles
    // at once too. `trade_date` is another name for `effective_at`.
    let yesterday = ledger.clock.now() - chrono::Duration::days(1);
    let mut late = buy("1", today);
    late["trade_date"] = json!(yesterday.to_rfc3339_opts(chrono::SecondsFormat::Micros, true));
    let late = ledger.post("/v1/trades", "late", &late).await;
    late.expect(201);
    assert_eq!(late.body["status"], "posted", "{}", late.text);
    assert_eq!(late.body["trade_date"], yesterday.date_naive().to_string());

    // A trade settling tomorrow may settle early, whole: `/settle` with no body at all.
    let early = trade(&ledger, "early", &buy("2", days_after(today, 1))).await;
    let settled = ledger
        .client
        .post(ledger.url(&format!("/v1/trades/{early}/settle")))
        .header("idempotency-key", "settle-early")
        .send()
        .await
        .expect("POST");
    let settled = TestLedger::read(settled).await;
    settled.expect(201);
    assert_eq!(settled.body["status"], "posted", "{}", settled.text);
    assert_eq!(amounts(&settled.body["postings"]), ["2", "200.00", "1.00"]);
    let read = ledger.get(&format!("/v1/trades/{early}")).await;
    assert_eq!(read.body["status"], "settled", "{}", read.text);
    assert_eq!(read.body["settlement"]["status"], "settled");
    assert_eq!(
        figures(&ledger, "alice:cash", "AAPL").await,
        ["4", "0", "0", "4", "4"]
    );

    let events = ledger.event_count().await;
    let before = ledger
        .post("/v1/trades", "before", &buy("1", today.pred_opt().unwrap()))
        .await;
    ledger
        .assert_refused(&before, 422, "validation_error", events)
        .await;
    assert!(before.body["detail"]
        .as_str()
        .unwrap()
        .contains("before the trade date"));
    let far = ledger
        .post("/v1/trades", "far", &buy("1", days_after(today, 367)))
        .await;
    ledger
        .assert_refused(&far, 422, "validation_error", events)
        .await;
    let mut two_phase = buy("1", days_after(today, 1));
    two_phase["pending"] = json!(true);
    let two_phase = ledger.post("/v1/trades", "two-phase", &two_phase).await;
    ledger
        .assert_refused(&two_phase, 422, "validation_error", events)
        .await;
    let mut malformed = buy("1", today);
    malformed["settlement_date"] = json!("2026-13-01");
    let malformed = ledger.post("/v1/trades", "malformed", &malformed).await;
    ledger
        .assert_refused(&malformed, 422, "validation_error", events)
        .await;
    let mut both = buy("1", today);
    both["trade_date"] = json!("2026-01-02T00:00:00Z");
    both["effective_at"] = json!("2026-01-02T00:00:00Z");
    let both = ledger.post("/v1/trades", "both", &both).await;
    ledger
        .assert_refused(&both, 400, "invalid_request", events)
        .await;
    assert_eq!(
        both.body["detail"],
        "trade_date is another name for effective_at: give one of them, not both"
    );
    ledger.finish().await;
}

#[tokio::test]
async fn a_partial_settlement_keeps_the_rest_reserved_until_the_ledger_posts_it() {
    let mut ledger = TestLedger::start().await;
    funded_market(&ledger).await;
    let t1 = days_after(today(&ledger), 1);
    let id = trade(&ledger, "buy", &buy("10", t1)).await;
    let settle = format!("/v1/trades/{id}/settle");
    let part = json!({"amounts": ["4", "400.00", "0.40"], "metadata": {"ref": "early"}});

    // A dry run says what it would do and appends nothing.
    let events = ledger.event_count().await;
    let dry = ledger
        .post(&format!("{settle}?dry_run=true"), "dry", &part)
        .await;
    dry.expect(200);
    assert_eq!(
        dry.body["result"]["status"], "partially_settled",
        "{}",
        dry.text
    );
    assert_eq!(ledger.event_count().await, events);

    let first = ledger.post(&settle, "part-1", &part).await;
    first.expect(201);
    assert_eq!(first.body["status"], "partially_settled", "{}", first.text);
    assert_eq!(amounts(&first.body["postings"]), ["4", "400.00", "0.40"]);
    assert_eq!(amounts(&first.body["remaining"]), ["6", "600.00", "0.60"]);
    let again = ledger.post(&settle, "part-1", &part).await;
    again.expect(201);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body, first.body);

    let read = ledger.get(&format!("/v1/transactions/{id}")).await;
    read.expect(200);
    assert_eq!(read.body["status"], "partially_settled", "{}", read.text);
    assert_eq!(read.body["settles_at"], format!("{t1}T00:00:00Z"));
    assert_eq!(
        amounts(&read.body["settlement"]["settled"]),
        ["4", "400.00", "0.40"]
    );
    assert_eq!(
        amounts(&read.body["settlement"]["remaining"]),
        ["6", "600.00", "0.60"]
    );
    assert_eq!(read.body["settlement"]["metadata"], json!({"ref": "early"}));
    assert_eq!(
        figures(&ledger, "alice:cash", "USD").await,
        ["4599.60", "600.60", "0.00", "3999.00", "3999.00"]
    );
    assert_eq!(
        figures(&ledger, "alice:cash", "AAPL").await,
        ["4", "0", "6", "4", "10"]
    );
    assert_eq!(
        items(&ladder(&ledger, "alice:cash", "").await),
        [
            item(Some(t1), "AAPL", "6", "0"),
            item(Some(t1), "USD", "0.00", "600.60")
        ]
    );
    // Amounts refer to what the trade still reserves: one per remaining posting.
    let events = ledger.event_count().await;
    let short = ledger
        .post(&settle, "short", &json!({"amounts": ["1", "100.00"]}))
        .await;
    ledger
        .assert_refused(&short, 422, "validation_error", events)
        .await;
    let too_much = ledger
        .post(
            &settle,
            "much",
            &json!({"amounts": ["7", "700.00", "0.70"]}),
        )
        .await;
    ledger
        .assert_refused(&too_much, 422, "validation_error", events)
        .await;

    // On the settlement date the ledger posts the rest.
    ledger.clock.advance(DAY);
    let settled = wait_for_status(&ledger, &id, "settled").await;
    assert_eq!(
        amounts(&settled["settlement"]["settled"]),
        ["10", "1000.00", "1.00"]
    );
    assert_eq!(
        amounts(&settled["settlement"]["postings"]),
        ["6", "600.00", "0.60"]
    );
    assert_eq!(
        figures(&ledger, "alice:cash", "USD").await,
        ["3999.00", "0.00", "0.00", "3999.00", "3999.00"]
    );
    assert_eq!(figures(&ledger, "bob:cash", "USD").await[0], "1000.00");
    assert_eq!(figures(&ledger, "broker:fees", "USD").await[0], "1.00");
    let events = ledger.event_count().await;
    let late = ledger.post(&settle, "late", &json!({})).await;
    ledger
        .assert_refused(&late, 422, "pending_already_posted", events)
        .await;
    let fail = ledger
        .post(
            &format!("/v1/trades/{id}/fail"),
            "fail",
            &json!({"reason": "too late"}),
        )
        .await;
    ledger
        .assert_refused(&fail, 422, "pending_already_posted", events)
        .await;

    let report = ledger.stop_and_replay().await;
    assert!(report.identical(), "{report:?}");
    ledger.finish().await;
}

#[tokio::test]
async fn a_partial_settlement_then_a_failure_voids_the_rest_for_a_reason() {
    let mut ledger = TestLedger::start().await;
    funded_market(&ledger).await;
    let t1 = days_after(today(&ledger), 1);
    let id = trade(&ledger, "buy", &buy("10", t1)).await;
    ledger
        .post(
            &format!("/v1/trades/{id}/settle"),
            "part",
            &json!({"amounts": ["4", "400.00", "0.40"]}),
        )
        .await
        .expect(201);

    let reason = "seller failed to deliver the rest";
    let failed = ledger
        .post(
            &format!("/v1/trades/{id}/fail"),
            "fail",
            &json!({"reason": reason}),
        )
        .await;
    failed.expect(201);
    assert_eq!(failed.body["status"], "failed", "{}", failed.text);
    assert_eq!(failed.body["reason"], reason);
    assert_eq!(amounts(&failed.body["released"]), ["6", "600.00", "0.60"]);

    let read = ledger.get(&format!("/v1/trades/{id}")).await;
    read.expect(200);
    assert_eq!(read.body["status"], "failed", "{}", read.text);
    assert_eq!(read.body["settlement"]["reason"], reason);
    assert_eq!(
        amounts(&read.body["settlement"]["settled"]),
        ["4", "400.00", "0.40"]
    );
    assert_eq!(
        amounts(&read.body["settlement"]["remaining"]),
        Vec::<&str>::new()
    );
    assert_eq!(
        figures(&ledger, "alice:cash", "USD").await,
        ["4599.60", "0.00", "0.00", "4599.60", "4599.60"]
    );
    assert_eq!(figures(&ledger, "alice:cash", "AAPL").await[0], "4");
    assert_eq!(figures(&ledger, "bob:cash", "AAPL").await[0], "96");
    assert!(items(&ladder(&ledger, "alice:cash", "").await).is_empty());

    // A hold is settled once: a failed settlement is a voided hold.
    let events = ledger.event_count().await;
    let settle = ledger
        .post(&format!("/v1/trades/{id}/settle"), "settle", &json!({}))
        .await;
    ledger
        .assert_refused(&settle, 422, "pending_already_voided", events)
        .await;
    let again = ledger
        .post(
            &format!("/v1/trades/{id}/fail"),
            "fail-2",
            &json!({"reason": "again"}),
        )
        .await;
    ledger
        .assert_refused(&again, 422, "pending_already_voided", events)
        .await;
    // The ledger does not settle it on its date either.
    ledger.clock.advance(DAY);
    let other = trade(&ledger, "other", &buy("1", days_after(t1, 2))).await;
    assert_eq!(
        wait_for_status(&ledger, &id, "failed").await["status"],
        "failed"
    );

    // A failure needs a reason, and only a trade's settlement fails.
    let events = ledger.event_count().await;
    let blank = ledger
        .post(
            &format!("/v1/trades/{other}/fail"),
            "blank",
            &json!({"reason": " "}),
        )
        .await;
    ledger
        .assert_refused(&blank, 422, "validation_error", events)
        .await;
    let missing = ledger
        .post(&format!("/v1/trades/{other}/fail"), "missing", &json!({}))
        .await;
    ledger
        .assert_refused(&missing, 422, "validation_error", events)
        .await;
    let hold = ledger
        .post(
            "/v1/transfers",
            "hold",
            &json!({"source": "alice:cash", "destination": "bob:cash", "asset": "USD",
                    "amount": "5.00", "pending": true}),
        )
        .await;
    hold.expect(201);
    let hold_id = hold.body["id"].as_str().unwrap();
    let events = ledger.event_count().await;
    let not_a_trade = ledger
        .post(
            &format!("/v1/trades/{hold_id}/fail"),
            "hold-fail",
            &json!({"reason": "no"}),
        )
        .await;
    ledger
        .assert_refused(&not_a_trade, 422, "validation_error", events)
        .await;
    let unknown = ledger
        .post(
            "/v1/trades/00000000-0000-0000-0000-000000000000/fail",
            "unknown",
            &json!({"reason": "no"}),
        )
        .await;
    ledger
        .assert_refused(&unknown, 422, "pending_not_found", events)
        .await;

    // Reversing the failed trade takes back what its parts settled.
    let reversal = ledger
        .post(
            &format!("/v1/transactions/{id}/reverse"),
            "reverse",
            &json!({}),
        )
        .await;
    reversal.expect(201);
    assert_eq!(amounts(&reversal.body["postings"]), ["4", "400.00", "0.40"]);
    assert_eq!(figures(&ledger, "alice:cash", "AAPL").await[0], "0");

    let report = ledger.stop_and_replay().await;
    assert!(report.identical(), "{report:?}");
    ledger.finish().await;
}

#[tokio::test]
async fn the_ladder_adds_up_to_the_pending_figures_after_a_mix_of_operations() {
    let mut ledger = TestLedger::start().await;
    funded_market(&ledger).await;
    let today = today(&ledger);
    let (t1, t2, t3) = (
        days_after(today, 1),
        days_after(today, 2),
        days_after(today, 3),
    );
    trade(&ledger, "t1", &buy("10", t1)).await;
    let second = trade(&ledger, "t2", &buy("5", t2)).await;
    let third = trade(&ledger, "t3", &buy("2", t3)).await;
    ledger
        .post(
            &format!("/v1/trades/{second}/settle"),
            "part",
            &json!({"amounts": ["2", "200.00", "1.00"]}),
        )
        .await
        .expect(201);
    ledger
        .post(
            &format!("/v1/trades/{third}/fail"),
            "fail",
            &json!({"reason": "no stock"}),
        )
        .await
        .expect(201);
    // Holds without a settlement date: a two-phase transfer and a two-phase trade.
    ledger
        .post(
            "/v1/transfers",
            "hold",
            &json!({"source": "alice:cash", "destination": "bob:cash", "asset": "USD",
                    "amount": "50.00", "pending": true}),
        )
        .await
        .expect(201);
    let mut two_phase = buy("1", today);
    two_phase.as_object_mut().unwrap().remove("settlement_date");
    two_phase["pending"] = json!(true);
    let two_phase = trade(&ledger, "two-phase", &two_phase).await;
    let voided = ledger
        .post(
            "/v1/transfers",
            "voided",
            &json!({"source": "alice:cash", "destination": "bob:cash", "asset": "USD",
                    "amount": "7.00", "pending": true}),
        )
        .await;
    let voided_id = voided.body["id"].as_str().unwrap();
    ledger
        .post(
            &format!("/v1/transactions/{voided_id}/void"),
            "void",
            &json!({}),
        )
        .await
        .expect(201);

    let alice = ladder(&ledger, "alice:cash", "").await;
    assert_eq!(
        items(&alice),
        [
            item(Some(t1), "AAPL", "10", "0"),
            item(Some(t1), "USD", "0.00", "1001.00"),
            item(Some(t2), "AAPL", "3", "0"),
            item(Some(t2), "USD", "0.00", "300.00"),
            item(None, "AAPL", "1", "0"),
            item(None, "USD", "0.00", "151.00"),
        ]
    );
    assert_eq!(
        alice["totals"],
        json!([{"asset": "AAPL", "due_in": "14", "due_out": "0"},
               {"asset": "USD", "due_in": "0.00", "due_out": "1452.00"}])
    );
    ladder(&ledger, "bob:cash", "").await;
    ladder(&ledger, "broker:fees", "").await;
    ladder(&ledger, "world:bank", "").await;
    let one_day = ladder(&ledger, "alice:cash", &format!("?from={t2}&to={t2}")).await;
    assert_eq!(
        items(&one_day),
        [
            item(Some(t2), "AAPL", "3", "0"),
            item(Some(t2), "USD", "0.00", "300.00")
        ]
    );
    assert_eq!(one_day["totals"], alice["totals"]);
    let until = ladder(&ledger, "alice:cash", &format!("?to={t1}")).await;
    assert_eq!(items(&until).len(), 2);
    let by_ledger = ledger
        .get("/v1/ledgers/default/accounts/alice:cash/settlements")
        .await;
    by_ledger.expect(200);
    assert_eq!(by_ledger.body["items"], alice["items"]);
    let backwards = ledger
        .get(&format!(
            "/v1/accounts/alice:cash/settlements?from={t2}&to={t1}"
        ))
        .await;
    refused(&backwards, 400, "invalid_request");
    let nobody = ledger.get("/v1/accounts/nobody:cash/settlements").await;
    refused(&nobody, 404, "account_not_found");

    // Posting the two-phase trade takes it off the undated line.
    ledger
        .post(
            &format!("/v1/transactions/{two_phase}/post"),
            "post",
            &json!({}),
        )
        .await
        .expect(201);
    let after = ladder(&ledger, "alice:cash", "").await;
    assert_eq!(items(&after)[4], item(None, "USD", "0.00", "50.00"));

    let report = ledger.stop_and_replay().await;
    assert!(report.identical(), "{report:?}");
    ledger.finish().await;
}

#[tokio::test]
async fn a_restart_restores_what_a_partially_settled_trade_still_reserves() {
    let mut ledger = TestLedger::start().await;
    funded_market(&ledger).await;
    let t1 = days_after(today(&ledger), 1);
    let id = trade(&ledger, "buy", &buy("10", t1)).await;
    let settle = format!("/v1/trades/{id}/settle");
    ledger
        .post(
            &settle,
            "part-1",
            &json!({"amounts": ["4", "400.00", "0.40"]}),
        )
        .await
        .expect(201);

    // After a restart the writer knows what is left: 6, 600.00 and 0.60, not what was booked.
    ledger.restart().await;
    let second = ledger
        .post(
            &settle,
            "part-2",
            &json!({"amounts": ["1", "100.00", "0.10"]}),
        )
        .await;
    second.expect(201);
    assert_eq!(amounts(&second.body["remaining"]), ["5", "500.00", "0.50"]);
    let events = ledger.event_count().await;
    let beyond = ledger
        .post(
            &settle,
            "beyond",
            &json!({"amounts": ["6", "600.00", "0.60"]}),
        )
        .await;
    ledger
        .assert_refused(&beyond, 422, "validation_error", events)
        .await;

    // Its date passes while the ledger is down: it settles the rest when it is back.
    ledger.stop_server().await;
    ledger.clock.advance(DAY);
    ledger.restart().await;
    let settled = wait_for_status(&ledger, &id, "settled").await;
    assert_eq!(
        amounts(&settled["settlement"]["postings"]),
        ["5", "500.00", "0.50"]
    );
    assert_eq!(
        figures(&ledger, "alice:cash", "USD").await,
        ["3999.00", "0.00", "0.00", "3999.00", "3999.00"]
    );
    assert_eq!(figures(&ledger, "alice:cash", "AAPL").await[0], "10");

    let report = ledger.stop_and_replay().await;
    assert!(report.identical(), "{report:?}");
    ledger.finish().await;
}

#[tokio::test]
async fn trades_settle_at_the_servers_settlement_time_in_every_ledger() {
    let settlement_time = NaiveTime::from_hms_opt(16, 30, 0).unwrap();
    let ledger = TestLedger::start_with(|c| c.settlement_time = settlement_time).await;
    ledger
        .create_ledger_with_usd("fx", &["alice:cash", "bob:cash", "broker:fees"])
        .await;
    let fx = "/v1/ledgers/fx";
    ledger
        .post(
            &format!("{fx}/assets"),
            "aapl",
            &json!({"code": "AAPL", "scale": 0}),
        )
        .await
        .expect(201);
    for (key, to, asset, amount) in [
        ("f1", "alice:cash", "USD", "5000.00"),
        ("f2", "bob:cash", "AAPL", "100"),
    ] {
        ledger
            .post(
                &format!("{fx}/transfers"),
                key,
                &json!({"source": "world:bank", "destination": to, "asset": asset, "amount": amount}),
            )
            .await
            .expect(201);
    }
    let t2 = days_after(today(&ledger), 2);
    let booked = ledger
        .post(&format!("{fx}/trades"), "buy", &buy("10", t2))
        .await;
    booked.expect(201);
    assert_eq!(booked.body["settles_at"], format!("{t2}T16:30:00Z"));
    let id = booked.body["id"].as_str().unwrap();
    let part = ledger
        .post(
            &format!("{fx}/trades/{id}/settle"),
            "part",
            &json!({"amounts": ["5", "500.00", "0.50"]}),
        )
        .await;
    part.expect(201);
    let ladder = ledger
        .get(&format!("{fx}/accounts/alice:cash/settlements"))
        .await;
    ladder.expect(200);
    assert_eq!(
        items(&ladder.body),
        [
            item(Some(t2), "AAPL", "5", "0"),
            item(Some(t2), "USD", "0.00", "500.50")
        ]
    );
    // The default ledger has none of it.
    let default = ledger.get("/v1/accounts/world:bank").await;
    assert_eq!(default.status, 404, "{}", default.text);

    // Two days on and past any time of day: after 16:30 on the settlement date.
    ledger.clock.advance(DAY * 3);
    eventually(SETTLES_WITHIN, "the fx trade settled", || async {
        let read = ledger.get(&format!("{fx}/trades/{id}")).await;
        (read.body["status"] == "settled").then_some(())
    })
    .await;
    ledger.finish().await;
}

#[tokio::test]
async fn an_upgrade_lists_the_holds_written_before_it_on_the_ladder() {
    let mut ledger = TestLedger::start().await;
    funded_market(&ledger).await;
    let hold = |key: &'static str, amount: &'static str| {
        json!({"source": "alice:cash", "destination": "bob:cash", "asset": "USD",
               "amount": amount, "pending": true, "metadata": {"key": key}})
    };
    ledger
        .post("/v1/transfers", "open", &hold("open", "30.00"))
        .await
        .expect(201);
    let posted = ledger
        .post("/v1/transfers", "posted", &hold("posted", "20.00"))
        .await;
    let posted_id = posted.body["id"].as_str().unwrap();
    ledger
        .post(
            &format!("/v1/transactions/{posted_id}/post"),
            "post",
            &json!({"amounts": ["5.00"]}),
        )
        .await
        .expect(201);
    let voided = ledger
        .post("/v1/transfers", "voided", &hold("voided", "10.00"))
        .await;
    let voided_id = voided.body["id"].as_str().unwrap();
    ledger
        .post(
            &format!("/v1/transactions/{voided_id}/void"),
            "void",
            &json!({}),
        )
        .await
        .expect(201);
    let mut two_phase = buy("3", today(&ledger));
    two_phase.as_object_mut().unwrap().remove("settlement_date");
    two_phase["pending"] = json!(true);
    trade(&ledger, "two-phase", &two_phase).await;

    // The database as it was before migration 0017; the server migrates it again on start.
    ledger.stop_server().await;
    let mut conn = ledger.sql().await;
    sqlx::raw_sql(
        "DROP TABLE hold_dues; DROP TABLE hold_parts; DROP TABLE booking_methods;
         ALTER TABLE holds DROP COLUMN settles_at;
         DELETE FROM _sqlx_migrations WHERE version = 17;",
    )
    .execute(&mut conn)
    .await
    .expect("back to before 0017");
    drop(conn);
    ledger.restart().await;

    let alice = ladder(&ledger, "alice:cash", "").await;
    assert_eq!(
        items(&alice),
        [
            item(None, "AAPL", "3", "0"),
            item(None, "USD", "0.00", "331.00")
        ]
    );
    ladder(&ledger, "bob:cash", "").await;
    let report = ledger.stop_and_replay().await;
    assert!(report.identical(), "{report:?}");
    ledger.finish().await;
}
