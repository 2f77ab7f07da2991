//! Value types that cannot hold invalid values: every constructor validates, and serde goes through
//! the same constructors, so a value read from a request or from the log is always well formed.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ValueError;

/// An asset code such as `USD` or `AAPL`: 1 to 16 of `A-Z 0-9 _`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AssetCode(String);

impl AssetCode {
    pub const MAX_LEN: usize = 16;

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AssetCode {
    type Error = ValueError;

    fn try_from(code: String) -> Result<Self, ValueError> {
        let valid_chars = code
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if code.is_empty() || code.len() > Self::MAX_LEN || !valid_chars {
            return Err(ValueError::new(format!(
                "asset code {:?} is invalid: use 1 to {} characters of A-Z, 0-9 and _",
                truncate_for_message(&code),
                Self::MAX_LEN
            )));
        }
        Ok(Self(code))
    }
}

impl FromStr for AssetCode {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        Self::try_from(s.to_owned())
    }
}

impl From<AssetCode> for String {
    fn from(code: AssetCode) -> String {
        code.0
    }
}

impl fmt::Display for AssetCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The number of decimal places of an asset: 0 to 18.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct Scale(u8);

impl Scale {
    pub const MAX: u8 = 18;

    pub fn get(self) -> u32 {
        u32::from(self.0)
    }
}

impl TryFrom<u32> for Scale {
    type Error = ValueError;
    fn try_from(scale: u32) -> Result<Self, ValueError> {
        if scale > u32::from(Self::MAX) {
            return Err(ValueError::new(format!(
                "scale {scale} is invalid: use 0 to {}",
                Self::MAX
            )));
        }
        Ok(Self(scale as u8))
    }
}

impl From<Scale> for u32 {
    fn from(scale: Scale) -> u32 {
        scale.get()
    }
}

/// An account code such as `alice:cash`: segments of `[a-z0-9_-]+` joined by `:`, at most 128 bytes.
/// A code never has the shape of a UUID, so `{id_or_code}` in a path is never ambiguous.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AccountCode(String);

impl AccountCode {
    pub const MAX_LEN: usize = 128;

    /// Codes that name routes of their own under `/v1/accounts/` (`GET /v1/accounts/tree`), so an
    /// account with one could never be read by code. Opening one is refused; the type still
    /// accepts them, because a log written before a route was added may hold one, and restoring
    /// that log must not fail (such an account stays reachable by its id).
    pub const RESERVED: &'static [&'static str] = &["tree"];

    pub fn is_reserved(&self) -> bool {
        Self::RESERVED.contains(&self.0.as_str())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AccountCode {
    type Error = ValueError;

    fn try_from(code: String) -> Result<Self, ValueError> {
        let segments_valid = code.split(':').all(|segment| {
            !segment.is_empty()
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        });
        if code.is_empty() || code.len() > Self::MAX_LEN || !segments_valid {
            return Err(ValueError::new(format!(
                "account code {:?} is invalid: use segments of a-z, 0-9, _ and - joined by ':', at most {} bytes",
                truncate_for_message(&code),
                Self::MAX_LEN
            )));
        }
        if Uuid::parse_str(&code).is_ok() {
            return Err(ValueError::new(format!(
                "account code {code:?} is invalid: it has the shape of an account id (UUID)"
            )));
        }
        Ok(Self(code))
    }
}

impl FromStr for AccountCode {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        Self::try_from(s.to_owned())
    }
}

impl From<AccountCode> for String {
    fn from(code: AccountCode) -> String {
        code.0
    }
}

impl fmt::Display for AccountCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A ledger's name, such as `default` or `fund-a`: `[a-z0-9][a-z0-9_-]{0,62}`. Names appear in
/// paths (`/v1/ledgers/{ledger}/…`), subjects and routing keys, so they need no escaping anywhere.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LedgerName(String);

impl LedgerName {
    pub const MAX_LEN: usize = 63;
    /// The ledger every database has from its first start, and the one routes without
    /// `/v1/ledgers/{ledger}` serve.
    pub const DEFAULT: &'static str = "default";

    pub fn default_ledger() -> Self {
        Self(Self::DEFAULT.to_owned())
    }

