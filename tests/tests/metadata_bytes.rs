//! A client's metadata keeps its bytes: arbitrary JSON metadata, written as text the way a client
//! might write it (any whitespace, any escapes, members in any order, numbers no binary float can
//! hold), goes through every write route that takes metadata (open, freeze, unfreeze and close an
//! account; transfer, transaction, trade, batch; a hold, its post and void, the post of a held
//! trade; a reversal), and everywhere it comes back it is the same bytes: its canonical form
//! (docs/audit.md, "Canonical JSON"), computed here by a writer of this file's own and checked
//! against `domain::json::canonicalize`. Where it comes back: the answer, the answer replayed
//! (through a second node that forwards, and after a restart), the read routes of either node,
//! `GET /v1/events`, the list of accounts, the projections' rows, an export (which the
//! independent Python verifier accepts), an import and its export, the Beancount export, two
//! webhooks (one filtered), the event stream and a relay to NATS JetStream. After every write
//! `GET /v1/audit/verify` says the chain is intact, and at the end a replay of the projections
//! finds them identical.
//!
//! What cannot be kept as sent is refused and appends nothing: a key twice in one object (400
//! `invalid_request`), a lone surrogate (422 `validation_error`), a body nested deeper than 64
//! levels (400 `malformed_json`; 64 is accepted), metadata over 4 KiB in canonical form (422;
//! exactly 4 KiB is accepted), metadata that is not an object, `null` included (422), and a
//! number beyond binary64's finite range such as `1e999999999` (422: most JSON parsers could not
//! read any document carrying it; `-1E-400` and 40-digit mantissas are kept).
//!
//! The cases come from a seeded generator: `METADATA_CASES` cases (200 by default, about 12 s)
//! from seed `METADATA_SEED` (fixed by default, so a failure is reproduced by running again),
//! spread over the routes in turn. The case count and the seed are printed on stderr, and a
//! failure names the case, its kind, its route and the text sent.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use futures_util::StreamExt;
use infrastructure::testing::brokers::Nats;
use infrastructure::testing::TestDatabase;
use infrastructure::webhooks::signing;
use ledger_tests::serde_json::{self, json, value::RawValue};
use ledger_tests::{eventually, Answer, TestLedger};

/// Generated cases in a default run; `METADATA_CASES` raises it for a long run by hand.
const CASES_DEFAULT: usize = 200;
/// The generator's seed in a default run; `METADATA_SEED` picks another.
const SEED_DEFAULT: u64 = 0x6d65_7461_6461_7461;
/// The body depth the ledger accepts (`domain::json::DEPTH_MAX`), restated: the test says what
/// the documents promise.
const BODY_DEPTH_MAX: usize = 64;
/// The canonical size of metadata the ledger accepts, at most (docs/events.md).
const METADATA_BYTES_MAX: usize = 4096;
/// How long webhooks may take to deliver the whole log after the last write.
const WEBHOOK_BOUND: Duration = Duration::from_secs(60);
/// How long the relay may take to get the whole log into JetStream after the last write.
const RELAY_BOUND: Duration = Duration::from_secs(60);
/// How long to wait for any one JetStream message once the relay has confirmed the head.
const JETSTREAM_MESSAGE_BOUND: Duration = Duration::from_secs(10);
/// How long a second node may take to find the writer and follow it.
const FOLLOWER_BOUND: Duration = Duration::from_secs(10);
/// How long the event stream may stay quiet while it catches up on the log.
const STREAM_QUIET_BOUND: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// The generator: JSON as text, and its canonical form, written independently of the ledger.

/// SplitMix64: small, seeded, and the same on every platform.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn percent(&mut self, p: usize) -> bool {
        self.below(100) < p
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// A JSON value as the generator builds it. Object members stay in the order they are written
/// (and may repeat a key, for the refusals); numbers are their literal.
#[derive(Clone)]
enum Json {
    /// A number literal, `true`, `false` or `null`: written and canonical alike.
    Literal(String),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
    /// Text written as is, for what has no canonical form (a lone surrogate).
    Verbatim(String),
}

/// Literals that binary floating point, `u64` or `i64` would change.
const HOSTILE_NUMBERS: &[&str] = &[
    "1e999999999",
    "-1E-400",
    "1e99999999999999999999",
    "-1E-99999999999999999999999",
    "-0",
    "-0.0",
    "-0e5",
    "0e0",
    "1.50",
    "1E3",
    "1e16",
    "1e+16",
    "1e-7",
    "10000000000000000.0",
    "123456789012345678901",
    "18446744073709551616",
    "-9223372036854775809",
    "9007199254740993",
    "3.141592653589793238462643383279502884197169399375105820974944",
    "0.1000000000000000055511151231257827021181583404541015625",
    "2.2250738585072011e-308",
    "4.9e-324",
    "1.7976931348623157e309",
];

/// A number literal: one of the hostile ones, or one from the grammar with long mantissas and
/// huge or tiny exponents.
fn number(rng: &mut Rng) -> String {
    if rng.percent(40) {
        return (*rng.pick(HOSTILE_NUMBERS)).to_owned();
    }
    let digits = |rng: &mut Rng, n: usize| -> String {
        (0..n)
            .map(|_| char::from(b'0' + rng.below(10) as u8))
            .collect()
    };
    let mut literal = String::new();
    if rng.percent(40) {
        literal.push('-');
    }
    if rng.percent(20) {
        literal.push('0');
    } else {
        let length = if rng.percent(20) {
            40 + rng.below(20)
        } else {
            1 + rng.below(8)
        };
        literal.push(char::from(b'1' + rng.below(9) as u8));
        literal.push_str(&digits(rng, length - 1));
    }
    if rng.percent(50) {
        literal.push('.');
        let length = if rng.percent(20) {
            40 + rng.below(20)
        } else {
            1 + rng.below(6)
        };
        literal.push_str(&digits(rng, length));
    }
    if rng.percent(40) {
        literal.push(*rng.pick(&['e', 'E']));
        literal.push_str(["", "+", "-"][rng.below(3)]);
        let exponent = *rng.pick(&[
            "0",
            "7",
            "16",
            "308",
            "309",
            "400",
            "999999999",
            "00012",
            "99999999999999999999",
        ]);
        literal.push_str(exponent);
    }
    literal
}

