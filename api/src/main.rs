//! `ledger`: the ledger's command-line entry point.

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "ledger",
    version,
    about = "An event-sourced financial transaction ledger"
)]
struct Cli {
    /// Log format: text or json.
    #[arg(long, env = "LEDGER_LOG_FORMAT", default_value = "text", global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Commands,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Commands {
    /// Serve the HTTP API (provisions a local PostgreSQL when DATABASE_URL is not set).
    // Boxed: its many flags make it far larger than the other commands.
    Serve(Box<api::ServeConfig>),
    /// Recompute the hash chain over the whole log of a ledger (or of every ledger), and in the
    /// same pass every close's trial balance from the events (checked against its digest); exit
    /// status 1 if one breaks.
    Verify {
        #[command(flatten)]
        book: BookArgs,
        /// Every ledger, one JSON line each.
        #[arg(long, conflicts_with = "ledger")]
        all_ledgers: bool,
    },
    /// Rebuild every projection (or one) from the log into fresh tables and compare them with
    /// the live ones; exit status 1 on any difference. Needs the writer's lock and the
    /// projectors' locks: stop the ledger first.
    Replay {
        #[command(flatten)]
        book: BookArgs,
        /// Replace the live projections with the rebuilt ones, atomically.
        #[arg(long)]
        swap: bool,
        /// Only this projection: assets, accounts, balances, holds, reversals, postings,
        /// transactions or rollups.
        #[arg(long)]
        projection: Option<String>,
    },
    /// Write the log as NDJSON, one canonical JSON event (with its hash) per line, or as a
    /// Beancount file for accountants' tools (`--format beancount`).
    #[command(after_long_help = BEANCOUNT_HELP)]
    Export {
        #[command(flatten)]
        book: BookArgs,
        /// ndjson (the log, with hashes, for `ledger import` and verifiers) or beancount.
        #[arg(long, value_enum, default_value = "ndjson")]
        format: ExportFormat,
        /// Only events after this position (ndjson only: a Beancount file is the whole log).
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// With --format beancount: the root every account is under (Assets, Liabilities,
        /// Equity, Income or Expenses).
        #[arg(long, default_value = "Assets", value_parser = parse_root)]
        beancount_root: infrastructure::beancount::Root,
        /// A file to write to; standard output when absent.
        #[arg(long)]
        output: Option<std::path::PathBuf>,
    },
    /// Load an export into an empty database: every hash is checked and every event applied
    /// before anything commits, and the projections and idempotency records are rebuilt.
    Import {
        #[command(flatten)]
        book: BookArgs,
        /// The NDJSON file `ledger export` wrote; standard input when absent.
        #[arg(long)]
        input: Option<std::path::PathBuf>,
    },
    /// Relay every ledger's log to a message broker until stopped (Ctrl-C or SIGTERM): each
    /// ledger's events in its position order, with broker confirms, from the sink's checkpoint in
    /// that ledger's book; a ledger created later is relayed too. Logs go to standard error; it
    /// prints nothing on standard output.
    Relay {
        #[command(flatten)]
        database: DatabaseArgs,
        /// `amqp://user:password@host:5672/vhost` (RabbitMQ: topic exchange `ledger.events`,
        /// routing keys `<ledger>.<EventType>.…`) or `nats://host:4222` (NATS JetStream: subjects
        /// `ledger.<ledger>.events.<EventType>`, stream `LEDGER` for `default`, `LEDGER_<ledger>`
        /// for another).
        #[arg(long, env = "LEDGER_RELAY_TO", hide_env_values = true)]
        to: String,
        /// Messages published and not yet confirmed, at most.
        #[arg(long, default_value_t = infrastructure::relays::RelayConfig::IN_FLIGHT_MAX, value_parser = clap::value_parser!(usize))]
        in_flight_max: usize,
    },
    /// Manage ledgers: list them, or create one.
    Ledgers {
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(subcommand)]
        action: LedgersAction,
    },
    /// Manage API keys: create (the secret is printed once), list, revoke.
    Keys {
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(subcommand)]
        action: KeysAction,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ExportFormat {
    Ndjson,
    Beancount,
}

