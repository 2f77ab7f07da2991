//! The README's "Accounting time" section, run as it is written: its shell block, with curl,
//! against a real server; then what its comments say is checked through the API.

use ledger_tests::serde_json::Value;
use ledger_tests::TestLedger;

/// The first `sh` code block after the heading `## Accounting time`.
fn section_script() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let section = readme
        .split_once("\n## Accounting time\n")
        .expect("the README has a section on accounting time")
        .1;
    let block = section
        .split_once("```sh\n")
        .expect("the section has a shell block")
        .1;
    block
        .split_once("```")
        .expect("the block ends")
        .0
        .to_owned()
}

/// The JSON documents the script printed, one per curl, up to the first that is not (the CSV).
fn documents(stdout: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut stream = ledger_tests::serde_json::Deserializer::from_str(stdout).into_iter::<Value>();
    while let Some(Ok(value)) = stream.next() {
        out.push(value);
    }
    out
}

#[tokio::test]
async fn the_readmes_accounting_time_section_runs_as_written() {
    let ledger = TestLedger::start().await;
    let script = section_script();
    let url = ledger.base.clone();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("bash")
            .args(["-euo", "pipefail", "-c"])
            .arg(format!(
                "L={url}\nJ='content-type: application/json'\n{script}"
            ))
            .output()
            .expect("bash")
    })
    .await
    .expect("the script ran");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The payment is at position 4, as the comment and the known_at_position after it say.
    let printed = documents(&stdout);
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
