//! Webhook subscriptions and their delivery logs (admin scope, like keys). A subscription is not a
//! ledger event: it lives in its own tables. Its secret is shown once, in the answer to its
//! creation; the deliverer (`infrastructure::webhooks`) does the sending.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use infrastructure::webhooks::store::{self, CreateError, LoggedAttempt, Subscription};
use infrastructure::webhooks::{deliverer::HTTPS_SUPPORTED, guard, Filter};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::error::{ApiError, Problem};
use crate::extract::{JsonBody, Params, PathParam};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_webhooks, create_webhook))
        .routes(routes!(get_webhook, delete_webhook))
        .routes(routes!(disable_webhook))
        .routes(routes!(enable_webhook))
        .routes(routes!(list_deliveries))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhookRequest {
    /// Where to POST: `http` or `https`, at most 2048 bytes, no user name or password. An
    /// address that is loopback, private, link-local, unique-local or CGNAT is refused unless the
    /// server runs with `--webhook-allow-private`, here for an address in the URL and at every
    /// delivery for the address a name resolves to.
    pub url: String,
    /// Event type names (`TransactionPosted`, …); absent or empty: every type.
    #[serde(default)]
    pub event_types: Vec<String>,
    /// Account code segments (`alice`, `alice:cash`): only events touching an account that is it
    /// or under it.
    pub account_prefix: Option<String>,
    /// The ledger whose events to deliver; absent: every ledger, those created later too
    /// (each from its start).
    pub ledger: Option<String>,
    /// Deliver the events after this position of each ledger followed; after each one's head
    /// when absent.
    #[schema(minimum = 0)]
    pub after: Option<i64>,
}

/// A subscription as stored: never its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    pub id: Uuid,
    pub url: String,
    /// Empty: every type.
    pub event_types: Vec<String>,
    pub account_prefix: Option<String>,
    /// The ledger it follows; null: every ledger.
    pub ledger: Option<String>,
    /// The last position delivered (answered 2xx) or skipped (not matching) in its ledger (in
    /// `default` when it follows every ledger); delivery resumes after it.
    pub cursor: i64,
    /// The same, per ledger it has delivered or skipped in; a ledger not listed is delivered
    /// from its start.
    pub cursors: std::collections::BTreeMap<String, i64>,
    pub enabled: bool,
    /// Why it is disabled: by an operator, or after failed deliveries.
    pub disabled_reason: Option<String>,
    /// Failed attempts in a row at the position after the cursor.
    pub consecutive_failures: i32,
    /// When the next attempt is due (after a failure: the retry).
    pub next_attempt_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

impl From<Subscription> for WebhookView {
    fn from(s: Subscription) -> Self {
        let cursor = s.cursor(
            s.ledger
                .as_ref()
                .unwrap_or(&domain::LedgerName::default_ledger()),
        );
        Self {
            id: s.id,
            url: s.url,
            event_types: s.filter.event_types,
            account_prefix: s.filter.account_prefix,
            cursor,
            ledger: s.ledger.as_ref().map(|l| l.to_string()),
            cursors: s
                .cursors
                .iter()
                .map(|(ledger, cursor)| (ledger.to_string(), *cursor))
                .collect(),
            enabled: s.enabled,
            disabled_reason: s.disabled_reason,
            consecutive_failures: s.consecutive_failures,
            next_attempt_at: s.next_attempt_at,
            created_at: s.created_at,
        }
    }
}

/// A subscription just created, with its signing secret: shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedWebhook {
    #[serde(flatten)]
    pub webhook: WebhookView,
    /// The key of `Ledger-Signature`'s HMAC (see docs/streaming.md). Not shown again.
    pub secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    /// Every subscription, oldest first.
    pub items: Vec<WebhookView>,
}

/// One delivery attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    /// The ledger of the position.
    pub ledger: String,
    pub position: i64,
    /// 1 for the first attempt at this position, 2 for its first retry, …
    pub attempt: i32,
    /// `delivered`, `rejected` (the receiver answered other than 2xx), `timeout`,
    /// `network_error` or `refused` (the address guard: nothing was sent).
    pub outcome: String,
    pub status_code: Option<i16>,
    pub error: Option<String>,
    pub latency_ms: i32,
    pub attempted_at: DateTime<Utc>,
}

