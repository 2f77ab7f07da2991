//! Fuzz-style tests of request parsing: the path every POST body takes from bytes to a command
//! (`extract::parse_json`, then `CommandRequest::command`), fed arbitrary bytes and arbitrary
//! JSON-like documents built from the real field names, with duplicate keys (plain or hidden by
//! escapes), deep nesting, truncation and stray bytes. Parsing must never panic, and must answer
//! either a request or a typed client error (4xx, never 5xx); a parsed request must become a
//! command or a typed client error too, and its idempotency fingerprint must not depend on how
//! the JSON was written.
//!
//! The number of cases of each property is `PROPTEST_CASES` (default below).

use api::error::ApiError;
use api::extract::{parse_json, RequestOrigin};
use api::requests::{
    AccountLimitsCommand, AccountLimitsRequest, AccountStatusCommand, AccountStatusRequest,
    DefineAssetRequest, OpenAccountRequest, TradeRequest, TransactionAction,
    TransactionActionCommand, TransactionActionRequest, TransactionRequest, TransferRequest,
};
use api::routes::write::CommandRequest;
use api::routes::BatchRequest;
use domain::command::StatusChange;
use domain::{AccountRef, TransactionId};
use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Cases per property when `PROPTEST_CASES` is not set.
const DEFAULT_CASES: u32 = 16_000;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

/// Every field name of every request body, and some the server owns (which it must refuse).
const FIELDS: &[&str] = &[
    "code",
    "scale",
    "allow_negative",
    "metadata",
    "source",
    "destination",
    "asset",
    "amount",
    "postings",
    "conditions",
    "expected_versions",
    "pending",
    "expires_at",
    "timeout_s",
    "account",
    "balance",
    "op",
    "version",
    "payer",
    "buyer",
    "seller",
    "instrument",
    "quantity",
    "price",
    "currency",
    "fees",
    "min_balance",
    "max_balance",
    "amounts",
    "force",
    "atomic",
    "commands",
    "idempotency_key",
    "transaction",
    "transfer",
    "trade",
    "position",
    "id",
    "hash",
    "recorded_at",
];

/// String values: valid ones for every field, and the hostile ones of the catalogue in docs/api.md.
const STRINGS: &[&str] = &[
    "USD",
    "AAPL",
    "BTC_2",
    "usd",
    "ＵＳＤ",
    "",
    " ",
    "alice:cash",
    "world:bank",
    "bob:cash",
    "аlice:cash",
    "alice\u{200b}:cash",
    "alice\u{0}",
    "a:",
    ":a",
    "01890a5d-ac96-774b-bcce-b302099a8057",
    "00000000-0000-0000-0000-000000000000",
    "10",
    "10.50",
    "0.01",
    "0",
    "0.00",
    "-5",
    "-500.00",
    "+5",
    "1e5",
    "1E-2",
    " 1",
    "1,000",
    "NaN",
    "Infinity",
    ".5",
    "5.",
    "79228162514264337593543950335",
    "79228162514264337593543950336",
    "0.0000000000000000000000000001",
    "0.00000000000000000000000000001",
    "99999999999999999999999999999999999999999999999999999999999999999",
    "available",
    "posted",
    "gte",
    "lte",
    "eq",
    "2030-01-01T00:00:00Z",
    "1970-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999999Z",
    "+262143-01-01T00:00:00Z",
    "2030-13-01T00:00:00Z",
    "not a date",
    "ledger:expire:x",
    "key-1",
    "post",
    "void",
    "reverse",
];

/// A JSON document as written, so that an object may hold a key twice and a key may be escaped.
#[derive(Debug, Clone)]
enum Doc {
    Null,
    Bool(bool),
    /// The number as written.
    Number(String),
    Str(String),
    Array(Vec<Doc>),
    /// Members in order; `bool`: write the key with every character escaped as `\uXXXX`.
    Object(Vec<(String, bool, Doc)>),
}

