//! Commands: what a client asks the ledger to do. A command names accounts as the client did (by id
//! or code) and carries amounts as the client wrote them; the decision resolves and checks them.
//! Ids of things a command creates are chosen by the caller, so the decision stays pure.

use crate::values::{
    AccountCode, AccountId, AccountRef, AssetCode, Metadata, PositiveDecimal, Scale, TransactionId,
};
use serde::{Deserialize, Serialize};

/// Bounds on the size of a command, checked by the decision.
pub const POSTINGS_MAX: usize = 64;
pub const FEES_MAX: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    DefineAsset(DefineAsset),
    OpenAccount(OpenAccount),
    PostTransaction(PostTransaction),
    ExecuteTrade(ExecuteTrade),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefineAsset {
    pub code: AssetCode,
    pub scale: Scale,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenAccount {
    pub id: AccountId,
    pub code: AccountCode,
    pub allow_negative: bool,
    pub metadata: Metadata,
}

/// Whether a transaction was asked for as a plain transaction or as a one-posting transfer; kept so
/// that history and reads show what the client did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransactionKind {
    Transaction,
    Transfer,
}

impl TransactionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transaction => "transaction",
            Self::Transfer => "transfer",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostingInstruction {
    pub source: AccountRef,
    pub destination: AccountRef,
    pub asset: AssetCode,
    pub amount: PositiveDecimal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostTransaction {
    pub id: TransactionId,
    pub kind: TransactionKind,
    pub postings: Vec<PostingInstruction>,
    pub metadata: Metadata,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeInstruction {
    pub payer: AccountRef,
    pub account: AccountRef,
    /// The fee's asset; the trade's currency when absent.
    pub asset: Option<AssetCode>,
    pub amount: PositiveDecimal,
}

/// Delivery versus payment: `quantity` of `instrument` from seller to buyer and
/// `quantity × price` of `currency` from buyer to seller, plus fees, all or nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecuteTrade {
    pub id: TransactionId,
    pub buyer: AccountRef,
    pub seller: AccountRef,
    pub instrument: AssetCode,
    pub quantity: PositiveDecimal,
    pub price: PositiveDecimal,
    pub currency: AssetCode,
    pub fees: Vec<FeeInstruction>,
    pub metadata: Metadata,
}
