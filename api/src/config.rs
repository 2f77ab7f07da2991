//! Configuration of `ledger serve`: flags, each with an environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use infrastructure::db::PoolConfig;
use infrastructure::projections::projector::ProjectorConfig;
use infrastructure::webhooks::WebhookConfig;
use infrastructure::WriterConfig;

use crate::state::Limits;

#[derive(Debug, Clone, clap::Args)]
pub struct ServeConfig {
    /// The time the writer and the API read: the system's, or in tests one they move on.
    #[arg(skip = system_clock())]
    pub clock: std::sync::Arc<dyn domain::clock::Clock>,
    /// The projectors' paging and pacing: the defaults, or in tests ones they adjust.
    #[arg(skip)]
    pub projector: ProjectorConfig,
    /// Address to listen on.
    #[arg(long, env = "LEDGER_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// PostgreSQL URL. When absent, a local PostgreSQL is provisioned under --data-dir.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// PostgreSQL URL reads are served from, e.g. a streaming replica (HAProxy's replicas port).
    /// Reads with `min_position` wait until it has replayed that far. When absent, DATABASE_URL.
    #[arg(long, env = "LEDGER_READ_DATABASE_URL", hide_env_values = true)]
    pub read_database_url: Option<String>,
    /// The URL other ledger nodes reach this one at, advertised while it is the writer so that
    /// they forward writes to it. When absent, http:// and the address it listens on.
    #[arg(long, env = "LEDGER_ADVERTISE_URL")]
    pub advertise_url: Option<String>,
    /// How long the writer's PostgreSQL session may send nothing before the server ends it and
    /// releases the writer's lock: how long a paused writer holds up a takeover.
    #[arg(long, env = "LEDGER_WRITER_LEASE_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1_000..=600_000))]
    pub writer_lease_ms: u64,
    /// How long the writer may take to answer a write this node forwarded to it; then 503
    /// commit_outcome_unknown (retry with the same key).
    #[arg(long, env = "LEDGER_FORWARD_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub forward_timeout_ms: u64,
    /// How long a ledger other than `default` may go without a request before this node stops
    /// its writer and projectors and closes its connections (they start again on its next
    /// request). A ledger with a hold to expire is kept.
    #[arg(long, env = "LEDGER_IDLE_STOP_MS", default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub ledger_idle_stop_ms: u64,
    /// Ledgers other than `default` whose writer, projectors and connections run in this process
    /// at once. Opening one more stops the least recently used that no request is using; when
    /// every one is in use, 503 `overloaded`. Each holds up to 5 PostgreSQL sessions.
    #[arg(long, env = "LEDGER_BOOKS_OPEN_MAX", default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub ledger_books_open_max: u64,
    /// Where the local PostgreSQL keeps its data (only without DATABASE_URL).
    #[arg(long, env = "LEDGER_DATA_DIR", default_value = ".ledger/postgres")]
    pub data_dir: PathBuf,
    /// Commands that may wait for the writer; beyond this, 503 overloaded.
    #[arg(long, env = "LEDGER_QUEUE_CAPACITY", default_value_t = 16_384, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub queue_capacity: u32,
    /// Commands decided and committed together at most.
    /// How far ahead of now a write's `effective_at` may be, in seconds (later: 422
    /// `effective_in_future`).
    #[arg(long = "effective-future-max", env = "LEDGER_EFFECTIVE_FUTURE_MAX_S", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=31_536_000))]
    pub effective_future_max_s: u64,
    /// The time of day (UTC, `HH:MM` or `HH:MM:SS`) at which a trade settles on its settlement
    /// date: the writer posts a trade booked as pending for a later date once this time of that
    /// date has passed. Each trade records when it settles, so a change decides new trades only.
    #[arg(long = "settlement-time", env = "LEDGER_SETTLEMENT_TIME", default_value = "00:00", value_parser = parse_settlement_time)]
    pub settlement_time: chrono::NaiveTime,
    #[arg(long, env = "LEDGER_BATCH_MAX", default_value_t = 2_048, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch_max: u32,
    /// Connections for reads (the writer has one of its own).
    #[arg(long, env = "LEDGER_DB_POOL_MAX", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub db_pool_max: u32,
    /// Largest request body.
    #[arg(long, env = "LEDGER_BODY_BYTES_MAX", default_value_t = 1024 * 1024)]
    pub body_bytes_max: usize,
    /// Largest body of `POST /v1/transactions/batch`.
    #[arg(long, env = "LEDGER_BATCH_BODY_BYTES_MAX", default_value_t = 16 * 1024 * 1024)]
    pub batch_body_bytes_max: usize,
    /// How long a read waits for `min_position` before answering 409.
    #[arg(long, env = "LEDGER_MIN_POSITION_WAIT_MS", default_value_t = 2_000)]
    pub min_position_wait_ms: u64,
    /// Events buffered per event-stream client.
    #[arg(long, env = "LEDGER_STREAM_BUFFER_EVENTS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub stream_buffer_events: u32,
    /// How long an event stream waits for a client that does not read before disconnecting it.
    #[arg(long, env = "LEDGER_STREAM_STALL_MS", default_value_t = 10_000)]
    pub stream_stall_ms: u64,
    /// How long a client may take to send a request's headers (also how long an idle keep-alive
    /// connection stays open); then the connection is closed.
    #[arg(long, env = "LEDGER_HEADER_READ_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_read_timeout_ms: u64,
    /// How long a client may take to send a request's body; then 408 and the connection is closed.
    #[arg(long, env = "LEDGER_BODY_READ_TIMEOUT_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub body_read_timeout_ms: u64,
    /// `/v1` requests handled at once; beyond this, 503 overloaded at once.
    #[arg(long, env = "LEDGER_REQUESTS_IN_FLIGHT_MAX", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub requests_in_flight_max: u32,
    /// Serve without authentication: every caller may do everything. For local development only;
    /// logged loudly at start.
    #[arg(long, env = "LEDGER_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,
    /// Accounts a roll-up at a past position (`GET /v1/balances?at_position=`) may sum: it reads
    /// each account's history, where the present roll-up is kept up to date. More: 422.
    #[arg(long, env = "LEDGER_ROLLUP_AT_ACCOUNTS_MAX", default_value_t = crate::state::ROLLUP_AT_ACCOUNTS_MAX_DEFAULT, value_parser = clap::value_parser!(i64).range(1..=1_000_000))]
    pub rollup_at_accounts_max: i64,
    /// Serve the web console (`/console`) from this folder, read at each request, instead of the
    /// files built into the binary: for working on the console (`api/console`) without rebuilding.
    #[arg(long, env = "LEDGER_CONSOLE_DIR")]
    pub console_dir: Option<PathBuf>,
    /// An admin API key (`lk_` and 64 lower-case hex digits) stored at start when the ledger has no
    /// active key yet: how a deployment gets its first key without a shell on the host.
    #[arg(long, env = "LEDGER_BOOTSTRAP_ADMIN_KEY", hide_env_values = true)]
    pub bootstrap_admin_key: Option<String>,
    /// Failed authentications allowed from one address per minute; beyond, 429 until the minute
    /// ends.
    #[arg(long, env = "LEDGER_AUTH_FAILURES_MAX", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub auth_failures_max: u32,
    /// Upper bound on any statement of the writer's session; a batch that takes longer fails, and
    /// the writer reconnects and reloads. A commit's wait for the synchronous standby is not cut
    /// short by it (PostgreSQL disarms it before committing).
    #[arg(long, env = "LEDGER_WRITER_STATEMENT_TIMEOUT_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub writer_statement_timeout_ms: u64,
    /// Relay the log to a message broker from this process as well: `amqp://…` (RabbitMQ) or
    /// `nats://…` (NATS JetStream); repeat, or separate with commas, for several. One relay per
    /// broker works at a time across all nodes, so every node may be given the same list.
    #[arg(long = "relay", env = "LEDGER_RELAYS", value_delimiter = ',')]
    pub relays: Vec<String>,
    /// Deliver webhooks to loopback, private (RFC 1918), link-local, unique-local and CGNAT
    /// addresses too (cloud metadata addresses stay refused). For receivers on the same host or
    /// network, and tests.
    #[arg(long, env = "LEDGER_WEBHOOK_ALLOW_PRIVATE")]
    pub webhook_allow_private: bool,
    /// Deliver no webhooks from this process (subscriptions can still be managed): for a server
    /// that must send nothing off its host, such as the one scripts/schemathesis.sh runs.
    #[arg(long, env = "LEDGER_NO_WEBHOOK_DELIVERY")]
    pub no_webhook_delivery: bool,
    /// How long a webhook receiver has to answer (connecting included); then the attempt failed.
    #[arg(long, env = "LEDGER_WEBHOOK_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=300_000))]
    pub webhook_timeout_ms: u64,
    /// The wait before retrying a failed webhook delivery; it doubles with each failure in a row.
    #[arg(long, env = "LEDGER_WEBHOOK_RETRY_BASE_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    pub webhook_retry_base_ms: u64,
    /// The longest wait between two attempts at a webhook delivery.
    #[arg(long, env = "LEDGER_WEBHOOK_RETRY_MAX_MS", default_value_t = 3_600_000, value_parser = clap::value_parser!(u64).range(1..=86_400_000))]
    pub webhook_retry_max_ms: u64,
    /// Failed webhook deliveries in a row that disable a subscription (retries also stop 24 h
    /// after the first failure).
    #[arg(long, env = "LEDGER_WEBHOOK_FAILURES_MAX", default_value_t = 40, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub webhook_failures_max: u32,
    /// Webhook deliveries in flight at once, across subscriptions (each has at most one).
    #[arg(long, env = "LEDGER_WEBHOOK_IN_FLIGHT_MAX", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1_024))]
    pub webhook_in_flight_max: u32,
}