impl Doc {
    fn write(&self, out: &mut String) {
        match self {
            Doc::Null => out.push_str("null"),
            Doc::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Doc::Number(n) => out.push_str(n),
            Doc::Str(s) => out.push_str(&serde_json::Value::String(s.clone()).to_string()),
            Doc::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Doc::Object(members) => {
                out.push('{');
                for (i, (key, escaped, value)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    if *escaped {
                        out.push('"');
                        for unit in key.encode_utf16() {
                            out.push_str(&format!("\\u{unit:04x}"));
                        }
                        out.push('"');
                    } else {
                        out.push_str(&serde_json::Value::String(key.clone()).to_string());
                    }
                    out.push(':');
                    value.write(out);
                }
                out.push('}');
            }
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = String::new();
        self.write(&mut out);
        out.into_bytes()
    }

    /// Whether some object, at any depth, holds a key twice.
    fn has_duplicate_key(&self) -> bool {
        match self {
            Doc::Array(items) => items.iter().any(Doc::has_duplicate_key),
            Doc::Object(members) => {
                let mut seen = std::collections::HashSet::new();
                members.iter().any(|(key, _, _)| !seen.insert(key))
                    || members.iter().any(|(_, _, v)| v.has_duplicate_key())
            }
            _ => false,
        }
    }

    fn depth(&self) -> usize {
        match self {
            Doc::Array(items) => 1 + items.iter().map(Doc::depth).max().unwrap_or(0),
            Doc::Object(members) => {
                1 + members.iter().map(|(_, _, v)| v.depth()).max().unwrap_or(0)
            }
            _ => 0,
        }
    }
}

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u64..40).prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| f.to_string()),
        // (Beyond f64, such as 1e400, serde_json refuses as malformed: the byte-level tests
        // reach those; documents here stay well-formed so the strict rules can be checked.)
        Just("1e300".to_owned()),
        Just("-0".to_owned()),
        Just("18446744073709551616".to_owned()),
        Just("1.5".to_owned()),
    ]
}

fn leaf() -> impl Strategy<Value = Doc> {
    prop_oneof![
        1 => Just(Doc::Null),
        1 => any::<bool>().prop_map(Doc::Bool),
        2 => number().prop_map(Doc::Number),
        6 => prop::sample::select(STRINGS).prop_map(|s| Doc::Str(s.to_owned())),
        1 => "\\PC{0,20}".prop_map(Doc::Str),
        1 => Just(Doc::Object(Vec::new())),
    ]
}

fn key() -> impl Strategy<Value = (String, bool)> {
    (
        prop_oneof![
            12 => prop::sample::select(FIELDS).prop_map(str::to_owned),
            1 => "[a-z_]{0,8}",
            1 => "\\PC{0,6}",
        ],
        prop::bool::weighted(0.05),
    )
}

/// Documents of the real field names, nested as requests nest (postings, fees, commands,
/// metadata), and sometimes much deeper.
fn doc() -> impl Strategy<Value = Doc> {
    leaf().prop_recursive(8, 96, 8, |inner| {
        prop_oneof![
            1 => prop::collection::vec(inner.clone(), 0..5).prop_map(Doc::Array),
            3 => prop::collection::vec((key(), inner), 0..9).prop_map(|members| {
                Doc::Object(members.into_iter().map(|((k, e), v)| (k, e, v)).collect())
            }),
        ]
    })
}

/// A valid-looking value for a field, or garbage: so that many documents parse.
fn field_value(field: &'static str) -> BoxedStrategy<Doc> {
    let s = |values: &'static [&'static str]| {
        prop::sample::select(values)
            .prop_map(|v| Doc::Str(v.to_owned()))
            .boxed()
    };
    let good = match field {
        "code" => s(&["USD", "AAPL", "alice:cash", "world:bank", "a-b_c:0"]),
        "asset" | "instrument" | "currency" => s(&["USD", "AAPL", "BTC"]),
        "source" | "destination" | "account" | "payer" | "buyer" | "seller" => s(&[
            "alice:cash",
            "bob:cash",
            "world:bank",
            "01890a5d-ac96-774b-bcce-b302099a8057",
        ]),
        "amount" | "quantity" | "price" => s(&["10", "0.25", "100.00", "0.001", "5"]),
        "min_balance" | "max_balance" => {
            prop_oneof![s(&["-500.00", "0", "1000"]), Just(Doc::Null).boxed()].boxed()
        }
        "balance" => s(&["available", "posted"]),
        "op" => s(&["gte", "lte", "eq"]),
        "expires_at" => s(&["2030-01-01T00:00:00Z", "2020-01-01T00:00:00Z"]),
        "idempotency_key" => s(&["k-1", "k-2", "k-3"]),
        "scale" | "timeout_s" | "version" => {
            (0u64..40).prop_map(|n| Doc::Number(n.to_string())).boxed()
        }
        "allow_negative" | "pending" | "force" | "atomic" => {
            any::<bool>().prop_map(Doc::Bool).boxed()
        }
        "metadata" => prop::collection::vec((key(), leaf()), 0..3)
            .prop_map(|m| Doc::Object(m.into_iter().map(|((k, e), v)| (k, e, v)).collect()))
            .boxed(),
        "amounts" => prop::collection::vec(
            prop::sample::select(SETTLE_AMOUNTS).prop_map(|v| Doc::Str(v.to_owned())),
            0..3,
        )
        .prop_map(Doc::Array)
        .boxed(),
        _ => leaf().boxed(),
    };
    prop_oneof![40 => good, 2 => leaf(), 1 => doc()].boxed()
}

