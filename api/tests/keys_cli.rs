//! `ledger keys create|list|revoke`, run as the binary an operator runs: the way to the first
//! admin key.

use std::process::Command;

use infrastructure::testing::TestDatabase;
use serde_json::Value;

fn ledger_keys(database_url: &str, args: &[&str]) -> (bool, Vec<Value>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_ledger"))
        .arg("keys")
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("ledger runs");
    let lines = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.success(), lines, stderr)
}

#[tokio::test]
async fn keys_are_created_listed_and_revoked_from_the_command_line() {
    let database = TestDatabase::create().await.expect("test database");
    let url = database.url().to_owned();

    let (ok, created, _) = ledger_keys(&url, &["create", "--name", "ops", "--scope", "admin"]);
    assert!(ok);
    let secret = created[0]["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("lk_") && secret.len() == 67);
    let (ok, created, _) = ledger_keys(&url, &["create", "--name", "svc", "--scope", "read,write"]);
    assert!(ok);
    assert_eq!(created[0]["scopes"], serde_json::json!(["read", "write"]));

    // The secret is stored as a hash only: not in the table, not in the list.
    let pool = infrastructure::db::read_pool(
        infrastructure::db::connect_options(&url).unwrap(),
        &infrastructure::db::PoolConfig::default(),
    );
    let dump: String = sqlx::query_scalar("SELECT string_agg(t::text, ' ') FROM api_keys t")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(!dump.contains(&secret[3..]));
    let found = infrastructure::api_keys::find(&pool, &secret)
        .await
        .unwrap();
    assert_eq!(found.map(|k| k.name), Some("ops".to_owned()));

    let (ok, listed, _) = ledger_keys(&url, &["list"]);
    assert!(ok);
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|k| k.get("secret").is_none()));

    let prefix = listed[1]["prefix"].as_str().unwrap().to_owned();
    let (ok, revoked, _) = ledger_keys(&url, &["revoke", &prefix]);
    assert!(ok);
    assert!(revoked[0]["revoked_at"].is_string());
    let (ok, _, stderr) = ledger_keys(&url, &["revoke", "lk_000000000"]);
    assert!(!ok, "revoking an unknown key fails");
    assert!(stderr.contains("no API key"), "{stderr}");
    let (ok, _, stderr) = ledger_keys(&url, &["create", "--name", "x", "--scope", "root"]);
    assert!(!ok);
    assert!(stderr.contains("not a scope"), "{stderr}");

    pool.close().await;
    let _ = database.drop_database().await;
}
