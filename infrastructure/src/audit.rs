//! Auditing the log: exporting it as NDJSON for verifiers that share no code with this one, and
//! signing checkpoints of its head. Walking the chain is the event store's (`event_store::verify`).

use std::io::Write;

use domain::chain;
use domain::trial_balance::{ClosesRecomputation, ClosesReport};
use domain::Event;
use serde::Serialize;
use serde_json::value::RawValue;
use sqlx::PgPool;
use uuid::Uuid;

pub use crate::event_store::format_recorded_at;
use crate::event_store::verify::verify_chain_visiting;
pub use crate::event_store::verify::{consistency, verify_chain, ChainReport, Consistency};
use crate::event_store::{self, page, StoredEvent, EVENT_COLUMNS, PAGE_EVENTS};
use crate::{secrets, Error, Result};

/// One line of an export: the stored event, with its hash, in canonical JSON. The fields are
/// declared in the canonical order (sorted by name, `type` last), and serde_json escapes strings
/// canonically, so the line is written canonical as it is; the payload and metadata are the
/// stored text, byte for byte, whatever it holds.
#[derive(Serialize)]
struct ExportLine<'a> {
    event_id: Uuid,
    hash: String,
    metadata: Box<RawValue>,
    payload: Box<RawValue>,
    position: i64,
    recorded_at: String,
    schema_version: i16,
    #[serde(rename = "type")]
    event_type: &'a str,
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
            let (payload, metadata) = row.raw_json()?;
            let line = serde_json::to_string(&ExportLine {
                position: row.position,
                event_id: row.event_id,
                event_type: &row.event_type,
                schema_version: row.schema_version,
                recorded_at: format_recorded_at(row.recorded_at),
                payload,
                metadata,
                hash: chain::to_hex_slice(&row.hash),
            })
            .map_err(|e| Error::Corrupt(e.to_string()))?;
            out.write_all(line.as_bytes())?;
            out.write_all(b"\n")?;
            written += 1;
        }
    }
    out.flush()?;
    Ok(written)
}

/// The hash chain walked (`verify_chain`) and, in the same pass, every close's trial balance
/// recomputed from the events alone and checked against the digest it recorded
/// (`domain::trial_balance::ClosesRecomputation`): the closes recorded when verification began,
/// up to where the chain verified.
pub async fn verify_log(
    pool: &PgPool,
    progress: impl FnMut(i64, i64),
) -> Result<(ChainReport, ClosesReport)> {
    let mut conn = pool.acquire().await?;
    let mut pass = ClosesRecomputation::new(recorded_closes(&mut conn).await?);
    let chain = verify_chain_visiting(&mut conn, progress, |stored| {
        if !pass.is_empty() {
            pass.apply(stored.position, stored.recorded_at, &stored.decode()?);
        }
        Ok(())
    })
    .await?;
    Ok((chain, pass.finish()))
}

/// Every `PeriodClosed` of the log, read from the log itself (not the periods projection).
async fn recorded_closes(
    conn: &mut sqlx::PgConnection,
) -> Result<Vec<(i64, domain::event::PeriodClosed)>> {
    let rows = sqlx::query(&format!(
        "SELECT {EVENT_COLUMNS} FROM events e WHERE e.event_type = $1 ORDER BY e.position"
    ))
    .bind(Event::PERIOD_CLOSED)
    .fetch_all(conn)
    .await?;
    let mut closes = Vec::with_capacity(rows.len());
    for row in &rows {
        let stored = StoredEvent::from_row(row)?;
        match stored.decode()? {
            Event::PeriodClosed(close) => closes.push((stored.position, close)),
            _ => {
                return Err(Error::Corrupt(format!(
                    "position {}: a PeriodClosed that is not one",
                    stored.position
                )))
            }
        }
    }
    Ok(closes)
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

/// A signed statement that ledger `ledger`'s log has the head `head_hash` at `position`.
#[derive(Debug, Clone, Serialize)]
pub struct Checkpoint {
    /// The ledger whose log this is: signed with the rest, so that one ledger's checkpoint cannot
    /// be passed off as another's.
    pub ledger: String,
    pub position: i64,
    pub head_hash: String,
    /// When the head event was recorded (empty for an empty log).
    pub recorded_at: String,
    /// Ed25519 over `checkpoint_message(ledger, position, head_hash, recorded_at)`, hex.
    pub signature: String,
    pub public_key: String,
}

/// The bytes a checkpoint signs:
/// `ledger:checkpoint:v2\n<ledger>\n<position>\n<head_hash hex>\n<recorded_at>`. (v1, before there
/// were many ledgers, had no `<ledger>` line.)
pub fn checkpoint_message(
    ledger: &str,
    position: i64,
    head_hash: &str,
    recorded_at: &str,
) -> Vec<u8> {
    format!("ledger:checkpoint:v2\n{ledger}\n{position}\n{head_hash}\n{recorded_at}").into_bytes()
}

/// Signs the current head of the log of `ledger`, whose book the pool's sessions work on.
pub async fn checkpoint(pool: &PgPool, signer: &Signer, ledger: &str) -> Result<Checkpoint> {
    let (position, head_hash, recorded_at) = match event_store::last(pool).await? {
        Some((position, at, hash)) => (position, chain::to_hex(&hash), format_recorded_at(at)),
        None => (0, chain::to_hex(&chain::genesis()), String::new()),
    };
    let signature = signer.sign(&checkpoint_message(
        ledger,
        position,
        &head_hash,
        &recorded_at,
    ));
    Ok(Checkpoint {
        ledger: ledger.to_owned(),
        position,
        head_hash,
        recorded_at,
        signature,
        public_key: signer.public_key_hex(),
    })
}
