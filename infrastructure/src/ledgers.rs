//! Ledgers: the books of one deployment. Each ledger keeps its log, projections, idempotency
//! records and writer advertisement in a PostgreSQL schema of its own (its *book*), so that its
//! positions, chain and checkpoints are its own and nothing on its write path is shared with
//! another ledger but the database. Every statement on a book names its tables unqualified; a
//! session works on one book because its `search_path` names it (`book_options`).
//!
//! The registry (`public.ledgers`) holds one row per ledger. `default` (id 1) has the book
//! `public`, where a database written before there were many ledgers already keeps its log; a
//! ledger created later gets `ledger_<id>`, whose tables are copies of `public`'s (`BOOK_TABLES`).

use chrono::{DateTime, Utc};
use domain::LedgerName;
use sqlx::postgres::PgConnectOptions;
use sqlx::{PgPool, Row};

use crate::{Error, Result};

/// The tables every book has, created for a new ledger as copies of `public`'s (columns,
/// defaults, checks, keys and indexes). A migration that changes one of them must change it in
/// every book (`SELECT schema_name FROM ledgers`).
pub const BOOK_TABLES: [&str; 26] = [
    "events",
    "projection_head",
    "assets",
    "accounts",
    "balances",
    "postings",
    "transactions",
    "idempotency_keys",
    "account_status_changes",
    "account_limits",
    "holds",
    "hold_settlements",
    "reversals",
    "writer_advertisement",
    "projection_checkpoints",
    "rollups",
    "rollup_accounts",
    "periods",
    "hold_parts",
    "booking_methods",
    "hold_dues",
    "lot_movements",
    "lots",
    "lot_closings",
    "lot_books",
    "prices",
];

/// Ledgers listed per page at most.
pub const PAGE_MAX: i64 = 1000;

/// A ledger as registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ledger {
    pub id: i32,
    pub name: LedgerName,
    /// The PostgreSQL schema of its book.
    pub schema: String,
    /// Canonical JSON text.
    pub metadata: String,
    pub created_at: DateTime<Utc>,
}

/// What `create` did.
#[derive(Debug)]
pub struct Created {
    pub ledger: Ledger,
    /// The ledger was created earlier with the same idempotency key and request.
    pub replayed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("a ledger named {0} already exists")]
    Exists(LedgerName),
    #[error("idempotency key was already used with a different request")]
    KeyReused,
    #[error(transparent)]
    Store(#[from] Error),
}

impl From<sqlx::Error> for CreateError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(Error::Database(e))
    }
}

/// Connection options for sessions on `ledger`'s book: its schema, and nothing else, on the
/// search path, so that a statement naming a table outside the book fails rather than reads
/// another ledger's.
///
/// Its sessions are named `ledger:<name>` in `pg_stat_activity`, a follower's
/// `<role>:<name>` (`db::role_options`).
pub fn book_options(base: &PgConnectOptions, ledger: &Ledger) -> PgConnectOptions {
    base.clone()
        .options([("search_path", ledger.schema.as_str())])
        .application_name(&format!("ledger:{}", ledger.name))
}

const COLUMNS: &str = "id, name, schema_name, metadata, created_at";

fn from_row(row: &sqlx::postgres::PgRow) -> Result<Ledger> {
    let name: String = row.try_get("name")?;
    Ok(Ledger {
        id: row.try_get("id")?,
        name: LedgerName::try_from(name).map_err(|e| Error::Corrupt(format!("ledgers: {e}")))?,
        schema: row.try_get("schema_name")?,
        metadata: row.try_get("metadata")?,
        created_at: row.try_get("created_at")?,
    })
}

/// The ledger named `name`, if there is one.
pub async fn find(pool: &PgPool, name: &LedgerName) -> Result<Option<Ledger>> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM ledgers WHERE name = $1"))
        .bind(name.as_str())
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Ledgers in name order, after `after`, at most `limit`; only those in `only` when given.
pub async fn list(
    pool: &PgPool,
    after: Option<&str>,
    limit: i64,
    only: Option<&[String]>,
) -> Result<Vec<Ledger>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM ledgers
         WHERE ($1::text IS NULL OR name > $1) AND ($2::text[] IS NULL OR name = ANY($2))
         ORDER BY name LIMIT $3"
    ))
    .bind(after)
    .bind(only)
    .bind(limit.clamp(1, PAGE_MAX))
    .fetch_all(pool)
    .await?;
    rows.iter().map(from_row).collect()
}

/// Every ledger, in name order, read page by page (`PAGE_MAX` at a time): for commands and checks
/// that go over the whole deployment.
pub async fn all(pool: &PgPool) -> Result<Vec<Ledger>> {
    let mut ledgers: Vec<Ledger> = Vec::new();
    loop {
        let after = ledgers.last().map(|l| l.name.to_string());
        let page = list(pool, after.as_deref(), PAGE_MAX, None).await?;
        if page.is_empty() {
            return Ok(ledgers);
        }
        ledgers.extend(page);
    }
}

