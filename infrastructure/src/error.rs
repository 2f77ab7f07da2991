//! The infrastructure layer's one error type.

use domain::ApplyError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// The log or projections hold something this code did not write or cannot read.
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// A command named a ledger that does not exist.
    #[error("there is no ledger named {0}")]
    UnknownLedger(String),
    /// `ledger replay --projection` named no projection.
    #[error("{0}")]
    UnknownProjection(String),
    /// A relay could not reach its broker, or the broker refused or lost a message.
    #[error("relay: {0}")]
    Relay(String),
    #[error("local PostgreSQL: {0}")]
    Provision(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The writer's queue is full: retry after a short wait.
    #[error("the ledger is at capacity; retry shortly")]
    Overloaded,
    /// This process does not hold the writer's lock (another writer does, or it is recovering).
    #[error("the writer is not available: {0}")]
    WriterUnavailable(&'static str),
    /// The batch holding the command could not be committed; nothing of it was applied. Retrying
    /// with the same idempotency key is safe.
    #[error("the write could not be committed; retry with the same idempotency key")]
    CommitFailed,
    /// The batch holding the command may have been committed but is not acknowledged: the
    /// session broke while it was committing, or the synchronous standbys did not confirm it, and
    /// the writer could not settle it within its bound. Retrying with the same idempotency key is
    /// safe and answers with the outcome once the writer can vouch for it.
    #[error(
        "this write may have been committed, but the writer could not confirm it (the connection \
         to the database broke, or the synchronous standby does not have it yet); retry with the \
         same idempotency key to learn its outcome"
    )]
    CommitOutcomeUnknown,
    /// The synchronous standbys did not confirm what the writer committed (see
    /// `writer::replication`): it is on the primary only, so it is not acknowledged.
    #[error("the synchronous standby has not confirmed the commit: {0}")]
    StandbyUnconfirmed(String),
    /// An import was refused: the database is not empty, or the file is not an intact export.
    /// Nothing was written.
    #[error("import refused: {0}")]
    ImportRefused(String),
    /// An API key (or its name or scopes) is not one the ledger can store.
    #[error("{0}")]
    InvalidKey(String),
    /// A read asked for at least `wanted` (`min_position`), and its read source had not reached
    /// it within the wait bound: never answered from an older state.
    #[error(
        "position {wanted} was not reached within {waited_ms} ms (the read source is at {current})"
    )]
    PositionNotReached {
        wanted: i64,
        current: i64,
        waited_ms: u64,
    },
    /// The idempotency key was used before with a different request.
    #[error("idempotency key was already used with a different request")]
    IdempotencyKeyReused,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether this means "PostgreSQL cannot be reached right now" (retry later) rather than a
    /// fault in a request or in the data.
    pub fn is_unavailable(&self) -> bool {
        let Self::Database(e) = self else {
            return false;
        };
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => true,
            // admin_shutdown, crash_shutdown, cannot_connect_now, query_canceled (a timeout)
            sqlx::Error::Database(db) => db
                .code()
                .is_some_and(|c| matches!(c.as_ref(), "57P01" | "57P02" | "57P03" | "57014")),
            _ => false,
        }
    }
}
