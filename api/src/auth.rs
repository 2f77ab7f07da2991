//! Who may call the API: every `/v1` request carries `Authorization: Bearer <API key>`, and the
//! route decides the scope it needs. A missing, malformed, unknown or revoked key is 401; a key
//! without the scope is 403, decided before the handler runs, so a caller who may not read learns
//! nothing about what exists. Repeated failures from one address are answered 429 for a while.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use infrastructure::api_keys::{self, ApiKey, Scope};
use infrastructure::db::PgPool;
use uuid::Uuid;

use crate::error::ApiError;

/// How long a looked-up key is trusted before it is looked up again: a key revoked by another
/// process (`ledger keys revoke`) stops working within this. Revoked through this server's API,
/// at once.
const CACHE_TTL: Duration = Duration::from_secs(5);
/// How long a request waits for a key's lookup when the key is known but due to be looked up
/// again; then it goes on with what was known.
const REFRESH_WAIT: Duration = Duration::from_millis(250);
/// Keys kept in the cache at most.
const CACHE_ENTRIES_MAX: usize = 10_000;
/// The window failed authentications are counted in, per address; after `failures_max` of them,
/// 429 until the window ends.
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked at most; beyond, the oldest windows are forgotten.
const ADDRESSES_MAX: usize = 10_000;

/// Who is calling: a key, anyone at all on a server started with `--insecure-no-auth`, or
/// nobody: a request without credentials, which reaches only `WHOAMI_PATH` (to learn that it
/// needs a key) and may do nothing.
#[derive(Debug, Clone)]
pub enum Caller {
    Anyone,
    Key(ApiKey),
    Nobody,
}

impl Caller {
    pub fn allows(&self, scope: Scope) -> bool {
        match self {
            Self::Anyone => true,
            Self::Key(key) => key.allows(scope),
            Self::Nobody => false,
        }
    }

    /// Whether the caller may use ledger `name`: a key limited to other ledgers may not, and
    /// gets 404 there, as if the ledger did not exist.
    pub fn may_use(&self, name: &domain::LedgerName) -> bool {
        match self {
            Self::Anyone => true,
            Self::Key(key) => key.may_use(name),
            Self::Nobody => false,
        }
    }

    /// The names of the ledgers the caller is limited to; `None`: every ledger.
    pub fn ledger_names(&self) -> Option<Vec<String>> {
        match self {
            Self::Key(key) => key
                .ledgers
                .as_ref()
                .map(|l| l.iter().map(|n| n.as_str().to_owned()).collect()),
            Self::Anyone | Self::Nobody => None,
        }
    }

    /// Whether the caller may use every ledger, and so manage what is the deployment's (keys,
    /// webhooks, ledgers).
    pub fn is_unlimited(&self) -> bool {
        match self {
            Self::Anyone => true,
            Self::Key(key) => key.ledgers.is_none(),
            Self::Nobody => false,
        }
    }

    pub fn key_id(&self) -> Option<Uuid> {
        match self {
            Self::Anyone | Self::Nobody => None,
            Self::Key(key) => Some(key.id),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::Unauthorized("this request was not authenticated".into()))
    }
}

/// A looked-up key (or the fact that a secret is none).
struct Cached {
    key: Option<ApiKey>,
    fetched: Instant,
    /// A lookup to refresh it is under way.
    refreshing: bool,
}

fn store(cache: &Mutex<HashMap<[u8; 32], Cached>>, hash: [u8; 32], key: Option<ApiKey>) {
    if let Ok(mut cache) = cache.lock() {
        if cache.len() >= CACHE_ENTRIES_MAX && !cache.contains_key(&hash) {
            cache.retain(|_, entry| entry.fetched.elapsed() < CACHE_TTL);
            if cache.len() >= CACHE_ENTRIES_MAX {
                cache.clear();
            }
        }
        cache.insert(
            hash,
            Cached {
                key,
                fetched: Instant::now(),
                refreshing: false,
            },
        );
    }
}

