//! What passes between the writer's handle and its task: requests with their commands, and the
//! answers, each the outcome of one command.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use domain::{Command, Event, Rejection};
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
    pub reply: oneshot::Sender<Vec<Result<Reply>>>,
}

impl WriteRequest {
    pub fn fail(self, error: impl Fn() -> Error) {
        let answers = self.items.iter().map(|_| Err(error())).collect();
        // The client may have gone away; nothing was applied either way.
        let _ = self.reply.send(answers);
    }
}

/// Stored (fingerprint, outcome) of idempotency keys seen before, by key.
pub(crate) type StoredOutcomes = HashMap<String, (Vec<u8>, Outcome)>;
