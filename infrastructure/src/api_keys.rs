//! API keys: random, at least 256 bits, shown once at creation and stored only as a SHA-256, each
//! with scopes. Listing shows a prefix; revocation is a time, kept for the record.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::{PgPool, Row};
use uuid::Uuid;

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
}

impl ApiKey {
    pub fn allows(&self, scope: Scope) -> bool {
        self.revoked_at.is_none()
            && (self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin))
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

/// Creates a key with fresh random bytes: the stored key, and its secret (shown once).
pub async fn create(pool: &PgPool, name: &str, scopes: &[Scope]) -> Result<(ApiKey, String)> {
    let secret = format!(
        "{KEY_PREFIX}{}",
        domain::chain::to_hex(&random_secret("an API key")?)
    );
    let key = insert(pool, &secret, name, scopes).await?;
    Ok((key, secret))
}

/// Stores a key whose secret was made elsewhere (the first admin key, from the environment).
pub async fn insert(pool: &PgPool, secret: &str, name: &str, scopes: &[Scope]) -> Result<ApiKey> {
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
    let row = sqlx::query(
        "INSERT INTO api_keys (id, prefix, secret_hash, name, scopes, created_at)
         VALUES ($1, $2, $3, $4, $5, now())
         RETURNING id, prefix, name, scopes, created_at, revoked_at",
    )
    .bind(Uuid::now_v7())
    .bind(&secret[..SHOWN_CHARS])
    .bind(key_hash(secret).as_slice())
    .bind(name)
    .bind(&names)
    .fetch_one(pool)
    .await?;
    key_from_row(&row)
}

/// Every key, oldest first, revoked ones included.
pub async fn list(pool: &PgPool) -> Result<Vec<ApiKey>> {
    let rows = sqlx::query(
        "SELECT id, prefix, name, scopes, created_at, revoked_at FROM api_keys ORDER BY id",
    )
    .fetch_all(pool)
    .await?;
    rows.iter().map(key_from_row).collect()
}

/// Revokes the key with this id or prefix; `None` when there is none. Revoking twice keeps the
/// first time.
pub async fn revoke(pool: &PgPool, id_or_prefix: &str) -> Result<Option<ApiKey>> {
    let id = Uuid::parse_str(id_or_prefix).ok();
    let row = sqlx::query(
        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now())
         WHERE id = $1 OR prefix = $2
         RETURNING id, prefix, name, scopes, created_at, revoked_at",
    )
    .bind(id)
    .bind(id_or_prefix)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(key_from_row).transpose()
}

/// The key a secret is, revoked or not.
pub async fn find(pool: &PgPool, secret: &str) -> Result<Option<ApiKey>> {
    let row = sqlx::query(
        "SELECT id, prefix, name, scopes, created_at, revoked_at FROM api_keys WHERE secret_hash = $1",
    )
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
    })
}
