//! Transfers between ledgers, as the coordinator records them (`public.ledger_transfers`). Each
//! ledger balances on its own, so the money passes through a settlement account per pair of
//! ledgers, in each: `ledger:<destination>` in the source ledger and `ledger:<source>` in the
//! destination ledger (`settlement_account`). The steps:
//!
//! 1. **Record** the transfer with the ids of its two holds (`create`): state `reserving`.
//! 2. **Reserve** in the source ledger: a hold from the source to `ledger:<destination>`.
//! 3. **Reserve** in the destination ledger: a hold from `ledger:<source>` to the destination.
//! 4. **Decide** (`decide`): `posting` when both holds were accepted, `voiding` when either was
//!    refused. Recorded before either hold is settled.
//! 5. **Settle** both holds as decided, then `finish`: `posted` or `voided`.
//!
//! Every step is a command under an idempotency key of the ledger's own, derived from the
//! transfer's id and the step, so running a transfer again (after a crash, on another node)
//! repeats nothing and ends where the first run would have. The holds never expire on their own.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::Result;

/// What a ledger's writer answered to a step, as its idempotency record keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOutcome {
    Applied,
    Refused(domain::Rejection),
}

/// The stored answer to the step under `key` in the book the pool's sessions work on (read on
/// the primary); `None` when the ledger's writer has not taken it yet. A node that is not a
/// ledger's writer learns from it what the writer did with a step.
pub async fn step_outcome(book: &PgPool, key: &str) -> Result<Option<StepOutcome>> {
    use crate::writer::idempotency::{stored_outcome, StoredOutcome};
    Ok(stored_outcome(book, key).await?.map(|stored| match stored {
        StoredOutcome::Accepted { .. } => StepOutcome::Applied,
        StoredOutcome::Refused(rejection) => StepOutcome::Refused(rejection),
    }))
}

/// Transfers listed per page at most.
pub const PAGE_MAX: i64 = 1000;

/// The account in ledger `holder` through which money moves to and from ledger `other`.
pub fn settlement_account(other: &str) -> String {
    format!("ledger:{other}")
}

/// The idempotency key of `step` of transfer `id`: one of the ledger's own (`ledger:` keys, which
/// clients may not use).
pub fn step_key(id: Uuid, step: &str) -> String {
    format!("{}xfer:{id}:{step}", crate::INTERNAL_KEY_PREFIX)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Reserving,
    Posting,
    Voiding,
    Posted,
    Voided,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reserving => "reserving",
            Self::Posting => "posting",
            Self::Voiding => "voiding",
            Self::Posted => "posted",
            Self::Voided => "voided",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Reserving,
            Self::Posting,
            Self::Voiding,
            Self::Posted,
            Self::Voided,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    /// Whether it still has steps to run.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Reserving | Self::Posting | Self::Voiding)
    }
}

