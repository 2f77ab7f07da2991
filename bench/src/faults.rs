//! Load that survives a failing server, and the check after it (`scripts/faults.sh` drives both).
//!
//! With `--journal`, a client whose request breaks (connection cut, or no answer within
//! `--request-timeout-ms`) records it as cut, reconnects and goes on; every request and its answer
//! go to the journal. `--verify` then holds the ledger to what the clients were told: every
//! acknowledged write is in the log at its position, no write answered with an error is, every
//! cut write retried with its key gets an authoritative answer, every answer is replayed
//! unchanged, positions have no gaps, each asset's balances sum to zero and the chain verifies.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::client::{Answer, ClientResult, Connection};
use crate::readback::{balance_sums, sent_idempotency_key};
use crate::Args;

/// Connections that retry and replay at once during the check.
const CHECK_CONNECTIONS: usize = 16;
/// How many times the check retries a request that still gets a 503.
const CHECK_ATTEMPTS: u32 = 40;

/// What became of one request.
pub enum Sent {
    Answered(Answer),
    /// Sent (or maybe sent) but no answer: its outcome is unknown.
    Cut {
        timed_out: bool,
    },
    /// The server could not be reached: nothing was sent.
    Unsent,
}

/// One line of the journal.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Entry {
    /// The idempotency key; none for a read.
    pub key: Option<String>,
    pub path: String,
    /// The request body of a write.
    pub body: Option<String>,
    /// None: cut.
    pub status: Option<u16>,
    pub timed_out: bool,
    pub code: Option<String>,
    pub position: Option<i64>,
    /// The response body of a write.
    pub answer: Option<String>,
    pub ms: u64,
    /// When the answer (or the cut) came, in milliseconds since the Unix epoch: with `ms`, when
    /// the request was sent, so that a script can tell what happened after a fault.
    #[serde(default)]
    pub at_ms: u64,
}

impl Entry {
    pub fn new(key: Option<&str>, path: &str, body: &Bytes, sent: &Sent, ms: u64) -> Self {
        let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
        let (status, timed_out, code, position, answer) = match sent {
            Sent::Answered(a) => (
                Some(a.status),
                false,
                (a.status >= 300).then(|| a.code()),
                a.position,
                key.map(|_| text(&a.body)),
            ),
            Sent::Cut { timed_out } => (None, *timed_out, None, None, None),
            Sent::Unsent => (None, false, None, None, None),
        };
        Self {
            key: key.map(str::to_owned),
            path: path.to_owned(),
            body: key.map(|_| text(body)),
            status,
            timed_out,
            code,
            position,
            answer,
            ms,
            at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        }
    }

    fn is_unknown(&self) -> bool {
        self.status.is_none() || self.code.as_deref() == Some("commit_outcome_unknown")
    }
}

/// Sends one request on `connection`, opening it first when it is gone. Without a journal any
/// failure ends the run, as it always did; with one, failures are outcomes.
pub async fn send(
    connection: &mut Option<Connection>,
    args: &Args,
    key: Option<&str>,
    path: &str,
    body: Bytes,
) -> ClientResult<Sent> {
    let journaled = args.journal.is_some();
    if connection.is_none() {
        match tokio::time::timeout(Duration::from_secs(1), Connection::open(args.addr)).await {
            Ok(Ok(opened)) => *connection = Some(opened),
            Ok(Err(e)) if !journaled => return Err(e),
            _ => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                return Ok(Sent::Unsent);
            }
        }
    }
    let Some(open) = connection.as_mut() else {
        return Ok(Sent::Unsent);
    };
    let method = if key.is_some() {
        Method::POST
    } else {
        Method::GET
    };
    let request = open.send(method, path, key, body);
    if !journaled {
        return Ok(Sent::Answered(request.await?));
    }
    let timeout = Duration::from_millis(args.request_timeout_ms);
    let sent = match tokio::time::timeout(timeout, request).await {
        Ok(Ok(answer)) => return Ok(Sent::Answered(answer)),
        Ok(Err(_)) => Sent::Cut { timed_out: false },
        Err(_) => Sent::Cut { timed_out: true },
    };
    *connection = None;
    Ok(sent)
}

