//! `ledger` keeps stdout for data. Every subcommand, run as the real binary with its default log
//! level and text logs, writes only its output to stdout (each line is parsed here as JSON, so a
//! log line there fails the test) and its logs and progress to stderr; `serve` writes nothing to
//! stdout, also while it provisions its own PostgreSQL (initdb and pg_ctl write to stdout too).
//! An export written to stdout is a file that `ledger import` and `tools/verify_export.py` accept.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use infrastructure::testing::TestDatabase;
use serde_json::{json, Value};

/// How long `serve` may take to provision a PostgreSQL cluster and listen, on a loaded machine.
const SERVE_START_BOUND: Duration = Duration::from_secs(120);

/// What a finished command wrote.
struct Run {
    ok: bool,
    stdout: Vec<u8>,
    stderr: String,
}

impl Run {
    /// Every line of stdout, each parsed as JSON: a line that is not (a log line) fails the test.
    #[track_caller]
    fn json_lines(&self) -> Vec<Value> {
        let text = std::str::from_utf8(&self.stdout).expect("stdout is UTF-8");
        text.lines()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| {
                    panic!(
                        "stdout has a line that is not JSON ({e}): {line:?}\nstderr: {}",
                        self.stderr
                    )
                })
            })
            .collect()
    }

    /// The one JSON object a report command prints.
    #[track_caller]
    fn report(&self) -> Value {
        let mut lines = self.json_lines();
        assert_eq!(
            lines.len(),
            1,
            "one line of output; stderr: {}",
            self.stderr
        );
        lines.remove(0)
    }
}

/// `ledger ARGS`, as an operator runs it: no `RUST_LOG` (the default level, `info`), text logs.
fn ledger_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ledger"));
    command
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("LEDGER_LOG_FORMAT")
        .env_remove("DATABASE_URL")
        .env_remove("LEDGER_DATA_DIR");
    command
}

