//! Every close's trial balance recomputed from the log alone, and checked against the digest the
//! close recorded: a pure pass over the events in position order, for `ledger verify`.
//!
//! A close (`PeriodClosed` at position `c`) records the digest of the trial balance as of its
//! `through`, as known at its `known_at_position` `k`: the postings moved by the money events at
//! positions up to `k` whose effective time (`effective_at`, else `recorded_at`) is at or before
//! `through`. The writer also guarantees that no money event after `k` counts at or before
//! `through` while the period stays closed (until a `PeriodReopened` of it): the pass checks that
//! too, so that a close's trial balance is the one as known at any position while it stands.
//!
//! The closes are given first (they are few: one query), so that each event is added once to the
//! balances of every close that counts it; memory is one balance per close, account and asset.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

use super::TrialBalance;
use crate::event::{Event, PeriodClosed, Posting};
use crate::ledger::rfc3339;
use crate::money;
use crate::values::{AccountCode, AssetCode, Scale};

/// A close whose trial balance is being recomputed.
#[derive(Debug)]
struct Recomputing {
    position: i64,
    close: PeriodClosed,
    balances: BTreeMap<(AccountCode, AssetCode), i128>,
    /// Reopened at a position seen so far: later events may count in it again.
    reopened: bool,
}

/// One close, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseChecked {
    /// The close's position in the log.
    pub position: i64,
    pub period: u32,
    pub through: DateTime<Utc>,
    pub known_at_position: i64,
    /// The digest the close recorded.
    pub recorded_digest: String,
    /// The digest of the trial balance recomputed from the events.
    pub recomputed_digest: String,
    /// Whether it was reopened later in the log.
    pub reopened: bool,
    /// The trial balance recomputed from the events.
    pub trial_balance: TrialBalance,
}

impl CloseChecked {
    pub fn matches(&self) -> bool {
        self.recorded_digest == self.recomputed_digest
    }
}

/// Something in the log that contradicts a close, at a position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseProblem {
    pub position: i64,
    pub problem: String,
}

/// What the pass found: every close checked, in log order, and the problems, in log order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClosesReport {
    pub closes: Vec<CloseChecked>,
    pub problems: Vec<CloseProblem>,
}

impl ClosesReport {
    /// Every digest matched and nothing contradicted a close.
    pub fn verified(&self) -> bool {
        self.problems.is_empty()
    }

    /// The first position where the log contradicts a close.
    pub fn first_problem_position(&self) -> Option<i64> {
        self.problems.iter().map(|p| p.position).min()
    }
}

/// The pass: `new` with the log's closes, `apply` every event in position order, then `finish`.
#[derive(Debug, Default)]
pub struct ClosesRecomputation {
    closes: Vec<Recomputing>,
    scales: HashMap<AssetCode, Scale>,
    problems: Vec<CloseProblem>,
    /// The last position applied: a close beyond it was not reached (the log ended or broke
    /// before it) and is not checked.
    last_position: i64,
}

impl ClosesRecomputation {
    /// The closes of the log: (position, event), in any order.
    pub fn new(closes: impl IntoIterator<Item = (i64, PeriodClosed)>) -> Self {
        let mut closes: Vec<Recomputing> = closes
            .into_iter()
            .map(|(position, close)| Recomputing {
                position,
                close,
                balances: BTreeMap::new(),
                reopened: false,
            })
            .collect();
        closes.sort_by_key(|c| c.position);
        Self {
            closes,
            ..Self::default()
        }
    }

    /// Whether there is anything to recompute.
    pub fn is_empty(&self) -> bool {
        self.closes.is_empty()
    }

    /// Applies the event at `position`, recorded at `recorded_at`.
    pub fn apply(&mut self, position: i64, recorded_at: DateTime<Utc>, event: &Event) {
        self.last_position = position;
        match event {
            Event::AssetDefined(e) => {
                self.scales.insert(e.asset.clone(), e.scale);
            }
            Event::PeriodReopened(e) => {
                let reopened = self
                    .closes
                    .iter_mut()
                    .rev()
                    .find(|c| c.position < position && c.close.period == e.period);
                if let Some(close) = reopened {
                    close.reopened = true;
                }
            }
            _ => self.money(position, event.effective_or(recorded_at), event),
        }
    }

