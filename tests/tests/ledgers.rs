//! Many ledgers in one deployment: each a book of its own (accounts, positions, chain,
//! checkpoints, idempotency keys, roll-ups), keys limited to ledgers, and a database written
//! before there were many ledgers upgrading into ledger `default` with every hash kept.

use ledger_tests::serde_json::{json, Value};
use ledger_tests::{Answer, TestLedger};
use reqwest::Method;

async fn create_ledger(ledger: &TestLedger, name: &str) -> Answer {
    let answer = ledger
        .post(
            "/v1/ledgers",
            &format!("ledger-{name}"),
            &json!({"name": name}),
        )
        .await;
    answer
}

/// The same market in a ledger: USD, world:bank (may go negative), alice:cash and bob:cash.
async fn open_market(ledger: &TestLedger, prefix: &str) {
    let post = |path: &'static str, key: String, body: Value| async move {
        ledger
            .post(&format!("{prefix}{path}"), &key, &body)
            .await
            .expect(201);
    };
    post("/assets", "usd".into(), json!({"code": "USD", "scale": 2})).await;
    for (code, negative) in [
        ("world:bank", true),
        ("alice:cash", false),
        ("bob:cash", false),
    ] {
        post(
            "/accounts",
            format!("open-{code}"),
            json!({"code": code, "allow_negative": negative}),
        )
        .await;
    }
}

async fn pay(
    ledger: &TestLedger,
    prefix: &str,
    key: &str,
    from: &str,
    to: &str,
    amount: &str,
) -> Answer {
    ledger
        .post(
            &format!("{prefix}/transfers"),
            key,
            &json!({"source": from, "destination": to, "asset": "USD", "amount": amount}),
        )
        .await
}

async fn balance(ledger: &TestLedger, prefix: &str, account: &str) -> String {
    let answer = ledger.get(&format!("{prefix}/accounts/{account}")).await;
    answer.expect(200);
    answer.body["balances"][0]["balance"]
        .as_str()
        .unwrap_or("0")
        .to_owned()
}

