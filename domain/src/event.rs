//! Events: immutable facts appended to the log. Each names accounts by code (an account's code never
//! changes, and `AccountOpened` ties it to the id), and carries amounts as decimal strings at the
//! asset's scale, so the log reads on its own, without the projections.
//!
//! Every event type has a schema version. A stored payload is decoded by `Event::decode`, which is
//! where an older version would be upcast; stored payloads are never rewritten.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::values::{
    AccountCode, AccountId, AccountStatus, AssetCode, BookingMethod, Metadata, Scale,
    TransactionId, TransactionKind,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    AssetDefined(AssetDefined),
    AccountOpened(AccountOpened),
    TransactionPosted(TransactionPosted),
    TradeExecuted(TradeExecuted),
    AccountStatusChanged(AccountStatusChanged),
    AccountLimitsSet(AccountLimitsSet),
    PendingPosted(PendingPosted),
    PendingVoided(PendingVoided),
    PendingExpired(PendingExpired),
    PeriodClosed(PeriodClosed),
    PeriodReopened(PeriodReopened),
    BookingMethodSet(BookingMethodSet),
    PriceMarked(PriceMarked),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountStatusChanged {
    pub account: AccountCode,
    pub status: AccountStatus,
    pub metadata: Metadata,
}

/// An account's bounds in one asset from now on (`null`: unbounded), at the asset's scale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountLimitsSet {
    pub account: AccountCode,
    pub asset: AssetCode,
    pub min_balance: Option<Decimal>,
    pub max_balance: Option<Decimal>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetDefined {
    pub asset: AssetCode,
    pub scale: Scale,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountOpened {
    pub account_id: AccountId,
    pub code: AccountCode,
    pub allow_negative: bool,
    pub metadata: Metadata,
    /// How its disposals close lots, when stated at opening; absent, `fifo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub booking_method: Option<BookingMethod>,
}

/// An account's booking method from this event on: later disposals close lots by it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BookingMethodSet {
    pub account: AccountCode,
    pub booking_method: BookingMethod,
    pub metadata: Metadata,
}

/// A mark: the price of one unit of `instrument` in `currency` as of a time. Marks move no
/// money; they are events so that every unrealized P&L figure can be reproduced from the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceMarked {
    pub instrument: AssetCode,
    pub currency: AssetCode,
    pub price: Decimal,
    #[serde(with = "micros")]
    pub as_of: DateTime<Utc>,
    pub metadata: Metadata,
}

/// What an acquisition that is not a trade cost, stated by the client: `amount` of `currency`
/// for the whole posting (at the currency's scale). It opens a lot at that cost in the
/// destination, and closes lots in the source with that amount as proceeds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cost {
    pub amount: Decimal,
    pub currency: AssetCode,
}

/// One movement of `amount` of `asset` from `source` to `destination`. Each posting debits and
/// credits the same amount of one asset, so every transaction balances per asset by construction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Posting {
    pub source: AccountCode,
    pub destination: AccountCode,
    pub asset: AssetCode,
    pub amount: Decimal,
    /// The cost the client stated for the units moved (transactions and transfers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<Cost>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransactionPosted {
    pub transaction_id: TransactionId,
    pub kind: TransactionKind,
    pub postings: Vec<Posting>,
    pub metadata: Metadata,
    /// The postings are reserved, not moved, until a `PendingPosted`, `PendingVoided` or
    /// `PendingExpired` settles them. Absent (false) in the payload of a posted transaction.
    #[serde(default, skip_serializing_if = "is_false")]
    pub pending: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// For a reversal: the transaction it reverses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverses: Option<TransactionId>,
    /// For a reversal: whether balance bounds were skipped on an operator's request.
    #[serde(default, skip_serializing_if = "is_false")]
    pub forced: bool,
    /// When it counts in the books, if the client said (RFC 3339, microseconds); absent, it
    /// counts when it was recorded (`recorded_at`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "micros::option"
    )]
    pub effective_at: Option<DateTime<Utc>>,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// A pending transaction posted: `postings` move (the amounts posted, which may be less than
/// reserved; postings of zero are left out), and every reservation of `released` ends.
///
/// A trade with a settlement date may settle in parts: then `released` is what this part
/// posts, and `remaining` what stays reserved (the hold's postings from now on, postings of
/// zero left out). Without `remaining`, the hold ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingPosted {
    pub pending_id: TransactionId,
    pub postings: Vec<Posting>,
    pub released: Vec<Posting>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remaining: Vec<Posting>,
    pub metadata: Metadata,
    /// When it counts in the books, if the client said (RFC 3339, microseconds); absent, it
    /// counts when it was recorded (`recorded_at`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "micros::option"
    )]
    pub effective_at: Option<DateTime<Utc>>,
}

