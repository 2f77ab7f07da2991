//! One batch of the writer: the events it appends, the inline projection rows they produce, and the
//! idempotency records, gathered as columns and written with one array insert per table, all in one
//! PostgreSQL transaction.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use domain::chain::{canonical_json, ChainedEvent, Hash};
use domain::{Event, LedgerState, Leg, Rejection};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::projection::{projection_ctes, BalanceColumns, ProjectionRows, PROJECTION_PARAMETERS};
use crate::Result;

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

#[derive(Default)]
pub struct Batch {
    events: EventColumns,
    projections: ProjectionRows,
    idempotency: IdempotencyColumns,
    last_position: Option<i64>,
}

/// The rows the inline projections get from a run of events: what the writer adds to each batch,
/// and what a replay rebuilds from the log.
#[derive(Default)]
struct EventColumns {
    position: Vec<i64>,
    event_id: Vec<Uuid>,
    event_type: Vec<&'static str>,
    schema_version: Vec<i16>,
    payload: Vec<String>,
    metadata: Vec<String>,
    recorded_at: Vec<DateTime<Utc>>,
    hash: Vec<Vec<u8>>,
}

#[derive(Default)]
struct IdempotencyColumns {
    key: Vec<String>,
    fingerprint: Vec<Vec<u8>>,
    position: Vec<Option<i64>>,
    rejection: Vec<Option<String>>,
    recorded_at: Vec<DateTime<Utc>>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.events.position.is_empty() && self.idempotency.key.is_empty()
    }

    /// The idempotency keys this batch records.
    pub fn idempotency_keys(&self) -> impl Iterator<Item = &str> {
        self.idempotency.key.iter().map(String::as_str)
    }

    pub fn last_position(&self) -> Option<i64> {
        self.last_position
    }

    /// Whether this batch is in the database, for a write whose outcome is unknown (the session
    /// broke while PostgreSQL may have been committing it). Only meaningful once the session that
    /// sent it is gone, e.g. when the caller holds the writer's lock: until then it might still
    /// commit. A batch with events is there if its last position holds its last hash; a batch of
    /// recorded refusals only, if its first key was recorded at its time with its fingerprint.
    pub async fn is_committed(&self, conn: &mut PgConnection) -> Result<bool> {
        if let (Some(position), Some(hash)) = (self.last_position, self.events.hash.last()) {
            let stored: Option<Vec<u8>> =
                sqlx::query_scalar("SELECT hash FROM events WHERE position = $1")
                    .bind(position)
                    .fetch_optional(conn)
                    .await?;
            return Ok(stored.as_ref() == Some(hash));
        }
        let i = &self.idempotency;
        let (Some(key), Some(fingerprint), Some(recorded_at)) =
            (i.key.first(), i.fingerprint.first(), i.recorded_at.first())
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
    #[allow(clippy::too_many_arguments)]
    pub fn push_event(
        &mut self,
        position: i64,
        event: &Event,
        legs: &[Leg],
        metadata: &EventMetadata,
        fingerprint: &[u8],
        recorded_at: DateTime<Utc>,
        chain_head: &mut Hash,
        state: &LedgerState,
    ) {
        // Time-ordered ids keep the unique index append-only instead of scattering inserts.
        let event_id = Uuid::now_v7();
        let payload = event.encode();
        let metadata_json = serde_json::to_value(metadata).unwrap_or_default();
        let recorded_at_text = crate::audit::format_recorded_at(recorded_at);
        *chain_head = domain::chain::chain(
            chain_head,
            &ChainedEvent {
                position,
                event_id,
                event_type: event.event_type(),
                schema_version: event.schema_version(),
                recorded_at: &recorded_at_text,
                payload: &payload,
                metadata: &metadata_json,
            },
        );
        let e = &mut self.events;
        e.position.push(position);
        e.event_id.push(event_id);
        e.event_type.push(event.event_type());
        e.schema_version.push(event.schema_version());
        e.payload.push(canonical_json(&payload));
        e.metadata.push(canonical_json(&metadata_json));
        e.recorded_at.push(recorded_at);
        e.hash.push(chain_head.to_vec());

        self.projections
            .push(position, event, legs, recorded_at, state);
        self.push_idempotency(
            &metadata.idempotency_key,
            fingerprint,
            Some(position),
            None,
            recorded_at,
        );
        self.last_position = Some(position);
    }

    /// Records a refusal under its idempotency key, so that a retry gets the same answer.
    pub fn push_rejection(
        &mut self,
        key: &str,
        fingerprint: &[u8],
        rejection: &Rejection,
        recorded_at: DateTime<Utc>,
    ) {
        let encoded = serde_json::to_string(rejection).unwrap_or_else(|_| "{}".to_owned());
        self.push_idempotency(key, fingerprint, None, Some(encoded), recorded_at);
    }

    fn push_idempotency(
        &mut self,
        key: &str,
        fingerprint: &[u8],
        position: Option<i64>,
        rejection: Option<String>,
        recorded_at: DateTime<Utc>,
    ) {
        let i = &mut self.idempotency;
        i.key.push(key.to_owned());
        i.fingerprint.push(fingerprint.to_vec());
        i.position.push(position);
        i.rejection.push(rejection);
        i.recorded_at.push(recorded_at);
    }

    /// Writes everything in one statement: data-modifying CTEs over arrays, one per table. A
    /// single statement is its own transaction, so the batch commits atomically in one round
    /// trip; empty arrays insert nothing, so the statement is the same for every batch and is
    /// prepared once.
    pub async fn write(&self, conn: &mut PgConnection) -> Result<()> {
        let balances = BalanceColumns::new(self.projections.balances.iter());
        let (e, i) = (&self.events, &self.idempotency);
        let query = sqlx::query(WRITE_BATCH.as_str())
            .bind(&e.position)
            .bind(&e.event_id)
            .bind(&e.event_type)
            .bind(&e.schema_version)
            .bind(&e.payload)
            .bind(&e.metadata)
            .bind(&e.recorded_at)
            .bind(&e.hash);
        balances
            .bind(self.projections.bind_rows(query))
            .bind(&i.key)
            .bind(&i.fingerprint)
            .bind(&i.position)
            .bind(&i.rejection)
            .bind(&i.recorded_at)
            .bind(self.last_position)
            .execute(conn)
            .await?;
        Ok(())
    }
}

