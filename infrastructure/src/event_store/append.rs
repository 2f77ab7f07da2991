//! Appending: events gathered as rows of the events table, written by the statement that also
//! writes the inline projections (the writer's batch, an import's chunk), so that the log and
//! what is derived from it in the same transaction commit together or not at all.

use chrono::{DateTime, Utc};
use domain::chain::{ChainedEvent, Hash};
use domain::Event;
use uuid::Uuid;

use super::{format_recorded_at, StoredEvent, EVENTS};
use crate::columns::TableRows;

/// The metadata stored beside an event: who asked and with which key.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct EventMetadata {
    pub idempotency_key: String,
    /// SHA-256 of the request the key was first used with (hex), so that an import of the log
    /// restores the idempotency records and a retry is still recognised.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub request_fingerprint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub request_id: Option<String>,
    /// The API key the command came with: who did it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub api_key_id: Option<Uuid>,
}

impl EventMetadata {
    /// The envelope as canonical JSON text, the form the chain hashes.
    pub fn encode(&self) -> String {
        // A struct of strings and a UUID: encoding cannot fail. An empty envelope would be
        // refused where events are read back.
        domain::json::to_canonical(self).unwrap_or_default()
    }
}

/// Events to append, as rows, with the hash and position of the last one.
pub struct EventRows {
    rows: TableRows,
    last: Option<(i64, Hash)>,
    /// Time spent hashing the events decided, for the writer's metrics.
    hash_time: std::time::Duration,
}

impl Default for EventRows {
    fn default() -> Self {
        Self {
            rows: TableRows::new(&EVENTS),
            last: None,
            hash_time: std::time::Duration::ZERO,
        }
    }
}

impl EventRows {
    pub fn rows(&self) -> &TableRows {
        &self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Time spent hashing the events decided so far.
    pub fn hash_time(&self) -> std::time::Duration {
        self.hash_time
    }

    /// The position and hash of the last event added.
    pub fn last(&self) -> Option<(i64, Hash)> {
        self.last
    }

    /// Adds an event the writer decided at `position`, extending the hash chain whose head is
    /// `chain_head` by it.
    pub fn push_decided(
        &mut self,
        position: i64,
        event: &Event,
        metadata: &EventMetadata,
        recorded_at: DateTime<Utc>,
        chain_head: &mut Hash,
    ) {
        // Time-ordered ids keep the unique index append-only instead of scattering inserts.
        let event_id = Uuid::now_v7();
        // Encoded once: the canonical JSON text is what the hash covers, what the store keeps and
        // what every reader gets back.
        let payload = event.encode();
        let metadata = metadata.encode();
        let recorded_at_text = format_recorded_at(recorded_at);
        let hashing = std::time::Instant::now();
        *chain_head = domain::chain::chain(
            chain_head,
            &ChainedEvent {
                position,
                event_id,
                event_type: event.event_type(),
                schema_version: event.schema_version(),
                recorded_at: &recorded_at_text,
                payload: &payload,
                metadata: &metadata,
            },
        );
        self.hash_time += hashing.elapsed();
        self.rows.push([
            position.into(),
            event_id.into(),
            event.event_type().into(),
            event.schema_version().into(),
            payload.into(),
            metadata.into(),
            recorded_at.into(),
            chain_head.to_vec().into(),
        ]);
        self.last = Some((position, *chain_head));
    }

    /// Adds an event as it was stored (an import), whose hash was checked.
    pub fn push_stored(&mut self, event: &StoredEvent) {
        self.rows.push([
            event.position.into(),
            event.event_id.into(),
            event.event_type.as_str().into(),
            event.schema_version.into(),
            event.payload.as_str().into(),
            event.metadata.as_str().into(),
            event.recorded_at.into(),
            event.hash.clone().into(),
        ]);
        if let Ok(hash) = Hash::try_from(event.hash.as_slice()) {
            self.last = Some((event.position, hash));
        }
    }
}
