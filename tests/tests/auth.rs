//! API keys and scopes: who may call the ledger, and what the log says about who did what.

use api::{ServeConfig, Server};
use infrastructure::testing::TestDatabase;
use ledger_tests::{random_key, serde_json::json, Answer, TestLedger};
use reqwest::Method;
use serde_json::Value;

/// Creates a key through the admin API: (id, secret).
async fn create_key(ledger: &TestLedger, name: &str, scopes: &[&str]) -> (String, String) {
    let answer = ledger
        .call_as(
            ledger.admin_key.as_deref(),
            Method::POST,
            "/v1/admin/keys",
            None,
            Some(&json!({"name": name, "scopes": scopes})),
        )
        .await;
    answer.expect(201);
    let secret = answer.body["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("lk_") && secret.len() == 67, "{secret}");
    assert_eq!(answer.body["prefix"], secret[..12]);
    (answer.body["id"].as_str().unwrap().to_owned(), secret)
}

fn unauthorized(answer: &Answer) {
    assert_eq!(answer.status, 401, "{}", answer.text);
    assert_eq!(answer.code(), "unauthorized");
    assert!(answer
        .header("www-authenticate")
        .is_some_and(|v| v.starts_with("Bearer")));
}

fn forbidden(answer: &Answer) {
    assert_eq!(answer.status, 403, "{}", answer.text);
    assert_eq!(answer.code(), "forbidden");
}

#[tokio::test]
async fn every_v1_route_needs_a_valid_key() {
    let ledger = TestLedger::start_secured().await;
    let get =
        |key: Option<&'static str>| ledger.call_as(key, Method::GET, "/v1/assets", None, None);
    unauthorized(&get(None).await);
    let unknown = random_key();
    for header in [
        "Bearer".to_owned(),
        "Bearer lk_short".to_owned(),
        "Basic dXNlcjpwYXNz".to_owned(),
        format!("Bearer {}", unknown.to_uppercase()),
        format!("Bearer {unknown}"),
        format!("bearer{unknown}"),
    ] {
        let answer = TestLedger::read(
            reqwest::Client::new()
                .get(ledger.url("/v1/assets"))
                .header("authorization", &header)
                .send()
                .await
                .unwrap(),
        )
        .await;
        unauthorized(&answer);
    }
    // A write without a key appends nothing.
    let events = ledger.event_count().await;
    let answer = ledger
        .call_as(
            None,
            Method::POST,
            "/v1/assets",
            Some("k"),
            Some(&json!({"code": "USD", "scale": 2})),
        )
        .await;
    ledger
        .assert_refused(&answer, 401, "unauthorized", events)
        .await;
    // Operations routes are open: probes and scrapers carry no keys. (`/readyz` may still say
    // 503 while the writer starts; never 401.)
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        let answer = ledger.call_as(None, Method::GET, path, None, None).await;
        assert!(
            [200, 503].contains(&answer.status),
            "{path}: {}",
            answer.text
        );
        if path != "/readyz" {
            answer.expect(200);
        }
    }
    // The admin key works everywhere.
    ledger.get("/v1/assets").await.expect(200);
    ledger.get("/v1/admin/keys").await.expect(200);
    ledger.get("/v1/audit/verify").await.expect(200);
    ledger.finish().await;
}

