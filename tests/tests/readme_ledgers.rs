//! The README's "Many ledgers" section, run as it is written: its shell block, with curl, against
//! a real server; then what its comments say is checked through the API.

use ledger_tests::TestLedger;

/// The first `sh` code block after the heading `## Many ledgers`.
fn section_script() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let section = readme
        .split_once("\n## Many ledgers\n")
        .expect("the README has a section on many ledgers")
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

#[tokio::test]
async fn the_readmes_many_ledgers_section_runs_as_written() {
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
