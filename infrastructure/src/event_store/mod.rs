//! The event store: the log, the source of truth. This module is the one place that appends
//! events (`append`), pages through them, decodes them and verifies their hash chain (`verify`).
//! Everything else (the writer, the projector, reads, audit, replay, import) goes through it.
//!
//! Positions are given out by the single writer, gap-free; the table is append-only in the
//! database itself (a trigger refuses UPDATE, DELETE and TRUNCATE).

mod append;
pub mod respelled;
pub mod verify;

use chrono::{DateTime, SecondsFormat, Utc};
use domain::chain::{self, ChainedEvent, Hash};
use domain::Event;
use serde_json::value::RawValue;
use sqlx::postgres::PgRow;
use sqlx::Row;
use uuid::Uuid;

use crate::columns::{col, OnConflict, SqlType, Table};
use crate::{Error, Result};

pub use append::{EventMetadata, EventRows};

/// Events read per query while walking the log.
pub(crate) const PAGE_EVENTS: i64 = 10_000;

/// The events table, as appends write it.
pub(crate) static EVENTS: Table = Table {
    name: "events",
    columns: &[
        col("position", SqlType::Int8),
        col("event_id", SqlType::Uuid),
        col("event_type", SqlType::Text),
        col("schema_version", SqlType::Int2),
        col("payload", SqlType::Text),
        col("metadata", SqlType::Text),
        col("recorded_at", SqlType::Timestamptz),
        col("hash", SqlType::Bytea),
    ],
    on_conflict: OnConflict::Refuse,
};

/// The columns of a stored event, as `StoredEvent::from_row` reads them (`e` is `events`).
pub(crate) const EVENT_COLUMNS: &str = "e.position, e.event_id, e.event_type, e.schema_version, \
    e.payload, e.metadata, e.recorded_at, e.hash";

/// How an event is given whole to the systems outside (a relay's message, a webhook's body): the
/// JSON of an item of `GET /v1/events`. The HTTP layer owns that shape and hands its encoder in,
/// so that they are one and the same.
pub type Encode = fn(&StoredEvent) -> Result<Vec<u8>>;

/// One stored event, with everything its hash covers. The payload and metadata are the canonical
/// JSON text the hash was computed over (`domain::json`), kept as text so that nothing between
/// the writer and a reader (not PostgreSQL, not a JSON library) can respell them.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub position: i64,
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: i16,
    pub payload: String,
    pub metadata: String,
    pub recorded_at: DateTime<Utc>,
    pub hash: Vec<u8>,
}

impl StoredEvent {
    pub(crate) fn from_row(row: &PgRow) -> Result<Self> {
        Ok(Self {
            position: row.try_get("position")?,
            event_id: row.try_get("event_id")?,
            event_type: row.try_get("event_type")?,
            schema_version: row.try_get("schema_version")?,
            payload: row.try_get("payload")?,
            metadata: row.try_get("metadata")?,
            recorded_at: row.try_get("recorded_at")?,
            hash: row.try_get("hash")?,
        })
    }

    /// The domain event, upcast from its schema version.
    pub fn decode(&self) -> Result<Event> {
        Event::decode(&self.event_type, self.schema_version, &self.payload)
            .map_err(|e| Error::Corrupt(format!("position {}: {e}", self.position)))
    }

    /// The stored payload and metadata as raw JSON, to be served byte for byte.
    pub fn raw_json(&self) -> Result<(Box<RawValue>, Box<RawValue>)> {
        let raw = |text: &str, what: &str| {
            RawValue::from_string(text.to_owned()).map_err(|e| {
                Error::Corrupt(format!(
                    "the {what} of position {} is not JSON: {e}",
                    self.position
                ))
            })
        };
        Ok((
            raw(&self.payload, "payload")?,
            raw(&self.metadata, "metadata")?,
        ))
    }

    /// The hash of this event's stored bytes chained after `previous`.
    pub fn chained_after(&self, previous: &Hash) -> Hash {
        let recorded_at = format_recorded_at(self.recorded_at);
        chain::chain(
            previous,
            &ChainedEvent {
                position: self.position,
                event_id: self.event_id,
                event_type: &self.event_type,
                schema_version: self.schema_version,
                recorded_at: &recorded_at,
                payload: &self.payload,
                metadata: &self.metadata,
            },
        )
    }

