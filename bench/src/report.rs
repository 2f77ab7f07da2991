//! Throughput, latency percentiles, the live progress line, and the correctness check.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::client::{ClientResult, Connection};
use crate::readback::{balance_sums, sent_idempotency_key};
use crate::{merge_errors, Args};

/// What one client saw.
#[derive(Default)]
pub struct ClientTally {
    pub latencies_us: Vec<u32>,
    /// (position, idempotency key) of every acknowledged write.
    pub acknowledged: Vec<(i64, String)>,
    pub transfers: u64,
    pub reads: u64,
    pub errors: BTreeMap<String, u64>,
    /// With `--journal`: every request and what became of it.
    pub journal: Vec<crate::faults::Entry>,
}

pub struct Summary {
    pub requests: u64,
    pub elapsed: Duration,
    pub transfers: u64,
    pub reads: u64,
    pub percentiles_us: [(f64, u32); 5],
    pub errors: BTreeMap<String, u64>,
    /// The CPU time (user + system) this process spent over the run.
    pub cpu: Duration,
}

/// The CPU time (user + system) this process has spent so far, all threads.
pub fn process_cpu() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole `rusage` into the pointer it is given, which points at one.
    let usage = unsafe {
        if libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) != 0 {
            return Duration::ZERO;
        }
        usage.assume_init()
    };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

impl Summary {
    pub fn of(tallies: &[ClientTally], elapsed: Duration, cpu: Duration) -> Self {
        let mut latencies: Vec<u32> = tallies
            .iter()
            .flat_map(|t| t.latencies_us.iter().copied())
            .collect();
        latencies.sort_unstable();
        let at = |q: f64| -> u32 {
            if latencies.is_empty() {
                return 0;
            }
            let i = ((latencies.len() as f64) * q).ceil() as usize;
            latencies[i.saturating_sub(1).min(latencies.len() - 1)]
        };
        Self {
            requests: latencies.len() as u64,
            elapsed,
            transfers: tallies.iter().map(|t| t.transfers).sum(),
            reads: tallies.iter().map(|t| t.reads).sum(),
            percentiles_us: [
                (50.0, at(0.50)),
                (90.0, at(0.90)),
                (99.0, at(0.99)),
                (99.9, at(0.999)),
                (100.0, at(1.0)),
            ],
            errors: merge_errors(tallies),
            cpu,
        }
    }

    fn per_s(&self, n: u64) -> f64 {
        n as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn print(&self, args: &Args) {
        println!(
            "workload {:?}, {} clients, {:.1} s",
            args.workload,
            args.clients,
            self.elapsed.as_secs_f64()
        );
        println!(
            "requests      {:>10}  {:>10.0}/s",
            self.requests,
            self.per_s(self.requests)
        );
        println!(
            "transfers     {:>10}  {:>10.0}/s",
            self.transfers,
            self.per_s(self.transfers)
        );
        if self.reads > 0 {
            println!(
                "reads         {:>10}  {:>10.0}/s",
                self.reads,
                self.per_s(self.reads)
            );
        }
        let latency: Vec<String> = self
            .percentiles_us
            .iter()
            .map(|(q, us)| {
                let name = if *q >= 100.0 {
                    "max".to_owned()
                } else {
                    format!("p{q}")
                };
                format!("{name} {:.2} ms", f64::from(*us) / 1000.0)
            })
            .collect();
        println!("latency       {}", latency.join(", "));
        if self.errors.is_empty() {
            println!("errors        none");
        } else {
            for (code, count) in &self.errors {
                println!("error         {code}: {count}");
            }
        }
    }

    pub fn json(&self, check_passed: Option<bool>) -> String {
        let ms = |i: usize| f64::from(self.percentiles_us[i].1) / 1000.0;
        serde_json::json!({
            "requests": self.requests,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "requests_per_s": self.per_s(self.requests),
            "transfers_per_s": self.per_s(self.transfers),
            "latency_ms_p50": ms(0),
            "latency_ms_p90": ms(1),
            "latency_ms_p99": ms(2),
            "latency_ms_p999": ms(3),
            "latency_ms_max": ms(4),
            "errors": self.errors,
            "cpu_ms": self.cpu.as_secs_f64() * 1000.0,
            "check": check_passed.map(|passed| if passed { "passed" } else { "failed" }),
        })
        .to_string()
    }
}

pub async fn progress(
    started: Instant,
    sent: Arc<AtomicU64>,
    transfers: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) {
    let (mut last_sent, mut last_transfers, mut last_at) = (0, 0, Instant::now());
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (s, t, now) = (
            sent.load(Ordering::Relaxed),
            transfers.load(Ordering::Relaxed),
            Instant::now(),
        );
        let dt = now.duration_since(last_at).as_secs_f64().max(1e-9);
        eprint!(
            "\r{:>5.0} s  {:>8.0} req/s  {:>8.0} transfers/s  {} errors   ",
            started.elapsed().as_secs_f64(),
            (s - last_sent) as f64 / dt,
            (t - last_transfers) as f64 / dt,
            errors.load(Ordering::Relaxed)
        );
        let _ = std::io::stderr().flush();
        (last_sent, last_transfers, last_at) = (s, t, now);
    }
    eprintln!();
}

