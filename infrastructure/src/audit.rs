//! Auditing the log: walking the hash chain, and exporting the log as NDJSON for verifiers that
//! share no code with this one.

use std::io::Write;

use chrono::{DateTime, SecondsFormat, Utc};
use domain::chain::{self, canonical_json, ChainedEvent, Hash};
use serde::Serialize;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::{Error, Result};

/// Events read per query while walking the log.
const PAGE_EVENTS: i64 = 10_000;

/// The timestamp as the chain covers it: RFC 3339, UTC, exactly six fractional digits, `Z`.
pub fn format_recorded_at(recorded_at: DateTime<Utc>) -> String {
    recorded_at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// What walking the chain found.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ChainReport {
    /// Events whose hash was recomputed and matched, from position 1.
    pub events_verified: i64,
    /// The last position of the log.
    pub head_position: i64,
    /// The hash stored with the last event (hex), or the genesis hash for an empty log.
    pub head_hash: String,
    /// The first position where the chain breaks: an altered, missing or misplaced event.
    pub first_broken_position: Option<i64>,
    pub problem: Option<String>,
}

impl ChainReport {
    pub fn intact(&self) -> bool {
        self.first_broken_position.is_none()
    }
}

/// One stored event, with everything the chain covers.
struct Row_ {
    position: i64,
    event_id: Uuid,
    event_type: String,
    schema_version: i16,
    payload: serde_json::Value,
    metadata: serde_json::Value,
    recorded_at: DateTime<Utc>,
    hash: Vec<u8>,
}

async fn page(pool: &PgPool, after: i64, limit: i64) -> Result<Vec<Row_>> {
    let rows = sqlx::query(
        "SELECT position, event_id, event_type, schema_version, payload, metadata, recorded_at, hash
         FROM events WHERE position > $1 ORDER BY position LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Row_ {
                position: r.try_get("position")?,
                event_id: r.try_get("event_id")?,
                event_type: r.try_get("event_type")?,
                schema_version: r.try_get("schema_version")?,
                payload: r.try_get("payload")?,
                metadata: r.try_get("metadata")?,
                recorded_at: r.try_get("recorded_at")?,
                hash: r.try_get("hash")?,
            })
        })
        .collect()
}

/// Recomputes the chain from the genesis hash over the whole log, in position order, and
/// reports the first position where it breaks. `progress(done, total)` is called per page.
pub async fn verify_chain(
    pool: &PgPool,
    mut progress: impl FnMut(i64, i64),
) -> Result<ChainReport> {
    let head_position: i64 = sqlx::query_scalar("SELECT COALESCE(max(position), 0) FROM events")
        .fetch_one(pool)
        .await?;
    let mut previous: Hash = chain::genesis();
    let mut report = ChainReport {
        events_verified: 0,
        head_position,
        head_hash: chain::to_hex(&previous),
        first_broken_position: None,
        problem: None,
    };
    let mut expected_position = 1;
    'pages: while expected_position <= head_position {
        let rows = page(pool, expected_position - 1, PAGE_EVENTS).await?;
        if rows.is_empty() {
            break;
        }
        for row in rows {
            let stored_hash = chain::to_hex_slice(&row.hash);
            report.head_hash = stored_hash.clone();
            if row.position != expected_position {
                report.first_broken_position = Some(expected_position);
                report.problem = Some(format!(
                    "position {expected_position} is missing (the next event is at {})",
                    row.position
                ));
                break 'pages;
            }
            let recorded_at = format_recorded_at(row.recorded_at);
            let computed = chain::chain(
                &previous,
                &ChainedEvent {
                    position: row.position,
                    event_id: row.event_id,
                    event_type: &row.event_type,
                    schema_version: row.schema_version,
                    recorded_at: &recorded_at,
                    payload: &row.payload,
                    metadata: &row.metadata,
                },
            );
            if computed.as_slice() != row.hash.as_slice() {
                report.first_broken_position = Some(row.position);
                report.problem = Some(format!(
                    "the hash of position {} does not match its content and predecessor",
                    row.position
                ));
                break 'pages;
            }
            previous = computed;
            report.events_verified += 1;
            expected_position += 1;
        }
        progress(report.events_verified, head_position);
    }
    Ok(report)
}

/// One line of an export: the stored event, with its hash, in canonical JSON.
#[derive(Serialize)]
struct ExportLine<'a> {
    position: i64,
    event_id: Uuid,
    #[serde(rename = "type")]
    event_type: &'a str,
    schema_version: i16,
    recorded_at: String,
    payload: &'a serde_json::Value,
    metadata: &'a serde_json::Value,
    hash: String,
}

/// Writes the events after `after` as NDJSON, one canonical JSON object per line. Returns the
/// number of events written.
pub async fn export(pool: &PgPool, after: i64, out: &mut impl Write) -> Result<i64> {
    let mut after = after;
    let mut written = 0;
    loop {
        let rows = page(pool, after, PAGE_EVENTS).await?;
        let Some(last) = rows.last() else {
            break;
        };
        after = last.position;
        for row in &rows {
            let line = serde_json::to_value(ExportLine {
                position: row.position,
                event_id: row.event_id,
                event_type: &row.event_type,
                schema_version: row.schema_version,
                recorded_at: format_recorded_at(row.recorded_at),
                payload: &row.payload,
                metadata: &row.metadata,
                hash: chain::to_hex_slice(&row.hash),
            })
            .map_err(|e| Error::Corrupt(e.to_string()))?;
            out.write_all(canonical_json(&line).as_bytes())?;
            out.write_all(b"\n")?;
            written += 1;
        }
    }
    out.flush()?;
    Ok(written)
}
