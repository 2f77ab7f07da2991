//! The Beancount export of a ledger: it asserts exactly the ledger's balances, every transaction
//! in it balances per commodity, and holds, voids and expiries move nothing. (Beancount itself
//! checks the export in `scripts/beancount_check.sh`.)

use std::collections::BTreeMap;
use std::str::FromStr;

use infrastructure::beancount::{account_name, commodity_name, export, Root};
use ledger_tests::serde_json::{json, Value};
use ledger_tests::TestLedger;
use rust_decimal::Decimal;

async fn activity(ledger: &TestLedger) {
    ledger.market().await;
    for (key, destination, asset, amount) in [
        ("fund", "alice:cash", "USD", "1000.00"),
        ("shares", "bob:cash", "AAPL", "10"),
    ] {
        let funded = ledger
            .transfer(key, "world:bank", destination, asset, amount)
            .await;
        funded.expect(201);
    }
    let trade = json!({"buyer": "alice:cash", "seller": "bob:cash", "instrument": "AAPL",
                       "quantity": "2", "price": "189.50", "currency": "USD",
                       "fees": [{"payer": "alice:cash", "account": "broker:fees", "amount": "1.25"}]});
    ledger.post("/v1/trades", "trade", &trade).await.expect(201);
    let hold = |key: &'static str, amount: &'static str| {
        let body = json!({"source": "alice:cash", "destination": "bob:cash", "asset": "USD",
                          "amount": amount, "pending": true});
        async move {
            let answer = ledger.post("/v1/transfers", key, &body).await;
            answer.expect(201);
            answer.body["id"].as_str().unwrap().to_owned()
        }
    };
    let posted = hold("hold-1", "80.00").await;
    act(ledger, &posted, "post", json!({"amounts": ["60.00"]})).await;
    let voided = hold("hold-2", "25.00").await;
    act(ledger, &voided, "void", json!({})).await;
    let mistake = ledger
        .transfer("mistake", "alice:cash", "bob:cash", "USD", "9.99")
        .await;
    mistake.expect(201);
    act(
        ledger,
        mistake.body["id"].as_str().unwrap(),
        "reverse",
        json!({}),
    )
    .await;
}

/// `POST /v1/transactions/{id}/{action}`, which must succeed.
async fn act(ledger: &TestLedger, id: &str, action: &str, body: Value) {
    let path = format!("/v1/transactions/{id}/{action}");
    ledger
        .post(&path, &format!("{action}-{id}"), &body)
        .await
        .expect(201);
}

