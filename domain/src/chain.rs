//! The hash chain over the log: `hash(n) = SHA-256(hash(n − 1) ‖ canonical bytes of event n)`,
//! starting from a fixed genesis value. `docs/audit.md` specifies the encoding precisely enough
//! to write a verifier from it; `tools/verify_export.py` is one that shares no code with this.
//! The payload and metadata are hashed as the canonical JSON text the store keeps (`crate::json`).

use sha2::{Digest, Sha256};
use uuid::Uuid;

pub type Hash = [u8; 32];

/// Separates event encodings from anything else ever hashed with SHA-256.
const EVENT_DOMAIN: &[u8] = b"ledger:event:v1\n";

/// The hash the first event chains from: SHA-256 of `ledger:genesis:v1`.
pub fn genesis() -> Hash {
    Sha256::digest(b"ledger:genesis:v1").into()
}

/// An event as it is stored, the parts the chain covers. The payload and metadata are canonical
/// JSON text (`crate::json`): the same bytes the store keeps and the API serves.
pub struct ChainedEvent<'a> {
    pub position: i64,
    pub event_id: Uuid,
    pub event_type: &'a str,
    pub schema_version: i16,
    /// RFC 3339 in UTC with exactly six fractional digits and `Z`: `2026-11-22T03:28:40.306749Z`.
    pub recorded_at: &'a str,
    pub payload: &'a str,
    pub metadata: &'a str,
}

/// The canonical bytes of an event: the domain tag, then each field on its own line.
pub fn canonical_bytes(event: &ChainedEvent<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + event.payload.len() + event.metadata.len());
    out.extend_from_slice(EVENT_DOMAIN);
    for field in [
        event.position.to_string().as_str(),
        event.event_id.hyphenated().to_string().as_str(),
        event.event_type,
        event.schema_version.to_string().as_str(),
        event.recorded_at,
        event.payload,
    ] {
        out.extend_from_slice(field.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(event.metadata.as_bytes());
    out
}

/// The hash of `event` chained after `previous`.
pub fn chain(previous: &Hash, event: &ChainedEvent<'_>) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(previous);
    hasher.update(canonical_bytes(event));
    hasher.finalize().into()
}

pub fn to_hex(hash: &Hash) -> String {
    to_hex_slice(hash)
}

/// Lower-case hex, two digits a byte. Written out by hand: formatting each byte (`{b:02x}`)
/// allocated a string per byte, on the writer's path (every answer carries its fingerprint).
pub fn to_hex_slice(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        hex.push(char::from(DIGITS[usize::from(b >> 4)]));
        hex.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_two_lower_case_digits_a_byte() {
        assert_eq!(to_hex_slice(&[]), "");
        assert_eq!(to_hex_slice(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    }

    #[test]
    fn the_chain_depends_on_every_field_and_on_the_previous_hash() {
        let event = ChainedEvent {
            position: 1,
            event_id: Uuid::nil(),
            event_type: "AssetDefined",
            schema_version: 1,
            recorded_at: "2026-11-22T03:28:40.306749Z",
            payload: r#"{"asset":"USD","scale":2}"#,
            metadata: r#"{"idempotency_key":"k"}"#,
        };
        let first = chain(&genesis(), &event);
        assert_ne!(chain(&first, &event), first);
        let altered = ChainedEvent {
            payload: r#"{"asset":"USD","scale":3}"#,
            ..event
        };
        assert_ne!(chain(&genesis(), &altered), first);
        assert_eq!(
            to_hex(&genesis()),
            to_hex(&Sha256::digest(b"ledger:genesis:v1").into())
        );
    }

    #[test]
    fn the_canonical_bytes_are_the_fields_on_lines_of_their_own() {
        let event = ChainedEvent {
            position: 42,
            event_id: Uuid::nil(),
            event_type: "AccountOpened",
            schema_version: 1,
            recorded_at: "2026-11-22T03:28:40.306749Z",
            payload: r#"{"x":1e16}"#,
            metadata: "{}",
        };
        assert_eq!(
            String::from_utf8(canonical_bytes(&event)).unwrap(),
            "ledger:event:v1\n42\n00000000-0000-0000-0000-000000000000\nAccountOpened\n1\n\
             2026-11-22T03:28:40.306749Z\n{\"x\":1e16}\n{}"
        );
    }
}
