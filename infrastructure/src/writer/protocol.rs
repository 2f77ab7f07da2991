//! What passes between the writer's handle and its task: requests with their commands, and the
//! answers, each the outcome of one command.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use domain::{AccountCode, AssetCode, Command, Event, Rejection};
use rust_decimal::Decimal;
use tokio::sync::oneshot;

use crate::{Error, Result};

/// An event as committed: its position and time in the log.
#[derive(Debug, Clone, PartialEq)]
pub struct CommittedEvent {
    pub position: i64,
    pub recorded_at: DateTime<Utc>,
    pub event: Event,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Accepted(CommittedEvent),
    Rejected(Rejection),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub outcome: Outcome,
    /// True when this is the stored answer to an earlier request with the same key.
    pub replayed: bool,
}

/// Who sent a request, as the events it leads to record it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// The caller's `X-Request-Id`.
    pub request_id: Option<String>,
    /// The API key the request was made with (its id, never its secret).
    pub api_key_id: Option<uuid::Uuid>,
}

/// One command with its idempotency key and a digest of the request it came from, so that a key
/// reused for another request is noticed.
pub struct WriteItem {
    pub command: Command,
    pub idempotency_key: String,
    pub fingerprint: Vec<u8>,
}

/// What waits in the writer's queue: one command, or a batch of them from one HTTP request.
pub(crate) struct WriteRequest {
    pub items: Vec<WriteItem>,
    /// All or nothing: if one is refused, none is applied and nothing is recorded.
    pub atomic: bool,
    pub origin: Origin,
    pub reply: ReplyTo,
}

impl WriteRequest {
    pub fn fail(self, error: impl Fn() -> Error) {
        let answers = self.items.iter().map(|_| Err(error())).collect();
        // The client may have gone away; nothing was applied either way.
        self.reply.send(answers, Vec::new());
    }

    pub fn is_dry_run(&self) -> bool {
        matches!(self.reply, ReplyTo::DryRun(_))
    }
}

/// Who waits for a request's answers, and so what kind of request it is: a write, or a dry run
/// (decided like a write, answered with how it would change the accounts, and then taken back).
pub(crate) enum ReplyTo {
    Write(oneshot::Sender<Vec<Result<Reply>>>),
    DryRun(oneshot::Sender<DryRunAnswer>),
}

impl ReplyTo {
    /// Sends the answers; `balances` only reach a dry run.
    pub fn send(self, replies: Vec<Result<Reply>>, balances: Vec<AccountChange>) {
        // The client may have gone away.
        let _ = match self {
            Self::Write(reply) => reply.send(replies).map_err(drop),
            Self::DryRun(reply) => reply.send(DryRunAnswer { replies, balances }).map_err(drop),
        };
    }
}

/// What a dry run would have been answered, command by command, and what its commands would have
/// done to the accounts. Nothing of it was applied.
#[derive(Debug)]
pub struct DryRunAnswer {
    pub replies: Vec<Result<Reply>>,
    /// Every account the commands would open or change, in the order they first touch it. Empty
    /// when nothing would be applied (every command refused or replayed, or an atomic batch
    /// refused).
    pub balances: Vec<AccountChange>,
}

/// An account's figures before and after a dry run's commands.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountChange {
    pub account: AccountCode,
    /// Whether the commands would open it (its figures before are then all zero).
    pub opened: bool,
    /// Every asset in which it has figures before or after, by code.
    pub assets: Vec<AssetChange>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AssetChange {
    pub asset: AssetCode,
    pub before: Balance,
    pub after: Balance,
}

/// An account's figures in one asset, at the asset's scale.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Balance {
    pub posted: Decimal,
    /// Reserved by pending transactions that debit the account.
    pub pending_debits: Decimal,
    /// Reserved by pending transactions that credit the account.
    pub pending_credits: Decimal,
}

/// Stored (fingerprint, outcome) of idempotency keys seen before, by key.
pub(crate) type StoredOutcomes = HashMap<String, (Vec<u8>, Outcome)>;