/// Characters that test the escapes and the ordering: every control character, the characters
/// with short escapes, `/`, DEL, non-ASCII of each UTF-8 length, non-characters, the line and
/// paragraph separators, U+E000 (after the astral planes in UTF-16 order, before them in UTF-8)
/// and astral characters.
fn character(rng: &mut Rng) -> char {
    match rng.below(10) {
        0 | 1 => char::from(rng.below(0x20) as u8),
        2 => *rng.pick(&['"', '\\', '/', '\u{7f}', ' ']),
        3 => *rng.pick(&[
            '\u{e9}',
            '\u{2028}',
            '\u{2029}',
            '\u{fffe}',
            '\u{ffff}',
            '\u{fdd0}',
            '\u{e000}',
            '\u{feff}',
            '\u{20ac}',
            '\u{4e2d}',
            '\u{10ffff}',
            '\u{1f600}',
            '\u{1d11e}',
        ]),
        _ => char::from(b'!' + rng.below(94) as u8),
    }
}

fn text(rng: &mut Rng, length_max: usize) -> String {
    let length = rng.below(length_max + 1);
    (0..length).map(|_| character(rng)).collect()
}

/// A random value, nested at most `depth_left` more levels.
fn value(rng: &mut Rng, depth_left: usize) -> Json {
    match rng.below(10) {
        0..=2 => Json::Literal(number(rng)),
        3..=5 => Json::Str(text(rng, 12)),
        6 => Json::Literal((*rng.pick(&["true", "false", "null"])).to_owned()),
        7 | 8 if depth_left > 0 => object(rng, depth_left - 1, 5),
        9 if depth_left > 0 => Json::Array(
            (0..rng.below(5))
                .map(|_| value(rng, depth_left - 1))
                .collect(),
        ),
        _ => Json::Literal(number(rng)),
    }
}

/// An object of up to `members_max` members with distinct keys.
fn object(rng: &mut Rng, depth_left: usize, members_max: usize) -> Json {
    let mut members: Vec<(String, Json)> = Vec::new();
    for _ in 0..rng.below(members_max + 1) {
        let key = text(rng, 6);
        if members.iter().all(|(k, _)| *k != key) {
            members.push((key, value(rng, depth_left)));
        }
    }
    Json::Object(members)
}

/// Whitespace between tokens: usually none, sometimes any of the four JSON allows.
fn whitespace(rng: &mut Rng, out: &mut String) {
    if rng.percent(25) {
        for _ in 0..1 + rng.below(3) {
            out.push(*rng.pick(&[' ', '\t', '\n', '\r']));
        }
    }
}

/// `\uXXXX` for one UTF-16 unit, its hex digits in either case.
fn unicode_escape(rng: &mut Rng, unit: u32, out: &mut String) {
    let digits = format!("{unit:04x}");
    out.push_str("\\u");
    for digit in digits.chars() {
        out.push(if rng.percent(50) {
            digit.to_ascii_uppercase()
        } else {
            digit
        });
    }
}

/// A string as a client might write it: each character raw where JSON allows, or escaped in
/// any of the ways JSON allows (a short escape, `\/`, `\uXXXX`, a surrogate pair).
fn write_string(rng: &mut Rng, s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        let short = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '/' => Some("\\/"),
            '\u{8}' => Some("\\b"),
            '\t' => Some("\\t"),
            '\n' => Some("\\n"),
            '\u{c}' => Some("\\f"),
            '\r' => Some("\\r"),
            _ => None,
        };
        let must_escape = c < ' ' || c == '"' || c == '\\';
        if let Some(short) = short.filter(|_| rng.percent(60)) {
            out.push_str(short);
        } else if must_escape || rng.percent(20) {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                unicode_escape(rng, u32::from(*unit), out);
            }
        } else {
            out.push(c);
        }
    }
    out.push('"');
}

/// The value as a client might write it.
fn write_sent(rng: &mut Rng, value: &Json, out: &mut String) {
    match value {
        Json::Literal(literal) | Json::Verbatim(literal) => out.push_str(literal),
        Json::Str(s) => write_string(rng, s, out),
        Json::Array(items) => {
            out.push('[');
            whitespace(rng, out);
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                    whitespace(rng, out);
                }
                write_sent(rng, item, out);
                whitespace(rng, out);
            }
            out.push(']');
        }
        Json::Object(members) => {
            out.push('{');
            whitespace(rng, out);
            for (i, (key, member)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                    whitespace(rng, out);
                }
                write_string(rng, key, out);
                whitespace(rng, out);
                out.push(':');
                whitespace(rng, out);
                write_sent(rng, member, out);
                whitespace(rng, out);
            }
            out.push('}');
        }
    }
}

/// A string in canonical form, as docs/audit.md specifies it.
fn canonical_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if c < ' ' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The canonical form of a value with distinct keys, as docs/audit.md specifies it: members
/// sorted by the UTF-8 bytes of their keys, no whitespace, numbers as written.
fn canonical(value: &Json, out: &mut String) {
    match value {
        Json::Literal(literal) | Json::Verbatim(literal) => out.push_str(literal),
        Json::Str(s) => canonical_string(s, out),
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        Json::Object(members) => {
            let mut sorted: Vec<&(String, Json)> = members.iter().collect();
            sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (key, member)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_string(key, out);
                out.push(':');
                canonical(member, out);
            }
            out.push('}');
        }
    }
}

fn canonical_text(value: &Json) -> String {
    let mut out = String::new();
    canonical(value, &mut out);
    out
}

