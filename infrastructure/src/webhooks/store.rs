//! Subscriptions and their delivery log, in PostgreSQL. A subscription's cursor moves only by
//! compare-and-set from the position the deliverer read: if two deliverers ever overlap (a lock
//! handed over while one still had a request in flight), the second to finish changes nothing.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::filter::Filter;
use super::signing;
use crate::Result;

/// Subscriptions a ledger keeps at most: each costs the deliverer a look per round.
pub const SUBSCRIPTIONS_MAX: i64 = 1_000;
/// Longest error text kept in the delivery log.
const ERROR_CHARS_MAX: usize = 512;
/// Attempts the delivery log keeps per subscription: the older ones are deleted...
pub const DELIVERY_LOG_KEPT: i64 = 10_000;
/// ...when the id of an attempt just recorded is a multiple of this (the log's ids are shared by
/// all subscriptions, so each is pruned about once per this many of its own attempts), so that a
/// delivery does not pay for a scan of the log each time.
const DELIVERY_LOG_PRUNED_EVERY: i64 = 256;

/// A subscription as stored. `secret` is never shown after creation (nor in `Debug`).
#[derive(Clone)]
pub struct Subscription {
    pub id: Uuid,
    pub url: String,
    pub filter: Filter,
    pub secret: String,
    /// The last position delivered or skipped.
    pub cursor: i64,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub consecutive_failures: i32,
    pub failing_since: Option<DateTime<Utc>>,
    pub next_attempt_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, url, event_types, account_prefix, secret, cursor, enabled, \
    disabled_reason, consecutive_failures, failing_since, next_attempt_at, created_at";

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("filter", &self.filter)
            .field("cursor", &self.cursor)
            .field("enabled", &self.enabled)
            .field("consecutive_failures", &self.consecutive_failures)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    fn from_row(row: &PgRow) -> Result<Self> {
        Ok(Self {
            id: row.try_get("id")?,
            url: row.try_get("url")?,
            filter: Filter {
                event_types: row.try_get("event_types")?,
                account_prefix: row.try_get("account_prefix")?,
            },
            secret: row.try_get("secret")?,
            cursor: row.try_get("cursor")?,
            enabled: row.try_get("enabled")?,
            disabled_reason: row.try_get("disabled_reason")?,
            consecutive_failures: row.try_get("consecutive_failures")?,
            failing_since: row.try_get("failing_since")?,
            next_attempt_at: row.try_get("next_attempt_at")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

/// The subscription could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("a ledger keeps at most {SUBSCRIPTIONS_MAX} webhook subscriptions")]
    TooMany,
    #[error(transparent)]
    Store(#[from] crate::Error),
}

/// Creates an enabled subscription that delivers the events after `after` (the head of the log
/// when `None`), with a fresh secret.
pub async fn create(
    pool: &PgPool,
    url: &str,
    filter: &Filter,
    after: Option<i64>,
) -> std::result::Result<Subscription, CreateError> {
    let secret = signing::new_secret()?;
    // Counted and inserted in one statement: two racing creations may pass the bound by one,
    // which the bound tolerates.
    let row = sqlx::query(&format!(
        "INSERT INTO webhook_subscriptions (id, url, event_types, account_prefix, secret, cursor,
             enabled, next_attempt_at, created_at)
         SELECT $1, $2, $3, $4, $5,
             COALESCE($6, (SELECT max(position) FROM events), 0), true, now(), now()
         WHERE (SELECT count(*) FROM webhook_subscriptions) < $7
         RETURNING {COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(url)
    .bind(&filter.event_types)
    .bind(&filter.account_prefix)
    .bind(&secret)
    .bind(after)
    .bind(SUBSCRIPTIONS_MAX)
    .fetch_optional(pool)
    .await
    .map_err(crate::Error::from)?;
    match row {
        Some(row) => Ok(Subscription::from_row(&row)?),
        None => Err(CreateError::TooMany),
    }
}

/// Every subscription, oldest first.
pub async fn list(pool: &PgPool) -> Result<Vec<Subscription>> {
    listed(pool, false).await
}

/// The enabled subscriptions: what the deliverer follows.
pub async fn enabled(pool: &PgPool) -> Result<Vec<Subscription>> {
    listed(pool, true).await
}

async fn listed(pool: &PgPool, enabled_only: bool) -> Result<Vec<Subscription>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM webhook_subscriptions WHERE enabled OR NOT $2
         ORDER BY created_at, id LIMIT $1"
    ))
    .bind(SUBSCRIPTIONS_MAX)
    .bind(enabled_only)
    .fetch_all(pool)
    .await?;
    rows.iter().map(Subscription::from_row).collect()
}

pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<Subscription>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM webhook_subscriptions WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(Subscription::from_row).transpose()
}

/// Enables a subscription (its failures forgotten, due at once) or disables it by hand.
pub async fn set_enabled(pool: &PgPool, id: Uuid, enabled: bool) -> Result<Option<Subscription>> {
    let row = sqlx::query(&format!(
        "UPDATE webhook_subscriptions SET enabled = $2,
             disabled_reason = CASE WHEN $2 THEN NULL ELSE 'disabled by an operator' END,
             consecutive_failures = CASE WHEN $2 THEN 0 ELSE consecutive_failures END,
             failing_since = CASE WHEN $2 THEN NULL ELSE failing_since END,
             next_attempt_at = CASE WHEN $2 THEN now() ELSE next_attempt_at END
         WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(enabled)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(Subscription::from_row).transpose()
}

/// Deletes a subscription and its delivery log; whether it existed.
pub async fn delete(pool: &PgPool, id: Uuid) -> Result<bool> {
    let deleted = sqlx::query("DELETE FROM webhook_subscriptions WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(deleted.rows_affected() > 0)
}

/// Moves the cursor past events that do not match, from `from` (where the deliverer read it) to
/// `to`; false when it was no longer at `from`.
pub async fn skip(pool: &PgPool, id: Uuid, from: i64, to: i64) -> Result<bool> {
    let moved = sqlx::query(
        "UPDATE webhook_subscriptions SET cursor = $3 WHERE id = $1 AND cursor = $2 AND enabled",
    )
    .bind(id)
    .bind(from)
    .bind(to)
    .execute(pool)
    .await?;
    Ok(moved.rows_affected() > 0)
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver answered 2xx.
    Delivered,
    /// The receiver answered something else.
    Rejected,
    /// No answer within the request timeout.
    Timeout,
    /// The connection failed, or the name did not resolve.
    NetworkError,
    /// The address guard refused the receiver's address: nothing was sent.
    Refused,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Self::Delivered,
        Self::Rejected,
        Self::Timeout,
        Self::NetworkError,
        Self::Refused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Rejected => "rejected",
            Self::Timeout => "timeout",
            Self::NetworkError => "network_error",
            Self::Refused => "refused",
        }
    }
}

/// One attempt at delivering one position.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub position: i64,
    pub outcome: Outcome,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub latency_ms: u32,
    pub attempted_at: DateTime<Utc>,
}

/// What follows a failed attempt: when to try again, or that the subscription is disabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AfterFailure {
    pub next_attempt_at: DateTime<Utc>,
    pub disabled_reason: Option<String>,
}

/// Records an attempt of the subscription whose cursor the deliverer read as `cursor`. A
/// delivery moves the cursor to its position and ends the run of failures; a failure counts in
/// it and schedules the retry (`after_failure`). False when the cursor had moved meanwhile.
pub async fn record(
    pool: &PgPool,
    id: Uuid,
    cursor: i64,
    attempt: &Attempt,
    after_failure: Option<&AfterFailure>,
) -> Result<bool> {
    let mut tx = pool.begin().await?;
    let updated = match after_failure {
        None => sqlx::query(
            "UPDATE webhook_subscriptions SET cursor = $3, consecutive_failures = 0,
                 failing_since = NULL, next_attempt_at = now()
             WHERE id = $1 AND cursor = $2",
        )
        .bind(id)
        .bind(cursor)
        .bind(attempt.position),
        Some(plan) => sqlx::query(
            "UPDATE webhook_subscriptions SET consecutive_failures = consecutive_failures + 1,
                 failing_since = COALESCE(failing_since, $3), next_attempt_at = $4,
                 enabled = enabled AND $5::text IS NULL,
                 disabled_reason = COALESCE($5, disabled_reason)
             WHERE id = $1 AND cursor = $2",
        )
        .bind(id)
        .bind(cursor)
        .bind(attempt.attempted_at)
        .bind(plan.next_attempt_at)
        .bind(&plan.disabled_reason),
    }
    .execute(&mut *tx)
    .await?;
    if updated.rows_affected() == 0 {
        return Ok(false);
    }
    let error = attempt
        .error
        .as_deref()
        .map(|e| e.chars().take(ERROR_CHARS_MAX).collect::<String>());
    let logged: i64 = sqlx::query_scalar(
        "INSERT INTO webhook_deliveries (subscription_id, position, attempt, outcome, status_code,
             error, latency_ms, attempted_at)
         VALUES ($1, $2, (SELECT count(*) + 1 FROM webhook_deliveries
                          WHERE subscription_id = $1 AND position = $2), $3, $4, $5, $6, $7)
         RETURNING id",
    )
    .bind(id)
    .bind(attempt.position)
    .bind(attempt.outcome.as_str())
    .bind(attempt.status_code.map(|s| s as i16))
    .bind(error)
    .bind(attempt.latency_ms as i32)
    .bind(attempt.attempted_at)
    .fetch_one(&mut *tx)
    .await?;
    if logged % DELIVERY_LOG_PRUNED_EVERY == 0 {
        prune_log(&mut tx, id).await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// Deletes a subscription's attempts older than the last `DELIVERY_LOG_KEPT`.
async fn prune_log(conn: &mut sqlx::PgConnection, id: Uuid) -> Result<()> {
    sqlx::query(
        "DELETE FROM webhook_deliveries WHERE subscription_id = $1 AND id <= (
             SELECT id FROM webhook_deliveries WHERE subscription_id = $1
             ORDER BY id DESC OFFSET $2 LIMIT 1)",
    )
    .bind(id)
    .bind(DELIVERY_LOG_KEPT)
    .execute(conn)
    .await?;
    Ok(())
}

/// An attempt as the delivery log shows it.
#[derive(Debug, Clone)]
pub struct LoggedAttempt {
    pub id: i64,
    pub position: i64,
    pub attempt: i32,
    pub outcome: String,
    pub status_code: Option<i16>,
    pub error: Option<String>,
    pub latency_ms: i32,
    pub attempted_at: DateTime<Utc>,
}

/// Up to `limit` attempts of a subscription, newest first, older than the attempt `before`.
pub async fn deliveries(
    pool: &PgPool,
    id: Uuid,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<LoggedAttempt>> {
    let rows = sqlx::query(
        "SELECT id, position, attempt, outcome, status_code, error, latency_ms, attempted_at
         FROM webhook_deliveries WHERE subscription_id = $1 AND id < $2
         ORDER BY id DESC LIMIT $3",
    )
    .bind(id)
    .bind(before.unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(LoggedAttempt {
                id: row.try_get("id")?,
                position: row.try_get("position")?,
                attempt: row.try_get("attempt")?,
                outcome: row.try_get("outcome")?,
                status_code: row.try_get("status_code")?,
                error: row.try_get("error")?,
                latency_ms: row.try_get("latency_ms")?,
                attempted_at: row.try_get("attempted_at")?,
            })
        })
        .collect()
}
