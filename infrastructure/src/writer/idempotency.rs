//! Idempotency records: each key with a fingerprint of the request it was first used with and
//! its outcome, the event's position when accepted, the refusal when not. Written by the writer
//! in the batch's transaction, so kept across restarts. They record commands, not events (a
//! refusal leaves no event), so they are not a projection of the log; an import restores those
//! of accepted commands from the events' metadata.

use chrono::{DateTime, Utc};
use domain::Rejection;
use futures_util::TryStreamExt;
use sqlx::PgConnection;

use super::key_filter::KeyFilter;
use crate::columns::{col, Column, OnConflict, SqlType, Table, TableRows};
use crate::event_store::{EventMetadata, StoredEvent};
use crate::Result;

const COLUMNS: &[Column] = &[
    col("key", SqlType::Text),
    col("fingerprint", SqlType::Bytea),
    col("position", SqlType::Int8),
    col("rejection", SqlType::Jsonb),
    col("recorded_at", SqlType::Timestamptz),
];

/// As the writer writes them: a key is recorded once (the writer looked it up first).
pub static IDEMPOTENCY_KEYS: Table = Table {
    name: "idempotency_keys",
    columns: COLUMNS,
    on_conflict: OnConflict::Refuse,
};

/// As an import restores them: a key appears once in a log this ledger wrote; should it repeat,
/// the first use wins, as it did when the log was written.
pub static IMPORTED_KEYS: Table = Table {
    name: "idempotency_keys",
    columns: COLUMNS,
    on_conflict: OnConflict::Keep { key_columns: 1 },
};

/// The record of an accepted command.
pub fn push_accepted(
    rows: &mut TableRows,
    key: &str,
    fingerprint: &[u8],
    position: i64,
    recorded_at: DateTime<Utc>,
) {
    rows.push([
        key.into(),
        fingerprint.to_vec().into(),
        position.into(),
        Option::<String>::None.into(),
        recorded_at.into(),
    ]);
}

/// The record of a refusal, so that a retry gets the same answer.
pub fn push_refused(
    rows: &mut TableRows,
    key: &str,
    fingerprint: &[u8],
    rejection: &Rejection,
    recorded_at: DateTime<Utc>,
) {
    let encoded = serde_json::to_string(rejection).unwrap_or_else(|_| "{}".to_owned());
    rows.push([
        key.into(),
        fingerprint.to_vec().into(),
        Option::<i64>::None.into(),
        encoded.into(),
        recorded_at.into(),
    ]);
}

/// The record an imported event's metadata describes, if it names its key and fingerprint.
pub fn push_imported(rows: &mut TableRows, event: &StoredEvent) {
    let Ok(envelope) = serde_json::from_str::<EventMetadata>(&event.metadata) else {
        return;
    };
    let fingerprint = envelope.request_fingerprint.as_deref().and_then(decode_hex);
    if let Some(fingerprint) = fingerprint {
        push_accepted(
            rows,
            &envelope.idempotency_key,
            &fingerprint,
            event.position,
            event.recorded_at,
        );
    }
}

pub(crate) fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Every key stored so far, into the filter that tells the writer which keys to look up.
pub(crate) async fn restore(conn: &mut PgConnection) -> Result<KeyFilter> {
    let mut keys = KeyFilter::default();
    let mut stored =
        sqlx::query_scalar::<_, String>("SELECT key FROM idempotency_keys").fetch(conn);
    while let Some(key) = stored.try_next().await? {
        keys.insert(&key);
    }
    Ok(keys)
}

/// What the writer answered to the command under a key, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredOutcome {
    Accepted { position: i64 },
    Refused(Rejection),
}

/// The stored answer to the command under `key` in the book the pool's sessions work on; `None`
/// when there is none. Read it on the primary: the record is written in the writer's own commit.
pub async fn stored_outcome(pool: &sqlx::PgPool, key: &str) -> Result<Option<StoredOutcome>> {
    let row: Option<(Option<i64>, Option<String>)> =
        sqlx::query_as("SELECT position, rejection::text FROM idempotency_keys WHERE key = $1")
            .bind(key)
            .fetch_optional(pool)
            .await?;
    match row {
        None => Ok(None),
        Some((Some(position), _)) => Ok(Some(StoredOutcome::Accepted { position })),
        Some((None, Some(rejection))) => serde_json::from_str(&rejection)
            .map(|r| Some(StoredOutcome::Refused(r)))
            .map_err(|e| crate::Error::Corrupt(format!("the refusal stored under {key}: {e}"))),
        Some((None, None)) => Err(crate::Error::Corrupt(format!(
            "the idempotency record {key} holds neither a position nor a refusal"
        ))),
    }
}
