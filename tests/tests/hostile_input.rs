//! Hostile input, item by item, in the order of the catalogue in docs/api.md ("Hostile input"):
//! every item gets its stated answer as an `application/problem+json` document with a stable code,
//! appends nothing to the log, and is never a 500.

use std::time::Duration;

use ledger_tests::serde_json::{json, Value};
use ledger_tests::{Answer, TestLedger};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const JSON: (&str, &str) = ("content-type", "application/json");

/// Bounds every raw-socket exchange, so that a server that misbehaves fails the test, not hangs it.
const GUARD: Duration = Duration::from_secs(30);

/// POSTs raw bytes as JSON with a fresh idempotency key.
async fn post_bytes(ledger: &TestLedger, path: &str, key: &str, body: &[u8]) -> Answer {
    ledger
        .post_raw(path, &[JSON, ("idempotency-key", key)], body.to_vec())
        .await
}

/// Each (path, body) posted is refused with `status` and `code`, and appends nothing.
async fn each_refused(ledger: &TestLedger, cases: &[(&str, Value)], status: u16, code: &str) {
    let n = ledger.event_count().await;
    for (i, (path, body)) in cases.iter().enumerate() {
        let answer = ledger.post(path, &format!("{code}-{path}-{i}"), body).await;
        assert_eq!(answer.status, status, "{path} {body}: {}", answer.text);
        ledger.assert_refused(&answer, status, code, n).await;
    }
}

/// Each body posted to `path` is refused with `status` and `code`, and appends nothing.
async fn all_refused(ledger: &TestLedger, path: &str, bodies: &[Value], status: u16, code: &str) {
    let cases: Vec<(&str, Value)> = bodies.iter().map(|b| (path, b.clone())).collect();
    each_refused(ledger, &cases, status, code).await;
}

/// A server with `adjust`ed configuration on a fresh database holding the test market, and the
/// number of events in its log.
async fn market_with(adjust: impl FnOnce(&mut api::ServeConfig)) -> (TestLedger, i64) {
    let ledger = TestLedger::start_with(adjust).await;
    ledger.market().await;
    let n = ledger.event_count().await;
    (ledger, n)
}

/// Each GET is refused with `status` and `code`.
async fn all_gets_refused(ledger: &TestLedger, paths: &[String], status: u16, code: &str) {
    for path in paths {
        let answer = ledger.get(path).await;
        assert_eq!(answer.status, status, "{path}: {}", answer.text);
        assert_eq!(answer.code(), code, "{path}");
    }
}

/// Percent-encodes everything but unreserved characters, for putting hostile text in a URL.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `base` with `field` set to `value`.
fn with(base: &Value, field: &str, value: impl Into<Value>) -> Value {
    let mut changed = base.clone();
    changed[field] = value.into();
    changed
}

/// A valid trade of the test market.
fn trade() -> Value {
    json!({"buyer": "alice:cash", "seller": "bob:cash", "instrument": "AAPL", "quantity": "1",
        "price": "1", "currency": "USD"})
}

/// A trade with one fee: a valid fee with `fields` replaced.
fn trade_with_fee(fields: Value) -> Value {
    let mut fee = json!({"payer": "alice:cash", "account": "broker:fees", "amount": "1"});
    for (field, value) in fields.as_object().into_iter().flatten() {
        fee[field] = value.clone();
    }
    with(&trade(), "fees", json!([fee]))
}

fn transfer(amount: Value) -> Value {
    json!({"source": "world:bank", "destination": "alice:cash", "asset": "USD", "amount": amount})
}

/// A response read off a raw socket: status line, headers (lower-case names) and body.
struct RawAnswer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawAnswer {
    fn parse(bytes: &[u8]) -> Option<Self> {
        let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = std::str::from_utf8(&bytes[..end]).ok()?;
        let mut lines = head.split("\r\n");
        let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Some(Self {
            status,
            headers,
            body: bytes[end + 4..].to_vec(),
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The problem document's code, asserting the content type.
    fn code(&self) -> String {
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json")
        );
        let body: Value = ledger_tests::serde_json::from_slice(&self.body).unwrap_or(Value::Null);
        body["code"].as_str().unwrap_or_default().to_owned()
    }
}

/// Reads until the server closes the connection (or resets it); what arrived before that.
async fn read_to_close(stream: &mut (impl AsyncReadExt + Unpin)) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return received,
            Ok(n) => received.extend_from_slice(&buf[..n]),
        }
    }
}

// 1. Malformed JSON, or valid JSON followed by trailing bytes → 400 malformed_json.

