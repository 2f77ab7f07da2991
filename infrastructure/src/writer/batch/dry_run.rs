//! Dry runs. A dry run is decided where it stands in the writer's queue, after the commands of the
//! batch decided so far (so against exactly the state a write queued at the same moment would
//! see), in a group of the state's undo journal: its commands are decided and applied as a write's
//! would be, what they did to the accounts is read from the journal, and then the group is taken
//! back and the positions it used are given back. It never joins the batch: no rows, no
//! idempotency record, no place in `pending`, and it is answered at once, since it needs no
//! commit.

use std::collections::HashMap;

use domain::{LedgerState, Rejection};

use super::{Batch, Pending};
use crate::writer::decider::Decider;
use crate::writer::protocol::{
    AccountChange, AssetChange, Balance, CommittedEvent, Outcome, Reply, StoredOutcomes, WriteItem,
    WriteRequest,
};
use crate::{Error, Result};

/// The answers of a dry run's commands, and whether an atomic one was refused whole.
struct Decided {
    replies: Vec<Result<Reply>>,
    refused_whole: bool,
}

impl Batch {
    /// Decides a dry run after the commands already added, answers it, and takes it back. An
    /// error means the state can no longer be trusted (the request is answered with a failure).
    pub(super) fn dry_run(
        &self,
        decider: &mut Decider,
        request: WriteRequest,
        stored: &StoredOutcomes,
    ) -> Result<()> {
        let next_position = decider.next_position;
        decider.state.begin_group();
        let decided = self.decide_dry_run(decider, &request, stored);
        let balances = match &decided {
            Ok(d) if !d.refused_whole => balance_changes(&decider.state),
            _ => Vec::new(),
        };
        decider.state.roll_back_group();
        decider.next_position = next_position;
        debug_assert_eq!(decider.next_position, decider.state.head() + 1);
        match decided {
            Ok(decided) => {
                request.reply.send(decided.replies, balances);
                Ok(())
            }
            Err(e) => {
                request.fail(|| Error::CommitFailed);
                Err(e)
            }
        }
    }

    /// Decides each command as `decide_request` would: a key stored or used earlier in the batch
    /// (or in the dry run) is a replay or `idempotency_key_reused`; an atomic request stops at
    /// its first refusal, which refuses it whole.
    fn decide_dry_run(
        &self,
        decider: &mut Decider,
        request: &WriteRequest,
        stored: &StoredOutcomes,
    ) -> Result<Decided> {
        let mut first_with_key: HashMap<&str, (usize, &[u8])> = HashMap::new();
        let mut replies: Vec<Result<Reply>> = Vec::with_capacity(request.items.len());
        for (offset, item) in request.items.iter().enumerate() {
            let reply = match self.earlier_answer(item, stored, &first_with_key, &replies) {
                Some(answer) => answer,
                None => {
                    first_with_key.insert(&item.idempotency_key, (offset, &item.fingerprint));
                    Ok(self.decide_dry_item(decider, item)?)
                }
            };
            let refused_code = match &reply {
                Ok(Reply {
                    outcome: Outcome::Rejected(r),
                    replayed: false,
                }) => Some(r.code()),
                Err(Error::IdempotencyKeyReused) => Some("idempotency_key_reused"),
                _ => None,
            };
            replies.push(reply);
            if let (true, Some(code)) = (request.atomic, refused_code) {
                return Ok(Decided {
                    replies: refused_whole(replies, request.items.len(), offset, code),
                    refused_whole: true,
                });
            }
        }
        Ok(Decided {
            replies,
            refused_whole: false,
        })
    }