    /// Adds what a money event moves to the trial balance of every close that counts it, and
    /// notes when it counts in a period that was closed to it.
    fn money(&mut self, position: i64, effective: DateTime<Utc>, event: &Event) {
        let moved = event.moved();
        if moved.is_empty() {
            return;
        }
        let mut legs = Vec::with_capacity(moved.len());
        for posting in moved {
            let scale = self.scales.get(&posting.asset);
            match scale.and_then(|s| money::to_units(posting.amount, *s).ok()) {
                Some(units) => legs.push((posting, units)),
                None => self.problems.push(CloseProblem {
                    position,
                    problem: format!(
                        "{} {} does not fit a defined asset",
                        posting.amount, posting.asset
                    ),
                }),
            }
        }
        for close in &mut self.closes {
            if effective > close.close.through {
                continue;
            }
            if position <= close.close.known_at_position {
                close.add(&legs);
            } else if !close.reopened {
                self.problems.push(CloseProblem {
                    position,
                    problem: format!(
                        "counts at {} in period {}, closed through {} as known at position {}",
                        rfc3339(effective),
                        close.close.period,
                        rfc3339(close.close.through),
                        close.close.known_at_position
                    ),
                });
            }
        }
    }

    /// Each close reached's recomputed trial balance against its recorded digest.
    pub fn finish(self) -> ClosesReport {
        let mut problems = self.problems;
        let mut closes = Vec::with_capacity(self.closes.len());
        let reached = self.last_position;
        for close in self.closes.into_iter().filter(|c| c.position <= reached) {
            let checked = close.checked(&self.scales);
            if !checked.matches() {
                problems.push(CloseProblem {
                    position: checked.position,
                    problem: format!(
                        "period {} closed through {}: the trial balance recomputed from the log \
                         has digest {}, the close recorded {}",
                        checked.period,
                        rfc3339(checked.through),
                        checked.recomputed_digest,
                        checked.recorded_digest
                    ),
                });
            }
            closes.push(checked);
        }
        problems.sort_by_key(|p| p.position);
        ClosesReport { closes, problems }
    }
}

impl Recomputing {
    /// Each posting debits its source and credits its destination.
    fn add(&mut self, legs: &[(&Posting, i128)]) {
        for (posting, units) in legs {
            let asset = &posting.asset;
            // Saturating: a sum past the balance type is wrong anyway, and shows in the digest.
            let source = self
                .balances
                .entry((posting.source.clone(), asset.clone()))
                .or_default();
            *source = source.saturating_sub(*units);
            let destination = self
                .balances
                .entry((posting.destination.clone(), asset.clone()))
                .or_default();
            *destination = destination.saturating_add(*units);
        }
    }

