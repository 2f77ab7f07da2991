//! The hash chain: every event is chained, `GET /v1/audit/verify` names the first position where
//! an altered, deleted or reordered log breaks, and an independent verifier (Python, standard
//! library only) agrees with the server on an export.

use std::path::PathBuf;
use std::process::Command;

use ledger_tests::serde_json::{json, Value};
use ledger_tests::TestLedger;

async fn activity(ledger: &TestLedger) {
    ledger.market().await; // positions 1..=6
    ledger
        .transfer("fund", "world:bank", "alice:cash", "USD", "5000")
        .await
        .expect(201); // 7
    ledger
        .transfer("fund-bob", "world:bank", "bob:cash", "AAPL", "100")
        .await
        .expect(201); // 8
    ledger
        .post(
            "/v1/trades",
            "trade",
            &json!({"buyer": "alice:cash", "seller": "bob:cash", "instrument": "AAPL", "quantity": "10",
                    "price": "189.50", "currency": "USD",
                    "fees": [{"payer": "alice:cash", "account": "broker:fees", "amount": "1.25"}],
                    "metadata": {"note": "line\nbreak \"quoted\" é"}}),
        )
        .await
        .expect(201); // 9
    ledger
        .transfer("pay", "alice:cash", "bob:cash", "USD", "0.05")
        .await
        .expect(201); // 10
}

