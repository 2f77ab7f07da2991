//! The README's "Accounting time" section, run as it is written: its shell block, with curl,
//! against a real server; then what its comments say is checked through the API.

use ledger_tests::TestLedger;

#[tokio::test]
async fn the_readmes_accounting_time_section_runs_as_written() {
    let ledger = TestLedger::start().await;
    let stdout = ledger_tests::run_readme_section("Accounting time", &ledger.base).await;
    // The payment is at position 4, as the comment and the known_at_position after it say.
    let printed = ledger_tests::json_documents(&stdout);
    let payment = printed
        .iter()
        .find(|d| d["effective_at"].is_string() && d["position"] == 4)
        .unwrap_or_else(|| panic!("the payment at position 4: {stdout}"));
    assert_ne!(payment["effective_at"], payment["recorded_at"]);
    for (expected, text) in [
        ("as known now", r#""balance":"90.00""#),
        ("as known before the fix", r#""balance":"100.00""#),
        ("the close", r#""action":"closed""#),
        ("the refusal", r#""code":"period_closed""#),
        ("the dry run", r#""dry_run":true"#),
        ("the trial balance as CSV", "customer:acme,USD,90.00"),
    ] {
        assert!(stdout.contains(text), "{expected}: {text} not in {stdout}");
    }
    // The dry run appended nothing and used no key; the refused write appended nothing.
    let acme = ledger.get("/v1/ledgers/books/accounts/customer:acme").await;
    assert_eq!(acme.body["balances"][0]["balance"], "90.00");
    assert_eq!(
        ledger.get("/v1/ledgers/books").await.body["head_position"],
        6
    );
    ledger.finish().await;
}
