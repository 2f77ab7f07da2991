//! A trade's settlement, asked for by a client: settled early (whole or in part) or failed. The
//! ledger settles a trade with a settlement date by itself at its `settles_at`; these come first.

use chrono::{DateTime, Utc};
use domain::command::{SettlePending, Settlement};
use domain::values::SignedDecimal;
use domain::{Command, Metadata, TransactionId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::routes::write::CommandRequest;

/// Settle a trade before its settlement date, whole or in part.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettleTradeRequest {
    /// Per posting the trade still reserves (as its view lists them in `settlement.remaining`,
    /// in that order), the amount to settle now, from 0 to the amount reserved. A trade with a
    /// settlement date keeps the rest reserved, and the ledger posts it at `settles_at`. Absent:
    /// settle everything it still reserves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>, example = json!(["4", "758.00", "0.50"]))]
    pub amounts: Option<Vec<SignedDecimal>>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: Metadata,
    /// When it counts in the books (RFC 3339, at most microseconds), never before the trade.
    /// Absent: when it is recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_at: Option<DateTime<Utc>>,
}

/// Record that a trade's settlement failed: what it has not settled yet is voided.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailTradeRequest {
    /// Why the settlement failed: 1 to 1,024 bytes, not blank. Shown in the trade's
    /// `settlement.reason`.
    #[schema(example = "counterparty failed to deliver")]
    pub reason: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: Metadata,
    /// When it counts in the books (RFC 3339, at most microseconds), never before the trade.
    /// Absent: when it is recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_at: Option<DateTime<Utc>>,
}

/// An early settlement as submitted, with the trade from the path.
#[derive(Debug, Serialize)]
pub struct SettleTradeCommand {
    pub trade_id: TransactionId,
    #[serde(flatten)]
    pub request: SettleTradeRequest,
}

impl CommandRequest for SettleTradeCommand {
    const ROUTE: &'static str = "POST /v1/trades/{id}/settle";

    fn command(&self, now: DateTime<Utc>) -> Result<Command, ApiError> {
        Ok(Command::SettlePending(SettlePending {
            pending_id: self.trade_id,
            settlement: Settlement::Post {
                amounts: self.request.amounts.clone(),
            },
            at: now,
            metadata: self.request.metadata.clone(),
            effective_at: super::effective_time(self.request.effective_at)?,
        }))
    }
}

/// A failed settlement as submitted, with the trade from the path.
#[derive(Debug, Serialize)]
pub struct FailTradeCommand {
    pub trade_id: TransactionId,
    #[serde(flatten)]
    pub request: FailTradeRequest,
}

impl CommandRequest for FailTradeCommand {
    const ROUTE: &'static str = "POST /v1/trades/{id}/fail";

    fn command(&self, now: DateTime<Utc>) -> Result<Command, ApiError> {
        Ok(Command::SettlePending(SettlePending {
            pending_id: self.trade_id,
            settlement: Settlement::Fail {
                reason: self.request.reason.clone(),
            },
            at: now,
            metadata: self.request.metadata.clone(),
            effective_at: super::effective_time(self.request.effective_at)?,
        }))
    }
}