/// Runs SQL as the superuser would, with the append-only trigger off.
async fn tamper(ledger: &TestLedger, sql: &str) {
    let mut conn = ledger.sql().await;
    sqlx::raw_sql(&format!(
        "ALTER TABLE events DISABLE TRIGGER events_no_update_or_delete; {sql}; ALTER TABLE events ENABLE TRIGGER events_no_update_or_delete;"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
}

#[tokio::test]
async fn an_untouched_log_verifies_here_and_independently() {
    let ledger = TestLedger::start().await;
    activity(&ledger).await;
    let report = ledger.get("/v1/audit/verify").await;
    report.expect(200);
    assert_eq!(report.body["intact"], true);
    assert_eq!(report.body["events_verified"], 10);
    assert_eq!(report.body["head_position"], 10);
    let events = ledger.get("/v1/events?after=9").await;
    assert_eq!(events.body["items"][0]["hash"], report.body["head_hash"]);

    let path = ledger.export().await;
    let (ok, independent) = ledger_tests::python_verify(&path);
    assert!(ok, "{independent}");
    assert_eq!(independent["head_hash"], report.body["head_hash"]);
    assert_eq!(independent["head_position"], 10);
    // Every figure it recomputed from the events is the one the ledger serves.
    ledger.assert_verifier_agrees(&independent).await;
    let _ = std::fs::remove_file(path);
    ledger.finish().await;
}

/// A transaction's status as the API reports it.
async fn status_of(ledger: &TestLedger, id: &str) -> String {
    let answer = ledger.get(&format!("/v1/transactions/{id}")).await;
    answer.expect(200);
    answer.body["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// POSTs and returns the created transaction's id.
async fn created(ledger: &TestLedger, path: &str, key: &str, body: Value) -> String {
    let answer = ledger.post(path, key, &body).await;
    answer.expect(201);
    let id = answer.body["id"]
        .as_str()
        .or(answer.body["pending_id"].as_str());
    id.unwrap_or_default().to_owned()
}

/// Every kind of event that touches balances or accounts: trades with fees (posted, and pending
/// then posted), holds posted in part (one with a posting of zero left out), voided, expired and
/// still pending, reversals of a trade and of a partly posted hold, limits, and status changes.
async fn every_kind_of_event(ledger: &TestLedger) {
    ledger.market().await;
    for (code, allow_negative) in [("carol:cash", false), ("dave:cash", false)] {
        ledger.open_account(code, allow_negative).await.expect(201);
    }
    let fund = |key: &'static str, to: &'static str, asset: &'static str, amount: &'static str| {
        ledger.transfer(key, "world:bank", to, asset, amount)
    };
    fund("fund-1", "alice:cash", "USD", "1000.00")
        .await
        .expect(201);
    fund("fund-2", "bob:cash", "AAPL", "100").await.expect(201);
    let trade = json!({"buyer": "alice:cash", "seller": "bob:cash", "instrument": "AAPL",
        "quantity": "10", "price": "10.50", "currency": "USD",
        "fees": [{"payer": "alice:cash", "account": "broker:fees", "amount": "1.25"},
                 {"payer": "bob:cash", "account": "broker:fees", "asset": "AAPL", "amount": "1"}]});
    let traded = created(ledger, "/v1/trades", "trade-1", trade.clone()).await;
    let mut pending_trade = trade;
    pending_trade["pending"] = json!(true);
    let held_trade = created(ledger, "/v1/trades", "trade-2", pending_trade).await;
    created(
        ledger,
        &format!("/v1/transactions/{held_trade}/post"),
        "post-trade",
        json!({}),
    )
    .await;

    let hold = |key: &'static str, postings: Value, extra: Value| {
        let mut body = json!({"postings": postings, "pending": true});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        created(ledger, "/v1/transactions", key, body)
    };
    let usd = |from: &str, to: &str, amount: &str| json!({"source": from, "destination": to, "asset": "USD", "amount": amount});
    let part = hold(
        "hold-part",
        json!([usd("alice:cash", "bob:cash", "80.00")]),
        json!({}),
    )
    .await;
    created(
        ledger,
        &format!("/v1/transactions/{part}/post"),
        "post-part",
        json!({"amounts": ["60.00"]}),
    )
    .await;
    let two = hold(
        "hold-two",
        json!([
            usd("alice:cash", "bob:cash", "10.00"),
            usd("alice:cash", "carol:cash", "5.00")
        ]),
        json!({}),
    )
    .await;
    created(
        ledger,
        &format!("/v1/transactions/{two}/post"),
        "post-two",
        json!({"amounts": ["0", "2.50"]}),
    )
    .await;
    let voided = hold(
        "hold-void",
        json!([usd("alice:cash", "bob:cash", "20.00")]),
        json!({}),
    )
    .await;
    created(
        ledger,
        &format!("/v1/transactions/{voided}/void"),
        "void",
        json!({}),
    )
    .await;
    let expiring = hold(
        "hold-expire",
        json!([usd("alice:cash", "dave:cash", "7.00")]),
        json!({"timeout_s": 60}),
    )
    .await;
    hold(
        "hold-open",
        json!([
            usd("alice:cash", "bob:cash", "33.00"),
            usd("bob:cash", "carol:cash", "4.00")
        ]),
        json!({}),
    )
    .await;

    created(
        ledger,
        &format!("/v1/transactions/{traded}/reverse"),
        "reverse-trade",
        json!({}),
    )
    .await;
    created(
        ledger,
        &format!("/v1/transactions/{part}/reverse"),
        "reverse-part",
        json!({}),
    )
    .await;

    // A credit line lets carol go below zero; a ceiling bounds dave.
    ledger
        .patch(
            "/v1/accounts/carol:cash/limits",
            "limit-1",
            &json!({"asset": "USD", "min_balance": "-100.00"}),
        )
        .await
        .expect(201);
    ledger
        .patch(
            "/v1/accounts/dave:cash/limits",
            "limit-2",
            &json!({"asset": "AAPL", "max_balance": "50"}),
        )
        .await
        .expect(201);
    ledger
        .transfer("carol-pays", "carol:cash", "bob:cash", "USD", "40.00")
        .await
        .expect(201);
    for (path, key) in [
        ("/v1/accounts/bob:cash/freeze", "freeze-bob"),
        ("/v1/accounts/bob:cash/unfreeze", "unfreeze-bob"),
        ("/v1/accounts/carol:cash/freeze", "freeze-carol"),
        ("/v1/accounts/broker:fees/freeze", "freeze-fees"),
    ] {
        ledger.post(path, key, &json!({})).await.expect(201);
    }
    ledger.open_account("erin:cash", false).await.expect(201);
    ledger
        .post("/v1/accounts/erin:cash/close", "close-erin", &json!({}))
        .await
        .expect(201);

    ledger.clock.advance(std::time::Duration::from_secs(61));
    ledger_tests::eventually(
        std::time::Duration::from_secs(10),
        "the hold expires",
        || async { (status_of(ledger, &expiring).await == "expired").then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn the_independent_verifier_computes_every_figure_the_server_shows_from_the_export_alone() {
    let ledger = TestLedger::start().await;
    every_kind_of_event(&ledger).await;
    let report = ledger.get("/v1/audit/verify").await;
    let path = ledger.export().await;
    let (ok, independent) = ledger_tests::python_verify(&path);
    assert!(ok, "{independent}");
    assert_eq!(independent["head_hash"], report.body["head_hash"]);
    ledger.assert_verifier_agrees(&independent).await;
    // The log held what the scenario meant it to: reservations still open, a frozen and a
    // closed account, an account below zero.
    let figures = &independent["balances"];
    assert_eq!(
        figures["alice:cash USD"]["pending_debits"], "33.00",
        "{figures}"
    );
    assert_eq!(
        figures["carol:cash USD"]["pending_credits"], "4.00",
        "{figures}"
    );
    assert_eq!(figures["carol:cash USD"]["posted"], "-37.50", "{figures}");
    assert_eq!(independent["accounts"]["erin:cash"]["status"], "closed");
    assert_eq!(independent["accounts"]["carol:cash"]["status"], "frozen");
    let _ = std::fs::remove_file(path);
    ledger.finish().await;
}

#[tokio::test]
async fn altered_deleted_and_reordered_events_are_named() {
    let ledger = TestLedger::start().await;
    activity(&ledger).await;
    let broken_at = |report: &ledger_tests::Answer| report.body["first_broken_position"].as_i64();

    // An altered amount.
    tamper(&ledger, "UPDATE events SET payload = replace(payload, '\"amount\":\"5000.00\"', '\"amount\":\"5000000.00\"') WHERE position = 7").await;
    let report = ledger.get("/v1/audit/verify").await;
    assert_eq!(report.body["intact"], false);
    assert_eq!(broken_at(&report), Some(7));
    let path = ledger.export().await;
    let (ok, independent) = ledger_tests::python_verify(&path);
    assert!(!ok);
    assert_eq!(independent["first_broken_position"], 7);
    let _ = std::fs::remove_file(path);
    tamper(&ledger, "UPDATE events SET payload = replace(payload, '\"amount\":\"5000000.00\"', '\"amount\":\"5000.00\"') WHERE position = 7").await;
    assert_eq!(
        ledger.get("/v1/audit/verify").await.body["intact"],
        true,
        "restored"
    );

    // The same content spelled otherwise (a space after each colon) is not what the ledger wrote.
    tamper(
        &ledger,
        "UPDATE events SET payload = replace(payload, '\":', '\": ') WHERE position = 7",
    )
    .await;
    let report = ledger.get("/v1/audit/verify").await;
    assert_eq!(broken_at(&report), Some(7));
    assert!(
        report.body["problem"]
            .as_str()
            .is_some_and(|p| p.contains("is not canonical JSON")),
        "{}",
        report.text
    );
    tamper(
        &ledger,
        "UPDATE events SET payload = replace(payload, '\": ', '\":') WHERE position = 7",
    )
    .await;

    // An altered timestamp or metadata breaks it too.
    tamper(
        &ledger,
        "UPDATE events SET metadata = replace(metadata, '\"idempotency_key\":\"trade\"', '\"idempotency_key\":\"other\"') WHERE position = 9",
    )
    .await;
    assert_eq!(broken_at(&ledger.get("/v1/audit/verify").await), Some(9));
    tamper(
        &ledger,
        "UPDATE events SET metadata = replace(metadata, '\"idempotency_key\":\"other\"', '\"idempotency_key\":\"trade\"') WHERE position = 9",
    )
    .await;

    // Two events swapped.
    tamper(
        &ledger,
        "UPDATE events SET position = position + 1000 WHERE position IN (7, 8);
         UPDATE events SET position = 8 WHERE position = 1007;
         UPDATE events SET position = 7 WHERE position = 1008",
    )
    .await;
    assert_eq!(broken_at(&ledger.get("/v1/audit/verify").await), Some(7));
    tamper(
        &ledger,
        "UPDATE events SET position = position + 1000 WHERE position IN (7, 8);
         UPDATE events SET position = 8 WHERE position = 1007;
         UPDATE events SET position = 7 WHERE position = 1008",
    )
    .await;
    assert_eq!(
        ledger.get("/v1/audit/verify").await.body["intact"],
        true,
        "restored"
    );

    // A deleted event (the idempotency record pointing at it goes first).
    tamper(
        &ledger,
        "DELETE FROM idempotency_keys WHERE position = 5; DELETE FROM events WHERE position = 5",
    )
    .await;
    let report = ledger.get("/v1/audit/verify").await;
    assert_eq!(broken_at(&report), Some(5));
    assert!(report.body["problem"].as_str().unwrap().contains("missing"));
    ledger.finish().await;
}

/// Rewrites position 7 as a superuser would, and recomputes every later hash so that the chain
/// is consistent with itself again.
async fn rewrite_history_from_7(ledger: &TestLedger) {
    rewrite_history(ledger, "UPDATE events SET payload = replace(payload, '\"amount\":\"5000.00\"', '\"amount\":\"4000.00\"') WHERE position = 7").await;
}

/// Runs `sql` on the events as a superuser would, and recomputes every hash so that the chain is
/// consistent with itself again.
async fn rewrite_history(ledger: &TestLedger, sql: &str) {
    let mut conn = ledger.sql().await;
    sqlx::raw_sql("ALTER TABLE events DISABLE TRIGGER events_no_update_or_delete")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query(sql).execute(&mut conn).await.unwrap();
    type Row = (
        i64,
        uuid::Uuid,
        String,
        i16,
        String,
        String,
        chrono::DateTime<chrono::Utc>,
        Vec<u8>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT position, event_id, event_type, schema_version, payload, metadata, recorded_at, hash FROM events ORDER BY position",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let mut previous = domain::chain::genesis();
    for (position, event_id, event_type, schema_version, payload, metadata, recorded_at, _) in rows
    {
        let at = infrastructure::audit::format_recorded_at(recorded_at);
        previous = domain::chain::chain(
            &previous,
            &domain::chain::ChainedEvent {
                position,
                event_id,
                event_type: &event_type,
                schema_version,
                recorded_at: &at,
                payload: &payload,
                metadata: &metadata,
            },
        );
        sqlx::query("UPDATE events SET hash = $1 WHERE position = $2")
            .bind(previous.as_slice())
            .bind(position)
            .execute(&mut conn)
            .await
            .unwrap();
    }
    sqlx::raw_sql("ALTER TABLE events ENABLE TRIGGER events_no_update_or_delete")
        .execute(&mut conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn signed_checkpoints_catch_a_history_rewritten_with_a_recomputed_chain() {
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};
    let ledger = TestLedger::start().await;
    ledger.market().await;
    ledger
        .transfer("fund", "world:bank", "alice:cash", "USD", "5000")
        .await
        .expect(201); // 7
    ledger
        .transfer("fund-bob", "world:bank", "bob:cash", "AAPL", "100")
        .await
        .expect(201); // 8

    let earlier = ledger.get("/v1/audit/checkpoint").await;
    earlier.expect(200);
    assert_eq!(earlier.body["position"], 8);
    // The signature is the ledger's, over the documented message.
    let key = ledger.get("/v1/audit/public-key").await;
    assert_eq!(key.body["algorithm"], "Ed25519");
    assert_eq!(key.body["public_key"], earlier.body["public_key"]);
    let public: [u8; 32] = hex::decode(key.body["public_key"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let signature: [u8; 64] = hex::decode(earlier.body["signature"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let message = format!(
        "ledger:checkpoint:v2\ndefault\n{}\n{}\n{}",
        earlier.body["position"],
        earlier.body["head_hash"].as_str().unwrap(),
        earlier.body["recorded_at"].as_str().unwrap()
    );
    VerifyingKey::from_bytes(&public)
        .unwrap()
        .verify(message.as_bytes(), &Signature::from_bytes(&signature))
        .expect("the checkpoint's signature verifies");

    ledger
        .transfer("pay", "alice:cash", "bob:cash", "USD", "1")
        .await
        .expect(201); // 9
    ledger
        .transfer("pay-2", "alice:cash", "bob:cash", "USD", "1")
        .await
        .expect(201); // 10
    let later = ledger.get("/v1/audit/checkpoint").await;
    assert_eq!(later.body["position"], 10);
    let check = |from_hash: &Value, to_hash: &Value| {
        format!(
            "/v1/audit/consistency?from=8&from_hash={}&to=10&to_hash={}",
            from_hash.as_str().unwrap(),
            to_hash.as_str().unwrap()
        )
    };
    let consistent = ledger
        .get(&check(&earlier.body["head_hash"], &later.body["head_hash"]))
        .await;
    consistent.expect(200);
    assert_eq!(consistent.body["consistent"], true, "{}", consistent.text);

    // A superuser rewrites position 7 and recomputes every later hash: the chain agrees with
    // itself, so verify alone cannot tell; the kept checkpoints can, and name the position.
    rewrite_history_from_7(&ledger).await;
    assert_eq!(ledger.get("/v1/audit/verify").await.body["intact"], true);
    let caught = ledger
        .get(&check(&earlier.body["head_hash"], &later.body["head_hash"]))
        .await;
    assert_eq!(caught.body["consistent"], false);
    assert_eq!(caught.body["first_broken_position"], 8);
    let from_genesis = ledger
        .get(&format!(
            "/v1/audit/consistency?from=0&to=10&to_hash={}",
            later.body["head_hash"].as_str().unwrap()
        ))
        .await;
    assert_eq!(from_genesis.body["consistent"], false);
    assert_eq!(from_genesis.body["first_broken_position"], 10);
    // And the independent verifier, given the kept head, refuses the rewritten export.
    let path = ledger.export().await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tools/verify_export.py");
    let status = Command::new("python3")
        .arg(script)
        .arg(&path)
        .arg("--expect-head")
        .arg(later.body["head_hash"].as_str().unwrap())
        .output()
        .unwrap()
        .status;
    assert!(!status.success());
    let _ = std::fs::remove_file(path);

    for (path, code) in [
        ("/v1/audit/consistency?from=5&to=3", "invalid_request"),
        ("/v1/audit/consistency?from=-1", "invalid_request"),
        ("/v1/audit/consistency?from=1&to=1000", "invalid_request"),
        ("/v1/audit/consistency", "invalid_request"),
    ] {
        let a = ledger.get(path).await;
        assert_eq!(a.status, 400, "{path}");
        assert_eq!(a.code(), code);
    }
    ledger.finish().await;
}

/// Every row of the tables an import rebuilds, as text, in a stable order.
async fn table_rows(database_url: &str) -> Vec<(String, String)> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(database_url).await.unwrap();
    let mut rows = Vec::new();
    for table in [
        "events",
        "assets",
        "accounts",
        "transactions",
        "postings",
        "balances",
        "periods",
        "idempotency_keys",
        "projection_head",
    ] {
        let text: String = sqlx::query_scalar(&format!(
            "SELECT COALESCE(string_agg(r, E'\\n' ORDER BY r), '') FROM (SELECT row_to_json(t)::text r FROM {table} t) s"
        ))
        .fetch_one(&mut conn)
        .await
        .unwrap();
        rows.push((table.to_owned(), text));
    }
    rows
}

async fn import(
    pool: &infrastructure::db::PgPool,
    bytes: &[u8],
) -> Result<infrastructure::import::ImportReport, String> {
    infrastructure::import::import(pool, bytes, |_, _| {})
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn export_then_import_gives_the_same_log_projections_and_idempotency() {
    use infrastructure::{db, testing::TestDatabase};
    let ledger = TestLedger::start().await;
    activity(&ledger).await;
    let head = ledger.get("/v1/audit/verify").await.body;
    let path = ledger.export().await;
    let exported = std::fs::read(&path).unwrap();
    let _ = std::fs::remove_file(&path);

    let target = TestDatabase::create().await.unwrap();
    let pool = db::read_pool(
        db::connect_options(target.url()).unwrap(),
        &db::PoolConfig::default(),
    );
    db::migrate(&pool).await.unwrap();

    // Damaged exports are refused, naming the line, and leave the database empty.
    let text = String::from_utf8(exported.clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut altered = lines.clone();
    let cheaper = lines[9].replace("\"0.05\"", "\"0.04\"");
    assert_ne!(cheaper, lines[9]);
    altered[9] = &cheaper;
    let error = import(&pool, altered.join("\n").as_bytes())
        .await
        .unwrap_err();
    assert!(
        error.contains("line 10") && error.contains("hash"),
        "{error}"
    );
    let without_3 = [&lines[..2], &lines[3..]].concat().join("\n");
    let error = import(&pool, without_3.as_bytes()).await.unwrap_err();
    assert!(error.contains("line 3: position 4 where 3"), "{error}");
    let swapped = [lines[0], lines[2], lines[1]].join("\n");
    let error = import(&pool, swapped.as_bytes()).await.unwrap_err();
    assert!(error.contains("line 2"), "{error}");
    let error = import(&pool, b"{\"position\": 1}\n").await.unwrap_err();
    assert!(error.contains("line 1: not an exported event"), "{error}");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 0);

    let report = import(&pool, &exported).await.unwrap();
    assert_eq!(report.events, 10);
    assert_eq!(report.head_hash, head["head_hash"].as_str().unwrap());
    assert_eq!(report.idempotency_keys, 10);
    let error = import(&pool, &exported).await.unwrap_err();
    assert!(error.contains("not empty"), "{error}");
    pool.close().await;

    // Byte for byte the same rows, the same head hash, and the same answers to retries.
    let mut imported = TestLedger::serve(target.url(), |_| {}).await;
    assert_eq!(
        table_rows(&ledger.database_url).await,
        table_rows(target.url()).await
    );
    let verified = imported.get("/v1/audit/verify").await.body;
    assert_eq!(verified["intact"], true);
    assert_eq!(verified["head_hash"], head["head_hash"]);
    let original = ledger
        .transfer("pay", "alice:cash", "bob:cash", "USD", "0.05")
        .await;
    let retried = imported
        .transfer("pay", "alice:cash", "bob:cash", "USD", "0.05")
        .await;
    retried.expect(201);
    assert_eq!(retried.header("idempotent-replayed"), Some("true"));
    assert_eq!(retried.body, original.body);
    let misused = imported
        .transfer("pay", "alice:cash", "bob:cash", "USD", "0.06")
        .await;
    assert_eq!(misused.code(), "idempotency_key_reused");
    // And the imported ledger carries on from the head.
    let next = imported
        .transfer("after-import", "alice:cash", "bob:cash", "USD", "1.00")
        .await;
    next.expect(201);
    assert_eq!(next.position(), 11);
    assert_eq!(imported.get("/v1/audit/verify").await.body["intact"], true);

    imported.stop_server().await;
    let _ = target.drop_database().await;
    ledger.finish().await;
}

/// docs/audit.md, "Logs written before migration 0013": an event whose stored numbers are the
/// same values written otherwise than the old writer hashed them is listed as `stored form
/// differs from hashed form` (intact), by the server and by the independent verifier alike, with
/// the same cause; a number changed to another value is a broken chain for both.
#[tokio::test]
async fn an_event_of_the_pre_0013_defect_is_listed_alike_by_the_server_and_the_independent_verifier(
) {
    let ledger = TestLedger::start().await;
    ledger.market().await; // positions 1..=6
                           // Hashed as the old writer spelled these values (serde_json's f64): 1e+16, 1.5e-7, -0.0.
    let body = r#"{"source":"world:bank","destination":"alice:cash","asset":"USD","amount":"1.00","metadata":{"x":1e+16,"y":1.5e-7,"z":-0.0,"n":12}}"#;
    let answer = ledger.post_text("/v1/transfers", "old", body).await;
    answer.expect(201);
    assert_eq!(answer.position(), 7);
    // Stored as jsonb's numeric printed them, as migration 0013 found such an event.
    tamper(
        &ledger,
        "UPDATE events SET payload = replace(replace(replace(payload, '1e+16', '10000000000000000'), '1.5e-7', '0.00000015'), '-0.0', '0.0') WHERE position = 7",
    )
    .await;
    ledger
        .transfer("after", "alice:cash", "bob:cash", "USD", "0.50")
        .await
        .expect(201); // 8, chained from the stored hash of 7

    let server = ledger.get("/v1/audit/verify").await;
    server.expect(200);
    assert_eq!(server.body["intact"], true, "{}", server.text);
    assert_eq!(
        server.body["stored_form_differs_count"], 1,
        "{}",
        server.text
    );
    let path = ledger.export().await;
    let (ok, independent) = ledger_tests::python_verify(&path);
    assert!(ok, "{independent}");
    assert_eq!(independent["intact"], true);
    assert_eq!(independent["head_hash"], server.body["head_hash"]);
    assert_eq!(independent["stored_form_differs_count"], 1);
    assert_eq!(
        independent["stored_form_differs"], server.body["stored_form_differs"],
        "the same position and cause"
    );
    let cause = independent["stored_form_differs"][0]["cause"]
        .as_str()
        .unwrap();
    assert!(
        cause.contains("stored 10000000000000000, hashed 1e+16")
            && cause.contains("stored 0.00000015, hashed 1.5e-7")
            && cause.contains("stored 0.0, hashed -0.0"),
        "{cause}"
    );
    let _ = std::fs::remove_file(path);

    // Another value that reads as the same f64 is an alteration, not the defect.
    tamper(
        &ledger,
        "UPDATE events SET payload = replace(payload, '10000000000000000', '10000000000000001') WHERE position = 7",
    )
    .await;
    let server = ledger.get("/v1/audit/verify").await;
    assert_eq!(server.body["intact"], false, "{}", server.text);
    assert_eq!(server.body["first_broken_position"], 7);
    let path = ledger.export().await;
    let (ok, independent) = ledger_tests::python_verify(&path);
    assert!(!ok);
    assert_eq!(independent["first_broken_position"], 7);
    assert_eq!(independent["stored_form_differs_count"], 0);
    let _ = std::fs::remove_file(path);
    ledger.finish().await;
}

/// An event of the pre-0013 defect whose metadata also holds eleven integers: the integers were
/// never respelled (jsonb prints `7` as `7`), so only `1e+16` may have been. Position 7 of the
/// log this returns, with its export.
async fn respelled_beside_eleven_integers() -> (TestLedger, PathBuf) {
    let ledger = TestLedger::start().await;
    ledger.market().await; // positions 1..=6
    let body = r#"{"source":"world:bank","destination":"alice:cash","asset":"USD","amount":"1.00","metadata":{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"x":1e+16}}"#;
    let answer = ledger.post_text("/v1/transfers", "old", body).await;
    answer.expect(201);
    tamper(
        &ledger,
        "UPDATE events SET payload = replace(payload, '1e+16', '10000000000000000') WHERE position = 7",
    )
    .await;
    let path = ledger.export().await;
    (ledger, path)
}

#[tokio::test]
async fn the_independent_verifier_lists_the_pre_0013_defect_beside_many_integers() {
    let (ledger, path) = respelled_beside_eleven_integers().await;
    let (ok, independent) = ledger_tests::python_verify(&path);
    assert!(ok, "{independent}");
    assert_eq!(independent["stored_form_differs_count"], 1, "{independent}");
    assert_eq!(
        independent["stored_form_differs"][0]["cause"],
        "stored form differs from hashed form: numbers written differently, of equal value \
         (stored 10000000000000000, hashed 1e+16), as the writer before migration 0013 hashed them"
    );
    let _ = std::fs::remove_file(path);
    ledger.finish().await;
}

/// Found by the property test: the server's check once took every number whose f64 spelling
/// differs (`7` → `7.0`) as one that may have been respelled and gave up beyond ten of them,
/// reporting this event as a broken chain, a false tamper alarm. A stored integer can only have
/// been respelled from an exponent spelling, so the eleven integers are not candidates.
#[tokio::test]
async fn the_server_lists_the_pre_0013_defect_beside_many_integers() {
    let (ledger, path) = respelled_beside_eleven_integers().await;
    let _ = std::fs::remove_file(path);
    let server = ledger.get("/v1/audit/verify").await;
    assert_eq!(server.body["intact"], true, "{}", server.text);
    assert_eq!(
        server.body["stored_form_differs_count"], 1,
        "{}",
        server.text
    );
    ledger.finish().await;
}

/// The end of January and of February 2026, as closes state them.
const JANUARY_END: &str = "2026-01-31T23:59:59.999999Z";
const FEBRUARY_END: &str = "2026-02-28T23:59:59.999999Z";

/// A log with backdated entries of every kind that moves money and two closes, the first
/// reopened in between: funded and paid in January (backdated), closed through January, reopened
/// for a late invoice (backdated into January), a reversal (counting when its original did), a
/// trade with a fee and a hold posted, all in February, then closed through February. Returns
/// the two closes as `POST /v1/periods/close` answered them.
async fn backdated_and_closed(ledger: &TestLedger) -> (Value, Value) {
    ledger.market().await;
    let transfer =
        |key: &'static str, from: &'static str, to: &'static str, amount: &str, at: &str| {
            let body = json!({"source": from, "destination": to, "asset": "USD", "amount": amount,
                          "effective_at": at});
            async move { ledger.post("/v1/transfers", key, &body).await }
        };
    transfer(
        "fund",
        "world:bank",
        "alice:cash",
        "5000.00",
        "2026-01-05T09:00:00Z",
    )
    .await
    .expect(201);
    let paid = transfer(
        "pay",
        "alice:cash",
        "bob:cash",
        "100.00",
        "2026-01-20T10:00:00.123456Z",
    )
    .await;
    paid.expect(201);
    let paid_id = paid.body["id"].as_str().expect("an id").to_owned();
    ledger
        .transfer("today", "alice:cash", "bob:cash", "USD", "7.50")
        .await
        .expect(201);
    let first = ledger
        .post(
            "/v1/periods/close",
            "close-1",
            &json!({"through": JANUARY_END}),
        )
        .await;
    first.expect(201);
    let events = ledger.event_count().await;
    let refused = transfer(
        "refused",
        "alice:cash",
        "bob:cash",
        "12.34",
        "2026-01-25T00:00:00Z",
    )
    .await;
    ledger
        .assert_refused(&refused, 422, "period_closed", events)
        .await;
    ledger
        .post(
            "/v1/periods/reopen",
            "reopen-1",
            &json!({"reason": "a late invoice"}),
        )
        .await
        .expect(201);
    transfer(
        "late",
        "alice:cash",
        "bob:cash",
        "12.34",
        "2026-01-25T00:00:00Z",
    )
    .await
    .expect(201);
    ledger
        .post(
            &format!("/v1/transactions/{paid_id}/reverse"),
            "reverse-pay",
            &json!({}),
        )
        .await
        .expect(201);
    ledger
        .post(
            "/v1/transfers",
            "fund-bob",
            &json!({"source": "world:bank", "destination": "bob:cash",
        "asset": "AAPL", "amount": "10", "effective_at": "2026-02-02T00:00:00Z"}),
        )
        .await
        .expect(201);
    let trade = json!({"buyer": "alice:cash", "seller": "bob:cash", "instrument": "AAPL",
        "quantity": "2", "price": "189.50", "currency": "USD",
        "fees": [{"payer": "alice:cash", "account": "broker:fees", "amount": "1.25"}],
        "effective_at": "2026-02-03T15:30:00Z"});
    ledger.post("/v1/trades", "trade", &trade).await.expect(201);
    let hold = ledger
        .post(
            "/v1/transfers",
            "hold",
            &json!({"source": "alice:cash",
        "destination": "bob:cash", "asset": "USD", "amount": "80.00", "pending": true,
        "effective_at": "2026-02-10T00:00:00Z"}),
        )
        .await;
    hold.expect(201);
    let hold_id = hold.body["id"].as_str().expect("an id");
    ledger
        .post(
            &format!("/v1/transactions/{hold_id}/post"),
            "post-hold",
            &json!({"amounts": ["60.00"], "effective_at": "2026-02-11T00:00:00Z"}),
        )
        .await
        .expect(201);
    let second = ledger
        .post(
            "/v1/periods/close",
            "close-2",
            &json!({"through": FEBRUARY_END}),
        )
        .await;
    second.expect(201);
    ledger
        .transfer("after", "alice:cash", "bob:cash", "USD", "1.00")
        .await
        .expect(201);
    (first.body, second.body)
}

/// `GET /v1/reports/trial-balance` once the projections reflect the whole log: its digest, and
/// its rows as `{"account asset": balance}` (the independent verifier's shape).
async fn served_trial_balance(
    ledger: &TestLedger,
    as_of: &str,
    known_at: Option<i64>,
) -> (Value, Value) {
    let head = ledger.event_count().await;
    let known = known_at.map_or(String::new(), |p| format!("&known_at_position={p}"));
    let served = ledger
        .get(&format!(
            "/v1/reports/trial-balance?as_of={as_of}{known}&min_position={head}"
        ))
        .await;
    served.expect(200);
    let rows: serde_json::Map<String, Value> = served.body["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            (
                format!(
                    "{} {}",
                    r["account"].as_str().unwrap(),
                    r["asset"].as_str().unwrap()
                ),
                r["balance"].clone(),
            )
        })
        .collect();
    (served.body["digest"].clone(), Value::Object(rows))
}

#[tokio::test]
async fn backdated_entries_and_two_closes_verify_here_and_independently() {
    let ledger = TestLedger::start().await;
    let (first, second) = backdated_and_closed(&ledger).await;

    // `ledger verify`'s pass: the chain, and each close's trial balance from the events alone.
    let pool = ledger.pool();
    let (chain, closes) = infrastructure::audit::verify_log(&pool, |_, _| {})
        .await
        .unwrap();
    pool.close().await;
    assert!(chain.intact(), "{chain:?}");
    assert!(closes.verified(), "{closes:?}");
    assert_eq!(closes.closes.len(), 2);
    assert!(closes.closes[0].reopened && !closes.closes[1].reopened);
    assert_eq!(
        closes.closes[0].recorded_digest,
        first["trial_balance_digest"].as_str().unwrap()
    );
    assert_eq!(
        closes.closes[1].position,
        second["position"].as_i64().unwrap()
    );

    // The independent verifier, from the export alone: the same closes, every figure the server's.
    let path = ledger.export().await;
    let (ok, independent) = ledger_tests::python_verify(&path);
    assert!(ok, "{independent}");
    assert_eq!(independent["trial_balances_verified"], true);
    ledger.assert_verifier_agrees(&independent).await;
    let listed = &independent["closes"];
    assert_eq!(
        listed[0]["trial_balance_digest"], first["trial_balance_digest"],
        "{listed}"
    );
    assert_eq!(listed[0]["reopened"], true);
    assert_eq!(
        listed[1]["recomputed_digest"], second["trial_balance_digest"],
        "{listed}"
    );
    assert_eq!(listed[1]["reopened"], false);

    // As of each close's end as known then, and as of January's end as known now (the late
    // invoice and the reversal, which counts when the payment did, change it): the server's
    // trial balance, row for row.
    let first_known = first["known_at_position"].as_i64();
    let second_known = second["known_at_position"].as_i64();
    for (as_of, known_at) in [
        (JANUARY_END, first_known),
        (FEBRUARY_END, second_known),
        (JANUARY_END, None),
    ] {
        let (digest, rows) = served_trial_balance(&ledger, as_of, known_at).await;
        let mut args = vec!["--as-of".to_owned(), as_of.to_owned()];
        args.extend(
            known_at
                .map(|p| ["--known-at".to_owned(), p.to_string()])
                .into_iter()
                .flatten(),
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, independent) = ledger_tests::python_verify_with(&path, &args);
        assert!(ok, "{independent}");
        assert_eq!(
            independent["as_of"]["trial_balance_digest"], digest,
            "{as_of} {known_at:?}"
        );
        assert_eq!(
            independent["as_of"]["balances"], rows,
            "{as_of} {known_at:?}"
        );
    }
    let (_, january_now) = served_trial_balance(&ledger, JANUARY_END, None).await;
    assert_eq!(january_now["bob:cash USD"], "12.34", "{january_now}");
    let _ = std::fs::remove_file(path);
    ledger.finish().await;
}

#[tokio::test]
async fn a_close_whose_digest_is_not_its_trial_balance_fails_verification_at_its_position() {
    let ledger = TestLedger::start().await;
    let (first, second) = backdated_and_closed(&ledger).await;
    let at = second["position"].as_i64().unwrap();
    // A superuser puts the first close's digest in the second, and recomputes the chain: the
    // chain holds, the trial balance does not.
    let (recorded, forged) = (
        second["trial_balance_digest"].as_str().unwrap(),
        first["trial_balance_digest"].as_str().unwrap(),
    );
    assert_ne!(recorded, forged);
    rewrite_history(&ledger, &format!("UPDATE events SET payload = replace(payload, '{recorded}', '{forged}') WHERE position = {at}")).await;

    let pool = ledger.pool();
    let (chain, closes) = infrastructure::audit::verify_log(&pool, |_, _| {})
        .await
        .unwrap();
    pool.close().await;
    assert!(chain.intact(), "{chain:?}");
    assert!(!closes.verified());
    assert_eq!(closes.first_problem_position(), Some(at), "{closes:?}");
    assert!(closes.problems[0].problem.contains(forged), "{closes:?}");

    let path = ledger.export().await;
    let (ok, independent) = ledger_tests::python_verify(&path);
    assert!(!ok, "{independent}");
    assert_eq!(independent["intact"], true);
    assert_eq!(independent["trial_balances_verified"], false);
    let problems = independent["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0]
            .as_str()
            .unwrap()
            .starts_with(&format!("position {at}: period 2")),
        "{problems:?}"
    );
    let _ = std::fs::remove_file(path);
    ledger.finish().await;
}

#[tokio::test]
async fn an_export_with_effective_times_and_closes_imports_into_the_same_log_and_periods() {
    use infrastructure::{db, testing::TestDatabase};
    let ledger = TestLedger::start().await;
    backdated_and_closed(&ledger).await;
    let path = ledger.export().await;
    let exported = std::fs::read(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    let text = String::from_utf8(exported.clone()).unwrap();
    assert!(
        text.contains("\"effective_at\":\"2026-01-20T10:00:00.123456Z\""),
        "verbatim"
    );
    assert!(text.contains("\"type\":\"PeriodReopened\""));

    let target = TestDatabase::create().await.unwrap();
    let pool = db::read_pool(
        db::connect_options(target.url()).unwrap(),
        &db::PoolConfig::default(),
    );
    db::migrate(&pool).await.unwrap();
    import(&pool, &exported).await.unwrap();
    // Exported again, the imported log is the same bytes: the same events, times and hashes.
    let mut again = Vec::new();
    infrastructure::audit::export(&pool, 0, &mut again)
        .await
        .unwrap();
    assert!(again == exported, "the imported log exports the same bytes");
    let (chain, closes) = infrastructure::audit::verify_log(&pool, |_, _| {})
        .await
        .unwrap();
    assert!(
        chain.intact() && closes.verified() && closes.closes.len() == 2,
        "{closes:?}"
    );
    pool.close().await;

    // The same rows in every table, the periods among them, once the original's projections
    // have caught up with its log; but for the idempotency record of the refused write, which
    // no event carries.
    let rows = |url: String| async move {
        let mut rows = table_rows(&url).await;
        rows.retain(|(table, _)| table != "idempotency_keys");
        rows
    };
    ledger_tests::eventually(
        std::time::Duration::from_secs(10),
        "the same rows",
        || async {
            (rows(ledger.database_url.clone()).await == rows(target.url().to_owned()).await)
                .then_some(())
        },
    )
    .await;
    let mut imported = TestLedger::serve(target.url(), |_| {}).await;
    assert_eq!(
        imported.get("/v1/periods").await.body["items"],
        ledger.get("/v1/periods").await.body["items"]
    );
    // The writer restored the closed periods: February is closed there too.
    let events = imported.event_count().await;
    let late = imported.post("/v1/transfers", "too-late", &json!({"source": "alice:cash",
        "destination": "bob:cash", "asset": "USD", "amount": "1.00", "effective_at": "2026-02-15T00:00:00Z"})).await;
    imported
        .assert_refused(&late, 422, "period_closed", events)
        .await;
    imported.stop_server().await;
    let _ = target.drop_database().await;
    ledger.finish().await;
}
