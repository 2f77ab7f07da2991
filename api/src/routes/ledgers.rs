//! Ledgers as resources: create one (admin), list those the key may use, and read one's head.
//! Everything a ledger holds is under `/v1/ledgers/{ledger}/…` (see `books`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use domain::{LedgerName, Metadata};
use infrastructure::ledgers::{self, CreateError, Ledger};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::auth::Caller;
use crate::books::Book;
use crate::error::{ApiError, Problem};
use crate::extract::{IdempotencyKey, JsonBody, Params, PathParam};
use crate::routes::write::IDEMPOTENT_REPLAYED;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_ledger, list_ledgers))
        .routes(routes!(get_ledger))
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateLedgerRequest {
    /// `[a-z0-9][a-z0-9_-]{0,62}`.
    #[schema(value_type = String, pattern = "^[a-z0-9][a-z0-9_-]{0,62}$")]
    pub name: LedgerName,
    /// Any JSON object, kept as sent (canonical JSON, at most 4096 bytes).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Metadata>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerView {
    pub name: String,
    #[schema(value_type = Object)]
    pub metadata: Box<serde_json::value::RawValue>,
    pub created_at: DateTime<Utc>,
}

impl TryFrom<Ledger> for LedgerView {
    type Error = ApiError;

    fn try_from(ledger: Ledger) -> Result<Self, ApiError> {
        let metadata = serde_json::value::RawValue::from_string(ledger.metadata).map_err(|e| {
            infrastructure::Error::Corrupt(format!("ledger {}: metadata: {e}", ledger.name))
        })?;
        Ok(Self {
            name: ledger.name.to_string(),
            metadata,
            created_at: ledger.created_at,
        })
    }
}

/// One ledger with its book's head.
#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerDetail {
    #[serde(flatten)]
    pub ledger: LedgerView,
    /// The position of its last event; 0 while its log is empty.
    pub head_position: i64,
    /// The hash of its last event (hex); absent while its log is empty.
    pub head_hash: Option<String>,
    pub accounts: i64,
    /// This node's writer of the ledger: `leader` (it writes the ledger here), `standby`
    /// (another node does; writes are forwarded there), `starting`, `recovering` or
    /// `awaiting_standby`. Each ledger's writer may be on a different node.
    pub writer: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerList {
    pub items: Vec<LedgerView>,
    /// Pass as `after` for the next page; absent on the last.
    pub next_after: Option<String>,
}

/// Create a ledger: a book of its own, with its own positions from 1, chain, checkpoints,
/// idempotency keys and read models, under `/v1/ledgers/{name}/…`.
#[utoipa::path(
    post, path = "/v1/ledgers", tag = "ledgers",
    params(("Idempotency-Key" = String, Header, description = "1 to 255 printable ASCII characters")),
    request_body = CreateLedgerRequest,
    responses(
        (status = 201, body = LedgerView),
        (status = 409, body = Problem, description = "ledger_exists"),
        (status = 422, body = Problem, description = "validation_error, idempotency_key_reused"),
        (status = "4XX", body = Problem), (status = 503, body = Problem),
    )
)]
async fn create_ledger(
    axum::extract::State(state): axum::extract::State<AppState>,
    IdempotencyKey(key): IdempotencyKey,
    JsonBody(request): JsonBody<CreateLedgerRequest>,
) -> Result<Response, ApiError> {
    let metadata = request
        .metadata
        .as_ref()
        .map_or("{}", |m| m.as_json())
        .to_owned();
    let mut hasher = Sha256::new();
    hasher.update(b"/v1/ledgers\0");
    hasher.update(request.name.as_str().as_bytes());
    hasher.update([0]);
    hasher.update(metadata.as_bytes());
    let fingerprint = hasher.finalize();
    let created = ledgers::create(
        state.books().registry(),
        &request.name,
        &metadata,
        &key,
        &fingerprint,
    )
    .await
    .map_err(|e| match e {
        CreateError::Exists(name) => ApiError::LedgerExists(name.to_string()),
        CreateError::KeyReused => infrastructure::Error::IdempotencyKeyReused.into(),
        CreateError::Store(e) => e.into(),
    })?;
    let mut response = (
        StatusCode::CREATED,
        axum::Json(LedgerView::try_from(created.ledger)?),
    )
        .into_response();
    if created.replayed {
        response.headers_mut().insert(
            IDEMPOTENT_REPLAYED,
            axum::http::HeaderValue::from_static("true"),
        );
    }
    Ok(response)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Ledgers after this name (the previous page's `next_after`).
    pub after: Option<String>,
    /// 1 to the page size maximum (default 100).
    pub limit: Option<i64>,
}

/// The ledgers the key may use, by name.
#[utoipa::path(
    get, path = "/v1/ledgers", tag = "ledgers", params(ListParams),
    responses((status = 200, body = LedgerList), (status = "4XX", body = Problem), (status = 503, body = Problem))
)]
async fn list_ledgers(
    axum::extract::State(state): axum::extract::State<AppState>,
    caller: Caller,
    Params(params): Params<ListParams>,
) -> Result<Response, ApiError> {
    let limit = state.page_size(params.limit)?;
    let only = caller.ledger_names();
    let page = ledgers::list(
        state.books().registry(),
        params.after.as_deref(),
        limit + 1,
        only.as_deref(),
    )
    .await?;
    let (items, next_after) = super::keyed_page(page, limit, |l: &LedgerView| l.name.clone())?;
    Ok(axum::Json(LedgerList { items, next_after }).into_response())
}

/// One ledger: its metadata, head and number of accounts. 404 `ledger_not_found` for a ledger
/// that does not exist or that the key may not use.
#[utoipa::path(
    get, path = "/v1/ledgers/{name}", tag = "ledgers",
    params(("name" = String, Path)),
    responses((status = 200, body = LedgerDetail), (status = 404, body = Problem, description = "ledger_not_found"), (status = "4XX", body = Problem), (status = 503, body = Problem))
)]
async fn get_ledger(
    axum::extract::State(state): axum::extract::State<AppState>,
    caller: Caller,
    PathParam(name): PathParam<String>,
) -> Result<Response, ApiError> {
    let name = LedgerName::try_from(name.clone()).map_err(|_| ApiError::ledger_not_found(&name))?;
    if !caller.may_use(&name) {
        return Err(ApiError::ledger_not_found(name.as_str()));
    }
    let book: Book = state.books().get(&name).await?;
    let summary = ledgers::summary(book.reads().pool()).await?;
    let detail = LedgerDetail {
        ledger: LedgerView::try_from(book.ledger().clone())?,
        head_position: summary.head_position,
        head_hash: summary.head_hash,
        accounts: summary.accounts,
        writer: book.writer().status().as_str().to_owned(),
    };
    Ok(crate::routes::write::at_position(
        summary.head_position,
        detail,
    ))
}