/// `ledger export --help`: how the ledger becomes Beancount (docs/beancount.md says more).
const BEANCOUNT_HELP: &str = "\
Beancount (--format beancount):
  Accounts: the root (--beancount-root), then one component per segment of the code. A leading
  letter is capitalised; after it, `_` before a letter capitalises the letter, any other `_` is
  `-U`, `-` is `--`; a segment starting with `_` or `-` is `0-X` and the segment so written.
  No two codes share a name: alice:cash -> Assets:Alice:Cash,
  petty_cash:eur_2 -> Assets:PettyCash:Eur-U2, a-b:_x -> Assets:A--b:0-XX.
  Commodities: the asset code, or `X.<code>.X` when Beancount cannot read the code as one (one
  character, a digit or `_` first, `_` last, TRUE, FALSE, NULL): 1INCH -> X.1INCH.X.
  Signs: a posting takes its amount from the source (negative) and gives it to the destination
  (positive), so every balance reads as the ledger's. Holds move nothing: they, their voids and
  expiries are notes; a hold's post is a transaction. Balances are asserted exactly (`~ 0`), for
  every account and asset it used, the day after the last entry.";

#[derive(Subcommand)]
enum LedgersAction {
    /// Every ledger (name, metadata, created_at) as JSON lines, by name.
    List,
    /// Create a ledger and print it as JSON. Running it again for the same name and metadata
    /// prints the same ledger.
    Create {
        name: domain::LedgerName,
        /// A JSON object kept with the ledger.
        #[arg(long, default_value = "{}")]
        metadata: String,
    },
}

#[derive(Subcommand)]
enum KeysAction {
    /// Create a key and print it (as JSON, with its secret) once; only its hash is stored.
    Create {
        /// Who or what the key is for.
        #[arg(long)]
        name: String,
        /// read, write, audit or admin; repeat or separate with commas.
        #[arg(long = "scope", required = true, value_delimiter = ',', value_parser = parse_scope)]
        scopes: Vec<infrastructure::api_keys::Scope>,
        /// Limit the key to this ledger; repeat for more. Without it, the key may use every
        /// ledger. On any other ledger the key gets 404, as if it did not exist.
        #[arg(long = "ledger")]
        ledgers: Vec<domain::LedgerName>,
    },
    /// Every key (prefix, name, scopes, times) as JSON lines, oldest first.
    List,
    /// Revoke a key by id or prefix; servers stop accepting it within 5 s.
    Revoke { id_or_prefix: String },
}

fn parse_root(text: &str) -> Result<infrastructure::beancount::Root, String> {
    text.parse()
}

fn parse_scope(text: &str) -> Result<infrastructure::api_keys::Scope, String> {
    infrastructure::api_keys::Scope::parse(text)
        .ok_or_else(|| format!("{text:?} is not a scope: use read, write, audit or admin"))
}

/// Which database: the same flags and variables as `ledger serve`.
#[derive(clap::Args)]
struct DatabaseArgs {
    /// PostgreSQL URL. When absent, the local PostgreSQL under --data-dir.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    #[arg(long, env = "LEDGER_DATA_DIR", default_value = ".ledger/postgres")]
    data_dir: std::path::PathBuf,
}

/// Which ledger of which database.
#[derive(clap::Args)]
struct BookArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    /// The ledger.
    #[arg(long, default_value = domain::LedgerName::DEFAULT)]
    ledger: domain::LedgerName,
}

impl BookArgs {
    /// The database, and a pool on the ledger's book.
    async fn open(
        &self,
    ) -> infrastructure::Result<(api::server::Database, infrastructure::db::PgPool)> {
        let database = self.database.open().await?;
        match database.book_pool(&self.ledger).await {
            Ok(pool) => Ok((database, pool)),
            Err(e) => {
                database.close().await?;
                Err(e)
            }
        }
    }
}

