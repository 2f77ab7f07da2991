//! Starting and stopping the whole service: database (provisioned or given), migrations, the
//! writer, and the HTTP server.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use infrastructure::db;
use infrastructure::local_postgres::LocalPostgres;
use infrastructure::relays::{Relay, RelayConfig, RelayHandle};
use infrastructure::webhooks::Webhooks;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower::ServiceExt;
use tracing::info;

use crate::auth::Authenticator;
use crate::books::{BookFactory, Books};
use crate::config::ServeConfig;
use crate::cursor::Cursors;
use crate::routes;
use crate::state::AppState;

/// How long `stop` lets requests in flight finish.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// A running ledger. `stop` shuts it down in order: HTTP, then the writer, then the database.
pub struct Server {
    addr: SocketAddr,
    state: AppState,
    shutdown: oneshot::Sender<()>,
    http: JoinHandle<std::io::Result<()>>,
    /// The recovery loop of transfers between ledgers.
    recovery: JoinHandle<()>,
    /// The relays this process runs (`--relay`); each publishes a ledger only while it holds
    /// the (sink, ledger) lock.
    relays: Vec<RelayHandle>,
    /// Global tables (keys, webhooks, the registry of ledgers) and ledger `default`'s book.
    pool: db::PgPool,
    local_postgres: Option<LocalPostgres>,
}

