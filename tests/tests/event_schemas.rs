//! The JSON Schemas of docs/schemas and the Rust event types agree, and the server serves exactly
//! those files.
//!
//! For every event type, examples with every optional field set (several where the schema allows
//! some fields only apart, as a hold's `expires_at` and a reversal's `reverses`) and one with none
//! are encoded as the ledger stores them (`Event::encode`) and, as export lines, validated by a
//! real JSON Schema validator (tools/validate_events.py: Python's `jsonschema`, with formats
//! checked). The schema's properties must be the keys the examples set, and its `required` the
//! keys every example sets, at every level (postings, costs, fees, lots). Payloads that the type
//! refuses (an unknown key, a required key missing) must be refused by the schema too. The
//! (type, version) pairs with a schema must be those the domain reads.
//!
//! The validator is Python's `jsonschema` in the virtual environment scripts/test.sh makes
//! (`JSONSCHEMA_PYTHON`); without it these tests fail, as the Beancount tests do without
//! Beancount.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use domain::event::{
    AccountLimitsSet, AccountOpened, AccountStatusChanged, AssetDefined, BookingMethodSet, Cost,
    Fee, LotPick, PendingExpired, PendingPosted, PendingVoided, PeriodClosed, PeriodReopened,
    Posting, PriceMarked, TradeExecuted, TransactionPosted,
};
use domain::values::{
    AccountCode, AccountId, AccountStatus, AssetCode, BookingMethod, Metadata, Scale,
    TransactionId, TransactionKind,
};
use domain::Event;
use ledger_tests::serde_json::{self, json, Value};
use ledger_tests::TestLedger;
use rust_decimal::Decimal;
use uuid::Uuid;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn schemas_dir() -> PathBuf {
    repo().join("docs/schemas")
}

/// The Python of a virtual environment with tools/validate_events.requirements.txt installed:
/// `JSONSCHEMA_PYTHON`, else the one scripts/test.sh makes beside the build.
fn jsonschema_python() -> PathBuf {
    if let Some(python) = std::env::var_os("JSONSCHEMA_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(python);
    }
    // The test binary is <target>/debug/deps/<name>.
    let beside_build = std::env::current_exe().ok().and_then(|exe| {
        let target = exe.parent()?.parent()?.parent()?;
        Some(target.join("jsonschema-venv/bin/python"))
    });
    match beside_build {
        Some(python) if python.exists() => python,
        _ => panic!(
            "the JSON Schema validator is not installed: scripts/test.sh installs it into \
             <target>/jsonschema-venv (or set JSONSCHEMA_PYTHON to the python of a virtual \
             environment with `pip install -r tools/validate_events.requirements.txt`)"
        ),
    }
}