/// The batch's one statement: events $1–8, then the projection rows, balances (6), idempotency
/// records (5) and the new head (1), numbered on from there.
static WRITE_BATCH: LazyLock<String> = LazyLock::new(|| {
    let n = |i: usize| format!("${}", EVENT_PARAMETERS + PROJECTION_PARAMETERS + i);
    format!(
        "WITH new_events AS (
    INSERT INTO events (position, event_id, event_type, schema_version, payload, metadata, recorded_at, hash)
    SELECT p, i, t, v, pl::jsonb, m::jsonb, r, h
    FROM UNNEST($1::int8[], $2::uuid[], $3::text[], $4::int2[], $5::text[], $6::text[], $7::timestamptz[], $8::bytea[])
      AS u(p, i, t, v, pl, m, r, h)
), {}, new_balances AS (
    INSERT INTO balances (account_id, asset, balance, position, pending_debits, pending_credits)
    SELECT * FROM UNNEST({}::uuid[], {}::text[], {}::numeric[], {}::int8[], {}::numeric[], {}::numeric[])
    ON CONFLICT (account_id, asset) DO UPDATE SET balance = EXCLUDED.balance,
        position = EXCLUDED.position, pending_debits = EXCLUDED.pending_debits,
        pending_credits = EXCLUDED.pending_credits
), new_keys AS (
    INSERT INTO idempotency_keys (key, fingerprint, position, rejection, recorded_at)
    SELECT k, f, p, r::jsonb, t
    FROM UNNEST({}::text[], {}::bytea[], {}::int8[], {}::text[], {}::timestamptz[])
      AS u(k, f, p, r, t)
)
UPDATE projection_head SET position = {} WHERE {}::int8 IS NOT NULL",
        projection_ctes("public", EVENT_PARAMETERS),
        n(1), n(2), n(3), n(4), n(5), n(6),
        n(7), n(8), n(9), n(10), n(11),
        n(12), n(12),
    )
});

/// Parameters the event columns take, first in the statement.
const EVENT_PARAMETERS: usize = 8;