#[tokio::test]
async fn two_ledgers_with_the_same_codes_keep_books_of_their_own() {
    let ledger = TestLedger::start().await;
    create_ledger(&ledger, "fund-a").await.expect(201);
    create_ledger(&ledger, "fund-b").await.expect(201);
    let (a, b) = ("/v1/ledgers/fund-a", "/v1/ledgers/fund-b");
    // The same idempotency keys and codes in both: each ledger has its own.
    open_market(&ledger, a).await;
    open_market(&ledger, b).await;
    pay(&ledger, a, "fund", "world:bank", "alice:cash", "100.00")
        .await
        .expect(201);
    let in_b = pay(&ledger, b, "fund", "world:bank", "alice:cash", "7.00").await;
    in_b.expect(201);
    assert_eq!(in_b.position(), 5, "each ledger's positions start at 1");
    pay(&ledger, a, "pay", "alice:cash", "bob:cash", "30.00")
        .await
        .expect(201);

    assert_eq!(balance(&ledger, a, "alice:cash").await, "70.00");
    assert_eq!(balance(&ledger, a, "bob:cash").await, "30.00");
    assert_eq!(balance(&ledger, b, "alice:cash").await, "7.00");
    assert_eq!(balance(&ledger, b, "bob:cash").await, "0");
    // A refusal in one ledger is about that ledger's balance.
    let refused = pay(&ledger, b, "too-much", "alice:cash", "bob:cash", "8.00").await;
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert_eq!(refused.code(), "insufficient_funds");

    // Histories, roll-ups and events are per ledger.
    let history = ledger
        .get(&format!("{a}/accounts/alice:cash/history?asset=USD"))
        .await;
    history.expect(200);
    assert_eq!(history.body["items"].as_array().map(Vec::len), Some(2));
    let history = ledger
        .get(&format!("{b}/accounts/alice:cash/history?asset=USD"))
        .await;
    assert_eq!(history.body["items"].as_array().map(Vec::len), Some(1));
    let rollup = ledger
        .get(&format!("{a}/balances?prefix=alice&min_position=6"))
        .await;
    rollup.expect(200);
    assert!(rollup.text.contains("70.00"), "{}", rollup.text);
    let events_a = ledger.get(&format!("{a}/events?after=0&limit=100")).await;
    let events_b = ledger.get(&format!("{b}/events?after=0&limit=100")).await;
    assert_eq!(events_a.body["items"].as_array().map(Vec::len), Some(6));
    assert_eq!(events_b.body["items"].as_array().map(Vec::len), Some(5));
    assert_eq!(events_a.body["items"][0]["position"], 1);
    assert_eq!(events_b.body["items"][0]["position"], 1);
    // The same command at the same position in both, but not the same event: chains of their own.
    assert_ne!(
        events_a.body["items"][0]["hash"],
        events_b.body["items"][0]["hash"]
    );
    // Ledger `default` saw none of it.
    let default = ledger.get("/v1/events?after=0").await;
    assert_eq!(default.body["items"].as_array().map(Vec::len), Some(0));
    let default = ledger.get("/v1/ledgers/default/events?after=0").await;
    assert_eq!(default.body["items"].as_array().map(Vec::len), Some(0));

    // Each chain verifies; each checkpoint names its ledger, and signs the name.
    for (prefix, name, head) in [(a, "fund-a", 6), (b, "fund-b", 5)] {
        let verified = ledger.get(&format!("{prefix}/audit/verify")).await;
        verified.expect(200);
        assert_eq!(verified.body["intact"], true, "{}", verified.text);
        assert_eq!(verified.body["head_position"], head);
        let checkpoint = ledger.get(&format!("{prefix}/audit/checkpoint")).await;
        checkpoint.expect(200);
        assert_eq!(checkpoint.body["ledger"], name);
        assert_eq!(checkpoint.body["position"], head);
        let detail = ledger.get(&format!("/v1/ledgers/{name}")).await;
        detail.expect(200);
        assert_eq!(detail.body["head_position"], head);
        assert_eq!(detail.body["head_hash"], checkpoint.body["head_hash"]);
        assert_eq!(detail.body["accounts"], 3);
    }
    let a_checkpoint = ledger.get(&format!("{a}/audit/checkpoint")).await;
    assert_checkpoint_signed_for(&ledger, &a_checkpoint.body, "fund-a").await;
    ledger.finish().await;
}

