//! The README's walk-through, as a test: assets, accounts, funding, a trade with a fee, balances,
//! history, the log, and reads of transactions and trades.

use ledger_tests::serde_json::json;
use ledger_tests::TestLedger;

#[tokio::test]
async fn a_trade_with_a_fee_moves_instrument_cash_and_fee_atomically() {
    let ledger = TestLedger::start().await;
    ledger.market().await;
    ledger
        .transfer("fund-alice", "world:bank", "alice:cash", "USD", "5000")
        .await
        .expect(201);
    ledger
        .transfer("fund-bob", "world:bank", "bob:cash", "AAPL", "100")
        .await
        .expect(201);

    let trade = ledger
        .post(
            "/v1/trades",
            "trade-1",
            &json!({
                "buyer": "alice:cash", "seller": "bob:cash",
                "instrument": "AAPL", "quantity": "10", "price": "189.50", "currency": "USD",
                "fees": [{"payer": "alice:cash", "account": "broker:fees", "amount": "1.25"}]
            }),
        )
        .await;
    trade.expect(201);
    assert_eq!(trade.body["notional"], "1895.00");
    assert_eq!(trade.body["postings"].as_array().unwrap().len(), 3);
    assert_eq!(trade.body["position"].as_i64(), Some(trade.position()));

    assert_eq!(ledger.balance("alice:cash", "USD").await, "3103.75");
    assert_eq!(ledger.balance("alice:cash", "AAPL").await, "10");
    assert_eq!(ledger.balance("bob:cash", "USD").await, "1895.00");
    assert_eq!(ledger.balance("bob:cash", "AAPL").await, "90");
    assert_eq!(ledger.balance("broker:fees", "USD").await, "1.25");
    assert_eq!(ledger.balance("world:bank", "USD").await, "-5000.00");

    // The trade reads back as a trade, and as a transaction of kind "trade".
    let id = trade.body["id"].as_str().unwrap();
    let read = ledger.get(&format!("/v1/trades/{id}")).await;
    read.expect(200);
    assert_eq!(read.body, trade.body);
    let as_transaction = ledger.get(&format!("/v1/transactions/{id}")).await;
    as_transaction.expect(200);
    assert_eq!(as_transaction.body["kind"], "trade");
    assert_eq!(as_transaction.body["postings"], trade.body["postings"]);

    // History: newest first, with running balances, paginated.
    let page = ledger
        .get("/v1/accounts/alice:cash/history?asset=USD&limit=1")
        .await;
    page.expect(200);
    let items = page.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["amount"], "-1.25");
    assert_eq!(items[0]["balance_after"], "3103.75");
    assert_eq!(items[0]["counterparty"], "broker:fees");
    assert_eq!(items[0]["kind"], "trade");
    let cursor = page.body["next_cursor"].as_str().unwrap();
    let rest = ledger
        .get(&format!(
            "/v1/accounts/alice:cash/history?asset=USD&cursor={cursor}"
        ))
        .await;
    rest.expect(200);
    let amounts: Vec<&str> = rest.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["amount"].as_str().unwrap())
        .collect();
    assert_eq!(amounts, ["-1895.00", "5000.00"]);
    assert!(rest.body["next_cursor"].is_null());

    // All assets of an account's history, by id as well as code.
    let account = ledger.get("/v1/accounts/alice:cash").await;
    let account_id = account.body["id"].as_str().unwrap();
    let all = ledger
        .get(&format!("/v1/accounts/{account_id}/history"))
        .await;
    all.expect(200);
    assert_eq!(all.body["items"].as_array().unwrap().len(), 4);

    // The log: every write is one event, in order, with no gaps.
    let events = ledger.get("/v1/events?after=0&limit=1000").await;
    events.expect(200);
    let positions: Vec<i64> = events.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["position"].as_i64().unwrap())
        .collect();
    assert_eq!(positions, (1..=9).collect::<Vec<_>>());
    assert_eq!(events.body["items"][8]["type"], "TradeExecuted");
    assert_eq!(events.body["items"][8]["schema_version"], 1);
    assert_eq!(
        events.body["items"][8]["metadata"]["idempotency_key"],
        "trade-1"
    );
    assert_eq!(events.body["next_after"], 9);
    let none = ledger.get("/v1/events?after=9").await;
    assert_eq!(none.body["items"].as_array().unwrap().len(), 0);
    assert_eq!(none.body["next_after"], 9);

    ledger.finish().await;
}

