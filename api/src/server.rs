//! Starting and stopping the whole service: database (provisioned or given), migrations, the
//! writer, and the HTTP server.

use std::net::SocketAddr;

use infrastructure::db;
use infrastructure::local_postgres::LocalPostgres;
use infrastructure::{ReadStore, Writer};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::info;

use crate::config::ServeConfig;
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
    writer: JoinHandle<()>,
    reads: ReadStore,
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
        let (options, pool, local_postgres) =
            (database.options, database.pool, database.local_postgres);
        let (writer, writer_task) = Writer::spawn(options, config.writer());
        let signer = infrastructure::audit::Signer::load_or_create(&pool).await?;
        let reads = ReadStore::new(pool);
        let state = AppState::new(writer, reads.clone(), signer, config.limits());
        let app = routes::app(state.clone());
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let (shutdown, shutdown_signal) = oneshot::channel::<()>();
        let http = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = shutdown_signal.await;
                })
                .await
        });
        info!(%addr, "ledger listening");
        Ok(Self {
            addr,
            state,
            shutdown,
            http,
            writer: writer_task,
            reads,
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
        drop(self.state);
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
        // The router held the last writer handles; with them gone the writer finishes and returns.
        if let Err(e) = self.writer.await {
            tracing::error!(error = %e, "writer task failed");
        }
        self.reads.pool().close().await;
        if let Some(local) = self.local_postgres {
            local.stop().await?;
        }
        info!("ledger stopped");
        Ok(())
    }
}

/// The database a command works on: the one `DATABASE_URL` names, or the local cluster under the
/// data directory (started if needed), with the schema brought up to date.
pub struct Database {
    pub options: db::PgConnectOptions,
    pub pool: db::PgPool,
    /// Set when this process started the local cluster: stop it when done.
    pub local_postgres: Option<LocalPostgres>,
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
        let pool_handle = db::read_pool(options.clone(), pool);
        db::migrate(&pool_handle).await?;
        Ok(Self {
            options,
            pool: pool_handle,
            local_postgres,
        })
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