/// Creates a ledger and its book in one transaction, so a ledger never exists without its
/// tables. A retry with the same idempotency key and `fingerprint` gets the ledger it created.
pub async fn create(
    pool: &PgPool,
    name: &LedgerName,
    metadata: &str,
    idempotency_key: &str,
    fingerprint: &[u8],
) -> std::result::Result<Created, CreateError> {
    let mut tx = pool.begin().await?;
    // Ledgers are created one at a time: a racing retry with the same key waits for the first,
    // then finds it.
    sqlx::query("LOCK TABLE ledgers IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    let earlier = sqlx::query(&format!(
        "SELECT {COLUMNS}, fingerprint FROM ledgers WHERE idempotency_key = $1"
    ))
    .bind(idempotency_key)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(row) = earlier {
        let stored: Option<Vec<u8>> = row.try_get("fingerprint")?;
        if stored.as_deref() != Some(fingerprint) {
            return Err(CreateError::KeyReused);
        }
        return Ok(Created {
            ledger: from_row(&row)?,
            replayed: true,
        });
    }
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM ledgers WHERE name = $1)")
        .bind(name.as_str())
        .fetch_one(&mut *tx)
        .await?;
    if exists {
        return Err(CreateError::Exists(name.clone()));
    }
    let id: i64 = sqlx::query_scalar("SELECT nextval(pg_get_serial_sequence('ledgers', 'id'))")
        .fetch_one(&mut *tx)
        .await?;
    let row = sqlx::query(&format!(
        "INSERT INTO ledgers (id, name, schema_name, metadata, created_at, idempotency_key, fingerprint)
         VALUES ($1, $2, $3, $4, now(), $5, $6)
         RETURNING {COLUMNS}"
    ))
    .bind(id as i32)
    .bind(name.as_str())
    .bind(format!("ledger_{id}"))
    .bind(metadata)
    .bind(idempotency_key)
    .bind(fingerprint)
    .fetch_one(&mut *tx)
    .await?;
    let ledger = from_row(&row)?;
    // One statement per table: a statement of many (`raw_sql`) makes a future that is not
    // `Send`, and this one is awaited in a request handler.
    for statement in book_ddl(&ledger.schema) {
        sqlx::query(&statement).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    tracing::info!(ledger = %ledger.name, schema = %ledger.schema, "ledger created");
    Ok(Created {
        ledger,
        replayed: false,
    })
}

/// The statements that make a book in `schema`: its tables as copies of `public`'s, the log's
/// append-only triggers, and the projections' starting head.
fn book_ddl(schema: &str) -> Vec<String> {
    let mut statements = vec![format!("CREATE SCHEMA {schema}")];
    statements.extend(
        BOOK_TABLES.iter().map(|table| {
            format!("CREATE TABLE {schema}.{table} (LIKE public.{table} INCLUDING ALL)")
        }),
    );
    statements.extend([
        format!(
            "CREATE TRIGGER events_no_update_or_delete BEFORE UPDATE OR DELETE ON {schema}.events
             FOR EACH ROW EXECUTE FUNCTION public.events_are_append_only()"
        ),
        format!(
            "CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON {schema}.events
             FOR EACH STATEMENT EXECUTE FUNCTION public.events_are_append_only()"
        ),
        format!("INSERT INTO {schema}.projection_head (position) VALUES (0)"),
    ]);
    statements
}

/// What `GET /v1/ledgers/{name}` tells about a ledger's book: its head and how many accounts it
/// has. Read on a session of the book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookSummary {
    pub head_position: i64,
    /// Hex; `None` while the log is empty.
    pub head_hash: Option<String>,
    pub accounts: i64,
}

pub async fn summary(book: &PgPool) -> Result<BookSummary> {
    let row = sqlx::query(
        "SELECT (SELECT position FROM projection_head) AS head,
                (SELECT encode(hash, 'hex') FROM events ORDER BY position DESC LIMIT 1) AS hash,
                (SELECT count(*) FROM accounts) AS accounts",
    )
    .fetch_one(book)
    .await?;
    Ok(BookSummary {
        head_position: row.try_get("head")?,
        head_hash: row.try_get("hash")?,
        accounts: row.try_get("accounts")?,
    })
}

/// Open holds with an expiry or a settlement time (a trade with a settlement date): a ledger
/// with one needs its writer running, to expire or settle it on time.
const HOLDS_TO_EXPIRE: &str = "SELECT EXISTS (
    SELECT 1 FROM {book}holds h
    WHERE (h.expires_at IS NOT NULL OR h.settles_at IS NOT NULL)
      AND NOT EXISTS (SELECT 1 FROM {book}hold_settlements s WHERE s.transaction_id = h.transaction_id))";