/// Where a command finds its database.
#[derive(Clone, Copy)]
enum Target<'a> {
    /// `DATABASE_URL`.
    Url(&'a str),
    /// `--data-dir`: a local cluster the command starts (initialises the first time) and stops.
    DataDir(&'a Path),
}

/// Runs `ledger ARGS` on the database at `database_url`, with `stdin` as its standard input.
fn ledger(database_url: &str, args: &[&str], stdin: &[u8]) -> Run {
    ledger_on(Target::Url(database_url), args, stdin)
}

fn ledger_on(target: Target<'_>, args: &[&str], stdin: &[u8]) -> Run {
    let mut command = ledger_command(args);
    match target {
        Target::Url(url) => command.env("DATABASE_URL", url),
        Target::DataDir(dir) => command.env("LEDGER_DATA_DIR", dir),
    };
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ledger runs");
    let mut input = child.stdin.take().expect("stdin");
    let stdin = stdin.to_vec();
    // Written beside the reads, so that a large input never waits on a full output pipe.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let output = child.wait_with_output().expect("ledger finishes");
    writer.join().expect("stdin written");
    Run {
        ok: output.status.success(),
        stdout: output.stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A database with a little of everything in its log (10 events): assets, accounts, a transfer,
/// a trade with a fee, a hold. Written through a server in this process, stopped at the end.
async fn populated_database() -> TestDatabase {
    let database = TestDatabase::create().await.expect("test database");
    let mut config = api::ServeConfig::local(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Some(database.url().to_owned()),
    );
    config.insecure_no_auth = true;
    let server = api::Server::start(&config).await.expect("server starts");
    let base = format!("http://{}", server.addr());
    let client = reqwest::Client::new();
    let requests = [
        ("/v1/assets", json!({"code": "USD", "scale": 2})),
        ("/v1/assets", json!({"code": "AAPL", "scale": 0})),
        (
            "/v1/accounts",
            json!({"code": "world:bank", "allow_negative": true}),
        ),
        ("/v1/accounts", json!({"code": "alice:cash"})),
        ("/v1/accounts", json!({"code": "bob:cash"})),
        ("/v1/accounts", json!({"code": "broker:fees"})),
        (
            "/v1/transfers",
            json!({"source": "world:bank", "destination": "alice:cash", "asset": "USD", "amount": "500.00"}),
        ),
        (
            "/v1/transfers",
            json!({"source": "world:bank", "destination": "bob:cash", "asset": "AAPL", "amount": "10"}),
        ),
        (
            "/v1/trades",
            json!({"buyer": "alice:cash", "seller": "bob:cash", "instrument": "AAPL", "quantity": "2",
                              "price": "10.50", "currency": "USD",
                              "fees": [{"payer": "alice:cash", "account": "broker:fees", "amount": "0.25"}]}),
        ),
        (
            "/v1/transfers",
            json!({"source": "alice:cash", "destination": "bob:cash", "asset": "USD", "amount": "30.00",
                                 "pending": true, "timeout_s": 3600}),
        ),
    ];
    for (index, (path, body)) in requests.iter().enumerate() {
        let response = client
            .post(format!("{base}{path}"))
            .header("idempotency-key", format!("populate-{index}"))
            .json(body)
            .send()
            .await
            .expect("POST");
        assert_eq!(response.status().as_u16(), 201, "{path} {body}");
    }
    server.stop().await.expect("server stops");
    database
}

fn verifier(export: &Path) -> (bool, Value) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tools/verify_export.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(export)
        .output()
        .expect("python3 runs");
    let report = serde_json::from_slice(&output.stdout).expect("the verifier's JSON report");
    (output.status.success(), report)
}

#[tokio::test]
async fn an_export_to_stdout_is_ndjson_that_import_and_the_independent_verifier_accept() {
    let source = populated_database().await;
    let exported = ledger(source.url(), &["export"], b"");
    assert!(exported.ok, "{}", exported.stderr);
    let events = exported.json_lines();
    assert_eq!(events.len(), 10, "one line per event");
    assert!(events.iter().all(|e| e["hash"].is_string()));
    assert!(
        exported.stderr.contains("exported"),
        "the log went to stderr: {}",
        exported.stderr
    );

    // `ledger export > log.ndjson`, then the verifier on that file.
    let path = std::env::temp_dir().join(format!("{}-stdout.ndjson", source.name()));
    std::fs::write(&path, &exported.stdout).expect("export written");
    let (ok, independent) = verifier(&path);
    assert!(ok, "{independent}");
    assert_eq!(independent["head_position"], 10);

    // `ledger export | ledger import`, into an empty database.
    let target = TestDatabase::create().await.expect("test database");
    let imported = ledger(target.url(), &["import"], &exported.stdout);
    assert!(imported.ok, "{}", imported.stderr);
    let report = imported.report();
    assert_eq!(report["events"], 10, "{report}");
    assert_eq!(report["head_hash"], independent["head_hash"]);

    let _ = std::fs::remove_file(path);
    let _ = target.drop_database().await;
    let _ = source.drop_database().await;
}

#[tokio::test]
async fn verify_and_replay_print_one_json_report_on_stdout_and_progress_on_stderr() {
    let database = populated_database().await;
    let verified = ledger(database.url(), &["verify"], b"");
    assert!(verified.ok, "{}", verified.stderr);
    let report = verified.report();
    assert_eq!(report["intact"], true, "{report}");
    assert_eq!(report["events_verified"], 10);
    // No close in this log: nothing to recompute, and nothing wrong.
    assert_eq!(report["closes"]["verified"], true, "{report}");
    assert_eq!(report["closes"]["checked"], 0, "{report}");
    assert!(
        verified.stderr.contains("verified 10 of 10 events"),
        "{}",
        verified.stderr
    );

    let replayed = ledger(database.url(), &["replay"], b"");
    assert!(replayed.ok, "{}", replayed.stderr);
    let report = replayed.report();
    assert_eq!(report["identical"], true, "{report}");
    assert_eq!(report["events"], 10);
    assert!(replayed.stderr.contains("replayed"), "{}", replayed.stderr);
    // stderr here is a pipe, as for a `serve.log` or a log collector: no colour escape codes.
    for run in [&verified, &replayed] {
        assert!(!run.stderr.contains('\x1b'), "ANSI codes in {}", run.stderr);
    }

    // `--log-format json`: every log line on stderr is one JSON object, for log collectors.
    let json_logs = ledger(database.url(), &["--log-format", "json", "export"], b"");
    assert!(json_logs.ok, "{}", json_logs.stderr);
    assert_eq!(json_logs.json_lines().len(), 10, "the export is on stdout");
    let log_lines: Vec<Value> = json_logs
        .stderr
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| serde_json::from_str(line).expect("a JSON log line"))
        .collect();
    assert!(
        !json_logs.stderr.lines().any(|line| line.contains(" INFO ")),
        "a text log line among JSON logs: {}",
        json_logs.stderr
    );
    assert!(
        log_lines
            .iter()
            .any(|line| line["level"] == "INFO" && line["fields"]["message"] == "exported"),
        "no JSON log line: {}",
        json_logs.stderr
    );

    let _ = database.drop_database().await;
}

/// A scratch directory for a local PostgreSQL cluster: `<scratch>/postgres`, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        Scratch(std::env::temp_dir().join(format!("ledger-cli-stdout-{}", uuid::Uuid::new_v4())))
    }

    fn data_dir(&self) -> PathBuf {
        self.0.join("postgres")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The way issue 14 found the keys' JSON mixed with log lines: on a local cluster, which the
/// command initialises, starts and stops (and logs that it does).
#[test]
fn keys_create_list_and_revoke_on_a_local_postgres_print_only_json_on_stdout() {
    let scratch = Scratch::new();
    let data_dir = scratch.data_dir();
    let local = Target::DataDir(&data_dir);
    let created = ledger_on(
        local,
        &["keys", "create", "--name", "ops", "--scope", "admin"],
        b"",
    );
    assert!(created.ok, "{}", created.stderr);
    let key = created.report();
    assert!(key["secret"].as_str().is_some_and(|s| s.starts_with("lk_")));
    for logged in [
        "initialising a new PostgreSQL data directory",
        "stopped local PostgreSQL",
        "shown this once",
    ] {
        assert!(
            created.stderr.contains(logged),
            "{logged:?} not on stderr:\n{}",
            created.stderr
        );
    }

    let listed = ledger_on(local, &["keys", "list"], b"");
    assert!(listed.ok, "{}", listed.stderr);
    assert_eq!(listed.report()["prefix"], key["prefix"]);
    assert!(
        listed.stderr.contains("starting local PostgreSQL"),
        "{}",
        listed.stderr
    );

    let prefix = key["prefix"].as_str().expect("a prefix");
    let revoked = ledger_on(local, &["keys", "revoke", prefix], b"");
    assert!(revoked.ok, "{}", revoked.stderr);
    assert!(revoked.report()["revoked_at"].is_string());

    // A refusal says why on stderr and prints nothing.
    let unknown = ledger_on(local, &["keys", "revoke", "lk_000000000"], b"");
    assert!(!unknown.ok);
    assert!(unknown.stdout.is_empty(), "{:?}", unknown.stdout);
    assert!(unknown.stderr.contains("no API key"), "{}", unknown.stderr);
}

/// A `ledger serve` child process whose stderr lines are read as they come.
struct Serving {
    child: Child,
    stdout: Option<std::thread::JoinHandle<Vec<u8>>>,
    stderr_lines: mpsc::Receiver<String>,
    stderr: String,
}

impl Serving {
    fn start(args: &[&str]) -> Serving {
        let mut child = ledger_command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ledger serve starts");
        let mut stdout_pipe = child.stdout.take().expect("stdout");
        let stdout = std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = stdout_pipe.read_to_end(&mut bytes);
            bytes
        });
        let (sender, stderr_lines) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Serving {
            child,
            stdout: Some(stdout),
            stderr_lines,
            stderr: String::new(),
        }
    }

    /// Reads stderr until a line contains `text`.
    fn wait_for_log(&mut self, text: &str, bound: Duration) {
        let deadline = std::time::Instant::now() + bound;
        while !self.stderr.lines().any(|line| line.contains(text)) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.stderr_lines.recv_timeout(left) {
                Ok(line) => {
                    self.stderr.push_str(&line);
                    self.stderr.push('\n');
                }
                Err(_) => panic!(
                    "no log line with {text:?} within {bound:?}:\n{}",
                    self.stderr
                ),
            }
        }
    }

    /// Stops it with SIGTERM, as a service manager does; returns its stdout and the rest of its
    /// stderr.
    fn terminate(&mut self) -> (bool, Vec<u8>, String) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let exit = self.child.wait().expect("serve exits");
        let stdout = self
            .stdout
            .take()
            .map_or_else(Vec::new, |reader| reader.join().expect("stdout read"));
        // The reading thread ends with the pipe.
        self.stderr
            .extend(self.stderr_lines.iter().map(|line| line + "\n"));
        (exit.success(), stdout, std::mem::take(&mut self.stderr))
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

