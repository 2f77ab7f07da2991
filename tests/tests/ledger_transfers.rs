//! Transfers between ledgers: a hold in each ledger, then both posted or both voided; each
//! ledger balances on its own through its settlement account for the other (`ledger:<other>`),
//! and the two settlement accounts of a pair mirror each other.

use std::collections::BTreeMap;
use std::time::Duration;

use ledger_tests::serde_json::{json, Value};
use ledger_tests::{eventually, Answer, TestLedger};
use rust_decimal::Decimal;

/// Creates ledger `name` with USD (scale 2), `world:bank` (may go negative) and the accounts.
async fn book(ledger: &TestLedger, name: &str, accounts: &[&str]) {
    ledger.create_ledger_with_usd(name, accounts).await;
}

async fn fund(ledger: &TestLedger, name: &str, account: &str, amount: &str) {
    ledger
        .post(
            &format!("/v1/ledgers/{name}/transfers"),
            &format!("fund-{account}"),
            &json!({"source": "world:bank", "destination": account, "asset": "USD", "amount": amount}),
        )
        .await
        .expect(201);
}

async fn move_money(
    ledger: &TestLedger,
    key: &str,
    from: (&str, &str),
    to: (&str, &str),
    amount: &str,
) -> Answer {
    ledger
        .post(
            "/v1/ledger-transfers",
            key,
            &json!({"source_ledger": from.0, "source": from.1, "destination_ledger": to.0,
                    "destination": to.1, "asset": "USD", "amount": amount,
                    "metadata": {"ref": key}}),
        )
        .await
}

/// Posted, pending debits and pending credits of an account in USD, as the ledger serves them.
async fn figures(ledger: &TestLedger, name: &str, account: &str) -> (String, String, String) {
    let answer = ledger
        .get(&format!("/v1/ledgers/{name}/accounts/{account}"))
        .await;
    if answer.status == 404 {
        return ("0".into(), "0".into(), "0".into());
    }
    answer.expect(200);
    let usd = answer.body["balances"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["asset"] == "USD"))
        .cloned()
        .unwrap_or(Value::Null);
    let text = |v: &Value| v.as_str().unwrap_or("0").to_owned();
    (
        text(&usd["balance"]),
        text(&usd["pending_debits"]),
        text(&usd["pending_credits"]),
    )
}

fn dec(text: &str) -> Decimal {
    text.parse().unwrap_or_default()
}

/// The status of a transaction in a ledger ("absent" when there is none).
async fn status(ledger: &TestLedger, name: &str, id: &Value) -> String {
    let answer = ledger
        .get(&format!(
            "/v1/ledgers/{name}/transactions/{}",
            id.as_str().unwrap()
        ))
        .await;
    if answer.status == 404 {
        return "absent".into();
    }
    answer.body["status"].as_str().unwrap_or("?").to_owned()
}

/// Both sides of a finished transfer agree with its state: both holds posted, or neither moved
/// anything.
async fn assert_both_sides(ledger: &TestLedger, transfer: &Value) {
    let state = transfer["state"].as_str().unwrap();
    let source = status(
        ledger,
        transfer["source_ledger"].as_str().unwrap(),
        &transfer["source_transaction"],
    )
    .await;
    let destination = status(
        ledger,
        transfer["destination_ledger"].as_str().unwrap(),
        &transfer["destination_transaction"],
    )
    .await;
    match state {
        "posted" => assert_eq!(
            (source.as_str(), destination.as_str()),
            ("posted", "posted"),
            "{transfer}"
        ),
        "voided" => {
            for side in [&source, &destination] {
                assert!(
                    side == "voided" || side == "absent",
                    "{transfer}: {source} / {destination}"
                );
            }
        }
        other => panic!("transfer still {other}: {transfer}"),
    }
}

/// Per pair of ledgers, `a`'s `ledger:b` is minus `b`'s `ledger:a`.
async fn assert_mirror(ledger: &TestLedger, names: &[&str]) {
    for a in names {
        for b in names.iter().filter(|b| *b != a) {
            let here = figures(ledger, a, &format!("ledger:{b}")).await;
            let there = figures(ledger, b, &format!("ledger:{a}")).await;
            assert_eq!(
                dec(&here.0),
                -dec(&there.0),
                "{a}'s ledger:{b} against {b}'s ledger:{a}"
            );
            for pending in [&here.1, &here.2, &there.1, &there.2] {
                assert_eq!(dec(pending), Decimal::ZERO, "nothing in flight");
            }
        }
    }
}

