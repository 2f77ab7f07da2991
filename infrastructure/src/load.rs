//! Loading the writer's in-memory state from the projections at start-up, and checking that it
//! agrees with the log before anything is decided against it.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use domain::chain::Hash;
use domain::{AccountCode, AccountId, AssetCode, LedgerState, Scale};
use futures_util::TryStreamExt;
use rust_decimal::Decimal;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::key_filter::KeyFilter;
use crate::{Error, Result};

pub struct LoadedState {
    pub state: LedgerState,
    /// Every idempotency key stored so far.
    pub keys: KeyFilter,
    /// The hash of the last event (the genesis value when the log is empty).
    pub chain_head: Hash,
    /// The last position in the log (0 when empty).
    pub head: i64,
    pub last_recorded_at: DateTime<Utc>,
}

pub async fn load_state(conn: &mut PgConnection) -> Result<LoadedState> {
    type Last = (Option<i64>, Option<DateTime<Utc>>, Option<Vec<u8>>);
    let (log_head, last_recorded_at, last_hash): Last = sqlx::query_as(
        "SELECT position, recorded_at, hash FROM events ORDER BY position DESC LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?
    .unwrap_or((None, None, None));
    let chain_head: Hash = match last_hash {
        None => domain::chain::genesis(),
        Some(hash) => hash
            .try_into()
            .map_err(|_| Error::Corrupt("the last event's hash is not 32 bytes".into()))?,
    };
    let log_head = log_head.unwrap_or(0);
    let projection_head: i64 = sqlx::query_scalar("SELECT position FROM projection_head")
        .fetch_one(&mut *conn)
        .await?;
    if projection_head != log_head {
        return Err(Error::Corrupt(format!(
            "the projections reflect position {projection_head} but the log ends at {log_head}; rebuild them from the log"
        )));
    }

    let mut state = LedgerState::new();
    let mut scales: HashMap<String, Scale> = HashMap::new();
    let assets: Vec<(String, i16)> = sqlx::query_as("SELECT code, scale FROM assets")
        .fetch_all(&mut *conn)
        .await?;
    for (code, scale) in assets {
        let asset = AssetCode::try_from(code.clone()).map_err(corrupt)?;
        let scale = Scale::try_from(scale as u32).map_err(corrupt)?;
        state.restore_asset(asset, scale)?;
        scales.insert(code, scale);
    }

    {
        let mut accounts =
            sqlx::query("SELECT id, code, allow_negative FROM accounts").fetch(&mut *conn);
        while let Some(row) = accounts.try_next().await? {
            let id: Uuid = row.try_get("id")?;
            let code: String = row.try_get("code")?;
            state.restore_account(
                AccountId(id),
                AccountCode::try_from(code).map_err(corrupt)?,
                row.try_get("allow_negative")?,
            )?;
        }
    }

    {
        let mut balances =
            sqlx::query("SELECT account_id, asset, balance FROM balances").fetch(&mut *conn);
        while let Some(row) = balances.try_next().await? {
            let account_id: Uuid = row.try_get("account_id")?;
            let asset: String = row.try_get("asset")?;
            let balance: Decimal = row.try_get("balance")?;
            let scale = scales
                .get(&asset)
                .copied()
                .ok_or_else(|| Error::Corrupt(format!("balance in undefined asset {asset}")))?;
            let units = domain::money::to_units(balance, scale).map_err(|e| {
                Error::Corrupt(format!(
                    "balance {balance} of {account_id} in {asset} does not fit the asset: {e:?}"
                ))
            })?;
            let asset = AssetCode::try_from(asset).map_err(corrupt)?;
            state.restore_balance(AccountId(account_id), &asset, units)?;
        }
    }

    // Read back, the invariant must still hold: every asset's balances sum to zero.
    state.check_conservation()?;

    let mut keys = KeyFilter::default();
    {
        let mut stored =
            sqlx::query_scalar::<_, String>("SELECT key FROM idempotency_keys").fetch(&mut *conn);
        while let Some(key) = stored.try_next().await? {
            keys.insert(&key);
        }
    }
    Ok(LoadedState {
        state,
        keys,
        chain_head,
        head: log_head,
        last_recorded_at: last_recorded_at.unwrap_or(DateTime::UNIX_EPOCH),
    })
}

fn corrupt(e: domain::ValueError) -> Error {
    Error::Corrupt(e.to_string())
}
