//! The README's "Trading" section, run as it is written: its shell block, with curl, against a
//! real server; then what its comments say is checked through the API.

use ledger_tests::TestLedger;

#[tokio::test]
async fn the_readmes_trading_section_runs_as_written() {
    let ledger = TestLedger::start().await;
    let stdout = ledger_tests::run_readme_section("Trading", &ledger.base).await;
    let printed = ledger_tests::json_documents(&stdout);
    // The T+1 buy was booked pending, to settle tomorrow.
    let buy = printed
        .iter()
        .find(|d| d["settlement_date"].is_string())
        .unwrap_or_else(|| panic!("the T+1 buy: {stdout}"));
    assert_eq!(buy["status"], "pending", "{buy}");
    // While it was pending: 150 by trade date, 100 settled, two lots; the ladder's totals.
    let pending = printed
        .iter()
        .find(|d| d["positions"][0]["unsettled"] == "50")
        .unwrap_or_else(|| panic!("the positions while the buy was pending: {stdout}"));
    let aapl = &pending["positions"][0];
    assert_eq!(
        (&aapl["quantity"], &aapl["settled"]),
        (&"150".into(), &"100".into())
    );
    assert_eq!(aapl["lots"][1]["cost"], "9505.00");
    let ladder = printed
        .iter()
        .find(|d| {
            d["items"].is_array() && d["totals"].is_array() && d["items"][0]["date"].is_string()
        })
        .unwrap_or_else(|| panic!("the ladder: {stdout}"));
    assert!(ladder["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["asset"] == "AAPL" && i["due_in"] == "50"));
    // After the sale: 2,198.00 realized; after the mark, 597.00 unrealized on 6,300.00.
    for text in ["2198.00", "597.00", "6300.00"] {
        assert!(stdout.contains(text), "{text} not in {stdout}");
    }
    let positions = ledger
        .get("/v1/ledgers/trading/accounts/fund:alpha/positions")
        .await;
    let aapl = &positions.body["positions"][0];
    assert_eq!(aapl["quantity"], "30");
    assert_eq!(aapl["cost_basis"], "5703.00");
    assert_eq!(aapl["realized"], "2198.00");
    assert_eq!(aapl["unrealized"], "597.00");
    ledger.finish().await;
}