/// A pending transaction voided: its reservations end and nothing moves. With a `reason`, a
/// trade's settlement failed: what it had not settled yet is voided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingVoided {
    pub pending_id: TransactionId,
    pub released: Vec<Posting>,
    pub metadata: Metadata,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it counts in the books, if the client said (RFC 3339, microseconds); absent, it
    /// counts when it was recorded (`recorded_at`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "micros::option"
    )]
    pub effective_at: Option<DateTime<Utc>>,
}

/// A pending transaction whose `expires_at` passed, appended by the ledger itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingExpired {
    pub pending_id: TransactionId,
    pub released: Vec<Posting>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fee {
    pub payer: AccountCode,
    pub account: AccountCode,
    pub asset: AssetCode,
    pub amount: Decimal,
}

/// A trade's terms and the postings they produced (instrument, cash, then one per fee). The postings
/// are the fact the balances follow; the terms are kept so that the trade reads as a trade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TradeExecuted {
    pub trade_id: TransactionId,
    pub buyer: AccountCode,
    pub seller: AccountCode,
    pub instrument: AssetCode,
    pub quantity: Decimal,
    pub price: Decimal,
    pub currency: AssetCode,
    pub notional: Decimal,
    pub fees: Vec<Fee>,
    pub postings: Vec<Posting>,
    pub metadata: Metadata,
    #[serde(default, skip_serializing_if = "is_false")]
    pub pending: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// When it counts in the books, if the client said (RFC 3339, microseconds); absent, it
    /// counts when it was recorded (`recorded_at`). Its date is the trade date.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "micros::option"
    )]
    pub effective_at: Option<DateTime<Utc>>,
    /// The settlement date, when the client stated one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settlement_date: Option<NaiveDate>,
    /// When a trade booked as pending because it settles later is posted by the ledger itself:
    /// the settlement date at the ledger's settlement time. Absent, the trade settled when it
    /// was recorded, or (when `pending`) it is a two-phase trade a client posts or voids.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "micros::option"
    )]
    pub settles_at: Option<DateTime<Utc>>,
    /// The seller's lots this sale closes, as the seller named them (an account that books by
    /// `specific` lots names them on every sale).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lots: Vec<LotPick>,
}

/// A lot a sale names, and how many of its units it closes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LotPick {
    pub lot_id: String,
    pub quantity: Decimal,
}

/// A period of the books closed: from now on nothing may take effect at or before `through`.
/// `trial_balance_digest` fixes the trial balance as of `through` (`crate::trial_balance`), as
/// known at `known_at_position`; no event after that position takes effect at or before
/// `through`, so it is also the trial balance as of `through` as known at the close.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodClosed {
    /// 1 for the ledger's first close, then one more for each.
    pub period: u32,
    #[serde(with = "micros")]
    pub through: DateTime<Utc>,
    pub known_at_position: i64,
    pub trial_balance_digest: String,
    pub metadata: Metadata,
}

/// The latest closed period opened again: writes may take effect in it once more, until a later
/// close (which records the trial balance anew).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodReopened {
    pub period: u32,
    pub reason: String,
    pub metadata: Metadata,
}

/// An event's stored form could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    #[error("{event_type} has no schema version {version}")]
    UnknownVersion { event_type: String, version: i16 },
    #[error("{event_type} payload is malformed: {source}")]
    Payload {
        event_type: String,
        source: serde_json::Error,
    },
}

impl Event {
    pub const ASSET_DEFINED: &'static str = "AssetDefined";
    pub const ACCOUNT_OPENED: &'static str = "AccountOpened";
    pub const TRANSACTION_POSTED: &'static str = "TransactionPosted";
    pub const TRADE_EXECUTED: &'static str = "TradeExecuted";
    pub const ACCOUNT_STATUS_CHANGED: &'static str = "AccountStatusChanged";
    pub const ACCOUNT_LIMITS_SET: &'static str = "AccountLimitsSet";
    pub const PENDING_POSTED: &'static str = "PendingPosted";
    pub const PENDING_VOIDED: &'static str = "PendingVoided";
    pub const PENDING_EXPIRED: &'static str = "PendingExpired";
    pub const PERIOD_CLOSED: &'static str = "PeriodClosed";
    pub const PERIOD_REOPENED: &'static str = "PeriodReopened";
    pub const BOOKING_METHOD_SET: &'static str = "BookingMethodSet";
    pub const PRICE_MARKED: &'static str = "PriceMarked";

