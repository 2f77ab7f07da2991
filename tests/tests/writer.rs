//! The write path under concurrency and failure: idempotency, batches that must see earlier
//! commands, a full queue, a failed commit, a restart, and many clients at once (a second server: `forwarding.rs`).

use std::sync::Arc;
use std::time::Duration;

use ledger_tests::serde_json::json;
use ledger_tests::TestLedger;
use sqlx::Connection;

/// Holds a lock the writer needs at the start of every batch, so that requests queue up and are
/// then decided together in one batch when it is released.
struct WriterBlock(sqlx::PgConnection);

impl WriterBlock {
    async fn hold(ledger: &TestLedger) -> Self {
        let mut conn = ledger.sql().await;
        sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
        sqlx::query("LOCK TABLE idempotency_keys IN ACCESS EXCLUSIVE MODE")
            .execute(&mut conn)
            .await
            .unwrap();
        Self(conn)
    }

    async fn release(mut self) {
        sqlx::query("COMMIT").execute(&mut self.0).await.unwrap();
        let _ = self.0.close().await;
    }
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn replays_return_the_original_answer_for_success_and_refusal() {
    let ledger = TestLedger::start().await;
    ledger.market().await;
    ledger
        .transfer("fund", "world:bank", "alice:cash", "USD", "10")
        .await
        .expect(201);

    let first = ledger
        .transfer("pay-1", "alice:cash", "bob:cash", "USD", "4")
        .await;
    first.expect(201);
    assert_eq!(first.header("idempotent-replayed"), None);
    let events = ledger.event_count().await;
    let again = ledger
        .transfer("pay-1", "alice:cash", "bob:cash", "USD", "4")
        .await;
    again.expect(201);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.text, first.text);
    assert_eq!(again.position(), first.position());
    assert_eq!(ledger.event_count().await, events);

    // A refusal is replayed too, even after the funds arrive.
    let overdraft = ledger
        .transfer("pay-2", "alice:cash", "bob:cash", "USD", "7")
        .await;
    overdraft.expect(422);
    assert_eq!(overdraft.code(), "insufficient_funds");
    ledger
        .transfer("fund-2", "world:bank", "alice:cash", "USD", "100")
        .await
        .expect(201);
    let retried = ledger
        .transfer("pay-2", "alice:cash", "bob:cash", "USD", "7")
        .await;
    retried.expect(422);
    assert_eq!(retried.header("idempotent-replayed"), Some("true"));
    assert_eq!(retried.text, overdraft.text);

    // The same key with a different request is refused, and appends nothing.
    let events = ledger.event_count().await;
    let reused = ledger
        .transfer("pay-1", "alice:cash", "bob:cash", "USD", "5")
        .await;
    reused.expect(422);
    assert_eq!(reused.code(), "idempotency_key_reused");
    let other_route = ledger
        .post("/v1/accounts", "pay-1", &json!({"code": "carol"}))
        .await;
    assert_eq!(other_route.code(), "idempotency_key_reused");
    assert_eq!(ledger.event_count().await, events);

    // Field order and whitespace do not make a different request.
    let reordered = ledger
        .post_raw(
            "/v1/transfers",
            &[("content-type", "application/json"), ("idempotency-key", "pay-1")],
            br#"{ "amount": "4", "asset": "USD", "destination": "bob:cash", "source": "alice:cash" }"#.to_vec(),
        )
        .await;
    reordered.expect(201);
    assert_eq!(reordered.text, first.text);
    ledger.finish().await;
}

