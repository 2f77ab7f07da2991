//! PostgreSQL and the other real systems. The flow of a command, in module order: the `writer`
//! decides it and appends its event to the `event_store`, writing the inline `projections` in the
//! same transaction; the `projections::projector` then builds the asynchronous projections from
//! the log; each projection module serves the reads of its tables through the snapshot that
//! `reads` takes, and `relays` carry the log to message brokers. `audit`, `replay`
//! and `import` prove and restore the log and what is derived from it; `beancount` writes the log
//! for accountants' tools.

pub mod api_keys;
pub mod audit;
pub mod beancount;
mod columns;
pub mod db;
pub mod error;
pub mod event_store;
pub mod follower;
pub mod import;
pub mod ledger_transfers;
pub mod ledgers;
#[cfg(any(test, feature = "local-postgres"))]
pub mod local_postgres;
pub mod metrics;
pub mod projections;
pub mod reads;
pub mod relays;
pub mod replay;
pub mod secrets;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod webhooks;
pub mod writer;

pub use error::{Error, Result};
pub use projections::accounts::AccountKey;
pub use projections::postings::HistoryCursor;
pub use reads::{AtPosition, ReadStore};
pub use writer::expiry::{self, INTERNAL_KEY_PREFIX};
pub use writer::lease as writer_lock;
pub use writer::{
    AccountChange, AssetChange, Balance, CommittedEvent, DryRunAnswer, Origin, Outcome, Reply,
    WriteItem, Writer, WriterConfig, WriterStatus,
};
