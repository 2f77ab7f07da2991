//! `ledger-bench`: drives a running ledger with N concurrent keep-alive HTTP/1.1 clients for a
//! fixed time or number of requests, prints throughput and latency percentiles, and then checks
//! the ledger: every asset's balances sum to zero, the log grew by exactly the acknowledged
//! writes, and every acknowledged write is in the log at the position it was given.
//!
//! With `--journal` it survives a failing server and records what every request was told, and
//! `--verify` checks the ledger against such journals (see `faults.rs`).

mod client;
mod faults;
mod readback;
mod report;
mod setup;
mod workload;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;

use client::{ClientResult, Connection};
use faults::{Entry, Sent};
use report::{ClientTally, Summary};
use workload::{Rng, Workload};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "ledger-bench",
    about = "Load generator and correctness check for the ledger"
)]
pub struct Args {
    /// The ledger's address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    #[arg(long, value_enum, default_value = "transfers")]
    pub workload: Workload,
    /// Concurrent clients, each with its own connection.
    #[arg(long, default_value_t = 64)]
    pub clients: u32,
    /// How long to run, in seconds (ignored when --requests is given).
    #[arg(long, default_value_t = 10)]
    pub duration_s: u64,
    /// Stop after this many requests in all, instead of after --duration-s.
    #[arg(long)]
    pub requests: Option<u64>,
    /// Accounts the transfers spread over.
    #[arg(long, default_value_t = 10_000)]
    pub accounts: u64,
    /// How the accounts' codes are shaped (`tree`: spread over a tree of segments, for roll-ups).
    #[arg(long, value_enum, default_value = "flat")]
    pub codes: workload::Codes,
    /// Send every request of a book to this ledger (`/v1/ledgers/{ledger}/…`), created when
    /// missing; ledger `default`'s routes when absent. Given more than once, the clients are
    /// spread over the ledgers in turn (client i to ledger i mod n), each ledger prepared and
    /// checked on its own.
    #[arg(long)]
    pub ledger: Vec<String>,
    /// Transfers per request for the batch workload.
    #[arg(long, default_value_t = 1_000)]
    pub batch_size: usize,
    /// Skip defining assets, opening and funding accounts (they exist from an earlier run).
    #[arg(long)]
    pub no_setup: bool,
    /// Skip the correctness check.
    #[arg(long)]
    pub no_check: bool,
    /// Print the summary as one JSON line too (for scripts).
    #[arg(long)]
    pub json: bool,
    /// No live progress line.
    #[arg(long)]
    pub quiet: bool,
    /// Survive a failing server and record every request with what it was told, as JSON lines,
    /// in this file: a request that gets no answer (connection cut, or none within
    /// --request-timeout-ms) counts as cut and the client reconnects. No check at the end: run
    /// --verify on the journals once the faults are over.
    #[arg(long)]
    pub journal: Option<PathBuf>,
    /// With --journal: how long a request may wait for its answer.
    #[arg(long, default_value_t = 15_000)]
    pub request_timeout_ms: u64,
    /// With --verify: the slowest answer to a write that passes; a slower one counts as a hang.
    /// A server that is up answers within it; only a node that was paused (SIGSTOP) holds its
    /// clients longer. (Reads are bounded by --request-timeout-ms only: a whole-log audit may take
    /// long, and its wait for a connection is what the read pool bounds.)
    #[arg(long, default_value_t = 10_000)]
    pub answer_bound_ms: u64,
    /// Send no load: check the ledger against these journals (acknowledged writes in the log,
    /// writes answered with an error not in it, cut writes retried, answers replayed unchanged,
    /// no gaps, balances sum to zero, chain intact) and print the verdict as one JSON line.
    #[arg(long, num_args = 1..)]
    pub verify: Vec<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("ledger-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> ClientResult<bool> {
    if args.accounts < 2 || args.clients == 0 || args.batch_size == 0 {
        return Err("need at least 2 accounts, 1 client and a batch size of 1".into());
    }
    if !args.verify.is_empty() {
        return faults::verify(&args).await;
    }
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    // The ledgers the clients go to: `default`'s routes (None) when none is named.
    let ledgers: Vec<Option<String>> = match args.ledger.is_empty() {
        true => vec![None],
        false => args.ledger.iter().cloned().map(Some).collect(),
    };
    let mut start_positions = Vec::with_capacity(ledgers.len());
    for ledger in &ledgers {
        start_positions
            .push(client::in_ledger(ledger.clone(), prepare(&args, ledger, run_id)).await?);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let transfers_done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let budget = args.requests.map(|n| Arc::new(AtomicU64::new(n)));
    let started = Instant::now();
    let cpu_at_start = report::process_cpu();

    let mut tasks = Vec::new();
    for client in 0..args.clients {
        let args = args.clone();
        let counters = Counters {
            stop: stop.clone(),
            sent: sent.clone(),
            transfers: transfers_done.clone(),
            errors: errors.clone(),
            budget: budget.clone(),
        };
        let ledger = ledgers[client as usize % ledgers.len()].clone();
        tasks.push(tokio::spawn(client::in_ledger(ledger, async move {
            drive(args, run_id, client, counters).await
        })));
    }
    let progress = (!args.quiet).then(|| {
        let (sent, transfers, errors, stop) = (
            sent.clone(),
            transfers_done.clone(),
            errors.clone(),
            stop.clone(),
        );
        tokio::spawn(async move { report::progress(started, sent, transfers, errors, stop).await })
    });
    if args.requests.is_none() {
        tokio::time::sleep(Duration::from_secs(args.duration_s)).await;
        stop.store(true, Ordering::Relaxed);
    }
    let mut tallies = Vec::new();
    for task in tasks {
        tallies.push(task.await??);
    }
    let elapsed = started.elapsed();
    let cpu = report::process_cpu().saturating_sub(cpu_at_start);
    stop.store(true, Ordering::Relaxed);
    if let Some(p) = progress {
        let _ = p.await;
    }

    let summary = Summary::of(&tallies, elapsed, cpu);
    summary.print(&args);
    if let Some(path) = &args.journal {
        faults::write_journal(path, tallies.iter_mut().flat_map(|t| t.journal.drain(..)))?;
        if args.json {
            println!("{}", summary.json(None));
        }
        return Ok(true);
    }
    if args.no_check {
        if args.json {
            println!("{}", summary.json(None));
        }
        return Ok(true);
    }
    let passed = check_ledgers(&args, &ledgers, &start_positions, tallies).await?;
    if args.json {
        println!("{}", summary.json(Some(passed)));
    }
    Ok(passed)
}

/// Checks each ledger against the tallies of the clients that went to it (client i to ledger
/// i mod n), from the position it was at before the run; whether every check passed.
async fn check_ledgers(
    args: &Args,
    ledgers: &[Option<String>],
    start_positions: &[i64],
    mut tallies: Vec<ClientTally>,
) -> ClientResult<bool> {
    let mut passed = true;
    for (i, (ledger, start)) in ledgers.iter().zip(start_positions).enumerate() {
        let ours: Vec<ClientTally> = tallies
            .iter_mut()
            .enumerate()
            .filter(|(client, _)| client % ledgers.len() == i)
            .map(|(_, tally)| std::mem::take(tally))
            .collect();
        let check = client::in_ledger(ledger.clone(), report::check(args, &ours, *start)).await?;
        if let Some(ledger) = ledger.as_deref().filter(|_| ledgers.len() > 1) {
            println!("ledger        {ledger}");
        }
        check.print();
        passed &= check.passed();
    }
    Ok(passed)
}

/// Creates `ledger` when named and missing, and prepares its accounts (unless `--no-setup`);
/// the position its log is at before the run.
async fn prepare(args: &Args, ledger: &Option<String>, run_id: u128) -> ClientResult<i64> {
    if !args.no_setup {
        if let Some(ledger) = ledger {
            setup::create_ledger(args.addr, ledger).await?;
        }
        setup::prepare(args, run_id).await?;
    }
    setup::head(args.addr).await
}

struct Counters {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    transfers: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    budget: Option<Arc<AtomicU64>>,
}

impl Counters {
    fn take_one(&self) -> bool {
        if self.stop.load(Ordering::Relaxed) {
            return false;
        }
        match &self.budget {
            None => true,
            Some(b) => b
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_ok(),
        }
    }
}

#[derive(serde::Deserialize)]
struct BatchAnswer {
    results: Vec<BatchResult>,
}

#[derive(serde::Deserialize)]
struct BatchResult {
    status: u16,
    position: Option<i64>,
    body: serde_json::Value,
}

/// One client: its own connection, its own pre-built bodies, until told to stop.
async fn drive(
    args: Args,
    run_id: u128,
    client: u32,
    counters: Counters,
) -> ClientResult<ClientTally> {
    let mut connection = Some(Connection::open(args.addr).await?);
    let mut rng = Rng::new(run_id as u64 ^ (u64::from(client) << 32) ^ 0x5EED);
    let (path, transfers_per_request) = workload::write_path(args.workload, args.batch_size);
    let prebuilt = match args.workload {
        Workload::Batch => args.batch_size * 4,
        _ => 4096,
    };
    let bodies = workload::bodies(args.workload, &mut rng, args.codes, args.accounts, prebuilt);
    let mut tally = ClientTally::default();
    let mut last_position = 0i64;
    let mut n: u64 = 0;
    while counters.take_one() {
        n += 1;
        let key = format!("{run_id}-{client}-{n}");
        let read = args.workload == Workload::Reads
            || (args.workload == Workload::Mixed && rng.below(5) == 0);
        let request_started = Instant::now();
        let (target, body) = if args.workload == Workload::Reads {
            (workload::slow_read_path(), Bytes::new())
        } else if read {
            let account = args.codes.account(rng.below(args.accounts));
            let target = format!("/v1/accounts/{account}?min_position={last_position}");
            (target, Bytes::new())
        } else if args.workload == Workload::Batch {
            let offset = (n as usize * args.batch_size) % bodies.len();
            let end = (offset + args.batch_size).min(bodies.len());
            let body = workload::batch_body(&bodies[offset..end], &key, false);
            (path.to_owned(), body)
        } else {
            (path.to_owned(), bodies[(n as usize) % bodies.len()].clone())
        };
        let key = (!read).then_some(key);
        let sent = faults::send(
            &mut connection,
            &args,
            key.as_deref(),
            &target,
            body.clone(),
        )
        .await?;
        let elapsed = request_started.elapsed();
        if args.journal.is_some() && !matches!(sent, Sent::Unsent) {
            let ms = elapsed.as_millis() as u64;
            tally
                .journal
                .push(Entry::new(key.as_deref(), &target, &body, &sent, ms));
        }
        let answer = match sent {
            Sent::Answered(answer) => answer,
            Sent::Unsent => continue,
            Sent::Cut { timed_out } => {
                let what = if timed_out { "timed_out" } else { "cut" };
                *tally.errors.entry(what.to_owned()).or_default() += 1;
                counters.errors.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        let key = key.unwrap_or_default();
        tally.latencies_us.push(elapsed.as_micros() as u32);
        counters.sent.fetch_add(1, Ordering::Relaxed);
        if read {
            tally.reads += 1;
            if answer.status != 200 {
                *tally.errors.entry(answer.code()).or_default() += 1;
                counters.errors.fetch_add(1, Ordering::Relaxed);
            }
            continue;
        }
        if args.workload == Workload::Batch && answer.status == 200 {
            let batch: BatchAnswer = serde_json::from_slice(&answer.body)?;
            for (i, result) in batch.results.iter().enumerate() {
                match (result.status, result.position) {
                    (201, Some(position)) => {
                        tally.acknowledged.push((position, format!("{key}-{i}")));
                        last_position = last_position.max(position);
                    }
                    _ => {
                        let code = result
                            .body
                            .get("code")
                            .and_then(|c| c.as_str())
                            .unwrap_or("unknown");
                        *tally.errors.entry(code.to_owned()).or_default() += 1;
                    }
                }
            }
            let accepted = batch.results.iter().filter(|r| r.status == 201).count() as u64;
            tally.transfers += accepted;
            counters.transfers.fetch_add(accepted, Ordering::Relaxed);
            continue;
        }
        match (answer.status, answer.position) {
            // A transfer between ledgers has a position in each ledger, and answers none.
            (201, None) if args.workload == Workload::LedgerTransfers => {
                tally.transfers += transfers_per_request;
                counters
                    .transfers
                    .fetch_add(transfers_per_request, Ordering::Relaxed);
            }
            (201, Some(position)) => {
                tally.acknowledged.push((position, key));
                tally.transfers += transfers_per_request;
                counters
                    .transfers
                    .fetch_add(transfers_per_request, Ordering::Relaxed);
                last_position = position;
            }
            _ => {
                *tally.errors.entry(answer.code()).or_default() += 1;
                counters.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    Ok(tally)
}

/// Errors by code, merged over clients.
pub fn merge_errors(tallies: &[ClientTally]) -> BTreeMap<String, u64> {
    let mut errors = BTreeMap::new();
    for t in tallies {
        for (code, count) in &t.errors {
            *errors.entry(code.clone()).or_default() += count;
        }
    }
    errors
}
