//! Loading an export into a new database: every line's hash is recomputed and every event is
//! applied to a fresh ledger state before anything commits, the projections are rebuilt from the
//! events in the same transaction, and the idempotency records of accepted commands are restored
//! from the event metadata. One transaction: an import either lands whole or leaves the database
//! as it was.

use std::io::{BufRead, Read};
use std::time::Instant;

use chrono::{DateTime, Utc};
use domain::chain;
use serde::{Deserialize, Serialize};
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

use crate::audit::{format_recorded_at, verify_chain_on, StoredRow};
use crate::replay::Rebuild;
use crate::writer_lock::{lock_writer, unlock_writer};
use crate::{Error, Result};

/// Events written per statement.
const CHUNK_EVENTS: usize = 10_000;
/// The longest line accepted. The largest event the ledger writes (64 postings, 4 KiB of
/// metadata) is far below it; a longer line is not an export of this ledger.
const LINE_BYTES_MAX: u64 = 1 << 20;

/// One line of an export, exactly the fields `ledger export` writes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportedEvent {
    position: i64,
    event_id: Uuid,
    #[serde(rename = "type")]
    event_type: String,
    schema_version: i16,
    recorded_at: String,
    payload: serde_json::Value,
    metadata: serde_json::Value,
    hash: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    pub events: i64,
    pub head_position: i64,
    pub head_hash: String,
    /// Idempotency records restored: one per accepted command whose metadata names its key.
    pub idempotency_keys: i64,
    pub seconds: f64,
    pub events_per_second: f64,
}

/// Imports NDJSON as `ledger export` writes it into an empty database. Holds the writer's lock,
/// so no server writes meanwhile. `progress(events, bytes)` is called per chunk.
pub async fn import(
    pool: &PgPool,
    input: impl BufRead,
    mut progress: impl FnMut(i64, u64),
) -> Result<ImportReport> {
    let mut conn = lock_writer(
        pool,
        "a ledger server holds the writer lock: stop it before importing",
    )
    .await?;
    let result = import_locked(&mut conn, input, &mut progress).await;
    unlock_writer(conn).await;
    result
}

fn refused(line: u64, reason: impl std::fmt::Display) -> Error {
    Error::ImportRefused(format!("line {line}: {reason}"))
}

async fn import_locked(
    conn: &mut PgConnection,
    mut input: impl BufRead,
    progress: &mut impl FnMut(i64, u64),
) -> Result<ImportReport> {
    let started = Instant::now();
    let mut tx = conn.begin().await?;
    let used: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM events) OR EXISTS (SELECT 1 FROM idempotency_keys)
             OR EXISTS (SELECT 1 FROM assets) OR EXISTS (SELECT 1 FROM accounts)",
    )
    .fetch_one(&mut *tx)
    .await?;
    if used {
        return Err(Error::ImportRefused(
            "the database is not empty: import only into a new database".to_owned(),
        ));
    }

    let mut rebuild = Rebuild::new();
    let mut chunk = Chunk::default();
    let mut line = Vec::new();
    let (mut line_number, mut bytes_read, mut position) = (0u64, 0u64, 0i64);
    loop {
        line.clear();
        let read = (&mut input)
            .take(LINE_BYTES_MAX + 1)
            .read_until(b'\n', &mut line)?;
        if read == 0 {
            break;
        }
        line_number += 1;
        bytes_read += read as u64;
        if read as u64 > LINE_BYTES_MAX {
            return Err(refused(line_number, "longer than 1 MiB"));
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        position += 1;
        let row = parse_line(&line, position).map_err(|e| refused(line_number, e))?;
        let hash_matches = rebuild.push(&row).map_err(|e| refused(line_number, e))?;
        if !hash_matches {
            return Err(refused(
                line_number,
                format!(
                    "the hash of position {position} does not match its content and predecessor"
                ),
            ));
        }
        chunk.push(row);
        if chunk.len() >= CHUNK_EVENTS {
            chunk.write(&mut tx, &mut rebuild).await?;
            progress(position, bytes_read);
        }
    }
    chunk.write(&mut tx, &mut rebuild).await?;
    progress(position, bytes_read);
    let head_hash = chain::to_hex(&rebuild.chain_head);
    rebuild.finish(&mut tx, "public").await?;
    sqlx::query("UPDATE projection_head SET position = $1")
        .bind(position)
        .execute(&mut *tx)
        .await?;

    // What PostgreSQL holds now must verify on its own, as `ledger verify` will read it.
    let stored = verify_chain_on(&mut tx, |_, _| {}).await?;
    if !stored.intact() || stored.head_hash != head_hash || stored.head_position != position {
        return Err(Error::ImportRefused(format!(
            "the stored log does not verify after loading: {}",
            stored.problem.as_deref().unwrap_or("a different head hash")
        )));
    }
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys")
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(ImportReport {
        events: position,
        head_position: position,
        head_hash,
        idempotency_keys: keys,
        seconds,
        events_per_second: position as f64 / seconds.max(1e-9),
    })
}