pub struct Authenticator {
    insecure: bool,
    /// Failed authentications allowed per address per `FAILURE_WINDOW`.
    failures_max: u32,
    pool: PgPool,
    cache: Arc<Mutex<HashMap<[u8; 32], Cached>>>,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl Authenticator {
    pub fn new(pool: PgPool, insecure: bool, failures_max: u32) -> Self {
        Self {
            insecure,
            failures_max,
            pool,
            cache: Arc::new(Mutex::new(HashMap::new())),
            failures: Mutex::new(HashMap::new()),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Forgets a key (it was revoked), so that its next use is looked up again.
    pub fn forget(&self, id: Uuid) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.retain(|_, entry| entry.key.as_ref().is_none_or(|k| k.id != id));
        }
    }

    /// The key a secret is (revoked or not), or `None` when it is no key. A key looked up within
    /// `CACHE_TTL` is answered from memory. An older one is looked up again, waiting at most
    /// `REFRESH_WAIT`: when the database is slow or down (the read pool busy, an outage), the key
    /// keeps its last known standing while the lookup finishes in the background, so that
    /// requests are not held up by authentication and fail, if they must, on what they need the
    /// database for.
    async fn key(&self, secret: &str) -> Result<Option<ApiKey>, ApiError> {
        let hash = api_keys::key_hash(secret);
        let stale = match self.cache.lock() {
            Ok(mut cache) => match cache.get_mut(&hash) {
                Some(entry) if entry.fetched.elapsed() < CACHE_TTL || entry.refreshing => {
                    return Ok(entry.key.clone());
                }
                Some(entry) => {
                    entry.refreshing = true;
                    Some(entry.key.clone())
                }
                None => None,
            },
            Err(_) => None,
        };
        let Some(stale) = stale else {
            let key = api_keys::find(&self.pool, secret).await?;
            store(&self.cache, hash, key.clone());
            return Ok(key);
        };
        let (pool, cache, secret) = (
            self.pool.clone(),
            Arc::clone(&self.cache),
            secret.to_owned(),
        );
        let lookup = tokio::spawn(async move {
            let found = api_keys::find(&pool, &secret).await;
            match &found {
                Ok(key) => store(&cache, hash, key.clone()),
                // Keep the last known standing; the next use tries again.
                Err(_) => {
                    if let Ok(mut cache) = cache.lock() {
                        if let Some(entry) = cache.get_mut(&hash) {
                            entry.refreshing = false;
                        }
                    }
                }
            }
            found
        });
        match tokio::time::timeout(REFRESH_WAIT, lookup).await {
            Ok(Ok(Ok(key))) => Ok(key),
            _ => Ok(stale),
        }
    }

    /// When the address may try again, if it failed too often lately.
    fn blocked_for(&self, address: IpAddr) -> Option<Duration> {
        let failures = self.failures.lock().ok()?;
        let (count, since) = failures.get(&address)?;
        let left = FAILURE_WINDOW.checked_sub(since.elapsed())?;
        (*count >= self.failures_max).then_some(left)
    }

    fn failed(&self, address: IpAddr) {
        let Ok(mut failures) = self.failures.lock() else {
            return;
        };
        if failures.len() >= ADDRESSES_MAX {
            failures.retain(|_, (_, since)| since.elapsed() < FAILURE_WINDOW);
            if failures.len() >= ADDRESSES_MAX {
                failures.clear();
            }
        }
        let entry = failures.entry(address).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= FAILURE_WINDOW {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }

    /// The caller a request's `Authorization` header names, or why it names none.
    async fn caller(
        &self,
        authorization: Option<&str>,
        address: IpAddr,
    ) -> Result<Caller, ApiError> {
        if self.insecure {
            return Ok(Caller::Anyone);
        }
        if let Some(wait) = self.blocked_for(address) {
            return Err(ApiError::TooManyAuthFailures {
                retry_after_s: wait.as_secs().max(1),
            });
        }
        // A request with no credentials at all guesses nothing, so it is refused without
        // counting as a failure: the console asks `/v1/me` without a key at every load to learn
        // whether the server needs one, and that must not lock its user out.
        let Some(authorization) = authorization else {
            return Err(ApiError::Unauthorized(
                "send Authorization: Bearer <API key>".into(),
            ));
        };
        let secret = authorization
            .strip_prefix("Bearer ")
            .map(str::trim)
            .filter(|s| api_keys::well_formed(s));
        let Some(secret) = secret else {
            self.failed(address);
            return Err(ApiError::Unauthorized(
                "send Authorization: Bearer <API key>".into(),
            ));
        };
        match self.key(secret).await? {
            Some(key) if key.revoked_at.is_none() => Ok(Caller::Key(key)),
            _ => {
                self.failed(address);
                Err(ApiError::Unauthorized(
                    "the API key is not valid (unknown or revoked)".into(),
                ))
            }
        }
    }
}

/// The path that tells a caller who it is: any valid key may ask, whatever its scopes, so that a
/// client (the console) can show only what the key allows; a request without credentials learns
/// whether it needs a key (a browser logs every 401 as an error, so asking must not be one).
pub const WHOAMI_PATH: &str = "/v1/me";

/// Where ledgers are created.
pub const LEDGERS_PATH: &str = "/v1/ledgers";

/// What belongs to the whole deployment rather than to one ledger: keys, webhook subscriptions
/// and creating ledgers. A key limited to ledgers may not manage them, or it could make itself a
/// key for every ledger.
fn is_deployment_admin(method: &Method, path: &str) -> bool {
    path.starts_with("/v1/admin/") || (method == Method::POST && path == LEDGERS_PATH)
}

/// The scope a route needs; `None`: any authenticated caller.
fn required_scope(method: &Method, path: &str) -> Option<Scope> {
    if path == WHOAMI_PATH {
        return None;
    }
    Some(
        if is_deployment_admin(method, path)
            || (method == Method::PATCH && path.ends_with("/limits"))
            || (method == Method::POST && path.starts_with("/v1/periods/"))
        {
            Scope::Admin
        } else if path.starts_with("/v1/audit/") {
            Scope::Audit
        } else if method == Method::GET || method == Method::HEAD {
            Scope::Read
        } else {
            Scope::Write
        },
    )
}

/// The middleware: authenticates every `/v1` request and checks its scope. Operations routes
/// (`/healthz`, `/readyz`, `/metrics`, `/openapi.json`) are open.
pub async fn authenticate(
    State(auth): State<Arc<Authenticator>>,
    mut request: Request,
    next: Next,
) -> Response {
    if !request.uri().path().starts_with("/v1/") {
        return next.run(request).await;
    }
    let address = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    // Taken out of the request first: the request's body cannot be shared across the lookup.
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let caller = match auth.caller(authorization.as_deref(), address).await {
        Ok(caller) => caller,
        Err(ApiError::Unauthorized(_))
            if authorization.is_none() && request.uri().path() == WHOAMI_PATH =>
        {
            Caller::Nobody
        }
        Err(e) => return e.into_response(),
    };
    let scope = required_scope(request.method(), request.uri().path());
    if let Some(scope) = scope.filter(|&scope| !caller.allows(scope)) {
        return ApiError::Forbidden(format!(
            "this needs an API key with the {} scope",
            scope.as_str()
        ))
        .into_response();
    }
    if is_deployment_admin(request.method(), request.uri().path()) && !caller.is_unlimited() {
        return ApiError::Forbidden(
            "a key limited to ledgers cannot manage keys, webhooks or ledgers".into(),
        )
        .into_response();
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}
