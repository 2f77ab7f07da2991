//! One keep-alive HTTP/1.1 connection, the cheapest client there is: no pool, no redirects, no TLS.

use std::net::SocketAddr;
use std::sync::LazyLock;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;

pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    host: String,
    /// `Authorization: Bearer <key>` from `LEDGER_API_KEY`, when set.
    authorization: Option<HeaderValue>,
}

/// The API key every request carries: `LEDGER_API_KEY`, read once. Absent for a server started
/// with `--insecure-no-auth`.
fn authorization() -> Option<HeaderValue> {
    static AUTHORIZATION: LazyLock<Option<HeaderValue>> = LazyLock::new(|| {
        let key = std::env::var("LEDGER_API_KEY").ok()?;
        HeaderValue::from_str(&format!("Bearer {key}")).ok()
    });
    AUTHORIZATION.clone()
}

tokio::task_local! {
    /// The ledger every request of a book goes to from this task (`--ledger`); `default`'s
    /// routes outside any.
    static LEDGER: String;
}

/// The first segments after `/v1/` of the routes of a book, which `--ledger` puts under
/// `/v1/ledgers/{ledger}`.
const BOOK_ROUTES: [&str; 8] = [
    "accounts",
    "assets",
    "transactions",
    "transfers",
    "trades",
    "events",
    "audit",
    "balances",
];

/// Runs `work` with every request of a book it sends going to ledger `name`, or to `default`'s
/// routes when `None`.
pub async fn in_ledger<F: std::future::Future>(name: Option<String>, work: F) -> F::Output {
    match name {
        Some(name) => LEDGER.scope(name, work).await,
        None => work.await,
    }
}

/// The ledger this task's requests go to (`in_ledger`), for a task it spawns to carry on.
pub fn current_ledger() -> Option<String> {
    LEDGER.try_with(Clone::clone).ok()
}

/// `path`, under the ledger `in_ledger` named when it is a book's route.
fn scoped(path: &str) -> std::borrow::Cow<'_, str> {
    let (Some(ledger), Some(rest)) = (current_ledger(), path.strip_prefix("/v1/")) else {
        return path.into();
    };
    let first = rest.split(['/', '?']).next().unwrap_or_default();
    if BOOK_ROUTES.contains(&first) {
        format!("/v1/ledgers/{ledger}/{rest}").into()
    } else {
        path.into()
    }
}

pub struct Answer {
    pub status: u16,
    /// The `Ledger-Position` header, when present.
    pub position: Option<i64>,
    /// `Idempotent-Replayed: true`: the stored answer to an earlier request with the same key.
    pub replayed: bool,
    pub body: Bytes,
}

impl Answer {
    /// The problem document's `code`, for counting errors by code.
    pub fn code(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v.get("code").and_then(|c| c.as_str()).map(str::to_owned))
            .unwrap_or_else(|| format!("http_{}", self.status))
    }
}

pub type ClientResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

impl Connection {
    pub async fn open(addr: SocketAddr) -> ClientResult<Self> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(Self {
            sender,
            host: addr.to_string(),
            authorization: authorization(),
        })
    }

    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        idempotency_key: Option<&str>,
        body: Bytes,
    ) -> ClientResult<Answer> {
        let mut request = Request::builder()
            .method(method)
            .uri(scoped(path).as_ref())
            .header(HOST, &self.host);
        if !body.is_empty() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        if let Some(authorization) = &self.authorization {
            request = request.header(AUTHORIZATION, authorization);
        }
        self.sender.ready().await?;
        let response = self
            .sender
            .send_request(request.body(Full::new(body))?)
            .await?;
        let status = response.status().as_u16();
        let position = response
            .headers()
            .get("ledger-position")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let replayed = response
            .headers()
            .get("idempotent-replayed")
            .is_some_and(|v| v.as_bytes() == b"true");
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Answer {
            status,
            position,
            replayed,
            body,
        })
    }

    pub async fn get(&mut self, path: &str) -> ClientResult<Answer> {
        self.send(Method::GET, path, None, Bytes::new()).await
    }

    pub async fn post(&mut self, path: &str, key: &str, body: Bytes) -> ClientResult<Answer> {
        self.send(Method::POST, path, Some(key), body).await
    }
}