impl DatabaseArgs {
    async fn open(&self) -> infrastructure::Result<api::server::Database> {
        // Audits read the whole log: statements may run long, unlike a request's.
        let pool = infrastructure::db::PoolConfig {
            statement_timeout: std::time::Duration::from_secs(3600),
            ..infrastructure::db::PoolConfig::default()
        };
        api::server::Database::open(self.database_url.as_deref(), &self.data_dir, &pool).await
    }
}

/// The server allocates and frees many small buffers per request and per batch (HTTP bodies,
/// decoded commands, the batch's column arrays, sqlx's messages) from several threads; glibc's
/// malloc spent about a fifth of the process's CPU on them under load (perf, `ledgers` workload),
/// mimalloc a fraction of that (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    // Logs go to stderr, whatever the command: stdout carries only its output (the export's
    // NDJSON, a key's JSON), so that `ledger export > log.ndjson` is a file a verifier reads.
    // Colour only on a terminal: a `serve.log` or a log collector must not get escape codes.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Commands::Serve(config) => runtime.block_on(serve(config)),
        Commands::Verify { book, all_ledgers } => runtime.block_on(verify(book, all_ledgers)),
        Commands::Export {
            book,
            format,
            after,
            beancount_root,
            output,
        } => match (format, after) {
            (ExportFormat::Ndjson, _) => runtime.block_on(export(book, after, output)),
            (ExportFormat::Beancount, 0) => {
                runtime.block_on(export_beancount(book, beancount_root, output))
            }
            (ExportFormat::Beancount, _) => {
                eprintln!("--after is for --format ndjson: a Beancount file holds the whole log");
                Ok(false)
            }
        },
        Commands::Replay {
            book,
            swap,
            projection,
        } => runtime.block_on(replay(book, swap, projection)),
        Commands::Import { book, input } => runtime.block_on(import(book, input)),
        Commands::Ledgers { database, action } => runtime.block_on(ledgers(database, action)),
        Commands::Keys { database, action } => runtime.block_on(keys(database, action)),
        Commands::Relay {
            database,
            to,
            in_flight_max,
        } => runtime.block_on(relay(database, to, in_flight_max)),
    };
    match result {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            tracing::error!(error = %e, "ledger failed");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(config: Box<api::ServeConfig>) -> infrastructure::Result<bool> {
    let server = api::Server::start(&config).await?;
    shutdown_signal().await;
    tracing::info!("shutting down");
    server.stop().await.map(|()| true)
}

async fn verify(book: BookArgs, all_ledgers: bool) -> infrastructure::Result<bool> {
    let database = book.database.open().await?;
    let names = if all_ledgers {
        infrastructure::ledgers::all(&database.pool)
            .await?
            .into_iter()
            .map(|l| l.name)
            .collect()
    } else {
        vec![book.ledger.clone()]
    };
    let mut intact = true;
    for name in &names {
        let verified = verify_ledger(&database, name, all_ledgers).await;
        match verified {
            Ok(ok) => intact &= ok,
            Err(e) => {
                database.close().await?;
                return Err(e);
            }
        }
    }
    if all_ledgers {
        let mirrored = verify_settlement_mirror(&database.pool).await;
        match mirrored {
            Ok(ok) => intact &= ok,
            Err(e) => {
                database.close().await?;
                return Err(e);
            }
        }
    }
    database.close().await?;
    Ok(intact)
}

/// Once no transfer between ledgers is in flight, each pair's settlement accounts mirror each
/// other per asset (`a`'s `ledger:b` = −`b`'s `ledger:a`). Prints one JSON line.
async fn verify_settlement_mirror(
    registry: &infrastructure::db::PgPool,
) -> infrastructure::Result<bool> {
    use infrastructure::ledger_transfers;
    let in_flight = ledger_transfers::open_count(registry).await?;
    let mirrors = ledger_transfers::mirrors(registry).await?;
    let broken: Vec<serde_json::Value> = mirrors
        .iter()
        .filter(|m| !m.holds())
        .map(|m| {
            serde_json::json!({"ledger": m.ledger, "other": m.other, "asset": m.asset,
                               "here": m.here.to_string(), "there": m.there.to_string()})
        })
        .collect();
    // With transfers in flight, a pair may be posted on one side only for a moment.
    let holds = in_flight > 0 || broken.is_empty();
    println!(
        "{}",
        serde_json::json!({"settlement_mirror": {
            "pairs": mirrors.len(), "in_flight": in_flight, "holds": broken.is_empty(),
            "checked": in_flight == 0, "broken": broken}})
    );
    for b in &broken {
        eprintln!("settlement accounts do not mirror each other: {b}");
    }
    Ok(holds)
}

/// Verifies one ledger's chain and prints its report as one JSON line (naming the ledger when
/// `named`); whether it is intact.
async fn verify_ledger(
    database: &api::server::Database,
    name: &domain::LedgerName,
    named: bool,
) -> infrastructure::Result<bool> {
    use std::io::Write;
    let pool = database.book_pool(name).await?;
    let started = std::time::Instant::now();
    let verified = infrastructure::audit::verify_log(&pool, |done, total| {
        let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-9);
        let percent = if total > 0 { done * 100 / total } else { 100 };
        eprint!("\r{name}: verified {done} of {total} events ({percent} %, {rate:.0} events/s)   ");
        let _ = std::io::stderr().flush();
    })
    .await;
    eprintln!();
    pool.close().await;
    let (report, closes) = verified?;
    let report = api::views::ChainReportView::from(report);
    for known in &report.stored_form_differs {
        eprintln!("{name}: position {}: {}", known.position, known.cause);
    }
    for problem in &closes.problems {
        eprintln!("{name}: position {}: {}", problem.position, problem.problem);
    }
    let intact = report.intact && closes.verified();
    let mut out = serde_json::to_value(report).unwrap_or_default();
    out["closes"] = closes_json(&closes);
    out["seconds"] = serde_json::json!(started.elapsed().as_secs_f64());
    if named {
        out["ledger"] = serde_json::json!(name);
    }
    println!("{out}");
    Ok(intact)
}

