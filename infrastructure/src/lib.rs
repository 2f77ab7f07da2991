//! PostgreSQL: the event store, the inline projections, the single writer (sequencer), the read
//! models, migrations, and provisioning of a local PostgreSQL for development and tests.

pub mod api_keys;
pub mod audit;
mod batch;
pub mod db;
pub mod error;
pub mod expiry;
pub mod import;
mod key_filter;
mod load;
pub mod local_postgres;
pub mod metrics;
mod next_batch;
mod projection;
pub mod reads;
pub mod replay;
pub mod secrets;
pub mod sequencer;
pub mod testing;
pub mod writer_lock;

pub use error::{Error, Result};
pub use reads::{AccountKey, AtPosition, HistoryCursor, ReadStore};
pub use sequencer::{
    CommittedEvent, Origin, Outcome, Reply, WriteItem, Writer, WriterConfig, WriterStatus,
};
