//! Accounting time over HTTP: writes that count in the past or ahead, settlements and reversals
//! in time, and closed periods that no write can change, across restarts and under load.

use chrono::{DateTime, Utc};
use domain::clock::Clock;
use ledger_tests::serde_json::{json, Value};
use ledger_tests::{Answer, TestLedger};

fn at(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn days_ago(ledger: &TestLedger, days: i64) -> String {
    at(ledger.clock.now() - chrono::Duration::days(days))
}

/// A time as the API wrote it, to compare with another whatever its number of digits.
fn time(value: &Value) -> DateTime<Utc> {
    value
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("not a time: {value}"))
}

fn refused(answer: &Answer, status: u16, code: &str) {
    assert_eq!(answer.status, status, "{}", answer.text);
    assert_eq!(answer.code(), code, "{}", answer.text);
}

async fn transfer_at(ledger: &TestLedger, key: &str, amount: &str, effective_at: &str) -> Answer {
    ledger
        .post(
            "/v1/transfers",
            key,
            &json!({"source": "world:bank", "destination": "alice:cash", "asset": "USD",
                    "amount": amount, "effective_at": effective_at}),
        )
        .await
}

async fn close(ledger: &TestLedger, key: &str, through: &str) -> Answer {
    ledger
        .post("/v1/periods/close", key, &json!({"through": through}))
        .await
}

async fn trial_balance(ledger: &TestLedger, as_of: &str) -> Value {
    let answer = ledger
        .get(&format!("/v1/reports/trial-balance?as_of={as_of}"))
        .await;
    answer.expect(200);
    answer.body
}

#[tokio::test]
async fn a_backdated_write_counts_in_the_past_and_its_time_is_part_of_its_event() {
    let mut ledger = TestLedger::start().await;
    ledger.market().await;
    let past = days_ago(&ledger, 3);
    let backdated = transfer_at(&ledger, "backdated", "10.00", &past).await;
    backdated.expect(201);
    assert_eq!(time(&backdated.body["effective_at"]), time(&json!(past)));
    let undated = ledger
        .transfer("undated", "world:bank", "alice:cash", "USD", "1.00")
        .await;
    undated.expect(201);
    assert_eq!(undated.body["effective_at"], undated.body["recorded_at"]);

    // The stated time is in the event as hashed and served; an undated event states none.
    let events = ledger.get("/v1/events?after=0").await;
    let payloads: Vec<&Value> = events.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "TransactionPosted")
        .map(|e| &e["payload"])
        .collect();
    assert_eq!(payloads.len(), 2, "{}", events.text);
    // Written with six fractional digits, whatever the client sent.
    assert_eq!(payloads[0]["effective_at"], past.as_str());
    assert!(payloads[1].get("effective_at").is_none(), "{}", events.text);

    // Not ahead of now (by default), nor finer than a microsecond.
    let before = ledger.event_count().await;
    let ahead = at(ledger.clock.now() + chrono::Duration::minutes(10));
    refused(
        &transfer_at(&ledger, "ahead", "1.00", &ahead).await,
        422,
        "effective_in_future",
    );
    refused(
        &transfer_at(&ledger, "nanos", "1.00", "2026-01-01T00:00:00.000000001Z").await,
        422,
        "validation_error",
    );
    assert_eq!(ledger.event_count().await, before);

    // A server that allows writes ahead accepts them, up to its bound.
    ledger
        .restart_with(|c| c.effective_future_max_s = 3600)
        .await;
    transfer_at(&ledger, "ahead-allowed", "1.00", &ahead)
        .await
        .expect(201);
    let too_far = at(ledger.clock.now() + chrono::Duration::hours(2));
    refused(
        &transfer_at(&ledger, "too-far", "1.00", &too_far).await,
        422,
        "effective_in_future",
    );
    ledger.finish().await;
}

#[tokio::test]
async fn a_settlement_never_counts_before_its_hold_and_a_reversal_counts_with_its_original() {
    let ledger = TestLedger::start().await;
    ledger.market().await;
    let five_days_ago = days_ago(&ledger, 5);
    let hold = ledger
        .post(
            "/v1/transfers",
            "hold",
            &json!({"source": "world:bank", "destination": "alice:cash", "asset": "USD",
                    "amount": "5.00", "pending": true, "effective_at": five_days_ago}),
        )
        .await;
    hold.expect(201);
    let id = hold.body["id"].as_str().unwrap().to_owned();
    let earlier = days_ago(&ledger, 6);
    let post_path = format!("/v1/transactions/{id}/post");
    refused(
        &ledger
            .post(&post_path, "post-early", &json!({"effective_at": earlier}))
            .await,
        422,
        "validation_error",
    );
    let four_days_ago = days_ago(&ledger, 4);
    let posted = ledger
        .post(&post_path, "post", &json!({"effective_at": four_days_ago}))
        .await;
    posted.expect(201);
    assert_eq!(
        time(&posted.body["effective_at"]),
        time(&json!(four_days_ago))
    );

    // A reversal counts when the post it takes back did, unless told otherwise, never earlier.
    let reverse_path = format!("/v1/transactions/{id}/reverse");
    refused(
        &ledger
            .post(
                &reverse_path,
                "reverse-early",
                &json!({"effective_at": five_days_ago}),
            )
            .await,
        422,
        "validation_error",
    );
    let reversal = ledger.post(&reverse_path, "reverse", &json!({})).await;
    reversal.expect(201);
    assert_eq!(
        time(&reversal.body["effective_at"]),
        time(&json!(four_days_ago))
    );
    ledger.finish().await;
}