impl ServeConfig {
    /// The defaults, as `ledger serve` with no flags and no environment would have them.
    pub fn local(listen: SocketAddr, database_url: Option<String>) -> Self {
        Self {
            clock: system_clock(),
            projector: ProjectorConfig::default(),
            effective_future_max_s: 0,
            settlement_time: chrono::NaiveTime::MIN,
            listen,
            database_url,
            read_database_url: None,
            advertise_url: None,
            writer_lease_ms: 5_000,
            forward_timeout_ms: 10_000,
            ledger_idle_stop_ms: 60_000,
            ledger_books_open_max: 32,
            data_dir: PathBuf::from(".ledger/postgres"),
            queue_capacity: 16_384,
            batch_max: 2_048,
            relays: Vec::new(),
            db_pool_max: 16,
            body_bytes_max: 1024 * 1024,
            batch_body_bytes_max: 16 * 1024 * 1024,
            min_position_wait_ms: 2_000,
            stream_buffer_events: 1024,
            stream_stall_ms: 10_000,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            requests_in_flight_max: 1024,
            insecure_no_auth: false,
            console_dir: None,
            rollup_at_accounts_max: crate::state::ROLLUP_AT_ACCOUNTS_MAX_DEFAULT,
            bootstrap_admin_key: None,
            auth_failures_max: 20,
            writer_statement_timeout_ms: 30_000,
            webhook_allow_private: false,
            no_webhook_delivery: false,
            webhook_timeout_ms: 10_000,
            webhook_retry_base_ms: 5_000,
            webhook_retry_max_ms: 3_600_000,
            webhook_failures_max: 40,
            webhook_in_flight_max: 16,
        }
    }

