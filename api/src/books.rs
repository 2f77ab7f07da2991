//! The ledgers this process serves. Each ledger's book has its own writer, projectors, read pools
//! and forwarder (`Book`); they start when the ledger is first used here, so a ledger no request
//! has named costs this process nothing but its row. Requests name their ledger in the path
//! (`/v1/ledgers/{ledger}/…`, rewritten to the route without it by `route_ledger`) or mean
//! `default`; the `Book` extractor resolves it, and a key limited to other ledgers gets 404, as
//! if the ledger did not exist.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::Uri;
use domain::LedgerName;
use infrastructure::db::{self, PgConnectOptions, PgPool, PoolConfig};
use infrastructure::ledgers::{self, Ledger};
use infrastructure::projections::projector::{ProjectorConfig, Projectors};
use infrastructure::{ReadStore, Writer, WriterConfig};
use tokio::task::JoinHandle;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::forward::Forwarder;
use crate::state::AppState;

/// The first segments after `/v1/` of the routes that read or write a book: what may follow
/// `/v1/ledgers/{ledger}/`.
pub const BOOK_ROUTES: [&str; 8] = [
    "accounts",
    "assets",
    "transactions",
    "transfers",
    "trades",
    "events",
    "audit",
    "balances",
];

/// The ledger a request named in its path, set by `route_ledger`: the name as written (checked
/// when resolved) and the path's prefix, for requests forwarded to the writer.
#[derive(Debug, Clone)]
pub struct LedgerInPath {
    pub name: String,
    /// `/v1/ledgers/{name}`.
    pub prefix: String,
}

/// Rewrites `/v1/ledgers/{ledger}/<book route>…` to `/v1/<book route>…`, remembering the ledger,
/// before routing: one set of routes serves every ledger with the same shapes. Runs on every
/// request, ahead of the router.
pub fn route_ledger<B>(mut request: axum::http::Request<B>) -> axum::http::Request<B> {
    let Some(rest) = request.uri().path().strip_prefix("/v1/ledgers/") else {
        return request;
    };
    let Some((name, route)) = rest.split_once('/') else {
        return request;
    };
    let first = route.split('/').next().unwrap_or_default();
    if !BOOK_ROUTES.contains(&first) {
        return request;
    }
    let rewritten = match request.uri().query() {
        Some(query) => format!("/v1/{route}?{query}"),
        None => format!("/v1/{route}"),
    };
    let Ok(uri) = rewritten.parse::<Uri>() else {
        return request;
    };
    let in_path = LedgerInPath {
        name: name.to_owned(),
        prefix: format!("/v1/ledgers/{name}"),
    };
    *request.uri_mut() = uri;
    request.extensions_mut().insert(in_path);
    request
}

/// How a book's parts are made: what every book shares.
pub struct BookFactory {
    /// The primary, where the writer writes and the registry is.
    pub primary: PgConnectOptions,
    /// Where reads are served from, when not the primary (`--read-database-url`).
    pub replica: Option<PgConnectOptions>,
    pub pool: PoolConfig,
    pub writer: WriterConfig,
    pub own_url: String,
    pub forward_timeout: Duration,
    pub min_position_wait: Duration,
}

impl BookFactory {
    /// Starts the writer and projectors of `ledger` and opens its pools (lazily: no connection
    /// until a request needs one).
    fn open(&self, ledger: Ledger) -> Book {
        let primary = ledgers::book_options(&self.primary, &ledger);
        let (writer, writer_task) = Writer::spawn(primary.clone(), self.writer.clone());
        let projectors = Projectors::spawn(
            primary.clone(),
            Some(writer.watch_committed()),
            ProjectorConfig::default(),
        );
        let primary_pool = db::read_pool(primary, &self.pool);
        let (reads, replica_primary) = match &self.replica {
            Some(replica) => (
                ReadStore::new(db::read_pool(
                    ledgers::book_options(replica, &ledger),
                    &self.pool,
                )),
                Some(ReadStore::new(primary_pool.clone())),
            ),
            None => (ReadStore::new(primary_pool.clone()), None),
        };
        let forwarder = Forwarder::new(primary_pool, self.own_url.clone(), self.forward_timeout);
        Book(Arc::new(BookInner {
            ledger,
            writer,
            writer_task: std::sync::Mutex::new(Some(writer_task)),
            projectors,
            reads,
            primary: replica_primary,
            forwarder,
            min_position_wait: self.min_position_wait,
        }))
    }
}

/// One ledger as this process serves it.
#[derive(Clone)]
pub struct Book(Arc<BookInner>);

struct BookInner {
    ledger: Ledger,
    writer: Writer,
    writer_task: std::sync::Mutex<Option<JoinHandle<()>>>,
    projectors: Projectors,
    /// Where reads are served from: the primary, or a replica.
    reads: ReadStore,
    /// The primary, when reads come from a replica: how far behind the replica is.
    primary: Option<ReadStore>,
    forwarder: Forwarder,
    min_position_wait: Duration,
}

