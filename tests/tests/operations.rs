//! Health, readiness, metrics, and an OpenAPI document that covers every route.

use std::collections::BTreeSet;

use ledger_tests::TestLedger;
use reqwest::Method;

/// Every route the server serves. A route added to the code must be added here too; the test
/// then fails until it is also in the OpenAPI document (and the reverse).
const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("get", "/readyz"),
    ("get", "/v1/accounts"),
    ("get", "/v1/accounts/tree"),
    ("get", "/v1/accounts/{id_or_code}"),
    ("get", "/v1/accounts/{id_or_code}/balances"),
    ("get", "/v1/accounts/{id_or_code}/history"),
    ("get", "/v1/accounts/{id_or_code}/statement"),
    ("get", "/v1/accounts/{id_or_code}/settlements"),
    ("get", "/v1/admin/keys"),
    ("get", "/v1/admin/webhooks"),
    ("get", "/v1/admin/webhooks/{id}"),
    ("get", "/v1/admin/webhooks/{id}/deliveries"),
    ("get", "/v1/assets"),
    ("get", "/v1/audit/checkpoint"),
    ("get", "/v1/balances"),
    ("get", "/v1/audit/consistency"),
    ("get", "/v1/audit/public-key"),
    ("get", "/v1/audit/verify"),
    ("get", "/v1/events"),
    ("get", "/v1/events/stream"),
    ("get", "/v1/me"),
    ("get", "/v1/trades/{id}"),
    ("get", "/v1/transactions/{id}"),
    ("delete", "/v1/admin/webhooks/{id}"),
    ("patch", "/v1/accounts/{id_or_code}/limits"),
    ("post", "/v1/accounts"),
    ("post", "/v1/accounts/{id_or_code}/{action}"),
    ("post", "/v1/admin/keys"),
    ("post", "/v1/admin/keys/{id}/revoke"),
    ("post", "/v1/admin/webhooks"),
    ("post", "/v1/admin/webhooks/{id}/disable"),
    ("post", "/v1/admin/webhooks/{id}/enable"),
    ("post", "/v1/assets"),
    ("post", "/v1/trades"),
    ("post", "/v1/trades/{id}/settle"),
    ("post", "/v1/trades/{id}/fail"),
    ("post", "/v1/transactions"),
    ("post", "/v1/transactions/batch"),
    ("post", "/v1/transactions/{id}/{action}"),
    ("post", "/v1/transfers"),
    ("get", "/v1/ledgers"),
    ("post", "/v1/ledgers"),
    ("get", "/v1/ledgers/{name}"),
    ("get", "/v1/ledger-transfers"),
    ("post", "/v1/ledger-transfers"),
    ("get", "/v1/ledger-transfers/{id}"),
    ("post", "/v1/periods/close"),
    ("post", "/v1/periods/reopen"),
    ("get", "/v1/periods"),
    ("get", "/v1/periods/{period}"),
    ("get", "/v1/reports/trial-balance"),
    ("put", "/v1/accounts/{id_or_code}/booking-method"),
    ("get", "/v1/accounts/{id_or_code}/positions"),
    ("get", "/v1/accounts/{id_or_code}/realized"),
    ("get", "/v1/positions"),
    ("get", "/v1/prices"),
    ("post", "/v1/prices"),
    ("get", "/v1/schemas/events"),
    ("get", "/v1/schemas/events/{type}/{version}"),
];

/// The routes of a book, which are also served under `/v1/ledgers/{ledger}`.
const BOOK_ROUTES: [&str; 12] = [
    "accounts",
    "assets",
    "transactions",
    "transfers",
    "trades",
    "events",
    "audit",
    "balances",
    "periods",
    "reports",
    "positions",
    "prices",
];

/// Every route: `ROUTES`, and each book route again under `/v1/ledgers/{ledger}`.
fn routes() -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    for (method, path) in ROUTES {
        let rest = path.strip_prefix("/v1/").unwrap_or_default();
        if BOOK_ROUTES.contains(&rest.split('/').next().unwrap_or_default()) {
            all.push((method.to_string(), format!("/v1/ledgers/{{ledger}}/{rest}")));
        }
    }
    all
}

