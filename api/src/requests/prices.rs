//! Marks: the price of one unit of an instrument in a currency as of a time, one at a time or a
//! batch recorded all or none.

use chrono::{DateTime, Utc};
use domain::command::MarkPrice;
use domain::{AssetCode, Command, Metadata, PositiveDecimal};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::routes::write::CommandRequest;

/// Marks in one batch at most.
pub const MARKS_MAX: usize = 1_000;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarkRequest {
    #[schema(value_type = String, example = "AAPL")]
    pub instrument: AssetCode,
    #[schema(value_type = String, example = "USD")]
    pub currency: AssetCode,
    /// The price of one unit: a positive decimal string, at most 18 decimal places.
    #[schema(value_type = String, example = "190.25")]
    pub price: PositiveDecimal,
    /// When the price held (RFC 3339, at most microseconds): never later than now.
    pub as_of: DateTime<Utc>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: Metadata,
}

impl CommandRequest for MarkRequest {
    const ROUTE: &'static str = "POST /v1/prices";

    fn command(&self, _now: DateTime<Utc>) -> Result<Command, ApiError> {
        Ok(Command::MarkPrice(MarkPrice {
            instrument: self.instrument.clone(),
            currency: self.currency.clone(),
            price: self.price,
            as_of: super::micros_time("as_of", self.as_of)?,
            metadata: self.metadata.clone(),
        }))
    }
}

/// One mark (its fields at the top level), or `marks`: 1 to 1,000 of them, recorded all or none.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PricesRequest {
    #[schema(value_type = Option<String>, example = "AAPL")]
    pub instrument: Option<AssetCode>,
    #[schema(value_type = Option<String>, example = "USD")]
    pub currency: Option<AssetCode>,
    #[schema(value_type = Option<String>, example = "190.25")]
    pub price: Option<PositiveDecimal>,
    pub as_of: Option<DateTime<Utc>>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Metadata>,
    /// Instead of the fields above: several marks, decided in order and recorded all or none.
    pub marks: Option<Vec<MarkRequest>>,
}

/// What a prices request asks to record.
pub enum Marks {
    One(MarkRequest),
    Batch(Vec<MarkRequest>),
}

impl PricesRequest {
    /// The mark, or the batch: one or the other, whole.
    pub fn marks(self) -> Result<Marks, ApiError> {
        let single = (self.instrument, self.currency, self.price, self.as_of);
        match (self.marks, single) {
            (Some(marks), (None, None, None, None)) if self.metadata.is_none() => {
                if marks.is_empty() || marks.len() > MARKS_MAX {
                    return Err(ApiError::Validation(format!(
                        "marks holds 1 to {MARKS_MAX} marks; this one holds {}",
                        marks.len()
                    )));
                }
                Ok(Marks::Batch(marks))
            }
            (None, (Some(instrument), Some(currency), Some(price), Some(as_of))) => {
                Ok(Marks::One(MarkRequest {
                    instrument,
                    currency,
                    price,
                    as_of,
                    metadata: self.metadata.unwrap_or_default(),
                }))
            }
            (Some(_), _) => Err(ApiError::Validation(
                "give one mark (instrument, currency, price, as_of) or marks, not both".into(),
            )),
            (None, _) => Err(ApiError::Validation(
                "a mark needs instrument, currency, price and as_of (or give marks)".into(),
            )),
        }
    }
}

/// One mark of a batch as submitted. Its fingerprint is the whole batch's and its place in it,
/// so a key used for one batch and then for another is refused for every mark.
#[derive(Debug, Serialize)]
pub struct MarkInBatch<'a> {
    pub marks: &'a [MarkRequest],
    pub index: usize,
}

impl CommandRequest for MarkInBatch<'_> {
    const ROUTE: &'static str = "POST /v1/prices (marks)";

    fn command(&self, now: DateTime<Utc>) -> Result<Command, ApiError> {
        let mark = self
            .marks
            .get(self.index)
            .ok_or_else(|| ApiError::Validation(format!("the batch has no mark {}", self.index)))?;
        mark.command(now)
            .map_err(|e| ApiError::Validation(format!("mark {}: {e}", self.index)))
    }
}
