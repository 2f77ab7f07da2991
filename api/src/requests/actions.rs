//! What is done to a recorded transaction: post or void a pending one, or reverse it.

use chrono::{DateTime, Utc};
use domain::command::{OriginalTransaction, ReverseTransaction, SettlePending, Settlement};
use domain::values::SignedDecimal;
use domain::{Command, Metadata, TransactionId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::ApiError;
use crate::is_false;
use crate::routes::write::CommandRequest;

/// Post, void or reverse a transaction (the action is the route's).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransactionActionRequest {
    /// `post` only: per posting of the pending transaction, in its order, the amount to post,
    /// from 0 to the amount reserved; the rest is released. Absent: post everything. A pending
    /// trade is posted whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>, example = json!(["60.00"]))]
    pub amounts: Option<Vec<SignedDecimal>>,
    /// `reverse` only: skip the balance bounds (never the account statuses), recorded in the
    /// event. Refused with 403 unless the server allows forced reversals.
    #[serde(default, skip_serializing_if = "is_false")]
    pub force: bool,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: Metadata,
    /// When it counts in the books (RFC 3339, at most microseconds): in the past back to the end
    /// of the last closed period (exclusive), or ahead by at most the server's
    /// `--effective-future-max`. Absent: when it is recorded; for a reversal, when the original counts if that
    /// period is still open. Never before the pending transaction or the original.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_at: Option<DateTime<Utc>>,
}

/// What can be done to a transaction after it was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TransactionAction {
    Post,
    Void,
    Reverse,
}

/// An action as submitted, with the transaction and the action from the path, and for a reversal
/// the original as the log recorded it.
#[derive(Debug, Serialize)]
pub struct TransactionActionCommand {
    pub transaction_id: TransactionId,
    pub action: TransactionAction,
    #[serde(flatten)]
    pub request: TransactionActionRequest,
    /// Looked up from the log, so not part of what was asked (nor of the fingerprint).
    #[serde(skip)]
    pub original: Option<OriginalTransaction>,
}

impl CommandRequest for TransactionActionCommand {
    const ROUTE: &'static str = "POST /v1/transactions/{id}/{action}";

    fn command(&self, now: DateTime<Utc>) -> Result<Command, ApiError> {
        let request = &self.request;
        let only = |field: &str, action: &str| {
            Err(ApiError::Validation(format!(
                "{field} applies to {action} only"
            )))
        };
        let settlement = match self.action {
            TransactionAction::Reverse => {
                if request.amounts.is_some() {
                    return only("amounts", "post");
                }
                let original = self.original.clone().ok_or_else(|| ApiError::NotFound {
                    code: "transaction_not_found",
                    what: format!("transaction {}", self.transaction_id),
                })?;
                return Ok(Command::ReverseTransaction(ReverseTransaction {
                    id: TransactionId(Uuid::now_v7()),
                    original,
                    force: request.force,
                    metadata: request.metadata.clone(),
                    effective_at: super::effective_time(request.effective_at)?,
                }));
            }
            _ if request.force => return only("force", "reverse"),
            TransactionAction::Post => Settlement::Post {
                amounts: request.amounts.clone(),
            },
            TransactionAction::Void if request.amounts.is_some() => return only("amounts", "post"),
            TransactionAction::Void => Settlement::Void,
        };
        Ok(Command::SettlePending(SettlePending {
            pending_id: self.transaction_id,
            settlement,
            at: now,
            metadata: request.metadata.clone(),
            effective_at: super::effective_time(request.effective_at)?,
        }))
    }
}