/// Writes of every kind that would count at `effective_at`, each under its own key.
async fn writes_at(
    ledger: &TestLedger,
    effective_at: &str,
    holds: &[String; 2],
    original: &str,
) -> Vec<Answer> {
    let transfer = json!({"source": "world:bank", "destination": "alice:cash", "asset": "USD",
                          "amount": "1.00", "effective_at": effective_at});
    let batch = json!({"commands": [{"idempotency_key": "in-batch", "transfer": transfer}]});
    vec![
        ledger.post("/v1/transfers", "single", &transfer).await,
        ledger
            .post(
                "/v1/transactions",
                "transaction",
                &json!({"postings": [{"source": "world:bank", "destination": "alice:cash",
                        "asset": "USD", "amount": "1.00"}], "effective_at": effective_at}),
            )
            .await,
        ledger
            .post(
                "/v1/trades",
                "trade",
                &json!({"buyer": "alice:cash", "seller": "world:bank", "instrument": "AAPL",
                        "quantity": "1", "price": "1.00", "currency": "USD",
                        "effective_at": effective_at}),
            )
            .await,
        ledger.post("/v1/transactions/batch", "batch", &batch).await,
        ledger
            .post(
                &format!("/v1/transactions/{}/post", holds[0]),
                "post",
                &json!({"effective_at": effective_at}),
            )
            .await,
        ledger
            .post(
                &format!("/v1/transactions/{}/void", holds[1]),
                "void",
                &json!({"effective_at": effective_at}),
            )
            .await,
        ledger
            .post(
                &format!("/v1/transactions/{original}/reverse"),
                "reverse",
                &json!({"effective_at": effective_at}),
            )
            .await,
    ]
}

#[tokio::test]
async fn a_close_refuses_every_kind_of_write_into_the_period_until_it_is_reopened() {
    let mut ledger = TestLedger::start().await;
    ledger.market().await;
    let ten_days_ago = days_ago(&ledger, 10);
    transfer_at(&ledger, "fund", "100.00", &ten_days_ago)
        .await
        .expect(201);
    let mut holds = Vec::new();
    for key in ["hold-1", "hold-2"] {
        let hold = ledger
            .post(
                "/v1/transfers",
                key,
                &json!({"source": "world:bank", "destination": "alice:cash", "asset": "USD",
                        "amount": "2.00", "pending": true, "effective_at": ten_days_ago}),
            )
            .await;
        hold.expect(201);
        holds.push(hold.body["id"].as_str().unwrap().to_owned());
    }
    let holds: [String; 2] = holds.try_into().unwrap();
    let original = transfer_at(&ledger, "original", "3.00", &ten_days_ago).await;
    original.expect(201);
    let original = original.body["id"].as_str().unwrap().to_owned();

    let through = days_ago(&ledger, 2);
    let closed = close(&ledger, "close-1", &through).await;
    closed.expect(201);
    assert_eq!(closed.body["period"], 1);
    assert_eq!(closed.body["action"], "closed");
    let digest = closed.body["trial_balance_digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let period = ledger.get("/v1/periods/1").await;
    period.expect(200);
    assert_eq!(period.body["trial_balance"]["digest"], digest.as_str());
    assert_eq!(
        trial_balance(&ledger, &through).await["digest"],
        digest.as_str()
    );

    // Every kind of write into the period is refused, and nothing is appended.
    let three_days_ago = days_ago(&ledger, 3);
    let before = ledger.event_count().await;
    for answer in writes_at(&ledger, &three_days_ago, &holds, &original).await {
        if answer.body.get("results").is_some() {
            let item = &answer.body["results"][0];
            assert_eq!(item["status"], 422, "{}", answer.text);
            assert_eq!(item["body"]["code"], "period_closed", "{}", answer.text);
        } else {
            refused(&answer, 422, "period_closed");
        }
    }
    assert_eq!(ledger.event_count().await, before);

    // Periods close in order, and only once they have ended; across a restart they stay closed.
    refused(
        &close(&ledger, "close-earlier", &days_ago(&ledger, 4)).await,
        422,
        "validation_error",
    );
    let ahead = at(ledger.clock.now() + chrono::Duration::minutes(1));
    refused(
        &close(&ledger, "close-ahead", &ahead).await,
        422,
        "validation_error",
    );
    ledger.restart().await;
    refused(
        &transfer_at(&ledger, "after-restart", "1.00", &three_days_ago).await,
        422,
        "period_closed",
    );

    // Reopened, the period takes writes again; the next close records the new trial balance.
    let reopened = ledger
        .post(
            "/v1/periods/reopen",
            "reopen",
            &json!({"reason": "late invoice"}),
        )
        .await;
    reopened.expect(201);
    assert_eq!(reopened.body["period"], 1);
    transfer_at(&ledger, "late-invoice", "7.00", &three_days_ago)
        .await
        .expect(201);
    let again = close(&ledger, "close-2", &through).await;
    again.expect(201);
    assert_eq!(again.body["period"], 2);
    let new_digest = again.body["trial_balance_digest"].as_str().unwrap();
    assert_ne!(new_digest, digest);
    let listed = ledger.get("/v1/periods").await;
    let actions: Vec<(&str, u64)> = listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["action"].as_str().unwrap(), p["period"].as_u64().unwrap()))
        .collect();
    assert_eq!(actions, [("closed", 1), ("reopened", 1), ("closed", 2)]);
    let first = ledger.get("/v1/periods/1").await;
    assert_eq!(first.body["reopened"], true);
    refused(&ledger.get("/v1/periods/3").await, 404, "period_not_found");

    // The close's trial balance is the trial balance as of its end as known now, balanced.
    let now_known = trial_balance(&ledger, &through).await;
    assert_eq!(now_known["digest"], new_digest);
    let alice = now_known["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["account"] == "alice:cash")
        .unwrap();
    assert_eq!(alice["balance"], "110.00");
    assert!(now_known["totals"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["total"] == "0.00"));
    let replay = ledger.stop_and_replay().await;
    assert!(replay.identical(), "{replay:?}");
    ledger.finish().await;
}