/// What a client asks for, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub source_ledger: String,
    pub source: String,
    pub destination_ledger: String,
    pub destination: String,
    pub asset: String,
    pub amount: String,
    /// Canonical JSON text.
    pub metadata: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerTransfer {
    pub id: Uuid,
    pub request: Request,
    pub source_hold: Uuid,
    pub destination_hold: Uuid,
    pub state: State,
    /// The refusal that voided it (a problem document's JSON text) and the ledger that refused.
    pub refusal: Option<String>,
    pub refused_by: Option<String>,
    pub api_key_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, source_ledger, source, destination_ledger, destination, asset, amount, \
    metadata, source_hold, destination_hold, state, refusal, refused_by, api_key_id, created_at, \
    decided_at, finished_at";

fn from_row(row: &sqlx::postgres::PgRow) -> Result<LedgerTransfer> {
    let state: String = row.try_get("state")?;
    Ok(LedgerTransfer {
        id: row.try_get("id")?,
        request: Request {
            source_ledger: row.try_get("source_ledger")?,
            source: row.try_get("source")?,
            destination_ledger: row.try_get("destination_ledger")?,
            destination: row.try_get("destination")?,
            asset: row.try_get("asset")?,
            amount: row.try_get("amount")?,
            metadata: row.try_get("metadata")?,
        },
        source_hold: row.try_get("source_hold")?,
        destination_hold: row.try_get("destination_hold")?,
        state: State::parse(&state)
            .ok_or_else(|| crate::Error::Corrupt(format!("ledger transfer state {state:?}")))?,
        refusal: row.try_get("refusal")?,
        refused_by: row.try_get("refused_by")?,
        api_key_id: row.try_get("api_key_id")?,
        created_at: row.try_get("created_at")?,
        decided_at: row.try_get("decided_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

/// What `create` found or made.
pub enum Created {
    New(LedgerTransfer),
    /// The idempotency key was used before for this very request.
    Earlier(LedgerTransfer),
    /// The idempotency key was used before for another request.
    KeyReused,
}

/// Records a new transfer, or finds the one recorded under the same idempotency key.
pub async fn create(
    pool: &PgPool,
    idempotency_key: &str,
    fingerprint: &[u8],
    request: &Request,
    api_key_id: Option<Uuid>,
) -> Result<Created> {
    let inserted = sqlx::query(&format!(
        "INSERT INTO ledger_transfers (id, idempotency_key, fingerprint, source_ledger, source,
             destination_ledger, destination, asset, amount, metadata, source_hold,
             destination_hold, state, api_key_id, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'reserving', $13, now())
         ON CONFLICT (idempotency_key) DO NOTHING
         RETURNING {COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(idempotency_key)
    .bind(fingerprint)
    .bind(&request.source_ledger)
    .bind(&request.source)
    .bind(&request.destination_ledger)
    .bind(&request.destination)
    .bind(&request.asset)
    .bind(&request.amount)
    .bind(&request.metadata)
    .bind(Uuid::now_v7())
    .bind(Uuid::now_v7())
    .bind(api_key_id)
    .fetch_optional(pool)
    .await?;
    if let Some(row) = inserted {
        return Ok(Created::New(from_row(&row)?));
    }
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS}, fingerprint FROM ledger_transfers WHERE idempotency_key = $1"
    ))
    .bind(idempotency_key)
    .fetch_one(pool)
    .await?;
    let stored: Vec<u8> = row.try_get("fingerprint")?;
    if stored != fingerprint {
        return Ok(Created::KeyReused);
    }
    Ok(Created::Earlier(from_row(&row)?))
}

/// What `create` would find under `idempotency_key` without recording anything (for a dry run):
/// `Earlier`, `KeyReused`, or `None` when the key is unused.
pub async fn find(
    pool: &PgPool,
    idempotency_key: &str,
    fingerprint: &[u8],
) -> Result<Option<Created>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS}, fingerprint FROM ledger_transfers WHERE idempotency_key = $1"
    ))
    .bind(idempotency_key)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let stored: Vec<u8> = row.try_get("fingerprint")?;
    if stored != fingerprint {
        return Ok(Some(Created::KeyReused));
    }
    Ok(Some(Created::Earlier(from_row(&row)?)))
}

pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<LedgerTransfer>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM ledger_transfers WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Transfers by id (so by creation), after `after`, in `state` when given, touching only
/// `ledgers` when given (both sides in the list), at most `limit`.
pub async fn list(
    pool: &PgPool,
    state: Option<State>,
    after: Option<Uuid>,
    limit: i64,
    ledgers: Option<&[String]>,
) -> Result<Vec<LedgerTransfer>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM ledger_transfers
         WHERE ($1::text IS NULL OR state = $1) AND ($2::uuid IS NULL OR id > $2)
           AND ($3::text[] IS NULL OR (source_ledger = ANY($3) AND destination_ledger = ANY($3)))
         ORDER BY id LIMIT $4"
    ))
    .bind(state.map(State::as_str))
    .bind(after)
    .bind(ledgers)
    .bind(limit.clamp(1, PAGE_MAX))
    .fetch_all(pool)
    .await?;
    rows.iter().map(from_row).collect()
}

/// The transfers that still have steps to run and were last touched before `older_than`: what
/// the recovery loop finishes.
pub async fn open_before(
    pool: &PgPool,
    older_than: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<LedgerTransfer>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM ledger_transfers
         WHERE state IN ('reserving', 'posting', 'voiding')
           AND COALESCE(decided_at, created_at) < $1
         ORDER BY id LIMIT $2"
    ))
    .bind(older_than)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter().map(from_row).collect()
}

