//! One pass over a JSON body before it is deserialized into a request type. It refuses what the
//! typed pass would let through silently or could not bound by itself: a key that appears twice
//! in one object, at any depth (serde's derive refuses a duplicate struct field, but a map such as
//! `metadata` keeps the last value), and nesting deeper than `DEPTH_MAX` (each level is one stack
//! frame here, so the bound keeps the stack small whatever the body holds). Trailing bytes after
//! the value and anything that is not JSON are syntax errors.

use std::cell::Cell;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Arrays and objects nested deeper than this are refused.
pub const DEPTH_MAX: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum StrictJsonError {
    #[error("the body is not valid JSON: {0}")]
    Syntax(String),
    #[error("the key {0:?} appears twice in one object")]
    DuplicateKey(String),
    #[error("the body is nested deeper than {DEPTH_MAX} levels")]
    TooDeep,
}

/// What stopped the pass, when it was not the parser itself.
enum Found {
    DuplicateKey(String),
    TooDeep,
}

/// Checks that `bytes` is one JSON value with no duplicate keys and at most `DEPTH_MAX` levels.
pub fn check(bytes: &[u8]) -> Result<(), StrictJsonError> {
    let found = Cell::new(None);
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let checked = Check {
        depth: 0,
        found: &found,
    }
    .deserialize(&mut deserializer)
    .and_then(|()| deserializer.end());
    match (checked, found.take()) {
        (_, Some(Found::DuplicateKey(key))) => Err(StrictJsonError::DuplicateKey(key)),
        (_, Some(Found::TooDeep)) => Err(StrictJsonError::TooDeep),
        (Err(e), None) => Err(StrictJsonError::Syntax(e.to_string())),
        (Ok(()), None) => Ok(()),
    }
}

#[derive(Clone, Copy)]
struct Check<'a> {
    depth: usize,
    found: &'a Cell<Option<Found>>,
}

impl Check<'_> {
    /// The check for the values inside an array or object at this level.
    fn deeper<E: de::Error>(self) -> Result<Self, E> {
        if self.depth >= DEPTH_MAX {
            self.found.set(Some(Found::TooDeep));
            return Err(E::custom("too deep"));
        }
        Ok(Self {
            depth: self.depth + 1,
            found: self.found,
        })
    }
}

impl<'de> DeserializeSeed<'de> for Check<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Check<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.deeper()?;
        while seq.next_element_seed(inner)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.deeper()?;
        let mut keys = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if keys.contains(&key) {
                self.found.set(Some(Found::DuplicateKey(key)));
                return Err(de::Error::custom("duplicate key"));
            }
            keys.insert(key);
            map.next_value_seed(inner)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_json_without_duplicates() {
        assert!(check(br#"{"a":1,"b":{"a":[1,{"a":null}]},"c":"a"}"#).is_ok());
        assert!(check(b" [1, 2.5, -3, true, \"x\"] ").is_ok());
    }

    #[test]
    fn refuses_duplicates_at_any_depth_even_when_escaped() {
        for body in [
            &br#"{"a":1,"a":2}"#[..],
            br#"{"x":[{"m":{"k":1,"k":1}}]}"#,
            br#"{"amount":"1","amo\u0075nt":"2"}"#,
        ] {
            assert!(matches!(check(body), Err(StrictJsonError::DuplicateKey(_))));
        }
    }

    #[test]
    fn refuses_deep_nesting_without_recursing_into_it() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(matches!(
            check(deep.as_bytes()),
            Err(StrictJsonError::TooDeep)
        ));
        let ok = format!("{}{}", "[".repeat(DEPTH_MAX), "]".repeat(DEPTH_MAX));
        assert!(check(ok.as_bytes()).is_ok());
        let over = format!("{}{}", "[".repeat(DEPTH_MAX + 1), "]".repeat(DEPTH_MAX + 1));
        assert!(matches!(
            check(over.as_bytes()),
            Err(StrictJsonError::TooDeep)
        ));
    }

    #[test]
    fn refuses_trailing_bytes_and_non_json() {
        for body in [&b"{} x"[..], b"{", b"", b"nope", b"{\"a\":1}{}"] {
            assert!(matches!(check(body), Err(StrictJsonError::Syntax(_))));
        }
    }
}
