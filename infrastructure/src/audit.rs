//! Auditing the log: walking the hash chain, and exporting the log as NDJSON for verifiers that
//! share no code with this one.

use std::io::Write;

use chrono::{DateTime, SecondsFormat, Utc};
use domain::chain::{self, canonical_json, ChainedEvent, Hash};
use serde::Serialize;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::{secrets, Error, Result};

/// Events read per query while walking the log.
pub(crate) const PAGE_EVENTS: i64 = 10_000;

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
pub(crate) struct StoredRow {
    pub(crate) position: i64,
    pub(crate) event_id: Uuid,
    pub(crate) event_type: String,
    pub(crate) schema_version: i16,
    pub(crate) payload: serde_json::Value,
    pub(crate) metadata: serde_json::Value,
    pub(crate) recorded_at: DateTime<Utc>,
    pub(crate) hash: Vec<u8>,
}

/// The hash of a stored event chained after `previous`.
pub(crate) fn chain_row(previous: &Hash, row: &StoredRow) -> Hash {
    let recorded_at = format_recorded_at(row.recorded_at);
    chain::chain(
        previous,
        &ChainedEvent {
            position: row.position,
            event_id: row.event_id,
            event_type: &row.event_type,
            schema_version: row.schema_version,
            recorded_at: &recorded_at,
            payload: &row.payload,
            metadata: &row.metadata,
        },
    )
}

