//! The hash chain over the log: `hash(n) = SHA-256(hash(n − 1) ‖ canonical bytes of event n)`,
//! starting from a fixed genesis value. `docs/audit.md` specifies the encoding precisely enough
//! to write a verifier from it; `tools/verify_export.py` is one that shares no code with this.

use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub type Hash = [u8; 32];

/// Separates event encodings from anything else ever hashed with SHA-256.
const EVENT_DOMAIN: &[u8] = b"ledger:event:v1\n";

/// The hash the first event chains from: SHA-256 of `ledger:genesis:v1`.
pub fn genesis() -> Hash {
    Sha256::digest(b"ledger:genesis:v1").into()
}

/// An event as it is stored, the parts the chain covers.
pub struct ChainedEvent<'a> {
    pub position: i64,
    pub event_id: Uuid,
    pub event_type: &'a str,
    pub schema_version: i16,
    /// RFC 3339 in UTC with exactly six fractional digits and `Z`: `2026-11-22T03:28:40.306749Z`.
    pub recorded_at: &'a str,
    pub payload: &'a Value,
    pub metadata: &'a Value,
}

/// The canonical bytes of an event: the domain tag, then each field on its own line.
pub fn canonical_bytes(event: &ChainedEvent<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    write_fields(&mut out, event);
    write_canonical_json(&mut out, event.payload);
    out.push(b'\n');
    write_canonical_json(&mut out, event.metadata);
    out
}

/// The domain tag and every field before the payload, each on its own line.
fn write_fields(out: &mut Vec<u8>, event: &ChainedEvent<'_>) {
    out.extend_from_slice(EVENT_DOMAIN);
    for field in [
        event.position.to_string().as_str(),
        event.event_id.hyphenated().to_string().as_str(),
        event.event_type,
        event.schema_version.to_string().as_str(),
        event.recorded_at,
    ] {
        out.extend_from_slice(field.as_bytes());
        out.push(b'\n');
    }
}

/// The hash of `event` chained after `previous`.
pub fn chain(previous: &Hash, event: &ChainedEvent<'_>) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(previous);
    hasher.update(canonical_bytes(event));
    hasher.finalize().into()
}

/// `chain`, for an event whose payload and metadata are given already in canonical JSON (what the
/// writer stores): the same hash, without encoding them a second time. `event.payload` and
/// `event.metadata` are not read.
pub fn chain_encoded(
    previous: &Hash,
    event: &ChainedEvent<'_>,
    payload_json: &str,
    metadata_json: &str,
) -> Hash {
    let mut fields = Vec::with_capacity(128);
    write_fields(&mut fields, event);
    let mut hasher = Sha256::new();
    hasher.update(previous);
    hasher.update(&fields);
    hasher.update(payload_json.as_bytes());
    hasher.update(b"\n");
    hasher.update(metadata_json.as_bytes());
    hasher.finalize().into()
}

/// Canonical JSON: no whitespace, object keys in ascending order of their UTF-8 bytes, strings
/// with only `"`, `\` and U+0000–U+001F escaped (`\b \t \n \f \r`, else `\u00xx` in lower case),
/// numbers as written (the ledger writes only integers).
pub fn canonical_json(value: &Value) -> String {
    let mut out = Vec::new();
    write_canonical_json(&mut out, value);
    // Only valid UTF-8 is ever written.
    String::from_utf8(out).unwrap_or_default()
}

fn write_canonical_json(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical_json(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(out, key);
                out.push(b':');
                write_canonical_json(out, item);
            }
            out.push(b'}');
        }
    }
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            '\r' => out.extend_from_slice(b"\\r"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
            }
            c => {
                let mut buf = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

pub fn to_hex(hash: &Hash) -> String {
    to_hex_slice(hash)
}

pub fn to_hex_slice(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn chaining_encoded_json_gives_the_same_hash() {
        let payload = serde_json::json!({"b": [1, "x\n"], "a": {"z": null, "y": true}});
        let metadata = serde_json::json!({"idempotency_key": "k"});
        let event = super::ChainedEvent {
            position: 7,
            event_id: uuid::Uuid::nil(),
            event_type: "TransactionPosted",
            schema_version: 1,
            recorded_at: "2026-11-22T03:28:40.306749Z",
            payload: &payload,
            metadata: &metadata,
        };
        let previous = super::genesis();
        assert_eq!(
            super::chain(&previous, &event),
            super::chain_encoded(
                &previous,
                &event,
                &super::canonical_json(&payload),
                &super::canonical_json(&metadata)
            )
        );
    }

    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_and_escapes_minimally() {
        let v = json!({"b": 1, "a": [true, null, "x\"y\\z\n\u{1}é/"], "A": {"z": "", "c": -2}});
        assert_eq!(
            canonical_json(&v),
            r#"{"A":{"c":-2,"z":""},"a":[true,null,"x\"y\\z\n\u0001é/"],"b":1}"#
        );
    }

    #[test]
    fn the_chain_depends_on_every_field_and_on_the_previous_hash() {
        let payload = json!({"asset": "USD", "scale": 2});
        let metadata = json!({"idempotency_key": "k"});
        let event = ChainedEvent {
            position: 1,
            event_id: Uuid::nil(),
            event_type: "AssetDefined",
            schema_version: 1,
            recorded_at: "2026-11-22T03:28:40.306749Z",
            payload: &payload,
            metadata: &metadata,
        };
        let first = chain(&genesis(), &event);
        assert_ne!(chain(&first, &event), first);
        let other_payload = json!({"asset": "USD", "scale": 3});
        let altered = ChainedEvent {
            payload: &other_payload,
            ..event
        };
        assert_ne!(chain(&genesis(), &altered), first);
        assert_eq!(
            to_hex(&genesis()),
            to_hex(&Sha256::digest(b"ledger:genesis:v1").into())
        );
    }
}