    /// How this event extends the chain whose head is `previous`.
    pub fn link(&self, previous: &Hash) -> Link {
        let computed = self.chained_after(previous);
        // The writer stores only canonical text: any other text was not written by it, whatever
        // its hash (docs/audit.md says the same to every verifier).
        let canonical = |text: &str| domain::json::canonicalize(text).is_ok_and(|c| c == text);
        if !canonical(&self.payload) || !canonical(&self.metadata) {
            return Link::NotCanonical(computed);
        }
        if computed.as_slice() == self.hash.as_slice() {
            return Link::Intact(computed);
        }
        match (
            respelled::explain(previous, self),
            Hash::try_from(self.hash.as_slice()),
        ) {
            (Some(why), Ok(stored)) => Link::Respelled(stored, why),
            _ => Link::Broken(computed),
        }
    }
}

/// How a stored event extends the chain, with the head the chain goes on from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// Its stored hash is the hash of its stored bytes.
    Intact(Hash),
    /// Its stored hash is that of the same content with some numbers spelled as the writer
    /// before migration 0013 hashed them: the known defect `respelled` describes, not an
    /// alteration. The chain goes on from the stored hash.
    Respelled(Hash, String),
    /// Its stored hash is not the hash of its content after `previous`.
    Broken(Hash),
    /// Its payload or metadata is not canonical text, which the writer never stores.
    NotCanonical(Hash),
}

impl Link {
    /// Why the chain breaks here, for a report; `None` when it does not.
    pub fn problem(&self, position: i64) -> Option<String> {
        match self {
            Self::Intact(_) | Self::Respelled(..) => None,
            Self::Broken(_) => Some(format!(
                "the hash of position {position} does not match its content and predecessor"
            )),
            Self::NotCanonical(_) => Some(format!(
                "the payload or metadata of position {position} is not canonical JSON, which the \
                 ledger never writes (docs/audit.md)"
            )),
        }
    }
}

/// The timestamp as the chain covers it: RFC 3339, UTC, exactly six fractional digits, `Z`.
pub fn format_recorded_at(recorded_at: DateTime<Utc>) -> String {
    recorded_at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Up to `limit` events after position `after`, in position order.
pub async fn page(
    executor: impl sqlx::PgExecutor<'_>,
    after: i64,
    limit: i64,
) -> Result<Vec<StoredEvent>> {
    let rows = sqlx::query(&format!(
        "SELECT {EVENT_COLUMNS} FROM events e WHERE e.position > $1 ORDER BY e.position LIMIT $2"
    ))
    .bind(after)
    .bind(limit)
    .fetch_all(executor)
    .await?;
    rows.iter().map(StoredEvent::from_row).collect()
}

/// The last event's position, time and hash; `None` for an empty log.
pub(crate) async fn last(
    executor: impl sqlx::PgExecutor<'_>,
) -> Result<Option<(i64, DateTime<Utc>, Hash)>> {
    let row: Option<(i64, DateTime<Utc>, Vec<u8>)> = sqlx::query_as(
        "SELECT position, recorded_at, hash FROM events ORDER BY position DESC LIMIT 1",
    )
    .fetch_optional(executor)
    .await?;
    row.map(|(position, recorded_at, hash)| {
        let hash: Hash = hash
            .try_into()
            .map_err(|_| Error::Corrupt(format!("the hash at {position} is not 32 bytes")))?;
        Ok((position, recorded_at, hash))
    })
    .transpose()
}

/// The stored hash at `position`, if it is in the log (the genesis hash at 0).
pub(crate) async fn hash_at(
    executor: impl sqlx::PgExecutor<'_>,
    position: i64,
) -> Result<Option<Vec<u8>>> {
    if position == 0 {
        return Ok(Some(chain::genesis().to_vec()));
    }
    Ok(
        sqlx::query_scalar("SELECT hash FROM events WHERE position = $1")
            .bind(position)
            .fetch_optional(executor)
            .await?,
    )
}