#[tokio::test]
async fn the_same_key_sent_concurrently_executes_once() {
    let ledger = Arc::new(TestLedger::start().await);
    ledger.market().await;
    ledger
        .transfer("fund", "world:bank", "alice:cash", "USD", "100")
        .await
        .expect(201);
    let events = ledger.event_count().await;

    // Once decided together in one batch, once racing freely.
    for round in 0..2 {
        let block = if round == 0 {
            Some(WriterBlock::hold(&ledger).await)
        } else {
            None
        };
        let key = format!("same-{round}");
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let ledger = ledger.clone();
                let key = key.clone();
                tokio::spawn(async move {
                    ledger
                        .transfer(&key, "alice:cash", "bob:cash", "USD", "1")
                        .await
                })
            })
            .collect();
        if let Some(block) = block {
            settle().await;
            block.release().await;
        }
        let mut answers = Vec::new();
        for t in tasks {
            answers.push(t.await.unwrap());
        }
        assert!(answers.iter().all(|a| a.status == 201), "{answers:?}");
        let fresh = answers
            .iter()
            .filter(|a| a.header("idempotent-replayed").is_none())
            .count();
        assert_eq!(fresh, 1, "exactly one executes");
        assert!(answers.iter().all(|a| a.text == answers[0].text));
    }
    assert_eq!(ledger.event_count().await, events + 2);
    assert_eq!(ledger.balance("bob:cash", "USD").await, "2.00");
    Arc::try_unwrap(ledger).ok().unwrap().finish().await;
}

#[tokio::test]
async fn commands_in_one_batch_see_each_other() {
    let ledger = Arc::new(TestLedger::start().await);
    ledger.market().await;
    ledger
        .transfer("fund", "world:bank", "alice:cash", "USD", "10")
        .await
        .expect(201);

    let block = WriterBlock::hold(&ledger).await;
    let tasks: Vec<_> = (0..2)
        .map(|i| {
            let ledger = ledger.clone();
            tokio::spawn(async move {
                ledger
                    .transfer(&format!("half-{i}"), "alice:cash", "bob:cash", "USD", "6")
                    .await
            })
        })
        .collect();
    settle().await;
    block.release().await;
    let mut statuses = Vec::new();
    for t in tasks {
        let a = t.await.unwrap();
        if a.status == 422 {
            assert_eq!(a.code(), "insufficient_funds");
        }
        statuses.push(a.status);
    }
    statuses.sort();
    assert_eq!(statuses, [201, 422], "together they would overdraw alice");
    assert_eq!(ledger.balance("alice:cash", "USD").await, "4.00");
    Arc::try_unwrap(ledger).ok().unwrap().finish().await;
}

#[tokio::test]
async fn a_full_queue_answers_503_at_once() {
    let ledger = Arc::new(
        TestLedger::start_with(|c| {
            c.queue_capacity = 2;
            c.batch_max = 1;
        })
        .await,
    );
    ledger.market().await;
    ledger
        .transfer("fund", "world:bank", "alice:cash", "USD", "10")
        .await
        .expect(201);
    let block = WriterBlock::hold(&ledger).await;
    // One request is being written (waiting on the lock), one is decided into the next batch
    // meanwhile, and two fill the queue.
    let mut tasks = Vec::new();
    for i in 0..4 {
        let ledger = ledger.clone();
        tasks.push(tokio::spawn(async move {
            ledger
                .transfer(&format!("queued-{i}"), "alice:cash", "bob:cash", "USD", "1")
                .await
        }));
        settle().await;
    }
    let started = std::time::Instant::now();
    let overloaded = ledger
        .transfer("one-too-many", "alice:cash", "bob:cash", "USD", "1")
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a full queue must not make callers wait"
    );
    overloaded.expect(503);
    assert_eq!(overloaded.code(), "overloaded");
    assert_eq!(overloaded.header("retry-after"), Some("1"));
    block.release().await;
    for t in tasks {
        t.await.unwrap().expect(201);
    }
    // The refused request was not recorded: retried, it executes.
    ledger
        .transfer("one-too-many", "alice:cash", "bob:cash", "USD", "1")
        .await
        .expect(201);
    assert_eq!(ledger.balance("bob:cash", "USD").await, "5.00");
    Arc::try_unwrap(ledger).ok().unwrap().finish().await;
}

