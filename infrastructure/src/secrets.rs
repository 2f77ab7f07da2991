//! Secrets a ledger keeps in its own database, each in a one-row table, created by the first
//! server that starts (two racing create one): the checkpoint signing key (`audit::Signer`) and the
//! key that authenticates pagination cursors. Kept in the database so that every server of the
//! ledger, before and after a restart, uses the same one.

use sqlx::PgPool;

use crate::{Error, Result};

/// 32 random bytes from the operating system.
pub(crate) fn random_secret(what: &str) -> Result<[u8; 32]> {
    let mut secret = [0u8; 32];
    getrandom::getrandom(&mut secret)
        .map_err(|e| Error::Corrupt(format!("no randomness for {what}: {e}")))?;
    Ok(secret)
}

/// The secret stored in the one-row table `table`.
pub(crate) async fn stored_secret(pool: &PgPool, table: &'static str) -> Result<[u8; 32]> {
    let secret: Vec<u8> = sqlx::query_scalar(&format!("SELECT secret FROM {table}"))
        .fetch_one(pool)
        .await?;
    secret
        .try_into()
        .map_err(|_| Error::Corrupt(format!("the secret in {table} is not 32 bytes")))
}

/// The key that authenticates pagination cursors (HMAC-SHA-256), created the first time.
pub async fn cursor_key(pool: &PgPool) -> Result<[u8; 32]> {
    let fresh = random_secret("a cursor key")?;
    sqlx::query("INSERT INTO cursor_key (secret) VALUES ($1) ON CONFLICT (singleton) DO NOTHING")
        .bind(fresh.as_slice())
        .execute(pool)
        .await?;
    stored_secret(pool, "cursor_key").await
}
