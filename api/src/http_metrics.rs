//! Request counts by route and status, and request latency, for `GET /metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::{HeaderName, HeaderValue};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use infrastructure::metrics::{Histogram, LATENCY_BOUNDS_US, LATENCY_LABELS_S};

pub struct HttpMetrics {
    /// (method, route template, status) → count. Route templates, not raw paths, keep this bounded.
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    latency_us: Histogram,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        Self {
            requests: Mutex::new(BTreeMap::new()),
            latency_us: Histogram::new(LATENCY_BOUNDS_US, LATENCY_LABELS_S),
        }
    }
}

impl HttpMetrics {
    fn record(&self, method: &str, route: &str, status: u16, latency_us: u64) {
        if let Ok(mut requests) = self.requests.lock() {
            *requests
                .entry((method.to_owned(), route.to_owned(), status))
                .or_default() += 1;
        }
        self.latency_us.observe(latency_us);
    }

    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP ledger_http_requests_total HTTP requests by route and status."
        );
        let _ = writeln!(out, "# TYPE ledger_http_requests_total counter");
        if let Ok(requests) = self.requests.lock() {
            for ((method, route, status), count) in requests.iter() {
                let _ = writeln!(
                    out,
                    "ledger_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {count}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP ledger_http_request_duration_seconds HTTP request latency."
        );
        let _ = writeln!(out, "# TYPE ledger_http_request_duration_seconds histogram");
        self.latency_us
            .render(out, "ledger_http_request_duration_seconds", "", 1_000_000);
    }
}

/// Middleware: times each request, counts it under its route template, and tells the client how
/// long the server took in a `Server-Timing` header (`app;dur=` milliseconds, W3C Server Timing),
/// so that a client can tell the server's time from the network's (bench/rollups.sh reads it).
pub async fn track(
    State(metrics): State<Arc<HttpMetrics>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    // Only standard methods become labels, so a client cannot grow the series without bound.
    let method = match *request.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    };
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let mut response = next.run(request).await;
    let elapsed_us = started.elapsed().as_micros() as u64;
    metrics.record(method, &route, response.status().as_u16(), elapsed_us);
    let timing = format!("app;dur={}.{:03}", elapsed_us / 1000, elapsed_us % 1000);
    if let Ok(value) = HeaderValue::from_str(&timing) {
        response.headers_mut().insert(SERVER_TIMING, value);
    }
    response
}

/// `Server-Timing` (https://www.w3.org/TR/server-timing/), which `http` does not name.
const SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");
