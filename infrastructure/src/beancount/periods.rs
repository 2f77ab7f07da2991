//! The closed periods of a Beancount export: for every close still standing at the head (not
//! reopened), a `balance` per account and asset of the trial balance it fixed, recomputed from the
//! events (`domain::trial_balance::ClosesRecomputation`) and checked against its digest.
//!
//! Beancount checks a `balance` at the start of its day, against the entries dated before it;
//! entries are dated the UTC day they count. So a close through `through` is asserted on the day
//! after `through`'s, which counts exactly the entries effective at or before `through` when no
//! entry counts later on that same day (after `through`). A close whose last day holds such an
//! entry cannot be asserted by day and gets a comment instead; a close at the end of a day
//! (`23:59:59.999999Z`) always can. A reopened close stated the trial balance as known then, but
//! the period's figures may have changed since: it gets a comment, not assertions.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use domain::ledger::rfc3339;
use domain::trial_balance::{CloseChecked, ClosesRecomputation};
use domain::Event;

use crate::event_store::StoredEvent;
use crate::{Error, Result};

/// A close, as the survey of the log found it.
#[derive(Debug)]
struct Close {
    through: DateTime<Utc>,
    event: domain::event::PeriodClosed,
    reopened: bool,
}

/// The closes of the log: collected by the first reading (`survey`), recomputed by the second
/// (`apply`), asserted at the end (`finish`).
#[derive(Debug, Default)]
pub(super) struct Closes {
    /// By position.
    closes: BTreeMap<i64, Close>,
    pass: Option<ClosesRecomputation>,
    /// Closes with an entry that counts after `through` on `through`'s own day.
    split_days: BTreeSet<i64>,
}

/// What the export writes of one close.
pub(super) struct Asserted {
    pub checked: CloseChecked,
    /// The day the balances are asserted on, when they can be.
    pub date: Option<NaiveDate>,
}

impl Closes {
    /// First reading: every close and reopen.
    pub(super) fn survey(&mut self, stored: &StoredEvent, event: &Event) {
        match event {
            Event::PeriodClosed(e) => {
                let close = Close {
                    through: e.through,
                    event: e.clone(),
                    reopened: false,
                };
                self.closes.insert(stored.position, close);
            }
            Event::PeriodReopened(e) => {
                let reopened = self
                    .closes
                    .values_mut()
                    .rev()
                    .find(|c| c.event.period == e.period);
                if let Some(close) = reopened {
                    close.reopened = true;
                }
            }
            _ => {}
        }
    }

    /// Second reading: every event, in position order.
    pub(super) fn apply(&mut self, stored: &StoredEvent, event: &Event) {
        if self.closes.is_empty() {
            return;
        }
        let pass = self.pass.get_or_insert_with(|| {
            let closes = self.closes.iter().map(|(p, c)| (*p, c.event.clone()));
            ClosesRecomputation::new(closes)
        });
        pass.apply(stored.position, stored.recorded_at, event);
        if event.moved().is_empty() {
            return;
        }
        let effective = event.effective_or(stored.recorded_at);
        for (position, close) in &self.closes {
            if effective > close.through && effective.date_naive() == close.through.date_naive() {
                self.split_days.insert(*position);
            }
        }
    }

    /// Every close, recomputed and checked against its digest (a mismatch is a corrupt log:
    /// `ledger verify` names it), with the day its balances are asserted on, if any.
    pub(super) fn finish(self) -> Result<Vec<Asserted>> {
        let Some(pass) = self.pass else {
            return Ok(Vec::new());
        };
        let mut asserted = Vec::new();
        for checked in pass.finish().closes {
            if !checked.matches() {
                return Err(Error::Corrupt(format!(
                    "position {}: period {} recorded the trial balance digest {}, the log gives {}: run `ledger verify`",
                    checked.position, checked.period, checked.recorded_digest, checked.recomputed_digest
                )));
            }
            let date = match self.closes.get(&checked.position) {
                Some(close) if !close.reopened && !self.split_days.contains(&checked.position) => {
                    close.through.date_naive().succ_opt()
                }
                _ => None,
            };
            asserted.push(Asserted { checked, date });
        }
        Ok(asserted)
    }
}

/// The comment above a close's assertions (or in their stead).
pub(super) fn comment(asserted: &Asserted) -> String {
    let c = &asserted.checked;
    let head = format!(
        "; Period {} closed through {} (position {}, as known at position {}), trial balance digest {}",
        c.period,
        rfc3339(c.through),
        c.position,
        c.known_at_position,
        c.recorded_digest
    );
    let rest = if c.reopened {
        "; reopened later: its figures may have changed since, so they are not asserted."
    } else if asserted.date.is_none() {
        "; entries count later on its last day: Beancount, which dates by day, cannot assert it."
    } else {
        "; its trial balance, asserted at the start of the next day (entries dated up to its end)."
    };
    format!("{head}\n{rest}")
}
