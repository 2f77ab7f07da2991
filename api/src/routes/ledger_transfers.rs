//! Transfers between ledgers: all or nothing, through a two-phase hold in each ledger (see
//! `crate::ledger_transfers`).

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use domain::{AccountCode, AssetCode, LedgerName, Metadata, PositiveDecimal};
use infrastructure::ledger_transfers::{
    self as store, Created, LedgerTransfer, Request, State as TransferState,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::auth::Caller;
use crate::dry_run::{DryRun, DryRunView};
use crate::error::{ApiError, Problem};
use crate::extract::{IdempotencyKey, JsonBody, Params, PathParam, RequestOrigin};
use crate::ledger_transfers::DryRunOutcome;
use crate::routes::write::IDEMPOTENT_REPLAYED;
use crate::state::AppState;

/// How long a request waits for its transfer to finish before answering `pending` (202).
const FINISH_WAIT: Duration = Duration::from_secs(5);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_transfer, list_transfers))
        .routes(routes!(get_transfer))
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LedgerTransferRequest {
    #[schema(value_type = String, example = "fund-a")]
    pub source_ledger: LedgerName,
    /// An account code in the source ledger.
    #[schema(value_type = String, example = "alice:cash")]
    pub source: AccountCode,
    #[schema(value_type = String, example = "fund-b")]
    pub destination_ledger: LedgerName,
    /// An account code in the destination ledger.
    #[schema(value_type = String, example = "bob:cash")]
    pub destination: AccountCode,
    /// Defined with the same scale in both ledgers.
    #[schema(value_type = String, example = "USD")]
    pub asset: AssetCode,
    #[schema(value_type = String, example = "25.00")]
    pub amount: PositiveDecimal,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: Metadata,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerTransferView {
    pub id: Uuid,
    /// `reserving`, `posting` or `voiding` while it runs (`pending` to a client); `posted` or
    /// `voided` when done.
    pub state: String,
    pub source_ledger: String,
    pub source: String,
    pub destination_ledger: String,
    pub destination: String,
    pub asset: String,
    pub amount: String,
    #[schema(value_type = Object)]
    pub metadata: Box<serde_json::value::RawValue>,
    /// The hold in the source ledger (`/v1/ledgers/{source_ledger}/transactions/{id}`), from the
    /// source to `ledger:<destination_ledger>`.
    pub source_transaction: Uuid,
    /// The hold in the destination ledger, from `ledger:<source_ledger>` to the destination.
    pub destination_transaction: Uuid,
    /// Why it was voided: the refusal, as a problem document.
    #[schema(value_type = Option<Object>)]
    pub refusal: Option<Box<serde_json::value::RawValue>>,
    /// The ledger that refused.
    pub refused_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl TryFrom<LedgerTransfer> for LedgerTransferView {
    type Error = ApiError;

    fn try_from(t: LedgerTransfer) -> Result<Self, ApiError> {
        let raw = |text: String| {
            serde_json::value::RawValue::from_string(text).map_err(|e| {
                ApiError::from(infrastructure::Error::Corrupt(format!(
                    "ledger transfer {}: {e}",
                    t.id
                )))
            })
        };
        Ok(Self {
            id: t.id,
            state: t.state.as_str().to_owned(),
            metadata: raw(t.request.metadata.clone())?,
            refusal: t.refusal.clone().map(raw).transpose()?,
            source_ledger: t.request.source_ledger,
            source: t.request.source,
            destination_ledger: t.request.destination_ledger,
            destination: t.request.destination,
            asset: t.request.asset,
            amount: t.request.amount,
            source_transaction: t.source_hold,
            destination_transaction: t.destination_hold,
            refused_by: t.refused_by,
            created_at: t.created_at,
            decided_at: t.decided_at,
            finished_at: t.finished_at,
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerTransferList {
    pub items: Vec<LedgerTransferView>,
    /// Pass as `after` for the next page; absent on the last.
    pub next_after: Option<Uuid>,
}

/// Whether the caller may use `name`: 404 `ledger_not_found` as if it did not exist otherwise.
fn may_use(caller: &Caller, name: &LedgerName) -> Result<(), ApiError> {
    if caller.may_use(name) {
        Ok(())
    } else {
        Err(ApiError::ledger_not_found(name.as_str()))
    }
}

/// Move money from an account of one ledger to an account of another, all or nothing: a hold in
/// each ledger, then both posted, or both voided when either ledger refuses.
#[utoipa::path(
    post, path = "/v1/ledger-transfers", tag = "ledgers",
    params(("Idempotency-Key" = String, Header, description = "1 to 255 printable ASCII characters")),
    request_body = LedgerTransferRequest,
    responses(
        (status = 201, body = LedgerTransferView, description = "posted in both ledgers"),
        (status = 202, body = LedgerTransferView, description = "still running: `Location` names it; it ends posted or voided"),
        (status = 422, body = Problem, description = "voided: `code` is the refusal's, `context.ledger_transfer` the transfer; or validation_error, idempotency_key_reused"),
        (status = 404, body = Problem, description = "ledger_not_found"),
        (status = "4XX", body = Problem), (status = 503, body = Problem),
    )
)]
async fn create_transfer(
    State(state): State<AppState>,
    caller: Caller,
    IdempotencyKey(key): IdempotencyKey,
    origin: RequestOrigin,
    DryRun(dry_run): DryRun,
    JsonBody(request): JsonBody<LedgerTransferRequest>,
) -> Result<Response, ApiError> {
    may_use(&caller, &request.source_ledger)?;
    may_use(&caller, &request.destination_ledger)?;
    if request.source_ledger == request.destination_ledger {
        return Err(ApiError::Validation(
            "source_ledger and destination_ledger are the same: use POST /v1/ledgers/{ledger}/transfers".into(),
        ));
    }
    let books = state.books();
    same_asset_in_both(books, &request).await?;
    let recorded = Request {
        source_ledger: request.source_ledger.to_string(),
        source: request.source.to_string(),
        destination_ledger: request.destination_ledger.to_string(),
        destination: request.destination.to_string(),
        asset: request.asset.to_string(),
        amount: request.amount.to_string(),
        metadata: request.metadata.as_json().to_owned(),
    };
    let mut hasher = Sha256::new();
    hasher.update(b"POST /v1/ledger-transfers\0");
    hasher.update(serde_json::to_vec(&request).unwrap_or_default());
    let fingerprint = hasher.finalize();
    let scoped_key = origin.scoped_key(key);
    let registry = books.registry();
    if dry_run {
        return dry_run_transfer(books, &scoped_key, &fingerprint, &recorded, &origin.0).await;
    }
    let (transfer, replayed) = match store::create(
        registry,
        &scoped_key,
        &fingerprint,
        &recorded,
        origin.0.api_key_id,
    )
    .await?
    {
        Created::New(t) => (t, false),
        Created::Earlier(t) => (t, true),
        Created::KeyReused => return Err(infrastructure::Error::IdempotencyKeyReused.into()),
    };
    let id = transfer.id;
    let run = crate::ledger_transfers::run(books, registry, transfer, &origin.0);
    let transfer = match tokio::time::timeout(FINISH_WAIT, run).await {
        Ok(Ok(done)) => done,
        // Not finished: whatever the step, the transfer is recorded and will end posted or
        // voided (the recovery loop finishes it).
        Ok(Err(e)) => {
            tracing::info!(transfer = %id, error = %e, "ledger transfer left pending");
            current(registry, id).await?
        }
        Err(_) => current(registry, id).await?,
    };
    answer(transfer, replayed)
}

/// A transfer's dry run: what the real request would answer (a replay of the transfer recorded
/// under the key, `idempotency_key_reused`, or the outcome of running it now), and every account
/// it would change in each ledger. Nothing is recorded, in the registry or in a ledger.
async fn dry_run_transfer(
    books: &crate::books::Books,
    key: &str,
    fingerprint: &[u8],
    request: &Request,
    origin: &infrastructure::Origin,
) -> Result<Response, ApiError> {
    let (result, replayed, balances) = match store::find(books.registry(), key, fingerprint).await?
    {
        Some(Created::KeyReused) => {
            return Ok(dry_run_problem(
                ApiError::from(infrastructure::Error::IdempotencyKeyReused).problem(),
            ));
        }
        Some(Created::Earlier(transfer)) => {
            let voided = transfer.state == TransferState::Voided;
            let response = answer(transfer, true)?;
            if voided {
                return Ok(mark_dry_run(response).await);
            }
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap_or_default();
            (body.to_vec(), true, Vec::new())
        }
        Some(Created::New(_)) | None => {
            match crate::ledger_transfers::dry_run(books, request, origin).await? {
                DryRunOutcome::Refused(rejection, ledger) => {
                    let mut problem = ApiError::Rejected(rejection).problem();
                    problem.status = 422;
                    problem.title = "Unprocessable Entity".to_owned();
                    problem.detail = format!("the ledger transfer would be voided in both ledgers: {ledger} refuses it: {}", problem.detail);
                    return Ok(dry_run_problem(problem));
                }
                DryRunOutcome::Posted(sides) => {
                    let view = serde_json::json!({"state": "posted", "source_ledger": request.source_ledger,
                    "source": request.source, "destination_ledger": request.destination_ledger,
                    "destination": request.destination, "asset": request.asset, "amount": request.amount});
                    let balances = sides.into_iter().flat_map(|(ledger, changes)| {
                        crate::dry_run::balances_view(changes)
                            .into_iter()
                            .map(move |mut c| {
                                c.ledger = Some(ledger.clone());
                                c
                            })
                    });
                    (
                        serde_json::to_vec(&view).unwrap_or_default(),
                        false,
                        balances.collect(),
                    )
                }
            }
        }
    };
    let view = DryRunView {
        dry_run: true,
        replayed,
        result: crate::dry_run::raw(result),
        balances,
    };
    Ok((StatusCode::OK, axum::Json(view)).into_response())
}

/// A problem document answered to a dry run.
fn dry_run_problem(mut problem: crate::error::Problem) -> Response {
    problem.dry_run = true;
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
    let mut response = (status, axum::Json(problem)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}

/// The real answer (a problem document) marked as the answer to a dry run.
async fn mark_dry_run(response: Response) -> Response {
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let mut problem: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    problem["dry_run"] = serde_json::Value::Bool(true);
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(
        parts,
        axum::body::Body::from(serde_json::to_vec(&problem).unwrap_or_default()),
    )
}

/// The asset must be defined with the same scale in both ledgers: 422 otherwise, before
/// anything is recorded.
async fn same_asset_in_both(
    books: &crate::books::Books,
    request: &LedgerTransferRequest,
) -> Result<(), ApiError> {
    let source = books.get(&request.source_ledger).await?;
    let destination = books.get(&request.destination_ledger).await?;
    let asset = request.asset.as_str();
    let scales = (
        source.reads().asset_scale(asset).await?,
        destination.reads().asset_scale(asset).await?,
    );
    match scales {
        (Some(a), Some(b)) if a == b => Ok(()),
        (a, b) => Err(ApiError::Validation(format!(
            "asset {asset} must be defined with the same scale in both ledgers: {} has {}, {} has {}",
            request.source_ledger,
            a.map_or("none".to_owned(), |s| format!("scale {s}")),
            request.destination_ledger,
            b.map_or("none".to_owned(), |s| format!("scale {s}")),
        ))),
    }
}

async fn current(
    registry: &infrastructure::db::PgPool,
    id: Uuid,
) -> Result<LedgerTransfer, ApiError> {
    store::get(registry, id).await?.ok_or_else(|| {
        infrastructure::Error::Corrupt(format!("ledger transfer {id} vanished")).into()
    })
}

/// 201 when posted, 422 (the refusal's code) when voided, 202 with `Location` while it runs.
fn answer(transfer: LedgerTransfer, replayed: bool) -> Result<Response, ApiError> {
    let location = format!("/v1/ledger-transfers/{}", transfer.id);
    let state = transfer.state;
    let refusal_code = transfer
        .refusal
        .as_deref()
        .and_then(|r| serde_json::from_str::<serde_json::Value>(r).ok())
        .and_then(|r| r["code"].as_str().map(str::to_owned));
    let view = LedgerTransferView::try_from(transfer)?;
    let mut response = match state {
        TransferState::Posted => (StatusCode::CREATED, axum::Json(view)).into_response(),
        TransferState::Voided => {
            let code = refusal_code.unwrap_or_else(|| "ledger_transfer_voided".to_owned());
            let body = serde_json::json!({
                "type": format!("urn:ledger:problem:{code}"),
                "title": "Unprocessable Entity",
                "status": 422,
                "detail": format!("the ledger transfer was voided in both ledgers: {} refused it", view.refused_by.as_deref().unwrap_or("a ledger")),
                "code": code,
                "context": {"ledger_transfer": view},
            });
            let mut response = (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(body)).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/problem+json"),
            );
            response
        }
        _ => {
            let mut response = (StatusCode::ACCEPTED, axum::Json(view)).into_response();
            if let Ok(location) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            response
        }
    };
    if replayed {
        response
            .headers_mut()
            .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// A transfer between ledgers: its state and both sides' transactions. 404 when the key may not
/// use both ledgers.
#[utoipa::path(
    get, path = "/v1/ledger-transfers/{id}", tag = "ledgers",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = LedgerTransferView), (status = 404, body = Problem, description = "ledger_transfer_not_found"), (status = "4XX", body = Problem), (status = 503, body = Problem))
)]
async fn get_transfer(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<Uuid>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::NotFound {
        code: "ledger_transfer_not_found",
        what: format!("ledger transfer {id}"),
    };
    let transfer = store::get(state.books().registry(), id)
        .await?
        .ok_or_else(not_found)?;
    let visible = [
        &transfer.request.source_ledger,
        &transfer.request.destination_ledger,
    ]
    .into_iter()
    .all(|name| name.parse::<LedgerName>().is_ok_and(|n| caller.may_use(&n)));
    if !visible {
        return Err(not_found());
    }
    Ok(axum::Json(LedgerTransferView::try_from(transfer)?).into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// `reserving`, `posting`, `voiding`, `posted` or `voided`.
    pub state: Option<String>,
    /// Transfers after this id (the previous page's `next_after`).
    pub after: Option<Uuid>,
    pub limit: Option<i64>,
}

/// Transfers between ledgers, oldest first, by state; only those whose both ledgers the key may
/// use.
#[utoipa::path(
    get, path = "/v1/ledger-transfers", tag = "ledgers", params(ListParams),
    responses((status = 200, body = LedgerTransferList), (status = "4XX", body = Problem), (status = 503, body = Problem))
)]
async fn list_transfers(
    State(state): State<AppState>,
    caller: Caller,
    Params(params): Params<ListParams>,
) -> Result<Response, ApiError> {
    let limit = state.page_size(params.limit)?;
    let wanted = match params.state.as_deref() {
        None => None,
        Some(text) => Some(TransferState::parse(text).ok_or_else(|| {
            ApiError::InvalidRequest(format!(
                "state {text:?} is not one of reserving, posting, voiding, posted, voided"
            ))
        })?),
    };
    let only = caller.ledger_names();
    let page = store::list(
        state.books().registry(),
        wanted,
        params.after,
        limit + 1,
        only.as_deref(),
    )
    .await?;
    let (items, next_after) = super::keyed_page(page, limit, |t: &LedgerTransferView| t.id)?;
    Ok(axum::Json(LedgerTransferList { items, next_after }).into_response())
}