#[tokio::test]
async fn serve_writes_nothing_to_stdout_while_it_provisions_postgres_serves_and_stops() {
    let scratch = Scratch::new();
    let data_dir = scratch.data_dir();
    let data_dir_arg = data_dir.to_str().expect("a UTF-8 path").to_owned();
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut serving = Serving::start(&[
        "serve",
        "--insecure-no-auth",
        "--listen",
        &listen,
        "--data-dir",
        &data_dir_arg,
    ]);
    serving.wait_for_log("ledger listening", SERVE_START_BOUND);
    let answer = reqwest::Client::new()
        .post(format!("http://{listen}/v1/assets"))
        .header("idempotency-key", "asset-usd")
        .json(&json!({"code": "USD", "scale": 2}))
        .send()
        .await
        .expect("POST");
    assert_eq!(answer.status().as_u16(), 201);
    let (ok, stdout, stderr) = serving.terminate();
    assert!(ok, "{stderr}");
    assert!(
        stdout.is_empty(),
        "serve wrote to stdout: {:?}",
        String::from_utf8_lossy(&stdout)
    );
    for logged in [
        "initialising a new PostgreSQL data directory",
        "ledger listening",
        "stopped local PostgreSQL",
    ] {
        assert!(
            stderr.contains(logged),
            "{logged:?} not on stderr:\n{stderr}"
        );
    }

    // A data command on the same local cluster starts and stops it again with pg_ctl: only its
    // report reaches stdout.
    let verified = ledger_on(Target::DataDir(&data_dir), &["verify"], b"");
    assert!(verified.ok, "{}", verified.stderr);
    assert_eq!(verified.report()["events_verified"], 1);
    assert!(
        verified.stderr.contains("starting local PostgreSQL"),
        "{}",
        verified.stderr
    );
}
