//! Every node takes every request: a node that is not the writer forwards writes to the one that
//! is, found through the advertisement the writer keeps on the primary (`writer_lock`), and
//! relays its answer unchanged (status, body, `Ledger-Position`, `Idempotent-Replayed`). The
//! request is forwarded as it came, with its `Authorization` and `Idempotency-Key`, so the writer
//! decides it exactly as if the client had called it: forwarding never changes an idempotency
//! outcome, and a retry through any node gets the same answer.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Uri};
use axum::response::Response;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use infrastructure::db::PgPool;
use infrastructure::writer_lock;

use crate::error::ApiError;

/// Set on a forwarded request: the node that received it never forwards it again, so two nodes
/// that each believe the other is the writer cannot pass a request back and forth.
pub const FORWARDED_BY: HeaderName = HeaderName::from_static("ledger-forwarded-by");
/// How long a follower trusts the writer's address it looked up; a failed connection forgets it
/// at once.
const WRITER_URL_TTL: Duration = Duration::from_secs(1);
/// Idle connections kept to the writer; below the writer's idle keep-alive timeout, so that a
/// pooled connection is not closed under a request being sent on it.
const IDLE_CONNECTIONS_MAX: usize = 64;
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);
/// Headers of one connection, not of the request (RFC 9110 section 7.6.1), and `host`, which names
/// this node: never passed on.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

pub struct Forwarder {
    client: Client<HttpConnector, Body>,
    /// The primary, where the writer's lock and advertisement are.
    primary: PgPool,
    /// This node's own advertised URL: a lookup that names it finds no other writer.
    own_url: String,
    /// How long the writer may take to answer a forwarded request; then its outcome is unknown.
    timeout: Duration,
    writer_url: Mutex<Option<(String, Instant)>>,
}

impl Forwarder {
    pub fn new(primary: PgPool, own_url: String, timeout: Duration) -> Self {
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(IDLE_CONNECTIONS_MAX)
            .pool_idle_timeout(IDLE_CONNECTION_TIMEOUT)
            .build_http();
        Self {
            client,
            primary,
            own_url,
            timeout,
            writer_url: Mutex::new(None),
        }
    }

    pub fn own_url(&self) -> &str {
        &self.own_url
    }

    /// The writer's URL when it is another node; `None` while no node is the writer.
    pub async fn writer_url(&self) -> Result<Option<String>, ApiError> {
        if let Some((url, at)) = self.cached() {
            if at.elapsed() < WRITER_URL_TTL {
                return Ok(Some(url));
            }
        }
        let found = writer_lock::current_writer_url(&self.primary)
            .await?
            .filter(|url| *url != self.own_url);
        self.remember(found.clone().map(|url| (url, Instant::now())));
        Ok(found)
    }

    fn cached(&self) -> Option<(String, Instant)> {
        self.writer_url
            .lock()
            .ok()
            .and_then(|cached| cached.clone())
    }

    fn remember(&self, entry: Option<(String, Instant)>) {
        if let Ok(mut cached) = self.writer_url.lock() {
            *cached = entry;
        }
    }

    /// Sends the request to the writer and relays its answer. A writer that cannot be reached
    /// got nothing: `writer_unavailable`. A writer that was reached but did not answer may have
    /// applied the write: `commit_outcome_unknown`, and a retry with the same key tells.
    /// `prefix` is the ledger's part of the path the client used (`/v1/ledgers/{ledger}`), taken
    /// out before routing and put back here.
    pub async fn forward(&self, request: Request, prefix: &str) -> Result<Response, ApiError> {
        let writer = self.writer_url().await?.ok_or(ApiError::Infrastructure(
            infrastructure::Error::WriterUnavailable("no ledger node is the writer"),
        ))?;
        let (mut parts, body) = request.into_parts();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let path = match prefix {
            "" => path.to_owned(),
            prefix => format!("{prefix}{}", path.strip_prefix("/v1").unwrap_or(path)),
        };
        parts.uri = format!("{}{path}", writer.trim_end_matches('/'))
            .parse::<Uri>()
            .map_err(|_| {
                ApiError::Infrastructure(infrastructure::Error::Corrupt(format!(
                    "the advertised writer URL {writer:?} is not a URL"
                )))
            })?;
        strip_hop_by_hop(&mut parts.headers);
        parts.headers.remove(header::HOST);
        if let Ok(own) = HeaderValue::from_str(&self.own_url) {
            parts.headers.insert(FORWARDED_BY, own);
        }
        let sent = tokio::time::timeout(
            self.timeout,
            self.client.request(Request::from_parts(parts, body)),
        )
        .await;
        let answer = match sent {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) if e.is_connect() => {
                tracing::warn!(writer, error = %e, "the writer could not be reached");
                self.remember(None);
                return Err(infrastructure::Error::WriterUnavailable(
                    "the writer could not be reached",
                )
                .into());
            }
            Ok(Err(e)) => {
                tracing::warn!(writer, error = %e, "the writer did not answer a forwarded write");
                self.remember(None);
                return Err(infrastructure::Error::CommitOutcomeUnknown.into());
            }
            Err(_) => {
                tracing::warn!(
                    writer,
                    timeout_ms = self.timeout.as_millis() as u64,
                    "the writer did not answer a forwarded write in time"
                );
                return Err(infrastructure::Error::CommitOutcomeUnknown.into());
            }
        };
        let (mut parts, body) = answer.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        Ok(Response::from_parts(parts, Body::new(body)))
    }
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}