/// What `ledger verify` prints of the closes: each one's trial balance recomputed from the log
/// and checked against its digest, and the first position where the log contradicts one.
fn closes_json(report: &domain::trial_balance::ClosesReport) -> serde_json::Value {
    let closes: Vec<serde_json::Value> = report
        .closes
        .iter()
        .map(|c| {
            serde_json::json!({"position": c.position, "period": c.period,
                "through": domain::ledger::rfc3339(c.through),
                "known_at_position": c.known_at_position, "reopened": c.reopened,
                "trial_balance_digest": c.recorded_digest, "matches": c.matches()})
        })
        .collect();
    let problems: Vec<serde_json::Value> = report
        .problems
        .iter()
        .map(|p| serde_json::json!({"position": p.position, "problem": p.problem}))
        .collect();
    serde_json::json!({"verified": report.verified(), "checked": closes.len(), "closes": closes,
        "first_broken_position": report.first_problem_position(), "problems": problems})
}

async fn replay(
    book: BookArgs,
    swap: bool,
    projection: Option<String>,
) -> infrastructure::Result<bool> {
    use std::io::Write;
    let (database, pool) = book.open().await?;
    let started = std::time::Instant::now();
    let only = projection.as_deref();
    let report = infrastructure::replay::replay_projections(&pool, only, swap, |done, total| {
        let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-9);
        let percent = if total > 0 { done * 100 / total } else { 100 };
        eprint!("\rreplayed {done} of {total} events ({percent} %, {rate:.0} events/s)   ");
        let _ = std::io::stderr().flush();
    })
    .await;
    eprintln!();
    pool.close().await;
    database.close().await?;
    let report = report?;
    for difference in &report.differences {
        eprintln!(
            "differs: {} {} live={} replayed={}",
            difference.table,
            difference.key,
            difference.live.as_deref().unwrap_or("(none)"),
            difference.replayed.as_deref().unwrap_or("(none)")
        );
    }
    println!(
        "{}",
        serde_json::json!({
            "identical": report.identical(),
            "events": report.events,
            "seconds": report.seconds,
            "events_per_second": report.events_per_second,
            "chain_intact": report.chain_intact,
            "differing_rows": report.differing_rows,
            "swapped": report.swapped,
        })
    );
    Ok(report.identical())
}