    pub fn is_default(&self) -> bool {
        self.0 == Self::DEFAULT
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for LedgerName {
    type Error = ValueError;

    fn try_from(name: String) -> Result<Self, ValueError> {
        let mut bytes = name.bytes();
        let first_valid = bytes
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let rest_valid =
            bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !first_valid || !rest_valid || name.len() > Self::MAX_LEN {
            return Err(ValueError::new(format!(
                "ledger name {:?} is invalid: use a-z, 0-9, _ and -, starting with a letter or digit, at most {} bytes",
                truncate_for_message(&name),
                Self::MAX_LEN
            )));
        }
        Ok(Self(name))
    }
}

impl FromStr for LedgerName {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        Self::try_from(s.to_owned())
    }
}

impl From<LedgerName> for String {
    fn from(name: LedgerName) -> String {
        name.0
    }
}

impl fmt::Display for LedgerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

uuid_id!(
    /// The stable identity of an account.
    AccountId
);
uuid_id!(
    /// The identity of a transaction, transfer or trade.
    TransactionId
);

/// How a request names an account: by id (a UUID) or by code.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum AccountRef {
    Id(AccountId),
    Code(AccountCode),
}

impl TryFrom<String> for AccountRef {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, ValueError> {
        match Uuid::parse_str(&s) {
            Ok(id) => Ok(Self::Id(AccountId(id))),
            Err(_) => AccountCode::try_from(s).map(Self::Code),
        }
    }
}

impl FromStr for AccountRef {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        Self::try_from(s.to_owned())
    }
}

impl From<AccountRef> for String {
    fn from(r: AccountRef) -> String {
        r.to_string()
    }
}

impl fmt::Display for AccountRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Id(id) => id.fmt(f),
            Self::Code(code) => code.fmt(f),
        }
    }
}

/// A strictly positive decimal written as a JSON string of digits with an optional fraction
/// (`"10"`, `"0.25"`). No sign, exponent, separators or spaces; never rounded. Whether it fits an
/// asset's scale is decided later, against the asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PositiveDecimal(Decimal);

impl PositiveDecimal {
    /// Longer strings are refused before parsing; 28 digits either side is all `Decimal` holds.
    const MAX_TEXT_LEN: usize = 60;

    pub fn get(self) -> Decimal {
        self.0
    }
}

impl TryFrom<String> for PositiveDecimal {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, ValueError> {
        s.parse()
    }
}

impl FromStr for PositiveDecimal {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let shown = truncate_for_message(s);
        let (int_part, frac_part) = match s.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (s, None),
        };
        let digits_only = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
        if s.len() > Self::MAX_TEXT_LEN
            || !digits_only(int_part)
            || !frac_part.is_none_or(digits_only)
        {
            return Err(ValueError::new(format!(
                "amount {shown:?} is invalid: write a positive decimal as a string of digits, such as \"10.50\""
            )));
        }
        let value = Decimal::from_str_exact(s).map_err(|_| {
            ValueError::new(format!(
                "amount {shown:?} is beyond the range of the balance type"
            ))
        })?;
        if value.is_zero() {
            return Err(ValueError::new(format!(
                "amount {shown:?} is invalid: it must be greater than zero"
            )));
        }
        Ok(Self(value))
    }
}

impl From<PositiveDecimal> for String {
    fn from(d: PositiveDecimal) -> String {
        d.0.to_string()
    }
}

impl fmt::Display for PositiveDecimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Free-form metadata: a JSON object of at most 4 KiB in canonical form (`crate::json`), kept as
/// that text from the request to the log and back: its numbers as the client wrote them, its
/// strings as sent (NUL and every other character included). Holding text rather than a parsed
/// map is what lets the ledger hash, store and serve the very same bytes.
#[derive(Debug, Clone)]
pub struct Metadata(Box<serde_json::value::RawValue>);

impl Metadata {
    pub const MAX_ENCODED_BYTES: usize = 4096;

