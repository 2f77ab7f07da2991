//! The ledgers this process serves. Each ledger's book has its own writer, projectors, read pools
//! and forwarder (`Book`); they start when the ledger is first used here, so a ledger no request
//! has named costs this process nothing but its row. Requests name their ledger in the path
//! (`/v1/ledgers/{ledger}/…`, rewritten to the route without it by `route_ledger`) or mean
//! `default`; the `Book` extractor resolves it, and a key limited to other ledgers gets 404, as
//! if the ledger did not exist.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, FromRequestParts};
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

/// The first segments after `/v1/` of the routes that read or write a book: what may follow
/// `/v1/ledgers/{ledger}/`.
pub const BOOK_ROUTES: [&str; 12] = [
    "accounts",
    "assets",
    "transactions",
    "transfers",
    "trades",
    "events",
    "audit",
    "balances",
    "periods",
    "reports",
    "positions",
    "prices",
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

/// The middleware: a write (any `/v1` method but GET and HEAD) that reaches a node standing by
/// for its ledger (another process holds that ledger's writer lock) goes to that ledger's writer. A node still starting or recovering keeps
/// its writes: its own writer answers them, as it does on a single node. It runs after
/// authentication, so a request this node refuses never travels, and a flood of bad keys is
/// counted against the address that sent it.
pub async fn forward_writes(
    axum::extract::State(books): axum::extract::State<Books>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let is_write = !matches!(
        *request.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    );
    if !is_write
        || !request.uri().path().starts_with("/v1/")
        || request.headers().contains_key(crate::forward::FORWARDED_BY)
    {
        return next.run(request).await;
    }
    // The ledger the request names; one that does not exist, or that the caller may not use, is
    // answered here by the handler (404).
    let in_path = request.extensions().get::<LedgerInPath>().cloned();
    let book = match &in_path {
        None => books.default_book().clone(),
        Some(in_path) => {
            let caller = request.extensions().get::<Caller>();
            let name = domain::LedgerName::try_from(in_path.name.clone()).ok();
            let named = name.filter(|n| caller.is_some_and(|c| c.may_use(n)));
            match named {
                Some(name) => match books.get(&name).await {
                    Ok(book) => book,
                    Err(_) => return next.run(request).await,
                },
                None => return next.run(request).await,
            }
        }
    };
    if book.writer().status() != infrastructure::WriterStatus::Standby {
        return next.run(request).await;
    }
    let prefix = in_path.as_ref().map_or("", |p| p.prefix.as_str());
    book.forwarder()
        .forward(request, prefix)
        .await
        .unwrap_or_else(axum::response::IntoResponse::into_response)
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
    /// Where every book's writer tells its commits, for the relays and the webhook deliverer.
    pub commits: ledgers::LocalCommits,
    pub projector: ProjectorConfig,
}

impl BookFactory {
    /// Starts the writer and projectors of `ledger` and opens its pools (lazily: no connection
    /// until a request needs one).
    fn open(&self, ledger: Ledger) -> Book {
        let pool = if ledger.name.is_default() {
            self.pool.clone()
        } else {
            PoolConfig {
                max_connections: self.pool.max_connections.min(BOOK_READ_CONNECTIONS_MAX),
                ..self.pool.clone()
            }
        };
        let primary = ledgers::book_options(&self.primary, &ledger);
        let (writer, writer_task) = Writer::spawn(primary.clone(), self.writer.clone());
        self.commits
            .forward(ledger.name.clone(), writer.watch_committed());
        let projectors = Projectors::spawn(
            primary.clone(),
            Some(writer.watch_committed()),
            self.projector.clone(),
        );
        let primary_pool = db::read_pool(primary, &pool);
        let (reads, replica_primary) = match &self.replica {
            Some(replica) => (
                ReadStore::new(db::read_pool(
                    ledgers::book_options(replica, &ledger),
                    &pool,
                )),
                Some(ReadStore::new(primary_pool.clone())),
            ),
            None => (ReadStore::new(primary_pool.clone()), None),
        };
        // The book's reads that wait for its asynchronous projections hurry its projector, which
        // otherwise paces its pages under load.
        let reads = reads.hurrying(projectors.hurry());
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

/// Read connections of the book of a ledger other than `default` (whose pool is
/// `--db-pool-max`): with its writer's and projector's sessions, what an open book holds at most.
pub const BOOK_READ_CONNECTIONS_MAX: u32 = 3;

/// How often the books are looked over for ones idle long enough to stop.
const IDLE_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// Every ledger this process has opened, by name; `default` from the start. A book no request
/// has used for `idle_stop` (and whose writer has no hold to expire) is stopped, so that
/// thousands of ledgers do not mean thousands of writers, projectors and connections: an idle
/// ledger costs a row and a schema.
#[derive(Clone)]
pub struct Books(Arc<BooksInner>);

struct BooksInner {
    factory: BookFactory,
    /// The registry (`public.ledgers`) and everything that is not a book's.
    registry: PgPool,
    default: Book,
    open: tokio::sync::Mutex<HashMap<LedgerName, Opened>>,
    idle_stop: Duration,
    /// Books open at once besides `default`'s.
    books_open_max: usize,
}

/// A book and when a request last asked for it.
struct Opened {
    book: Book,
    used: std::time::Instant,
}

impl Books {
    /// Opens ledger `default`, which every database has, and starts looking after the others:
    /// opening those with holds to expire, and stopping those left idle.
    pub async fn start(
        factory: BookFactory,
        registry: PgPool,
        idle_stop: Duration,
        books_open_max: usize,
    ) -> infrastructure::Result<Self> {
        let ledger = ledgers::find(&registry, &LedgerName::default_ledger())
            .await?
            .ok_or_else(|| {
                infrastructure::Error::Corrupt("the ledger `default` is not registered".into())
            })?;
        let default = factory.open(ledger);
        let books = Self(Arc::new(BooksInner {
            factory,
            registry,
            default,
            open: tokio::sync::Mutex::new(HashMap::new()),
            idle_stop,
            books_open_max: books_open_max.max(1),
        }));
        tokio::spawn(look_after(Arc::downgrade(&books.0)));
        Ok(books)
    }

    pub fn default_book(&self) -> &Book {
        &self.0.default
    }

    pub fn registry(&self) -> &PgPool {
        &self.0.registry
    }

    /// The commits of every book's writer in this process.
    pub fn commits(&self) -> &ledgers::LocalCommits {
        &self.0.factory.commits
    }

    /// The book of ledger `name`, opened here if this is its first use; 404 `ledger_not_found`
    /// when there is no such ledger.
    pub async fn get(&self, name: &LedgerName) -> Result<Book, ApiError> {
        if name.is_default() {
            return Ok(self.0.default.clone());
        }
        let mut open = self.0.open.lock().await;
        if let Some(opened) = open.get_mut(name) {
            opened.used = std::time::Instant::now();
            return Ok(opened.book.clone());
        }
        let ledger = ledgers::find(&self.0.registry, name)
            .await?
            .ok_or_else(|| ApiError::ledger_not_found(name.as_str()))?;
        if !self.make_room(&mut open).await {
            return Err(infrastructure::Error::Overloaded.into());
        }
        tracing::info!(ledger = %name, "opening the ledger's book");
        let book = self.0.factory.open(ledger);
        let used = std::time::Instant::now();
        open.insert(
            name.clone(),
            Opened {
                book: book.clone(),
                used,
            },
        );
        Ok(book)
    }

    /// How many books are open besides `default`'s.
    pub async fn opened_count(&self) -> usize {
        self.0.open.lock().await.len()
    }

    /// Stops every book's projectors and closes its pools, and hands back the writers' tasks:
    /// they end once the last handle to their writer is dropped (with the server's state).
    pub async fn stop(&self) -> Vec<JoinHandle<()>> {
        let mut open = self.0.open.lock().await;
        let mut tasks = Vec::new();
        for (_, opened) in open.drain() {
            tasks.extend(opened.book.stop().await);
        }
        tasks.extend(self.0.default.stop().await);
        tasks
    }
}

/// Opens the ledgers whose holds must expire on time, then stops idle books until the books are
/// dropped (the server stopped).
async fn look_after(books: std::sync::Weak<BooksInner>) {
    match books.upgrade() {
        Some(inner) => {
            let books = Books(inner);
            match ledgers::with_holds_to_expire(books.registry()).await {
                Ok(names) => {
                    for name in names {
                        if let Err(e) = books.get(&name).await {
                            tracing::warn!(ledger = %name, error = %e, "cannot open a ledger with holds to expire");
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot look for ledgers with holds to expire")
                }
            }
        }
        None => return,
    }
    loop {
        tokio::time::sleep(IDLE_CHECK_INTERVAL).await;
        let Some(inner) = books.upgrade() else {
            return;
        };
        Books(inner).stop_idle().await;
    }
}

impl Books {
    /// Stops the books no request holds or has asked for within `idle_stop`, unless a hold of
    /// theirs is to expire. The map stays locked until each stopped writer has returned, so a
    /// request that reopens the ledger meanwhile waits rather than finds the lock still held.
    async fn stop_idle(&self) {
        let mut open = self.0.open.lock().await;
        let idle: Vec<LedgerName> = open
            .iter()
            .filter(|(_, o)| o.used.elapsed() >= self.0.idle_stop)
            .map(|(name, _)| name.clone())
            .collect();
        for name in idle {
            if stop_if_unused(&mut open, &name).await {
                tracing::info!(ledger = %name, "stopped the ledger's idle book");
            }
        }
    }

    /// Makes room for one more book when `books_open_max` are open: stops the least recently
    /// used one that no request holds; false when every open book is in use.
    async fn make_room(&self, open: &mut HashMap<LedgerName, Opened>) -> bool {
        if open.len() < self.0.books_open_max {
            return true;
        }
        let mut by_use: Vec<(std::time::Instant, LedgerName)> =
            open.iter().map(|(n, o)| (o.used, n.clone())).collect();
        by_use.sort();
        for (_, name) in by_use {
            if stop_if_unused(open, &name).await {
                tracing::info!(ledger = %name, "stopped the least recently used book to open another");
                return true;
            }
        }
        false
    }
}

/// Stops book `name` if no request holds it and none of its holds is to expire: its projectors
/// stop, its pools close and its writer returns before this does, so that the ledger, opened
/// again, finds its lock free. Whether it was stopped.
async fn stop_if_unused(open: &mut HashMap<LedgerName, Opened>, name: &LedgerName) -> bool {
    let Some(opened) = open.get(name) else {
        return false;
    };
    if Arc::strong_count(&opened.book.0) > 1 {
        return false;
    }
    match ledgers::has_holds_to_expire(opened.book.reads().pool()).await {
        Ok(false) => {}
        Ok(true) => return false,
        Err(e) => {
            tracing::debug!(ledger = %name, error = %e, "cannot tell whether a book may stop; keeping it");
            return false;
        }
    }
    let Some(opened) = open.remove(name) else {
        return false;
    };
    let writer = opened.book.stop().await;
    drop(opened);
    if let Some(writer) = writer {
        let _ = writer.await;
    }
    true
}

impl<S: Send + Sync> FromRequestParts<S> for Book
where
    Books: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let name = match parts.extensions.get::<LedgerInPath>() {
            Some(in_path) => LedgerName::try_from(in_path.name.clone())
                .map_err(|_| ApiError::ledger_not_found(&in_path.name))?,
            None => LedgerName::default_ledger(),
        };
        let caller = parts.extensions.get::<Caller>();
        if caller.is_some_and(|c| !c.may_use(&name)) {
            return Err(ApiError::ledger_not_found(name.as_str()));
        }
        Books::from_ref(state).get(&name).await
    }
}