/// Parses one line into the stored form, checking what the chain alone would not: the position
/// is the next one, and the time is written canonically (so it survives the round trip through
/// PostgreSQL to the same text).
fn parse_line(line: &[u8], expected_position: i64) -> Result<StoredRow, String> {
    let event: ExportedEvent =
        serde_json::from_slice(line).map_err(|e| format!("not an exported event: {e}"))?;
    if event.position != expected_position {
        return Err(format!(
            "position {} where {expected_position} was expected: an export to import starts at position 1 and has no gaps",
            event.position
        ));
    }
    let recorded_at: DateTime<Utc> = DateTime::parse_from_rfc3339(&event.recorded_at)
        .map_err(|e| format!("recorded_at: {e}"))?
        .with_timezone(&Utc);
    if format_recorded_at(recorded_at) != event.recorded_at {
        return Err(
            "recorded_at is not in the canonical form (UTC, six fractional digits, Z)".to_owned(),
        );
    }
    let hash = decode_hex(&event.hash)
        .filter(|h| h.len() == 32)
        .ok_or("hash is not 64 hexadecimal digits")?;
    Ok(StoredRow {
        position: event.position,
        event_id: event.event_id,
        event_type: event.event_type,
        schema_version: event.schema_version,
        payload: event.payload,
        metadata: event.metadata,
        recorded_at,
        hash,
    })
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Events and idempotency records gathered as columns, written with one array insert each.
#[derive(Default)]
struct Chunk {
    position: Vec<i64>,
    event_id: Vec<Uuid>,
    event_type: Vec<String>,
    schema_version: Vec<i16>,
    payload: Vec<String>,
    metadata: Vec<String>,
    recorded_at: Vec<DateTime<Utc>>,
    hash: Vec<Vec<u8>>,
    key: Vec<String>,
    fingerprint: Vec<Vec<u8>>,
    key_position: Vec<i64>,
    key_recorded_at: Vec<DateTime<Utc>>,
}

impl Chunk {
    fn len(&self) -> usize {
        self.position.len()
    }

    /// Adds an event, and the idempotency record its metadata describes.
    fn push(&mut self, row: StoredRow) {
        let key = row.metadata.get("idempotency_key").and_then(|k| k.as_str());
        let fingerprint = row
            .metadata
            .get("request_fingerprint")
            .and_then(|f| f.as_str())
            .and_then(decode_hex);
        if let (Some(key), Some(fingerprint)) = (key, fingerprint) {
            self.key.push(key.to_owned());
            self.fingerprint.push(fingerprint);
            self.key_position.push(row.position);
            self.key_recorded_at.push(row.recorded_at);
        }
        self.position.push(row.position);
        self.event_id.push(row.event_id);
        self.event_type.push(row.event_type);
        self.schema_version.push(row.schema_version);
        self.payload.push(row.payload.to_string());
        self.metadata.push(row.metadata.to_string());
        self.recorded_at.push(row.recorded_at);
        self.hash.push(row.hash);
    }

    /// Writes and empties the chunk, with the projection rows its events produced.
    async fn write(&mut self, conn: &mut PgConnection, rebuild: &mut Rebuild) -> Result<()> {
        if self.position.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "WITH new_events AS (
                 INSERT INTO events (position, event_id, event_type, schema_version, payload, metadata, recorded_at, hash)
                 SELECT p, i, t, v, pl::jsonb, m::jsonb, r, h
                 FROM UNNEST($1::int8[], $2::uuid[], $3::text[], $4::int2[], $5::text[], $6::text[], $7::timestamptz[], $8::bytea[])
                   AS u(p, i, t, v, pl, m, r, h)
             )
             -- A key appears once in a log this ledger wrote; should it repeat, the first use wins,
             -- as it did when the log was written.
             INSERT INTO idempotency_keys (key, fingerprint, position, recorded_at)
             SELECT * FROM UNNEST($9::text[], $10::bytea[], $11::int8[], $12::timestamptz[])
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(&self.position)
        .bind(&self.event_id)
        .bind(&self.event_type)
        .bind(&self.schema_version)
        .bind(&self.payload)
        .bind(&self.metadata)
        .bind(&self.recorded_at)
        .bind(&self.hash)
        .bind(&self.key)
        .bind(&self.fingerprint)
        .bind(&self.key_position)
        .bind(&self.key_recorded_at)
        .execute(&mut *conn)
        .await?;
        *self = Self::default();
        rebuild.take_projections().insert_into(conn, "public").await
    }
}