/// The result of checking the ledger after a run.
pub struct Check {
    pub failures: Vec<String>,
    pub notes: Vec<String>,
}

impl Check {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    pub fn print(&self) {
        for note in &self.notes {
            println!("check         {note}");
        }
        for failure in &self.failures {
            println!("check FAILED  {failure}");
        }
        println!(
            "check         {}",
            if self.passed() { "passed" } else { "FAILED" }
        );
    }
}

/// Checks, against the server: the log grew by exactly the acknowledged writes, each at the
/// position it was acknowledged with and under its idempotency key; every asset's balances sum
/// to zero. Assumes nothing else wrote during the run.
pub async fn check(args: &Args, tallies: &[ClientTally], start: i64) -> ClientResult<Check> {
    let mut check = Check {
        failures: Vec::new(),
        notes: Vec::new(),
    };
    let mut connection = Connection::open(args.addr).await?;
    let end = crate::setup::head(args.addr).await?;
    let acknowledged: HashMap<i64, &str> = tallies
        .iter()
        .flat_map(|t| t.acknowledged.iter().map(|(p, k)| (*p, k.as_str())))
        .collect();
    let acknowledged_count: usize = tallies.iter().map(|t| t.acknowledged.len()).sum();
    if acknowledged.len() != acknowledged_count {
        check.failures.push(format!(
            "{acknowledged_count} acknowledged writes share {} positions",
            acknowledged.len()
        ));
    }
    let grown = end - start;
    if grown != acknowledged_count as i64 {
        check.failures.push(format!(
            "the log grew by {grown} events but {acknowledged_count} writes were acknowledged"
        ));
    }

    // Every event of the run is an acknowledged write, under the same key.
    let mut after = start;
    let mut seen = 0usize;
    while after < end {
        let answer = connection
            .get(&format!("/v1/events?after={after}&limit=1000"))
            .await?;
        let page: Value = serde_json::from_slice(&answer.body)?;
        let items = page["items"].as_array().cloned().unwrap_or_default();
        if items.is_empty() {
            check.failures.push(format!(
                "the log has no events after {after}, expected up to {end}"
            ));
            break;
        }
        for event in &items {
            let position = event["position"].as_i64().unwrap_or(0);
            if position > end {
                break;
            }
            let key = sent_idempotency_key(event).unwrap_or("");
            match acknowledged.get(&position) {
                Some(expected) if *expected == key => seen += 1,
                Some(expected) => check.failures.push(format!(
                    "position {position} holds key {key:?}, acknowledged as {expected:?}"
                )),
                None => check.failures.push(format!(
                    "position {position} ({key:?}) was never acknowledged"
                )),
            }
            after = position;
        }
    }
    if seen != acknowledged.len() {
        check.failures.push(format!(
            "{} acknowledged writes are missing from the log",
            acknowledged.len().saturating_sub(seen)
        ));
    }
    check.notes.push(format!(
        "{seen} acknowledged writes found in the log at positions {}..={end}",
        start + 1
    ));

    // Conservation: every asset's balances sum to zero over all accounts.
    let (sums, accounts) = balance_sums(&mut connection).await?;
    for (asset, sum) in &sums {
        if !sum.is_zero() {
            check
                .failures
                .push(format!("balances of {asset} sum to {sum}, not zero"));
        }
    }
    check.notes.push(format!(
        "balances of {} assets over {accounts} accounts sum to zero: {}",
        sums.len(),
        sums.values().all(|s| s.is_zero())
    ));
    Ok(check)
}