#[tokio::test]
async fn a_failed_commit_applies_nothing_and_the_writer_recovers() {
    let ledger = Arc::new(TestLedger::start().await);
    ledger.market().await;
    ledger
        .transfer("fund", "world:bank", "alice:cash", "USD", "100")
        .await
        .expect(201);
    let events = ledger.event_count().await;

    // Make any batch holding a posting of 13.13 fail inside PostgreSQL, as its events are
    // appended.
    let mut conn = ledger.sql().await;
    sqlx::raw_sql(
        "CREATE FUNCTION fail_1313() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN IF NEW.payload::text LIKE '%\"13.13\"%' THEN RAISE EXCEPTION 'injected failure'; END IF; RETURN NEW; END $$;
         CREATE TRIGGER fail_1313 BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION fail_1313();",
    )
    .execute(&mut conn)
    .await
    .unwrap();

    let block = WriterBlock::hold(&ledger).await;
    // The writer takes the primer alone and waits on the lock; the next two queue behind it and
    // are decided together in the following batch.
    let primer = {
        let ledger = ledger.clone();
        tokio::spawn(async move {
            ledger
                .transfer("primer", "alice:cash", "bob:cash", "USD", "2")
                .await
        })
    };
    settle().await;
    let poisoned = {
        let ledger = ledger.clone();
        tokio::spawn(async move {
            ledger
                .transfer("poisoned", "alice:cash", "bob:cash", "USD", "13.13")
                .await
        })
    };
    let innocent = {
        let ledger = ledger.clone();
        tokio::spawn(async move {
            ledger
                .transfer("innocent", "alice:cash", "bob:cash", "USD", "1")
                .await
        })
    };
    settle().await;
    block.release().await;
    primer.await.unwrap().expect(201);
    let events = events + 1;
    for answer in [poisoned.await.unwrap(), innocent.await.unwrap()] {
        answer.expect(503);
        assert_eq!(answer.code(), "commit_failed");
        assert_eq!(answer.header("retry-after"), Some("1"));
    }
    assert_eq!(ledger.event_count().await, events);
    assert_eq!(ledger.balance("alice:cash", "USD").await, "98.00");

    // The writer reloaded its state: the uncommitted decisions are gone, retries succeed.
    sqlx::raw_sql("DROP TRIGGER fail_1313 ON events")
        .execute(&mut conn)
        .await
        .unwrap();
    let mut recovered = None;
    for _ in 0..50 {
        let a = ledger
            .transfer("innocent", "alice:cash", "bob:cash", "USD", "1")
            .await;
        if a.status == 201 {
            recovered = Some(a);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let recovered = recovered.expect("the writer recovers");
    assert_eq!(recovered.position(), events + 1, "no gap in positions");
    ledger
        .transfer("poisoned", "alice:cash", "bob:cash", "USD", "13.13")
        .await
        .expect(201);
    assert_eq!(ledger.balance("alice:cash", "USD").await, "83.87");
    Arc::try_unwrap(ledger).ok().unwrap().finish().await;
}

#[tokio::test]
async fn a_restart_keeps_data_and_idempotency_keys() {
    let mut ledger = TestLedger::start().await;
    ledger.market().await;
    let funded = ledger
        .transfer("fund", "world:bank", "alice:cash", "USD", "10")
        .await;
    funded.expect(201);
    let refused = ledger
        .transfer("over", "alice:cash", "bob:cash", "USD", "11")
        .await;
    refused.expect(422);

    ledger.restart().await;
    assert_eq!(ledger.balance("alice:cash", "USD").await, "10.00");
    let replayed = ledger
        .transfer("fund", "world:bank", "alice:cash", "USD", "10")
        .await;
    assert_eq!(replayed.header("idempotent-replayed"), Some("true"));
    assert_eq!(replayed.text, funded.text);
    let replayed_refusal = ledger
        .transfer("over", "alice:cash", "bob:cash", "USD", "11")
        .await;
    assert_eq!(replayed_refusal.text, refused.text);
    // The state was reloaded: the balance rule still holds and positions continue without a gap.
    ledger
        .transfer("over-2", "alice:cash", "bob:cash", "USD", "11")
        .await
        .expect(422);
    let next = ledger
        .transfer("pay", "alice:cash", "bob:cash", "USD", "10")
        .await;
    next.expect(201);
    assert_eq!(next.position(), funded.position() + 1);
    ledger.finish().await;
}

#[tokio::test]
async fn reads_wait_for_min_position_within_a_bound() {
    let ledger = TestLedger::start_with(|c| c.min_position_wait_ms = 200).await;
    ledger.market().await;
    let write = ledger
        .transfer("fund", "world:bank", "alice:cash", "USD", "10")
        .await;
    let p = write.position();
    let read = ledger
        .get(&format!("/v1/accounts/alice:cash?min_position={p}"))
        .await;
    read.expect(200);
    assert!(read.position() >= p);
    assert_eq!(read.body["balances"][0]["balance"], "10.00");
    for path in [
        "/v1/assets",
        "/v1/events",
        "/v1/accounts",
        "/v1/accounts/alice:cash/history",
    ] {
        let sep = if path.contains('?') { '&' } else { '?' };
        let ahead = ledger
            .get(&format!("{path}{sep}min_position={}", p + 1000))
            .await;
        ahead.expect(409);
        assert_eq!(ahead.code(), "position_not_reached");
    }
    ledger.finish().await;
}

#[tokio::test]
async fn two_hundred_clients_between_a_hundred_accounts_conserve_money() {
    let ledger = Arc::new(TestLedger::start().await);
    ledger.define_asset("USD", 2).await.expect(201);
    ledger.open_account("world:bank", true).await.expect(201);
    for i in 0..100 {
        ledger
            .open_account(&format!("user:{i}"), false)
            .await
            .expect(201);
        ledger
            .transfer(
                &format!("fund-{i}"),
                "world:bank",
                &format!("user:{i}"),
                "USD",
                "50",
            )
            .await
            .expect(201);
    }
    let setup_events = ledger.event_count().await;

    const CLIENTS: u64 = 200;
    const TRANSFERS_PER_CLIENT: u64 = 15;
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let ledger = ledger.clone();
            tokio::spawn(async move {
                let mut accepted = 0u64;
                let mut refused = 0u64;
                for n in 0..TRANSFERS_PER_CLIENT {
                    // A cheap deterministic spread over the accounts and amounts.
                    let x = client * 7919 + n * 104_729;
                    let from = x % 100;
                    let to = (from + 1 + (x / 100) % 99) % 100;
                    let amount = format!("{}.{:02}", 1 + x % 20, x % 100);
                    let a = ledger
                        .transfer(
                            &format!("c{client}-{n}"),
                            &format!("user:{from}"),
                            &format!("user:{to}"),
                            "USD",
                            &amount,
                        )
                        .await;
                    match a.status {
                        201 => accepted += 1,
                        422 => {
                            assert_eq!(a.code(), "insufficient_funds");
                            refused += 1;
                        }
                        other => panic!("unexpected {other}: {}", a.text),
                    }
                }
                (accepted, refused)
            })
        })
        .collect();
    let (mut accepted, mut refused) = (0, 0);
    for t in tasks {
        let (a, r) = t.await.unwrap();
        accepted += a;
        refused += r;
    }
    assert_eq!(accepted + refused, CLIENTS * TRANSFERS_PER_CLIENT);
    assert!(
        accepted > 0 && refused > 0,
        "accepted {accepted}, refused {refused}"
    );
    assert_eq!(ledger.event_count().await, setup_events + accepted as i64);
    for (asset, sum) in ledger.balance_sums().await {
        assert!(sum.is_zero(), "{asset} sums to {sum}");
    }
    // Every balance equals the sum of its postings, and none went negative. The postings are an
    // asynchronous projection, which under load waits for a fuller page: a history read waits
    // until it reflects every write so far (a read follows the writes), then they are all there.
    ledger
        .get("/v1/accounts/user:0/history?limit=1")
        .await
        .expect(200);
    let mut conn = ledger.sql().await;
    let mismatched: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM balances b
         WHERE b.balance <> (SELECT sum(p.amount) FROM postings p WHERE p.account_id = b.account_id AND p.asset = b.asset)
            OR (b.balance < 0 AND b.account_id IN (SELECT id FROM accounts WHERE NOT allow_negative))",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(mismatched, 0);
    Arc::try_unwrap(ledger).ok().unwrap().finish().await;
}