#[tokio::test]
async fn a_key_may_do_what_its_scopes_allow_and_nothing_more() {
    let ledger = TestLedger::start_secured().await;
    ledger.market().await;
    let (_, reader) = create_key(&ledger, "dashboard", &["read"]).await;
    let (_, writer) = create_key(&ledger, "payments", &["write"]).await;
    let (_, auditor) = create_key(&ledger, "auditor", &["audit"]).await;
    let transfer = json!({"source": "world:bank", "destination": "alice:cash", "asset": "USD", "amount": "5.00"});
    let events = ledger.event_count().await;

    // read: queries yes, commands and audits no.
    ledger
        .call_as(
            Some(&reader),
            Method::GET,
            "/v1/accounts/alice:cash",
            None,
            None,
        )
        .await
        .expect(200);
    ledger
        .call_as(Some(&reader), Method::GET, "/v1/events", None, None)
        .await
        .expect(200);
    let answer = ledger
        .call_as(
            Some(&reader),
            Method::POST,
            "/v1/transfers",
            Some("t"),
            Some(&transfer),
        )
        .await;
    ledger
        .assert_refused(&answer, 403, "forbidden", events)
        .await;
    forbidden(
        &ledger
            .call_as(Some(&reader), Method::GET, "/v1/audit/verify", None, None)
            .await,
    );

    // write: commands yes; reads no, and a refused read does not tell whether an account exists.
    ledger
        .call_as(
            Some(&writer),
            Method::POST,
            "/v1/transfers",
            Some("t"),
            Some(&transfer),
        )
        .await
        .expect(201);
    let existing = ledger
        .call_as(
            Some(&writer),
            Method::GET,
            "/v1/accounts/alice:cash",
            None,
            None,
        )
        .await;
    let missing = ledger
        .call_as(
            Some(&writer),
            Method::GET,
            "/v1/accounts/nobody:cash",
            None,
            None,
        )
        .await;
    forbidden(&existing);
    assert_eq!(existing.text, missing.text);
    // Limits are the admin's.
    let events = ledger.event_count().await;
    let answer = ledger
        .call_as(
            Some(&writer),
            Method::PATCH,
            "/v1/accounts/alice:cash/limits",
            Some("l"),
            Some(&json!({"limits": [{"asset": "USD", "min_balance": "-10.00"}]})),
        )
        .await;
    ledger
        .assert_refused(&answer, 403, "forbidden", events)
        .await;
    forbidden(
        &ledger
            .call_as(Some(&writer), Method::GET, "/v1/admin/keys", None, None)
            .await,
    );

    // audit: verify and checkpoints; not the accounts, not the keys.
    ledger
        .call_as(Some(&auditor), Method::GET, "/v1/audit/verify", None, None)
        .await
        .expect(200);
    ledger
        .call_as(
            Some(&auditor),
            Method::GET,
            "/v1/audit/checkpoint",
            None,
            None,
        )
        .await
        .expect(200);
    forbidden(
        &ledger
            .call_as(Some(&auditor), Method::GET, "/v1/accounts", None, None)
            .await,
    );
    let answer = ledger
        .call_as(
            Some(&auditor),
            Method::POST,
            "/v1/admin/keys",
            None,
            Some(&json!({"name": "escalation", "scopes": ["admin"]})),
        )
        .await;
    forbidden(&answer);

    // The list shows prefixes, never secrets.
    let list = ledger.get("/v1/admin/keys").await;
    list.expect(200);
    assert_eq!(list.body["items"].as_array().unwrap().len(), 4);
    for secret in [&reader, &writer, &auditor] {
        assert!(!list.text.contains(secret.as_str()));
        assert!(list.text.contains(&secret[..12]));
    }
    ledger.finish().await;
}

#[tokio::test]
async fn keys_are_validated_when_created() {
    let ledger = TestLedger::start_secured().await;
    for body in [
        json!({"name": "", "scopes": ["read"]}),
        json!({"name": "x".repeat(129), "scopes": ["read"]}),
        json!({"name": "tab\tin name", "scopes": ["read"]}),
        json!({"name": "none", "scopes": []}),
        json!({"name": "unknown", "scopes": ["root"]}),
    ] {
        let answer = ledger.post("/v1/admin/keys", "-", &body).await;
        assert_eq!(answer.status, 422, "{body}: {}", answer.text);
        assert_eq!(answer.code(), "validation_error");
    }
    let answer = ledger
        .post(
            "/v1/admin/keys",
            "-",
            &json!({"name": "x", "scopes": ["read"], "secret": "mine"}),
        )
        .await;
    assert_eq!(answer.status, 400, "{}", answer.text);
    ledger.finish().await;
}

#[tokio::test]
async fn a_revoked_key_stops_working_at_once() {
    let ledger = TestLedger::start_secured().await;
    let (id, writer) = create_key(&ledger, "payments", &["write"]).await;
    let define = |key: &'static str| {
        let writer = writer.clone();
        let ledger = &ledger;
        async move {
            ledger
                .call_as(
                    Some(&writer),
                    Method::POST,
                    "/v1/assets",
                    Some(key),
                    Some(&json!({"code": format!("A{}", key.len()), "scale": 2})),
                )
                .await
        }
    };
    define("one").await.expect(201);
    let revoked = ledger
        .post(&format!("/v1/admin/keys/{id}/revoke"), "-", &json!({}))
        .await;
    revoked.expect(200);
    assert!(revoked.body["revoked_at"].is_string());
    let events = ledger.event_count().await;
    let answer = define("three").await;
    ledger
        .assert_refused(&answer, 401, "unauthorized", events)
        .await;
    // Revoking again keeps the first time; by prefix works too; an unknown key is 404.
    let again = ledger
        .post(
            &format!("/v1/admin/keys/{}/revoke", &writer[..12]),
            "-",
            &json!({}),
        )
        .await;
    again.expect(200);
    assert_eq!(again.body["revoked_at"], revoked.body["revoked_at"]);
    let unknown = ledger
        .post(
            &format!("/v1/admin/keys/{}/revoke", uuid::Uuid::new_v4()),
            "-",
            &json!({}),
        )
        .await;
    assert_eq!(unknown.status, 404, "{}", unknown.text);
    assert_eq!(unknown.code(), "key_not_found");
    ledger.finish().await;
}

