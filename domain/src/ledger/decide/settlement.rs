//! Settling a hold: posted (in whole or in part, the rest released), voided, or expired by the
//! ledger once its time has passed. A hold is settled once. A trade with a settlement date is
//! the exception: it may settle in parts (the rest stays reserved), is posted by the ledger once
//! its settlement time has passed, and may fail (what it has not settled is voided).

use super::amount_units_signed;
use crate::command::{SettlePending, Settlement};
use crate::error::Rejection;
use crate::event::{Event, PendingExpired, PendingPosted, PendingVoided, Posting};
use crate::ledger::{Hold, HoldOutcome, LedgerState};
use crate::money;
use crate::values::{Metadata, SignedDecimal};

/// The longest reason a failed settlement may give, in bytes.
pub const FAIL_REASON_BYTES_MAX: usize = 1024;

/// A failed settlement is a trade's, with a reason of 1 to `FAIL_REASON_BYTES_MAX` bytes.
fn check_fail_reason(hold: &Hold, reason: &str) -> Result<(), Rejection> {
    if !hold.trade {
        return Err(Rejection::validation(
            "only a trade's settlement fails; void a pending transaction instead",
        ));
    }
    if reason.trim().is_empty() || reason.len() > FAIL_REASON_BYTES_MAX {
        return Err(Rejection::validation(format!(
            "a failed settlement gives a reason of 1 to {FAIL_REASON_BYTES_MAX} bytes"
        )));
    }
    Ok(())
}

impl LedgerState {
    pub(super) fn decide_settlement(&self, c: &SettlePending) -> Result<Event, Rejection> {
        let id = c.pending_id;
        let transaction_id = id.to_string();
        let Some(hold) = self.holds.get(&id) else {
            return Err(match self.settled.get(&id) {
                Some(HoldOutcome::Posted) => Rejection::PendingAlreadyPosted { transaction_id },
                Some(HoldOutcome::Voided) => Rejection::PendingAlreadyVoided { transaction_id },
                Some(HoldOutcome::Expired) => Rejection::PendingExpired { transaction_id },
                None => Rejection::PendingNotFound { transaction_id },
            });
        };
        let expired = hold.expires_at.is_some_and(|expires_at| c.at >= expires_at);
        if let Settlement::Fail { reason } = &c.settlement {
            check_fail_reason(hold, reason)?;
        }
        // An expiry is the ledger's own, counts when it is recorded and moves nothing: never
        // refused for its time, or a hold stated to count ahead would be expired forever.
        let effective = match c.settlement {
            Settlement::Expire => hold.effective_at,
            _ => self.check_effective(c.effective_at)?,
        };
        if effective < hold.effective_at {
            return Err(Rejection::validation(format!(
                "effective_at {} is earlier than the pending transaction's, {}",
                crate::ledger::rfc3339(effective),
                crate::ledger::rfc3339(hold.effective_at)
            )));
        }
        let released = hold.postings.clone();
        let event = match &c.settlement {
            Settlement::Expire if !expired => {
                return Err(Rejection::validation(format!(
                    "pending transaction {id} has not expired yet"
                )))
            }
            Settlement::Expire => Event::PendingExpired(PendingExpired {
                pending_id: id,
                released,
            }),
            Settlement::Due if hold.settles_at.is_none_or(|due| c.at < due) => {
                return Err(Rejection::validation(format!(
                    "pending transaction {id} is not due to settle yet"
                )))
            }
            Settlement::Due => Event::PendingPosted(PendingPosted {
                pending_id: id,
                postings: released.clone(),
                released,
                remaining: Vec::new(),
                metadata: Metadata::default(),
                effective_at: None,
            }),
            _ if expired => return Err(Rejection::PendingExpired { transaction_id }),
            Settlement::Void | Settlement::Fail { .. } => Event::PendingVoided(PendingVoided {
                pending_id: id,
                released,
                metadata: c.metadata.clone(),
                effective_at: c.effective_at,
                reason: match &c.settlement {
                    Settlement::Fail { reason } => Some(reason.clone()),
                    _ => None,
                },
            }),
            Settlement::Post { amounts: None } => Event::PendingPosted(PendingPosted {
                pending_id: id,
                postings: released.clone(),
                released,
                remaining: Vec::new(),
                metadata: c.metadata.clone(),
                effective_at: c.effective_at,
            }),
            Settlement::Post {
                amounts: Some(amounts),
            } => {
                let (postings, rest) = self.partial_postings(hold, amounts)?;
                // A trade settled in part keeps the rest reserved; any other hold posted in part
                // releases it.
                let remaining = if hold.settles_at.is_some() {
                    rest
                } else {
                    Vec::new()
                };
                Event::PendingPosted(PendingPosted {
                    pending_id: id,
                    released: match remaining.is_empty() {
                        false => postings.clone(),
                        true => released,
                    },
                    postings,
                    remaining,
                    metadata: c.metadata.clone(),
                    effective_at: c.effective_at,
                })
            }
        };
        self.check_event(&event)?;
        Ok(event)
    }

    /// The postings of a partial post: per reserved posting, an amount from zero up to the
    /// reserved one, at the asset's scale; postings of zero are left out. Returned with what
    /// is left of each reserved posting (again without zeros).
    fn partial_postings(
        &self,
        hold: &Hold,
        amounts: &[SignedDecimal],
    ) -> Result<(Vec<Posting>, Vec<Posting>), Rejection> {
        if amounts.len() != hold.postings.len() {
            return Err(Rejection::validation(format!(
                "amounts has {} entries; the pending transaction has {} postings",
                amounts.len(),
                hold.postings.len()
            )));
        }
        let mut postings = Vec::with_capacity(amounts.len());
        let mut rest = Vec::new();
        for (index, (reserved, amount)) in hold.postings.iter().zip(amounts).enumerate() {
            let (asset, scale) = self.resolve_asset(&reserved.asset)?;
            let units = amount_units_signed(amount.get(), asset, scale)?;
            let reserved_units = money::to_units(reserved.amount, scale).unwrap_or(0);
            if units < 0 || units > reserved_units {
                return Err(Rejection::validation(format!(
                    "amount {index} ({amount}) must be from 0 to the {} reserved",
                    reserved.amount
                )));
            }
            if hold.trade && hold.settles_at.is_none() && units != reserved_units {
                return Err(Rejection::validation(
                    "a two-phase trade is posted whole or voided, never in part",
                ));
            }
            if units > 0 {
                postings.push(Posting {
                    amount: money::to_decimal(units, scale),
                    ..reserved.clone()
                });
            }
            if units < reserved_units {
                rest.push(Posting {
                    amount: money::to_decimal(reserved_units - units, scale),
                    ..reserved.clone()
                });
            }
        }
        if postings.is_empty() {
            return Err(Rejection::validation(
                "every amount is zero: nothing to post; void the pending transaction instead",
            ));
        }
        Ok((postings, rest))
    }
}