async fn export(
    book: BookArgs,
    after: i64,
    output: Option<std::path::PathBuf>,
) -> infrastructure::Result<bool> {
    let mut out = output_to(output)?;
    let (database, pool) = book.open().await?;
    let written = infrastructure::audit::export(&pool, after, &mut out).await;
    pool.close().await;
    database.close().await?;
    tracing::info!(events = written?, "exported");
    Ok(true)
}

async fn export_beancount(
    book: BookArgs,
    root: infrastructure::beancount::Root,
    output: Option<std::path::PathBuf>,
) -> infrastructure::Result<bool> {
    let mut out = output_to(output)?;
    let (database, pool) = book.open().await?;
    let summary = infrastructure::beancount::export(&pool, root, &mut out).await;
    pool.close().await;
    database.close().await?;
    let summary = summary?;
    tracing::info!(
        events = summary.events,
        head_position = summary.head_position,
        "exported as Beancount"
    );
    Ok(true)
}

/// Where an export goes: the file named, or standard output.
fn output_to(path: Option<std::path::PathBuf>) -> std::io::Result<Box<dyn std::io::Write>> {
    Ok(match path {
        Some(path) => Box::new(std::io::BufWriter::new(std::fs::File::create(path)?)),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    })
}

async fn import(book: BookArgs, input: Option<std::path::PathBuf>) -> infrastructure::Result<bool> {
    use std::io::Write;
    let (database, pool) = book.open().await?;
    let started = std::time::Instant::now();
    let show = |events: i64, bytes: u64, total_bytes: Option<u64>| {
        let rate = events as f64 / started.elapsed().as_secs_f64().max(1e-9);
        match total_bytes {
            Some(total) if total > 0 => eprint!(
                "\rloaded {events} events ({} %, {rate:.0} events/s)   ",
                bytes * 100 / total
            ),
            _ => eprint!("\rloaded {events} events ({rate:.0} events/s)   "),
        }
        let _ = std::io::stderr().flush();
    };
    let report = match input {
        Some(path) => {
            let file = std::fs::File::open(path)?;
            let total_bytes = file.metadata().ok().map(|m| m.len());
            let reader = std::io::BufReader::with_capacity(1 << 20, file);
            infrastructure::import::import(&pool, reader, |events, bytes| {
                show(events, bytes, total_bytes)
            })
            .await
        }
        None => {
            let reader = std::io::BufReader::with_capacity(1 << 20, std::io::stdin().lock());
            infrastructure::import::import(&pool, reader, |events, bytes| show(events, bytes, None))
                .await
        }
    };
    eprintln!();
    pool.close().await;
    database.close().await?;
    let report = report?;
    println!(
        "{}",
        serde_json::to_string(&report)
            .map_err(|e| infrastructure::Error::Corrupt(e.to_string()))?
    );
    Ok(true)
}

async fn relay(
    database: DatabaseArgs,
    to: String,
    in_flight_max: usize,
) -> infrastructure::Result<bool> {
    use infrastructure::relays::{Relay, RelayConfig};
    let mut config = RelayConfig::new(&to)?;
    config.in_flight_max = in_flight_max.max(1);
    let database = database.open().await?;
    let relay = Relay::spawn(database.options.clone(), config, api::event_json, None);
    tracing::info!(sink = %relay.name, "relaying; Ctrl-C or SIGTERM stops");
    shutdown_signal().await;
    relay.stop().await;
    database.close().await?;
    Ok(true)
}