/// Runs tools/validate_events.py on `lines` (export lines); its status, stdout and stderr.
fn validate(name: &str, lines: &[String]) -> (bool, String, String) {
    let python = jsonschema_python();
    let path = std::env::temp_dir().join(format!(
        "ledger-event-schemas-{}-{name}.ndjson",
        std::process::id()
    ));
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let output = Command::new(python)
        .arg(repo().join("tools/validate_events.py"))
        .args(["--shown", "0"])
        .arg(&path)
        .output()
        .expect("run tools/validate_events.py");
    std::fs::remove_file(&path).unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// An export line holding `payload` (text, as stored) with an envelope of its own.
fn export_line(position: usize, event_type: &str, payload: &str) -> String {
    let envelope = json!({
        "api_key_id": Uuid::from_u128(7).to_string(),
        "idempotency_key": format!("{}:key-{position}", Uuid::from_u128(7)),
        "request_fingerprint": "ab".repeat(32),
        "request_id": "req-1",
    });
    format!(
        r#"{{"event_id":"{}","hash":"{}","metadata":{envelope},"payload":{payload},"position":{position},"recorded_at":"2026-01-05T09:00:00.123456Z","schema_version":1,"type":"{event_type}"}}"#,
        Uuid::from_u128(position as u128),
        "0f".repeat(32),
    )
}

fn account(code: &str) -> AccountCode {
    AccountCode::from_str(code).unwrap()
}

fn asset(code: &str) -> AssetCode {
    AssetCode::from_str(code).unwrap()
}

fn amount(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}

fn id(n: u128) -> TransactionId {
    TransactionId(Uuid::from_u128(n))
}

fn metadata() -> Metadata {
    Metadata::parse(r#"{"n":1.50,"note":"é","tiny":1e-7,"nested":{"list":[1,"two",null]}}"#)
        .unwrap()
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().to_utc()
}

fn posting(source: &str, destination: &str, asset_code: &str, value: &str) -> Posting {
    Posting {
        source: account(source),
        destination: account(destination),
        asset: asset(asset_code),
        amount: amount(value),
        cost: None,
    }
}

fn costed(p: Posting, value: &str, currency: &str) -> Posting {
    Posting {
        cost: Some(Cost {
            amount: amount(value),
            currency: asset(currency),
        }),
        ..p
    }
}

fn transaction(kind: TransactionKind, postings: Vec<Posting>) -> TransactionPosted {
    TransactionPosted {
        transaction_id: id(1),
        kind,
        postings,
        metadata: Metadata::default(),
        pending: false,
        expires_at: None,
        reverses: None,
        forced: false,
        effective_at: None,
    }
}

/// A hold expiring at `expires_at`: the three spellings an expiry has (none, 3 or 6 digits).
fn hold(expires_at: DateTime<Utc>) -> Event {
    Event::TransactionPosted(TransactionPosted {
        pending: true,
        expires_at: Some(expires_at),
        metadata: metadata(),
        ..transaction(
            TransactionKind::Transfer,
            vec![posting("alice:cash", "bob:cash", "USD", "80.00")],
        )
    })
}

fn trade() -> TradeExecuted {
    TradeExecuted {
        trade_id: id(2),
        buyer: account("alice:broker"),
        seller: account("bob:broker"),
        instrument: asset("XYZ"),
        quantity: amount("10"),
        price: amount("10.5"),
        currency: asset("USD"),
        notional: amount("105.00"),
        fees: Vec::new(),
        postings: vec![
            posting("bob:broker", "alice:broker", "XYZ", "10"),
            posting("alice:broker", "bob:broker", "USD", "105.00"),
        ],
        metadata: Metadata::default(),
        pending: false,
        expires_at: None,
        effective_at: None,
        settlement_date: None,
        settles_at: None,
        lots: Vec::new(),
    }
}

/// Every optional field of every event type set, in examples the schemas allow together.
fn maximal() -> Vec<Event> {
    let fee = Fee {
        payer: account("alice:broker"),
        account: account("fees:broker"),
        asset: asset("EUR"),
        amount: amount("1.00"),
    };
    let mut with_fee = trade();
    with_fee.fees = vec![fee];
    with_fee
        .postings
        .push(posting("alice:broker", "fees:broker", "EUR", "1.00"));
    vec![
        Event::AssetDefined(AssetDefined {
            asset: asset("USD"),
            scale: Scale::try_from(18).unwrap(),
        }),
        Event::AccountOpened(AccountOpened {
            account_id: AccountId(Uuid::from_u128(3)),
            code: account("alice:cash"),
            allow_negative: true,
            metadata: metadata(),
            booking_method: Some(BookingMethod::Specific),
        }),
        Event::TransactionPosted(TransactionPosted {
            metadata: metadata(),
            effective_at: Some(at("2026-01-04T00:00:00Z")),
            ..transaction(
                TransactionKind::Transaction,
                vec![
                    costed(
                        posting("alice:broker", "bob:broker", "XYZ", "5"),
                        "50.00",
                        "USD",
                    ),
                    posting("bob:broker", "alice:broker", "USD", "50.00"),
                ],
            )
        }),
        hold(at("2026-01-06T00:00:00Z")),
        hold(at("2026-01-06T00:00:00.250Z")),
        hold(at("2026-01-06T00:00:00.000001Z")),
        Event::TransactionPosted(TransactionPosted {
            reverses: Some(id(9)),
            forced: true,
            effective_at: Some(at("2026-01-04T00:00:00.5Z")),
            ..transaction(
                TransactionKind::Reversal,
                vec![posting("bob:cash", "alice:cash", "USD", "0.01")],
            )
        }),
        Event::TradeExecuted(TradeExecuted {
            metadata: metadata(),
            pending: true,
            effective_at: Some(at("2026-01-05T15:30:00Z")),
            settlement_date: NaiveDate::from_ymd_opt(2026, 1, 7),
            settles_at: Some(at("2026-01-07T00:00:00Z")),
            lots: vec![LotPick {
                lot_id: format!("{}/0", Uuid::from_u128(4)),
                quantity: amount("10"),
            }],
            ..with_fee.clone()
        }),
        Event::TradeExecuted(TradeExecuted {
            pending: true,
            expires_at: Some(at("2026-01-06T00:00:00.123Z")),
            ..with_fee
        }),
        Event::PendingPosted(PendingPosted {
            pending_id: id(2),
            postings: vec![posting("bob:broker", "alice:broker", "XYZ", "4")],
            released: vec![posting("bob:broker", "alice:broker", "XYZ", "4")],
            remaining: vec![
                posting("bob:broker", "alice:broker", "XYZ", "6"),
                posting("alice:broker", "bob:broker", "USD", "105.00"),
            ],
            metadata: metadata(),
            effective_at: Some(at("2026-01-06T00:00:00Z")),
        }),
        Event::PendingVoided(PendingVoided {
            pending_id: id(2),
            released: vec![posting("bob:broker", "alice:broker", "XYZ", "6")],
            metadata: metadata(),
            reason: Some("the seller could not deliver".to_owned()),
            effective_at: Some(at("2026-01-06T00:00:00Z")),
        }),
        Event::PendingExpired(PendingExpired {
            pending_id: id(1),
            released: vec![posting("alice:cash", "bob:cash", "USD", "80.00")],
        }),
        Event::AccountStatusChanged(AccountStatusChanged {
            account: account("alice:cash"),
            status: AccountStatus::Frozen,
            metadata: metadata(),
        }),
        Event::AccountLimitsSet(AccountLimitsSet {
            account: account("alice:cash"),
            asset: asset("USD"),
            min_balance: Some(amount("-100.00")),
            max_balance: Some(amount("0.00")),
        }),
        Event::PeriodClosed(PeriodClosed {
            period: 1,
            through: at("2025-12-31T23:59:59.999999Z"),
            known_at_position: 12,
            trial_balance_digest: "6c".repeat(32),
            metadata: metadata(),
        }),
        Event::PeriodReopened(PeriodReopened {
            period: 1,
            reason: "a late invoice".to_owned(),
            metadata: metadata(),
        }),
        Event::BookingMethodSet(BookingMethodSet {
            account: account("alice:broker"),
            booking_method: BookingMethod::Average,
            metadata: metadata(),
        }),
        Event::PriceMarked(PriceMarked {
            instrument: asset("XYZ"),
            currency: asset("USD"),
            price: amount("0.000000000000000001"),
            as_of: at("2026-01-05T00:00:00Z"),
            metadata: metadata(),
        }),
    ]
}

/// The example of `event`'s type with no optional field set. The match has no catch-all: a new
/// event type does not compile here until it has its examples.
fn minimal(event: &Event) -> Event {
    match event.clone() {
        Event::AssetDefined(e) => Event::AssetDefined(AssetDefined {
            scale: Scale::try_from(0).unwrap(),
            ..e
        }),
        Event::AccountOpened(e) => Event::AccountOpened(AccountOpened {
            booking_method: None,
            metadata: Metadata::default(),
            ..e
        }),
        Event::TransactionPosted(_) => Event::TransactionPosted(transaction(
            TransactionKind::Transaction,
            vec![posting("alice:cash", "bob:cash", "USD", "1")],
        )),
        Event::TradeExecuted(_) => Event::TradeExecuted(trade()),
        Event::PendingPosted(e) => Event::PendingPosted(PendingPosted {
            remaining: Vec::new(),
            effective_at: None,
            metadata: Metadata::default(),
            ..e
        }),
        Event::PendingVoided(e) => Event::PendingVoided(PendingVoided {
            reason: None,
            effective_at: None,
            ..e
        }),
        Event::PendingExpired(e) => Event::PendingExpired(e),
        Event::AccountStatusChanged(e) => Event::AccountStatusChanged(e),
        Event::AccountLimitsSet(e) => Event::AccountLimitsSet(AccountLimitsSet {
            min_balance: None,
            max_balance: None,
            ..e
        }),
        Event::PeriodClosed(e) => Event::PeriodClosed(PeriodClosed {
            known_at_position: 0,
            ..e
        }),
        Event::PeriodReopened(e) => Event::PeriodReopened(e),
        Event::BookingMethodSet(e) => Event::BookingMethodSet(e),
        Event::PriceMarked(e) => Event::PriceMarked(PriceMarked {
            price: amount("100"),
            ..e
        }),
    }
}

/// Every example: the maximal ones, then the minimal one of each type.
fn examples() -> Vec<Event> {
    let maximal = maximal();
    let mut seen = BTreeSet::new();
    let minimal: Vec<Event> = maximal
        .iter()
        .filter(|e| seen.insert(e.event_type()))
        .map(minimal)
        .collect();
    maximal.into_iter().chain(minimal).collect()
}

fn payload(event: &Event) -> Value {
    serde_json::from_str(&event.encode()).unwrap()
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// The payload schemas of docs/schemas/events, by (type, version), from their file names
/// (`<type>.v<version>.schema.json`).
fn payload_schemas() -> BTreeMap<(String, i16), Value> {
    let mut schemas = BTreeMap::new();
    for entry in std::fs::read_dir(schemas_dir().join("events")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let parsed = name
            .strip_suffix(".schema.json")
            .and_then(|stem| stem.rsplit_once(".v"))
            .and_then(|(t, v)| Some((t.to_owned(), v.parse::<i16>().ok()?)));
        let key = parsed.unwrap_or_else(|| {
            panic!("docs/schemas/events/{name} is not named <type>.v<version>.schema.json")
        });
        schemas.insert(key, read_json(&path));
    }
    schemas
}

/// The versions of `event_type` that `Event::decode` reads: those it does not refuse as unknown.
fn decoded_versions(event_type: &str, payload: &str) -> Vec<i16> {
    (1..=64)
        .filter(|&version| {
            !matches!(
                Event::decode(event_type, version, payload),
                Err(domain::event::DecodeError::UnknownVersion { .. })
            )
        })
        .collect()
}

#[test]
fn the_schemas_are_those_of_the_types_and_versions_the_domain_reads() {
    let schemas: BTreeSet<(String, i16)> = payload_schemas().into_keys().collect();
    let minimal_payloads: BTreeMap<&str, String> = examples()
        .iter()
        .map(|e| (e.event_type(), e.encode()))
        .collect();
    // Every type the domain has an example of, a schema names, or a webhook may name.
    let mut types: BTreeSet<String> = minimal_payloads.keys().map(|t| t.to_string()).collect();
    types.extend(schemas.iter().map(|(t, _)| t.clone()));
    types.extend(infrastructure::webhooks::filter::EVENT_TYPES.map(String::from));
    let mut domain = BTreeSet::new();
    let mut unknown = Vec::new();
    for event_type in &types {
        let Some(payload) = minimal_payloads.get(event_type.as_str()) else {
            match Event::decode(event_type, 1, "{}") {
                Err(domain::event::DecodeError::UnknownType(_)) => unknown.push(event_type),
                _ => panic!("{event_type} is an event type of the domain without an example here"),
            }
            continue;
        };
        for version in decoded_versions(event_type, payload) {
            domain.insert((event_type.clone(), version));
        }
    }
    let missing: Vec<_> = domain.difference(&schemas).collect();
    let extra: Vec<_> = schemas.difference(&domain).collect();
    assert!(
        missing.is_empty() && extra.is_empty() && unknown.is_empty(),
        "types and versions the domain reads without a schema in docs/schemas/events: \
         {missing:?}; schemas of no type or version the domain reads: {extra:?}; \
         types the domain does not know: {unknown:?}"
    );
}

#[test]
fn every_schema_is_named_by_its_id_and_uses_the_2020_12_dialect() {
    let mut files = vec![schemas_dir().join("event.schema.json")];
    files.extend(
        std::fs::read_dir(schemas_dir().join("events"))
            .unwrap()
            .map(|e| e.unwrap().path()),
    );
    for path in files {
        let schema = read_json(&path);
        let relative = path.strip_prefix(schemas_dir()).unwrap().to_string_lossy();
        assert_eq!(
            schema["$id"].as_str(),
            Some(format!("https://ledger.invalid/schemas/{relative}").as_str()),
            "{relative}: its $id names another file, so references to it would not resolve"
        );
        assert_eq!(
            schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
            "{relative}"
        );
    }
}

/// The keys seen at each place of a payload (`TransactionPosted.postings[]`), beside the schema
/// that describes that place.
#[derive(Default)]
struct Places(BTreeMap<String, (Value, Vec<BTreeSet<String>>)>);

impl Places {
    /// Walks `value` beside `schema` (a part of `root`), recording every object's keys.
    fn walk(&mut self, root: &Value, schema: &Value, value: &Value, place: String) {
        let schema = resolve(root, schema);
        match value {
            Value::Object(members) => {
                // An object without `properties` is free-form: the client's metadata.
                let Some(properties) = schema.get("properties") else {
                    return;
                };
                let entry = self
                    .0
                    .entry(place.clone())
                    .or_insert_with(|| (schema.clone(), Vec::new()));
                entry.1.push(members.keys().cloned().collect());
                for (key, member) in members {
                    if let Some(member_schema) = properties.get(key) {
                        self.walk(root, member_schema, member, format!("{place}.{key}"));
                    }
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.walk(root, &schema["items"], item, format!("{place}[]"));
                }
            }
            _ => {}
        }
    }

    /// Where the schema's `properties` are not the keys any example sets, or its `required` not
    /// the keys every example sets.
    fn disagreements(&self) -> Vec<String> {
        let mut found = Vec::new();
        for (place, (schema, samples)) in &self.0 {
            let properties: BTreeSet<String> = schema["properties"]
                .as_object()
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default();
            let required: BTreeSet<String> = schema["required"]
                .as_array()
                .map(|r| {
                    r.iter()
                        .filter_map(|k| k.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            let union: BTreeSet<String> = samples.iter().flatten().cloned().collect();
            let every = samples
                .iter()
                .skip(1)
                .fold(samples[0].clone(), |all, keys| &all & keys);
            if properties != union {
                found.push(format!(
                    "{place}: properties only in the schema {:?}, keys only in the examples {:?}",
                    properties.difference(&union).collect::<Vec<_>>(),
                    union.difference(&properties).collect::<Vec<_>>()
                ));
            }
            if required != every {
                found.push(format!(
                    "{place}: required {required:?}, but every example sets {every:?}"
                ));
            }
        }
        found
    }
}

/// `schema` with its local `$ref` followed.
fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str().and_then(|r| r.strip_prefix('#')) {
        Some(pointer) => resolve(
            root,
            root.pointer(pointer)
                .unwrap_or_else(|| panic!("no {pointer} in the schema")),
        ),
        None => schema,
    }
}

#[test]
fn each_schema_names_the_fields_its_type_writes_and_requires_those_always_written() {
    let schemas = payload_schemas();
    let mut places = Places::default();
    for event in examples() {
        let key = (event.event_type().to_owned(), event.schema_version());
        let schema = schemas
            .get(&key)
            .unwrap_or_else(|| panic!("no schema of {} v{}", key.0, key.1));
        places.walk(
            schema,
            schema,
            &payload(&event),
            event.event_type().to_owned(),
        );
    }
    let types: BTreeSet<&str> = examples().iter().map(Event::event_type).collect();
    for event_type in types {
        assert!(
            places.0.contains_key(event_type),
            "{event_type}: no example"
        );
    }
    let disagreements = places.disagreements();
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

#[test]
fn every_example_as_the_ledger_stores_it_validates() {
    let events = examples();
    let lines: Vec<String> = events
        .iter()
        .enumerate()
        .map(|(i, e)| export_line(i + 1, e.event_type(), &e.encode()))
        .collect();
    let (valid, stdout, stderr) = validate("examples", &lines);
    assert!(valid, "{stdout}{stderr}");
    let types: BTreeSet<&str> = events.iter().map(Event::event_type).collect();
    assert!(
        stdout.contains(&format!(
            "validated {} events of {} types",
            lines.len(),
            types.len()
        )),
        "{stdout}"
    );
}

/// What the type refuses, the schema refuses: an unknown key. And what the type may read but the
/// ledger never writes: a key it always writes left out (serde reads a missing `Option` as
/// `None`: an `AccountLimitsSet` without `max_balance`), an amount as a JSON number.
#[test]
fn what_the_types_refuse_the_schemas_refuse() {
    let mut lines = Vec::new();
    let mut add = |event_type: &str, payload: &Value, type_refuses: bool| {
        let text = payload.to_string();
        if type_refuses {
            assert!(
                Event::decode(event_type, 1, &text).is_err(),
                "{event_type} reads {text}"
            );
        }
        lines.push(export_line(lines.len() + 1, event_type, &text));
    };
    for event in examples() {
        let event_type = event.event_type();
        let whole = payload(&event);
        let mut unknown = whole.clone();
        unknown["unexpected"] = json!(true);
        add(event_type, &unknown, true);
        for key in payload(&minimal(&event)).as_object().unwrap().keys() {
            let mut without = whole.clone();
            without.as_object_mut().unwrap().remove(key);
            add(event_type, &without, false);
        }
        if whole.get("postings").is_some() {
            let mut numeric = whole.clone();
            numeric["postings"][0]["amount"] = json!(1.5);
            add(event_type, &numeric, false);
        }
    }
    let (valid, stdout, stderr) = validate("refused", &lines);
    assert!(!valid, "{stdout}");
    for line in 1..=lines.len() {
        assert!(
            stderr.contains(&format!("refused.ndjson:{line}: ")),
            "line {line} was accepted: {}\n{stderr}",
            lines[line - 1]
        );
    }
}

#[tokio::test]
async fn the_server_serves_exactly_the_files_of_docs_schemas() {
    let ledger = TestLedger::start().await;
    let answer = ledger.get("/v1/schemas/events").await;
    answer.expect(200);
    assert_eq!(
        answer.body["event"],
        read_json(&schemas_dir().join("event.schema.json"))
    );
    let served: BTreeMap<(String, i16), Value> = answer.body["schemas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let key = (
                s["type"].as_str().unwrap().to_owned(),
                s["schema_version"].as_i64().unwrap() as i16,
            );
            (key, s["schema"].clone())
        })
        .collect();
    let files = payload_schemas();
    assert_eq!(
        served.keys().collect::<Vec<_>>(),
        files.keys().collect::<Vec<_>>()
    );
    assert_eq!(served, files);
    assert_eq!(
        answer.body["schemas"].as_array().unwrap().len(),
        files.len(),
        "a schema served twice"
    );
    for ((event_type, version), schema) in &files {
        let one = ledger
            .get(&format!("/v1/schemas/events/{event_type}/{version}"))
            .await;
        one.expect(200);
        assert_eq!(&one.body, schema, "{event_type} v{version}");
    }
    for missing in ["TransactionPosted/99", "TransactionPosted/one", "Nothing/1"] {
        let answer = ledger.get(&format!("/v1/schemas/events/{missing}")).await;
        answer.expect(404);
        assert_eq!(answer.code(), "event_schema_not_found", "{missing}");
    }
    ledger.finish().await;
}
