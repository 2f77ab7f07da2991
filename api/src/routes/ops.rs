//! Operations: liveness, readiness, metrics and the OpenAPI document.

use std::sync::LazyLock;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use infrastructure::WriterStatus;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::dto::Readiness;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(openapi_json))
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "ok")))]
async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready to serve writes: the database answers and this process holds the writer's lock.
#[utoipa::path(
    get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Readiness), (status = 503, body = Readiness))
)]
async fn readyz(State(state): State<AppState>) -> Response {
    let database = state.reads().ping().await.is_ok();
    let writer = state.writer().status();
    let ready = database && writer == WriterStatus::Leader;
    let body = Readiness {
        ready,
        database,
        writer: writer.as_str().to_owned(),
        position: state.writer().committed_position(),
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

/// Prometheus metrics: requests by route and status, latency, batch sizes, commit latency and the
/// depth of the writer's queue.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, content_type = "text/plain", body = String)))]
async fn metrics(State(state): State<AppState>) -> Response {
    let mut out = String::with_capacity(8 * 1024);
    state.http_metrics().render(&mut out);
    state.writer().metrics().render(&mut out);
    let writer = state.writer();
    out.push_str("# HELP ledger_writer_queue_depth Commands waiting for the writer.\n");
    out.push_str("# TYPE ledger_writer_queue_depth gauge\n");
    out.push_str(&format!(
        "ledger_writer_queue_depth {}\n",
        writer.queue_depth()
    ));
    out.push_str("# HELP ledger_position The last position this writer committed.\n");
    out.push_str("# TYPE ledger_position gauge\n");
    out.push_str(&format!(
        "ledger_position {}\n",
        writer.committed_position()
    ));
    out.push_str("# HELP ledger_writer_leader 1 when this process is the writer.\n");
    out.push_str("# TYPE ledger_writer_leader gauge\n");
    out.push_str(&format!(
        "ledger_writer_leader {}\n",
        u8::from(writer.status() == WriterStatus::Leader)
    ));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// The OpenAPI document, generated from the same handlers that serve the routes.
static OPENAPI_JSON: LazyLock<String> = LazyLock::new(|| {
    crate::routes::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
});

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, content_type = "application/json", description = "OpenAPI 3.1")))]
async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        OPENAPI_JSON.as_str(),
    )
        .into_response()
}