async fn keys(database: DatabaseArgs, action: KeysAction) -> infrastructure::Result<bool> {
    use infrastructure::api_keys::{self, ApiKey};
    fn view(key: &ApiKey) -> serde_json::Value {
        serde_json::json!({
            "id": key.id,
            "prefix": key.prefix,
            "name": key.name,
            "scopes": key.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            "created_at": key.created_at,
            "revoked_at": key.revoked_at,
            "ledgers": key.ledgers,
        })
    }
    let database = database.open().await?;
    let result = match action {
        KeysAction::Create {
            name,
            scopes,
            ledgers,
        } => api_keys::create(
            &database.pool,
            &name,
            &scopes,
            (!ledgers.is_empty()).then_some(ledgers.as_slice()),
        )
        .await
        .map(|(key, secret)| {
            let mut shown = view(&key);
            shown["secret"] = secret.into();
            println!("{shown}");
            eprintln!("the secret is shown this once: keep it; the ledger stores only a hash");
            true
        }),
        KeysAction::List => api_keys::list(&database.pool).await.map(|keys| {
            for key in &keys {
                println!("{}", view(key));
            }
            true
        }),
        KeysAction::Revoke { id_or_prefix } => api_keys::revoke(&database.pool, &id_or_prefix)
            .await
            .map(|key| match key {
                Some(key) => {
                    println!("{}", view(&key));
                    true
                }
                None => {
                    eprintln!("no API key has the id or prefix {id_or_prefix:?}");
                    false
                }
            }),
    };
    database.close().await?;
    result
}

async fn ledgers(database: DatabaseArgs, action: LedgersAction) -> infrastructure::Result<bool> {
    let database = database.open().await?;
    let result = match action {
        LedgersAction::List => list_ledgers(&database.pool).await,
        LedgersAction::Create { name, metadata } => {
            create_ledger(&database.pool, &name, &metadata).await
        }
    };
    database.close().await?;
    result
}

/// A ledger as the CLI prints it: one JSON line (the metadata is canonical JSON text, written as
/// it is).
fn ledger_line(ledger: &infrastructure::ledgers::Ledger) -> String {
    format!(
        r#"{{"name":"{}","metadata":{},"created_at":"{}"}}"#,
        ledger.name,
        ledger.metadata,
        ledger
            .created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    )
}

async fn list_ledgers(registry: &infrastructure::db::PgPool) -> infrastructure::Result<bool> {
    use infrastructure::ledgers;
    let mut after: Option<String> = None;
    loop {
        let page = ledgers::list(registry, after.as_deref(), ledgers::PAGE_MAX, None).await?;
        let Some(last) = page.last() else {
            return Ok(true);
        };
        after = Some(last.name.to_string());
        for ledger in &page {
            println!("{}", ledger_line(ledger));
        }
    }
}

async fn create_ledger(
    registry: &infrastructure::db::PgPool,
    name: &domain::LedgerName,
    metadata: &str,
) -> infrastructure::Result<bool> {
    use infrastructure::ledgers::{self, CreateError};
    let metadata = match domain::Metadata::parse(metadata) {
        Ok(metadata) => metadata,
        Err(e) => {
            eprintln!("--metadata: {e}");
            return Ok(false);
        }
    };
    // The same name and metadata make the same key: running the command again finds the ledger
    // it created.
    let key = format!("cli:{name}:{}", metadata.as_json());
    match ledgers::create(registry, name, metadata.as_json(), &key, key.as_bytes()).await {
        Ok(created) => {
            println!("{}", ledger_line(&created.ledger));
            Ok(true)
        }
        Err(CreateError::Exists(_) | CreateError::KeyReused) => {
            eprintln!("a ledger named {name} already exists");
            Ok(false)
        }
        Err(CreateError::Store(e)) => Err(e),
    }
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = ctrl_c => {}
        _ = async {
            match terminate.as_mut() {
                Some(s) => { s.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}