pub fn write_journal(path: &Path, entries: impl Iterator<Item = Entry>) -> ClientResult<()> {
    let mut out = String::new();
    for entry in entries {
        out.push_str(&serde_json::to_string(&entry)?);
        out.push('\n');
    }
    std::fs::write(path, out)?;
    Ok(())
}

fn read_journals(paths: &[std::path::PathBuf]) -> ClientResult<Vec<Entry>> {
    let mut entries = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read journal {}: {e}", path.display()))?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            entries.push(serde_json::from_str(line)?);
        }
    }
    Ok(entries)
}

/// What the check found; printed as one JSON line.
#[derive(Serialize, Default)]
struct Verdict {
    writes: usize,
    acknowledged: usize,
    acknowledged_in_log: usize,
    errors: usize,
    errors_not_in_log: usize,
    unknown: usize,
    unknown_resolved: usize,
    unknown_resolved_in_log: usize,
    replays: usize,
    replays_identical: usize,
    reads: usize,
    reads_unavailable: usize,
    /// Reads answered 200 from a position older than the `min_position` they asked for.
    reads_stale: usize,
    /// Answers with a 5xx other than 503 (a 500 is a bug).
    server_errors: usize,
    timed_out: usize,
    /// The slowest answer to a write.
    max_answer_ms: u64,
    max_503_ms: u64,
    errors_by_code: BTreeMap<String, usize>,
    head: i64,
    positions_contiguous: bool,
    sum_zero: bool,
    chain_intact: bool,
    failures: Vec<String>,
    passed: bool,
}

/// The `min_position` a read's path asked for (`None` when it asked for none).
fn asked_min_position(path: &str) -> Option<i64> {
    let query = path.split_once('?')?.1;
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("min_position="))
        .and_then(|p| p.parse().ok())
        .filter(|p| *p > 0)
}