#[tokio::test]
async fn a_transfer_between_ledgers_posts_on_both_sides_through_the_settlement_accounts() {
    let ledger = TestLedger::start().await;
    book(&ledger, "eu", &["alice:cash"]).await;
    book(&ledger, "us", &["bob:cash"]).await;
    fund(&ledger, "eu", "alice:cash", "100.00").await;
    let moved = move_money(
        &ledger,
        "m-1",
        ("eu", "alice:cash"),
        ("us", "bob:cash"),
        "30.00",
    )
    .await;
    moved.expect(201);
    assert_eq!(moved.body["state"], "posted");
    assert_eq!(moved.body["metadata"], json!({"ref": "m-1"}));
    assert_both_sides(&ledger, &moved.body).await;
    assert_eq!(figures(&ledger, "eu", "alice:cash").await.0, "70.00");
    assert_eq!(figures(&ledger, "us", "bob:cash").await.0, "30.00");
    assert_eq!(figures(&ledger, "eu", "ledger:us").await.0, "30.00");
    assert_eq!(figures(&ledger, "us", "ledger:eu").await.0, "-30.00");
    assert_mirror(&ledger, &["eu", "us"]).await;
    // Both holds carry the transfer's id, so a verifier of either log can pair them.
    let events = ledger.get("/v1/ledgers/us/events?after=0&limit=100").await;
    let hold = events.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e.to_string()
                .contains(moved.body["destination_transaction"].as_str().unwrap())
        })
        .unwrap_or_else(|| panic!("the destination's hold in {}", events.text));
    assert!(
        hold.to_string()
            .contains(&format!(r#""ledger_transfer":{}"#, moved.body["id"])),
        "{hold}"
    );
    // A retry gets the same answer; the same key for something else is refused.
    let again = move_money(
        &ledger,
        "m-1",
        ("eu", "alice:cash"),
        ("us", "bob:cash"),
        "30.00",
    )
    .await;
    again.expect(201);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body, moved.body);
    let reused = move_money(
        &ledger,
        "m-1",
        ("eu", "alice:cash"),
        ("us", "bob:cash"),
        "31.00",
    )
    .await;
    assert_eq!(reused.code(), "idempotency_key_reused");
    let got = ledger
        .get(&format!(
            "/v1/ledger-transfers/{}",
            moved.body["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(got.body, moved.body);
    for chain in ["eu", "us"] {
        let verified = ledger
            .get(&format!("/v1/ledgers/{chain}/audit/verify"))
            .await;
        assert_eq!(verified.body["intact"], true);
    }
    ledger.finish().await;
}

#[tokio::test]
async fn a_refusal_on_either_side_voids_both_and_moves_nothing() {
    let ledger = TestLedger::start().await;
    book(&ledger, "eu", &["alice:cash"]).await;
    book(&ledger, "us", &["bob:cash", "carol:cash"]).await;
    fund(&ledger, "eu", "alice:cash", "100.00").await;
    // The source lacks the funds.
    let poor = move_money(
        &ledger,
        "m-1",
        ("eu", "alice:cash"),
        ("us", "bob:cash"),
        "500.00",
    )
    .await;
    assert_eq!(poor.status, 422, "{}", poor.text);
    assert_eq!(poor.code(), "insufficient_funds");
    assert_eq!(poor.body["context"]["ledger_transfer"]["state"], "voided");
    assert_eq!(poor.body["context"]["ledger_transfer"]["refused_by"], "eu");
    assert_both_sides(&ledger, &poor.body["context"]["ledger_transfer"]).await;
    // The destination is frozen: the source's hold, already made, is voided.
    ledger
        .post(
            "/v1/ledgers/us/accounts/carol:cash/freeze",
            "freeze",
            &json!({}),
        )
        .await
        .expect(201);
    let frozen = move_money(
        &ledger,
        "m-2",
        ("eu", "alice:cash"),
        ("us", "carol:cash"),
        "10.00",
    )
    .await;
    assert_eq!(frozen.status, 422, "{}", frozen.text);
    assert_eq!(
        frozen.body["context"]["ledger_transfer"]["refused_by"],
        "us"
    );
    let transfer = &frozen.body["context"]["ledger_transfer"];
    assert_eq!(
        status(&ledger, "eu", &transfer["source_transaction"]).await,
        "voided"
    );
    assert_both_sides(&ledger, transfer).await;
    assert_eq!(
        figures(&ledger, "eu", "alice:cash").await,
        ("100.00".into(), "0.00".into(), "0.00".into())
    );
    assert_mirror(&ledger, &["eu", "us"]).await;
    // Refused before anything is recorded: unknown ledgers, one ledger twice, unequal assets.
    let unknown = move_money(
        &ledger,
        "m-3",
        ("eu", "alice:cash"),
        ("nope", "bob:cash"),
        "1.00",
    )
    .await;
    assert_eq!(unknown.code(), "ledger_not_found");
    let same = move_money(
        &ledger,
        "m-4",
        ("eu", "alice:cash"),
        ("eu", "alice:cash"),
        "1.00",
    )
    .await;
    assert_eq!(same.status, 422);
    book(&ledger, "jp", &["dan:cash"]).await;
    let listed = ledger.get("/v1/ledger-transfers?state=voided").await;
    assert_eq!(listed.body["items"].as_array().map(Vec::len), Some(2));
    ledger.finish().await;
}

#[tokio::test]
async fn many_concurrent_transfers_among_three_ledgers_end_the_same_on_both_sides() {
    let ledger = TestLedger::start().await;
    let names = ["a", "b", "c"];
    let accounts = ["x:cash", "y:cash"];
    for name in names {
        book(&ledger, name, &accounts).await;
        for account in accounts {
            fund(&ledger, name, account, "100.00").await;
        }
    }
    // Refusals on the destination side: y:cash in c refuses more than 120.00.
    ledger
        .patch(
            "/v1/ledgers/c/accounts/y:cash/limits",
            "limit",
            &json!({"asset": "USD", "max_balance": "120.00"}),
        )
        .await
        .expect(201);
    // A deterministic spread of transfers; amounts up to 60.00, so sources run out (refusals on
    // the source side) and c's y:cash fills up.
    let mut seed: u64 = 0x5eed;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut planned = Vec::new();
    for i in 0..60 {
        let from = names[(next() % 3) as usize];
        let to = names
            .iter()
            .filter(|n| **n != from)
            .nth((next() % 2) as usize)
            .unwrap();
        let (source, destination) = (
            accounts[(next() % 2) as usize],
            accounts[(next() % 2) as usize],
        );
        let amount = format!("{}.{:02}", 1 + next() % 60, next() % 100);
        planned.push((format!("t-{i}"), from, source, *to, destination, amount));
    }
    let answers = futures_util::future::join_all(planned.iter().map(
        |(key, from, source, to, destination, amount)| {
            move_money(&ledger, key, (from, source), (to, destination), amount)
        },
    ))
    .await;
    let mut counts = BTreeMap::new();
    let mut transfers = Vec::new();
    for answer in &answers {
        let transfer = match answer.status {
            201 | 202 => answer.body.clone(),
            422 => answer.body["context"]["ledger_transfer"].clone(),
            other => panic!("{other}: {}", answer.text),
        };
        transfers.push(transfer);
    }
    // Whatever was still running finishes by itself.
    for transfer in &mut transfers {
        let id = transfer["id"].as_str().unwrap().to_owned();
        *transfer = eventually(Duration::from_secs(30), "the transfer finishes", || async {
            let got = ledger.get(&format!("/v1/ledger-transfers/{id}")).await;
            let state = got.body["state"].as_str().unwrap_or_default().to_owned();
            (state == "posted" || state == "voided").then_some(got.body)
        })
        .await;
        *counts
            .entry(transfer["state"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
        assert_both_sides(&ledger, transfer).await;
    }
    assert!(counts.get("posted").is_some_and(|n| *n > 10), "{counts:?}");
    assert!(counts.get("voided").is_some_and(|n| *n > 0), "{counts:?}");
    // The model: funded balances plus every posted transfer, nothing else.
    let mut model: BTreeMap<(String, String), Decimal> = BTreeMap::new();
    for name in names {
        for account in accounts {
            model.insert((name.to_owned(), account.to_owned()), dec("100.00"));
        }
    }
    for t in transfers.iter().filter(|t| t["state"] == "posted") {
        let amount = dec(t["amount"].as_str().unwrap());
        let side = |l: &str, a: &str| {
            (
                t[l].as_str().unwrap().to_owned(),
                t[a].as_str().unwrap().to_owned(),
            )
        };
        *model.entry(side("source_ledger", "source")).or_default() -= amount;
        *model
            .entry(side("destination_ledger", "destination"))
            .or_default() += amount;
        let settlement = |l: &str, other: &str| {
            (
                t[l].as_str().unwrap().to_owned(),
                format!("ledger:{}", t[other].as_str().unwrap()),
            )
        };
        *model
            .entry(settlement("source_ledger", "destination_ledger"))
            .or_default() += amount;
        *model
            .entry(settlement("destination_ledger", "source_ledger"))
            .or_default() -= amount;
    }
    for ((name, account), expected) in &model {
        let (posted, debits, credits) = figures(&ledger, name, account).await;
        assert_eq!(dec(&posted), *expected, "{name} {account}");
        assert_eq!(
            (dec(&debits), dec(&credits)),
            (Decimal::ZERO, Decimal::ZERO),
            "{name} {account}"
        );
    }
    assert_mirror(&ledger, &names).await;
    for name in names {
        let verified = ledger
            .get(&format!("/v1/ledgers/{name}/audit/verify"))
            .await;
        assert_eq!(verified.body["intact"], true, "{name}");
    }
    eprintln!("ledger transfers: {counts:?}");
    ledger.finish().await;
}
