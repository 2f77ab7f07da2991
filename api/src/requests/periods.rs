//! Closing a period of the books, and opening the latest closed one again.

use chrono::{DateTime, Utc};
use domain::command::{ClosePeriod, ReopenPeriod};
use domain::{Command, Metadata};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::routes::write::CommandRequest;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClosePeriodRequest {
    /// The end of the period, inclusive (RFC 3339, at most microseconds): later than the last
    /// close, and in the past.
    pub through: DateTime<Utc>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: Metadata,
}

/// A close as submitted, with the trial balance the route read for it.
#[derive(Debug, Serialize)]
pub struct ClosePeriodCommand {
    #[serde(flatten)]
    pub request: ClosePeriodRequest,
    /// The position the trial balance was read at and its digest: read by the route, so not
    /// part of what was asked (nor of the fingerprint).
    #[serde(skip)]
    pub trial_balance: Option<(i64, String)>,
}

impl CommandRequest for ClosePeriodCommand {
    const ROUTE: &'static str = "POST /v1/periods/close";

    fn command(&self, _now: DateTime<Utc>) -> Result<Command, ApiError> {
        let through =
            super::effective_time(Some(self.request.through))?.unwrap_or(self.request.through);
        let (known_at_position, digest) = self.trial_balance.clone().ok_or_else(|| {
            ApiError::Validation("the close has no trial balance to record".to_owned())
        })?;
        Ok(Command::ClosePeriod(ClosePeriod {
            through,
            known_at_position,
            trial_balance_digest: digest,
            metadata: self.request.metadata.clone(),
        }))
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReopenPeriodRequest {
    /// Why the period is opened again: recorded in the event, 1 to 1024 bytes.
    pub reason: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: Metadata,
}

impl CommandRequest for ReopenPeriodRequest {
    const ROUTE: &'static str = "POST /v1/periods/reopen";

    fn command(&self, _now: DateTime<Utc>) -> Result<Command, ApiError> {
        Ok(Command::ReopenPeriod(ReopenPeriod {
            reason: self.reason.clone(),
            metadata: self.metadata.clone(),
        }))
    }
}