/// Retries `entry`'s write with its key until it gets an answer that is not a 503.
async fn retry(connection: &mut Option<Connection>, args: &Args, entry: &Entry) -> Option<Answer> {
    let (Some(key), Some(body)) = (&entry.key, &entry.body) else {
        return None;
    };
    for _ in 0..CHECK_ATTEMPTS {
        if connection.is_none() {
            *connection = Connection::open(args.addr).await.ok();
        }
        if let Some(open) = connection.as_mut() {
            let sent = tokio::time::timeout(
                Duration::from_millis(args.request_timeout_ms),
                open.post(&entry.path, key, Bytes::from(body.clone())),
            )
            .await;
            match sent {
                Ok(Ok(answer)) if answer.status != 503 => return Some(answer),
                Ok(Ok(_)) => {}
                _ => *connection = None,
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    None
}

/// Runs `work` over `items` on a few connections at once.
async fn on_connections<T, R, F, Fut>(args: &Args, items: Vec<T>, work: F) -> Vec<R>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(Option<Connection>, Args, T) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = (Option<Connection>, R)> + Send,
{
    let queue = Arc::new(Mutex::new(
        items.into_iter().enumerate().collect::<Vec<_>>(),
    ));
    let mut tasks = Vec::new();
    for _ in 0..CHECK_CONNECTIONS {
        let (queue, work, args) = (queue.clone(), work.clone(), args.clone());
        tasks.push(tokio::spawn(async move {
            let mut connection = None;
            let mut out = Vec::new();
            loop {
                let Some((i, item)) = queue.lock().await.pop() else {
                    return out;
                };
                let (kept, result) = work(connection, args.clone(), item).await;
                connection = kept;
                out.push((i, result));
            }
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        if let Ok(part) = task.await {
            results.extend(part);
        }
    }
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// The log's idempotency keys by position up to at least `head`, and whether positions run 1, 2,
/// 3… without a gap.
async fn scan_log(
    connection: &mut Connection,
    head: i64,
) -> ClientResult<(HashMap<String, i64>, i64, bool)> {
    let mut keys = HashMap::new();
    let mut after = 0i64;
    let mut contiguous = true;
    loop {
        let answer = connection
            .get(&format!(
                "/v1/events?after={after}&limit=1000&min_position={head}"
            ))
            .await?;
        if answer.status != 200 {
            return Err(format!("reading the log: HTTP {}", answer.status).into());
        }
        let page: Value = serde_json::from_slice(&answer.body)?;
        let items = page["items"].as_array().cloned().unwrap_or_default();
        if items.is_empty() {
            return Ok((keys, after, contiguous));
        }
        for event in &items {
            let position = event["position"].as_i64().unwrap_or(-1);
            contiguous &= position == after + 1;
            if let Some(key) = sent_idempotency_key(event) {
                if keys.insert(key.to_owned(), position).is_some() {
                    contiguous = false;
                }
            }
            after = position;
        }
    }
}

fn same_answer(entry: &Entry, answer: &Answer) -> bool {
    let parse = |s: &[u8]| serde_json::from_slice::<Value>(s).ok();
    let original = entry.answer.as_deref().map(str::as_bytes).and_then(parse);
    Some(answer.status) == entry.status
        && answer.replayed
        && original.is_some()
        && original == parse(&answer.body)
}

/// `ledger-bench --verify JOURNAL…`: the check described at the top of this file.
pub async fn verify(args: &Args) -> ClientResult<bool> {
    let started = Instant::now();
    let entries = read_journals(&args.verify)?;
    let mut v = Verdict::default();
    let (mut writes, mut unknown) = (Vec::new(), Vec::new());
    for entry in entries {
        if entry.status.is_some() && entry.key.is_some() {
            v.max_answer_ms = v.max_answer_ms.max(entry.ms);
        }
        match entry.status {
            Some(503) => v.max_503_ms = v.max_503_ms.max(entry.ms),
            Some(s) if s >= 500 => v.server_errors += 1,
            _ => {}
        }
        if entry.timed_out {
            v.timed_out += 1;
        }
        if let Some(code) = &entry.code {
            *v.errors_by_code.entry(code.clone()).or_default() += 1;
        }
        if entry.key.is_none() {
            v.reads += 1;
            if entry.status == Some(503) {
                v.reads_unavailable += 1;
            }
            if entry.status == Some(200) && entry.position < asked_min_position(&entry.path) {
                v.reads_stale += 1;
            }
            continue;
        }
        v.writes += 1;
        if entry.is_unknown() {
            unknown.push(entry);
        } else {
            writes.push(entry);
        }
    }
    v.unknown = unknown.len();

    // A write whose outcome is unknown is retried with its key: that answer is authoritative.
    let resolved = on_connections(
        args,
        unknown,
        |mut connection, args, mut entry| async move {
            let answer = retry(&mut connection, &args, &entry).await;
            if let Some(answer) = answer {
                entry.status = Some(answer.status);
                entry.code = (answer.status >= 300).then(|| answer.code());
                entry.position = answer.position;
                entry.answer = Some(String::from_utf8_lossy(&answer.body).into_owned());
                (connection, Some(entry))
            } else {
                (connection, None)
            }
        },
    )
    .await;
    let resolved: Vec<Entry> = resolved.into_iter().flatten().collect();
    v.unknown_resolved = resolved.len();
    if v.unknown_resolved < v.unknown {
        v.failures.push(format!(
            "{} writes of unknown outcome got no answer when retried",
            v.unknown - v.unknown_resolved
        ));
    }

    // A node reading from a replica: the whole log, as far as the primary has it.
    let primary_head = crate::setup::head(args.addr).await?;
    let mut connection = Connection::open(args.addr).await?;
    let (log, head, contiguous) = scan_log(&mut connection, primary_head).await?;
    v.head = head;
    v.positions_contiguous = contiguous;
    if !contiguous {
        v.failures
            .push("the log's positions have a gap, or a key appears twice".into());
    }
    let in_log = |e: &Entry| e.key.as_ref().and_then(|k| log.get(k)).copied();
    for entry in &writes {
        match entry.status {
            Some(200..=299) => {
                v.acknowledged += 1;
                if in_log(entry).is_some() && in_log(entry) == entry.position {
                    v.acknowledged_in_log += 1;
                } else {
                    v.failures.push(format!(
                        "acknowledged write {:?} (position {:?}) is not in the log there",
                        entry.key, entry.position
                    ));
                }
            }
            Some(s) if s >= 500 => {
                v.errors += 1;
                if in_log(entry).is_none() {
                    v.errors_not_in_log += 1;
                } else {
                    v.failures.push(format!(
                        "write {:?} answered {s} {:?} is in the log at {:?}",
                        entry.key,
                        entry.code,
                        in_log(entry)
                    ));
                }
            }
            _ => {}
        }
    }
    for entry in &resolved {
        let accepted = matches!(entry.status, Some(200..=299));
        if accepted == (in_log(entry).is_some() && in_log(entry) == entry.position) {
            v.unknown_resolved_in_log += usize::from(accepted);
        } else {
            v.failures.push(format!(
                "retried write {:?} answered {:?} but the log has it at {:?}",
                entry.key,
                entry.status,
                in_log(entry)
            ));
        }
    }

    // Every answer the ledger stood by (success or refusal) is replayed unchanged.
    let decided: Vec<Entry> = writes
        .into_iter()
        .filter(|e| e.status.is_some_and(|s| s < 500))
        .chain(resolved)
        .collect();
    v.replays = decided.len();
    let replays = on_connections(args, decided, |mut connection, args, entry| async move {
        let identical = retry(&mut connection, &args, &entry)
            .await
            .is_some_and(|answer| same_answer(&entry, &answer));
        (connection, (identical, entry.key))
    })
    .await;
    for (identical, key) in replays {
        if identical {
            v.replays_identical += 1;
        } else if v.failures.len() < 50 {
            v.failures.push(format!(
                "the retry of {key:?} did not replay the original answer"
            ));
        }
    }

    // The replays took a while: the first connection may have been closed as idle.
    let mut connection = Connection::open(args.addr).await?;
    let (sums, _accounts) = balance_sums(&mut connection).await?;
    v.sum_zero = sums.values().all(|s| s.is_zero());
    if !v.sum_zero {
        v.failures
            .push(format!("balances do not sum to zero: {sums:?}"));
    }
    let audit = connection.get("/v1/audit/verify").await?;
    let audit: Value = serde_json::from_slice(&audit.body)?;
    v.chain_intact = audit["intact"].as_bool() == Some(true);
    if !v.chain_intact {
        v.failures
            .push(format!("the hash chain does not verify: {audit}"));
    }
    if v.reads_stale > 0 {
        v.failures.push(format!(
            "{} reads were answered from a position older than their min_position",
            v.reads_stale
        ));
    }
    if v.server_errors > 0 {
        v.failures
            .push(format!("{} answers were 5xx but not 503", v.server_errors));
    }
    if v.timed_out > 0 || v.max_answer_ms > args.answer_bound_ms {
        v.failures.push(format!(
            "{} requests got no answer within {} ms; the slowest answer to a write took {} ms (bound {} ms)",
            v.timed_out, args.request_timeout_ms, v.max_answer_ms, args.answer_bound_ms
        ));
    }
    v.passed = v.failures.is_empty();
    eprintln!(
        "verify: {} writes, {} acknowledged, {} errors, {} unknown, {} replays, in {:.1} s: {}",
        v.writes,
        v.acknowledged,
        v.errors,
        v.unknown,
        v.replays,
        started.elapsed().as_secs_f64(),
        if v.passed { "passed" } else { "FAILED" }
    );
    for failure in &v.failures {
        eprintln!("verify FAILED  {failure}");
    }
    // The verdict is one line a script passes on: every failure is in the log above, the first
    // few in the verdict.
    const FAILURES_IN_VERDICT_MAX: usize = 20;
    if v.failures.len() > FAILURES_IN_VERDICT_MAX {
        let more = v.failures.len() - FAILURES_IN_VERDICT_MAX;
        v.failures.truncate(FAILURES_IN_VERDICT_MAX);
        v.failures
            .push(format!("… and {more} more (see the verify log)"));
    }
    println!("{}", serde_json::to_string(&v)?);
    Ok(v.passed)
}