    /// The webhook deliverer's settings.
    pub fn webhooks(&self) -> WebhookConfig {
        WebhookConfig {
            allow_private: self.webhook_allow_private,
            request_timeout: Duration::from_millis(self.webhook_timeout_ms),
            retry_base: Duration::from_millis(self.webhook_retry_base_ms),
            retry_max: Duration::from_millis(self.webhook_retry_max_ms),
            failures_max: self.webhook_failures_max,
            in_flight_max: self.webhook_in_flight_max as usize,
            ..WebhookConfig::default()
        }
    }

    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    /// The writer's settings; `advertise_url` is where this node can be reached.
    pub fn writer(&self, advertise_url: String) -> WriterConfig {
        WriterConfig {
            queue_capacity: self.queue_capacity as usize,
            batch_max: self.batch_max as usize,
            statement_timeout: Duration::from_millis(self.writer_statement_timeout_ms),
            lease: Duration::from_millis(self.writer_lease_ms),
            advertise_url: Some(advertise_url),
            clock: self.clock.clone(),
            effective_future_max: Duration::from_secs(self.effective_future_max_s),
            settlement_time: self.settlement_time,
            ..WriterConfig::default()
        }
    }

    pub fn ledger_idle_stop(&self) -> Duration {
        Duration::from_millis(self.ledger_idle_stop_ms)
    }