/// How many transfers have steps still to run.
pub async fn open_count(pool: &PgPool) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM ledger_transfers WHERE state IN ('reserving', 'posting', 'voiding')",
    )
    .fetch_one(pool)
    .await?)
}

/// Records the decision, once: `posting`, or `voiding` with the refusal. A transfer decided
/// already keeps its decision, which is returned.
pub async fn decide(
    pool: &PgPool,
    id: Uuid,
    refusal: Option<(&str, &str)>,
) -> Result<LedgerTransfer> {
    let (state, refusal, refused_by) = match refusal {
        None => (State::Posting, None, None),
        Some((problem, ledger)) => (State::Voiding, Some(problem), Some(ledger)),
    };
    sqlx::query(
        "UPDATE ledger_transfers SET state = $2, refusal = $3, refused_by = $4, decided_at = now()
         WHERE id = $1 AND state = 'reserving'",
    )
    .bind(id)
    .bind(state.as_str())
    .bind(refusal)
    .bind(refused_by)
    .execute(pool)
    .await?;
    get(pool, id)
        .await?
        .ok_or_else(|| crate::Error::Corrupt(format!("ledger transfer {id} vanished")))
}

/// Records that both holds are settled as decided.
pub async fn finish(pool: &PgPool, id: Uuid) -> Result<LedgerTransfer> {
    sqlx::query(
        "UPDATE ledger_transfers
         SET state = CASE state WHEN 'posting' THEN 'posted' ELSE 'voided' END,
             finished_at = now()
         WHERE id = $1 AND state IN ('posting', 'voiding')",
    )
    .bind(id)
    .execute(pool)
    .await?;
    get(pool, id)
        .await?
        .ok_or_else(|| crate::Error::Corrupt(format!("ledger transfer {id} vanished")))
}

/// Per pair of ledgers and asset, the posted balances of the two settlement accounts, which
/// mirror each other (`a`'s `ledger:b` = −`b`'s `ledger:a`) once no transfer is in flight.
/// Read through the registry's pool, across books.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    pub ledger: String,
    pub other: String,
    pub asset: String,
    /// `ledger`'s `ledger:<other>`.
    pub here: rust_decimal::Decimal,
    /// `other`'s `ledger:<ledger>`.
    pub there: rust_decimal::Decimal,
}

impl Mirror {
    pub fn holds(&self) -> bool {
        self.here == -self.there
    }
}

/// Every pair of ledgers that ever exchanged money, with their settlement balances per asset.
pub async fn mirrors(pool: &PgPool) -> Result<Vec<Mirror>> {
    let pairs: Vec<(String, String, String, String, String)> = sqlx::query_as(
        "SELECT DISTINCT t.source_ledger, a.schema_name, t.destination_ledger, b.schema_name, t.asset
         FROM ledger_transfers t
         JOIN ledgers a ON a.name = t.source_ledger
         JOIN ledgers b ON b.name = t.destination_ledger
         ORDER BY 1, 3, 5",
    )
    .fetch_all(pool)
    .await?;
    let mut mirrors = Vec::new();
    for (ledger, schema, other, other_schema, asset) in pairs {
        let balance = |schema: String, account: String| {
            let asset = asset.clone();
            async move {
                let sql = format!(
                    "SELECT COALESCE((SELECT b.balance FROM {schema}.balances b
                         JOIN {schema}.accounts a ON a.id = b.account_id
                         WHERE a.code = $1 AND b.asset = $2), 0)"
                );
                sqlx::query_scalar::<_, rust_decimal::Decimal>(&sql)
                    .bind(account)
                    .bind(asset)
                    .fetch_one(pool)
                    .await
            }
        };
        let here = balance(schema, settlement_account(&other)).await?;
        let there = balance(other_schema, settlement_account(&ledger)).await?;
        mirrors.push(Mirror {
            ledger,
            other,
            asset,
            here,
            there,
        });
    }
    Ok(mirrors)
}
