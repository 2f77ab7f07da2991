//! The one known way a log written before migration 0013 can fail its own chain without anyone
//! having altered it: the writer hashed a number as `serde_json` spelled it after reading it as
//! `f64` (`1e+16`, `1e-7`, `-0.0`), and the store kept it as PostgreSQL's `numeric` prints the same
//! value (`10000000000000000`, `0.0000001`, `0.0`). Such an event's stored bytes differ from its
//! hashed bytes, but only in how some numbers are written, never in what they are.
//!
//! `explain` proves that for one event, or says nothing: it tries, for each number of the stored
//! payload and metadata, the spelling the old writer would have hashed, and accepts an event only
//! when a choice of those spellings gives the stored hash and every spelling chosen has exactly
//! the stored number's decimal value. A number changed to another value, however close, is not
//! explained (`10000000000000001` also reads as the `f64` `1e+16`, but is another number), so
//! this never passes off an alteration as the defect.

use domain::chain::{ChainedEvent, Hash};
use domain::json::canonicalize_numbers;

use super::{format_recorded_at, StoredEvent};

/// The cause `ledger verify` names for such an event.
pub const CAUSE: &str = "stored form differs from hashed form";

/// Numbers whose spelling may have changed, per event, beyond which no explanation is tried
/// (every subset of them is a candidate: 2^10 hashes at most).
const RESPELLED_NUMBERS_MAX: usize = 10;

/// How the stored event differs from what was hashed, when it differs only in the spelling of
/// numbers of equal value; `None` when that cannot be shown.
pub fn explain(previous: &Hash, event: &StoredEvent) -> Option<String> {
    let mut literals = Vec::new();
    for text in [&event.payload, &event.metadata] {
        canonicalize_numbers(text, &mut |literal, out| {
            literals.push(literal.to_owned());
            out.push_str(literal);
        })
        .ok()?;
    }
    let respellable: Vec<(usize, String)> = literals
        .iter()
        .enumerate()
        .filter_map(|(i, stored)| old_spelling(stored).map(|old| (i, old)))
        .collect();
    if respellable.is_empty() || respellable.len() > RESPELLED_NUMBERS_MAX {
        return None;
    }
    let recorded_at = format_recorded_at(event.recorded_at);
    for subset in 1u32..(1 << respellable.len()) {
        let mut spellings = literals.clone();
        let mut changed = Vec::new();
        for (bit, (i, old)) in respellable.iter().enumerate() {
            if subset & (1 << bit) != 0 {
                changed.push(format!("stored {}, hashed {old}", literals[*i]));
                spellings[*i] = old.clone();
            }
        }
        let mut next = spellings.iter();
        let mut respell = |_: &str, out: &mut String| out.push_str(next.next().map_or("", |s| s));
        let payload = canonicalize_numbers(&event.payload, &mut respell).ok()?;
        let metadata = canonicalize_numbers(&event.metadata, &mut respell).ok()?;
        let hash = domain::chain::chain(
            previous,
            &ChainedEvent {
                position: event.position,
                event_id: event.event_id,
                event_type: &event.event_type,
                schema_version: event.schema_version,
                recorded_at: &recorded_at,
                payload: &payload,
                metadata: &metadata,
            },
        );
        if hash.as_slice() == event.hash.as_slice() {
            return Some(format!(
                "{CAUSE}: numbers written differently, of equal value ({}), as the writer before \
                 migration 0013 hashed them",
                changed.join("; ")
            ));
        }
    }
    None
}

/// The spelling the old writer hashed for a number that `numeric` now prints as `stored`, when it
/// differs: it read numbers as `f64` and wrote them back with `serde_json` (`1e+16`, `0.0001`,
/// `-0.0`; numeric has no negative zero, so a stored zero may have been one). Only a spelling of
/// exactly the same decimal value counts.
fn old_spelling(stored: &str) -> Option<String> {
    let value: f64 = stored.parse().ok().filter(|v: &f64| v.is_finite())?;
    let value = if value == 0.0 { -0.0 } else { value };
    let old = serde_json::Number::from_f64(value)?.to_string();
    // numeric keeps a literal's scale (`12.0` stays `12.0`), so a stored integer was hashed as
    // that integer unless the old spelling had an exponent (`1e+16`).
    let integer = !stored.contains(['.', 'e', 'E']);
    if integer && !old.contains('e') {
        return None;
    }
    (old != stored && same_value(&old, stored)).then_some(old)
}

/// Whether two JSON number literals denote exactly the same decimal value (zeros of either sign
/// are equal).
fn same_value(a: &str, b: &str) -> bool {
    match (decimal(a), decimal(b)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// A literal as (negative, significant digits, exponent of the last digit), `(false, "", 0)` for
/// zero; `None` for an exponent too large to compare.
fn decimal(literal: &str) -> Option<(bool, String, i64)> {
    let (negative, unsigned) = match literal.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, literal),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], unsigned[at + 1..].parse::<i64>().ok()?),
        None => (unsigned, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{whole}{fraction}");
    let exponent = exponent.checked_sub(i64::try_from(fraction.len()).ok()?)?;
    let trimmed_end = digits.trim_end_matches('0');
    let exponent = exponent.checked_add(i64::try_from(digits.len() - trimmed_end.len()).ok()?)?;
    let significant = trimmed_end.trim_start_matches('0');
    if significant.is_empty() {
        return Some((false, String::new(), 0));
    }
    Some((negative, significant.to_owned(), exponent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_are_told_apart_from_close_ones() {
        assert!(same_value("1e+16", "10000000000000000"));
        assert!(same_value("1.5e-7", "0.00000015"));
        assert!(same_value("-0.0", "0"));
        assert!(same_value("100.0", "1E2"));
        assert!(!same_value("1e16", "10000000000000001"));
        assert!(!same_value("-1", "1"));
    }

    #[test]
    fn the_old_spelling_is_serde_jsons_f64() {
        assert_eq!(old_spelling("10000000000000000").as_deref(), Some("1e+16"));
        assert_eq!(old_spelling("0.0000001").as_deref(), Some("1e-7"));
        assert_eq!(old_spelling("0.0").as_deref(), Some("-0.0"));
        assert_eq!(old_spelling("12"), None);
        assert_eq!(old_spelling("0"), None);
        // The cases docs/audit.md spells out for a verifier.
        assert_eq!(
            old_spelling("1000000000000000.00").as_deref(),
            Some("1000000000000000.0")
        );
        assert_eq!(old_spelling("0.000010").as_deref(), Some("0.00001"));
        assert_eq!(old_spelling("0.00000015").as_deref(), Some("1.5e-7"));
        assert_eq!(old_spelling("12.50").as_deref(), Some("12.5"));
        assert_eq!(
            old_spelling("12345678901234567000").as_deref(),
            Some("1.2345678901234567e+19")
        );
        // Read as f64 this is 1e16, but it is another number: never a respelling.
        assert_eq!(old_spelling("10000000000000001"), None);
    }
}