impl From<LoggedAttempt> for DeliveryView {
    fn from(a: LoggedAttempt) -> Self {
        Self {
            ledger: a.ledger,
            position: a.position,
            attempt: a.attempt,
            outcome: a.outcome,
            status_code: a.status_code,
            error: a.error,
            latency_ms: a.latency_ms,
            attempted_at: a.attempted_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryPage {
    /// Newest first.
    pub items: Vec<DeliveryView>,
    /// Pass as `cursor` for older attempts; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeliveryParams {
    /// 1 to 1000 (anything else is a 400, never clamped); 100 when absent.
    pub limit: Option<i64>,
    /// The previous page's `next_cursor`.
    pub cursor: Option<String>,
}

fn not_found(id: Uuid) -> ApiError {
    ApiError::NotFound {
        code: "webhook_not_found",
        what: format!("webhook subscription {id}"),
    }
}

/// Every webhook subscription, oldest first, without secrets.
#[utoipa::path(
    get, path = "/v1/admin/webhooks", tag = "admin",
    responses((status = 200, body = WebhookList), (status = "4XX", body = Problem), (status = 503, body = Problem))
)]
async fn list_webhooks(State(state): State<AppState>) -> Result<Response, ApiError> {
    let items = store::list(state.auth().pool())
        .await?
        .into_iter()
        .map(WebhookView::from)
        .collect();
    Ok(axum::Json(WebhookList { items }).into_response())
}

/// Subscribe a URL to a ledger's log, or to every ledger's. Its signing secret is in this answer only. Not idempotent: a
/// retry creates another subscription (delete the unused one).
#[utoipa::path(
    post, path = "/v1/admin/webhooks", tag = "admin",
    request_body = CreateWebhookRequest,
    responses(
        (status = 201, body = CreatedWebhook),
        (status = 404, body = Problem, description = "ledger_not_found"),
        (status = 422, body = Problem, description = "validation_error: url, event_types, account_prefix, after, or too many subscriptions"),
        (status = "4XX", body = Problem), (status = 503, body = Problem),
    )
)]
async fn create_webhook(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<CreateWebhookRequest>,
) -> Result<Response, ApiError> {
    let target = guard::parse_target(&request.url, HTTPS_SUPPORTED)
        .map_err(|e| ApiError::Validation(e.to_string()))?;
    // An address in the URL is refused now already; a name is not resolved here (only at
    // delivery, where its answer is checked).
    if let Some(ip) = target.literal {
        guard::check(ip, state.webhooks().allow_private())
            .map_err(|e| ApiError::Validation(format!("url: {e}")))?;
    }
    let filter = Filter::new(request.event_types, request.account_prefix)
        .map_err(|e| ApiError::Validation(e.to_string()))?;
    if request.after.is_some_and(|a| a < 0) {
        return Err(ApiError::Validation("after must be 0 or more".into()));
    }
    let pool = state.auth().pool();
    let ledger = match request.ledger {
        Some(name) => {
            let name = domain::LedgerName::try_from(name.clone())
                .map_err(|_| ApiError::ledger_not_found(&name))?;
            if infrastructure::ledgers::find(pool, &name).await?.is_none() {
                return Err(ApiError::ledger_not_found(name.as_str()));
            }
            Some(name)
        }
        None => None,
    };
    // Stored as parsed: normalized, percent-encoded.
    let url = target.url.as_str();
    let created = store::create(pool, url, &filter, ledger.as_ref(), request.after)
        .await
        .map_err(|e| match e {
            CreateError::TooMany => ApiError::Validation(e.to_string()),
            CreateError::Store(e) => ApiError::Infrastructure(e),
        })?;
    state.webhooks().changed();
    tracing::info!(webhook = %created.id, url = %created.url, "webhook subscription created");
    let secret = created.secret.clone();
    let body = CreatedWebhook {
        webhook: created.into(),
        secret,
    };
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

/// A webhook subscription, without its secret.
#[utoipa::path(
    get, path = "/v1/admin/webhooks/{id}", tag = "admin",
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = WebhookView),
        (status = 404, body = Problem, description = "webhook_not_found"),
        (status = "4XX", body = Problem), (status = 503, body = Problem),
    )
)]
async fn get_webhook(
    State(state): State<AppState>,
    PathParam(id): PathParam<Uuid>,
) -> Result<Response, ApiError> {
    let subscription = store::get(state.auth().pool(), id)
        .await?
        .ok_or_else(|| not_found(id))?;
    Ok(axum::Json(WebhookView::from(subscription)).into_response())
}