    /// Reads a client's JSON object into canonical form, refusing what cannot be kept as sent.
    /// A number is kept with all its digits, but one beyond the finite range of a binary64 float
    /// (`1e309`) is refused: most JSON parsers (Go's, serde_json's) cannot read a document that
    /// holds one, so every response, relay message and webhook carrying the event would be
    /// unreadable to its consumer.
    pub fn parse(text: &str) -> Result<Self, ValueError> {
        let mut overflowing: Option<String> = None;
        let canonical = crate::json::canonicalize_numbers(text, &mut |literal, out| {
            let infinite = literal.parse::<f64>().is_ok_and(f64::is_infinite);
            if infinite && overflowing.is_none() {
                overflowing = Some(literal.to_owned());
            }
            out.push_str(literal);
        })
        .map_err(|e| ValueError::new(format!("metadata: {e}")))?;
        if let Some(literal) = overflowing {
            return Err(ValueError::new(format!(
                "metadata: the number {literal} is beyond the range of a binary64 float \
                 (±1.7976931348623157e308), which most JSON parsers cannot read: write it as a \
                 string"
            )));
        }
        if !canonical.starts_with('{') {
            return Err(ValueError::new("metadata must be a JSON object"));
        }
        if canonical.len() > Self::MAX_ENCODED_BYTES {
            return Err(ValueError::new(format!(
                "metadata is {} bytes in canonical form; the limit is {} bytes",
                canonical.len(),
                Self::MAX_ENCODED_BYTES
            )));
        }
        serde_json::value::RawValue::from_string(canonical)
            .map(Self)
            .map_err(|e| ValueError::new(format!("metadata: {e}")))
    }

    /// The canonical JSON text.
    pub fn as_json(&self) -> &str {
        self.0.get()
    }

    pub fn is_empty(&self) -> bool {
        self.as_json() == "{}"
    }
}

impl Default for Metadata {
    fn default() -> Self {
        Self(
            serde_json::value::RawValue::from_string("{}".to_owned())
                .unwrap_or_else(|_| unreachable!("`{{}}` is JSON")),
        )
    }
}

impl PartialEq for Metadata {
    fn eq(&self, other: &Self) -> bool {
        self.as_json() == other.as_json()
    }
}

impl Eq for Metadata {}

impl Serialize for Metadata {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Metadata {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<serde_json::value::RawValue>::deserialize(deserializer)?;
        Self::parse(raw.get()).map_err(serde::de::Error::custom)
    }
}

/// Gives a closed vocabulary its one spelling: `as_str` (the same text serde writes, for the types
/// that serde), `FromStr` (the inverse, refusing anything else with a `ValueError`) and `ALL`, so
/// that no other crate repeats the literals.
macro_rules! vocabulary {
    ($name:ident, $what:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $name {
            /// Every value, in the order of the declaration.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl FromStr for $name {
            type Err = ValueError;
            fn from_str(s: &str) -> Result<Self, ValueError> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    _ => Err(ValueError::new(format!(
                        "{} {:?} is invalid: use one of {}",
                        $what,
                        truncate_for_message(s),
                        Self::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
                    ))),
                }
            }
        }
    };
}

/// An account's lifecycle: open accounts move money; frozen ones accept no postings until
/// unfrozen; closed is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    Open,
    Frozen,
    Closed,
}

vocabulary!(AccountStatus, "account status", {
    Open => "open",
    Frozen => "frozen",
    Closed => "closed",
});

/// Whether a transaction was asked for as a plain transaction or as a one-posting transfer; kept so
/// that history and reads show what the client did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransactionKind {
    Transaction,
    Transfer,
    /// Every posting of an earlier transaction or trade, swapped.
    Reversal,
}

vocabulary!(TransactionKind, "transaction kind", {
    Transaction => "transaction",
    Transfer => "transfer",
    Reversal => "reversal",
});

/// How an account's disposals of an instrument choose the lots they close (`crate::lots`):
/// first in first out (the default), last in first out, highest unit cost first, at the
/// average cost of the open lots, or the lots each sale names (`specific`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BookingMethod {
    #[default]
    Fifo,
    Lifo,
    Hifo,
    Average,
    Specific,
}

vocabulary!(BookingMethod, "booking method", {
    Fifo => "fifo",
    Lifo => "lifo",
    Hifo => "hifo",
    Average => "average",
    Specific => "specific",
});

/// How a hold ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldOutcome {
    Posted,
    Voided,
    Expired,
}