#[tokio::test]
async fn every_event_records_the_key_that_caused_it() {
    let ledger = TestLedger::start_secured().await;
    let (id, writer) = create_key(&ledger, "payments", &["write"]).await;
    let answer = ledger
        .call_as(
            Some(&writer),
            Method::POST,
            "/v1/assets",
            Some("usd"),
            Some(&json!({"code": "USD", "scale": 2})),
        )
        .await;
    answer.expect(201);
    let mut conn = ledger.sql().await;
    let metadata: String = sqlx::query_scalar("SELECT metadata FROM events WHERE position = $1")
        .bind(answer.position())
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let metadata: Value = serde_json::from_str(&metadata).unwrap();
    assert_eq!(metadata["api_key_id"], id.as_str(), "{metadata}");
    assert!(
        !metadata.to_string().contains(&writer[3..]),
        "the secret is not recorded"
    );
    ledger.finish().await;
}

#[tokio::test]
async fn idempotency_keys_are_scoped_per_api_key() {
    let ledger = TestLedger::start_secured().await;
    let (_, first) = create_key(&ledger, "first", &["write"]).await;
    let (_, second) = create_key(&ledger, "second", &["write"]).await;
    async fn define(ledger: &TestLedger, secret: &str, code: &str) -> Answer {
        let body = json!({"code": code, "scale": 2});
        ledger
            .call_as(
                Some(secret),
                Method::POST,
                "/v1/assets",
                Some("same-key"),
                Some(&body),
            )
            .await
    }
    // The same Idempotency-Key from two callers: two requests, neither sees the other's answer.
    let usd = define(&ledger, &first, "USD").await;
    usd.expect(201);
    let eur = define(&ledger, &second, "EUR").await;
    eur.expect(201);
    assert_eq!(eur.header("idempotent-replayed"), None);
    // Each retry replays its own caller's answer.
    let retry = define(&ledger, &first, "USD").await;
    retry.expect(201);
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    assert_eq!(retry.body, usd.body);
    let retry = define(&ledger, &second, "EUR").await;
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    assert_eq!(retry.body, eur.body);
    // And one caller reusing its key for another request is still told so.
    let reused = define(&ledger, &first, "GBP").await;
    assert_eq!(reused.status, 422, "{}", reused.text);
    assert_eq!(reused.code(), "idempotency_key_reused");

    // Commands in a batch are scoped the same way.
    ledger.open_account("a", true).await.expect(201);
    ledger.open_account("b", true).await.expect(201);
    async fn batch(ledger: &TestLedger, secret: &str) -> Answer {
        let body = json!({"commands": [{"idempotency_key": "same-key", "transfer":
            {"source": "a", "destination": "b", "asset": "USD", "amount": "1.00"}}]});
        ledger
            .call_as(
                Some(secret),
                Method::POST,
                "/v1/transactions/batch",
                None,
                Some(&body),
            )
            .await
    }
    let from_first = batch(&ledger, &first).await;
    from_first.expect(200);
    // The first key used "same-key" for an asset: a transfer under it is another request.
    assert_eq!(
        from_first.body["results"][0]["status"], 422,
        "{}",
        from_first.text
    );
    let (_, third) = create_key(&ledger, "third", &["write"]).await;
    let from_third = batch(&ledger, &third).await;
    assert_eq!(
        from_third.body["results"][0]["status"], 201,
        "{}",
        from_third.text
    );
    ledger.finish().await;
}

#[tokio::test]
async fn repeated_failures_from_one_address_are_rate_limited() {
    let ledger = TestLedger::start_secured().await;
    let wrong = random_key();
    let mut statuses = Vec::new();
    for _ in 0..25 {
        statuses.push(
            ledger
                .call_as(Some(&wrong), Method::GET, "/v1/assets", None, None)
                .await
                .status,
        );
    }
    assert!(statuses[..20].iter().all(|s| *s == 401), "{statuses:?}");
    assert!(statuses[20..].iter().all(|s| *s == 429), "{statuses:?}");
    let limited = ledger.get("/v1/assets").await;
    assert_eq!(
        limited.status, 429,
        "even a good key waits: {}",
        limited.text
    );
    assert_eq!(limited.code(), "too_many_auth_failures");
    let retry_after: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    // Operations routes are not limited.
    ledger
        .call_as(None, Method::GET, "/healthz", None, None)
        .await
        .expect(200);
    ledger.finish().await;
}