#[tokio::test]
async fn item_01_malformed_json_and_trailing_bytes_are_400() {
    let (ledger, n) = market_with(|_| {}).await;
    let bodies: [&[u8]; 10] = [
        b"{",
        b"not json",
        b"",
        b"{\"code\":\"EUR\",\"scale\":2} trailing",
        b"{\"code\":\"EUR\",\"scale\":2}{}",
        b"{\"code\":\"EUR\",\"scale\":2}\x00",
        b"{\"code\":\"EUR\",\"scale\":2,}",
        b"{'code':'EUR','scale':2}",
        b"\xff\xfe{}",
        b"{\"code\":\"E\\uZZZZ\",\"scale\":2}",
    ];
    for path in ["/v1/assets", "/v1/transfers", "/v1/transactions/batch"] {
        for (i, body) in bodies.iter().enumerate() {
            let answer = post_bytes(&ledger, path, &format!("malformed-{i}"), body).await;
            ledger
                .assert_refused(&answer, 400, "malformed_json", n)
                .await;
        }
    }
    ledger.finish().await;
}

// 2. Wrong content type → 415 unsupported_media_type.

#[tokio::test]
async fn item_02_wrong_content_type_is_415() {
    let ledger = TestLedger::start().await;
    let n = ledger.event_count().await;
    let body = br#"{"code":"EUR","scale":2}"#;
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/jsonx"),
        Some("application/problem+json"),
        Some("text/json"),
        None,
    ] {
        let mut headers = vec![("idempotency-key", "ct")];
        headers.extend(content_type.map(|ct| ("content-type", ct)));
        let answer = ledger.post_raw("/v1/assets", &headers, body.to_vec()).await;
        ledger
            .assert_refused(&answer, 415, "unsupported_media_type", n)
            .await;
    }
    // Parameters of the media type do not matter.
    ledger
        .post_raw(
            "/v1/assets",
            &[
                ("content-type", "application/json; charset=utf-8"),
                ("idempotency-key", "ct-ok"),
            ],
            body.to_vec(),
        )
        .await
        .expect(201);
    ledger.finish().await;
}

// 3. Duplicate JSON keys, at any depth → 400 invalid_request.

