//! The harness of the end-to-end tests: a fresh PostgreSQL database and the real server on port 0,
//! spoken to over HTTP.

use std::net::SocketAddr;

use std::sync::Arc;

use api::{ServeConfig, Server};
use domain::clock::ShiftedClock;
use infrastructure::testing::TestDatabase;
use reqwest::header::HeaderMap;
use serde_json::{json, Value};

pub use serde_json;

/// A response, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `Ledger-Position` header.
    pub fn position(&self) -> i64 {
        self.header("ledger-position")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no Ledger-Position in {self:?}"))
    }

    /// The problem document's `code`, asserting the content type of an error.
    pub fn code(&self) -> &str {
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{self:?}"
        );
        self.body["code"].as_str().unwrap_or("")
    }

    #[track_caller]
    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(self.status, status, "{}", self.text);
        self
    }
}

/// A database for one test, and a server on it.
pub struct TestLedger {
    pub database: Option<TestDatabase>,
    pub database_url: String,
    server: Option<Server>,
    pub base: String,
    /// Sends the admin key, when the server authenticates.
    pub client: reqwest::Client,
    /// The admin key the server was bootstrapped with, when it authenticates.
    pub admin_key: Option<String>,
    /// The server's clock, which a test moves on instead of sleeping; kept across restarts.
    pub clock: Arc<ShiftedClock>,
}

/// The test server's configuration: without authentication unless a test turns it on (see
/// `start_secured`); tests of other things speak to it without keys.
fn config(database_url: &str) -> ServeConfig {
    let mut config = ServeConfig::local(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Some(database_url.to_owned()),
    );
    config.insecure_no_auth = true;
    config
}