    pub fn event_type(&self) -> &'static str {
        match self {
            Self::AssetDefined(_) => Self::ASSET_DEFINED,
            Self::AccountOpened(_) => Self::ACCOUNT_OPENED,
            Self::TransactionPosted(_) => Self::TRANSACTION_POSTED,
            Self::TradeExecuted(_) => Self::TRADE_EXECUTED,
            Self::AccountStatusChanged(_) => Self::ACCOUNT_STATUS_CHANGED,
            Self::AccountLimitsSet(_) => Self::ACCOUNT_LIMITS_SET,
            Self::PendingPosted(_) => Self::PENDING_POSTED,
            Self::PendingVoided(_) => Self::PENDING_VOIDED,
            Self::PendingExpired(_) => Self::PENDING_EXPIRED,
            Self::PeriodClosed(_) => Self::PERIOD_CLOSED,
            Self::PeriodReopened(_) => Self::PERIOD_REOPENED,
            Self::BookingMethodSet(_) => Self::BOOKING_METHOD_SET,
            Self::PriceMarked(_) => Self::PRICE_MARKED,
        }
    }

    /// The schema version this code writes. Bump it when a payload's shape changes, and teach
    /// `decode` to upcast the old one.
    pub fn schema_version(&self) -> i16 {
        1
    }

    /// The payload as canonical JSON text (`crate::json`), without the type and version, which are
    /// stored beside it: the bytes the chain hashes and the store keeps.
    pub fn encode(&self) -> String {
        use crate::json::to_canonical;
        // Plain structs of strings, integers and canonical metadata: encoding cannot fail. An
        // empty payload would be caught where every stored event is read back: `decode` refuses it.
        let encoded = match self {
            Self::AssetDefined(e) => to_canonical(e),
            Self::AccountOpened(e) => to_canonical(e),
            Self::TransactionPosted(e) => to_canonical(e),
            Self::TradeExecuted(e) => to_canonical(e),
            Self::AccountStatusChanged(e) => to_canonical(e),
            Self::AccountLimitsSet(e) => to_canonical(e),
            Self::PendingPosted(e) => to_canonical(e),
            Self::PendingVoided(e) => to_canonical(e),
            Self::PendingExpired(e) => to_canonical(e),
            Self::PeriodClosed(e) => to_canonical(e),
            Self::PeriodReopened(e) => to_canonical(e),
            Self::BookingMethodSet(e) => to_canonical(e),
            Self::PriceMarked(e) => to_canonical(e),
        };
        encoded.unwrap_or_default()
    }

    pub fn decode(
        event_type: &str,
        schema_version: i16,
        payload: &str,
    ) -> Result<Self, DecodeError> {
        if schema_version != 1 {
            return Err(DecodeError::UnknownVersion {
                event_type: event_type.to_owned(),
                version: schema_version,
            });
        }
        let malformed = |source| DecodeError::Payload {
            event_type: event_type.to_owned(),
            source,
        };
        Ok(match event_type {
            Self::ASSET_DEFINED => {
                Self::AssetDefined(serde_json::from_str(payload).map_err(malformed)?)
            }
            Self::ACCOUNT_OPENED => {
                Self::AccountOpened(serde_json::from_str(payload).map_err(malformed)?)
            }
            Self::TRANSACTION_POSTED => {
                Self::TransactionPosted(serde_json::from_str(payload).map_err(malformed)?)
            }
            Self::TRADE_EXECUTED => {
                Self::TradeExecuted(serde_json::from_str(payload).map_err(malformed)?)
            }
            Self::ACCOUNT_STATUS_CHANGED => {
                Self::AccountStatusChanged(serde_json::from_str(payload).map_err(malformed)?)
            }
            Self::ACCOUNT_LIMITS_SET => {
                Self::AccountLimitsSet(serde_json::from_str(payload).map_err(malformed)?)
            }
            Self::PENDING_POSTED => {
                Self::PendingPosted(serde_json::from_str(payload).map_err(malformed)?)
            }
            Self::PENDING_VOIDED => {
                Self::PendingVoided(serde_json::from_str(payload).map_err(malformed)?)
            }
            Self::PENDING_EXPIRED => {
                Self::PendingExpired(serde_json::from_str(payload).map_err(malformed)?)
            }
            Self::PERIOD_CLOSED => {
                Self::PeriodClosed(serde_json::from_str(payload).map_err(malformed)?)
            }
            Self::PERIOD_REOPENED => {
                Self::PeriodReopened(serde_json::from_str(payload).map_err(malformed)?)
            }
            Self::BOOKING_METHOD_SET => {
                Self::BookingMethodSet(serde_json::from_str(payload).map_err(malformed)?)
            }
            Self::PRICE_MARKED => {
                Self::PriceMarked(serde_json::from_str(payload).map_err(malformed)?)
            }
            other => return Err(DecodeError::UnknownType(other.to_owned())),
        })
    }

    /// The postings the event names: for a pending transaction, what it reserves; for a
    /// settlement of one, what it moves.
    pub fn postings(&self) -> &[Posting] {
        match self {
            Self::TransactionPosted(e) => &e.postings,
            Self::TradeExecuted(e) => &e.postings,
            Self::PendingPosted(e) => &e.postings,
            Self::AssetDefined(_)
            | Self::AccountOpened(_)
            | Self::AccountStatusChanged(_)
            | Self::AccountLimitsSet(_)
            | Self::PendingVoided(_)
            | Self::PendingExpired(_)
            | Self::PeriodClosed(_)
            | Self::PeriodReopened(_)
            | Self::BookingMethodSet(_)
            | Self::PriceMarked(_) => &[],
        }
    }

    /// Whether the event reserves its postings rather than moving them.
    pub fn is_pending(&self) -> bool {
        match self {
            Self::TransactionPosted(e) => e.pending,
            Self::TradeExecuted(e) => e.pending,
            _ => false,
        }
    }

    /// The postings whose money moves (each a debit of the source and a credit of the
    /// destination, in this order): all of them, unless the event only reserves them.
    pub fn moved(&self) -> &[Posting] {
        if self.is_pending() {
            &[]
        } else {
            self.postings()
        }
    }

    /// The reservations a settlement ends.
    pub fn released(&self) -> &[Posting] {
        match self {
            Self::PendingPosted(e) => &e.released,
            Self::PendingVoided(e) => &e.released,
            Self::PendingExpired(e) => &e.released,
            _ => &[],
        }
    }

    /// The transaction or trade this event records or settles, if any: what its postings are
    /// filed under.
    pub fn transaction_id(&self) -> Option<TransactionId> {
        match self {
            Self::TransactionPosted(e) => Some(e.transaction_id),
            Self::TradeExecuted(e) => Some(e.trade_id),
            Self::PendingPosted(e) => Some(e.pending_id),
            Self::PendingVoided(e) => Some(e.pending_id),
            Self::PendingExpired(e) => Some(e.pending_id),
            Self::AssetDefined(_)
            | Self::AccountOpened(_)
            | Self::AccountStatusChanged(_)
            | Self::AccountLimitsSet(_)
            | Self::PeriodClosed(_)
            | Self::PeriodReopened(_)
            | Self::BookingMethodSet(_)
            | Self::PriceMarked(_) => None,
        }
    }

    /// The effective time the event states, if it states one: when it counts in the books.
    /// Absent, an event counts when it was recorded (`effective_or`).
    pub fn effective_at(&self) -> Option<DateTime<Utc>> {
        match self {
            Self::TransactionPosted(e) => e.effective_at,
            Self::TradeExecuted(e) => e.effective_at,
            Self::PendingPosted(e) => e.effective_at,
            Self::PendingVoided(e) => e.effective_at,
            _ => None,
        }
    }

    /// When the event counts in the books, given when it was recorded.
    pub fn effective_or(&self, recorded_at: DateTime<Utc>) -> DateTime<Utc> {
        self.effective_at().unwrap_or(recorded_at)
    }

    /// Every account the event names, each once, in the order it first appears: the accounts of
    /// its postings and of the reservations it releases, or the account it changes. What a relay
    /// routes the event by.
    pub fn accounts_touched(&self) -> Vec<&AccountCode> {
        let postings = self.postings().iter().chain(self.released());
        let named = postings
            .flat_map(|p| [&p.source, &p.destination])
            .chain(self.account_changed());
        let mut touched: Vec<&AccountCode> = Vec::new();
        for account in named {
            if !touched.contains(&account) {
                touched.push(account);
            }
        }
        touched
    }

    /// The account an account-level event changes (opening, status, limits).
    pub fn account_changed(&self) -> Option<&AccountCode> {
        match self {
            Self::AccountOpened(e) => Some(&e.code),
            Self::AccountStatusChanged(e) => Some(&e.account),
            Self::AccountLimitsSet(e) => Some(&e.account),
            Self::BookingMethodSet(e) => Some(&e.account),
            _ => None,
        }
    }
}

/// Times an event states (`effective_at`, a close's `through`) are written with exactly six
/// fractional digits and `Z`, as `recorded_at` is hashed: one spelling per time, whatever the
/// client sent. Any RFC 3339 time is read.
pub mod micros {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Micros, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        DateTime::<Utc>::deserialize(d)
    }

    /// The same for an optional time.
    pub mod option {
        use chrono::{DateTime, Utc};
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(
            at: &Option<DateTime<Utc>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match at {
                Some(at) => super::serialize(at, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<DateTime<Utc>>, D::Error> {
            Option::<DateTime<Utc>>::deserialize(d)
        }
    }
}
