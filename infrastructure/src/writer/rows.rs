//! The rows of one batch: its events, the inline projections' rows they produce, and the
//! idempotency records, written with one array insert per table in one statement, so the batch
//! commits atomically in one round trip.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use chrono::{DateTime, Utc};
use domain::chain::Hash;
use domain::{LedgerState, Leg, Rejection};
use sqlx::PgConnection;

use super::idempotency::{self, IDEMPOTENCY_KEYS};
use super::protocol::CommittedEvent;
use super::replication;
use crate::columns::{insert_ctes, Table, TableRows};
use crate::event_store::{EventMetadata, EventRows};
use crate::projections::{Applied, ProjectionRows};
use crate::Result;

pub(crate) struct BatchRows {
    events: EventRows,
    projections: ProjectionRows,
    idempotency: TableRows,
    /// Idempotency keys recorded, for the writer's key filter once committed.
    keys: Vec<String>,
    /// The first record, by which a batch of refusals only is found in the database.
    first_record: Option<(Vec<u8>, DateTime<Utc>)>,
}

impl Default for BatchRows {
    fn default() -> Self {
        Self {
            events: EventRows::default(),
            projections: ProjectionRows::inline(),
            idempotency: TableRows::new(&IDEMPOTENCY_KEYS),
            keys: Vec::new(),
            first_record: None,
        }
    }
}

impl BatchRows {
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.idempotency.is_empty()
    }

    /// The idempotency keys this batch records.
    pub fn idempotency_keys(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(String::as_str)
    }

    /// Time spent hashing this batch's events.
    pub fn hash_time(&self) -> std::time::Duration {
        self.events.hash_time()
    }

    pub fn last_position(&self) -> Option<i64> {
        self.events.last().map(|(position, _)| position)
    }

    /// Whether this batch is in the database, for a write whose outcome is unknown (the session
    /// broke while PostgreSQL may have been committing it). Only meaningful once the session that
    /// sent it is gone, e.g. when the caller holds the writer's lock: until then it might still
    /// commit. A batch with events is there if its last position holds its last hash; a batch of
    /// recorded refusals only, if its first key was recorded at its time with its fingerprint.
    pub async fn is_committed(&self, conn: &mut PgConnection) -> Result<bool> {
        if let Some((position, hash)) = self.events.last() {
            let stored = crate::event_store::hash_at(conn, position).await?;
            return Ok(stored.as_deref() == Some(hash.as_slice()));
        }
        let (Some(key), Some((fingerprint, recorded_at))) = (self.keys.first(), &self.first_record)
        else {
            return Ok(false);
        };
        let found: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM idempotency_keys WHERE key = $1 AND fingerprint = $2 AND recorded_at = $3",
        )
        .bind(key)
        .bind(fingerprint)
        .bind(recorded_at)
        .fetch_optional(conn)
        .await?;
        Ok(found.is_some())
    }

    /// Adds an accepted event, the legs `apply` computed for it, and its idempotency record, and
    /// extends the hash chain whose head is `chain_head` by it.
    pub fn push_event(
        &mut self,
        committed: &CommittedEvent,
        legs: &[Leg],
        metadata: &EventMetadata,
        fingerprint: &[u8],
        chain_head: &mut Hash,
        state: &LedgerState,
    ) {
        let CommittedEvent {
            position,
            recorded_at,
            ref event,
        } = *committed;
        self.events
            .push_decided(position, event, metadata, recorded_at, chain_head);
        let applied = Applied {
            position,
            event,
            recorded_at,
            legs,
        };
        self.projections.push(&applied, Some(state));
        let key = &metadata.idempotency_key;
        idempotency::push_accepted(
            &mut self.idempotency,
            key,
            fingerprint,
            position,
            recorded_at,
        );
        self.record_key(key, fingerprint, recorded_at);
    }

    /// Records a refusal under its idempotency key, so that a retry gets the same answer.
    pub fn push_rejection(
        &mut self,
        key: &str,
        fingerprint: &[u8],
        rejection: &Rejection,
        recorded_at: DateTime<Utc>,
    ) {
        idempotency::push_refused(
            &mut self.idempotency,
            key,
            fingerprint,
            rejection,
            recorded_at,
        );
        self.record_key(key, fingerprint, recorded_at);
    }

    fn record_key(&mut self, key: &str, fingerprint: &[u8], recorded_at: DateTime<Utc>) {
        if self.keys.is_empty() {
            self.first_record = Some((fingerprint.to_vec(), recorded_at));
        }
        self.keys.push(key.to_owned());
    }

    /// Writes everything in one statement: data-modifying CTEs over arrays, one per table that
    /// has rows. A single statement is its own transaction, so the batch commits atomically in
    /// one round trip. Returns how many synchronous standbys the commit waited for
    /// (`replication::REQUIREMENT_COLUMNS`).
    pub async fn write(&self, conn: &mut PgConnection) -> Result<usize> {
        let all = std::iter::once(self.events.rows())
            .chain(self.projections.rows())
            .chain(std::iter::once(&self.idempotency));
        let mut tables: Vec<&TableRows> = Vec::with_capacity(BATCH_TABLES_MAX);
        let mut mask: u32 = 0;
        for (i, rows) in all.enumerate() {
            if !rows.is_empty() {
                mask |= 1 << i;
                tables.push(rows);
            }
        }
        let statement = write_batch(mask, &tables);
        let query = tables
            .iter()
            .fold(sqlx::query(&statement), |query, rows| rows.bind(query));
        let row = query.bind(self.last_position()).fetch_one(conn).await?;
        replication::required_of(&row)
    }
}

/// The tables a batch may write: the events, the inline projections' and the idempotency
/// records'. A batch's statement names only those it has rows for, by a bit each.
const BATCH_TABLES_MAX: usize = 32;

/// The batch's one statement for the set of tables `mask` names (`tables`, in order): the
/// events, the inline projections' rows and the idempotency records, parameters numbered from the
/// tables' declarations, then the new head; it answers the settings that say how many standbys
/// its commit waits for. A table without rows costs PostgreSQL its setup all the same (the
/// relation and its indexes opened, the conflict arbiter prepared), and a transfer leaves most
/// inline tables empty, so each set of tables gets its own statement, built once here and
/// prepared once per session; the sets are few (at most 2^tables, a handful in practice).
fn write_batch(mask: u32, tables: &[&TableRows]) -> Arc<str> {
    static STATEMENTS: LazyLock<Mutex<HashMap<u32, Arc<str>>>> = LazyLock::new(Default::default);
    let mut statements = STATEMENTS.lock().unwrap_or_else(|e| e.into_inner());
    statements
        .entry(mask)
        .or_insert_with(|| {
            let tables: Vec<&'static Table> = tables.iter().map(|rows| rows.table()).collect();
            let (ctes, head) = insert_ctes(&tables, crate::columns::SESSION_BOOK);
            let with = if ctes.is_empty() { String::new() } else { format!("{ctes},\n") };
            format!(
                "WITH {with}head AS (UPDATE projection_head SET position = ${head} WHERE ${head}::int8 IS NOT NULL)\nSELECT {}",
                replication::REQUIREMENT_COLUMNS
            )
            .into()
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_a_batch_writes_has_a_bit_of_the_mask() {
        let tables = 2 + ProjectionRows::inline().tables().len();
        assert!(tables <= BATCH_TABLES_MAX && BATCH_TABLES_MAX <= u32::BITS as usize);
    }
}
