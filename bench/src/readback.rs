//! What the load generator reads back from the ledger to check it, shared by the run's check
//! (`report`) and the check of fault journals (`faults`).

use std::collections::BTreeMap;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::Value;

use crate::client::{ClientResult, Connection};

/// The sum of every asset's balances over all accounts (zero when money is conserved), and how
/// many accounts there are.
pub async fn balance_sums(
    connection: &mut Connection,
) -> ClientResult<(BTreeMap<String, Decimal>, u64)> {
    let mut sums: BTreeMap<String, Decimal> = BTreeMap::new();
    let mut cursor: Option<String> = None;
    let mut accounts = 0u64;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/accounts?limit=1000&cursor={c}"),
            None => "/v1/accounts?limit=1000".to_owned(),
        };
        let page: Value = serde_json::from_slice(&connection.get(&path).await?.body)?;
        for account in page["items"].as_array().into_iter().flatten() {
            accounts += 1;
            for balance in account["balances"].as_array().into_iter().flatten() {
                let asset = balance["asset"].as_str().unwrap_or("?").to_owned();
                let amount = Decimal::from_str(balance["balance"].as_str().unwrap_or("x"))
                    .map_err(|e| format!("balance of {}: {e}", account["code"]))?;
                *sums.entry(asset).or_default() += amount;
            }
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return Ok((sums, accounts)),
        }
    }
}

/// The `Idempotency-Key` an event's request was sent with. The log stores keys scoped by the API
/// key that sent them (`<key id>:<key>`); without authentication, as sent.
pub fn sent_idempotency_key(event: &Value) -> Option<&str> {
    let stored = event["metadata"]["idempotency_key"].as_str()?;
    Some(
        event["metadata"]["api_key_id"]
            .as_str()
            .and_then(|id| stored.strip_prefix(id)?.strip_prefix(':'))
            .unwrap_or(stored),
    )
}