/// A fresh random API key in the ledger's format, for a test to bootstrap with.
pub fn random_key() -> String {
    format!(
        "lk_{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

impl TestLedger {
    /// A fresh database and a server on it.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A fresh database and a server with adjusted configuration.
    pub async fn start_with(adjust: impl FnOnce(&mut ServeConfig)) -> Self {
        let database = TestDatabase::create().await.expect("test database");
        let url = database.url().to_owned();
        let mut ledger = Self::serve(&url, adjust).await;
        ledger.database = Some(database);
        ledger
    }

    /// A fresh database and a server that authenticates, bootstrapped with an admin key that
    /// `client` (and so `get`, `post`, …) sends.
    pub async fn start_secured() -> Self {
        let admin_key = random_key();
        Self::start_with(|config| {
            config.insecure_no_auth = false;
            config.bootstrap_admin_key = Some(admin_key);
        })
        .await
    }

    /// Another server on an existing database (which the caller keeps and drops).
    pub async fn serve(database_url: &str, adjust: impl FnOnce(&mut ServeConfig)) -> Self {
        Self::serve_with_clock(database_url, Arc::default(), adjust).await
    }

    async fn serve_with_clock(
        database_url: &str,
        clock: Arc<ShiftedClock>,
        adjust: impl FnOnce(&mut ServeConfig),
    ) -> Self {
        let mut config = config(database_url);
        config.clock = clock.clone();
        adjust(&mut config);
        let server = Server::start(&config).await.expect("server starts");
        let base = format!("http://{}", server.addr());
        let admin_key = config
            .bootstrap_admin_key
            .clone()
            .filter(|_| !config.insecure_no_auth);
        let mut headers = HeaderMap::new();
        if let Some(key) = &admin_key {
            headers.insert(
                reqwest::header::AUTHORIZATION,
                format!("Bearer {key}").parse().expect("header value"),
            );
        }
        Self {
            database: None,
            database_url: database_url.to_owned(),
            server: Some(server),
            base,
            client: reqwest::Client::builder()
                .default_headers(headers)
                .build()
                .expect("HTTP client"),
            admin_key,
            clock,
        }
    }

    /// Stops the server and keeps the database, for a restart.
    pub async fn stop_server(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await.expect("server stops");
        }
    }

    /// Starts a server again on the same database.
    pub async fn restart(&mut self) {
        self.restart_with(|_| {}).await;
    }

    /// Starts a server again on the same database, with adjusted configuration.
    pub async fn restart_with(&mut self, adjust: impl FnOnce(&mut ServeConfig)) {
        self.stop_server().await;
        let admin_key = self.admin_key.clone();
        let again = Self::serve_with_clock(&self.database_url, self.clock.clone(), |config| {
            if admin_key.is_some() {
                config.insecure_no_auth = false;
                config.bootstrap_admin_key = admin_key;
            }
            adjust(config);
        })
        .await;
        self.server = again.server;
        self.base = again.base;
        self.client = again.client;
    }

    /// Stops the server and drops the database.
    pub async fn finish(mut self) {
        self.stop_server().await;
        if let Some(database) = self.database.take() {
            let _ = database.drop_database().await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn read(response: reqwest::Response) -> Answer {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        Self::read(self.client.get(self.url(path)).send().await.expect("GET")).await
    }

    /// An account as of at least `min_position` (a read that follows a write).
    pub async fn account_at(&self, code: &str, min_position: i64) -> Answer {
        self.get(&format!("/v1/accounts/{code}?min_position={min_position}"))
            .await
    }

    /// POSTs JSON with an idempotency key.
    pub async fn post(&self, path: &str, key: &str, body: &Value) -> Answer {
        let response = self
            .client
            .post(self.url(path))
            .header("idempotency-key", key)
            .json(body)
            .send()
            .await
            .expect("POST");
        Self::read(response).await
    }

    /// PATCHes JSON with an idempotency key.
    pub async fn patch(&self, path: &str, key: &str, body: &Value) -> Answer {
        let response = self
            .client
            .patch(self.url(path))
            .header("idempotency-key", key)
            .json(body)
            .send()
            .await
            .expect("PATCH");
        Self::read(response).await
    }

    /// A request with this API key (or none) instead of the admin's.
    pub async fn call_as(
        &self,
        key: Option<&str>,
        method: reqwest::Method,
        path: &str,
        idempotency_key: Option<&str>,
        body: Option<&Value>,
    ) -> Answer {
        // A client without the admin's default header.
        let mut request = reqwest::Client::new().request(method, self.url(path));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(idempotency_key) = idempotency_key {
            request = request.header("idempotency-key", idempotency_key);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        Self::read(request.send().await.expect("request")).await
    }

    /// POSTs raw bytes with the given headers.
    pub async fn post_raw(&self, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Answer {
        let mut request = self.client.post(self.url(path)).body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Self::read(request.send().await.expect("POST")).await
    }

    /// POSTs `body` exactly as written (no serde_json::Value in between, which would respell its
    /// numbers) as JSON, with idempotency key `key`.
    pub async fn post_text(&self, path: &str, key: &str, body: &str) -> Answer {
        let headers = [
            ("content-type", "application/json"),
            ("idempotency-key", key),
        ];
        self.post_raw(path, &headers, body.as_bytes().to_vec())
            .await
    }

    pub async fn define_asset(&self, code: &str, scale: u32) -> Answer {
        self.post(
            "/v1/assets",
            &format!("asset-{code}"),
            &json!({"code": code, "scale": scale}),
        )
        .await
    }

    pub async fn open_account(&self, code: &str, allow_negative: bool) -> Answer {
        self.post(
            "/v1/accounts",
            &format!("account-{code}"),
            &json!({"code": code, "allow_negative": allow_negative}),
        )
        .await
    }

    pub async fn transfer(
        &self,
        key: &str,
        source: &str,
        destination: &str,
        asset: &str,
        amount: &str,
    ) -> Answer {
        self.post(
            "/v1/transfers",
            key,
            &json!({"source": source, "destination": destination, "asset": asset, "amount": amount}),
        )
        .await
    }

    /// The balance of an account in an asset as the API reports it ("0" when it holds none).
    pub async fn balance(&self, account: &str, asset: &str) -> String {
        let answer = self.get(&format!("/v1/accounts/{account}")).await;
        answer.expect(200);
        answer.body["balances"]
            .as_array()
            .and_then(|b| b.iter().find(|b| b["asset"] == asset))
            .and_then(|b| b["balance"].as_str())
            .unwrap_or("0")
            .to_owned()
    }

    /// Creates ledger `name` with USD (scale 2), `world:bank` (which may go negative) and
    /// `accounts` (which may not).
    pub async fn create_ledger_with_usd(&self, name: &str, accounts: &[&str]) {
        self.post(
            "/v1/ledgers",
            &format!("create-{name}"),
            &json!({"name": name}),
        )
        .await
        .expect(201);
        let prefix = format!("/v1/ledgers/{name}");
        self.post(
            &format!("{prefix}/assets"),
            "usd",
            &json!({"code": "USD", "scale": 2}),
        )
        .await
        .expect(201);
        for code in std::iter::once(&"world:bank").chain(accounts) {
            self.post(
                &format!("{prefix}/accounts"),
                &format!("open-{code}"),
                &json!({"code": code, "allow_negative": *code == "world:bank"}),
            )
            .await
            .expect(201);
        }
    }

    /// USD (2), AAPL (0); world:bank may go negative; alice:cash, bob:cash and broker:fees may not.
    pub async fn market(&self) {
        self.define_asset("USD", 2).await.expect(201);
        self.define_asset("AAPL", 0).await.expect(201);
        self.open_account("world:bank", true).await.expect(201);
        for code in ["alice:cash", "bob:cash", "broker:fees"] {
            self.open_account(code, false).await.expect(201);
        }
    }

    /// A direct connection to the database, for checks the API does not offer.
    pub async fn sql(&self) -> sqlx::PgConnection {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&self.database_url)
            .await
            .expect("database connection")
    }

    /// A pool on the test database, for calling the infrastructure directly (audit, replay).
    pub fn pool(&self) -> infrastructure::db::PgPool {
        infrastructure::db::read_pool(
            infrastructure::db::connect_options(&self.database_url).expect("database URL"),
            &infrastructure::db::PoolConfig::default(),
        )
    }

    /// Per asset, the sum of all balances in the projection: must be zero.
    pub async fn balance_sums(&self) -> Vec<(String, rust_decimal::Decimal)> {
        let mut conn = self.sql().await;
        sqlx::query_as("SELECT asset, sum(balance) FROM balances GROUP BY asset ORDER BY asset")
            .fetch_all(&mut conn)
            .await
            .expect("sums")
    }

    /// Asserts that `answer` is a problem document with this status and code, and that the log
    /// still holds `events_before` events: the refusal appended nothing.
    pub async fn assert_refused(
        &self,
        answer: &Answer,
        status: u16,
        code: &str,
        events_before: i64,
    ) {
        assert_eq!(answer.status, status, "{}", answer.text);
        assert_eq!(answer.code(), code, "{}", answer.text);
        assert_eq!(answer.body["status"], status, "{}", answer.text);
        assert!(answer.body["detail"]
            .as_str()
            .is_some_and(|d| !d.is_empty()));
        assert_eq!(answer.body["type"], format!("urn:ledger:problem:{code}"));
        assert_eq!(
            self.event_count().await,
            events_before,
            "{code} appended an event"
        );
    }

    /// Exports the log (`ledger export`'s format) to a file named after the test database.
    pub async fn export(&self) -> std::path::PathBuf {
        let name = self.database.as_ref().map_or("ledger-export", |d| d.name());
        let path = std::env::temp_dir().join(format!("{name}.ndjson"));
        let pool = self.pool();
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path).expect("export file"));
        infrastructure::audit::export(&pool, 0, &mut file)
            .await
            .expect("export");
        pool.close().await;
        path
    }

    /// Stops the server and replays the whole log into fresh tables: the report says whether
    /// every projection equals its rebuild.
    pub async fn stop_and_replay(&mut self) -> infrastructure::replay::ReplayReport {
        self.stop_server().await;
        let pool = self.pool();
        let report = infrastructure::replay::replay(&pool, false, |_, _| {})
            .await
            .expect("replay");
        pool.close().await;
        report
    }

    /// Asserts that the independent verifier's report (`python_verify`) holds exactly what the
    /// server serves: every (account, asset) with its four figures (posted, pending debits,
    /// pending credits, available), and every account's status and limits.
    pub async fn assert_verifier_agrees(&self, independent: &Value) {
        let listed = self.get("/v1/accounts?limit=1000").await;
        listed.expect(200);
        assert!(
            listed.body["next_cursor"].is_null(),
            "one page holds them all"
        );
        let mut balances = serde_json::Map::new();
        let mut accounts = serde_json::Map::new();
        for account in listed.body["items"].as_array().expect("items") {
            let code = account["code"].as_str().expect("a code");
            for b in account["balances"].as_array().expect("balances") {
                balances.insert(
                    format!("{code} {}", b["asset"].as_str().expect("an asset")),
                    json!({"posted": b["balance"], "pending_debits": b["pending_debits"],
                           "pending_credits": b["pending_credits"], "available": b["available"]}),
                );
            }
            let limits: serde_json::Map<String, Value> = account["limits"]
                .as_array()
                .expect("limits")
                .iter()
                .map(|l| {
                    let asset = l["asset"].as_str().expect("an asset").to_owned();
                    (
                        asset,
                        json!({"min_balance": l["min_balance"], "max_balance": l["max_balance"]}),
                    )
                })
                .collect();
            accounts.insert(
                code.to_owned(),
                json!({"status": account["status"], "limits": limits}),
            );
        }
        assert_eq!(Value::Object(balances), independent["balances"], "figures");
        assert_eq!(Value::Object(accounts), independent["accounts"], "accounts");
    }

    pub async fn event_count(&self) -> i64 {
        let mut conn = self.sql().await;
        sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&mut conn)
            .await
            .expect("count")
    }
}

/// Runs the independent verifier (`tools/verify_export.py`, standard-library Python) on an
/// export: whether it passed, and its JSON report.
pub fn python_verify(path: &std::path::Path) -> (bool, Value) {
    python_verify_with(path, &[])
}

/// `python_verify` with more arguments (`--as-of T --known-at P`).
pub fn python_verify_with(path: &std::path::Path, args: &[&str]) -> (bool, Value) {
    let script =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tools/verify_export.py");
    let output = std::process::Command::new("python3")
        .arg(script)
        .arg(path)
        .args(args)
        .output()
        .expect("python3 runs");
    let report: Value = serde_json::from_slice(&output.stdout).expect("a JSON report");
    (output.status.success(), report)
}

/// Polls until observable state holds (`infrastructure::testing::eventually`).
pub use infrastructure::testing::eventually;

/// A real primary and a streaming replica of it, started in a new scratch directory under the
/// system temp directory (named after `what`); the caller stops them and removes the directory.
pub async fn primary_and_replica(
    what: &str,
) -> (
    std::path::PathBuf,
    infrastructure::local_postgres::LocalPostgres,
    infrastructure::local_postgres::LocalPostgres,
) {
    let dir = std::env::temp_dir().join(format!("ledger-{what}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    let primary = infrastructure::local_postgres::LocalPostgres::start(&dir.join("primary"))
        .await
        .expect("primary");
    let replica = primary
        .start_replica(&dir.join("replica"))
        .await
        .expect("replica");
    (dir, primary, replica)
}

/// Serves `app` on a free loopback port, for a test's stand-in receiver (a webhook endpoint):
/// its address and the task serving it.
pub async fn serve_on_loopback(app: axum::Router) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("its address");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, task)
}

/// The JSON documents a README section's script printed, one per curl, up to the first output
/// that is not JSON (a CSV).
pub fn json_documents(stdout: &str) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let mut stream = serde_json::Deserializer::from_str(stdout).into_iter::<serde_json::Value>();
    while let Some(Ok(value)) = stream.next() {
        out.push(value);
    }
    out
}

/// Runs the first `sh` block after the README heading `## {heading}` as it is written, with bash
/// and curl, against the server at `base` (`$L`, with `$J` the JSON content type); panics unless it
/// succeeds, and returns what it printed.
pub async fn run_readme_section(heading: &str, base: &str) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let section = readme
        .split_once(&format!("\n## {heading}\n"))
        .unwrap_or_else(|| panic!("the README has a section {heading:?}"))
        .1;
    let block = section
        .split_once("```sh\n")
        .expect("the section has a shell block")
        .1;
    let script = block
        .split_once("```")
        .expect("the block ends")
        .0
        .to_owned();
    let script = format!("L={base}\nJ='content-type: application/json'\n{script}");
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("bash")
            .args(["-euo", "pipefail", "-c"])
            .arg(script)
            .output()
            .expect("bash")
    })
    .await
    .expect("the script ran");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}
