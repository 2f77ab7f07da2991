//! The batch the writer is deciding: requests are added one at a time and decided at once against
//! the in-memory state (later ones see earlier ones), and their rows are gathered for the one
//! statement that will write them. Nothing is answered until that statement has committed.
//! A dry run is decided in the same order but never joins the batch (`dry_run`).

mod dry_run;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use domain::{Command, Leg, Rejection};

use super::decider::Decider;
use super::protocol::{CommittedEvent, Outcome, Reply, StoredOutcomes, WriteItem, WriteRequest};
use super::rows::BatchRows;
use crate::event_store::EventMetadata;
use crate::metrics::WriterMetrics;
use crate::{Error, Result};

/// What one command of the batch waits for.
enum Pending {
    /// Answered without a commit (a stored replay, a reused key, an abandoned atomic group).
    Ready(Result<Reply>),
    /// Decided in this batch (with the legs an accepted event put on accounts).
    Decided(Outcome, Vec<Leg>),
    /// The same key and request as an earlier command of this batch: gets its outcome, as a replay.
    SameAs(usize),
}

pub(crate) struct Batch {
    requests: Vec<WriteRequest>,
    /// One entry per command, in order, across all requests.
    pending: Vec<Pending>,
    /// The first command of this batch with each key, and its fingerprint.
    first_with_key: HashMap<String, (usize, Vec<u8>)>,
    rows: BatchRows,
    recorded_at: DateTime<Utc>,
    /// Time spent deciding and applying the commands, and gathering their rows (hashing
    /// included), for the writer's metrics.
    decide_time: Duration,
    rows_time: Duration,
}

