//! Connecting to PostgreSQL and bringing its schema up to date.

use std::str::FromStr;
use std::time::Duration;

pub use sqlx::postgres::PgConnectOptions;
use sqlx::postgres::PgPoolOptions;
pub use sqlx::PgPool;

use crate::{Error, Result};

/// The schema, from `migrations/` at the workspace root, compiled into the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Connections for reads (the writer has its own session besides these).
    pub max_connections: u32,
    /// How long a request waits for a free connection before it fails.
    pub acquire_timeout: Duration,
    /// Upper bound on any read statement.
    pub statement_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(3),
            statement_timeout: Duration::from_secs(10),
        }
    }
}

pub fn connect_options(database_url: &str) -> Result<PgConnectOptions> {
    PgConnectOptions::from_str(database_url).map_err(Error::Database)
}

/// A pool for reads, connected lazily so that the server starts (and reports unready) while
/// PostgreSQL is away.
pub fn read_pool(options: PgConnectOptions, config: &PoolConfig) -> PgPool {
    let options = options.options([(
        "statement_timeout",
        config.statement_timeout.as_millis().to_string(),
    )]);
    PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(config.acquire_timeout)
        .connect_lazy_with(options)
}

/// Applies the migrations that are not applied yet.
pub async fn migrate(pool: &PgPool) -> Result<()> {
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// The options of a session of `role` (`ledger-projector`, `ledger-relay`, …) on the book that
/// `options` work on: named `<role>:<ledger>` in `pg_stat_activity`.
pub fn role_options(options: &PgConnectOptions, role: &str) -> PgConnectOptions {
    let ledger = options
        .get_application_name()
        .and_then(|name| name.strip_prefix("ledger:"))
        .unwrap_or("default");
    options
        .clone()
        .application_name(&format!("{role}:{ledger}"))
}
