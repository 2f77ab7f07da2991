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
    /// Recompute the hash chain over the whole log; exit status 1 if it breaks.
    Verify(DatabaseArgs),
    /// Rebuild every projection (or one) from the log into fresh tables and compare them with
    /// the live ones; exit status 1 on any difference. Needs the writer's lock and the
    /// projectors' locks: stop the ledger first.
    Replay {
        #[command(flatten)]
        database: DatabaseArgs,
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
        database: DatabaseArgs,
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
        database: DatabaseArgs,
        /// The NDJSON file `ledger export` wrote; standard input when absent.
        #[arg(long)]
        input: Option<std::path::PathBuf>,
    },
    /// Relay the log to a message broker until stopped (Ctrl-C or SIGTERM): every event in
    /// position order, with broker confirms, from the sink's checkpoint in PostgreSQL. Logs go to
    /// standard error; it prints nothing on standard output.
    Relay {
        #[command(flatten)]
        database: DatabaseArgs,
        /// `amqp://user:password@host:5672/vhost` (RabbitMQ: topic exchange `ledger.events`) or
        /// `nats://host:4222` (NATS JetStream: stream `LEDGER`).
        #[arg(long, env = "LEDGER_RELAY_TO", hide_env_values = true)]
        to: String,
        /// Messages published and not yet confirmed, at most.
        #[arg(long, default_value_t = infrastructure::relays::RelayConfig::IN_FLIGHT_MAX, value_parser = clap::value_parser!(usize))]
        in_flight_max: usize,
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
enum KeysAction {
    /// Create a key and print it (as JSON, with its secret) once; only its hash is stored.
    Create {
        /// Who or what the key is for.
        #[arg(long)]
        name: String,
        /// read, write, audit or admin; repeat or separate with commas.
        #[arg(long = "scope", required = true, value_delimiter = ',', value_parser = parse_scope)]
        scopes: Vec<infrastructure::api_keys::Scope>,
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

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    // Logs go to stderr, whatever the command: stdout carries only its output (the export's
    // NDJSON, a key's JSON), so that `ledger export > log.ndjson` is a file a verifier reads.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
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
        Commands::Verify(database) => runtime.block_on(verify(database)),
        Commands::Export {
            database,
            format,
            after,
            beancount_root,
            output,
        } => match (format, after) {
            (ExportFormat::Ndjson, _) => runtime.block_on(export(database, after, output)),
            (ExportFormat::Beancount, 0) => {
                runtime.block_on(export_beancount(database, beancount_root, output))
            }
            (ExportFormat::Beancount, _) => {
                eprintln!("--after is for --format ndjson: a Beancount file holds the whole log");
                Ok(false)
            }
        },
        Commands::Replay {
            database,
            swap,
            projection,
        } => runtime.block_on(replay(database, swap, projection)),
        Commands::Import { database, input } => runtime.block_on(import(database, input)),
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

async fn verify(database: DatabaseArgs) -> infrastructure::Result<bool> {
    use std::io::Write;
    let database = database.open().await?;
    let started = std::time::Instant::now();
    let report = infrastructure::audit::verify_chain(&database.pool, |done, total| {
        let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-9);
        let percent = if total > 0 { done * 100 / total } else { 100 };
        eprint!("\rverified {done} of {total} events ({percent} %, {rate:.0} events/s)   ");
        let _ = std::io::stderr().flush();
    })
    .await;
    eprintln!();
    database.close().await?;
    let report = api::views::ChainReportView::from(report?);
    for known in &report.stored_form_differs {
        eprintln!("position {}: {}", known.position, known.cause);
    }
    let intact = report.intact;
    let mut out = serde_json::to_value(report).unwrap_or_default();
    out["seconds"] = serde_json::json!(started.elapsed().as_secs_f64());
    println!("{out}");
    Ok(intact)
}

async fn replay(
    database: DatabaseArgs,
    swap: bool,
    projection: Option<String>,
) -> infrastructure::Result<bool> {
    use std::io::Write;
    let database = database.open().await?;
    let started = std::time::Instant::now();
    let only = projection.as_deref();
    let report =
        infrastructure::replay::replay_projections(&database.pool, only, swap, |done, total| {
            let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-9);
            let percent = if total > 0 { done * 100 / total } else { 100 };
            eprint!("\rreplayed {done} of {total} events ({percent} %, {rate:.0} events/s)   ");
            let _ = std::io::stderr().flush();
        })
        .await;
    eprintln!();
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
    database: DatabaseArgs,
    after: i64,
    output: Option<std::path::PathBuf>,
) -> infrastructure::Result<bool> {
    let mut out = output_to(output)?;
    let database = database.open().await?;
    let written = infrastructure::audit::export(&database.pool, after, &mut out).await;
    database.close().await?;
    tracing::info!(events = written?, "exported");
    Ok(true)
}

async fn export_beancount(
    database: DatabaseArgs,
    root: infrastructure::beancount::Root,
    output: Option<std::path::PathBuf>,
) -> infrastructure::Result<bool> {
    let mut out = output_to(output)?;
    let database = database.open().await?;
    let summary = infrastructure::beancount::export(&database.pool, root, &mut out).await;
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

async fn import(
    database: DatabaseArgs,
    input: Option<std::path::PathBuf>,
) -> infrastructure::Result<bool> {
    use std::io::Write;
    let database = database.open().await?;
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
            infrastructure::import::import(&database.pool, reader, |events, bytes| {
                show(events, bytes, total_bytes)
            })
            .await
        }
        None => {
            let reader = std::io::BufReader::with_capacity(1 << 20, std::io::stdin().lock());
            infrastructure::import::import(&database.pool, reader, |events, bytes| {
                show(events, bytes, None)
            })
            .await
        }
    };
    eprintln!();
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
        })
    }
    let database = database.open().await?;
    let result = match action {
        KeysAction::Create { name, scopes } => api_keys::create(&database.pool, &name, &scopes)
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
