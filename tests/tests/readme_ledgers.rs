//! The README's "Many ledgers" section, run as it is written: its shell block, with curl, against
//! a real server; then what its comments say is checked through the API.

use ledger_tests::TestLedger;

#[tokio::test]
async fn the_readmes_many_ledgers_section_runs_as_written() {
    let ledger = TestLedger::start().await;
    let stdout = ledger_tests::run_readme_section("Many ledgers", &ledger.base).await;
    assert!(stdout.contains(r#""state":"posted""#), "{stdout}");
    assert_eq!(
        ledger
            .get("/v1/ledgers/us/accounts/treasury:cash")
            .await
            .body["balances"][0]["balance"],
        "250.00"
    );
    assert_eq!(
        ledger.get("/v1/ledgers/eu/accounts/ledger:us").await.body["balances"][0]["balance"],
        "250.00"
    );
    assert_eq!(
        ledger.get("/v1/ledgers/us/accounts/ledger:eu").await.body["balances"][0]["balance"],
        "-250.00"
    );
    let verified = ledger.get("/v1/ledgers/eu/audit/verify").await;
    assert_eq!(verified.body["intact"], true);
    ledger.finish().await;
}