#[tokio::test]
async fn the_openapi_document_covers_every_route() {
    let ledger = TestLedger::start().await;
    ledger.market().await;
    let doc = ledger.get("/openapi.json").await;
    doc.expect(200);
    assert!(doc.body["openapi"].as_str().unwrap().starts_with("3."));
    let mut documented = BTreeSet::new();
    for (path, item) in doc.body["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                documented.insert((method.clone(), path.clone()));
            }
        }
    }
    let expected: BTreeSet<(String, String)> = routes().into_iter().collect();
    assert_eq!(documented, expected);

    // And every documented route is served (answers something other than "no such route").
    for (method, path) in routes() {
        let concrete = path
            .replace("{ledger}", "default")
            .replace("{name}", "default")
            .replace("{id_or_code}", "alice:cash")
            .replace("{id_or_code}/{action}", "alice:cash/freeze")
            .replace("{action}", "void")
            .replace("{id}", "00000000-0000-0000-0000-000000000000");
        let request = match method.as_str() {
            "get" => ledger.client.get(ledger.url(&concrete)),
            "patch" => ledger.client.patch(ledger.url(&concrete)),
            "put" => ledger.client.put(ledger.url(&concrete)),
            "delete" => ledger.client.delete(ledger.url(&concrete)),
            _ => ledger.client.post(ledger.url(&concrete)),
        };
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        if path.ends_with("/stream") {
            assert_eq!(status, 200, "{path}");
            continue; // an event stream does not end
        }
        let body = response.text().await.unwrap();
        assert!(
            status != 404 || !body.contains("route_not_found"),
            "{method} {path} is documented but not served"
        );
        assert!(status != 405, "{method} {path}");
    }
    // Schemas for the bodies are there, amounts as strings.
    let schemas = &doc.body["components"]["schemas"];
    assert_eq!(
        schemas["TransferRequest"]["properties"]["amount"]["type"],
        "string"
    );
    assert_eq!(schemas["Problem"]["properties"]["code"]["type"], "string");
    ledger.finish().await;
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let ledger = TestLedger::start().await;
    ledger.market().await;
    ledger.get("/healthz").await.expect(200);
    let ready = ledger.get("/readyz").await;
    ready.expect(200);
    assert_eq!(ready.body["writer"], "leader");
    assert_eq!(ready.body["database"], true);
    assert_eq!(ready.body["position"], 6);

    let transfer = ledger
        .transfer("t", "world:bank", "alice:cash", "USD", "1")
        .await;
    transfer.expect(201);
    // Each answer says how long the server took, so that a client can tell it from the network.
    let timing = transfer.header("server-timing").unwrap_or_default();
    assert!(
        timing.starts_with("app;dur=") && timing["app;dur=".len()..].parse::<f64>().is_ok(),
        "Server-Timing: {timing:?}"
    );
    let metrics = ledger.get("/metrics").await;
    metrics.expect(200);
    for series in [
        "ledger_http_requests_total{method=\"POST\",route=\"/v1/transfers\",status=\"201\"} 1",
        "ledger_batch_size_count",
        "ledger_commit_latency_seconds_bucket",
        "ledger_writer_queue_depth 0",
        "ledger_commands_total{outcome=\"accepted\"} 7",
        "ledger_position 7",
        "ledger_writer_leader 1",
    ] {
        assert!(
            metrics.text.contains(series),
            "missing {series} in\n{}",
            metrics.text
        );
    }
    ledger.finish().await;
}

/// Errors are served as `application/problem+json`, and the document says so (Schemathesis's
/// content-type check found every error documented as `application/json`).
#[test]
fn the_openapi_document_gives_errors_as_problem_json() {
    let doc = ledger_tests::serde_json::to_value(api::routes::openapi()).unwrap();
    let mut problems = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let Some(responses) = operation["responses"].as_object() else {
                continue;
            };
            for (status, response) in responses {
                let Some(content) = response["content"].as_object() else {
                    continue;
                };
                for (content_type, media) in content {
                    if media["schema"]["$ref"] == "#/components/schemas/Problem" {
                        problems += 1;
                        assert_eq!(
                            content_type, "application/problem+json",
                            "{method} {path} {status}"
                        );
                    }
                }
            }
        }
    }
    assert!(
        problems > 50,
        "only {problems} problem responses documented"
    );
}

/// Every `/v1` operation declares the bearer key and documents the answers the authentication
/// gives before any handler runs; health, readiness, metrics and the document itself need no key.
/// (A first version declared this in a utoipa `Modify` that ran before the routes were merged, so
/// the document claimed no authentication at all.)
#[test]
fn the_openapi_document_requires_the_api_key_on_every_v1_route() {
    let doc = ledger_tests::serde_json::to_value(api::routes::openapi()).unwrap();
    assert_eq!(
        doc["components"]["securitySchemes"]["api_key"]["scheme"],
        "bearer"
    );
    let mut secured = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let security = &operation["security"];
            if path.starts_with("/v1/") {
                secured += 1;
                assert_eq!(
                    security[0]["api_key"],
                    ledger_tests::serde_json::json!([]),
                    "{method} {path}"
                );
                for status in ["401", "403", "429"] {
                    assert!(
                        operation["responses"][status].is_object(),
                        "{method} {path} does not document {status}"
                    );
                }
            } else {
                assert!(security.is_null(), "{method} {path} should need no key");
            }
        }
    }
    assert!(secured > 25, "only {secured} /v1 operations");
}

#[tokio::test]
async fn the_console_is_served_from_the_binary_with_nothing_loaded_from_elsewhere() {
    let ledger = TestLedger::start_secured().await;
    // Every console path is a page: the same document, whose script reads the path.
    for path in [
        "/console",
        "/console/",
        "/console/accounts/alice:cash",
        "/console/audit",
    ] {
        let page = ledger.call_as(None, Method::GET, path, None, None).await;
        page.expect(200);
        assert_eq!(
            page.header("content-type"),
            Some("text/html; charset=utf-8"),
            "{path}"
        );
        assert!(page.text.contains("/console/static/app.js"), "{path}");
        let csp = page.header("content-security-policy").unwrap();
        assert!(
            csp.contains("default-src 'self'") && csp.contains("script-src 'self'"),
            "{csp}"
        );
    }
    let script = ledger
        .call_as(None, Method::GET, "/console/static/app.js", None, None)
        .await;
    script.expect(200);
    assert_eq!(
        script.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert!(script.text.contains("export"), "{}", script.text);
    let missing = ledger
        .call_as(
            None,
            Method::GET,
            "/console/static/no-such-file.js",
            None,
            None,
        )
        .await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.code(), "route_not_found");
    ledger.finish().await;
}
