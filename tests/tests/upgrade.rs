//! A database written before migration 0013, when events were stored as `jsonb`, upgrades in
//! place: every event that verified still verifies, the events `jsonb` had respelled are named as
//! "stored form differs from hashed form" rather than as a broken chain, an alteration of the same
//! numbers is still caught, and the projections equal their rebuild from the upgraded log.
//!
//! The old database is made by writing through the server and then turning the storage back into
//! what migrations 0001–0012 held: `jsonb` of the canonical text the writer hashed. That is byte
//! for byte what the old writer left, including its defect: it hashed a number as serde_json
//! spells an `f64` (`1e+16`) and `jsonb` kept it as `numeric` (`10000000000000000`).

use ledger_tests::serde_json::{json, Value};
use ledger_tests::TestLedger;

/// Migration 0013 undone: the storage of every release before it.
const BACK_TO_JSONB: &str = "
    ALTER TABLE events
        ALTER COLUMN payload TYPE JSONB USING payload::jsonb,
        ALTER COLUMN metadata TYPE JSONB USING metadata::jsonb;
    ALTER TABLE accounts ALTER COLUMN metadata TYPE JSONB USING metadata::jsonb;
    ALTER TABLE account_status_changes ALTER COLUMN metadata TYPE JSONB USING metadata::jsonb;
    DELETE FROM _sqlx_migrations WHERE version = 13;";

/// The client's metadata, with the canonical text each is hashed with and the one `jsonb` leaves.
/// Keys of different lengths: `jsonb` orders shorter keys first, canonical JSON by bytes.
const OPENED: &[(&str, &str, &str)] = &[
    (
        "alice:cash",
        r#"{"ref":"é\n\u0001x","b":1,"aa":[2,{"zz":null,"y":true}]}"#,
        r#"{"aa":[2,{"y":true,"zz":null}],"b":1,"ref":"é\n\u0001x"}"#,
    ),
    (
        "bob:cash",
        r#"{"x":1e+16,"rate":1.5}"#,
        r#"{"rate":1.5,"x":10000000000000000}"#,
    ),
    ("carol:cash", r#"{"tiny":1e-7}"#, r#"{"tiny":0.0000001}"#),
];

async fn write_before_the_upgrade(ledger: &TestLedger) {
    ledger.define_asset("USD", 2).await.expect(201);
    ledger.open_account("world:bank", true).await.expect(201);
    for (code, metadata, _) in OPENED {
        let body = format!(r#"{{"code":"{code}","allow_negative":false,"metadata":{metadata}}}"#);
        ledger
            .post_text("/v1/accounts", code, &body)
            .await
            .expect(201);
    }
    ledger
        .transfer("fund", "world:bank", "alice:cash", "USD", "10")
        .await
        .expect(201);
    ledger
        .post(
            "/v1/accounts/carol:cash/freeze",
            "freeze",
            &json!({"metadata": {"why": "audit", "n": 2}}),
        )
        .await
        .expect(201);
}

#[tokio::test]
async fn a_log_stored_as_jsonb_upgrades_in_place_and_names_what_jsonb_respelled() {
    let mut ledger = TestLedger::start().await;
    write_before_the_upgrade(&ledger).await;
    ledger.stop_server().await;
    let mut conn = ledger.sql().await;
    sqlx::raw_sql(BACK_TO_JSONB)
        .execute(&mut conn)
        .await
        .unwrap();
    // Under jsonb, bob's and carol's openings no longer match their hashes: the old defect.
    let stored: String =
        sqlx::query_scalar("SELECT metadata::text FROM accounts WHERE code = 'bob:cash'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(stored, r#"{"x": 10000000000000000, "rate": 1.5}"#);

    // The upgrade is what `ledger serve` does on start.
    ledger.restart().await;
    for (code, _, upgraded) in OPENED {
        let account = ledger.get(&format!("/v1/accounts/{code}")).await;
        assert!(
            account.text.contains(&format!(r#""metadata":{upgraded}"#)),
            "{code}: {}",
            account.text
        );
    }
    let report = ledger.get("/v1/audit/verify").await;
    report.expect(200);
    assert_eq!(report.body["intact"], true, "{}", report.text);
    assert_eq!(report.body["events_verified"], 7, "{}", report.text);
    assert_eq!(
        report.body["stored_form_differs_count"], 2,
        "{}",
        report.text
    );
    let differs: Vec<(i64, String)> = report.body["stored_form_differs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let cause = d["cause"].as_str().unwrap().to_owned();
            (d["position"].as_i64().unwrap(), cause)
        })
        .collect();
    assert_eq!(differs[0].0, 4, "{differs:?}");
    assert!(
        differs[0]
            .1
            .starts_with("stored form differs from hashed form")
            && differs[0]
                .1
                .contains("stored 10000000000000000, hashed 1e+16"),
        "{differs:?}"
    );
    assert_eq!(differs[1].0, 5, "{differs:?}");
    assert!(
        differs[1].1.contains("stored 0.0000001, hashed 1e-7"),
        "{differs:?}"
    );

    // The ledger goes on writing after the upgrade, and what it writes now is kept as sent.
    let answer = ledger
        .post_text(
            "/v1/transfers",
            "after",
            r#"{"source":"world:bank","destination":"bob:cash","asset":"USD","amount":"1.00","metadata":{"x":1e+16}}"#,
        )
        .await;
    answer.expect(201);
    assert!(
        answer.text.contains(r#""metadata":{"x":1e+16}"#),
        "{}",
        answer.text
    );
    let report = ledger.get("/v1/audit/verify").await;
    assert_eq!(report.body["intact"], true, "{}", report.text);
    assert_eq!(
        report.body["stored_form_differs_count"], 2,
        "{}",
        report.text
    );

    // The projections the migration converted equal their rebuild from the upgraded log.
    let replay = ledger.stop_and_replay().await;
    assert!(replay.identical(), "{replay:?}");
    ledger.restart().await;

    // Changing the stored number to another value is an alteration, even one that reads as the
    // same f64: never passed off as the defect.
    let mut conn = ledger.sql().await;
    sqlx::raw_sql(
        "ALTER TABLE events DISABLE TRIGGER events_no_update_or_delete;
         UPDATE events SET payload = replace(payload, '10000000000000000', '10000000000000001')
         WHERE position = 4;
         ALTER TABLE events ENABLE TRIGGER events_no_update_or_delete;",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let report = ledger.get("/v1/audit/verify").await;
    assert_eq!(report.body["intact"], false, "{}", report.text);
    assert_eq!(report.body["first_broken_position"], 4, "{}", report.text);
    let before: Value = report.body["stored_form_differs"].clone();
    assert_eq!(before.as_array().map(Vec::len), Some(0), "{}", report.text);
    ledger.finish().await;
}
