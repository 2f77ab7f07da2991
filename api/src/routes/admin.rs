//! Administration: API keys. Every route here needs the `admin` scope (the middleware checks it).
//! Keys are not ledger events: they live in their own table, with their creation and revocation
//! times kept for the record.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use domain::LedgerName;
use infrastructure::api_keys::{self, ApiKey, Scope};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::error::{ApiError, Problem};
use crate::extract::{JsonBody, PathParam};
use crate::state::AppState;

/// Keys listed at most: keys are made by people, and a list longer than this is a mistake to stop.
const KEYS_LISTED_MAX: usize = 10_000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_keys, create_key))
        .routes(routes!(revoke_key))
}

/// What a key may do: `read` (queries, the event stream), `write` (commands), `audit` (verify,
/// checkpoints, export), `admin` (keys, limits, forced reversals; and everything else).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ScopeName {
    Read,
    Write,
    Audit,
    Admin,
}

impl From<ScopeName> for Scope {
    fn from(name: ScopeName) -> Self {
        match name {
            ScopeName::Read => Scope::Read,
            ScopeName::Write => Scope::Write,
            ScopeName::Audit => Scope::Audit,
            ScopeName::Admin => Scope::Admin,
        }
    }
}

impl From<Scope> for ScopeName {
    fn from(scope: Scope) -> Self {
        match scope {
            Scope::Read => ScopeName::Read,
            Scope::Write => ScopeName::Write,
            Scope::Audit => ScopeName::Audit,
            Scope::Admin => ScopeName::Admin,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    /// Who or what the key is for: 1 to 128 bytes, no control characters.
    pub name: String,
    /// At least one.
    pub scopes: Vec<ScopeName>,
    /// The ledgers the key may use (each must exist); absent: every ledger. On any other ledger
    /// the key gets 404, as if it did not exist.
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    pub ledgers: Option<Vec<LedgerName>>,
}

/// A key as stored: never its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    pub id: Uuid,
    /// The key's first characters, to tell keys apart.
    pub prefix: String,
    pub name: String,
    pub scopes: Vec<ScopeName>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// The ledgers the key may use; absent: every ledger.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>)]
    pub ledgers: Option<Vec<LedgerName>>,
}

impl From<ApiKey> for KeyView {
    fn from(key: ApiKey) -> Self {
        Self {
            id: key.id,
            prefix: key.prefix,
            name: key.name,
            scopes: key.scopes.into_iter().map(ScopeName::from).collect(),
            created_at: key.created_at,
            revoked_at: key.revoked_at,
            ledgers: key.ledgers,
        }
    }
}

/// A key just created, with its secret: shown this once, stored only as a hash.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub key: KeyView,
    /// `Authorization: Bearer <secret>`. Not shown again.
    pub secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    /// Every key, oldest first, revoked ones included.
    pub items: Vec<KeyView>,
}

/// Every API key (prefix, name, scopes, times), oldest first, revoked ones included.
#[utoipa::path(
    get, path = "/v1/admin/keys", tag = "admin",
    responses((status = 200, body = KeyList), (status = "4XX", body = Problem), (status = 503, body = Problem))
)]
async fn list_keys(State(state): State<AppState>) -> Result<Response, ApiError> {
    let keys = api_keys::list(state.auth().pool()).await?;
    let items = keys
        .into_iter()
        .take(KEYS_LISTED_MAX)
        .map(KeyView::from)
        .collect();
    Ok(axum::Json(KeyList { items }).into_response())
}

/// Create an API key. Its secret is in this answer only; the ledger keeps a SHA-256 of it. Not
/// idempotent (the secret is not stored to be replayed): a retry creates another key, and the
/// unused one should be revoked.
#[utoipa::path(
    post, path = "/v1/admin/keys", tag = "admin",
    request_body = CreateKeyRequest,
    responses(
        (status = 201, body = CreatedKey),
        (status = 422, body = Problem, description = "validation_error: name or scopes"),
        (status = "4XX", body = Problem), (status = 503, body = Problem),
    )
)]
async fn create_key(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<CreateKeyRequest>,
) -> Result<Response, ApiError> {
    if request.name.is_empty()
        || request.name.len() > api_keys::NAME_BYTES_MAX
        || request.name.chars().any(char::is_control)
    {
        return Err(ApiError::Validation(format!(
            "name must be 1 to {} bytes without control characters",
            api_keys::NAME_BYTES_MAX
        )));
    }
    if request.scopes.is_empty() {
        return Err(ApiError::Validation("scopes must name at least one".into()));
    }
    let scopes: Vec<Scope> = request.scopes.into_iter().map(Scope::from).collect();
    let (key, secret) = api_keys::create(
        state.auth().pool(),
        &request.name,
        &scopes,
        request.ledgers.as_deref(),
    )
    .await?;
    tracing::info!(key_id = %key.id, prefix = %key.prefix, "API key created");
    let body = CreatedKey {
        key: key.into(),
        secret,
    };
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

/// Revoke an API key, by id or prefix: it stops working at once on this server (within 5 s on
/// others sharing the database). Revoking a revoked key changes nothing.
#[utoipa::path(
    post, path = "/v1/admin/keys/{id}/revoke", tag = "admin",
    params(("id" = String, Path, description = "The key's id or prefix")),
    responses(
        (status = 200, body = KeyView),
        (status = 404, body = Problem, description = "key_not_found"),
        (status = "4XX", body = Problem), (status = 503, body = Problem),
    )
)]
async fn revoke_key(
    State(state): State<AppState>,
    PathParam(id): PathParam<String>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::NotFound {
        code: "key_not_found",
        what: format!("API key {id:?}"),
    };
    if id.len() > 64 {
        return Err(not_found());
    }
    let key = api_keys::revoke(state.auth().pool(), &id)
        .await?
        .ok_or_else(not_found)?;
    state.auth().forget(key.id);
    tracing::info!(key_id = %key.id, prefix = %key.prefix, "API key revoked");
    Ok(axum::Json(KeyView::from(key)).into_response())
}