impl Batch {
    pub fn new(recorded_at: DateTime<Utc>) -> Self {
        Self {
            requests: Vec::new(),
            pending: Vec::new(),
            first_with_key: HashMap::new(),
            rows: BatchRows::default(),
            recorded_at,
            decide_time: Duration::ZERO,
            rows_time: Duration::ZERO,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    pub fn command_count(&self) -> usize {
        self.pending.len()
    }

    /// Where the writer's time went for this batch before writing it: (deciding, hashing,
    /// building the rows).
    pub fn times(&self) -> (Duration, Duration, Duration) {
        let hash = self.rows.hash_time();
        (self.decide_time, hash, self.rows_time.saturating_sub(hash))
    }

    pub fn recorded_at(&self) -> DateTime<Utc> {
        self.recorded_at
    }

    pub fn rows(&self) -> &BatchRows {
        &self.rows
    }

    /// Whether a command of this batch uses `key`.
    pub fn has_key(&self, key: &str) -> bool {
        self.first_with_key.contains_key(key)
    }

    /// Decides a request's commands in order, after those already added. An error means the
    /// state can no longer be trusted; the request is kept so that `fail` answers it.
    pub fn add(
        &mut self,
        decider: &mut Decider,
        request: WriteRequest,
        stored: &StoredOutcomes,
    ) -> Result<()> {
        // What the batch's events count at when they state no effective time (a dry run's
        // too: it is decided as if it were in this batch).
        decider.state.set_recording_at(self.recorded_at);
        if request.is_dry_run() {
            return self.dry_run(decider, request, stored);
        }
        let deciding = Instant::now();
        let decided = self.decide_request(decider, &request, stored);
        let gathering = Instant::now();
        self.decide_time += gathering - deciding;
        if decided.is_ok() {
            let first = self.pending.len() - request.items.len();
            self.gather_rows(&request, first, decider);
            self.rows_time += gathering.elapsed();
        }
        self.requests.push(request);
        decided
    }

    fn decide_request(
        &mut self,
        decider: &mut Decider,
        request: &WriteRequest,
        stored: &StoredOutcomes,
    ) -> Result<()> {
        let group_start = self.pending.len();
        if request.atomic {
            decider.state.begin_group();
        }
        for (offset, item) in request.items.iter().enumerate() {
            let pending = self.decide_item(decider, item, stored)?;
            let refused_code = match &pending {
                Pending::Decided(Outcome::Rejected(r), _) => Some(r.code()),
                Pending::Ready(Err(Error::IdempotencyKeyReused)) => Some("idempotency_key_reused"),
                _ => None,
            };
            self.pending.push(pending);
            if let (true, Some(code)) = (request.atomic, refused_code) {
                self.abort_group(decider, request, group_start, offset, code);
                break;
            }
        }
        decider.state.end_group();
        Ok(())
    }

    fn decide_item(
        &mut self,
        decider: &mut Decider,
        item: &WriteItem,
        stored: &StoredOutcomes,
    ) -> Result<Pending> {
        let key = item.idempotency_key.as_str();
        if let Some((fingerprint, outcome)) = stored.get(key) {
            return Ok(Pending::Ready(if *fingerprint == item.fingerprint {
                Ok(Reply {
                    outcome: outcome.clone(),
                    replayed: true,
                })
            } else {
                Err(Error::IdempotencyKeyReused)
            }));
        }
        if let Some((earlier, fingerprint)) = self.first_with_key.get(key) {
            return Ok(if *fingerprint == item.fingerprint {
                Pending::SameAs(*earlier)
            } else {
                Pending::Ready(Err(Error::IdempotencyKeyReused))
            });
        }
        self.first_with_key.insert(
            key.to_owned(),
            (self.pending.len(), item.fingerprint.clone()),
        );
        Ok(match decider.state.decide(&item.command) {
            Ok(event) => {
                let legs = decider.state.apply(&event)?;
                let position = decider.next_position;
                decider.next_position += 1;
                debug_assert_eq!(position, decider.state.head());
                Pending::Decided(
                    Outcome::Accepted(CommittedEvent {
                        position,
                        recorded_at: self.recorded_at,
                        event,
                    }),
                    legs,
                )
            }
            // A close that raced the writes made since its trial balance was read, or a write
            // held back while such a close is retried, is the server's own moment, not an
            // answer to the client: nothing is recorded, so the key stays free for the retry.
            // The raced close fences its period until it is retried (`fence_closing`).
            Err(rejection) if rejection.is_transient() => {
                if let Command::ClosePeriod(close) = &item.command {
                    decider.state.fence_closing(close.through);
                }
                self.first_with_key.remove(key);
                Pending::Ready(Ok(Reply {
                    outcome: Outcome::Rejected(rejection),
                    replayed: false,
                }))
            }
            Err(rejection) => Pending::Decided(Outcome::Rejected(rejection), Vec::new()),
        })
    }

    /// Abandons an atomic group whose command at `failed_index` was refused: undoes what the
    /// group applied, gives its positions back, records nothing, and answers every command of
    /// the group with why the group was refused.
    fn abort_group(
        &mut self,
        decider: &mut Decider,
        request: &WriteRequest,
        group_start: usize,
        failed_index: usize,
        failed_code: &'static str,
    ) {
        let decided = self.pending.split_off(group_start);
        decider.state.roll_back_group();
        for pending in &decided {
            if let Pending::Decided(Outcome::Accepted(_), _) = pending {
                decider.next_position -= 1;
            }
        }
        debug_assert_eq!(decider.next_position, decider.state.head() + 1);
        self.first_with_key
            .retain(|_, (index, _)| *index < group_start);
        let mut decided = decided.into_iter();
        for offset in 0..request.items.len() {
            let answer = match decided.next() {
                Some(Pending::Decided(Outcome::Rejected(rejection), _))
                    if offset == failed_index =>
                {
                    Ok(Reply {
                        outcome: Outcome::Rejected(rejection),
                        replayed: false,
                    })
                }
                Some(Pending::Ready(answer)) if offset == failed_index => answer,
                _ => Ok(Reply {
                    outcome: Outcome::Rejected(Rejection::BatchAborted {
                        failed_index,
                        failed_code: failed_code.to_owned(),
                    }),
                    replayed: false,
                }),
            };
            self.pending.push(Pending::Ready(answer));
        }
    }

    /// Adds the rows of a request's decided commands (from `first` on) to the batch.
    fn gather_rows(&mut self, request: &WriteRequest, first: usize, decider: &mut Decider) {
        for (item, pending) in request.items.iter().zip(&self.pending[first..]) {
            match pending {
                Pending::Decided(Outcome::Accepted(committed), legs) => {
                    let metadata = EventMetadata {
                        idempotency_key: item.idempotency_key.clone(),
                        request_fingerprint: Some(domain::chain::to_hex_slice(&item.fingerprint)),
                        request_id: request.origin.request_id.clone(),
                        api_key_id: request.origin.api_key_id,
                    };
                    self.rows.push_event(
                        committed,
                        legs,
                        &metadata,
                        &item.fingerprint,
                        &mut decider.chain_head,
                        &decider.state,
                    );
                }
                Pending::Decided(Outcome::Rejected(rejection), _) => {
                    self.rows.push_rejection(
                        &item.idempotency_key,
                        &item.fingerprint,
                        rejection,
                        self.recorded_at,
                    );
                }
                Pending::Ready(_) | Pending::SameAs(_) => {}
            }
        }
    }

    /// Answers every request once the batch has committed.
    pub fn answer(self, metrics: &WriterMetrics) {
        let outcomes: Vec<Option<Outcome>> = self
            .pending
            .iter()
            .map(|p| match p {
                Pending::Decided(o, _) => Some(o.clone()),
                _ => None,
            })
            .collect();
        let count = |counter: &AtomicU64| {
            counter.fetch_add(1, Ordering::Relaxed);
        };
        let mut pending = self.pending.into_iter();
        for request in self.requests {
            let mut answers = Vec::with_capacity(request.items.len());
            for p in pending.by_ref().take(request.items.len()) {
                answers.push(match p {
                    Pending::Ready(answer) => {
                        match &answer {
                            Ok(reply) if reply.replayed => count(&metrics.commands_replayed),
                            _ => count(&metrics.commands_rejected),
                        }
                        answer
                    }
                    Pending::Decided(outcome, _) => {
                        match outcome {
                            Outcome::Accepted(_) => count(&metrics.commands_accepted),
                            Outcome::Rejected(_) => count(&metrics.commands_rejected),
                        }
                        Ok(Reply {
                            outcome,
                            replayed: false,
                        })
                    }
                    Pending::SameAs(earlier) => {
                        count(&metrics.commands_replayed);
                        outcomes[earlier]
                            .clone()
                            .map(|outcome| Reply {
                                outcome,
                                replayed: true,
                            })
                            .ok_or(Error::CommitFailed)
                    }
                });
            }
            // The client may have gone away; its answer is in the log either way.
            request.reply.send(answers, Vec::new());
        }
    }

    /// Answers every request with a retryable failure: nothing of this batch was committed.
    pub fn fail(self) {
        self.fail_with(|| Error::CommitFailed);
    }

    /// Answers every request with `error`.
    pub fn fail_with(self, error: impl Fn() -> Error) {
        for request in self.requests {
            request.fail(&error);
        }
    }
}