#[tokio::test]
async fn a_trade_without_fees_and_an_inexact_notional() {
    let ledger = TestLedger::start().await;
    ledger.market().await;
    ledger
        .transfer("fund-alice", "world:bank", "alice:cash", "USD", "100")
        .await
        .expect(201);
    ledger
        .transfer("fund-bob", "world:bank", "bob:cash", "AAPL", "3")
        .await
        .expect(201);

    let inexact = ledger
        .post(
            "/v1/trades",
            "inexact",
            &json!({"buyer": "alice:cash", "seller": "bob:cash", "instrument": "AAPL",
                    "quantity": "3", "price": "10.333", "currency": "USD"}),
        )
        .await;
    inexact.expect(422);
    assert_eq!(inexact.code(), "amount_precision");
    let events_before = ledger.event_count().await;

    let exact = ledger
        .post(
            "/v1/trades",
            "exact",
            &json!({"buyer": "alice:cash", "seller": "bob:cash", "instrument": "AAPL",
                    "quantity": "3", "price": "10.33", "currency": "USD"}),
        )
        .await;
    exact.expect(201);
    assert_eq!(exact.body["notional"], "30.99");
    assert_eq!(exact.body["fees"], json!([]));
    assert_eq!(ledger.event_count().await, events_before + 1);
    assert_eq!(ledger.balance("alice:cash", "USD").await, "69.01");
    assert_eq!(ledger.balance("alice:cash", "AAPL").await, "3");
    ledger.finish().await;
}

#[tokio::test]
async fn a_transaction_with_several_postings_and_listing_accounts() {
    let ledger = TestLedger::start().await;
    ledger.market().await;
    let tx = ledger
        .post(
            "/v1/transactions",
            "payroll",
            &json!({
                "postings": [
                    {"source": "world:bank", "destination": "alice:cash", "asset": "USD", "amount": "10.5"},
                    {"source": "world:bank", "destination": "bob:cash", "asset": "USD", "amount": "20"}
                ],
                "metadata": {"batch": "2026-11"}
            }),
        )
        .await;
    tx.expect(201);
    assert_eq!(tx.body["kind"], "transaction");
    assert_eq!(tx.body["postings"][0]["amount"], "10.50");
    assert_eq!(tx.body["metadata"]["batch"], "2026-11");
    let id = tx.body["id"].as_str().unwrap();
    let read = ledger.get(&format!("/v1/transactions/{id}")).await;
    assert_eq!(read.body, tx.body);
    // A transaction is not a trade.
    assert_eq!(
        ledger.get(&format!("/v1/trades/{id}")).await.code(),
        "trade_not_found"
    );

    let page = ledger.get("/v1/accounts?prefix=&limit=2").await;
    page.expect(200);
    let codes: Vec<&str> = page.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["alice:cash", "bob:cash"]);
    let cursor = page.body["next_cursor"].as_str().unwrap();
    let next = ledger
        .get(&format!("/v1/accounts?limit=2&cursor={cursor}"))
        .await;
    let codes: Vec<&str> = next.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["broker:fees", "world:bank"]);
    assert!(next.body["next_cursor"].is_null());

    let by_prefix = ledger.get("/v1/accounts?prefix=world:").await;
    assert_eq!(by_prefix.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        by_prefix.body["items"][0]["balances"][0]["balance"],
        "-30.50"
    );
    let assets = ledger.get("/v1/assets").await;
    assert_eq!(assets.body["items"][0]["code"], "AAPL");
    assert_eq!(assets.body["items"][1]["scale"], 2);
    ledger.finish().await;
}