impl Server {
    pub async fn start(config: &ServeConfig) -> infrastructure::Result<Self> {
        let database = Database::open(
            config.database_url.as_deref(),
            &config.data_dir,
            &config.pool(),
        )
        .await?;
        if let Err(e) = prepare_keys(&database.pool, config).await {
            database.close().await?;
            return Err(e);
        }
        let (options, pool, local_postgres) =
            (database.options, database.pool, database.local_postgres);
        let auth = Authenticator::new(
            pool.clone(),
            config.insecure_no_auth,
            config.auth_failures_max,
        );
        // Bound first: the writer advertises the address it was given, port 0 resolved.
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let own_url = config
            .advertise_url
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"));
        let signer = infrastructure::audit::Signer::load_or_create(&pool).await?;
        let cursors = Cursors::new(&infrastructure::secrets::cursor_key(&pool).await?)
            .map_err(|e| infrastructure::Error::Corrupt(format!("cursor key: {e}")))?;
        let books = start_books(config, &options, &pool, own_url).await?;
        // Transfers between ledgers that a crash left open are finished by the nodes that write
        // their ledgers.
        let recovery = tokio::spawn(crate::ledger_transfers::recover(books.clone()));
        // Relays follow every ledger, woken by the commits of the writers here.
        let relays = config
            .relays
            .iter()
            .map(|to| {
                let config = RelayConfig::new(to)?;
                Ok(Relay::spawn(
                    options.clone(),
                    config,
                    crate::render::event_json,
                    Some(books.commits().clone()),
                ))
            })
            .collect::<infrastructure::Result<Vec<_>>>()?;
        // Webhooks of every ledger, delivered from the deployment's tables in `public`.
        let default_options =
            infrastructure::ledgers::book_options(&options, books.default_book().ledger());
        let webhooks = start_webhooks(config, default_options, pool.clone(), books.commits())?;
        let state = AppState::new(
            books,
            webhooks,
            signer,
            cursors,
            auth,
            config.limits(),
            config.clock.clone(),
        );
        let app =
            routes::app(state.clone()).merge(crate::console::router(config.console_dir.clone()));
        let (shutdown, shutdown_signal) = oneshot::channel::<()>();
        let http = tokio::spawn(serve(
            listener,
            app,
            config.header_read_timeout(),
            shutdown_signal,
        ));
        info!(%addr, "ledger listening");
        Ok(Self {
            addr,
            state,
            shutdown,
            http,
            recovery,
            relays,
            pool,
            local_postgres,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting requests, lets those in flight finish, stops the writer after its last
    /// batch, and stops the local PostgreSQL if this process started it.
    pub async fn stop(self) -> infrastructure::Result<()> {
        let _ = self.shutdown.send(());
        self.state.close();
        let webhooks = self.state.webhooks().clone();
        // Stopped before the books: it runs transfers through them.
        self.recovery.abort();
        let _ = self.recovery.await;
        // In-flight requests get a bounded time to finish; then the connections are dropped.
        let mut http = self.http;
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut http).await {
            Ok(Ok(result)) => result?,
            Ok(Err(e)) => tracing::error!(error = %e, "HTTP server task failed"),
            Err(_) => {
                tracing::warn!("requests still open after the grace period; closing them");
                http.abort();
            }
        }
        let writers = self.state.books().stop().await;
        // The router and the books held the last writer handles; with them gone each writer
        // finishes its batch and returns.
        drop(self.state);
        for writer in writers {
            if let Err(e) = writer.await {
                tracing::error!(error = %e, "writer task failed");
            }
        }
        for relay in self.relays {
            relay.stop().await;
        }
        webhooks.stop().await;
        self.pool.close().await;
        if let Some(local) = self.local_postgres {
            local.stop().await?;
        }
        info!("ledger stopped");
        Ok(())
    }
}

/// The books of this node: ledger `default`'s started, the others opened on their first request.
async fn start_books(
    config: &ServeConfig,
    options: &db::PgConnectOptions,
    pool: &db::PgPool,
    own_url: String,
) -> infrastructure::Result<Books> {
    let replica = match &config.read_database_url {
        Some(url) => {
            info!("reads are served from --read-database-url");
            Some(db::connect_options(url)?)
        }
        None => None,
    };
    let factory = BookFactory {
        primary: options.clone(),
        replica,
        pool: config.pool(),
        writer: config.writer(own_url.clone()),
        own_url,
        forward_timeout: config.forward_timeout(),
        min_position_wait: config.limits().min_position_wait,
        commits: infrastructure::ledgers::LocalCommits::default(),
        projector: config.projector.clone(),
    };
    Books::start(
        factory,
        pool.clone(),
        config.ledger_idle_stop(),
        config.ledger_books_open_max as usize,
    )
    .await
}

/// The webhook deliverer, woken by this process's commits; or, with `--no-webhook-delivery`, a
/// handle that only manages subscriptions. A delivery's body is the API's own JSON of the event.
fn start_webhooks(
    config: &ServeConfig,
    options: db::PgConnectOptions,
    pool: db::PgPool,
    commits: &infrastructure::ledgers::LocalCommits,
) -> infrastructure::Result<Webhooks> {
    if config.no_webhook_delivery {
        info!("webhook delivery is off (--no-webhook-delivery)");
        return Ok(Webhooks::without_delivery(config.webhook_allow_private));
    }
    Webhooks::spawn(
        options,
        pool,
        Some(commits.clone()),
        config.webhooks(),
        crate::render::event_json,
    )
}

/// Serves HTTP/1.1 until `shutdown` fires, then stops accepting and lets open connections finish
/// their requests in flight. A client that does not send a request's headers within
/// `header_read_timeout` (slow or idle) is disconnected; bodies have their own timeout where they
/// are read (`extract`).
async fn serve(
    listener: TcpListener,
    app: Router,
    header_read_timeout: Duration,
    shutdown: oneshot::Receiver<()>,
) -> std::io::Result<()> {
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        // The peer's address, for the limit on failed authentications per address.
        let service = app
            .clone()
            .map_request(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            })
            .map_request(crate::books::route_ledger::<Incoming>);
        let connection =
            http1.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection closed");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// A failed accept: the peer's own trouble is ignored; anything else (such as running out of file
/// descriptors) is logged and waited out for a moment instead of spinning.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Makes sure someone can call the ledger, and that no one can without a key unless the operator
/// said so: stores the bootstrap admin key when there is no active key yet, then refuses to serve
/// without an active key unless `--insecure-no-auth`.
async fn prepare_keys(pool: &db::PgPool, config: &ServeConfig) -> infrastructure::Result<()> {
    use infrastructure::api_keys::{self, Scope};
    if let Some(secret) = config.bootstrap_admin_key.as_deref() {
        if api_keys::find(pool, secret).await?.is_some() {
            info!("the bootstrap admin key is already stored");
        } else if api_keys::active_count(pool).await? == 0 {
            let key =
                api_keys::insert(pool, secret, "bootstrap admin", &[Scope::Admin], None).await?;
            info!(key_id = %key.id, prefix = %key.prefix, "stored the bootstrap admin key (LEDGER_BOOTSTRAP_ADMIN_KEY)");
        } else {
            tracing::warn!(
                "LEDGER_BOOTSTRAP_ADMIN_KEY ignored: the ledger already has active API keys"
            );
        }
    }
    if config.insecure_no_auth {
        tracing::warn!(
            "AUTHENTICATION IS OFF (--insecure-no-auth): anyone who can reach {} may read and move money. For local development only.",
            config.listen
        );
        return Ok(());
    }
    if api_keys::active_count(pool).await? == 0 {
        return Err(infrastructure::Error::InvalidKey(
            "no active API key: create one with `ledger keys create --scope admin --name <name>`, \
             or set LEDGER_BOOTSTRAP_ADMIN_KEY, or pass --insecure-no-auth for local development"
                .into(),
        ));
    }
    Ok(())
}

/// The database a command works on: the one `DATABASE_URL` names, or the local cluster under the
/// data directory (started if needed), with the schema brought up to date.
pub struct Database {
    pub options: db::PgConnectOptions,
    pub pool: db::PgPool,
    /// Set when this process started the local cluster: stop it when done.
    pub local_postgres: Option<LocalPostgres>,
    /// How the pools of this database are made.
    pool_config: db::PoolConfig,
}

impl Database {
    pub async fn open(
        database_url: Option<&str>,
        data_dir: &std::path::Path,
        pool: &db::PoolConfig,
    ) -> infrastructure::Result<Self> {
        let (database_url, local_postgres) = match database_url {
            Some(url) => (url.to_owned(), None),
            None => {
                let local = LocalPostgres::start(data_dir).await?;
                info!(data_dir = %local.data_dir().display(), "no DATABASE_URL: using a local PostgreSQL; the ledger's data lives there");
                (local.url("ledger"), Some(local))
            }
        };
        let options = db::connect_options(&database_url)?;
        // The deployment's own tables, and ledger `default`'s book: `public`, named, so that a
        // schema named after the user cannot come first.
        let pool_handle = db::read_pool(options.clone().options([("search_path", "public")]), pool);
        db::migrate(&pool_handle).await?;
        Ok(Self {
            options,
            pool: pool_handle,
            local_postgres,
            pool_config: pool.clone(),
        })
    }

    /// A pool on the book of ledger `name`; `Error::UnknownLedger` when there is none.
    pub async fn book_pool(&self, name: &domain::LedgerName) -> infrastructure::Result<db::PgPool> {
        let ledger = infrastructure::ledgers::find(&self.pool, name)
            .await?
            .ok_or_else(|| infrastructure::Error::UnknownLedger(name.to_string()))?;
        Ok(db::read_pool(
            infrastructure::ledgers::book_options(&self.options, &ledger),
            &self.pool_config,
        ))
    }

    /// Closes the pool and stops the local cluster if this process started it.
    pub async fn close(self) -> infrastructure::Result<()> {
        self.pool.close().await;
        if let Some(local) = self.local_postgres {
            local.stop().await?;
        }
        Ok(())
    }
}