vocabulary!(HoldOutcome, "hold outcome", {
    Posted => "posted",
    Voided => "voided",
    Expired => "expired",
});

/// One movement of an asset between two accounts; defined with the events that carry it.
pub use crate::event::Posting;

fn truncate_for_message(s: &str) -> String {
    const SHOWN_CHARS_MAX: usize = 40;
    if s.chars().count() <= SHOWN_CHARS_MAX {
        s.to_owned()
    } else {
        let mut shown: String = s.chars().take(SHOWN_CHARS_MAX).collect();
        shown.push('…');
        shown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_keeps_what_the_client_wrote_in_canonical_form() {
        for (text, canonical) in [
            (r#"{"x": -0.0}"#, r#"{"x":-0.0}"#),
            (
                r#"{ "b": 1E3, "a": [1.50, 1e16] }"#,
                r#"{"a":[1.50,1e16],"b":1E3}"#,
            ),
            (r#"{"x": "a\u0000b"}"#, r#"{"x":"a\u0000b"}"#),
        ] {
            assert_eq!(
                Metadata::parse(text).unwrap().as_json(),
                canonical,
                "{text}"
            );
        }
        assert!(Metadata::default().is_empty());
    }

    #[test]
    fn metadata_is_an_object_without_duplicates_lone_surrogates_or_infinite_numbers() {
        for text in [
            r#"[1]"#,
            r#""x""#,
            r#"{"a":1,"a":2}"#,
            r#"{"x":"\udc00"}"#,
            r#"{"x":1e309}"#,
            r#"{"x":[-1E999999999]}"#,
        ] {
            assert!(Metadata::parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn asset_codes() {
        for ok in ["USD", "AAPL", "BTC_2", "X", "ABCDEFGHIJKLMNOP"] {
            assert!(ok.parse::<AssetCode>().is_ok(), "{ok}");
        }
        for bad in [
            "",
            "usd",
            "US D",
            "ABCDEFGHIJKLMNOPQ",
            "US-D",
            "ÜSD",
            "USD\0",
        ] {
            assert!(bad.parse::<AssetCode>().is_err(), "{bad}");
        }
    }

    #[test]
    fn account_codes() {
        for ok in ["alice:cash", "world:bank", "a", "broker:fees:eur", "x_1-2"] {
            assert!(ok.parse::<AccountCode>().is_ok(), "{ok}");
        }
        let too_long = "a".repeat(129);
        for bad in [
            "",
            "Alice",
            "alice::cash",
            ":alice",
            "alice:",
            "alice cash",
            "аlice", // Cyrillic a
            "al\u{200b}ice",
            "alice\u{202e}",
            "alice\0",
            too_long.as_str(),
            "123e4567-e89b-12d3-a456-426614174000",
        ] {
            assert!(bad.parse::<AccountCode>().is_err(), "{bad:?}");
        }
        assert!("a".repeat(128).parse::<AccountCode>().is_ok());
    }

    #[test]
    fn account_refs_prefer_ids() {
        let id = "123e4567-e89b-12d3-a456-426614174000";
        assert!(matches!(id.parse::<AccountRef>(), Ok(AccountRef::Id(_))));
        assert!(matches!(
            "alice:cash".parse::<AccountRef>(),
            Ok(AccountRef::Code(_))
        ));
    }

    #[test]
    fn positive_decimals() {
        assert_eq!(
            "10.50"
                .parse::<PositiveDecimal>()
                .unwrap()
                .get()
                .to_string(),
            "10.50"
        );
        assert!("79228162514264337593543950335"
            .parse::<PositiveDecimal>()
            .is_ok());
        for bad in [
            "",
            "0",
            "0.00",
            "-1",
            "+1",
            "1e3",
            "1E3",
            "NaN",
            "inf",
            "1.",
            ".5",
            "1_000",
            " 1",
            "1,5",
            "1.2.3",
            "79228162514264337593543950336",
            "0.00000000000000000000000000001",
        ] {
            assert!(bad.parse::<PositiveDecimal>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn positive_decimals_only_from_json_strings() {
        assert!(serde_json::from_str::<PositiveDecimal>("\"1.5\"").is_ok());
        assert!(serde_json::from_str::<PositiveDecimal>("1.5").is_err());
        assert!(serde_json::from_str::<PositiveDecimal>("15").is_err());
    }

    #[test]
    fn scales() {
        assert!(Scale::try_from(0).is_ok());
        assert!(Scale::try_from(18).is_ok());
        assert!(Scale::try_from(19).is_err());
    }

    #[test]
    fn vocabularies_round_trip() {
        for status in AccountStatus::ALL {
            assert_eq!(status.as_str().parse::<AccountStatus>(), Ok(*status));
        }
        for kind in TransactionKind::ALL {
            assert_eq!(kind.as_str().parse::<TransactionKind>(), Ok(*kind));
        }
        for outcome in HoldOutcome::ALL {
            assert_eq!(outcome.as_str().parse::<HoldOutcome>(), Ok(*outcome));
        }
        assert_eq!(AccountStatus::ALL.len(), 3);
        assert_eq!(TransactionKind::ALL.len(), 3);
        assert_eq!(HoldOutcome::ALL.len(), 3);
    }

    #[test]
    fn vocabularies_spell_as_serde_does() {
        for status in AccountStatus::ALL {
            assert_eq!(serde_json::json!(status), status.as_str());
        }
        for kind in TransactionKind::ALL {
            assert_eq!(serde_json::json!(kind), kind.as_str());
        }
    }

    #[test]
    fn vocabularies_refuse_other_text() {
        for bad in ["", "Open", "OPEN", " open", "open ", "active"] {
            assert!(bad.parse::<AccountStatus>().is_err(), "{bad:?}");
        }
        for bad in ["", "Posted", "post", "void", "expire"] {
            assert!(bad.parse::<HoldOutcome>().is_err(), "{bad:?}");
        }
        for bad in ["", "Transfer", "trade", "transactions"] {
            assert!(bad.parse::<TransactionKind>().is_err(), "{bad:?}");
        }
        assert_eq!(
            "active".parse::<AccountStatus>().map_err(|e| e.to_string()),
            Err(
                r#"account status "active" is invalid: use one of open, frozen, closed"#.to_owned()
            )
        );
    }

    #[test]
    fn metadata_is_bounded() {
        let note = |n: usize| format!("{{\"note\":\"{}\"}}", "x".repeat(n));
        assert!(Metadata::parse(&note(Metadata::MAX_ENCODED_BYTES - 11)).is_ok());
        assert!(Metadata::parse(&note(Metadata::MAX_ENCODED_BYTES - 10)).is_err());
    }
}

/// A decimal of either sign, or zero, written as a JSON string (`"-500.00"`, `"0"`, `"12.5"`):
/// balance limits and the amounts conditions compare with. The same strict form as
/// `PositiveDecimal`, with an optional leading `-`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SignedDecimal(Decimal);

impl SignedDecimal {
    pub fn get(self) -> Decimal {
        self.0
    }
}

impl TryFrom<String> for SignedDecimal {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, ValueError> {
        s.parse()
    }
}

impl FromStr for SignedDecimal {
    type Err = ValueError;
    fn from_str(s: &str) -> Result<Self, ValueError> {
        let (negative, magnitude) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let is_zero = !magnitude.is_empty()
            && magnitude.len() <= PositiveDecimal::MAX_TEXT_LEN
            && magnitude.bytes().all(|b| b == b'0' || b == b'.')
            && magnitude.bytes().filter(|b| *b == b'.').count() <= 1
            && !magnitude.starts_with('.')
            && !magnitude.ends_with('.');
        if is_zero {
            return Ok(Self(Decimal::ZERO));
        }
        let value = magnitude.parse::<PositiveDecimal>().map_err(|_| {
            ValueError::new(format!(
                "amount {:?} is invalid: write a decimal as a string of digits with an optional leading -, such as \"-500.00\"",
                truncate_for_message(s)
            ))
        })?;
        Ok(Self(if negative { -value.get() } else { value.get() }))
    }
}

impl From<SignedDecimal> for String {
    fn from(d: SignedDecimal) -> String {
        d.0.to_string()
    }
}

impl fmt::Display for SignedDecimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