/// Whether the book the pool's sessions work on has a hold that will expire.
pub async fn has_holds_to_expire(book: &PgPool) -> Result<bool> {
    Ok(sqlx::query_scalar(&HOLDS_TO_EXPIRE.replace("{book}", ""))
        .fetch_one(book)
        .await?)
}

/// The ledgers (but `default`) with a hold that will expire, read through the registry's pool.
pub async fn with_holds_to_expire(registry: &PgPool) -> Result<Vec<LedgerName>> {
    let mut found = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = list(registry, after.as_deref(), PAGE_MAX, None).await?;
        let Some(last) = page.last() else {
            return Ok(found);
        };
        after = Some(last.name.to_string());
        for ledger in page.into_iter().filter(|l| !l.name.is_default()) {
            let sql = HOLDS_TO_EXPIRE.replace("{book}", &format!("{}.", ledger.schema));
            if sqlx::query_scalar(&sql).fetch_one(registry).await? {
                found.push(ledger.name);
            }
        }
    }
}

/// Books read by one statement of `across_books`, at most.
pub const BOOKS_PER_STATEMENT: i64 = 256;

/// Runs `per_book`, a `SELECT` whose tables are written `{book}events`, `{book}projection_head`…,
/// on every ledger's book, `BOOKS_PER_STATEMENT` books per statement (one `UNION ALL`), through
/// the registry's pool; `$1` is bound to `param` in each. Each row comes with its ledger. This is
/// how a log follower of many ledgers learns which have something for it without a session, or
/// a task, per ledger.
pub async fn across_books(
    registry: &PgPool,
    per_book: &str,
    param: &str,
) -> Result<Vec<(Ledger, sqlx::postgres::PgRow)>> {
    across_some_books(registry, per_book, param, None).await
}

/// `across_books` on the books of the ledgers in `only` (all when `None`).
pub async fn across_some_books(
    registry: &PgPool,
    per_book: &str,
    param: &str,
    only: Option<&[String]>,
) -> Result<Vec<(Ledger, sqlx::postgres::PgRow)>> {
    let mut found = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = list(registry, after.as_deref(), BOOKS_PER_STATEMENT, only).await?;
        let Some(last) = page.last() else {
            return Ok(found);
        };
        after = Some(last.name.to_string());
        let statement = page
            .iter()
            .enumerate()
            .map(|(i, ledger)| {
                let book = format!("\"{}\".", ledger.schema.replace('"', "\"\""));
                format!(
                    "(SELECT {i} AS book_index, q.* FROM ({}) q)",
                    per_book.replace("{book}", &book)
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let rows = sqlx::query(&statement)
            .bind(param)
            .fetch_all(registry)
            .await?;
        for row in rows {
            let index: i32 = row.try_get("book_index")?;
            let ledger = usize::try_from(index)
                .ok()
                .and_then(|i| page.get(i))
                .ok_or_else(|| Error::Corrupt(format!("no book at index {index}")))?;
            found.push((ledger.clone(), row));
        }
    }
}

/// Each ledger's head (its last committed position, 0 while empty), of the ledgers in `only` (all
/// when `None`), read through the registry's pool.
pub async fn heads(registry: &PgPool, only: Option<&[String]>) -> Result<Vec<(Ledger, i64)>> {
    let rows = across_some_books(
        registry,
        "SELECT position AS head, $1::text AS unused FROM {book}projection_head",
        "",
        only,
    )
    .await?;
    rows.into_iter()
        .map(|(ledger, row)| Ok((ledger, row.try_get("head")?)))
        .collect()
}

/// Commits of the writers running in this process, by ledger: a log follower in the same
/// process (a relay, the webhook deliverer) is woken by them at once, rather than at its next
/// poll. One channel for every ledger, so that an idle ledger costs no task here.
#[derive(Clone)]
pub struct LocalCommits(tokio::sync::broadcast::Sender<LedgerName>);

/// Commit notices a slow follower may fall behind by before it misses some (and then looks at
/// every ledger, as at a poll).
const LOCAL_COMMITS_BUFFERED: usize = 1_024;

impl Default for LocalCommits {
    fn default() -> Self {
        Self(tokio::sync::broadcast::channel(LOCAL_COMMITS_BUFFERED).0)
    }
}

impl LocalCommits {
    /// Tells the followers of `ledger` each time `committed` (its writer's committed position)
    /// moves, until the writer stops.
    pub fn forward(&self, ledger: LedgerName, mut committed: tokio::sync::watch::Receiver<i64>) {
        let notices = self.0.clone();
        tokio::spawn(async move {
            while committed.changed().await.is_ok() {
                let _ = notices.send(ledger.clone());
            }
        });
    }

    /// The ledgers that commit from now on, each time they do.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<LedgerName> {
        self.0.subscribe()
    }
}
