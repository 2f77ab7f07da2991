//! Operations: liveness, readiness, metrics and the OpenAPI document.

use std::fmt::Write as _;
use std::sync::LazyLock;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use infrastructure::relays::RelayStatus;
use infrastructure::{writer_lock, WriterStatus};
use tokio::time::timeout;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::books::Book;
use crate::state::AppState;
use crate::views::{ProjectionView, ReadSourceView, Readiness};

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

/// Ready to serve: the read source answers, and this node is the writer or knows the writer it
/// forwards writes to. Reports the node's role, its read source and that source's lag.
#[utoipa::path(
    get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Readiness), (status = 503, body = Readiness))
)]
async fn readyz(State(state): State<AppState>) -> Response {
    // Readiness is ledger `default`'s: the ledger every node serves from its start.
    let book = state.books().default_book();
    let status = book.writer().status();
    let is_writer = status == WriterStatus::Leader;
    // A writer whose commit waits for the synchronous standby answers no write until it is back.
    let writer = if is_writer && commit_awaits_standby(book).await {
        WriterStatus::AwaitingStandby
    } else {
        status
    };
    // A node still starting or recovering answers writes itself (they wait or fail fast), so it
    // names no writer and is not ready until it knows whether it is one.
    let writer_url = match writer {
        WriterStatus::Leader => Some(book.forwarder().own_url().to_owned()),
        WriterStatus::Standby => timeout(PROBE_TIMEOUT, book.forwarder().writer_url())
            .await
            .ok()
            .and_then(Result::ok)
            .flatten(),
        WriterStatus::Starting | WriterStatus::Recovering | WriterStatus::AwaitingStandby => None,
    };
    let read_source = read_source(book).await;
    let projections = timeout(PROBE_TIMEOUT, book.reads().projections())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default()
        .into_iter()
        .map(|p| ProjectionView {
            name: p.name,
            kind: p.kind.to_owned(),
            position: p.position,
            lag_events: p.lag_events,
            lag_ms: p.lag_ms,
        })
        .collect();
    let database = read_source.is_some();
    let body = Readiness {
        ready: database && writer_url.is_some(),
        database,
        writer: writer.as_str().to_owned(),
        role: if is_writer { "writer" } else { "follower" }.to_owned(),
        writer_url,
        position: book.writer().committed_position(),
        read_source,
        projections,
    };
    let status = if body.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

/// How long `/readyz` waits for each database it asks: a probe with a short timeout must get a
/// 503, not a timeout, while PostgreSQL is out of reach (the pool itself waits 3 s).
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long the writer's commit may wait for the synchronous standby before `/readyz` says so: a
/// standby that is there confirms within a round trip.
const STANDBY_WAIT_SHOWN: Duration = Duration::from_secs(1);

/// Whether this node's writer has a commit waiting for the synchronous standby (as the primary
/// shows it), for longer than `STANDBY_WAIT_SHOWN`.
async fn commit_awaits_standby(book: &Book) -> bool {
    let primary = book.primary().unwrap_or(book.reads()).pool();
    timeout(
        PROBE_TIMEOUT,
        writer_lock::writer_awaits_standby(primary, STANDBY_WAIT_SHOWN),
    )
    .await
    .ok()
    .and_then(Result::ok)
    .unwrap_or(false)
}

/// The read source's kind and position, and how far it trails the primary's.
async fn read_source(book: &Book) -> Option<ReadSourceView> {
    let source = timeout(PROBE_TIMEOUT, book.reads().source_status())
        .await
        .ok()?
        .ok()?;
    let primary_position = match book.primary() {
        Some(primary) => timeout(PROBE_TIMEOUT, primary.head())
            .await
            .ok()
            .and_then(Result::ok),
        None => Some(source.position),
    };
    Some(ReadSourceView {
        kind: if source.replica { "replica" } else { "primary" }.to_owned(),
        position: source.position,
        lag_events: primary_position.map_or(0, |p| (p - source.position).max(0)),
        replay_lag_ms: source.replay_lag_ms,
    })
}

/// Prometheus metrics: requests by route and status, latency, batch sizes, commit latency, the
/// depth of the writer's queue, projections, and webhook deliveries and lag.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, content_type = "text/plain", body = String)))]
async fn metrics(State(state): State<AppState>) -> Response {
    let book = state.books().default_book();
    let mut out = String::with_capacity(8 * 1024);
    state.http_metrics().render(&mut out);
    book.writer().metrics().render(&mut out);
    book.projectors().render(&mut out);
    if let Ok(Ok(relays)) = timeout(
        PROBE_TIMEOUT,
        infrastructure::relays::statuses(state.books().registry()),
    )
    .await
    {
        render_relays(&relays, &mut out);
    }
    state.webhooks().render(&mut out);
    let writer = book.writer();
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
    out.push_str(
        "# HELP ledger_runtime_tasks_alive Tasks alive in this process's async runtime.\n",
    );
    out.push_str("# TYPE ledger_runtime_tasks_alive gauge\n");
    out.push_str(&format!(
        "ledger_runtime_tasks_alive {}\n",
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    ));
    out.push_str("# HELP ledger_books_open Ledgers besides default whose writer and projectors run in this process (idle ones are stopped).\n");
    out.push_str("# TYPE ledger_books_open gauge\n");
    out.push_str(&format!(
        "ledger_books_open {}\n",
        state.books().opened_count().await
    ));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// A series of `/metrics` about relays: its name, help and value per relay.
type RelaySeries = (&'static str, &'static str, fn(&RelayStatus) -> String);

/// Every relay's place in each ledger's log, whichever process runs it: from its checkpoint, which moves
/// only past what its broker confirmed. Its publish rate is the rate of `ledger_relay_position`.
fn render_relays(relays: &[RelayStatus], out: &mut String) {
    let series: [RelaySeries; 3] = [
        (
            "ledger_relay_position",
            "The last position a relay's broker confirmed (its checkpoint).",
            |r| r.position.to_string(),
        ),
        (
            "ledger_relay_lag_events",
            "Events of the ledger's log a relay's broker has not confirmed yet.",
            |r| r.lag_events.to_string(),
        ),
        (
            "ledger_relay_lag_seconds",
            "How long ago the oldest event a relay's broker has not confirmed was recorded.",
            |r| format!("{}.{:03}", r.lag_ms / 1000, r.lag_ms % 1000),
        ),
    ];
    for (name, help, value) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for relay in relays {
            let sink = relay.sink.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(
                out,
                "{name}{{ledger=\"{}\",sink=\"{sink}\"}} {}",
                relay.ledger,
                value(relay)
            );
        }
    }
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