/// The checkpoint's signature holds for its own ledger's name and for no other.
async fn assert_checkpoint_signed_for(ledger: &TestLedger, checkpoint: &Value, name: &str) {
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};
    let key = ledger.get("/v1/audit/public-key").await;
    let public: [u8; 32] = hex::decode(key.body["public_key"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let signature: [u8; 64] = hex::decode(checkpoint["signature"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let message = |ledger: &str| {
        format!(
            "ledger:checkpoint:v2\n{ledger}\n{}\n{}\n{}",
            checkpoint["position"],
            checkpoint["head_hash"].as_str().unwrap(),
            checkpoint["recorded_at"].as_str().unwrap()
        )
    };
    let key = VerifyingKey::from_bytes(&public).unwrap();
    let signature = Signature::from_bytes(&signature);
    key.verify(message(name).as_bytes(), &signature)
        .expect("signed for its ledger");
    assert!(key
        .verify(message("default").as_bytes(), &signature)
        .is_err());
}

#[tokio::test]
async fn ledgers_are_created_once_named_plainly_and_listed_in_pages() {
    let ledger = TestLedger::start().await;
    let created = ledger
        .post(
            "/v1/ledgers",
            "create-x",
            &json!({"name": "x-1", "metadata": {"entity": "UK Ltd", "n": 1.50}}),
        )
        .await;
    created.expect(201);
    assert_eq!(created.body["name"], "x-1");
    assert_eq!(
        created.body["metadata"],
        json!({"entity": "UK Ltd", "n": 1.50})
    );
    // A retry gets the same answer; the same key for something else is refused; the same name
    // under another key exists already.
    let again = ledger
        .post(
            "/v1/ledgers",
            "create-x",
            &json!({"name": "x-1", "metadata": {"entity": "UK Ltd", "n": 1.50}}),
        )
        .await;
    again.expect(201);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body, created.body);
    let reused = ledger
        .post("/v1/ledgers", "create-x", &json!({"name": "x-2"}))
        .await;
    assert_eq!(reused.code(), "idempotency_key_reused", "{}", reused.text);
    let exists = ledger
        .post("/v1/ledgers", "other", &json!({"name": "x-1"}))
        .await;
    assert_eq!(exists.status, 409, "{}", exists.text);
    assert_eq!(exists.code(), "ledger_exists");
    for (i, bad) in ["", "X", "-a", "a b", "a/b", "é", &"a".repeat(64)]
        .iter()
        .enumerate()
    {
        let answer = ledger
            .post("/v1/ledgers", &format!("bad-{i}"), &json!({"name": bad}))
            .await;
        assert_eq!(answer.status, 422, "{bad:?}: {}", answer.text);
    }
    let missing = ledger
        .post("/v1/ledgers", "no-key", &json!({"name": "y"}))
        .await;
    missing.expect(201);
    // Unknown ledgers are 404 on every kind of route.
    for path in [
        "/v1/ledgers/nope",
        "/v1/ledgers/nope/accounts",
        "/v1/ledgers/nope/events",
        "/v1/ledgers/NOPE/assets",
    ] {
        let answer = ledger.get(path).await;
        assert_eq!(answer.status, 404, "{path}: {}", answer.text);
        assert_eq!(answer.code(), "ledger_not_found", "{path}");
    }
    let write = pay(&ledger, "/v1/ledgers/nope", "k", "a:b", "c:d", "1").await;
    assert_eq!(write.code(), "ledger_not_found");
    for name in ["a", "b", "c"] {
        create_ledger(&ledger, name).await.expect(201);
    }
    // Pages by name: default, then a, b, c, x-1, y.
    let mut names = Vec::new();
    let mut after = String::new();
    loop {
        let page = ledger.get(&format!("/v1/ledgers?limit=2{after}")).await;
        page.expect(200);
        for item in page.body["items"].as_array().unwrap() {
            names.push(item["name"].as_str().unwrap().to_owned());
        }
        match page.body["next_after"].as_str() {
            Some(next) => after = format!("&after={next}"),
            None => break,
        }
    }
    assert_eq!(names, ["a", "b", "c", "default", "x-1", "y"]);
    ledger.finish().await;
}

#[tokio::test]
async fn a_key_limited_to_one_ledger_finds_no_other() {
    let ledger = TestLedger::start_secured().await;
    for name in ["a", "b"] {
        create_ledger(&ledger, name).await.expect(201);
        open_market(&ledger, &format!("/v1/ledgers/{name}")).await;
    }
    let created = ledger
        .post(
            "/v1/admin/keys",
            "k",
            &json!({"name": "a only", "scopes": ["admin"], "ledgers": ["a"]}),
        )
        .await;
    created.expect(201);
    assert_eq!(created.body["ledgers"], json!(["a"]));
    let secret = created.body["secret"].as_str().unwrap().to_owned();
    let call = |method: Method, path: String, body: Option<Value>| {
        let secret = secret.clone();
        let ledger = &ledger;
        async move {
            ledger
                .call_as(Some(&secret), method, &path, Some("key-1"), body.as_ref())
                .await
        }
    };
    // Its own ledger: everything.
    let transfer = json!({"source": "world:bank", "destination": "alice:cash", "asset": "USD", "amount": "1.00"});
    call(
        Method::POST,
        "/v1/ledgers/a/transfers".into(),
        Some(transfer.clone()),
    )
    .await
    .expect(201);
    call(
        Method::GET,
        "/v1/ledgers/a/accounts/alice:cash".into(),
        None,
    )
    .await
    .expect(200);
    // Any other ledger, `default` included, as if it did not exist: reads, writes, events, the
    // stream, audit and admin.
    for ledger_path in ["/v1/ledgers/b", "/v1", "/v1/ledgers/default"] {
        for (method, path, body) in [
            (Method::GET, "/accounts/alice:cash", None),
            (Method::GET, "/accounts", None),
            (Method::GET, "/balances?prefix=alice", None),
            (Method::POST, "/transfers", Some(transfer.clone())),
            (Method::GET, "/events?after=0", None),
            (Method::GET, "/events/stream", None),
            (Method::GET, "/audit/verify", None),
            (Method::GET, "/audit/checkpoint", None),
            (
                Method::PATCH,
                "/accounts/alice:cash/limits",
                Some(json!({"asset": "USD", "min_balance": "-5"})),
            ),
        ] {
            let answer = call(method.clone(), format!("{ledger_path}{path}"), body).await;
            assert_eq!(
                answer.status, 404,
                "{method} {ledger_path}{path}: {}",
                answer.text
            );
            assert_eq!(answer.code(), "ledger_not_found");
        }
    }
    for name in ["b", "default", "nope"] {
        let answer = call(Method::GET, format!("/v1/ledgers/{name}"), None).await;
        assert_eq!(answer.status, 404, "{}", answer.text);
    }
    // It sees only its ledger, and cannot make itself a key for the others.
    let listed = call(Method::GET, "/v1/ledgers".into(), None).await;
    listed.expect(200);
    assert_eq!(listed.body["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(listed.body["items"][0]["name"], "a");
    for (method, path, body) in [
        (
            Method::POST,
            "/v1/admin/keys",
            Some(json!({"name": "all", "scopes": ["admin"]})),
        ),
        (Method::GET, "/v1/admin/keys", None),
        (Method::POST, "/v1/ledgers", Some(json!({"name": "c"}))),
    ] {
        let answer = call(method, path.into(), body).await;
        assert_eq!(answer.status, 403, "{path}: {}", answer.text);
    }
    // A key limited to a ledger that does not exist is refused.
    let answer = ledger
        .post(
            "/v1/admin/keys",
            "k2",
            &json!({"name": "x", "scopes": ["read"], "ledgers": ["nope"]}),
        )
        .await;
    assert_eq!(answer.status, 422, "{}", answer.text);
    // The event records the key that wrote it.
    let events = ledger.get("/v1/ledgers/a/events?after=4").await;
    assert_eq!(
        events.body["items"][0]["metadata"]["api_key_id"],
        created.body["id"]
    );
    ledger.finish().await;
}

#[tokio::test]
async fn a_ledger_replays_exports_and_imports_on_its_own() {
    let mut ledger = TestLedger::start().await;
    for name in ["a", "copy"] {
        create_ledger(&ledger, name).await.expect(201);
    }
    open_market(&ledger, "/v1/ledgers/a").await;
    pay(
        &ledger,
        "/v1/ledgers/a",
        "fund",
        "world:bank",
        "alice:cash",
        "10.00",
    )
    .await
    .expect(201);
    ledger.define_asset("EUR", 2).await.expect(201);
    let head = ledger.get("/v1/ledgers/a").await.body["head_hash"].clone();
    ledger.stop_server().await;

    let database = api::server::Database::open(
        Some(&ledger.database_url),
        std::path::Path::new("unused"),
        &infrastructure::db::PoolConfig::default(),
    )
    .await
    .expect("database");
    let a = database.book_pool(&"a".parse().unwrap()).await.expect("a");
    let report = infrastructure::replay::replay(&a, false, |_, _| {})
        .await
        .expect("replay");
    assert!(report.identical(), "{report:?}");
    assert_eq!(report.events, 5, "ledger a's events only");
    let mut export = Vec::new();
    infrastructure::audit::export(&a, 0, &mut export)
        .await
        .expect("export");
    let copy = database
        .book_pool(&"copy".parse().unwrap())
        .await
        .expect("copy");
    infrastructure::import::import(&copy, std::io::BufReader::new(&export[..]), |_, _| {})
        .await
        .expect("import into an empty ledger");
    let chain = infrastructure::audit::verify_chain(&copy, |_, _| {})
        .await
        .expect("verify");
    assert!(chain.intact());
    assert_eq!(chain.head_position, 5);
    // Ledger `default` is untouched by all of it: its one event is still its own.
    let default = infrastructure::audit::verify_chain(&database.pool, |_, _| {})
        .await
        .unwrap();
    assert_eq!(default.head_position, 1);
    for pool in [a, copy] {
        pool.close().await;
    }
    database.close().await.unwrap();
    ledger.restart().await;
    let copied = ledger.get("/v1/ledgers/copy").await;
    assert_eq!(copied.body["head_hash"], head);
    assert_eq!(
        balance(&ledger, "/v1/ledgers/copy", "alice:cash").await,
        "10.00"
    );
    ledger.finish().await;
}

/// Migrations 0015 and 0014 undone: the schema of every release before there were many
/// ledgers.
const BEFORE_LEDGERS: &str = "
    DROP TABLE webhook_cursors;
    ALTER TABLE webhook_subscriptions DROP COLUMN ledger;
    ALTER TABLE webhook_subscriptions ADD COLUMN cursor BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE webhook_deliveries DROP COLUMN ledger;
    CREATE INDEX webhook_deliveries_by_position ON webhook_deliveries (subscription_id, position);
    DELETE FROM _sqlx_migrations WHERE version = 15;
    DROP FUNCTION ledger_id();
    DROP FUNCTION ledger_writer_lock_key();
    DROP FUNCTION ledger_lock_object();
    DROP TABLE ledger_transfers;
    DROP TABLE ledgers;
    ALTER TABLE api_keys DROP COLUMN ledgers;
    DELETE FROM _sqlx_migrations WHERE version = 14;";

#[tokio::test]
async fn a_database_from_before_ledgers_becomes_ledger_default_with_every_hash_kept() {
    let mut ledger = TestLedger::start().await;
    ledger.market().await;
    ledger
        .transfer("fund", "world:bank", "alice:cash", "USD", "100.00")
        .await
        .expect(201);
    ledger
        .transfer("pay", "alice:cash", "bob:cash", "USD", "12.50")
        .await
        .expect(201);
    let before = ledger.get("/v1/events?after=0&limit=1000").await;
    before.expect(200);
    let alice = ledger.get("/v1/accounts/alice:cash").await;
    // A webhook subscription of then, 2 positions delivered (its receiver never answers).
    let hook = ledger
        .post(
            "/v1/admin/webhooks",
            "hook",
            &json!({"url": "https://receiver.invalid/hook"}),
        )
        .await;
    hook.expect(201);
    let hook = hook.body["id"].as_str().unwrap().to_owned();
    ledger.stop_server().await;
    let mut conn = ledger.sql().await;
    sqlx::raw_sql(BEFORE_LEDGERS)
        .execute(&mut conn)
        .await
        .expect("undo 0015 and 0014");
    sqlx::query("UPDATE webhook_subscriptions SET cursor = 2")
        .execute(&mut conn)
        .await
        .expect("a cursor");
    drop(conn);

    ledger.restart().await;
    let after = ledger.get("/v1/events?after=0&limit=1000").await;
    assert_eq!(
        after.body, before.body,
        "every event, position and hash unchanged"
    );
    let scoped = ledger
        .get("/v1/ledgers/default/events?after=0&limit=1000")
        .await;
    assert_eq!(scoped.body, before.body);
    let verified = ledger.get("/v1/ledgers/default/audit/verify").await;
    assert_eq!(verified.body["intact"], true, "{}", verified.text);
    let head = before.body["items"].as_array().unwrap().len() as i64;
    assert_eq!(verified.body["head_position"], head);
    let again = ledger.get("/v1/ledgers/default/accounts/alice:cash").await;
    assert_eq!(again.body, alice.body);
    let detail = ledger.get("/v1/ledgers/default").await;
    assert_eq!(detail.body["head_position"], head);
    // The subscription follows `default` only, from where it was.
    let hook = ledger.get(&format!("/v1/admin/webhooks/{hook}")).await;
    hook.expect(200);
    assert_eq!(hook.body["ledger"], "default");
    assert_eq!(hook.body["cursor"], 2);
    assert_eq!(hook.body["cursors"], json!({"default": 2}));
    // And it goes on: the next write is the next position of the same chain.
    ledger
        .transfer("pay-2", "alice:cash", "bob:cash", "USD", "1.00")
        .await
        .expect(201);
    let verified = ledger.get("/v1/audit/verify").await;
    assert_eq!(verified.body["intact"], true);
    assert_eq!(verified.body["head_position"], head + 1);
    ledger.finish().await;
}

/// The `ledger_books_open` gauge of `/metrics`.
async fn books_open(ledger: &TestLedger) -> i64 {
    let metrics = ledger.get("/metrics").await;
    metrics
        .text
        .lines()
        .find_map(|l| l.strip_prefix("ledger_books_open "))
        .and_then(|v| v.parse().ok())
        .expect("ledger_books_open")
}

/// Sessions on the test database working on ledger `name`'s book (named `<role>:<ledger>`).
async fn book_sessions(ledger: &TestLedger, name: &str) -> i64 {
    let mut conn = ledger.sql().await;
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND application_name LIKE '%:' || $1",
    )
    .bind(name)
    .fetch_one(&mut conn)
    .await
    .expect("sessions")
}

#[tokio::test]
async fn an_idle_ledger_stops_its_writer_unless_a_hold_of_it_must_expire() {
    let ledger = TestLedger::start_with(|config| config.ledger_idle_stop_ms = 1).await;
    let bound = std::time::Duration::from_secs(30);
    for name in ["quiet", "holding"] {
        create_ledger(&ledger, name).await.expect(201);
        let prefix = format!("/v1/ledgers/{name}");
        open_market(&ledger, &prefix).await;
        pay(
            &ledger,
            &prefix,
            "fund",
            "world:bank",
            "alice:cash",
            "10.00",
        )
        .await
        .expect(201);
    }
    let held = ledger
        .post(
            "/v1/ledgers/holding/transfers",
            "hold",
            &json!({"source": "alice:cash", "destination": "bob:cash", "asset": "USD",
                    "amount": "4.00", "pending": true, "timeout_s": 60}),
        )
        .await;
    held.expect(201);
    assert!(book_sessions(&ledger, "quiet").await > 0);
    // The quiet ledger stops; the one with a hold to expire stays, and expires it on time.
    ledger_tests::eventually(bound, "the quiet ledger's book stops", || async {
        (books_open(&ledger).await == 1).then_some(())
    })
    .await;
    ledger.clock.advance(std::time::Duration::from_secs(61));
    let id = held.body["id"].as_str().unwrap().to_owned();
    ledger_tests::eventually(bound, "the hold expires", || async {
        let answer = ledger
            .get(&format!("/v1/ledgers/holding/transactions/{id}"))
            .await;
        (answer.body["status"] == "expired").then_some(())
    })
    .await;
    ledger_tests::eventually(bound, "then that book stops too", || async {
        (books_open(&ledger).await == 0).then_some(())
    })
    .await;
    for name in ["quiet", "holding"] {
        assert_eq!(
            book_sessions(&ledger, name).await,
            0,
            "{name} keeps no session"
        );
    }
    // A stopped ledger starts again on its next request, and its log goes on where it was.
    let next = pay(
        &ledger,
        "/v1/ledgers/quiet",
        "pay",
        "alice:cash",
        "bob:cash",
        "1.00",
    )
    .await;
    next.expect(201);
    assert_eq!(next.position(), 6);
    let verified = ledger.get("/v1/ledgers/quiet/audit/verify").await;
    assert_eq!(verified.body["intact"], true);
    ledger.finish().await;
}

#[tokio::test]
async fn at_most_so_many_books_run_at_once_and_the_least_recently_used_makes_room() {
    let ledger = TestLedger::start_with(|config| config.ledger_books_open_max = 2).await;
    for name in ["a", "b", "c"] {
        create_ledger(&ledger, name).await.expect(201);
        open_market(&ledger, &format!("/v1/ledgers/{name}")).await;
        assert!(books_open(&ledger).await <= 2);
    }
    assert_eq!(books_open(&ledger).await, 2);
    // `a`, stopped to make room for `c`, opens again (stopping `b`) and goes on where it was.
    let next = pay(
        &ledger,
        "/v1/ledgers/a",
        "fund",
        "world:bank",
        "alice:cash",
        "1.00",
    )
    .await;
    next.expect(201);
    assert_eq!(next.position(), 5);
    assert_eq!(books_open(&ledger).await, 2);
    assert_eq!(book_sessions(&ledger, "b").await, 0, "b keeps no session");
    ledger.finish().await;
}