#[tokio::test]
async fn closing_and_reopening_need_the_admin_scope() {
    let ledger = TestLedger::start_secured().await;
    let created = ledger
        .post(
            "/v1/admin/keys",
            "key",
            &json!({"name": "writer", "scopes": ["read", "write"]}),
        )
        .await;
    created.expect(201);
    let secret = created.body["secret"].as_str().unwrap();
    let through = days_ago(&ledger, 1);
    for (path, body) in [
        ("/v1/periods/close", json!({"through": through})),
        ("/v1/periods/reopen", json!({"reason": "no"})),
    ] {
        let answer = ledger
            .call_as(
                Some(secret),
                reqwest::Method::POST,
                path,
                Some("k"),
                Some(&body),
            )
            .await;
        refused(&answer, 403, "forbidden");
    }
    assert_eq!(ledger.event_count().await, 0);
    ledger.finish().await;
}

/// Transfers to alice, half counting now and half backdated to `backdated`, which a close may
/// hold back, then refuse.
async fn write_load(ledger: &TestLedger, writer: usize, backdated: &str) {
    for n in 0..60 {
        let key = format!("load-{writer}-{n}");
        let answer = loop {
            let answer = if n % 2 == 0 {
                ledger
                    .transfer(&key, "world:bank", "alice:cash", "USD", "1.00")
                    .await
            } else {
                transfer_at(ledger, &key, "1.00", backdated).await
            };
            // Held back while the close is retried: asked again under the same key, it is
            // decided afresh once the close has landed.
            if answer.status != 503 || answer.code() != "period_closing" {
                break answer;
            }
        };
        assert!(
            answer.status == 201 || answer.code() == "period_closed",
            "{}",
            answer.text
        );
    }
}

#[tokio::test]
async fn a_close_under_write_load_fixes_a_trial_balance_that_stays_true() {
    let ledger = TestLedger::start().await;
    ledger.market().await;
    let through = at(ledger.clock.now() - chrono::Duration::seconds(1));
    let backdated = days_ago(&ledger, 1);
    let writers = (0..4).map(|w| write_load(&ledger, w, &backdated));
    let (_, closed) = tokio::join!(
        futures_util::future::join_all(writers),
        close(&ledger, "close-under-load", &through)
    );
    closed.expect(201);
    // Whatever raced it, the trial balance the close fixed is the one known now.
    let digest = closed.body["trial_balance_digest"].as_str().unwrap();
    assert_eq!(trial_balance(&ledger, &through).await["digest"], digest);
    ledger.get("/v1/periods/1").await.expect(200);
    ledger.finish().await;
}

#[tokio::test]
async fn a_hold_stated_to_count_ahead_still_expires_when_its_time_is_up() {
    let ledger = TestLedger::start_with(|c| c.effective_future_max_s = 3600).await;
    ledger.market().await;
    let ahead = at(ledger.clock.now() + chrono::Duration::minutes(30));
    let hold = ledger
        .post(
            "/v1/transfers",
            "hold",
            &json!({"source": "world:bank", "destination": "alice:cash", "asset": "USD",
                    "amount": "5.00", "pending": true, "timeout_s": 60, "effective_at": ahead}),
        )
        .await;
    hold.expect(201);
    let id = hold.body["id"].as_str().unwrap().to_owned();
    ledger.clock.advance(std::time::Duration::from_secs(61));
    ledger_tests::eventually(std::time::Duration::from_secs(10), "the expiry", || async {
        let shown = ledger.get(&format!("/v1/transactions/{id}")).await;
        (shown.body["status"] == "expired").then_some(())
    })
    .await;
    ledger.finish().await;
}