    fn checked(self, scales: &HashMap<AssetCode, Scale>) -> CloseChecked {
        let rows = self.balances.into_iter().filter_map(|(key, units)| {
            let scale = *scales.get(&key.1)?;
            Some((key, (units, scale)))
        });
        let trial_balance = TrialBalance::from_units(rows);
        CloseChecked {
            position: self.position,
            period: self.close.period,
            through: self.close.through,
            known_at_position: self.close.known_at_position,
            recorded_digest: self.close.trial_balance_digest,
            recomputed_digest: trial_balance.digest(),
            reopened: self.reopened,
            trial_balance,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn usd() -> Event {
        Event::decode(Event::ASSET_DEFINED, 1, r#"{"asset":"USD","scale":2}"#).unwrap()
    }

    fn transfer(amount: &str, effective_at: Option<&str>) -> Event {
        let mut payload = json!({"transaction_id": "0190a0b0-0000-7000-8000-000000000001",
            "kind": "transfer", "metadata": {},
            "postings": [{"source": "world", "destination": "alice", "asset": "USD", "amount": amount}]});
        if let Some(effective) = effective_at {
            payload["effective_at"] = json!(effective);
        }
        Event::decode(Event::TRANSACTION_POSTED, 1, &payload.to_string()).unwrap()
    }

    fn close(period: u32, through: &str, known_at: i64, digest: String) -> PeriodClosed {
        PeriodClosed {
            period,
            through: at(through),
            known_at_position: known_at,
            trial_balance_digest: digest,
            metadata: Default::default(),
        }
    }

    fn digest(alice_units: i128) -> String {
        let scale: Scale = 2u32.try_into().unwrap();
        TrialBalance::from_units([
            (
                ("alice".parse().unwrap(), "USD".parse().unwrap()),
                (alice_units, scale),
            ),
            (
                ("world".parse().unwrap(), "USD".parse().unwrap()),
                (-alice_units, scale),
            ),
        ])
        .digest()
    }

    /// USD at 1; 10.00 recorded in February at 2; 1.00 recorded in March but effective in
    /// January at 3; then `later` and the closes, each at its position.
    fn run(closes: Vec<(i64, PeriodClosed)>, later: Vec<(i64, &str, Event)>) -> ClosesReport {
        let mut pass = ClosesRecomputation::new(closes.clone());
        let feb = "2026-02-01T00:00:00Z";
        let backdated = transfer("1.00", Some("2026-01-15T12:00:00.000001Z"));
        let mut log = vec![
            (1, feb, usd()),
            (2, feb, transfer("10.00", None)),
            (3, "2026-03-01T00:00:00Z", backdated),
        ];
        log.extend(later);
        log.extend(
            closes
                .into_iter()
                .map(|(position, c)| (position, "2026-04-01T00:00:00Z", Event::PeriodClosed(c))),
        );
        log.sort_by_key(|(position, _, _)| *position);
        for (position, recorded_at, event) in &log {
            pass.apply(*position, at(recorded_at), event);
        }
        pass.finish()
    }

    const JANUARY: &str = "2026-01-31T23:59:59Z";

    #[test]
    fn a_close_counts_the_entries_effective_by_its_end_as_known_at_its_position() {
        let report = run(vec![(4, close(1, JANUARY, 3, digest(100)))], Vec::new());
        assert!(report.verified(), "{report:?}");
        assert!(report.closes[0].matches());
        assert!(!report.closes[0].reopened);
    }

    #[test]
    fn a_wrong_digest_is_a_problem_at_the_close() {
        let report = run(vec![(4, close(1, JANUARY, 3, digest(1100)))], Vec::new());
        assert!(!report.verified());
        assert_eq!(report.first_problem_position(), Some(4));
        assert!(
            report.problems[0].problem.contains("period 1"),
            "{report:?}"
        );
    }

    #[test]
    fn a_close_the_log_does_not_reach_is_not_checked() {
        let report = run(Vec::new(), Vec::new());
        assert!(report.closes.is_empty());
        let mut pass = ClosesRecomputation::new([(9, close(1, JANUARY, 3, digest(1)))]);
        pass.apply(1, at(JANUARY), &usd());
        assert_eq!(pass.finish(), ClosesReport::default());
    }

    #[test]
    fn an_entry_counting_in_a_closed_period_is_a_problem_until_it_is_reopened() {
        let reopen = Event::decode(
            Event::PERIOD_REOPENED,
            1,
            r#"{"period":1,"reason":"late invoice","metadata":{}}"#,
        )
        .unwrap();
        let closes = vec![
            (4, close(1, JANUARY, 3, digest(100))),
            (8, close(2, JANUARY, 7, digest(500))),
        ];
        let late = || transfer("2.00", Some("2026-01-20T00:00:00Z"));
        let later = vec![
            (5, "2026-03-02T00:00:00Z", late()),
            (6, "2026-03-03T00:00:00Z", reopen),
            (7, "2026-03-04T00:00:00Z", late()),
        ];
        let report = run(closes, later);
        // Position 5 counts in period 1 while it is closed; 7, after the reopen, is counted
        // by the second close. The first close's own digest still matches its known_at.
        assert_eq!(report.problems.len(), 1, "{report:?}");
        assert_eq!(report.first_problem_position(), Some(5));
        assert!(
            report.closes.iter().all(CloseChecked::matches),
            "{report:?}"
        );
        assert!(report.closes[0].reopened && !report.closes[1].reopened);
    }
}
