//! Signatures of deliveries, in Stripe's style. Each request carries
//!
//! ```text
//! Ledger-Signature: t=<unix seconds>,v1=<hex HMAC-SHA-256(secret, "<t>.<body>")>
//! ```
//!
//! where the key is the subscription's secret as its UTF-8 bytes (`whsec_…`, all of it) and the
//! body is the request's exact bytes. A receiver recomputes the HMAC over the raw body it got,
//! compares in constant time, and refuses a `t` too far from its clock (a replayed request). A
//! header may carry several `v1` (e.g. while a secret is being replaced): one that verifies is
//! enough. Pure functions: no clock, no I/O.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::secrets::random_secret;
use crate::Result;

type HmacSha256 = Hmac<Sha256>;

/// The header that carries the signature.
pub const SIGNATURE_HEADER: &str = "ledger-signature";
/// The header that names the ledger of the event (its position is this ledger's).
pub const LEDGER_HEADER: &str = "ledger-name";
/// The header that carries the event's position in its ledger, for a receiver to drop
/// duplicates (by ledger and position).
pub const POSITION_HEADER: &str = "ledger-position";
/// The header that names the subscription a delivery is for.
pub const SUBSCRIPTION_HEADER: &str = "ledger-webhook-id";
/// Every secret starts with this, so that one is recognisable in a config file or a leak scan.
pub const SECRET_PREFIX: &str = "whsec_";
/// How far from its clock a receiver should accept `t`, in seconds (what docs/streaming.md
/// recommends).
pub const TOLERANCE_S: i64 = 300;
/// Longest header `verify` reads: a header is a few dozen bytes per signature.
const HEADER_BYTES_MAX: usize = 1_024;

/// A fresh secret: the prefix and 64 hex digits (256 random bits).
pub fn new_secret() -> Result<String> {
    Ok(format!(
        "{SECRET_PREFIX}{}",
        domain::chain::to_hex(&random_secret("a webhook secret")?)
    ))
}

fn mac(secret: &str, timestamp_s: i64, body: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length: this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
    mac.update(timestamp_s.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The value of `Ledger-Signature` for `body` sent at `timestamp_s`.
pub fn header_value(secret: &str, timestamp_s: i64, body: &[u8]) -> String {
    let tag = mac(secret, timestamp_s, body).finalize().into_bytes();
    format!("t={timestamp_s},v1={}", hex::encode(tag))
}

/// Why a signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the header is not t=<seconds>,v1=<hex>")]
    Malformed,
    #[error("the timestamp is {0} s away from now, more than the tolerance")]
    Stale(i64),
    #[error("no v1 signature matches the body")]
    Mismatch,
}

/// Checks a `Ledger-Signature` header against the raw body and the secret, at `now_s`, accepting
/// timestamps within `tolerance_s` of it: what a receiver does.
pub fn verify(
    header: &str,
    secret: &str,
    body: &[u8],
    now_s: i64,
    tolerance_s: i64,
) -> std::result::Result<(), SignatureError> {
    if header.len() > HEADER_BYTES_MAX {
        return Err(SignatureError::Malformed);
    }
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => {
                timestamp = Some(t.parse::<i64>().map_err(|_| SignatureError::Malformed)?)
            }
            Some(("v1", v1)) => {
                signatures.push(hex::decode(v1).map_err(|_| SignatureError::Malformed)?)
            }
            // Other schemes (a later v2) are for other receivers.
            Some(_) => {}
            None => return Err(SignatureError::Malformed),
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let skew = now_s.saturating_sub(timestamp).saturating_abs();
    if skew > tolerance_s {
        return Err(SignatureError::Stale(skew));
    }
    let expected = mac(secret, timestamp, body);
    if signatures
        .iter()
        .any(|s| expected.clone().verify_slice(s).is_ok())
    {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Computed independently: printf '1700000000.{"position":1}' |
        //   openssl dgst -sha256 -hmac "$SECRET"
        let header = header_value(SECRET, 1_700_000_000, br#"{"position":1}"#);
        let expected = {
            let mut mac = <HmacSha256 as Mac>::new_from_slice(SECRET.as_bytes()).unwrap();
            mac.update(br#"1700000000.{"position":1}"#);
            hex::encode(mac.finalize().into_bytes())
        };
        assert_eq!(header, format!("t=1700000000,v1={expected}"));
    }

    #[test]
    fn a_signature_verifies_within_the_tolerance_only() {
        let body = br#"{"position":7}"#;
        let header = header_value(SECRET, 1_000, body);
        assert_eq!(verify(&header, SECRET, body, 1_000, TOLERANCE_S), Ok(()));
        assert_eq!(verify(&header, SECRET, body, 1_300, TOLERANCE_S), Ok(()));
        assert_eq!(
            verify(&header, SECRET, body, 1_301, TOLERANCE_S),
            Err(SignatureError::Stale(301))
        );
        assert_eq!(
            verify(&header, SECRET, body, 699, TOLERANCE_S),
            Err(SignatureError::Stale(301))
        );
    }

    #[test]
    fn another_body_secret_or_timestamp_does_not_verify() {
        let body = br#"{"position":7}"#;
        let header = header_value(SECRET, 1_000, body);
        let mismatch = Err(SignatureError::Mismatch);
        assert_eq!(
            verify(&header, SECRET, b"{\"position\":8}", 1_000, 5),
            mismatch
        );
        assert_eq!(verify(&header, "whsec_other", body, 1_000, 5), mismatch);
        let moved = header.replace("t=1000", "t=1001");
        assert_eq!(verify(&moved, SECRET, body, 1_000, 5), mismatch);
    }

    #[test]
    fn any_matching_v1_is_enough_and_malformed_headers_are_refused() {
        let body = b"{}";
        let good = header_value(SECRET, 5, body);
        let v1 = good.split_once(",v1=").unwrap().1;
        let two = format!("t=5,v1={},v1={v1}", "00".repeat(32));
        assert_eq!(verify(&two, SECRET, body, 5, 0), Ok(()));
        for bad in ["", "t=5", "v1=00", "t=x,v1=00", "t=5,v1=zz", "garbage"] {
            assert_eq!(
                verify(bad, SECRET, body, 5, 0),
                Err(SignatureError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn secrets_are_prefixed_random_hex() {
        let a = new_secret().unwrap();
        let b = new_secret().unwrap();
        assert_ne!(a, b);
        assert!(a.starts_with(SECRET_PREFIX));
        assert_eq!(a.len(), SECRET_PREFIX.len() + 64);
    }
}