/// What the ledger must answer to a case.
#[derive(Debug, Clone, PartialEq)]
enum Expected {
    /// Accepted, and served as this canonical text everywhere.
    Kept(String),
    /// Refused with this status and problem code, nothing appended.
    Refused(u16, &'static str),
}

/// One generated metadata value, its kind (for the report), and what the ledger must answer.
struct Case {
    kind: &'static str,
    metadata: Json,
    expected: Expected,
}

/// Makes one case whose metadata sits inside `enclosing` containers of the body (1 for a field
/// of the body's top object), so that nesting is measured the way the ledger measures it: over
/// the whole body.
fn case(rng: &mut Rng, enclosing: usize) -> Case {
    let roll = rng.below(100);
    let kept = |kind, metadata: Json| {
        // A number beyond binary64's finite range would make every document carrying the event
        // unreadable to most JSON parsers: the ledger refuses it rather than keep it.
        if overflows(&metadata) {
            return Case {
                kind: "a number beyond binary64",
                metadata,
                expected: Expected::Refused(422, "validation_error"),
            };
        }
        let text = canonical_text(&metadata);
        Case {
            kind,
            expected: Expected::Kept(text),
            metadata,
        }
    };
    match roll {
        0..=56 => loop {
            let metadata = object(rng, 4, 6);
            if canonical_text(&metadata).len() <= METADATA_BYTES_MAX {
                break kept("random", metadata);
            }
        },
        57..=59 => Case {
            kind: "not an object",
            metadata: match rng.below(4) {
                0 => Json::Array(vec![value(rng, 1)]),
                1 => Json::Str(text(rng, 8)),
                2 => Json::Literal(number(rng)),
                _ => Json::Literal((*rng.pick(&["true", "false", "null"])).to_owned()),
            },
            expected: Expected::Refused(422, "validation_error"),
        },
        60..=65 => kept("at 4 KiB", sized(rng, METADATA_BYTES_MAX)),
        66..=69 => Case {
            kind: "over 4 KiB",
            metadata: sized(rng, METADATA_BYTES_MAX + 1),
            expected: Expected::Refused(422, "validation_error"),
        },
        70..=76 => Case {
            kind: "duplicate key",
            metadata: with_duplicate_key(rng),
            expected: Expected::Refused(400, "invalid_request"),
        },
        77..=83 => Case {
            kind: "lone surrogate",
            metadata: with_lone_surrogate(rng),
            expected: Expected::Refused(422, "validation_error"),
        },
        84..=91 => kept("64 deep", nested(rng, BODY_DEPTH_MAX - enclosing)),
        _ => Case {
            kind: "65 deep",
            metadata: nested(rng, BODY_DEPTH_MAX + 1 - enclosing),
            expected: Expected::Refused(400, "malformed_json"),
        },
    }
}

/// Whether a number in `value` reads as an infinite binary64 (`1e999999999`, `-8E309`).
fn overflows(value: &Json) -> bool {
    match value {
        Json::Literal(literal) => literal.parse::<f64>().is_ok_and(f64::is_infinite),
        Json::Array(items) => items.iter().any(overflows),
        Json::Object(members) => members.iter().any(|(_, v)| overflows(v)),
        Json::Str(_) | Json::Verbatim(_) => false,
    }
}

/// How many containers deep a value is (a scalar: 0).
fn depth(value: &Json) -> usize {
    match value {
        Json::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Json::Object(members) => 1 + members.iter().map(|(_, v)| depth(v)).max().unwrap_or(0),
        _ => 0,
    }
}

/// An object whose canonical form is exactly `size` bytes: a random object and a member `pad`
/// whose string fills the rest with characters of every canonical width (1 to 6 bytes).
fn sized(rng: &mut Rng, size: usize) -> Json {
    loop {
        let Json::Object(mut members) = object(rng, 2, 4) else {
            unreachable!("object() makes objects")
        };
        members.retain(|(key, _)| key != "pad");
        members.push(("pad".to_owned(), Json::Str(String::new())));
        let Some(mut remaining) =
            size.checked_sub(canonical_text(&Json::Object(members.clone())).len())
        else {
            continue;
        };
        let mut pad = String::new();
        let widths: [(char, usize); 6] = [
            ('x', 1),
            ('\u{e9}', 2),
            ('\u{20ac}', 3),
            ('\u{1f600}', 4),
            ('\n', 2),
            ('\u{1}', 6),
        ];
        while remaining > 0 {
            let (c, width) = *rng.pick(&widths);
            if width <= remaining {
                pad.push(c);
                remaining -= width;
            }
        }
        if let Some(last) = members.last_mut() {
            last.1 = Json::Str(pad);
        }
        let metadata = Json::Object(members);
        assert_eq!(canonical_text(&metadata).len(), size);
        return metadata;
    }
}

/// A random object with, somewhere in it, an object holding one key twice (the second time
/// possibly spelled with other escapes: still the same key).
fn with_duplicate_key(rng: &mut Rng) -> Json {
    let key = text(rng, 4);
    let twice = Json::Object(vec![
        (key.clone(), value(rng, 1)),
        (text(rng, 3) + "\u{0}other", value(rng, 0)),
        (key, value(rng, 1)),
    ]);
    bury(rng, twice)
}

/// A random object with, somewhere in it, a string holding an escaped surrogate without its
/// pair.
fn with_lone_surrogate(rng: &mut Rng) -> Json {
    let lone = *rng.pick(&[
        r#""\ud800""#,
        r#""a\uDBFFb""#,
        r#""\udc00""#,
        r#""x\uDE00""#,
        r#""\ud83d\u0041""#,
        r#""\ud83d\ud83d""#,
        r#""end\ud83d""#,
    ]);
    bury(rng, Json::Verbatim(lone.to_owned()))
}

/// `inner` as a member or item of a random object, one or two levels down.
fn bury(rng: &mut Rng, inner: Json) -> Json {
    let Json::Object(mut members) = object(rng, 1, 3) else {
        unreachable!("object() makes objects")
    };
    let placed = if rng.percent(50) {
        Json::Array(vec![value(rng, 0), inner])
    } else {
        inner
    };
    members.retain(|(key, _)| key != "here");
    members.insert(rng.below(members.len() + 1), ("here".to_owned(), placed));
    Json::Object(members)
}

/// An object `levels` containers deep (itself the first; `levels` ≥ 2), each level below it an
/// object or an array.
fn nested(rng: &mut Rng, levels: usize) -> Json {
    let mut inner = if rng.percent(50) {
        Json::Array(vec![Json::Literal(number(rng))])
    } else {
        Json::Object(Vec::new())
    };
    for level in (1..levels).rev() {
        inner = if level > 1 && rng.percent(50) {
            Json::Array(vec![inner])
        } else {
            Json::Object(vec![(text(rng, 3), inner)])
        };
    }
    assert_eq!(depth(&inner), levels);
    inner
}

// ---------------------------------------------------------------------------------------------
// Reading answers byte for byte.

/// The exact text of the value at `path` (member names, or item indexes) in JSON `text`: never
/// through `serde_json::Value`, which would respell numbers.
fn raw_at(text: &str, path: &[&str]) -> String {
    let mut current = text.to_owned();
    for step in path {
        current = if let Ok(index) = step.parse::<usize>() {
            let items: Vec<Box<RawValue>> = serde_json::from_str(&current)
                .unwrap_or_else(|e| panic!("no array at {step} of {path:?} in {text}: {e}"));
            items
                .get(index)
                .unwrap_or_else(|| panic!("no item {index} of {path:?} in {text}"))
                .get()
                .to_owned()
        } else {
            let members: HashMap<String, Box<RawValue>> = serde_json::from_str(&current)
                .unwrap_or_else(|e| panic!("no object at {step} of {path:?} in {text}: {e}"));
            members
                .get(*step)
                .unwrap_or_else(|| panic!("no {step} of {path:?} in {text}"))
                .get()
                .to_owned()
        };
    }
    current
}

/// The string at `path`.
fn string_at(text: &str, path: &[&str]) -> String {
    serde_json::from_str(&raw_at(text, path))
        .unwrap_or_else(|e| panic!("no string at {path:?} in {text}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// The routes.

/// Every write route that takes a client's metadata.
#[derive(Debug, Clone, Copy)]
enum Route {
    OpenAccount,
    FreezeOrUnfreeze,
    Close,
    Transfer,
    Transaction,
    Trade,
    Batch,
    Hold,
    PostHold,
    VoidHold,
    PostTradeHold,
    Reverse,
}

const ROUTES: [Route; 12] = [
    Route::OpenAccount,
    Route::FreezeOrUnfreeze,
    Route::Close,
    Route::Transfer,
    Route::Transaction,
    Route::Trade,
    Route::Batch,
    Route::Hold,
    Route::PostHold,
    Route::VoidHold,
    Route::PostTradeHold,
    Route::Reverse,
];

impl Route {
    /// How many containers of the body enclose its metadata.
    fn enclosing(self) -> usize {
        match self {
            // {"commands":[{"transfer":{"metadata":…}}]}
            Route::Batch => 4,
            _ => 1,
        }
    }
}

const JSON: (&str, &str) = ("content-type", "application/json");

/// The reads that serve a write's metadata: each path, and where the metadata is in its body.
type Reads = Vec<(String, &'static [&'static str])>;

/// An accepted request, to send again later: its answer must come back the same.
struct Sent {
    path: String,
    key: String,
    body: Vec<u8>,
    answer: String,
}

/// The ledger under test, and what the scenario has written so far.
struct Scenario {
    /// The writer.
    ledger: TestLedger,
    /// A second node on the same database: it forwards writes to the writer as they came, and
    /// serves reads itself.
    follower: TestLedger,
    /// The client metadata of each accepted write, by position, as it must be served.
    kept: BTreeMap<i64, String>,
    /// Whether the account whose status the cases change is frozen now.
    frozen: bool,
    /// The accounts the cases opened (`prop:…`): position and code; and the positions of the
    /// status changes.
    opened: Vec<(i64, String)>,
    status_changes: Vec<i64>,
    /// The accepted requests of every route but the batch.
    accepted: Vec<Sent>,
    /// Cases accepted and refused, by kind.
    tally: BTreeMap<&'static str, (usize, usize)>,
}

/// A body: `fields` (JSON members without braces) and the metadata as sent.
fn body(fields: &str, metadata: &str) -> Vec<u8> {
    if fields.is_empty() {
        format!("{{\"metadata\":{metadata}}}").into_bytes()
    } else {
        format!("{{{fields},\"metadata\":{metadata}}}").into_bytes()
    }
}

const TRANSFER: &str =
    r#""source":"world:bank","destination":"alice:cash","asset":"USD","amount":"1.00""#;
const TRANSACTION: &str = r#""postings":[{"source":"world:bank","destination":"alice:cash","asset":"USD","amount":"1.00"},{"source":"alice:cash","destination":"bob:cash","asset":"USD","amount":"0.50"}]"#;
const TRADE: &str = r#""buyer":"alice:cash","seller":"bob:cash","instrument":"AAPL","quantity":"1","price":"1.50","currency":"USD","fees":[{"payer":"alice:cash","account":"broker:fees","amount":"0.01"}]"#;
const HOLD: &str = r#""postings":[{"source":"alice:cash","destination":"bob:cash","asset":"USD","amount":"1.00"}],"pending":true"#;
const STATUS_ACCOUNT: &str = "status:flips";

/// The `X-Request-Id` a case's write is sent with: printable ASCII with the characters a JSON
/// string must escape (`"`, `\`) and some an HTML or URL context would, so that the event's own
/// metadata, which records it, is canonical JSON too.
fn request_id(key: &str) -> String {
    format!("{key}\"\\'<>&/?#%")
}

impl Scenario {
    async fn post(&self, path: &str, key: &str, bytes: Vec<u8>) -> Answer {
        let request_id = request_id(key);
        self.ledger
            .post_raw(
                path,
                &[
                    JSON,
                    ("idempotency-key", key),
                    ("x-request-id", &request_id),
                ],
                bytes,
            )
            .await
    }

    /// Posts through the follower, which forwards to the writer.
    async fn post_forwarded(&self, path: &str, key: &str, bytes: Vec<u8>) -> Answer {
        self.follower
            .post_raw(path, &[JSON, ("idempotency-key", key)], bytes)
            .await
    }

    /// A write of the setup (metadata `{}`), answered 201: its id.
    async fn setup(&self, path: &str, key: &str, fields: &str) -> String {
        let answer = self.post(path, key, body(fields, "{}")).await;
        answer.expect(201);
        string_at(&answer.text, &["id"])
    }

    /// Runs one case on one route: refused with nothing appended, or accepted and served as its
    /// canonical text by the answer, the read route and `GET /v1/events`, with the chain intact.
    async fn run(&mut self, index: usize, route: Route, case: &Case, rng: &mut Rng) {
        let key = format!("case-{index}");
        // What is set up first, whatever the answer.
        let target = match route {
            Route::PostHold | Route::VoidHold => {
                self.setup("/v1/transactions", &format!("{key}-hold"), HOLD)
                    .await
            }
            Route::PostTradeHold => {
                let pending_trade = format!(r#"{TRADE},"pending":true"#);
                self.setup("/v1/trades", &format!("{key}-hold"), &pending_trade)
                    .await
            }
            Route::Reverse => {
                self.setup("/v1/transfers", &format!("{key}-original"), TRANSFER)
                    .await
            }
            Route::Close => {
                let code = format!("closing:{index}");
                self.ledger.open_account(&code, false).await.expect(201);
                code
            }
            _ => String::new(),
        };
        let mut sent = String::new();
        whitespace(rng, &mut sent);
        write_sent(rng, &case.metadata, &mut sent);
        whitespace(rng, &mut sent);
        let status_action = if self.frozen { "unfreeze" } else { "freeze" };
        let account = format!("prop:{index}");
        let open_fields = format!(r#""code":"{account}","allow_negative":false"#);
        let make = |metadata: &str| -> (String, Vec<u8>) {
            match route {
                Route::OpenAccount => ("/v1/accounts".into(), body(&open_fields, metadata)),
                Route::FreezeOrUnfreeze => (
                    format!("/v1/accounts/{STATUS_ACCOUNT}/{status_action}"),
                    body("", metadata),
                ),
                Route::Close => (format!("/v1/accounts/{target}/close"), body("", metadata)),
                Route::Transfer => ("/v1/transfers".into(), body(TRANSFER, metadata)),
                Route::Transaction => ("/v1/transactions".into(), body(TRANSACTION, metadata)),
                Route::Trade => ("/v1/trades".into(), body(TRADE, metadata)),
                Route::Batch => (
                    "/v1/transactions/batch".into(),
                    format!(
                        r#"{{"commands":[{{"idempotency_key":"{key}-a","transfer":{{{TRANSFER},"metadata":{metadata}}}}},{{"idempotency_key":"{key}-b","trade":{{{TRADE},"metadata":{metadata}}}}}]}}"#
                    )
                    .into_bytes(),
                ),
                Route::Hold => ("/v1/transactions".into(), body(HOLD, metadata)),
                Route::PostHold | Route::PostTradeHold => {
                    (format!("/v1/transactions/{target}/post"), body("", metadata))
                }
                Route::VoidHold => (format!("/v1/transactions/{target}/void"), body("", metadata)),
                Route::Reverse => (
                    format!("/v1/transactions/{target}/reverse"),
                    body("", metadata),
                ),
            }
        };
        let (path, bytes) = make(&sent);
        let events_before = self.ledger.event_count().await;
        let answer = self.post(&path, &key, bytes.clone()).await;
        let context = format!("case {index} ({}) on {route:?}: sent {sent}", case.kind);
        let tally = self.tally.entry(case.kind).or_default();
        let canonical = match &case.expected {
            Expected::Refused(status, code) => {
                assert_eq!(answer.status, *status, "{context}: {}", answer.text);
                assert_eq!(answer.code(), *code, "{context}: {}", answer.text);
                assert_eq!(
                    self.ledger.event_count().await,
                    events_before,
                    "{context}: a refusal appended"
                );
                tally.1 += 1;
                return;
            }
            Expected::Kept(canonical) => canonical.clone(),
        };
        tally.0 += 1;
        // The generator's canonical form is the ledger's.
        assert_eq!(
            domain::json::canonicalize(&sent).as_deref(),
            Ok(canonical.as_str()),
            "{context}"
        );
        let accepted = if matches!(route, Route::Batch) {
            200
        } else {
            201
        };
        assert_eq!(answer.status, accepted, "{context}: {}", answer.text);

        // The answer, and where the ledger serves the write again.
        // Each position written, with the reads that serve its metadata.
        let mut written: Vec<(i64, Reads)> = Vec::new();
        const METADATA: &[&str] = &["metadata"];
        const SETTLEMENT: &[&str] = &["settlement", "metadata"];
        match route {
            Route::Batch => {
                for i in ["0", "1"] {
                    let result = raw_at(&answer.text, &["results", i]);
                    assert_eq!(raw_at(&result, &["status"]), "201", "{context}: {result}");
                    let position: i64 = raw_at(&result, &["position"]).parse().unwrap();
                    assert_eq!(
                        raw_at(&result, &["body", "metadata"]),
                        canonical,
                        "{context}"
                    );
                    let id = string_at(&result, &["body", "id"]);
                    let mut reads = vec![(format!("/v1/transactions/{id}"), METADATA)];
                    if i == "1" {
                        reads.push((format!("/v1/trades/{id}"), METADATA));
                    }
                    written.push((position, reads));
                }
            }
            _ => {
                assert_eq!(raw_at(&answer.text, &["metadata"]), canonical, "{context}");
                let id = || string_at(&answer.text, &["id"]);
                let reads = match route {
                    Route::OpenAccount => vec![(format!("/v1/accounts/{account}"), METADATA)],
                    Route::FreezeOrUnfreeze | Route::Close => Vec::new(),
                    // A trade reads as a trade, and as a transaction of kind `trade`.
                    Route::Trade => vec![
                        (format!("/v1/trades/{}", id()), METADATA),
                        (format!("/v1/transactions/{}", id()), METADATA),
                    ],
                    Route::PostHold | Route::VoidHold => {
                        vec![(format!("/v1/transactions/{target}"), SETTLEMENT)]
                    }
                    Route::PostTradeHold => vec![
                        (format!("/v1/trades/{target}"), SETTLEMENT),
                        (format!("/v1/transactions/{target}"), SETTLEMENT),
                    ],
                    _ => vec![(format!("/v1/transactions/{}", id()), METADATA)],
                };
                written.push((answer.position(), reads));
            }
        }
        match route {
            Route::OpenAccount => self.opened.push((answer.position(), account.clone())),
            Route::FreezeOrUnfreeze => {
                self.frozen = !self.frozen;
                self.status_changes.push(answer.position());
            }
            Route::Close => self.status_changes.push(answer.position()),
            _ => {}
        }
        for (position, reads) in written {
            for (read, at) in reads {
                // Read from either node.
                let node = if index.is_multiple_of(2) {
                    &self.ledger
                } else {
                    &self.follower
                };
                let served = node.get(&format!("{read}?min_position={position}")).await;
                served.expect(200);
                assert_eq!(raw_at(&served.text, at), canonical, "{context}: {read}");
            }
            let event = self
                .ledger
                .get(&format!("/v1/events?after={}&limit=1", position - 1))
                .await;
            event.expect(200);
            assert_eq!(
                raw_at(&event.text, &["items", "0", "payload", "metadata"]),
                canonical,
                "{context}: GET /v1/events"
            );
            let metadata = raw_at(&event.text, &["items", "0", "metadata"]);
            assert_eq!(
                string_at(&metadata, &["request_id"]),
                request_id(&key),
                "{context}: the event's own metadata"
            );
            self.kept.insert(position, canonical.clone());
        }
        self.assert_intact(&context).await;

        // The same request spelled otherwise (whitespace, escapes, order), forwarded by the
        // follower, is the same request: its answer is replayed byte for byte; other metadata
        // under the key is refused.
        let mut respelled = String::new();
        write_sent(rng, &case.metadata, &mut respelled);
        let again = self.post_forwarded(&path, &key, make(&respelled).1).await;
        let other = make(r#"{"other metadata":1.0}"#).1;
        let misused = self.post_forwarded(&path, &key, other).await;
        let context = format!("{context}, respelled as {respelled}");
        if let Route::Batch = route {
            for i in ["0", "1"] {
                let first = raw_at(&answer.text, &["results", i]);
                let replayed = raw_at(&again.text, &["results", i]);
                assert_eq!(raw_at(&replayed, &["replayed"]), "true", "{context}");
                assert_eq!(
                    raw_at(&replayed, &["body"]),
                    raw_at(&first, &["body"]),
                    "{context}"
                );
                let refused = raw_at(&misused.text, &["results", i]);
                assert_eq!(raw_at(&refused, &["status"]), "422", "{context}: {refused}");
                assert_eq!(
                    string_at(&refused, &["body", "code"]),
                    "idempotency_key_reused",
                    "{context}"
                );
            }
            return;
        }
        assert_eq!(
            again.header("idempotent-replayed"),
            Some("true"),
            "{context}"
        );
        assert_eq!(again.text, answer.text, "{context}");
        assert_eq!(misused.status, 422, "{context}: {}", misused.text);
        assert_eq!(misused.code(), "idempotency_key_reused", "{context}");
        self.accepted.push(Sent {
            path,
            key,
            body: bytes,
            answer: answer.text,
        });
    }

    async fn assert_intact(&self, context: &str) {
        let report = self.ledger.get("/v1/audit/verify").await;
        report.expect(200);
        assert_eq!(report.body["intact"], true, "{context}: {}", report.text);
        assert_eq!(
            report.body["stored_form_differs_count"], 0,
            "{context}: {}",
            report.text
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Webhooks and the relay.

/// The bodies a local webhook receiver got, by path and position.
type Delivered = Arc<Mutex<BTreeMap<(String, i64), String>>>;

async fn receive(
    State(delivered): State<Delivered>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let position = headers
        .get(signing::POSITION_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1);
    let body = String::from_utf8_lossy(&body).into_owned();
    delivered.lock().unwrap().insert((path, position), body);
    StatusCode::OK
}

/// A webhook receiver on loopback: its address, what it got, and its task.
async fn webhook_receiver() -> (SocketAddr, Delivered, tokio::task::JoinHandle<()>) {
    let delivered = Delivered::default();
    let app = axum::Router::new()
        .route("/{path}", axum::routing::post(receive))
        .with_state(delivered.clone());
    let (addr, task) = ledger_tests::serve_on_loopback(app).await;
    (addr, delivered, task)
}

/// Every message of the JetStream stream `LEDGER` (ledger `default`'s), by position (its
/// `Nats-Msg-Id`, `default:<position>`), up to `head`.
async fn jetstream_messages(url: &str, head: i64) -> BTreeMap<i64, String> {
    use async_nats::jetstream::consumer::pull;
    let client = async_nats::connect(url).await.expect("NATS");
    let jetstream = async_nats::jetstream::new(client);
    let stream = jetstream.get_stream("LEDGER").await.expect("stream");
    let consumer = stream
        .create_consumer(pull::OrderedConfig::default())
        .await
        .expect("consumer");
    let mut messages = consumer.messages().await.expect("messages");
    let mut received = BTreeMap::new();
    while received.len() < head as usize {
        let message = tokio::time::timeout(JETSTREAM_MESSAGE_BOUND, messages.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "JetStream: no message within {JETSTREAM_MESSAGE_BOUND:?} after {}",
                    received.len()
                )
            })
            .expect("a message")
            .expect("a readable message");
        let id: i64 = message
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .and_then(|id| id.as_str().strip_prefix("default:")?.parse().ok())
            .expect("Nats-Msg-Id is default:<position>");
        received.insert(id, String::from_utf8_lossy(&message.payload).into_owned());
    }
    received
}

/// Every message of `GET /v1/events/stream` from the start up to `head`: the `data` of each, by
/// its `id` (the position).
async fn streamed(ledger: &TestLedger, head: i64) -> BTreeMap<i64, String> {
    let mut response = ledger
        .client
        .get(ledger.url("/v1/events/stream?after=0"))
        .send()
        .await
        .expect("GET /v1/events/stream");
    assert_eq!(response.status().as_u16(), 200);
    // Bytes: a chunk may end inside a character, never inside a blank line's two line feeds.
    let mut buffer: Vec<u8> = Vec::new();
    let mut messages = BTreeMap::new();
    while messages.len() < head as usize {
        if let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
            let block: Vec<u8> = buffer.drain(..end + 2).collect();
            let block = String::from_utf8(block).expect("a message is UTF-8");
            let (mut id, mut data) = (None, String::new());
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse::<i64>().ok();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.strip_prefix(' ').unwrap_or(v));
                }
            }
            if let Some(id) = id {
                messages.insert(id, data);
            }
            continue;
        }
        let chunk = tokio::time::timeout(STREAM_QUIET_BOUND, response.chunk())
            .await
            .unwrap_or_else(|_| panic!("the stream is quiet for {STREAM_QUIET_BOUND:?}"))
            .expect("the stream reads")
            .expect("the stream goes on");
        buffer.extend_from_slice(&chunk);
    }
    messages
}

/// The position the relay's broker has confirmed.
async fn relayed(ledger: &TestLedger) -> i64 {
    let mut conn = ledger.sql().await;
    sqlx::query_scalar(
        "SELECT COALESCE(MAX(position), 0) FROM projection_checkpoints WHERE name LIKE 'relay:%'",
    )
    .fetch_one(&mut conn)
    .await
    .expect("checkpoint")
}

// ---------------------------------------------------------------------------------------------
// The property.

/// Each exported line's payload and metadata, by position.
fn export_lines(bytes: &[u8]) -> BTreeMap<i64, (String, String)> {
    let text = std::str::from_utf8(bytes).expect("an export is UTF-8");
    text.lines()
        .map(|line| {
            let position: i64 = raw_at(line, &["position"]).parse().expect("a position");
            (
                position,
                (raw_at(line, &["payload"]), raw_at(line, &["metadata"])),
            )
        })
        .collect()
}

/// Asserts that each message, an event as JSON, carries the exported payload and metadata of its
/// position byte for byte.
fn assert_carry_the_export(
    way: &str,
    messages: &BTreeMap<i64, String>,
    lines: &BTreeMap<i64, (String, String)>,
) {
    for (position, message) in messages {
        let (payload, metadata) = &lines[position];
        assert_eq!(
            &raw_at(message, &["payload"]),
            payload,
            "{way}, position {position}"
        );
        assert_eq!(
            &raw_at(message, &["metadata"]),
            metadata,
            "{way}, position {position}"
        );
    }
}

/// A Beancount string's text: between its quotes, `\\` and `\"` undone.
fn unquote_beancount(quoted: &str) -> String {
    let inner = quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or_else(|| panic!("not a Beancount string: {quoted}"));
    let mut text = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            text.extend(chars.next());
        } else {
            assert_ne!(c, '"', "an unescaped quote in {quoted}");
            text.push(c);
        }
    }
    text
}

/// Subscribes a webhook to the receiver's `path` from the start, with `filters`: its id.
async fn subscribe(
    ledger: &TestLedger,
    receiver: SocketAddr,
    path: &str,
    filters: serde_json::Value,
) -> String {
    let mut request = json!({"url": format!("http://{receiver}/{path}"), "after": 0});
    if let Some(filters) = filters.as_object() {
        for (name, value) in filters {
            request[name] = value.clone();
        }
    }
    let answer = ledger
        .client
        .post(ledger.url("/v1/admin/webhooks"))
        .json(&request)
        .send()
        .await
        .expect("POST");
    let answer = TestLedger::read(answer).await;
    answer.expect(201);
    answer.body["id"].as_str().expect("an id").to_owned()
}

/// Every row of the tables an import rebuilds, as text, in a stable order.
async fn table_rows(database_url: &str) -> Vec<(String, String)> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(database_url)
        .await
        .expect("database");
    let mut rows = Vec::new();
    for table in [
        "events",
        "accounts",
        "account_status_changes",
        "transactions",
        "postings",
        "balances",
        "idempotency_keys",
    ] {
        let text: String = sqlx::query_scalar(&format!(
            "SELECT COALESCE(string_agg(r, E'\\n' ORDER BY r), '') FROM (SELECT row_to_json(t)::text r FROM {table} t) s"
        ))
        .fetch_one(&mut conn)
        .await
        .expect("rows");
        rows.push((table.to_owned(), text));
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_keeps_its_bytes_through_every_route_and_every_way_out() {
    let cases = std::env::var("METADATA_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(CASES_DEFAULT);
    let seed = std::env::var("METADATA_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(SEED_DEFAULT);
    eprintln!("metadata_bytes: {cases} cases, seed {seed} (METADATA_CASES, METADATA_SEED)");
    let started = Instant::now();

    let nats = Nats::start().expect("nats-server starts");
    let nats_url = nats.url();
    let (receiver, delivered, receiver_task) = webhook_receiver().await;
    let ledger = TestLedger::start_with(|config| {
        config.webhook_allow_private = true;
        config.webhook_timeout_ms = 1_000;
        config.webhook_retry_base_ms = 10;
        config.webhook_retry_max_ms = 100;
        config.relays = vec![nats_url.clone()];
    })
    .await;
    // Every event; and only those touching an account under `prop` (each opened by a case),
    // which the deliverer decides by decoding the event.
    let every_event = subscribe(&ledger, receiver, "all", json!({})).await;
    let under_prop = subscribe(&ledger, receiver, "prop", json!({"account_prefix": "prop"})).await;

    ledger.market().await;
    ledger
        .transfer(
            "fund-alice",
            "world:bank",
            "alice:cash",
            "USD",
            "1000000.00",
        )
        .await
        .expect(201);
    ledger
        .transfer("fund-bob", "world:bank", "bob:cash", "AAPL", "1000000")
        .await
        .expect(201);
    ledger.open_account(STATUS_ACCOUNT, false).await.expect(201);
    let follower = TestLedger::serve(&ledger.database_url, |config| {
        config.no_webhook_delivery = true;
    })
    .await;
    eventually(FOLLOWER_BOUND, "the second node follows", || async {
        let ready = follower.get("/readyz").await;
        (ready.status == 200 && ready.body["role"] == "follower").then_some(())
    })
    .await;

    let mut scenario = Scenario {
        ledger,
        follower,
        kept: BTreeMap::new(),
        frozen: false,
        opened: Vec::new(),
        status_changes: Vec::new(),
        accepted: Vec::new(),
        tally: BTreeMap::new(),
    };
    let mut rng = Rng(seed);
    for index in 0..cases {
        let route = ROUTES[index % ROUTES.len()];
        let case = case(&mut rng, route.enclosing());
        scenario.run(index, route, &case, &mut rng).await;
    }
    let ledger = &scenario.ledger;
    let head = ledger.event_count().await;
    eprintln!(
        "metadata_bytes: {} events, {} with generated metadata; cases by kind (accepted, refused): {:?}",
        head,
        scenario.kept.len(),
        scenario.tally
    );

    // The export: the chain verifies independently, and each write's metadata is as sent.
    let path = ledger.export().await;
    let exported = std::fs::read(&path).expect("the export");
    let (ok, independent) = ledger_tests::python_verify(&path);
    assert!(ok, "{independent}");
    assert_eq!(independent["head_position"], head);
    let _ = std::fs::remove_file(&path);
    let lines = export_lines(&exported);
    assert_eq!(lines.len() as i64, head);
    for (position, kept) in &scenario.kept {
        let (payload, _) = &lines[position];
        assert_eq!(
            &raw_at(payload, &["metadata"]),
            kept,
            "export, position {position}"
        );
    }
    for (position, (payload, metadata)) in &lines {
        for text in [payload, metadata] {
            assert_eq!(
                domain::json::canonicalize(text).as_deref(),
                Ok(text.as_str()),
                "export, position {position}: not canonical"
            );
        }
    }
    // The projections that keep a client's metadata keep the same text.
    let mut conn = ledger.sql().await;
    let opened: Vec<i64> = scenario.opened.iter().map(|(p, _)| *p).collect();
    for (positions, table) in [
        (&opened, "accounts"),
        (&scenario.status_changes, "account_status_changes"),
    ] {
        for position in positions {
            let stored: String =
                sqlx::query_scalar(&format!("SELECT metadata FROM {table} WHERE position = $1"))
                    .bind(position)
                    .fetch_one(&mut conn)
                    .await
                    .expect("a projected row");
            assert_eq!(
                stored, scenario.kept[position],
                "{table}, position {position}"
            );
        }
    }

    // The list of accounts serves each opening's metadata too.
    let listed = ledger.get("/v1/accounts?prefix=prop&limit=1000").await;
    listed.expect(200);
    let mut by_code: Vec<&(i64, String)> = scenario.opened.iter().collect();
    by_code.sort_by(|a, b| a.1.cmp(&b.1));
    for (i, (position, code)) in by_code.into_iter().enumerate() {
        let item = raw_at(&listed.text, &["items", &i.to_string()]);
        assert_eq!(&string_at(&item, &["code"]), code);
        assert_eq!(
            raw_at(&item, &["metadata"]),
            scenario.kept[position],
            "{code} listed"
        );
    }

    // The Beancount export keeps each write's metadata as one string, its escapes undone.
    let pool = ledger.pool();
    let mut beancount = Vec::new();
    infrastructure::beancount::export(
        &pool,
        infrastructure::beancount::Root::Assets,
        &mut beancount,
    )
    .await
    .expect("the Beancount export");
    pool.close().await;
    let beancount = String::from_utf8(beancount).expect("UTF-8");
    let mut position = 0;
    let mut with_metadata = std::collections::BTreeSet::new();
    for line in beancount.lines() {
        if let Some(p) = line.strip_prefix("  position: ") {
            position = p.parse().expect("a position");
        } else if let Some(quoted) = line.strip_prefix("  ledger-metadata: ") {
            assert_eq!(
                unquote_beancount(quoted),
                scenario.kept[&position],
                "Beancount, position {position}"
            );
            with_metadata.insert(position);
        }
    }
    assert!(
        !with_metadata.is_empty(),
        "the Beancount export names metadata"
    );

    // Imported into a fresh database: the same rows, and an export of the same bytes.
    let target = TestDatabase::create().await.expect("database");
    let pool = infrastructure::db::read_pool(
        infrastructure::db::connect_options(target.url()).expect("URL"),
        &infrastructure::db::PoolConfig::default(),
    );
    infrastructure::db::migrate(&pool).await.expect("migrated");
    let report = infrastructure::import::import(&pool, exported.as_slice(), |_, _| {})
        .await
        .expect("the export imports");
    assert_eq!(report.events, head);
    let mut again = Vec::new();
    infrastructure::audit::export(&pool, 0, &mut again)
        .await
        .expect("export of the import");
    assert!(
        again == exported,
        "the import's export differs from the export"
    );
    pool.close().await;
    assert_eq!(
        table_rows(&ledger.database_url).await,
        table_rows(target.url()).await
    );
    target.drop_database().await.expect("dropped");

    // Webhooks: every event to one subscription, the accounts under `prop` to the other, each
    // body carrying the exported bytes.
    for subscription in [&every_event, &under_prop] {
        eventually(WEBHOOK_BOUND, "webhooks deliver the whole log", || async {
            let answer = ledger
                .get(&format!("/v1/admin/webhooks/{subscription}"))
                .await;
            (answer.body["cursor"].as_i64() >= Some(head)).then_some(())
        })
        .await;
    }
    let delivered = delivered.lock().unwrap().clone();
    let to = |path: &str| -> BTreeMap<i64, String> {
        delivered
            .iter()
            .filter(|((p, _), _)| p == path)
            .map(|((_, position), body)| (*position, body.clone()))
            .collect()
    };
    let (all, prop) = (to("all"), to("prop"));
    assert_eq!(all.len() as i64, head, "one delivery per position");
    assert_eq!(
        prop.keys().copied().collect::<Vec<_>>(),
        opened,
        "the openings of the accounts under prop"
    );
    assert_carry_the_export("webhook", &all, &lines);
    assert_carry_the_export("filtered webhook", &prop, &lines);
    receiver_task.abort();

    // The event stream, and the relay to JetStream: every event, carrying the exported bytes.
    assert_carry_the_export("stream", &streamed(ledger, head).await, &lines);
    eventually(RELAY_BOUND, "the relay confirms the whole log", || async {
        (relayed(ledger).await >= head).then_some(())
    })
    .await;
    let messages = jetstream_messages(&nats_url, head).await;
    assert_eq!(messages.len() as i64, head);
    assert_carry_the_export("relay", &messages, &lines);

    // After a restart, each accepted request sent again is answered as it was, byte for byte,
    // from what the ledger stored.
    scenario.follower.stop_server().await;
    scenario.ledger.restart().await;
    for sent in &scenario.accepted {
        let again = scenario
            .ledger
            .post_raw(
                &sent.path,
                &[JSON, ("idempotency-key", &sent.key)],
                sent.body.clone(),
            )
            .await;
        assert_eq!(
            again.header("idempotent-replayed"),
            Some("true"),
            "{}",
            sent.key
        );
        assert_eq!(again.text, sent.answer, "{} after a restart", sent.key);
    }
    // And every projection rebuilt from the log equals the live one.
    let replayed = scenario.ledger.stop_and_replay().await;
    assert!(replayed.identical(), "{replayed:?}");

    eprintln!("metadata_bytes: done in {:?}", started.elapsed());
    scenario.ledger.finish().await;
    drop(nats);
}