/// Per transaction in the file (a line `DATE * …` and its indented lines), the sum of its
/// postings' weights per commodity: a posting held at a total cost (`{{N CUR}}`) weighs its cost,
/// one at a total price (`@@ N CUR`) that price, any other its units. `None` when Beancount is to
/// compute a weight (a reduction of lots, `{…}`, or a posting without an amount).
fn transaction_sums(text: &str) -> Vec<(String, Option<BTreeMap<String, Decimal>>)> {
    let mut sums: Vec<(String, Option<BTreeMap<String, Decimal>>)> = Vec::new();
    let mut in_transaction = false;
    for line in text.lines() {
        if !line.starts_with(' ') {
            in_transaction = line.split(' ').nth(1) == Some("*");
            if in_transaction {
                sums.push((line.to_owned(), Some(BTreeMap::new())));
            }
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if !in_transaction || fields[0].ends_with(':') {
            continue; // metadata
        }
        let signed = |number: &str, amount: &str| {
            let amount = Decimal::from_str(amount).unwrap();
            if number.starts_with('-') {
                -amount
            } else {
                amount
            }
        };
        let weight = match fields.as_slice() {
            [_account, number, commodity] => {
                Some((signed(number, number.trim_start_matches('-')), *commodity))
            }
            [_account, number, _, "@@", total, currency] => {
                Some((signed(number, total), *currency))
            }
            [_account, number, _, cost, currency, ..] if cost.starts_with("{{") => {
                let currency = currency.trim_end_matches(['}', ',']);
                Some((signed(number, cost.trim_start_matches('{')), currency))
            }
            _ => None,
        };
        let entry = &mut sums.last_mut().unwrap().1;
        match (weight, entry.as_mut()) {
            (Some((weight, commodity)), Some(sum)) => {
                *sum.entry(commodity.to_owned()).or_default() += weight;
            }
            _ => *entry = None,
        }
    }
    sums
}

#[tokio::test]
async fn the_beancount_export_asserts_the_ledgers_balances_and_every_entry_balances() {
    let ledger = TestLedger::start().await;
    let mut empty = Vec::new();
    export(&ledger.pool(), Root::Assets, &mut empty)
        .await
        .unwrap();
    let empty = String::from_utf8(empty).unwrap();
    let entries = empty
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with(';'));
    assert_eq!(entries.collect::<Vec<_>>(), ["option \"title\" \"ledger\""]);

    activity(&ledger).await;
    let mut out = Vec::new();
    let summary = export(&ledger.pool(), Root::Income, &mut out)
        .await
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(summary.head_position, summary.events);

    // The balances asserted are the ledger's, exactly, for every account and asset it used.
    let assertions: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with(';') && l.contains(" balance "))
        .collect();
    let used = [
        ("world:bank", "USD"),
        ("world:bank", "AAPL"),
        ("alice:cash", "USD"),
        ("alice:cash", "AAPL"),
        ("bob:cash", "USD"),
        ("bob:cash", "AAPL"),
        ("broker:fees", "USD"),
    ];
    assert_eq!(assertions.len(), used.len(), "{assertions:#?}");
    for (account, asset) in used {
        let name = account_name(Root::Income, &account.parse().unwrap());
        let balance = ledger.balance(account, asset).await;
        let commodity = commodity_name(&asset.parse().unwrap());
        let expected = format!(" balance {name}  {balance} ~ 0 {commodity}");
        assert!(
            assertions.iter().any(|a| a.ends_with(&expected)),
            "{expected} in {assertions:#?}"
        );
    }

    // Transfers, trade, post and reversal are transactions, each balanced per commodity; the two
    // holds and the void are notes.
    let sums = transaction_sums(&text);
    assert_eq!(sums.len(), 6, "{sums:#?}");
    for (header, per_commodity) in &sums {
        let per_commodity = per_commodity.as_ref().unwrap();
        assert!(
            per_commodity.values().all(Decimal::is_zero),
            "{header}: {per_commodity:?}"
        );
    }
    assert_eq!(text.matches(" reserves ").count(), 4); // 2 holds × 2 accounts
    assert_eq!(text.matches(" voided: releases ").count(), 2);
    assert!(text.contains("* \"Post of hold "));
    assert!(text.contains("  reverses: \""));
    ledger.finish().await;
}

/// Entries are dated the day they count, an account is opened by its first entry's day, and the
/// close still standing asserts its trial balance on the day after its end; the reopened one
/// only says so.
#[tokio::test]
async fn entries_are_dated_when_they_count_and_standing_closes_assert_their_trial_balance() {
    let started = TestLedger::start().await;
    let ledger = &started;
    ledger.market().await;
    let transfer = |key: &'static str, amount: &'static str, at: &'static str| {
        let body = json!({"source": "world:bank", "destination": "alice:cash", "asset": "USD",
                          "amount": amount, "effective_at": at});
        async move {
            let answer = ledger.post("/v1/transfers", key, &body).await;
            answer.expect(201);
        }
    };
    transfer("january", "100.00", "2026-01-05T09:00:00Z").await;
    let close = |key: &'static str, through: &'static str| async move {
        let body = json!({"through": through});
        let answer = ledger.post("/v1/periods/close", key, &body).await;
        answer.expect(201);
    };
    close("close-1", "2026-01-31T23:59:59.999999Z").await;
    let reopen = json!({"reason": "a late invoice"});
    ledger
        .post("/v1/periods/reopen", "reopen", &reopen)
        .await
        .expect(201);
    transfer("late", "2.50", "2026-01-25T00:00:00Z").await;
    transfer("february", "10.00", "2026-02-14T12:00:00Z").await;
    close("close-2", "2026-02-28T23:59:59.999999Z").await;
    ledger
        .transfer("today", "alice:cash", "bob:cash", "USD", "1.00")
        .await
        .expect(201);

    let mut out = Vec::new();
    export(&ledger.pool(), Root::Assets, &mut out)
        .await
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("\n2026-01-05 open Assets:Alice:Cash USD\n"),
        "{text}"
    );
    assert!(text.contains("\n2026-01-25 * \"Transfer\""), "{text}");
    assert!(text.contains("\n2026-02-14 * \"Transfer\""), "{text}");
    assert!(text.contains("; Period 1 closed through 2026-01-31T23:59:59.999999Z"));
    assert!(text.contains("; reopened later"), "{text}");
    let asserted: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("2026-03-01 balance "))
        .collect();
    assert_eq!(
        asserted,
        [
            "2026-03-01 balance Assets:Alice:Cash  112.50 ~ 0 USD",
            "2026-03-01 balance Assets:World:Bank  -112.50 ~ 0 USD",
        ]
    );
    started.finish().await;
}
