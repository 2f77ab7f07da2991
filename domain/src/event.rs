//! Events: immutable facts appended to the log. Each names accounts by code (an account's code never
//! changes, and `AccountOpened` ties it to the id), and carries amounts as decimal strings at the
//! asset's scale, so the log reads on its own, without the projections.
//!
//! Every event type has a schema version. A stored payload is decoded by `Event::decode`, which is
//! where an older version would be upcast; stored payloads are never rewritten.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::command::{AccountStatus, TransactionKind};
use crate::values::{AccountCode, AccountId, AssetCode, Metadata, Scale, TransactionId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    AssetDefined(AssetDefined),
    AccountOpened(AccountOpened),
    TransactionPosted(TransactionPosted),
    TradeExecuted(TradeExecuted),
    AccountStatusChanged(AccountStatusChanged),
    AccountLimitsSet(AccountLimitsSet),
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
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransactionPosted {
    pub transaction_id: TransactionId,
    pub kind: TransactionKind,
    pub postings: Vec<Posting>,
    pub metadata: Metadata,
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

    pub fn event_type(&self) -> &'static str {
        match self {
            Self::AssetDefined(_) => Self::ASSET_DEFINED,
            Self::AccountOpened(_) => Self::ACCOUNT_OPENED,
            Self::TransactionPosted(_) => Self::TRANSACTION_POSTED,
            Self::TradeExecuted(_) => Self::TRADE_EXECUTED,
            Self::AccountStatusChanged(_) => Self::ACCOUNT_STATUS_CHANGED,
            Self::AccountLimitsSet(_) => Self::ACCOUNT_LIMITS_SET,
        }
    }

    /// The schema version this code writes. Bump it when a payload's shape changes, and teach
    /// `decode` to upcast the old one.
    pub fn schema_version(&self) -> i16 {
        1
    }

    /// The payload as JSON (without the type and version, which are stored beside it).
    pub fn encode(&self) -> serde_json::Value {
        let encoded = match self {
            Self::AssetDefined(e) => serde_json::to_value(e),
            Self::AccountOpened(e) => serde_json::to_value(e),
            Self::TransactionPosted(e) => serde_json::to_value(e),
            Self::TradeExecuted(e) => serde_json::to_value(e),
            Self::AccountStatusChanged(e) => serde_json::to_value(e),
            Self::AccountLimitsSet(e) => serde_json::to_value(e),
        };
        // These are plain structs of strings, numbers and maps with string keys; encoding cannot fail.
        encoded.unwrap_or(serde_json::Value::Null)
    }

    pub fn decode(
        event_type: &str,
        schema_version: i16,
        payload: serde_json::Value,
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
                Self::AssetDefined(serde_json::from_value(payload).map_err(malformed)?)
            }
            Self::ACCOUNT_OPENED => {
                Self::AccountOpened(serde_json::from_value(payload).map_err(malformed)?)
            }
            Self::TRANSACTION_POSTED => {
                Self::TransactionPosted(serde_json::from_value(payload).map_err(malformed)?)
            }
            Self::TRADE_EXECUTED => {
                Self::TradeExecuted(serde_json::from_value(payload).map_err(malformed)?)
            }
            Self::ACCOUNT_STATUS_CHANGED => {
                Self::AccountStatusChanged(serde_json::from_value(payload).map_err(malformed)?)
            }
            Self::ACCOUNT_LIMITS_SET => {
                Self::AccountLimitsSet(serde_json::from_value(payload).map_err(malformed)?)
            }
            other => return Err(DecodeError::UnknownType(other.to_owned())),
        })
    }

    /// The postings this event moves money with (none for events that move no money).
    pub fn postings(&self) -> &[Posting] {
        match self {
            Self::TransactionPosted(e) => &e.postings,
            Self::TradeExecuted(e) => &e.postings,
            Self::AssetDefined(_)
            | Self::AccountOpened(_)
            | Self::AccountStatusChanged(_)
            | Self::AccountLimitsSet(_) => &[],
        }
    }

    /// The transaction or trade this event records, if any.
    pub fn transaction_id(&self) -> Option<TransactionId> {
        match self {
            Self::TransactionPosted(e) => Some(e.transaction_id),
            Self::TradeExecuted(e) => Some(e.trade_id),
            Self::AssetDefined(_)
            | Self::AccountOpened(_)
            | Self::AccountStatusChanged(_)
            | Self::AccountLimitsSet(_) => None,
        }
    }

    /// The account an account-level event changes (opening, status, limits).
    pub fn account_changed(&self) -> Option<&AccountCode> {
        match self {
            Self::AccountOpened(e) => Some(&e.code),
            Self::AccountStatusChanged(e) => Some(&e.account),
            Self::AccountLimitsSet(e) => Some(&e.account),
            Self::AssetDefined(_) | Self::TransactionPosted(_) | Self::TradeExecuted(_) => None,
        }
    }
}
