//! What every handler shares: the writer, the read store, the authenticator, the limits and the
//! HTTP metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use infrastructure::audit::Signer;
use infrastructure::{ReadStore, Writer};

use crate::auth::Authenticator;
use crate::cursor::Cursors;
use crate::error::ApiError;
use crate::http_metrics::HttpMetrics;

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
    writer: Writer,
    reads: ReadStore,
    signer: Signer,
    auth: Authenticator,
    limits: Limits,
    http_metrics: HttpMetrics,
}

impl AppState {
    pub fn new(
        writer: Writer,
        reads: ReadStore,
        signer: Signer,
        cursors: Cursors,
        auth: Authenticator,
        limits: Limits,
    ) -> Self {
        Self(Arc::new(Inner {
            closing: tokio::sync::watch::channel(false).0,
            streams: Arc::new(tokio::sync::Semaphore::new(limits.stream_clients_max)),
            requests: Arc::new(tokio::sync::Semaphore::new(limits.requests_in_flight_max)),
            cursors,
            writer,
            reads,
            signer,
            auth,
            limits,
            http_metrics: HttpMetrics::default(),
        }))
    }

    pub fn writer(&self) -> &Writer {
        &self.0.writer
    }

    pub fn reads(&self) -> &ReadStore {
        &self.0.reads
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

    pub fn auth(&self) -> &Authenticator {
        &self.0.auth
    }

    pub fn limits(&self) -> &Limits {
        &self.0.limits
    }

    pub fn http_metrics(&self) -> &HttpMetrics {
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

    /// Waits until the read models reflect at least `min_position`, for a bounded time. Reads
    /// after this see that position or a later one, because the position only grows.
    pub async fn reach_position(&self, min_position: Option<i64>) -> Result<(), ApiError> {
        let Some(wanted) = min_position.filter(|p| *p > 0) else {
            return Ok(());
        };
        let wait = self.0.limits.min_position_wait;
        let deadline = Instant::now() + wait;
        let mut committed = self.0.writer.watch_committed();
        loop {
            if *committed.borrow_and_update() >= wanted {
                return Ok(());
            }
            // Another process may be the writer: the database is the authority.
            let current = self.0.reads.head().await?;
            if current >= wanted {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(ApiError::PositionNotReached {
                    wanted,
                    current,
                    waited_ms: wait.as_millis() as u64,
                });
            }
            let poll = Duration::from_millis(25).min(deadline - now);
            if let Ok(Err(_)) = tokio::time::timeout(poll, committed.changed()).await {
                // The writer task is gone: nothing will wake us, so poll.
                tokio::time::sleep(poll).await;
            }
        }
    }
}