/// Fields a request may leave out, and that constrain each other when present: they are present
/// less often, so that many documents are requests.
const OPTIONAL: &[&str] = &[
    "metadata",
    "pending",
    "expires_at",
    "timeout_s",
    "allow_negative",
    "force",
    "amounts",
    "min_balance",
    "max_balance",
    "conditions",
    "expected_versions",
    "fees",
];

fn presence(field: &str) -> f64 {
    if OPTIONAL.contains(&field) {
        0.2
    } else {
        0.9
    }
}

/// An object with each of these fields present (valid-looking or not) or absent, in any order,
/// sometimes with a stray extra member.
fn object_of(fields: &'static [&'static str]) -> BoxedStrategy<Doc> {
    let members: Vec<BoxedStrategy<Option<(String, bool, Doc)>>> = fields
        .iter()
        .map(|field| {
            prop::option::weighted(
                presence(field),
                (field_value(field), prop::bool::weighted(0.02))
                    .prop_map(move |(v, escaped)| (field.to_string(), escaped, v)),
            )
            .boxed()
        })
        .collect();
    (
        members,
        prop::option::weighted(0.1, (key(), doc())),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(members, extra, index)| {
            let mut members: Vec<(String, bool, Doc)> = members.into_iter().flatten().collect();
            if let Some(((k, e), v)) = extra {
                let at = index.index(members.len() + 1);
                members.insert(at, (k, e, v));
            }
            Doc::Object(members)
        })
        .boxed()
}

const SETTLE_AMOUNTS: &[&str] = &["1", "0", "0.5", "-1"];
const BATCH_KINDS: &[&str] = &["transfer", "transaction", "trade"];
const POSTING: &[&str] = &["source", "destination", "asset", "amount"];
const CONDITION: &[&str] = &["account", "asset", "balance", "op", "amount"];
const VERSION: &[&str] = &["account", "version"];
const FEE: &[&str] = &["payer", "account", "asset", "amount"];
const TRANSFER: &[&str] = &[
    "source",
    "destination",
    "asset",
    "amount",
    "metadata",
    "pending",
    "expires_at",
    "timeout_s",
];
const TRADE: &[&str] = &[
    "buyer",
    "seller",
    "instrument",
    "quantity",
    "price",
    "currency",
    "metadata",
    "pending",
    "expires_at",
    "timeout_s",
];

