//! Request and response bodies. Requests deserialize straight into the domain's value types, so a
//! malformed code or amount is refused while parsing; responses carry amounts as decimal strings at
//! the asset's scale.

use chrono::{DateTime, Utc};
use domain::{
    AccountCode, AccountId, AccountRef, AssetCode, Command, DefineAsset, ExecuteTrade,
    FeeInstruction, Metadata, OpenAccount, PositiveDecimal, PostTransaction, PostingInstruction,
    Scale, TransactionId, TransactionKind,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::routes::write::CommandRequest;
use uuid::Uuid;

// ------------------------------------------------------------------ requests

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DefineAssetRequest {
    /// 1 to 16 of `A-Z 0-9 _`.
    #[schema(value_type = String, example = "USD")]
    pub code: AssetCode,
    /// Decimal places, 0 to 18.
    #[schema(value_type = u32, minimum = 0, maximum = 18, example = 2)]
    pub scale: Scale,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenAccountRequest {
    /// Segments of `a-z 0-9 _ -` joined by `:`, at most 128 bytes.
    #[schema(value_type = String, example = "alice:cash")]
    pub code: AccountCode,
    /// Whether balances may go below zero (accounts that model the outside world).
    #[serde(default)]
    pub allow_negative: bool,
    /// A JSON object of at most 4 KiB.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: Metadata,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostingRequest {
    /// Account id or code.
    #[schema(value_type = String, example = "world:bank")]
    pub source: AccountRef,
    #[schema(value_type = String, example = "alice:cash")]
    pub destination: AccountRef,
    #[schema(value_type = String, example = "USD")]
    pub asset: AssetCode,
    /// A positive decimal string with at most the asset's decimal places.
    #[schema(value_type = String, example = "100.00")]
    pub amount: PositiveDecimal,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransactionRequest {
    /// 1 to 64 postings, applied in order, all or none.
    pub postings: Vec<PostingRequest>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: Metadata,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferRequest {
    #[schema(value_type = String, example = "alice:cash")]
    pub source: AccountRef,
    #[schema(value_type = String, example = "bob:cash")]
    pub destination: AccountRef,
    #[schema(value_type = String, example = "USD")]
    pub asset: AssetCode,
    #[schema(value_type = String, example = "25.00")]
    pub amount: PositiveDecimal,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: Metadata,
}

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
}

// Each request becomes its command here; ids of what a command creates are chosen now (UUIDv7,
// time-ordered, so their indexes grow at the right edge), so the
// domain's decision stays pure. They are not part of the idempotency fingerprint.

impl CommandRequest for DefineAssetRequest {
    const ROUTE: &'static str = "POST /v1/assets";

    fn command(&self) -> Command {
        Command::DefineAsset(DefineAsset {
            code: self.code.clone(),
            scale: self.scale,
        })
    }
}

impl CommandRequest for OpenAccountRequest {
    const ROUTE: &'static str = "POST /v1/accounts";

    fn command(&self) -> Command {
        Command::OpenAccount(OpenAccount {
            id: AccountId(Uuid::now_v7()),
            code: self.code.clone(),
            allow_negative: self.allow_negative,
            metadata: self.metadata.clone(),
        })
    }
}

impl PostingRequest {
    fn instruction(&self) -> PostingInstruction {
        PostingInstruction {
            source: self.source.clone(),
            destination: self.destination.clone(),
            asset: self.asset.clone(),
            amount: self.amount,
        }
    }
}

impl CommandRequest for TransactionRequest {
    const ROUTE: &'static str = "POST /v1/transactions";

    fn command(&self) -> Command {
        Command::PostTransaction(PostTransaction {
            id: TransactionId(Uuid::now_v7()),
            kind: TransactionKind::Transaction,
            postings: self
                .postings
                .iter()
                .map(PostingRequest::instruction)
                .collect(),
            metadata: self.metadata.clone(),
        })
    }
}

impl CommandRequest for TransferRequest {
    const ROUTE: &'static str = "POST /v1/transfers";

    fn command(&self) -> Command {
        Command::PostTransaction(PostTransaction {
            id: TransactionId(Uuid::now_v7()),
            kind: TransactionKind::Transfer,
            postings: vec![PostingInstruction {
                source: self.source.clone(),
                destination: self.destination.clone(),
                asset: self.asset.clone(),
                amount: self.amount,
            }],
            metadata: self.metadata.clone(),
        })
    }
}

impl CommandRequest for TradeRequest {
    const ROUTE: &'static str = "POST /v1/trades";

    fn command(&self) -> Command {
        Command::ExecuteTrade(ExecuteTrade {
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
        })
    }
}

// ------------------------------------------------------------------ responses

#[derive(Debug, Serialize, ToSchema)]
pub struct AssetView {
    pub code: String,
    pub scale: u32,
    /// The position of the event that defined it.
    pub position: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AssetList {
    pub items: Vec<AssetView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BalanceView {
    pub asset: String,
    #[schema(example = "100.00")]
    pub balance: String,
    /// The position of the last event that changed this balance.
    pub position: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountView {
    pub id: Uuid,
    pub code: String,
    pub allow_negative: bool,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    /// The position of the event that opened it.
    pub position: i64,
    pub opened_at: DateTime<Utc>,
    pub balances: Vec<BalanceView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountList {
    pub items: Vec<AccountView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PostingView {
    pub source: String,
    pub destination: String,
    pub asset: String,
    pub amount: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TransactionView {
    pub id: Uuid,
    /// `transaction`, `transfer` or `trade`.
    pub kind: String,
    pub position: i64,
    pub recorded_at: DateTime<Utc>,
    pub postings: Vec<PostingView>,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FeeView {
    pub payer: String,
    pub account: String,
    pub asset: String,
    pub amount: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TradeView {
    pub id: Uuid,
    pub position: i64,
    pub recorded_at: DateTime<Utc>,
    pub buyer: String,
    pub seller: String,
    pub instrument: String,
    pub quantity: String,
    pub price: String,
    pub currency: String,
    /// quantity × price, exact at the currency's scale.
    pub notional: String,
    pub fees: Vec<FeeView>,
    /// Instrument to the buyer, cash to the seller, then one posting per fee.
    pub postings: Vec<PostingView>,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryEntryView {
    pub position: i64,
    /// The leg's index within its event.
    pub leg: i16,
    pub transaction_id: Uuid,
    pub kind: String,
    pub asset: String,
    /// Signed: negative when money left the account.
    #[schema(example = "-25.00")]
    pub amount: String,
    /// The account's balance in this asset right after this leg.
    pub balance_after: String,
    /// The account on the other side of the posting.
    pub counterparty: String,
    pub recorded_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryPage {
    pub items: Vec<HistoryEntryView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    pub position: i64,
    pub event_id: Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    pub schema_version: i16,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    pub recorded_at: DateTime<Utc>,
    /// SHA-256 of the previous event's hash and this event's canonical bytes, hex (docs/audit.md).
    pub hash: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    pub items: Vec<EventView>,
    /// Pass as `after` for the next page (the last position returned, or `after` if none).
    pub next_after: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    pub ready: bool,
    pub database: bool,
    /// `leader`, `standby`, `starting` or `recovering`.
    pub writer: String,
    pub position: i64,
}

/// The result of walking the hash chain over the whole log.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChainReportView {
    pub intact: bool,
    pub events_verified: i64,
    pub head_position: i64,
    pub head_hash: String,
    /// The first position where the chain breaks: an altered, missing or misplaced event.
    pub first_broken_position: Option<i64>,
    pub problem: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BalancesAtView {
    pub account_id: Uuid,
    pub account: String,
    /// The balances are as the ledger stood right after this position.
    pub as_of_position: i64,
    /// The time asked for, when the request gave `at`.
    pub as_of: Option<DateTime<Utc>>,
    /// Each asset the account held by then; `position` is that of its last change.
    pub balances: Vec<BalanceView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatementView {
    pub account_id: Uuid,
    pub account: String,
    pub asset: String,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// The balance right after `opening_position`, the last event before `from`.
    pub opening_position: i64,
    pub opening_balance: String,
    /// The postings recorded in [from, to), oldest first, each with the balance after it.
    pub entries: Vec<HistoryEntryView>,
    /// The balance right after `closing_position`, the last event before `to`.
    pub closing_position: i64,
    pub closing_balance: String,
}
