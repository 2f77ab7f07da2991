//! Preparing the ledger for a run: assets, accounts, and money to move.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use crate::client::{ClientResult, Connection};
use crate::workload::{HOUSE, WORLD};
use crate::Args;

/// Connections used to open accounts in parallel.
const SETUP_CONNECTIONS: u64 = 16;
/// Transfers per funding batch.
const FUNDING_BATCH: u64 = 1_000;

/// How long `head` waits for a node's read source to catch up with the primary.
const CATCH_UP_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The position the ledger is at. A node that reads from a replica answers from where the replica
/// is: first wait (bounded) until `/readyz` says it trails the primary by nothing.
pub async fn head(addr: SocketAddr) -> ClientResult<i64> {
    let mut connection = Connection::open(addr).await?;
    let deadline = std::time::Instant::now() + CATCH_UP_WAIT;
    while std::time::Instant::now() < deadline {
        let ready = connection.get("/readyz").await?;
        let lag = serde_json::from_slice::<serde_json::Value>(&ready.body)
            .ok()
            .and_then(|r| r["read_source"]["lag_events"].as_i64());
        if lag.is_none_or(|lag| lag == 0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let answer = connection.get("/v1/events?limit=1").await?;
    answer.position.ok_or_else(|| {
        format!(
            "no Ledger-Position from the ledger (status {})",
            answer.status
        )
        .into()
    })
}

fn created_or_exists(status: u16, what: &str) -> ClientResult<()> {
    match status {
        201 | 409 => Ok(()),
        other => Err(format!("setting up {what}: HTTP {other}").into()),
    }
}

/// Defines USD and AAPL, opens the accounts (an account that exists is fine), and gives every
/// account plenty of both, so that the run measures transfers rather than refusals.
/// Creates ledger `name`, unless it exists.
pub async fn create_ledger(addr: SocketAddr, name: &str) -> ClientResult<()> {
    let mut connection = Connection::open(addr).await?;
    let body = format!(r#"{{"name":"{name}"}}"#);
    let answer = connection
        .post(
            "/v1/ledgers",
            &format!("bench-ledger-{name}"),
            Bytes::from(body),
        )
        .await?;
    match answer.status {
        201 | 409 => Ok(()),
        status => Err(format!("creating ledger {name}: HTTP {status}").into()),
    }
}

pub async fn prepare(args: &Args, run_id: u128) -> ClientResult<()> {
    let started = std::time::Instant::now();
    let mut connection = Connection::open(args.addr).await?;
    for (code, scale) in [("USD", 2), ("AAPL", 0)] {
        let body = format!(r#"{{"code":"{code}","scale":{scale}}}"#);
        let answer = connection
            .post(
                "/v1/assets",
                &format!("bench-asset-{code}"),
                Bytes::from(body),
            )
            .await?;
        created_or_exists(answer.status, code)?;
    }
    for (code, allow_negative) in [(WORLD, true), (HOUSE, false)] {
        let body = format!(r#"{{"code":"{code}","allow_negative":{allow_negative}}}"#);
        let answer = connection
            .post(
                "/v1/accounts",
                &format!("bench-open-{code}"),
                Bytes::from(body),
            )
            .await?;
        created_or_exists(answer.status, code)?;
    }

    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..SETUP_CONNECTIONS {
        let (next, accounts, addr, codes) = (next.clone(), args.accounts, args.addr, args.codes);
        let ledger = crate::client::current_ledger();
        tasks.push(tokio::spawn(crate::client::in_ledger(ledger, async move {
            let mut connection = Connection::open(addr).await?;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= accounts {
                    return ClientResult::Ok(());
                }
                let code = codes.account(i);
                let body = format!(r#"{{"code":"{code}"}}"#);
                let answer = connection
                    .post(
                        "/v1/accounts",
                        &format!("bench-open-{code}"),
                        Bytes::from(body),
                    )
                    .await?;
                created_or_exists(answer.status, &code)?;
            }
        })));
    }
    for task in tasks {
        task.await??;
    }

    // A connection of its own: the first one sat idle while the accounts were opened, long
    // enough (a million accounts) for the server to close it.
    let mut connection = Connection::open(args.addr).await?;
    for first in (0..args.accounts).step_by(FUNDING_BATCH as usize) {
        let last = (first + FUNDING_BATCH).min(args.accounts);
        let mut commands = Vec::new();
        for i in first..last {
            for (asset, amount) in [("USD", "1000000.00"), ("AAPL", "1000000")] {
                commands.push(format!(
                    r#"{{"idempotency_key":"bench-fund-{run_id}-{i}-{asset}","transfer":{{"source":"{WORLD}","destination":"{}","asset":"{asset}","amount":"{amount}"}}}}"#,
                    args.codes.account(i)
                ));
            }
        }
        let body = format!(r#"{{"commands":[{}]}}"#, commands.join(","));
        let answer = connection
            .post("/v1/transactions/batch", "bench-fund", Bytes::from(body))
            .await?;
        if answer.status != 200 {
            return Err(format!("funding accounts: HTTP {}", answer.status).into());
        }
    }
    eprintln!(
        "setup: {} accounts opened and funded in {:.1} s",
        args.accounts,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