/// Adds list-valued members (postings, fees, conditions, ...) built from their own fields.
fn with_lists(
    base: BoxedStrategy<Doc>,
    lists: Vec<(&'static str, &'static [&'static str], usize)>,
) -> BoxedStrategy<Doc> {
    let lists: Vec<BoxedStrategy<Option<(String, bool, Doc)>>> = lists
        .into_iter()
        .map(|(name, fields, max)| {
            prop::option::weighted(
                presence(name),
                prop::collection::vec(object_of(fields), 0..max)
                    .prop_map(move |items| (name.to_owned(), false, Doc::Array(items))),
            )
            .boxed()
        })
        .collect();
    (base, lists)
        .prop_map(|(base, lists)| match base {
            Doc::Object(mut members) => {
                members.extend(lists.into_iter().flatten());
                Doc::Object(members)
            }
            other => other,
        })
        .boxed()
}

fn transfer_doc() -> BoxedStrategy<Doc> {
    with_lists(
        object_of(TRANSFER),
        vec![
            ("conditions", CONDITION, 3),
            ("expected_versions", VERSION, 3),
        ],
    )
}

fn transaction_doc() -> BoxedStrategy<Doc> {
    with_lists(
        object_of(&["metadata", "pending", "expires_at", "timeout_s"]),
        vec![
            ("postings", POSTING, 5),
            ("conditions", CONDITION, 3),
            ("expected_versions", VERSION, 3),
        ],
    )
}

fn trade_doc() -> BoxedStrategy<Doc> {
    with_lists(
        object_of(TRADE),
        vec![("fees", FEE, 3), ("conditions", CONDITION, 2)],
    )
}

fn batch_doc() -> BoxedStrategy<Doc> {
    let command = (
        object_of(&["idempotency_key"]),
        prop::sample::select(BATCH_KINDS),
        prop::bool::weighted(0.1),
        transfer_doc(),
        transaction_doc(),
        trade_doc(),
    )
        .prop_map(|(base, which, two, transfer, transaction, trade)| {
            let Doc::Object(mut members) = base else {
                return base;
            };
            let body = |name: &str| match name {
                "transfer" => transfer.clone(),
                "transaction" => transaction.clone(),
                _ => trade.clone(),
            };
            members.push((which.to_owned(), false, body(which)));
            if two {
                members.push(("trade".to_owned(), false, body("trade")));
            }
            Doc::Object(members)
        });
    (
        prop::option::of(any::<bool>()),
        prop::collection::vec(command, 0..3),
    )
        .prop_map(|(atomic, commands)| {
            let mut members = Vec::new();
            if let Some(atomic) = atomic {
                members.push(("atomic".to_owned(), false, Doc::Bool(atomic)));
            }
            members.push(("commands".to_owned(), false, Doc::Array(commands)));
            Doc::Object(members)
        })
        .boxed()
}

/// Bytes of a document, sometimes damaged: truncated, a byte replaced or inserted, or followed by
/// trailing content.
fn damaged(doc: BoxedStrategy<Doc>) -> impl Strategy<Value = (Doc, Vec<u8>, bool)> {
    (
        doc,
        prop_oneof![
            8 => Just(None),
            1 => (any::<prop::sample::Index>(), any::<u8>(), 0u8..3).prop_map(Some),
        ],
    )
        .prop_map(|(doc, damage)| {
            let mut bytes = doc.bytes();
            let intact = damage.is_none();
            if let Some((index, byte, how)) = damage {
                let at = index.index(bytes.len() + 1);
                match how {
                    0 => bytes.truncate(at),
                    1 if at < bytes.len() => bytes[at] = byte,
                    _ => bytes.insert(at, byte),
                }
            }
            (doc, bytes, intact)
        })
}

/// The error must be a client error with a problem document that encodes.
fn client_error(error: &ApiError, bytes: &[u8]) -> Result<(), TestCaseError> {
    let (status, code) = error.status_and_code();
    prop_assert!(
        status.is_client_error(),
        "{} {} for {:?}",
        status,
        code,
        String::from_utf8_lossy(bytes)
    );
    let problem = error.problem();
    prop_assert_eq!(problem.status, status.as_u16());
    prop_assert!(serde_json::to_vec(&problem).is_ok());
    Ok(())
}

/// Parses `bytes` as `T`; a parsed request is re-encoded and parsed again, and must keep its
/// fingerprint. Returns the request when it parsed.
fn parse<T: DeserializeOwned + Serialize>(bytes: &[u8]) -> Result<Option<T>, TestCaseError> {
    match parse_json::<T>(bytes) {
        Ok(request) => {
            let again =
                serde_json::to_vec(&request).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let reparsed = parse_json::<T>(&again).map_err(|e| {
                TestCaseError::fail(format!(
                    "{e}: the re-encoding {} of {} does not parse",
                    String::from_utf8_lossy(&again),
                    String::from_utf8_lossy(bytes)
                ))
            })?;
            prop_assert_eq!(
                serde_json::to_vec(&reparsed).map_err(|e| TestCaseError::fail(e.to_string()))?,
                again
            );
            Ok(Some(request))
        }
        Err(error) => {
            client_error(&error, bytes)?;
            Ok(None)
        }
    }
}

/// A parsed request becomes a command, or a client error.
fn command(request: &impl CommandRequest, bytes: &[u8]) -> Result<(), TestCaseError> {
    match request.command(chrono::Utc::now()) {
        Ok(_) => {
            prop_assert_eq!(request.fingerprint().len(), 32);
            Ok(())
        }
        Err(error) => client_error(&error, bytes),
    }
}

/// A request without an API key (a server without authentication).
fn origin() -> RequestOrigin {
    RequestOrigin(infrastructure::Origin::default())
}

fn account_ref() -> AccountRef {
    AccountRef::Code("alice:cash".parse().expect("an account code"))
}

/// Parses `bytes` as `T` and, when it parses, makes it a command.
fn through<T: CommandRequest + DeserializeOwned>(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Some(request) = parse::<T>(bytes)? {
        command(&request, bytes)?;
    }
    Ok(())
}

/// Feeds one body to every request type and each request that parses through to a command.
fn every_type(bytes: &[u8]) -> Result<(), TestCaseError> {
    through::<DefineAssetRequest>(bytes)?;
    through::<OpenAccountRequest>(bytes)?;
    through::<TransferRequest>(bytes)?;
    through::<TransactionRequest>(bytes)?;
    through::<TradeRequest>(bytes)?;
    // The commands whose account, transaction or action come from the path.
    if let Some(request) = parse::<AccountStatusRequest>(bytes)? {
        let change = AccountStatusCommand {
            account: account_ref(),
            change: StatusChange::Freeze,
            request,
        };
        command(&change, bytes)?;
    }
    if let Some(request) = parse::<AccountLimitsRequest>(bytes)? {
        let limits = AccountLimitsCommand {
            account: account_ref(),
            request,
        };
        command(&limits, bytes)?;
    }
    for action in [TransactionAction::Post, TransactionAction::Void] {
        if let Some(request) = parse::<TransactionActionRequest>(bytes)? {
            let settle = TransactionActionCommand {
                transaction_id: TransactionId(uuid::Uuid::nil()),
                action,
                request,
                original: None,
            };
            command(&settle, bytes)?;
        }
    }
    match parse_json::<BatchRequest>(bytes) {
        Ok(batch) => {
            for (index, command) in batch.commands.into_iter().enumerate() {
                match command.write_item(index, &origin(), chrono::Utc::now()) {
                    Ok(item) => prop_assert_eq!(item.fingerprint.len(), 32),
                    Err(error) => client_error(&error, bytes)?,
                }
            }
        }
        Err(error) => client_error(&error, bytes)?,
    }
    Ok(())
}

/// What the strict pass promises for a document written intact: a key twice anywhere is a 400
/// `invalid_request`, and nesting beyond 64 levels a 400 `malformed_json`, for every type.
fn strict_rules(doc: &Doc, bytes: &[u8]) -> Result<(), TestCaseError> {
    // Whichever comes first in the document is the one reported when it has both.
    let expected: &[&str] = match (
        doc.depth() > api::extract::JSON_DEPTH_MAX,
        doc.has_duplicate_key(),
    ) {
        (true, true) => &["malformed_json", "invalid_request"],
        (true, false) => &["malformed_json"],
        (false, true) => &["invalid_request"],
        (false, false) => &[],
    };
    if !expected.is_empty() {
        for result in [
            parse_json::<TransferRequest>(bytes).err(),
            parse_json::<TransactionRequest>(bytes).err(),
            parse_json::<TradeRequest>(bytes).err(),
            parse_json::<BatchRequest>(bytes).err(),
            parse_json::<OpenAccountRequest>(bytes).err(),
        ] {
            let code = result.map(|e| e.status_and_code().1);
            prop_assert!(
                code.is_some_and(|c| expected.contains(&c)),
                "{:?} instead of {:?} for {}",
                code,
                expected,
                String::from_utf8_lossy(bytes)
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_are_a_request_or_a_client_error(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        every_type(&bytes)?;
    }

    #[test]
    fn arbitrary_documents_of_the_real_fields_are_a_request_or_a_client_error(
        (doc, bytes, intact) in damaged(doc().boxed())
    ) {
        every_type(&bytes)?;
        if intact {
            strict_rules(&doc, &bytes)?;
        }
    }

    #[test]
    fn request_shaped_documents_are_a_command_or_a_client_error(
        (doc, bytes, intact) in damaged(prop_oneof![
            transfer_doc(),
            transaction_doc(),
            trade_doc(),
            batch_doc(),
            object_of(&["code", "scale", "allow_negative", "metadata"]),
            object_of(&["asset", "min_balance", "max_balance"]),
            object_of(&["amounts", "force", "metadata"]),
        ].boxed())
    ) {
        every_type(&bytes)?;
        if intact {
            strict_rules(&doc, &bytes)?;
        }
    }

    #[test]
    fn nesting_at_any_depth_is_bounded(depth in 0usize..200, object in any::<bool>(), tail in prop::collection::vec(any::<u8>(), 0..4)) {
        let (open, close) = if object { ("{\"metadata\":", "}") } else { ("[", "]") };
        let mut body = open.repeat(depth).into_bytes();
        body.extend_from_slice(b"{}");
        body.extend_from_slice(close.repeat(depth).as_bytes());
        body.extend_from_slice(&tail);
        every_type(&body)?;
        // Nested deeper than the bound: refused by the strict pass, whatever follows.
        if depth + 1 > api::extract::JSON_DEPTH_MAX {
            let code = parse_json::<TransferRequest>(&body).err().map(|e| e.status_and_code().1);
            prop_assert_eq!(code, Some("malformed_json"));
        }
    }
}

/// A guard on the generators: the request-shaped documents must reach commands of every kind,
/// or the properties above would only ever see refusals.
#[test]
fn request_shaped_documents_often_become_commands() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let kinds: [(&str, BoxedStrategy<Doc>); 4] = [
        ("transfer", transfer_doc()),
        ("transaction", transaction_doc()),
        ("trade", trade_doc()),
        ("batch", batch_doc()),
    ];
    for (name, strategy) in kinds {
        let mut commands = 0;
        for _ in 0..500 {
            let Ok(tree) = strategy.new_tree(&mut runner) else {
                panic!("no tree")
            };
            let bytes = tree.current().bytes();
            let ok = match name {
                "transfer" => parse_json::<TransferRequest>(&bytes)
                    .ok()
                    .is_some_and(|r| r.command(chrono::Utc::now()).is_ok()),
                "transaction" => parse_json::<TransactionRequest>(&bytes)
                    .ok()
                    .is_some_and(|r| r.command(chrono::Utc::now()).is_ok()),
                "trade" => parse_json::<TradeRequest>(&bytes)
                    .ok()
                    .is_some_and(|r| r.command(chrono::Utc::now()).is_ok()),
                _ => parse_json::<BatchRequest>(&bytes).ok().is_some_and(|b| {
                    b.commands
                        .into_iter()
                        .enumerate()
                        .any(|(i, c)| c.write_item(i, &origin(), chrono::Utc::now()).is_ok())
                }),
            };
            commands += usize::from(ok);
        }
        assert!(
            commands >= 25,
            "only {commands} of 500 {name} documents became commands"
        );
    }
}

/// Found by the properties above: a float in metadata read as `f64` was parsed to a neighbouring
/// value, so the ledger kept (and fingerprinted) a number the client did not send. Metadata is
/// now kept as written, so the literal itself comes back, spelling and all.
#[test]
fn a_float_in_metadata_keeps_its_value() {
    let body = br#"{"source":"world:bank","destination":"alice:cash","asset":"USD","amount":"1","metadata":{"x":1.1591457593018905e205,"y":1.50,"z":123456789012345678901}}"#;
    let request = parse_json::<TransferRequest>(body).expect("a transfer");
    let encoded = serde_json::to_string(&request).expect("encodes");
    assert!(
        encoded.contains(
            r#""metadata":{"x":1.1591457593018905e205,"y":1.50,"z":123456789012345678901}"#
        ),
        "{encoded}"
    );
}
