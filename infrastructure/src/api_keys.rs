//! API keys: random, at least 256 bits, shown once at creation and stored only as a SHA-256, each
//! with scopes. Listing shows a prefix; revocation is a time, kept for the record.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Row};
use uuid::Uuid;

use domain::LedgerName;

use crate::secrets::random_secret;
use crate::{Error, Result};

/// What a key may do. `admin` may do everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Queries and the event stream.
    Read,
    /// Commands.
    Write,
    /// Verify, checkpoints, consistency.
    Audit,
    /// Keys, limits, forced reversals.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::Read, Scope::Write, Scope::Audit, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Audit => "audit",
            Self::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// A key as stored: never its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: Uuid,
    pub prefix: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// The ledgers the key may use; `None`: every ledger.
    pub ledgers: Option<Vec<LedgerName>>,
}

impl ApiKey {
    pub fn allows(&self, scope: Scope) -> bool {
        self.revoked_at.is_none()
            && (self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin))
    }

    /// Whether the key may use ledger `name`: it is not limited, or limited to a list that has it.
    pub fn may_use(&self, name: &LedgerName) -> bool {
        self.ledgers.as_ref().is_none_or(|l| l.contains(name))
    }
}

/// Every key starts with this, so that a key is recognisable in a config file or a leak scan.
pub const KEY_PREFIX: &str = "lk_";
/// Characters of a key shown in lists.
const SHOWN_CHARS: usize = 12;
/// Names are for people: bounded.
pub const NAME_BYTES_MAX: usize = 128;

/// The SHA-256 a key is stored and looked up by.
pub fn key_hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Whether a text has the shape of a key: the prefix, then 64 lower-case hex digits.
pub fn well_formed(secret: &str) -> bool {
    secret.strip_prefix(KEY_PREFIX).is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Creates a key with fresh random bytes: the stored key, and its secret (shown once). With
/// `ledgers`, the key may use only those (each must exist).
pub async fn create(
    pool: &PgPool,
    name: &str,
    scopes: &[Scope],
    ledgers: Option<&[LedgerName]>,
) -> Result<(ApiKey, String)> {
    let secret = format!(
        "{KEY_PREFIX}{}",
        domain::chain::to_hex(&random_secret("an API key")?)
    );
    let key = insert(pool, &secret, name, scopes, ledgers).await?;
    Ok((key, secret))
}

/// Stores a key whose secret was made elsewhere (the first admin key, from the environment).
pub async fn insert(
    pool: &PgPool,
    secret: &str,
    name: &str,
    scopes: &[Scope],
    ledgers: Option<&[LedgerName]>,
) -> Result<ApiKey> {
    if !well_formed(secret) {
        return Err(Error::InvalidKey(format!(
            "a key is {KEY_PREFIX} followed by 64 lower-case hexadecimal digits"
        )));
    }
    if name.is_empty() || name.len() > NAME_BYTES_MAX {
        return Err(Error::InvalidKey(format!(
            "a key's name is 1 to {NAME_BYTES_MAX} bytes"
        )));
    }
    if scopes.is_empty() {
        return Err(Error::InvalidKey("a key has at least one scope".into()));
    }
    let mut scopes = scopes.to_vec();
    scopes.sort();
    scopes.dedup();
    let names: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    let ledgers = match ledgers {
        Some(ledgers) => Some(existing_ledgers(pool, ledgers).await?),
        None => None,
    };
    let row = sqlx::query(&format!(
        "INSERT INTO api_keys (id, prefix, secret_hash, name, scopes, created_at, ledgers)
         VALUES ($1, $2, $3, $4, $5, now(), $6)
         RETURNING {COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(&secret[..SHOWN_CHARS])
    .bind(key_hash(secret).as_slice())
    .bind(name)
    .bind(&names)
    .bind(ledgers)
    .fetch_one(pool)
    .await?;
    key_from_row(&row)
}

/// The names of `ledgers`, sorted and without repeats, once each is known to exist.
async fn existing_ledgers(pool: &PgPool, ledgers: &[LedgerName]) -> Result<Vec<String>> {
    let mut names: Vec<String> = ledgers.iter().map(|l| l.as_str().to_owned()).collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        return Err(Error::InvalidKey(
            "a key limited to ledgers names at least one".into(),
        ));
    }
    let known: Vec<String> =
        sqlx::query_scalar("SELECT name FROM ledgers WHERE name = ANY($1) ORDER BY name")
            .bind(&names)
            .fetch_all(pool)
            .await?;
    if let Some(missing) = names.iter().find(|n| !known.contains(n)) {
        return Err(Error::InvalidKey(format!(
            "there is no ledger named {missing}"
        )));
    }
    Ok(names)
}

/// A key's columns, as every query returns them.
const COLUMNS: &str = "id, prefix, name, scopes, created_at, revoked_at, ledgers";

/// Every key, oldest first, revoked ones included.
pub async fn list(pool: &PgPool) -> Result<Vec<ApiKey>> {
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM api_keys ORDER BY id"))
        .fetch_all(pool)
        .await?;
    rows.iter().map(key_from_row).collect()
}

/// Revokes the key with this id or prefix; `None` when there is none. Revoking twice keeps the
/// first time.
pub async fn revoke(pool: &PgPool, id_or_prefix: &str) -> Result<Option<ApiKey>> {
    let id = Uuid::parse_str(id_or_prefix).ok();
    let row = sqlx::query(&format!(
        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now())
         WHERE id = $1 OR prefix = $2
         RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(id_or_prefix)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(key_from_row).transpose()
}

/// The key a secret is, revoked or not.
pub async fn find(pool: &PgPool, secret: &str) -> Result<Option<ApiKey>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM api_keys WHERE secret_hash = $1"
    ))
    .bind(key_hash(secret).as_slice())
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(key_from_row).transpose()
}

/// How many keys are not revoked.
pub async fn active_count(pool: &PgPool) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM api_keys WHERE revoked_at IS NULL")
            .fetch_one(pool)
            .await?,
    )
}

fn key_from_row(row: &sqlx::postgres::PgRow) -> Result<ApiKey> {
    let names: Vec<String> = row.try_get("scopes")?;
    let scopes = names
        .iter()
        .map(|n| Scope::parse(n).ok_or_else(|| Error::Corrupt(format!("unknown scope {n:?}"))))
        .collect::<Result<Vec<_>>>()?;
    Ok(ApiKey {
        id: row.try_get("id")?,
        prefix: row.try_get("prefix")?,
        name: row.try_get("name")?,
        scopes,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
        ledgers: row
            .try_get::<Option<Vec<String>>, _>("ledgers")?
            .map(|names| {
                names
                    .into_iter()
                    .map(|n| {
                        LedgerName::try_from(n)
                            .map_err(|e| Error::Corrupt(format!("api_keys: {e}")))
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .transpose()?,
    })
}