/// The status of `GET /v1/admin/keys` with this key.
async fn admin_status(server: &Server, key: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("http://{}/v1/admin/keys", server.addr()))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn serve_refuses_to_start_without_a_key_unless_told_it_is_insecure() {
    let database = TestDatabase::create().await.unwrap();
    let mut config =
        ServeConfig::local(([127, 0, 0, 1], 0).into(), Some(database.url().to_owned()));
    let refused = Server::start(&config)
        .await
        .err()
        .expect("refuses to start");
    assert!(
        refused.to_string().contains("no active API key"),
        "{refused}"
    );

    // A malformed bootstrap key is refused too.
    config.bootstrap_admin_key = Some("not-a-key".into());
    assert!(Server::start(&config).await.is_err());

    // With a bootstrap key it starts, and the key is an admin's.
    let bootstrap = random_key();
    config.bootstrap_admin_key = Some(bootstrap.clone());
    let server = Server::start(&config).await.unwrap();
    assert_eq!(admin_status(&server, &bootstrap).await, 200);
    server.stop().await.unwrap();

    // Once keys exist, another bootstrap key is ignored: it does not become an admin.
    let other = random_key();
    config.bootstrap_admin_key = Some(other.clone());
    let server = Server::start(&config).await.unwrap();
    assert_eq!(admin_status(&server, &other).await, 401);
    assert_eq!(admin_status(&server, &bootstrap).await, 200);
    server.stop().await.unwrap();
    let _ = database.drop_database().await;

    // --insecure-no-auth serves without keys.
    let database = TestDatabase::create().await.unwrap();
    let mut config =
        ServeConfig::local(([127, 0, 0, 1], 0).into(), Some(database.url().to_owned()));
    config.insecure_no_auth = true;
    let server = Server::start(&config).await.unwrap();
    let answer = reqwest::get(format!("http://{}/v1/assets", server.addr()))
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    server.stop().await.unwrap();
    let _ = database.drop_database().await;
}

#[tokio::test]
async fn a_caller_learns_its_scopes_and_a_caller_without_a_key_learns_it_needs_one() {
    let ledger = TestLedger::start_secured().await;
    let me = |key: Option<&str>| {
        let key = key.map(str::to_owned);
        let ledger = &ledger;
        async move {
            ledger
                .call_as(key.as_deref(), Method::GET, "/v1/me", None, None)
                .await
        }
    };
    // Without credentials: no key, no scopes, and not an authentication failure, however often
    // it is asked (the console asks at every load).
    for _ in 0..30 {
        let nobody = me(None).await;
        nobody.expect(200);
        assert_eq!(nobody.body["authentication"], "api_key");
        assert_eq!(nobody.body["key"], Value::Null);
        assert_eq!(nobody.body["scopes"], json!([]));
    }
    ledger.get("/v1/assets").await.expect(200);
    // A wrong key is refused here as everywhere.
    unauthorized(&me(Some(&random_key())).await);
    let (id, reader) = create_key(&ledger, "reader", &["read"]).await;
    let answer = me(Some(&reader)).await;
    answer.expect(200);
    assert_eq!(answer.body["key"]["id"], id.as_str());
    assert_eq!(answer.body["key"]["name"], "reader");
    assert_eq!(answer.body["scopes"], json!(["read"]));
    assert!(answer.body["key"].get("secret").is_none());
    let (_, auditor) = create_key(&ledger, "auditor", &["audit"]).await;
    assert_eq!(me(Some(&auditor)).await.body["scopes"], json!(["audit"]));
    // Admin implies every scope.
    let admin = me(ledger.admin_key.as_deref()).await;
    assert_eq!(
        admin.body["scopes"],
        json!(["read", "write", "audit", "admin"])
    );
    ledger.finish().await;
}

#[tokio::test]
async fn without_authentication_everyone_may_do_everything() {
    let ledger = TestLedger::start().await;
    let answer = ledger
        .call_as(None, Method::GET, "/v1/me", None, None)
        .await;
    answer.expect(200);
    assert_eq!(answer.body["authentication"], "none");
    assert_eq!(
        answer.body["scopes"],
        json!(["read", "write", "audit", "admin"])
    );
    ledger.finish().await;
}