#[tokio::test]
async fn item_03_duplicate_keys_anywhere_are_400() {
    let (ledger, n) = market_with(|_| {}).await;
    let cases: [(&str, &str); 9] = [
        (
            "/v1/transfers",
            r#"{"source":"world:bank","destination":"alice:cash","asset":"USD","amount":"1","amount":"1000"}"#,
        ),
        // The same key written with an escape is still the same key.
        (
            "/v1/transfers",
            r#"{"source":"world:bank","destination":"alice:cash","asset":"USD","amount":"1","amo\u0075nt":"1000"}"#,
        ),
        (
            "/v1/transfers",
            r#"{"source":"world:bank","destination":"alice:cash","asset":"USD","amount":"1","metadata":{"ref":"a","ref":"b"}}"#,
        ),
        (
            "/v1/transactions",
            r#"{"postings":[{"source":"world:bank","destination":"alice:cash","asset":"USD","amount":"1","destination":"bob:cash"}]}"#,
        ),
        (
            "/v1/transactions",
            r#"{"postings":[],"postings":[{"source":"world:bank","destination":"alice:cash","asset":"USD","amount":"1"}]}"#,
        ),
        (
            "/v1/accounts",
            r#"{"code":"carol","metadata":{"deep":[{"k":1,"k":2}]}}"#,
        ),
        ("/v1/assets", r#"{"code":"EUR","scale":2,"scale":18}"#),
        (
            "/v1/trades",
            r#"{"buyer":"alice:cash","seller":"bob:cash","instrument":"AAPL","quantity":"1","price":"1","currency":"USD","fees":[{"payer":"alice:cash","account":"broker:fees","amount":"1","amount":"2"}]}"#,
        ),
        (
            "/v1/transactions/batch",
            r#"{"commands":[{"idempotency_key":"b1","idempotency_key":"b2","transfer":{"source":"world:bank","destination":"alice:cash","asset":"USD","amount":"1"}}]}"#,
        ),
    ];
    for (i, (path, body)) in cases.iter().enumerate() {
        let answer = post_bytes(&ledger, path, &format!("dup-{i}"), body.as_bytes()).await;
        ledger
            .assert_refused(&answer, 400, "invalid_request", n)
            .await;
    }
    ledger.finish().await;
}

// 4. Unknown or server-owned fields → 400 invalid_request.

#[tokio::test]
async fn item_04_unknown_and_server_owned_fields_are_400() {
    let (ledger, _) = market_with(|_| {}).await;
    let posting =
        json!({"source": "world:bank", "destination": "alice:cash", "asset": "USD", "amount": "1"});
    let mut cases = Vec::new();
    for field in ["position", "recorded_at", "balance", "id", "hash", "amout"] {
        let value = json!(7);
        cases.extend([
            ("/v1/assets", with(&json!({"code": "EUR", "scale": 2}), field, value.clone())),
            ("/v1/accounts", with(&json!({"code": "carol"}), field, value.clone())),
            ("/v1/transfers", with(&posting, field, value.clone())),
            ("/v1/transactions", json!({"postings": [with(&posting, field, value.clone())]})),
            ("/v1/transactions", with(&json!({"postings": [posting]}), field, value.clone())),
            ("/v1/trades", trade_with_fee(json!({field: value}))),
            ("/v1/trades", with(&trade(), field, value.clone())),
            (
                "/v1/transactions/batch",
                json!({"commands": [with(&json!({"idempotency_key": "b", "transfer": posting}), field, value)]}),
            ),
        ]);
    }
    each_refused(&ledger, &cases, 400, "invalid_request").await;
    ledger.finish().await;
}

// 5. Bodies above the limit → 413 payload_too_large, answered before the body is read whole.

#[tokio::test]
async fn item_05_bodies_above_the_limit_are_413_without_buffering_them() {
    const LIMIT: usize = 64 * 1024;
    let (ledger, n) = market_with(|c| {
        c.body_bytes_max = LIMIT;
        c.batch_body_bytes_max = 2 * LIMIT;
    })
    .await;

    // A body just over the limit, with its length declared.
    let mut big = br#"{"code":"EUR","scale":2,"x":""#.to_vec();
    big.extend(std::iter::repeat_n(b'a', LIMIT));
    big.extend(br#""}"#);
    let answer = post_bytes(&ledger, "/v1/assets", "big", &big).await;
    ledger
        .assert_refused(&answer, 413, "payload_too_large", n)
        .await;
    let mut batch = br#"{"commands":[],"x":""#.to_vec();
    batch.extend(std::iter::repeat_n(b'a', 2 * LIMIT));
    batch.extend(br#""}"#);
    let answer = post_bytes(&ledger, "/v1/transactions/batch", "big-batch", &batch).await;
    ledger
        .assert_refused(&answer, 413, "payload_too_large", n)
        .await;

    // A declared length of a terabyte is answered at once: not one byte of the body is sent.
    let addr = ledger.base.trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(&addr).await.expect("connect");
    stream
        .write_all(
            b"POST /v1/assets HTTP/1.1\r\nhost: ledger\r\ncontent-type: application/json\r\n\
              idempotency-key: tera\r\ncontent-length: 1099511627776\r\n\r\n",
        )
        .await
        .expect("headers");
    let received = tokio::time::timeout(GUARD, read_to_close(&mut stream))
        .await
        .expect("answered without the body");
    let answer = RawAnswer::parse(&received).expect("an HTTP response");
    assert_eq!(answer.status, 413);
    assert_eq!(answer.code(), "payload_too_large");

    // An endless chunked body: the answer arrives while the client is still sending, after far
    // less than it would send (256 MiB), and the server closes the connection instead of reading
    // on. A server that buffered the body would never answer before the client stopped.
    const SEND_MAX: usize = 256 * 1024 * 1024;
    let stream = TcpStream::connect(&addr).await.expect("connect");
    let (mut read_half, mut write_half) = stream.into_split();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let sender = tokio::spawn({
        let sent = sent.clone();
        async move {
            let head = b"POST /v1/transfers HTTP/1.1\r\nhost: ledger\r\ncontent-type: application/json\r\n\
                         idempotency-key: endless\r\ntransfer-encoding: chunked\r\n\r\n";
            if write_half.write_all(head).await.is_err() {
                return;
            }
            let mut chunk = format!("{:x}\r\n", 16 * 1024).into_bytes();
            chunk.extend(std::iter::repeat_n(b' ', 16 * 1024));
            chunk.extend(b"\r\n");
            while sent.load(std::sync::atomic::Ordering::Relaxed) < SEND_MAX {
                if write_half.write_all(&chunk).await.is_err() {
                    return;
                }
                sent.fetch_add(chunk.len(), std::sync::atomic::Ordering::Relaxed);
            }
        }
    });
    let mut received = Vec::new();
    let mut buf = [0u8; 8192];
    let answered = tokio::time::timeout(GUARD, async {
        loop {
            match read_half.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(k) => received.extend_from_slice(&buf[..k]),
            }
            if received.windows(4).any(|w| w == b"\r\n\r\n") {
                return;
            }
        }
    })
    .await;
    assert!(answered.is_ok(), "no answer to an endless body");
    let sent_when_answered = sent.load(std::sync::atomic::Ordering::Relaxed);
    let answer = RawAnswer::parse(&received).expect("an HTTP response");
    assert_eq!(answer.status, 413);
    assert_eq!(answer.header("connection"), Some("close"));
    assert!(
        sent_when_answered < SEND_MAX / 4,
        "answered only after {sent_when_answered} bytes"
    );
    // The server stops reading: the sender fails long before it could send everything.
    tokio::time::timeout(GUARD, sender)
        .await
        .expect("the server closed the connection")
        .expect("sender");
    assert!(sent.load(std::sync::atomic::Ordering::Relaxed) < SEND_MAX);
    assert_eq!(ledger.event_count().await, n);
    ledger.get("/healthz").await.expect(200);
    ledger.finish().await;
}

// 6. Deeply nested JSON → 400 malformed_json, and no stack overflow.

#[tokio::test]
async fn item_06_deep_nesting_is_400_without_overflowing_the_stack() {
    let (ledger, n) = market_with(|_| {}).await;
    let depth = 100_000;
    let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let objects = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
    let unclosed = "[".repeat(depth);
    let in_metadata = format!(
        r#"{{"code":"carol","metadata":{{"a":{}{}}}}}"#,
        "[".repeat(1000),
        "]".repeat(1000)
    );
    for (path, body) in [
        ("/v1/transactions", arrays.as_str()),
        ("/v1/transfers", objects.as_str()),
        ("/v1/transactions/batch", unclosed.as_str()),
        ("/v1/accounts", in_metadata.as_str()),
    ] {
        let answer = post_bytes(&ledger, path, "deep", body.as_bytes()).await;
        ledger
            .assert_refused(&answer, 400, "malformed_json", n)
            .await;
    }
    ledger.get("/healthz").await.expect(200);
    ledger.finish().await;
}

// 7. Amounts that are not a positive decimal string at the asset's scale → 422.

#[tokio::test]
async fn item_07_bad_amounts_are_422() {
    let (ledger, _) = market_with(|_| {}).await;
    let not_amounts: Vec<Value> = [
        "0",
        "0.00",
        "-1",
        "+1",
        "1e3",
        "1E3",
        "NaN",
        "Infinity",
        "",
        " 1",
        "1,000",
        "0x10",
        "１",
        "1.",
        ".5",
        // Beyond the 96-bit mantissa of the balance type.
        "79228162514264337593543950336",
    ]
    .into_iter()
    .map(Value::from)
    .chain([json!(1.5), json!(15), json!(1e3), json!(null), json!(["1"])])
    .collect();
    let mut cases = Vec::new();
    for amount in &not_amounts {
        let posting = transfer(amount.clone());
        cases.extend([
            ("/v1/transfers", posting.clone()),
            ("/v1/transactions", json!({"postings": [posting]})),
            ("/v1/trades", with(&trade(), "quantity", amount.clone())),
            ("/v1/trades", with(&trade(), "price", amount.clone())),
            ("/v1/trades", trade_with_fee(json!({"amount": amount}))),
        ]);
    }
    // Within the decimal type but beyond the balance type at the asset's scale (an amount that
    // could never be held; `balance_overflow` is for a sum of valid amounts that would overflow).
    cases.push((
        "/v1/transfers",
        transfer(json!("79228162514264337593543950335")),
    ));
    each_refused(&ledger, &cases, 422, "validation_error").await;
    // More decimal places than the asset has: refused, never rounded.
    all_refused(
        &ledger,
        "/v1/transfers",
        &[transfer(json!("1.001")), transfer(json!("0.000000001"))],
        422,
        "amount_precision",
    )
    .await;
    ledger.finish().await;
}

// 8. Unknown or lower-case asset codes → 422.

#[tokio::test]
async fn item_08_unknown_or_lower_case_assets_are_422() {
    let (ledger, _) = market_with(|_| {}).await;
    let mut cases = Vec::new();
    for code in [
        "usd",
        "Usd",
        "US D",
        "USD\u{0}",
        "ＵＳＤ",
        "",
        "U$D",
        "USD\n",
    ] {
        cases.extend([
            ("/v1/assets", json!({"code": code, "scale": 2})),
            ("/v1/transfers", with(&transfer(json!("1")), "asset", code)),
            ("/v1/trades", with(&trade(), "instrument", code)),
            ("/v1/trades", with(&trade(), "currency", code)),
            ("/v1/trades", trade_with_fee(json!({"asset": code}))),
        ]);
    }
    each_refused(&ledger, &cases, 422, "validation_error").await;
    // Well formed but never defined.
    let unknown = [
        ("/v1/transfers", with(&transfer(json!("1")), "asset", "EUR")),
        ("/v1/trades", trade_with_fee(json!({"asset": "EUR"}))),
    ];
    each_refused(&ledger, &unknown, 422, "asset_not_found").await;
    ledger.finish().await;
}

// 9. Account codes with look-alikes, invisible, direction or control characters → 422, in a
// command and in a path.

#[tokio::test]
async fn item_09_deceptive_account_codes_are_422_in_bodies_and_paths() {
    let (ledger, _) = market_with(|_| {}).await;
    let deceptive = [
        "\u{430}lice:cash",   // Cyrillic а
        "alice:c\u{430}sh",   // Cyrillic а in a later segment
        "alice\u{200b}:cash", // zero-width space
        "alice:cash\u{feff}", // zero-width no-break space
        "alice\u{200f}:cash", // right-to-left mark
        "\u{202e}hsac:ecila", // right-to-left override
        "alice:cash\u{7}",    // BEL
        "alice\u{0}:cash",    // NUL
        "alice:cash\n",       // line feed
        "alice:cash\u{85}",   // next line (C1 control)
        "ALICE:cash",         // upper case
        "alice:ｃash",        // fullwidth c
    ];
    let mut cases = Vec::new();
    let mut paths = Vec::new();
    for code in deceptive {
        cases.extend([
            ("/v1/accounts", json!({"code": code})),
            ("/v1/transfers", with(&transfer(json!("1")), "source", code)),
            (
                "/v1/transfers",
                with(&transfer(json!("1")), "destination", code),
            ),
            ("/v1/trades", with(&trade(), "buyer", code)),
            ("/v1/trades", trade_with_fee(json!({"account": code}))),
        ]);
        let code = encode(code);
        paths.extend([
            format!("/v1/accounts/{code}"),
            format!("/v1/accounts/{code}/history"),
            format!("/v1/accounts/{code}/balances"),
            format!("/v1/accounts/{code}/statement?asset=USD"),
        ]);
    }
    each_refused(&ledger, &cases, 422, "validation_error").await;
    all_gets_refused(&ledger, &paths, 422, "validation_error").await;
    // Bytes that are not UTF-8 cannot name anything: a 400.
    all_gets_refused(
        &ledger,
        &["/v1/accounts/alice%FF".to_owned()],
        400,
        "invalid_request",
    )
    .await;
    // A well-formed code that was never opened is still simply not found.
    all_gets_refused(
        &ledger,
        &["/v1/accounts/nobody:cash".to_owned()],
        404,
        "account_not_found",
    )
    .await;
    ledger.finish().await;
}

// 10. `limit` outside 1–1000 on list endpoints → 400 invalid_request, never clamped.

#[tokio::test]
async fn item_10_limit_out_of_range_is_400_never_clamped() {
    let (ledger, _) = market_with(|_| {}).await;
    let mut paths = Vec::new();
    for list in [
        "/v1/accounts",
        "/v1/accounts/alice:cash/history",
        "/v1/events",
    ] {
        for limit in [
            "0",
            "-1",
            "1001",
            "1000000",
            "99999999999999999999",
            "ten",
            "1.5",
            "",
        ] {
            paths.push(format!("{list}?limit={limit}"));
        }
        paths.push(format!("{list}?limit=1&limit=2"));
    }
    all_gets_refused(&ledger, &paths, 400, "invalid_request").await;
    for list in ["/v1/accounts", "/v1/events"] {
        ledger.get(&format!("{list}?limit=1000")).await.expect(200);
        let one = ledger.get(&format!("{list}?limit=1")).await;
        one.expect(200);
        assert_eq!(one.body["items"].as_array().map(Vec::len), Some(1));
    }
    ledger.finish().await;
}

// 11. Forged or altered pagination cursors → 400; real ones survive a restart.

#[tokio::test]
async fn item_11_cursors_are_authenticated_and_survive_a_restart() {
    let (mut ledger, _) = market_with(|_| {}).await;
    for i in 0..3 {
        ledger
            .transfer(&format!("h{i}"), "world:bank", "alice:cash", "USD", "1")
            .await
            .expect(201);
    }
    let page = ledger.get("/v1/accounts?limit=2").await;
    page.expect(200);
    let cursor = page.body["next_cursor"]
        .as_str()
        .expect("cursor")
        .to_owned();
    let second = ledger
        .get(&format!("/v1/accounts?limit=2&cursor={cursor}"))
        .await;
    second.expect(200);
    let history = ledger
        .get("/v1/accounts/alice:cash/history?asset=USD&limit=1")
        .await;
    history.expect(200);
    let history_cursor = history.body["next_cursor"]
        .as_str()
        .expect("cursor")
        .to_owned();

    let (content, tag) = cursor.split_once('.').expect("content.tag");
    let flip = |s: &str| {
        let mut chars: Vec<char> = s.chars().collect();
        chars[0] = if chars[0] == '0' { '1' } else { '0' };
        chars.into_iter().collect::<String>()
    };
    let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    let forged = [
        "alice:cash".to_owned(),                        // the content alone
        format!("{}.{tag}", hex("alice:cash")),         // other content, the old tag
        format!("{}.{tag}", flip(content)),             // altered content
        format!("{content}.{}", flip(tag)),             // altered tag
        format!("{content}.{}", &tag[..tag.len() - 2]), // shortened tag
        format!("{content}."),
        format!("{}.{}", hex("alice:cash"), "0".repeat(64)),
        "x".repeat(5000),
    ];
    let mut paths: Vec<String> = forged
        .iter()
        .map(|c| format!("/v1/accounts?cursor={}", encode(c)))
        .collect();
    // A genuine cursor is good only for the list and filters it was issued for.
    paths.push(format!("/v1/accounts?prefix=bob&cursor={cursor}"));
    paths.push(format!("/v1/accounts?cursor={history_cursor}"));
    paths.push(format!(
        "/v1/accounts/alice:cash/history?asset=USD&cursor={cursor}"
    ));
    paths.push(format!(
        "/v1/accounts/bob:cash/history?asset=USD&cursor={history_cursor}"
    ));
    paths.push(format!(
        "/v1/accounts/alice:cash/history?cursor={history_cursor}"
    ));
    let (h_content, h_tag) = history_cursor.split_once('.').expect("content.tag");
    paths.push(format!(
        "/v1/accounts/alice:cash/history?asset=USD&cursor={}.{h_tag}",
        hex("999999.0")
    ));
    paths.push(format!(
        "/v1/accounts/alice:cash/history?asset=USD&cursor={h_content}.{}",
        flip(h_tag)
    ));
    all_gets_refused(&ledger, &paths, 400, "invalid_request").await;

    // The key is the database's: after a restart the same cursors give the same pages.
    ledger.restart().await;
    let again = ledger
        .get(&format!("/v1/accounts?limit=2&cursor={cursor}"))
        .await;
    again.expect(200);
    assert_eq!(again.body["items"], second.body["items"]);
    ledger
        .get(&format!(
            "/v1/accounts/alice:cash/history?asset=USD&limit=1&cursor={history_cursor}"
        ))
        .await
        .expect(200);
    ledger.finish().await;
}

// 12. Filter and cursor values that look like SQL → 400 (or nothing found), never a database error.

#[tokio::test]
async fn item_12_sql_in_filters_and_cursors_is_400() {
    let (ledger, n) = market_with(|_| {}).await;
    let mut paths = Vec::new();
    for sql in [
        "' OR 1=1 --",
        ";DROP TABLE events",
        "'; DROP TABLE events; --",
        "1 UNION SELECT secret FROM cursor_key",
        "\\x27",
    ] {
        let q = encode(sql);
        paths.extend([
            format!("/v1/accounts?prefix={q}"),
            format!("/v1/accounts?cursor={q}"),
            format!("/v1/accounts?limit={q}"),
            format!("/v1/accounts?min_position={q}"),
            format!("/v1/accounts/alice:cash/history?asset={q}"),
            format!("/v1/accounts/alice:cash/history?cursor={q}"),
            format!("/v1/accounts/alice:cash/statement?asset={q}"),
            format!("/v1/accounts/alice:cash/statement?asset=USD&from={q}"),
            format!("/v1/accounts/alice:cash/balances?at={q}"),
            format!("/v1/accounts/alice:cash/balances?at_position={q}"),
            format!("/v1/events?after={q}"),
            format!("/v1/events/stream?after={q}"),
            format!("/v1/audit/consistency?from=1&from_hash={q}&to=2"),
        ]);
    }
    all_gets_refused(&ledger, &paths, 400, "invalid_request").await;
    let stream = ledger
        .client
        .get(ledger.url("/v1/events/stream"))
        .header("last-event-id", "1; DROP TABLE events")
        .send()
        .await
        .expect("GET");
    assert_eq!(stream.status().as_u16(), 400);
    // In a path: not an account code (422), not a transaction id (404).
    all_gets_refused(
        &ledger,
        &[format!("/v1/accounts/{}", encode("' OR 1=1 --"))],
        422,
        "validation_error",
    )
    .await;
    all_gets_refused(
        &ledger,
        &[format!("/v1/transactions/{}", encode("' OR 1=1 --"))],
        404,
        "transaction_not_found",
    )
    .await;
    // A filter that is well formed but matches nothing is just an empty page.
    let empty = ledger.get("/v1/accounts?prefix=zzz--").await;
    empty.expect(200);
    assert_eq!(empty.body["items"], json!([]));
    assert_eq!(ledger.event_count().await, n);
    ledger.get("/v1/audit/verify").await.expect(200);
    ledger.finish().await;
}

// 13. Slow clients: a connection that does not finish its headers, or its body, in time is closed,
// and the server serves others meanwhile.

#[tokio::test]
async fn item_13_slow_clients_are_disconnected_while_others_are_served() {
    let (ledger, n) = market_with(|c| {
        c.header_read_timeout_ms = 500;
        c.body_read_timeout_ms = 500;
    })
    .await;
    let addr = ledger.base.trim_start_matches("http://").to_owned();
    // A client of its own that does not keep idle connections, which this short timeout closes.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");

    // Slow loris: headers a byte at a time, never finished.
    let loris = TcpStream::connect(&addr).await.expect("connect");
    let (mut loris_read, mut loris_write) = loris.into_split();
    let dripping = tokio::spawn(async move {
        if loris_write
            .write_all(b"GET /v1/assets HTTP/1.1\r\nhost: ledger\r\n")
            .await
            .is_err()
        {
            return;
        }
        for byte in b"x-slow: ".iter().cycle().take(10_000) {
            if loris_write.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    // A silent connection: not one byte.
    let mut silent = TcpStream::connect(&addr).await.expect("connect");

    // Meanwhile the server answers others.
    let served = client
        .get(ledger.url("/v1/assets"))
        .send()
        .await
        .expect("GET");
    assert_eq!(served.status().as_u16(), 200);
    assert!(!dripping.is_finished(), "the slow client is still sending");

    let closed = tokio::time::timeout(GUARD, read_to_close(&mut loris_read))
        .await
        .expect("the slow-loris connection is closed");
    assert!(
        RawAnswer::parse(&closed).is_none_or(|a| a.status == 408),
        "{closed:?}"
    );
    tokio::time::timeout(GUARD, dripping)
        .await
        .expect("the server stopped reading")
        .expect("dripping");
    tokio::time::timeout(GUARD, read_to_close(&mut silent))
        .await
        .expect("the silent connection is closed");

    // A body a byte at a time: 408 request_timeout, then the connection is closed.
    let body = br#"{"code":"EUR","scale":2}"#;
    let mut slow_body = TcpStream::connect(&addr).await.expect("connect");
    slow_body
        .write_all(
            format!(
                "POST /v1/assets HTTP/1.1\r\nhost: ledger\r\ncontent-type: application/json\r\n\
                 idempotency-key: slow-body\r\ncontent-length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .expect("headers");
    let (mut body_read, mut body_write) = slow_body.into_split();
    let trickle = tokio::spawn(async move {
        for byte in body {
            if body_write.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let received = tokio::time::timeout(GUARD, read_to_close(&mut body_read))
        .await
        .expect("the slow-body connection is closed");
    let answer = RawAnswer::parse(&received).expect("an HTTP response");
    assert_eq!(answer.status, 408);
    assert_eq!(answer.code(), "request_timeout");
    assert_eq!(answer.header("connection"), Some("close"));
    trickle.abort();

    let served = client
        .get(ledger.url("/v1/assets"))
        .send()
        .await
        .expect("GET");
    assert_eq!(served.status().as_u16(), 200);
    assert_eq!(ledger.event_count().await, n);
    ledger.finish().await;
}

// 14. A flood beyond capacity → 503 overloaded with Retry-After; admitted requests are answered.

#[tokio::test]
async fn item_14_a_flood_of_writes_beyond_the_queue_is_503_with_retry_after() {
    let (ledger, n) = market_with(|c| c.queue_capacity = 1).await;

    // Writes beyond the writer's queue: refused at once, nothing appended for them.
    let flood = (0..200).map(|i| {
        let ledger = &ledger;
        async move {
            ledger
                .transfer(
                    &format!("flood-{i}"),
                    "world:bank",
                    "alice:cash",
                    "USD",
                    "1",
                )
                .await
        }
    });
    let answers = futures_util::future::join_all(flood).await;
    let mut accepted = 0;
    let mut refused = 0;
    for answer in &answers {
        match answer.status {
            201 => accepted += 1,
            503 => {
                refused += 1;
                // The in-flight limit and the writer's queue answer the same way.
                assert_eq!(answer.code(), "overloaded", "{}", answer.text);
                assert_eq!(answer.header("retry-after"), Some("1"));
            }
            other => panic!("{other}: {}", answer.text),
        }
    }
    assert!(
        refused > 0,
        "a flood of 200 with room for 1 was all admitted"
    );
    assert!(accepted > 0, "nothing was admitted");
    assert_eq!(ledger.event_count().await, n + accepted);
    ledger.finish().await;
}

#[tokio::test]
async fn item_14_requests_beyond_the_in_flight_limit_are_503_with_retry_after() {
    let (ledger, n) = market_with(|c| {
        c.requests_in_flight_max = 2;
        c.min_position_wait_ms = 3_000;
    })
    .await;

    // Two requests that wait hold both places...
    let waiting = (0..2).map(|_| ledger.get("/v1/assets?min_position=1000000"));
    let waiting = futures_util::future::join_all(waiting);
    let probe = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let refused = ledger.get("/v1/assets").await;
        // ...while health checks are still answered.
        let health = ledger.get("/healthz").await;
        (refused, health)
    };
    let (waited, (refused, health)) = tokio::join!(waiting, probe);
    for answer in waited {
        ledger
            .assert_refused(&answer, 409, "position_not_reached", n)
            .await;
    }
    ledger.assert_refused(&refused, 503, "overloaded", n).await;
    assert_eq!(refused.header("retry-after"), Some("1"));
    health.expect(200);
    // With the places free again, requests are admitted.
    ledger.get("/v1/assets").await.expect(200);
    ledger.finish().await;
}

/// Metadata that once broke the chain for good (numbers `jsonb` respelled) or knocked the writer
/// over (NUL, which `jsonb` refuses at commit), and the other odd but valid values a client can send.
const KEPT_METADATA: &[&str] = &[
    r#"{"x":1e16}"#,
    r#"{"x":10000000000000000.0}"#,
    r#"{"x":-1e16}"#,
    r#"{"x":1e-6,"y":1e-7}"#,
    r#"{"x":123456789012345678901}"#,
    r#"{"x":3.141592653589793238462643383279}"#,
    r#"{"x":1.50,"y":1E3,"z":1e+2}"#,
    r#"{"x":-0.0,"y":-0,"z":-0e7}"#,
    r#"{"x":1.7976931348623157e308,"y":-1E-400,"z":1e-999999999}"#,
    r#"{"x":"a\u0000b"}"#,
    r#"{"x":"\u0001\u001f\u007f\t\b","\u0000":0}"#,
    r#"{"x":"\uFFFE\uFFFF\uFDD0\uDBFF\uDFFF"}"#,
    r#"{"x":"😀\ud83d\ude00é\/"}"#,
    r#"{ "b" : [ 1 , { "z" : null , "a" : true } ] , "a" : "" }"#,
];

fn transfer_with_metadata(metadata: &str) -> String {
    format!(
        r#"{{"source":"world:bank","destination":"alice:cash","asset":"USD","amount":"1.00","metadata":{metadata}}}"#
    )
}

#[tokio::test]
async fn item_15_metadata_is_kept_as_sent_and_can_break_neither_the_chain_nor_the_writer() {
    let (ledger, _) = market_with(|_| {}).await;
    for (i, metadata) in KEPT_METADATA.iter().enumerate() {
        let body = transfer_with_metadata(metadata);
        let answer = post_bytes(
            &ledger,
            "/v1/transfers",
            &format!("kept-{i}"),
            body.as_bytes(),
        )
        .await;
        answer.expect(201);
        // Served as the canonical text of what was sent: numbers as written, strings as sent.
        let canonical = domain::json::canonicalize(metadata).unwrap();
        let served = format!(r#""metadata":{canonical}"#);
        assert!(answer.text.contains(&served), "{metadata}: {}", answer.text);
        let id = answer.body["id"].as_str().unwrap();
        let read = ledger.get(&format!("/v1/transactions/{id}")).await;
        assert!(read.text.contains(&served), "{metadata}: {}", read.text);
    }
    // In one batch, with ordinary commands beside them: nothing fails because of them.
    let items: Vec<String> = KEPT_METADATA
        .iter()
        .enumerate()
        .map(|(i, metadata)| {
            format!(
                r#"{{"idempotency_key":"batch-{i}","transfer":{}}}"#,
                transfer_with_metadata(metadata)
            )
        })
        .chain([r#"{"idempotency_key":"plain","transfer":{"source":"world:bank","destination":"alice:cash","asset":"USD","amount":"2.00"}}"#.to_owned()])
        .collect();
    let batch = format!(r#"{{"commands":[{}]}}"#, items.join(","));
    let answer = ledger
        .post_raw("/v1/transactions/batch", &[JSON], batch.into_bytes())
        .await;
    answer.expect(200);
    let results = answer.body["results"].as_array().unwrap();
    assert!(
        results.iter().all(|r| r["status"] == 201),
        "{}",
        answer.text
    );
    ledger.get("/readyz").await.expect(200);
    let report = ledger.get("/v1/audit/verify").await;
    report.expect(200);
    assert_eq!(report.body["intact"], true, "{}", report.text);
    assert_eq!(
        report.body["stored_form_differs_count"], 0,
        "{}",
        report.text
    );
    ledger.finish().await;
}

#[tokio::test]
async fn item_16_a_lone_surrogate_or_a_number_beyond_binary64_is_422() {
    let (ledger, n) = market_with(|_| {}).await;
    for (i, metadata) in [
        r#"{"x":"\ud800"}"#,
        r#"{"x":"a\udc00"}"#,
        r#"{"x":"\ud800\u0041"}"#,
        r#"{"\udfff":1}"#,
        r#"{"x":1e309}"#,
        r#"{"x":[1,{"y":-1E999999999}]}"#,
    ]
    .iter()
    .enumerate()
    {
        let body = transfer_with_metadata(metadata);
        let answer = post_bytes(
            &ledger,
            "/v1/transfers",
            &format!("lone-{i}"),
            body.as_bytes(),
        )
        .await;
        ledger
            .assert_refused(&answer, 422, "validation_error", n)
            .await;
    }
    let body = br#"{"code":"alice:\ud800","allow_negative":false}"#;
    let answer = post_bytes(&ledger, "/v1/accounts", "lone-code", body).await;
    ledger
        .assert_refused(&answer, 422, "validation_error", n)
        .await;
    ledger.finish().await;
}

#[tokio::test]
async fn item_17_metadata_above_4_kib_in_canonical_form_is_422() {
    let (ledger, n) = market_with(|_| {}).await;
    let at_limit = format!(r#"{{"note":"{}"}}"#, "x".repeat(4096 - 11));
    let body = transfer_with_metadata(&at_limit);
    post_bytes(&ledger, "/v1/transfers", "at-limit", body.as_bytes())
        .await
        .expect(201);
    let n = n + 1;
    let over = format!(r#"{{"note":"{}"}}"#, "x".repeat(4096 - 10));
    let body = transfer_with_metadata(&over);
    let answer = post_bytes(&ledger, "/v1/transfers", "over-limit", body.as_bytes()).await;
    ledger
        .assert_refused(&answer, 422, "validation_error", n)
        .await;
    // Each NUL is six bytes in canonical form (`\u0000`), and it is that form that is bounded.
    let nuls = format!(r#"{{"note":"{}"}}"#, "\\u0000".repeat(700));
    let body = transfer_with_metadata(&nuls);
    let answer = post_bytes(&ledger, "/v1/transfers", "nul-limit", body.as_bytes()).await;
    ledger
        .assert_refused(&answer, 422, "validation_error", n)
        .await;
    ledger.finish().await;
}