/// Delete a subscription and its delivery log. A delivery in flight may still arrive.
#[utoipa::path(
    delete, path = "/v1/admin/webhooks/{id}", tag = "admin",
    params(("id" = Uuid, Path)),
    responses(
        (status = 204, description = "deleted"),
        (status = 404, body = Problem, description = "webhook_not_found"),
        (status = "4XX", body = Problem), (status = 503, body = Problem),
    )
)]
async fn delete_webhook(
    State(state): State<AppState>,
    PathParam(id): PathParam<Uuid>,
) -> Result<Response, ApiError> {
    if !store::delete(state.auth().pool(), id).await? {
        return Err(not_found(id));
    }
    state.webhooks().changed();
    tracing::info!(webhook = %id, "webhook subscription deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn set_enabled(state: &AppState, id: Uuid, enabled: bool) -> Result<Response, ApiError> {
    let subscription = store::set_enabled(state.auth().pool(), id, enabled)
        .await?
        .ok_or_else(|| not_found(id))?;
    state.webhooks().changed();
    tracing::info!(webhook = %id, enabled, "webhook subscription changed");
    Ok(axum::Json(WebhookView::from(subscription)).into_response())
}

/// Stop delivering to a subscription; its cursor stays where it is.
#[utoipa::path(
    post, path = "/v1/admin/webhooks/{id}/disable", tag = "admin",
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = WebhookView),
        (status = 404, body = Problem, description = "webhook_not_found"),
        (status = "4XX", body = Problem), (status = 503, body = Problem),
    )
)]
async fn disable_webhook(
    State(state): State<AppState>,
    PathParam(id): PathParam<Uuid>,
) -> Result<Response, ApiError> {
    set_enabled(&state, id, false).await
}

/// Deliver again from the cursor, at once, with the count of failures reset (after the receiver
/// was repaired, or an operator's disable).
#[utoipa::path(
    post, path = "/v1/admin/webhooks/{id}/enable", tag = "admin",
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, body = WebhookView),
        (status = 404, body = Problem, description = "webhook_not_found"),
        (status = "4XX", body = Problem), (status = 503, body = Problem),
    )
)]
async fn enable_webhook(
    State(state): State<AppState>,
    PathParam(id): PathParam<Uuid>,
) -> Result<Response, ApiError> {
    set_enabled(&state, id, true).await
}

/// A subscription's delivery attempts, newest first: position, outcome, status code or error,
/// latency and time.
#[utoipa::path(
    get, path = "/v1/admin/webhooks/{id}/deliveries", tag = "admin",
    params(("id" = Uuid, Path), DeliveryParams),
    responses(
        (status = 200, body = DeliveryPage),
        (status = 404, body = Problem, description = "webhook_not_found"),
        (status = "4XX", body = Problem), (status = 503, body = Problem),
    )
)]
async fn list_deliveries(
    State(state): State<AppState>,
    PathParam(id): PathParam<Uuid>,
    Params(params): Params<DeliveryParams>,
) -> Result<Response, ApiError> {
    let limit = state.page_size(params.limit)?;
    let id_text = id.to_string();
    let scope = ["webhook_deliveries", id_text.as_str()];
    let before = params
        .cursor
        .map(|c| {
            let content = state.cursors().open(&scope, &c)?;
            content.parse::<i64>().map_err(|_| {
                ApiError::InvalidRequest("cursor is not one this server issued".into())
            })
        })
        .transpose()?;
    let pool = state.auth().pool();
    if store::get(pool, id).await?.is_none() {
        return Err(not_found(id));
    }
    let mut attempts = store::deliveries(pool, id, before, limit + 1).await?;
    let next_cursor = if attempts.len() as i64 > limit {
        attempts.truncate(limit as usize);
        attempts
            .last()
            .map(|a| state.cursors().issue(&scope, &a.id.to_string()))
    } else {
        None
    };
    let items = attempts.into_iter().map(DeliveryView::from).collect();
    Ok(axum::Json(DeliveryPage { items, next_cursor }).into_response())
}