    /// The answer a command gets without a decision: from a stored outcome, from an earlier
    /// command of the batch, or from an earlier command of the dry run with the same key.
    fn earlier_answer(
        &self,
        item: &WriteItem,
        stored: &StoredOutcomes,
        in_dry_run: &HashMap<&str, (usize, &[u8])>,
        replies: &[Result<Reply>],
    ) -> Option<Result<Reply>> {
        let key = item.idempotency_key.as_str();
        let replay = |same: bool, outcome: Option<&Outcome>| match (same, outcome) {
            (false, _) => Err(Error::IdempotencyKeyReused),
            (true, Some(outcome)) => Ok(Reply {
                outcome: outcome.clone(),
                replayed: true,
            }),
            (true, None) => Err(Error::CommitFailed),
        };
        if let Some((fingerprint, outcome)) = stored.get(key) {
            return Some(replay(*fingerprint == item.fingerprint, Some(outcome)));
        }
        if let Some((earlier, fingerprint)) = self.first_with_key.get(key) {
            let outcome = match self.pending.get(*earlier) {
                Some(Pending::Decided(outcome, _)) => Some(outcome),
                _ => None,
            };
            return Some(replay(*fingerprint == item.fingerprint, outcome));
        }
        let (earlier, fingerprint) = in_dry_run.get(key)?;
        let outcome = match replies.get(*earlier) {
            Some(Ok(reply)) => Some(&reply.outcome),
            _ => None,
        };
        Some(replay(*fingerprint == item.fingerprint.as_slice(), outcome))
    }

    /// Decides and applies one command, as `decide_item` does, at the position it would take.
    fn decide_dry_item(&self, decider: &mut Decider, item: &WriteItem) -> Result<Reply> {
        let outcome = match decider.state.decide(&item.command) {
            Ok(event) => {
                decider.state.apply(&event)?;
                let position = decider.next_position;
                decider.next_position += 1;
                Outcome::Accepted(CommittedEvent {
                    position,
                    recorded_at: self.recorded_at,
                    event,
                })
            }
            Err(rejection) => Outcome::Rejected(rejection),
        };
        Ok(Reply {
            outcome,
            replayed: false,
        })
    }
}

/// The answers of an atomic request refused at `failed_index`, as `abort_group` gives them: the
/// refused command its own answer, every other `batch_aborted`.
fn refused_whole(
    mut replies: Vec<Result<Reply>>,
    count: usize,
    failed_index: usize,
    failed_code: &str,
) -> Vec<Result<Reply>> {
    let mut failed = Some(replies.swap_remove(failed_index));
    (0..count)
        .map(|offset| match failed.take_if(|_| offset == failed_index) {
            Some(answer) => answer,
            None => Ok(Reply {
                outcome: Outcome::Rejected(Rejection::BatchAborted {
                    failed_index,
                    failed_code: failed_code.to_owned(),
                }),
                replayed: false,
            }),
        })
        .collect()
}

/// What the open group did to the accounts: each account it opened or changed, with its figures
/// in every asset it has before or after, by asset code.
fn balance_changes(state: &LedgerState) -> Vec<AccountChange> {
    state
        .group_changes()
        .into_iter()
        .map(|(before, after)| {
            let mut assets: Vec<_> = after.all_figures().map(|(a, _)| a.clone()).collect();
            for (asset, _) in before.iter().flat_map(|b| b.all_figures()) {
                if !assets.contains(asset) {
                    assets.push(asset.clone());
                }
            }
            assets.sort();
            let assets = assets
                .into_iter()
                .filter_map(|asset| {
                    let scale = state.asset_scale(&asset)?;
                    let balance = |figures: domain::ledger::Figures| Balance {
                        posted: domain::money::to_decimal(figures.posted, scale),
                        pending_debits: domain::money::to_decimal(figures.pending_debits, scale),
                        pending_credits: domain::money::to_decimal(figures.pending_credits, scale),
                    };
                    Some(AssetChange {
                        before: balance(before.map(|b| b.figures(&asset)).unwrap_or_default()),
                        after: balance(after.figures(&asset)),
                        asset,
                    })
                })
                .collect();
            AccountChange {
                account: after.code.clone(),
                opened: before.is_none(),
                assets,
            }
        })
        .collect()
}