    pub fn forward_timeout(&self) -> Duration {
        Duration::from_millis(self.forward_timeout_ms)
    }

    pub fn pool(&self) -> PoolConfig {
        PoolConfig {
            max_connections: self.db_pool_max,
            ..PoolConfig::default()
        }
    }

    pub fn limits(&self) -> Limits {
        Limits {
            body_bytes_max: self.body_bytes_max,
            batch_body_bytes_max: self.batch_body_bytes_max,
            min_position_wait: Duration::from_millis(self.min_position_wait_ms),
            stream_buffer_events: self.stream_buffer_events as usize,
            stream_stall_max: Duration::from_millis(self.stream_stall_ms),
            body_read_timeout: Duration::from_millis(self.body_read_timeout_ms),
            requests_in_flight_max: self.requests_in_flight_max as usize,
            rollup_at_accounts_max: self.rollup_at_accounts_max,
            ..Limits::default()
        }
    }
}

/// A settlement time as written: `HH:MM` or `HH:MM:SS`, nothing finer (a trade settles at a
/// time the operator can read back, not at a fraction of a second).
fn parse_settlement_time(text: &str) -> Result<chrono::NaiveTime, String> {
    ["%H:%M", "%H:%M:%S"]
        .iter()
        .find_map(|format| chrono::NaiveTime::parse_from_str(text, format).ok())
        .ok_or_else(|| format!("{text:?} is not a time of day as HH:MM or HH:MM:SS (UTC)"))
}

fn system_clock() -> std::sync::Arc<dyn domain::clock::Clock> {
    std::sync::Arc::new(domain::clock::SystemClock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_settlement_time_is_a_time_of_day_to_the_second() {
        let at = |h, m, s| chrono::NaiveTime::from_hms_opt(h, m, s).unwrap();
        assert_eq!(parse_settlement_time("00:00"), Ok(at(0, 0, 0)));
        assert_eq!(parse_settlement_time("16:30"), Ok(at(16, 30, 0)));
        assert_eq!(parse_settlement_time("09:05:07"), Ok(at(9, 5, 7)));
        for refused in ["", "24:00", "9h", "16:30:00.5", "16:30Z", "4pm"] {
            assert!(parse_settlement_time(refused).is_err(), "{refused:?}");
        }
    }

    #[test]
    fn the_settlement_time_flag_and_its_default() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeConfig,
        }
        let default = Cli::try_parse_from(["ledger"]).unwrap();
        assert_eq!(default.serve.settlement_time, chrono::NaiveTime::MIN);
        let set = Cli::try_parse_from(["ledger", "--settlement-time", "21:00"]).unwrap();
        assert_eq!(
            set.serve.settlement_time,
            chrono::NaiveTime::from_hms_opt(21, 0, 0).unwrap()
        );
        assert!(Cli::try_parse_from(["ledger", "--settlement-time", "25:00"]).is_err());
    }
}
