//! What every handler shares: the ledgers' books, the authenticator, the limits and the HTTP
//! metrics.

use std::sync::Arc;
use std::time::Duration;

use domain::clock::Clock;
use infrastructure::audit::Signer;
use infrastructure::webhooks::Webhooks;

use crate::auth::Authenticator;
use crate::books::Books;
use crate::cursor::Cursors;
use crate::error::ApiError;
use crate::http_metrics::HttpMetrics;

/// Accounts a roll-up at a past position sums at most, unless configured otherwise: about a
/// second of index lookups on a loaded machine.
pub const ROLLUP_AT_ACCOUNTS_MAX_DEFAULT: i64 = 10_000;

/// Limits on what one request may ask for.
#[derive(Debug, Clone)]
pub struct Limits {
    pub body_bytes_max: usize,
    /// The body of `POST /v1/transactions/batch`, which carries up to `batch_commands_max`.
    pub batch_body_bytes_max: usize,
    pub batch_commands_max: usize,
    pub page_size_default: i64,
    pub page_size_max: i64,
    /// How long a read waits for `min_position` before answering 409.
    pub min_position_wait: Duration,
    /// Events buffered per event-stream client; beyond this the producer waits for the client.
    pub stream_buffer_events: usize,
    /// How long a stream waits for a client that does not read before disconnecting it.
    pub stream_stall_max: Duration,
    /// Event-stream clients at once; more are refused with 503.
    pub stream_clients_max: usize,
    /// How long a request body may take to arrive; then 408 and the connection is closed.
    pub body_read_timeout: Duration,
    /// `/v1` requests being handled at once; more are refused at once with 503 `overloaded`.
    pub requests_in_flight_max: usize,
    /// Accounts a roll-up at a past position may sum (it reads each one's history); more: 422.
    pub rollup_at_accounts_max: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            body_bytes_max: 1024 * 1024,
            batch_body_bytes_max: 16 * 1024 * 1024,
            batch_commands_max: 8_000,
            page_size_default: 100,
            page_size_max: 1000,
            min_position_wait: Duration::from_secs(2),
            stream_buffer_events: 1024,
            stream_stall_max: Duration::from_secs(10),
            stream_clients_max: 256,
            body_read_timeout: Duration::from_secs(30),
            requests_in_flight_max: 1024,
            rollup_at_accounts_max: ROLLUP_AT_ACCOUNTS_MAX_DEFAULT,
        }
    }
}

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    /// Becomes true when the server shuts down, so that endless responses (event streams) end.
    closing: tokio::sync::watch::Sender<bool>,
    /// One permit per open event stream.
    streams: Arc<tokio::sync::Semaphore>,
    /// One permit per `/v1` request being handled.
    requests: Arc<tokio::sync::Semaphore>,
    cursors: Cursors,
    /// Every ledger's writer, projectors and read models.
    books: Books,
    webhooks: Webhooks,
    signer: Signer,
    auth: Arc<Authenticator>,
    limits: Limits,
    /// What "now" is for requests: when a hold given as a timeout expires.
    clock: Arc<dyn Clock>,
    http_metrics: Arc<HttpMetrics>,
}

impl AppState {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        books: Books,
        webhooks: Webhooks,
        signer: Signer,
        cursors: Cursors,
        auth: Authenticator,
        limits: Limits,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self(Arc::new(Inner {
            closing: tokio::sync::watch::channel(false).0,
            streams: Arc::new(tokio::sync::Semaphore::new(limits.stream_clients_max)),
            requests: Arc::new(tokio::sync::Semaphore::new(limits.requests_in_flight_max)),
            cursors,
            books,
            webhooks,
            signer,
            auth: Arc::new(auth),
            limits,
            clock,
            http_metrics: Arc::new(HttpMetrics::default()),
        }))
    }

    pub fn books(&self) -> &Books {
        &self.0.books
    }

    /// This process's webhook deliverer (or the handle of a process that delivers none).
    pub fn webhooks(&self) -> &Webhooks {
        &self.0.webhooks
    }

    /// Tells endless responses to end: the server is shutting down.
    pub fn close(&self) {
        self.0.closing.send_replace(true);
    }

    pub fn watch_closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.0.closing.subscribe()
    }

    pub fn streams(&self) -> &Arc<tokio::sync::Semaphore> {
        &self.0.streams
    }

    pub fn requests(&self) -> &Arc<tokio::sync::Semaphore> {
        &self.0.requests
    }

    pub fn cursors(&self) -> &Cursors {
        &self.0.cursors
    }

    pub fn signer(&self) -> &Signer {
        &self.0.signer
    }

    pub fn auth(&self) -> &Arc<Authenticator> {
        &self.0.auth
    }

    pub fn limits(&self) -> &Limits {
        &self.0.limits
    }

    pub fn clock(&self) -> &dyn Clock {
        self.0.clock.as_ref()
    }

    pub fn http_metrics(&self) -> &Arc<HttpMetrics> {
        &self.0.http_metrics
    }

    /// The page size a request asked for, within bounds.
    pub fn page_size(&self, requested: Option<i64>) -> Result<i64, ApiError> {
        let max = self.0.limits.page_size_max;
        match requested {
            None => Ok(self.0.limits.page_size_default),
            Some(n) if (1..=max).contains(&n) => Ok(n),
            Some(n) => Err(ApiError::InvalidRequest(format!(
                "limit {n} is out of range: use 1 to {max}"
            ))),
        }
    }
}

/// What the `Book` extractor needs of the state: the ledgers' books, and nothing else.
impl axum::extract::FromRef<AppState> for Books {
    fn from_ref(state: &AppState) -> Books {
        state.0.books.clone()
    }
}