pub(crate) async fn page(
    executor: impl sqlx::PgExecutor<'_>,
    after: i64,
    limit: i64,
) -> Result<Vec<StoredRow>> {
    let rows = sqlx::query(
        "SELECT position, event_id, event_type, schema_version, payload, metadata, recorded_at, hash
         FROM events WHERE position > $1 ORDER BY position LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(executor)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(StoredRow {
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
pub async fn verify_chain(pool: &PgPool, progress: impl FnMut(i64, i64)) -> Result<ChainReport> {
    let mut conn = pool.acquire().await?;
    verify_chain_on(&mut conn, progress).await
}

/// `verify_chain` on one connection, which may be inside a transaction (an import checks what
/// it wrote before committing).
pub(crate) async fn verify_chain_on(
    conn: &mut PgConnection,
    mut progress: impl FnMut(i64, i64),
) -> Result<ChainReport> {
    let head_position: i64 = sqlx::query_scalar("SELECT COALESCE(max(position), 0) FROM events")
        .fetch_one(&mut *conn)
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
        let rows = page(&mut *conn, expected_position - 1, PAGE_EVENTS).await?;
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
            let computed = chain_row(&previous, &row);
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

/// The ledger's checkpoint signer: an Ed25519 key made on first use and kept in its own table.
pub struct Signer {
    key: ed25519_dalek::SigningKey,
}

impl Signer {
    /// Loads the key, creating it the first time (two servers racing create one key).
    pub async fn load_or_create(pool: &PgPool) -> Result<Self> {
        let seed = secrets::random_secret("a signing key")?;
        let fresh = ed25519_dalek::SigningKey::from_bytes(&seed);
        sqlx::query(
            "INSERT INTO signing_key (secret, public) VALUES ($1, $2) ON CONFLICT (singleton) DO NOTHING",
        )
        .bind(fresh.to_bytes().as_slice())
        .bind(fresh.verifying_key().to_bytes().as_slice())
        .execute(pool)
        .await?;
        let secret = secrets::stored_secret(pool, "signing_key").await?;
        Ok(Self {
            key: ed25519_dalek::SigningKey::from_bytes(&secret),
        })
    }

    pub fn public_key_hex(&self) -> String {
        chain::to_hex_slice(&self.key.verifying_key().to_bytes())
    }

    fn sign(&self, message: &[u8]) -> String {
        use ed25519_dalek::Signer as _;
        chain::to_hex_slice(&self.key.sign(message).to_bytes())
    }
}

/// A signed statement that the log's head is `head_hash` at `position`.
#[derive(Debug, Clone, Serialize)]
pub struct Checkpoint {
    pub position: i64,
    pub head_hash: String,
    /// When the head event was recorded (empty for an empty log).
    pub recorded_at: String,
    /// Ed25519 over `checkpoint_message(position, head_hash, recorded_at)`, hex.
    pub signature: String,
    pub public_key: String,
}

/// The bytes a checkpoint signs: `ledger:checkpoint:v1\n<position>\n<head_hash hex>\n<recorded_at>`.
pub fn checkpoint_message(position: i64, head_hash: &str, recorded_at: &str) -> Vec<u8> {
    format!("ledger:checkpoint:v1\n{position}\n{head_hash}\n{recorded_at}").into_bytes()
}

/// Signs the current head of the log.
pub async fn checkpoint(pool: &PgPool, signer: &Signer) -> Result<Checkpoint> {
    let head: Option<(i64, Vec<u8>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT position, hash, recorded_at FROM events ORDER BY position DESC LIMIT 1",
    )
    .fetch_optional(pool)
    .await?;
    let (position, head_hash, recorded_at) = match head {
        Some((position, hash, at)) => {
            (position, chain::to_hex_slice(&hash), format_recorded_at(at))
        }
        None => (0, chain::to_hex(&chain::genesis()), String::new()),
    };
    let signature = signer.sign(&checkpoint_message(position, &head_hash, &recorded_at));
    Ok(Checkpoint {
        position,
        head_hash,
        recorded_at,
        signature,
        public_key: signer.public_key_hex(),
    })
}

/// Whether the log still extends an earlier checkpoint: the stored hash at `from` is the one the
/// auditor kept, and recomputing the chain from it over (from, to] arrives at the stored hash at
/// `to` (and at `to_hash`, when the auditor kept that too).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Consistency {
    pub consistent: bool,
    pub from: i64,
    pub to: i64,
    /// The first position where the log disagrees with the checkpoints or with itself.
    pub first_broken_position: Option<i64>,
    pub problem: Option<String>,
}

pub async fn consistency(
    pool: &PgPool,
    from: i64,
    from_hash: Option<&str>,
    to: i64,
    to_hash: Option<&str>,
) -> Result<Consistency> {
    let report = Consistency {
        consistent: true,
        from,
        to,
        first_broken_position: None,
        problem: None,
    };
    let broken = |mut report: Consistency, at: i64, problem: String| {
        report.consistent = false;
        report.first_broken_position = Some(at);
        report.problem = Some(problem);
        Ok(report)
    };
    let stored_at = |position: i64| async move {
        if position == 0 {
            return Ok::<_, Error>(Some(chain::genesis().to_vec()));
        }
        Ok(
            sqlx::query_scalar::<_, Vec<u8>>("SELECT hash FROM events WHERE position = $1")
                .bind(position)
                .fetch_optional(pool)
                .await?,
        )
    };
    let Some(start) = stored_at(from).await? else {
        return broken(report, from, format!("position {from} is not in the log"));
    };
    if let Some(expected) = from_hash {
        if chain::to_hex_slice(&start) != expected.to_ascii_lowercase() {
            return broken(
                report,
                from,
                format!("the hash at {from} is not the checkpoint's: the history up to it was rewritten"),
            );
        }
    }
    let mut previous: Hash = start
        .try_into()
        .map_err(|_| Error::Corrupt(format!("the hash at {from} is not 32 bytes")))?;
    let mut expected_position = from + 1;
    while expected_position <= to {
        let rows = page(
            pool,
            expected_position - 1,
            PAGE_EVENTS.min(to - expected_position + 1),
        )
        .await?;
        if rows.is_empty() {
            return broken(
                report,
                expected_position,
                format!("position {expected_position} is missing"),
            );
        }
        for row in rows {
            if row.position != expected_position {
                return broken(
                    report,
                    expected_position,
                    format!("position {expected_position} is missing"),
                );
            }
            let computed = chain_row(&previous, &row);
            if computed.as_slice() != row.hash.as_slice() {
                return broken(
                    report,
                    row.position,
                    format!(
                        "the hash of position {} does not match its content and predecessor",
                        row.position
                    ),
                );
            }
            previous = computed;
            expected_position += 1;
        }
    }
    if let Some(expected) = to_hash {
        if chain::to_hex(&previous) != expected.to_ascii_lowercase() {
            return broken(
                report,
                to,
                format!("the hash at {to} is not the checkpoint's"),
            );
        }
    }
    Ok(report)
}
