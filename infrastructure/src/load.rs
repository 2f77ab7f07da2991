//! Loading the writer's in-memory state from the projections at start-up, and checking that it
//! agrees with the log before anything is decided against it.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use domain::chain::Hash;
use domain::command::AccountStatus;
use domain::ledger::{Hold, HoldOutcome, Limits};
use domain::{AccountCode, AccountId, AssetCode, Event, LedgerState, Scale, TransactionId};
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
        // An account's version is the position of the last event that changed it: its opening,
        // a balance, its status or its limits, whichever came last.
        let mut accounts = sqlx::query(
            "WITH status AS (
                 SELECT DISTINCT ON (account_id) account_id, status, position
                 FROM account_status_changes ORDER BY account_id, position DESC
             ), limits AS (
                 SELECT account_id, max(position) AS position FROM account_limits GROUP BY account_id
             ), balances AS (
                 SELECT account_id, max(position) AS position FROM balances GROUP BY account_id
             )
             SELECT a.id, a.code, a.allow_negative, COALESCE(s.status, 'open') AS status,
                    GREATEST(a.position, s.position, l.position, b.position) AS version
             FROM accounts a
             LEFT JOIN status s ON s.account_id = a.id
             LEFT JOIN limits l ON l.account_id = a.id
             LEFT JOIN balances b ON b.account_id = a.id",
        )
        .fetch(&mut *conn);
        while let Some(row) = accounts.try_next().await? {
            let id: Uuid = row.try_get("id")?;
            let code: String = row.try_get("code")?;
            let status = match row.try_get::<&str, _>("status")? {
                "open" => AccountStatus::Open,
                "frozen" => AccountStatus::Frozen,
                "closed" => AccountStatus::Closed,
                other => return Err(Error::Corrupt(format!("account status {other:?}"))),
            };
            state.restore_account(
                AccountId(id),
                AccountCode::try_from(code).map_err(corrupt)?,
                row.try_get("allow_negative")?,
                status,
                row.try_get("version")?,
            )?;
        }
    }

    {
        let mut limits = sqlx::query(
            "SELECT DISTINCT ON (account_id, asset) account_id, asset, min_balance, max_balance
             FROM account_limits ORDER BY account_id, asset, position DESC",
        )
        .fetch(&mut *conn);
        while let Some(row) = limits.try_next().await? {
            let account_id: Uuid = row.try_get("account_id")?;
            let asset: String = row.try_get("asset")?;
            let scale = scales
                .get(&asset)
                .copied()
                .ok_or_else(|| Error::Corrupt(format!("limits in undefined asset {asset}")))?;
            let units = |bound: Option<Decimal>| {
                bound
                    .map(|b| domain::money::to_units(b, scale))
                    .transpose()
                    .map_err(|e| Error::Corrupt(format!("limit of {account_id} in {asset}: {e:?}")))
            };
            let limits = Limits {
                min_units: units(row.try_get("min_balance")?)?,
                max_units: units(row.try_get("max_balance")?)?,
            };
            let asset = AssetCode::try_from(asset).map_err(corrupt)?;
            state.restore_limits(AccountId(account_id), &asset, limits)?;
        }
    }

    {
        let mut balances = sqlx::query(
            "SELECT account_id, asset, balance, pending_debits, pending_credits FROM balances",
        )
        .fetch(&mut *conn);
        while let Some(row) = balances.try_next().await? {
            let account_id = AccountId(row.try_get("account_id")?);
            let asset: String = row.try_get("asset")?;
            let scale = scales
                .get(&asset)
                .copied()
                .ok_or_else(|| Error::Corrupt(format!("balance in undefined asset {asset}")))?;
            let units = |column: &str| -> Result<i128> {
                let value: Decimal = row.try_get(column)?;
                domain::money::to_units(value, scale).map_err(|e| {
                    Error::Corrupt(format!(
                        "{column} {value} of {account_id} in {asset} does not fit the asset: {e:?}"
                    ))
                })
            };
            let (posted, pending_debits, pending_credits) = (
                units("balance")?,
                units("pending_debits")?,
                units("pending_credits")?,
            );
            let asset = AssetCode::try_from(asset.clone()).map_err(corrupt)?;
            state.restore_balance(account_id, &asset, posted)?;
            state.restore_pending(account_id, &asset, pending_debits, pending_credits)?;
        }
    }

    {
        // Open holds, with their postings from the events that opened them.
        let mut holds = sqlx::query(
            "SELECT h.transaction_id, e.position, e.event_type, e.schema_version, e.payload
             FROM holds h JOIN events e ON e.position = h.position
             WHERE NOT EXISTS (SELECT 1 FROM hold_settlements s WHERE s.transaction_id = h.transaction_id)",
        )
        .fetch(&mut *conn);
        while let Some(row) = holds.try_next().await? {
            let position: i64 = row.try_get("position")?;
            let event = Event::decode(
                row.try_get("event_type")?,
                row.try_get("schema_version")?,
                row.try_get("payload")?,
            )
            .map_err(|e| Error::Corrupt(format!("position {position}: {e}")))?;
            let (id, hold) = match &event {
                Event::TransactionPosted(e) if e.pending => (
                    e.transaction_id,
                    Hold {
                        postings: e.postings.clone(),
                        expires_at: e.expires_at,
                        trade: false,
                    },
                ),
                Event::TradeExecuted(e) if e.pending => (
                    e.trade_id,
                    Hold {
                        postings: e.postings.clone(),
                        expires_at: e.expires_at,
                        trade: true,
                    },
                ),
                _ => {
                    return Err(Error::Corrupt(format!(
                        "the hold at position {position} is not a pending transaction"
                    )))
                }
            };
            let expected: Uuid = row.try_get("transaction_id")?;
            if id.0 != expected {
                return Err(Error::Corrupt(format!(
                    "the hold {expected} points at the event of {id}"
                )));
            }
            state.restore_hold(id, hold)?;
        }
    }

    {
        let mut settled = sqlx::query_as::<_, (Uuid, String)>(
            "SELECT transaction_id, outcome FROM hold_settlements",
        )
        .fetch(&mut *conn);
        while let Some((id, outcome)) = settled.try_next().await? {
            let outcome = match outcome.as_str() {
                "posted" => HoldOutcome::Posted,
                "voided" => HoldOutcome::Voided,
                "expired" => HoldOutcome::Expired,
                other => return Err(Error::Corrupt(format!("hold outcome {other:?}"))),
            };
            state.restore_settled(TransactionId(id), outcome);
        }
    }

    {
        let mut reversals =
            sqlx::query_as::<_, (Uuid, Uuid)>("SELECT reverses, transaction_id FROM reversals")
                .fetch(&mut *conn);
        while let Some((original, reversal)) = reversals.try_next().await? {
            state.restore_reversal(TransactionId(original), TransactionId(reversal))?;
        }
    }

    // Read back, the invariant must still hold: every asset's balances sum to zero.
    state.check_conservation()?;
    state.check_holds()?;
    state.restore_head(log_head);

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
