//! Trades: an instrument against a currency, with fees.

use chrono::{DateTime, NaiveDate, Utc};
use domain::command::{LotPickInstruction, OpenLots};
use domain::{
    AccountRef, AssetCode, Command, ExecuteTrade, FeeInstruction, Metadata, PositiveDecimal,
    TransactionId,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::transactions::{guards, hold_terms};
use super::{ConditionRequest, ExpectedVersionRequest};
use crate::error::ApiError;
use crate::is_false;
use crate::routes::write::CommandRequest;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeeRequest {
    #[schema(value_type = String, example = "alice:cash")]
    pub payer: AccountRef,
    #[schema(value_type = String, example = "broker:fees")]
    pub account: AccountRef,
    /// The trade's currency when absent.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "USD")]
    pub asset: Option<AssetCode>,
    #[schema(value_type = String, example = "1.25")]
    pub amount: PositiveDecimal,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TradeRequest {
    #[schema(value_type = String, example = "alice:cash")]
    pub buyer: AccountRef,
    #[schema(value_type = String, example = "bob:cash")]
    pub seller: AccountRef,
    #[schema(value_type = String, example = "AAPL")]
    pub instrument: AssetCode,
    #[schema(value_type = String, example = "10")]
    pub quantity: PositiveDecimal,
    /// Price of one unit of the instrument in the currency; at most 18 decimal places.
    #[schema(value_type = String, example = "189.50")]
    pub price: PositiveDecimal,
    #[schema(value_type = String, example = "USD")]
    pub currency: AssetCode,
    #[serde(default)]
    pub fees: Vec<FeeRequest>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: Metadata,
    /// Up to 16 conditions on balances, checked before the command; all must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<ConditionRequest>,
    /// Up to 16 accounts with the `version` the client last read (optimistic concurrency).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expected_versions: Vec<ExpectedVersionRequest>,
    /// Reserve the amounts instead of moving them, until `POST /v1/transactions/{id}/post` or
    /// `/void`, or until the hold expires.
    #[serde(default, skip_serializing_if = "is_false")]
    pub pending: bool,
    /// When a pending hold expires (RFC 3339; at most a year ahead). A time already past expires
    /// it at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Or: seconds from now until it expires, 1 to 31,536,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<u32>,
    /// When it counts in the books (RFC 3339, at most microseconds): in the past back to the end
    /// of the last closed period (exclusive), or ahead by at most the server's
    /// `--effective-future-max`. Absent: when it is recorded. Its date (UTC) is the trade date.
    /// Also accepted as `trade_date` (the same field: giving both is a 400 `invalid_request`).
    #[serde(default, alias = "trade_date", skip_serializing_if = "Option::is_none")]
    pub effective_at: Option<DateTime<Utc>>,
    /// The date the trade settles (`YYYY-MM-DD`), from its trade date up to 366 days after it.
    /// A later date than the trade date books the trade as pending: its amounts are reserved
    /// until the ledger posts them by itself at the server's `--settlement-time` of that date
    /// (`settles_at`), or until `POST /v1/trades/{id}/settle` settles it early (whole or in
    /// part) or `/fail` records a failed settlement. The trade date itself, or a date whose
    /// settlement time has already passed, settles at once. Not with `pending` (422).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Date, example = "2026-03-17")]
    pub settlement_date: Option<NaiveDate>,
    /// For a seller that books by `specific` lots (and only then): the lots the sale closes, in
    /// order, adding up to `quantity`; each `lot_id` as `GET …/positions` lists it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lots: Vec<LotPickRequest>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LotPickRequest {
    #[schema(example = "0193a4b2-7c1e-7f00-8000-000000000001/0")]
    pub lot_id: String,
    #[schema(value_type = String, example = "5")]
    pub quantity: PositiveDecimal,
}

/// A trade as submitted: the request, and the seller's open lots the route read for the lots it
/// names (not part of what was asked, nor of the fingerprint).
#[derive(Debug, Serialize, Deserialize)]
pub struct TradeCommand {
    #[serde(flatten)]
    pub request: TradeRequest,
    #[serde(skip)]
    pub open_lots: Option<OpenLots>,
}

impl CommandRequest for TradeCommand {
    const ROUTE: &'static str = TradeRequest::ROUTE;

    fn command(&self, now: DateTime<Utc>) -> Result<Command, ApiError> {
        let mut command = self.request.command(now)?;
        if let Command::ExecuteTrade(trade) = &mut command {
            trade.open_lots = self.open_lots.clone();
        }
        Ok(command)
    }
}

impl CommandRequest for TradeRequest {
    const ROUTE: &'static str = "POST /v1/trades";

    fn command(&self, now: DateTime<Utc>) -> Result<Command, ApiError> {
        Ok(Command::ExecuteTrade(ExecuteTrade {
            lots: self
                .lots
                .iter()
                .map(|pick| LotPickInstruction {
                    lot_id: pick.lot_id.clone(),
                    quantity: pick.quantity,
                })
                .collect(),
            open_lots: None,
            settlement_date: self.settlement_date,
            id: TransactionId(Uuid::now_v7()),
            buyer: self.buyer.clone(),
            seller: self.seller.clone(),
            instrument: self.instrument.clone(),
            quantity: self.quantity,
            price: self.price,
            currency: self.currency.clone(),
            fees: self
                .fees
                .iter()
                .map(|f| FeeInstruction {
                    payer: f.payer.clone(),
                    account: f.account.clone(),
                    asset: f.asset.clone(),
                    amount: f.amount,
                })
                .collect(),
            metadata: self.metadata.clone(),
            guards: guards(&self.conditions, &self.expected_versions),
            pending: hold_terms(self.pending, self.expires_at, self.timeout_s, now)?,
            effective_at: super::effective_time(self.effective_at)?,
        }))
    }
}
