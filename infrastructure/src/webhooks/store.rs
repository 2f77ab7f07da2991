//! Subscriptions and their delivery log, in PostgreSQL (the deployment's tables, in `public`). A
//! subscription follows one ledger or every ledger, with a cursor per ledger (`webhook_cursors`).
//! A cursor moves only by compare-and-set from the position the deliverer read: if two
//! deliverers ever overlap (a lock handed over while one still had a request in flight), the
//! second to finish changes nothing.

use chrono::{DateTime, Utc};
use domain::LedgerName;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::filter::Filter;
use super::signing;
use crate::{ledgers, Result};

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
    /// The ledger it follows; `None`: every ledger.
    pub ledger: Option<LedgerName>,
    /// Per ledger, the last position delivered or skipped, in name order; a ledger not listed
    /// (created after the subscription) is delivered from its start.
    pub cursors: Vec<(LedgerName, i64)>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub consecutive_failures: i32,
    pub failing_since: Option<DateTime<Utc>>,
    pub next_attempt_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, url, event_types, account_prefix, secret, ledger, enabled, \
    disabled_reason, consecutive_failures, failing_since, next_attempt_at, created_at, \
    ARRAY(SELECT c.ledger FROM webhook_cursors c WHERE c.subscription_id = id \
          ORDER BY c.ledger COLLATE \"C\") AS cursor_ledgers, \
    ARRAY(SELECT c.cursor FROM webhook_cursors c WHERE c.subscription_id = id \
          ORDER BY c.ledger COLLATE \"C\") AS cursor_positions";

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("filter", &self.filter)
            .field("ledger", &self.ledger)
            .field("cursors", &self.cursors)
            .field("enabled", &self.enabled)
            .field("consecutive_failures", &self.consecutive_failures)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// Whether it follows `ledger`.
    pub fn follows(&self, ledger: &LedgerName) -> bool {
        self.ledger.as_ref().is_none_or(|l| l == ledger)
    }

    /// Its cursor in `ledger`: 0 where it has none yet.
    pub fn cursor(&self, ledger: &LedgerName) -> i64 {
        self.cursors
            .iter()
            .find(|(l, _)| l == ledger)
            .map_or(0, |(_, cursor)| *cursor)
    }

    fn from_row(row: &PgRow) -> Result<Self> {
        let name = |name: String| {
            LedgerName::try_from(name)
                .map_err(|e| crate::Error::Corrupt(format!("webhook subscriptions: {e}")))
        };
        let ledgers: Vec<String> = row.try_get("cursor_ledgers")?;
        let positions: Vec<i64> = row.try_get("cursor_positions")?;
        let cursors = ledgers
            .into_iter()
            .map(name)
            .zip(positions)
            .map(|(ledger, cursor)| Ok((ledger?, cursor)))
            .collect::<Result<Vec<_>>>()?;
        let ledger: Option<String> = row.try_get("ledger")?;
        Ok(Self {
            id: row.try_get("id")?,
            url: row.try_get("url")?,
            filter: Filter {
                event_types: row.try_get("event_types")?,
                account_prefix: row.try_get("account_prefix")?,
            },
            secret: row.try_get("secret")?,
            ledger: ledger.map(name).transpose()?,
            cursors,
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

/// Creates an enabled subscription of `ledger` (every ledger when `None`) that delivers each
/// ledger's events after `after` (after each ledger's head when `None`), with a fresh secret. A
/// ledger created later is delivered from its start.
pub async fn create(
    pool: &PgPool,
    url: &str,
    filter: &Filter,
    ledger: Option<&LedgerName>,
    after: Option<i64>,
) -> std::result::Result<Subscription, CreateError> {
    let secret = signing::new_secret()?;
    let only = ledger.map(|l| vec![l.to_string()]);
    let heads = ledgers::heads(pool, only.as_deref()).await?;
    let (names, cursors): (Vec<String>, Vec<i64>) = heads
        .into_iter()
        .map(|(ledger, head)| (ledger.name.to_string(), after.unwrap_or(head)))
        .unzip();
    let id = Uuid::now_v7();
    let mut tx = pool.begin().await.map_err(crate::Error::from)?;
    // Counted and inserted in one statement: two racing creations may pass the bound by one,
    // which the bound tolerates.
    let inserted = sqlx::query(
        "INSERT INTO webhook_subscriptions (id, url, event_types, account_prefix, secret, ledger,
             enabled, next_attempt_at, created_at)
         SELECT $1, $2, $3, $4, $5, $6, true, now(), now()
         WHERE (SELECT count(*) FROM webhook_subscriptions) < $7",
    )
    .bind(id)
    .bind(url)
    .bind(&filter.event_types)
    .bind(&filter.account_prefix)
    .bind(&secret)
    .bind(ledger.map(LedgerName::as_str))
    .bind(SUBSCRIPTIONS_MAX)
    .execute(&mut *tx)
    .await
    .map_err(crate::Error::from)?;
    if inserted.rows_affected() == 0 {
        return Err(CreateError::TooMany);
    }
    sqlx::query(
        "INSERT INTO webhook_cursors (subscription_id, ledger, cursor)
         SELECT $1, l, c FROM unnest($2::text[], $3::int8[]) AS t (l, c)",
    )
    .bind(id)
    .bind(&names)
    .bind(&cursors)
    .execute(&mut *tx)
    .await
    .map_err(crate::Error::from)?;
    tx.commit().await.map_err(crate::Error::from)?;
    get(pool, id)
        .await?
        .ok_or_else(|| CreateError::Store(crate::Error::Corrupt("a new subscription".into())))
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

/// Makes sure the subscription has a cursor in `ledger` (0: from its start), for the deliverer
/// to move by compare-and-set.
pub async fn ensure_cursor(pool: &PgPool, id: Uuid, ledger: &LedgerName) -> Result<()> {
    sqlx::query(
        "INSERT INTO webhook_cursors (subscription_id, ledger, cursor) VALUES ($1, $2, 0)
         ON CONFLICT (subscription_id, ledger) DO NOTHING",
    )
    .bind(id)
    .bind(ledger.as_str())
    .execute(pool)
    .await?;
    Ok(())
}

/// Moves the cursor in `ledger` past events that do not match, from `from` (where the deliverer
/// read it) to `to`; false when it was no longer at `from`, or the subscription is disabled.
pub async fn skip(
    pool: &PgPool,
    id: Uuid,
    ledger: &LedgerName,
    from: i64,
    to: i64,
) -> Result<bool> {
    let moved = sqlx::query(
        "UPDATE webhook_cursors c SET cursor = $4
         FROM webhook_subscriptions s
         WHERE c.subscription_id = $1 AND c.ledger = $2 AND c.cursor = $3
           AND s.id = c.subscription_id AND s.enabled",
    )
    .bind(id)
    .bind(ledger.as_str())
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

/// One attempt at delivering one position of a ledger.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub ledger: LedgerName,
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

/// Records an attempt of the subscription whose cursor in the attempt's ledger the deliverer
/// read as `cursor`. A delivery moves that cursor to its position and ends the run of failures; a
/// failure counts in it and schedules the retry (`after_failure`). False when the cursor had
/// moved meanwhile.
pub async fn record(
    pool: &PgPool,
    id: Uuid,
    cursor: i64,
    attempt: &Attempt,
    after_failure: Option<&AfterFailure>,
) -> Result<bool> {
    let mut tx = pool.begin().await?;
    // The cursor is locked (or moved) first: the subscription's row changes only if it was
    // still at `cursor`.
    let at_cursor = match after_failure {
        None => sqlx::query(
            "UPDATE webhook_cursors SET cursor = $4
             WHERE subscription_id = $1 AND ledger = $2 AND cursor = $3",
        )
        .bind(id)
        .bind(attempt.ledger.as_str())
        .bind(cursor)
        .bind(attempt.position),
        Some(_) => sqlx::query(
            "SELECT 1 FROM webhook_cursors
             WHERE subscription_id = $1 AND ledger = $2 AND cursor = $3 FOR UPDATE",
        )
        .bind(id)
        .bind(attempt.ledger.as_str())
        .bind(cursor),
    }
    .execute(&mut *tx)
    .await?;
    if at_cursor.rows_affected() == 0 {
        return Ok(false);
    }
    match after_failure {
        None => sqlx::query(
            "UPDATE webhook_subscriptions SET consecutive_failures = 0,
                 failing_since = NULL, next_attempt_at = now()
             WHERE id = $1",
        )
        .bind(id),
        Some(plan) => sqlx::query(
            "UPDATE webhook_subscriptions SET consecutive_failures = consecutive_failures + 1,
                 failing_since = COALESCE(failing_since, $2), next_attempt_at = $3,
                 enabled = enabled AND $4::text IS NULL,
                 disabled_reason = COALESCE($4, disabled_reason)
             WHERE id = $1",
        )
        .bind(id)
        .bind(attempt.attempted_at)
        .bind(plan.next_attempt_at)
        .bind(&plan.disabled_reason),
    }
    .execute(&mut *tx)
    .await?;
    let error = attempt
        .error
        .as_deref()
        .map(|e| e.chars().take(ERROR_CHARS_MAX).collect::<String>());
    let logged: i64 = sqlx::query_scalar(
        "INSERT INTO webhook_deliveries (subscription_id, ledger, position, attempt, outcome,
             status_code, error, latency_ms, attempted_at)
         VALUES ($1, $8, $2, (SELECT count(*) + 1 FROM webhook_deliveries
                              WHERE subscription_id = $1 AND ledger = $8 AND position = $2),
                 $3, $4, $5, $6, $7)
         RETURNING id",
    )
    .bind(id)
    .bind(attempt.position)
    .bind(attempt.outcome.as_str())
    .bind(attempt.status_code.map(|s| s as i16))
    .bind(error)
    .bind(attempt.latency_ms as i32)
    .bind(attempt.attempted_at)
    .bind(attempt.ledger.as_str())
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
    pub ledger: String,
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
        "SELECT id, ledger, position, attempt, outcome, status_code, error, latency_ms, attempted_at
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
                ledger: row.try_get("ledger")?,
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