impl Book {
    pub fn ledger(&self) -> &Ledger {
        &self.0.ledger
    }

    pub fn name(&self) -> &LedgerName {
        &self.0.ledger.name
    }

    pub fn writer(&self) -> &Writer {
        &self.0.writer
    }

    pub fn projectors(&self) -> &Projectors {
        &self.0.projectors
    }

    pub fn reads(&self) -> &ReadStore {
        &self.0.reads
    }

    /// The primary's read store when reads come from a replica; `None` when they come from the
    /// primary itself.
    pub fn primary(&self) -> Option<&ReadStore> {
        self.0.primary.as_ref()
    }

    pub fn forwarder(&self) -> &Forwarder {
        &self.0.forwarder
    }

    /// The read models, as a read that asked for `min_position` must see them: each snapshot
    /// reflects at least that position, waited for up to `--min-position-wait-ms`.
    pub fn reads_at(&self, min_position: Option<i64>) -> ReadStore {
        self.0
            .reads
            .at_least(min_position, self.0.min_position_wait)
    }

    /// The read models for a read as of `at_position`: a position still to come is waited for
    /// like `min_position`, never answered from the past.
    pub fn reads_as_of(
        &self,
        min_position: Option<i64>,
        at_position: Option<i64>,
    ) -> Result<ReadStore, ApiError> {
        if at_position.is_some_and(|p| p < 0) {
            return Err(ApiError::InvalidRequest("at_position is negative".into()));
        }
        Ok(self.reads_at(min_position.max(at_position)))
    }

    /// Stops the projectors and closes the pools; the writer stops once the last handle to it
    /// is gone. Returns the writer's task, to be awaited after that.
    async fn stop(&self) -> Option<JoinHandle<()>> {
        self.0.projectors.stop().await;
        let task = self.0.writer_task.lock().ok().and_then(|mut t| t.take());
        self.0.reads.pool().close().await;
        if let Some(primary) = &self.0.primary {
            primary.pool().close().await;
        }
        task
    }
}

/// Every ledger this process has opened, by name; `default` from the start.
pub struct Books {
    factory: BookFactory,
    /// The registry (`public.ledgers`) and everything that is not a book's.
    registry: PgPool,
    default: Book,
    open: tokio::sync::Mutex<HashMap<LedgerName, Book>>,
}

impl Books {
    /// Opens ledger `default`, which every database has.
    pub async fn start(factory: BookFactory, registry: PgPool) -> infrastructure::Result<Self> {
        let ledger = ledgers::find(&registry, &LedgerName::default_ledger())
            .await?
            .ok_or_else(|| {
                infrastructure::Error::Corrupt("the ledger `default` is not registered".into())
            })?;
        let default = factory.open(ledger);
        Ok(Self {
            factory,
            registry,
            default,
            open: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    pub fn default_book(&self) -> &Book {
        &self.default
    }

    pub fn registry(&self) -> &PgPool {
        &self.registry
    }

    /// The book of ledger `name`, opened here if this is its first use; 404 `ledger_not_found`
    /// when there is no such ledger.
    pub async fn get(&self, name: &LedgerName) -> Result<Book, ApiError> {
        if name.is_default() {
            return Ok(self.default.clone());
        }
        let mut open = self.open.lock().await;
        if let Some(book) = open.get(name) {
            return Ok(book.clone());
        }
        let ledger = ledgers::find(&self.registry, name)
            .await?
            .ok_or_else(|| ApiError::ledger_not_found(name.as_str()))?;
        let book = self.factory.open(ledger);
        open.insert(name.clone(), book.clone());
        Ok(book)
    }

    /// Every book opened so far, `default` first.
    pub async fn opened(&self) -> Vec<Book> {
        let open = self.open.lock().await;
        std::iter::once(self.default.clone())
            .chain(open.values().cloned())
            .collect()
    }

    /// Stops every book's projectors and closes its pools, and hands back the writers' tasks:
    /// they end once the last handle to their writer is dropped (with the server's state).
    pub async fn stop(&self) -> Vec<JoinHandle<()>> {
        let mut tasks = Vec::new();
        for book in self.opened().await {
            tasks.extend(book.stop().await);
        }
        self.open.lock().await.clear();
        tasks
    }
}

impl FromRequestParts<AppState> for Book {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let name = match parts.extensions.get::<LedgerInPath>() {
            Some(in_path) => LedgerName::try_from(in_path.name.clone())
                .map_err(|_| ApiError::ledger_not_found(&in_path.name))?,
            None => LedgerName::default_ledger(),
        };
        let caller = parts.extensions.get::<Caller>();
        if caller.is_some_and(|c| !c.may_use(&name)) {
            return Err(ApiError::ledger_not_found(name.as_str()));
        }
        state.books().get(&name).await
    }
}
