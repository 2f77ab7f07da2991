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

use crate::columns::{insert_ctes, TableRows};
use crate::event_store::verify::verify_chain_on;
use crate::event_store::{format_recorded_at, EventRows, Link, StoredEvent, EVENTS};
use crate::projections::{self as projections, checkpoints};
use crate::replay::Rebuild;
use crate::writer::idempotency::{self, decode_hex, IMPORTED_KEYS};
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
    payload: Box<serde_json::value::RawValue>,
    metadata: Box<serde_json::value::RawValue>,
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

    let mut rebuild = Rebuild::new(projections::PROJECTIONS);
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
        let link = rebuild.push(&row).map_err(|e| refused(line_number, e))?;
        if let Link::Respelled(_, why) = &link {
            tracing::warn!(position, "{why}");
        }
        if let Some(problem) = link.problem(position) {
            return Err(refused(line_number, problem));
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
    rebuild.finish()?;
    sqlx::query("UPDATE projection_head SET position = $1")
        .bind(position)
        .execute(&mut *tx)
        .await?;
    for projection in projections::asynchronous() {
        checkpoints::set(&mut tx, projection.name, position).await?;
    }

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
fn parse_line(line: &[u8], expected_position: i64) -> Result<StoredEvent, String> {
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
    // Kept as the line gives them: the chain check (`StoredEvent::link`) refuses text that is
    // not canonical, as it refuses a hash that does not match.
    let payload = String::from(Box::<str>::from(event.payload));
    let metadata = String::from(Box::<str>::from(event.metadata));
    Ok(StoredEvent {
        position: event.position,
        event_id: event.event_id,
        event_type: event.event_type,
        schema_version: event.schema_version,
        payload,
        metadata,
        recorded_at,
        hash,
    })
}

/// Events and the idempotency records their metadata describes, written with one array insert
/// each, with the projection rows the events produced.
struct Chunk {
    events: EventRows,
    keys: TableRows,
}

impl Default for Chunk {
    fn default() -> Self {
        Self {
            events: EventRows::default(),
            keys: TableRows::new(&IMPORTED_KEYS),
        }
    }
}

impl Chunk {
    fn len(&self) -> usize {
        self.events.rows().len()
    }

    fn push(&mut self, event: StoredEvent) {
        idempotency::push_imported(&mut self.keys, &event);
        self.events.push_stored(&event);
    }

    /// Writes and empties the chunk, with the projection rows its events produced.
    async fn write(&mut self, conn: &mut PgConnection, rebuild: &mut Rebuild) -> Result<()> {
        if self.len() == 0 {
            return Ok(());
        }
        let (ctes, _) = insert_ctes(&[&EVENTS, &IMPORTED_KEYS], crate::columns::SESSION_BOOK);
        let statement = format!("WITH {ctes} SELECT 1");
        let query = self.events.rows().bind(sqlx::query(&statement));
        self.keys.bind(query).execute(&mut *conn).await?;
        *self = Self::default();
        rebuild.write(conn, crate::columns::SESSION_BOOK).await
    }
}
