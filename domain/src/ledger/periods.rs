//! Accounting time: when an event counts in the books (its effective time) and the closed
//! periods that no write may change.
//!
//! Every money-moving event counts at its `effective_at`, or when it is recorded. The writer tells
//! the state when the events it is deciding will be recorded (`set_recording_at`), so the decision
//! reads no clock. A write may count in the past, back to the end of the last closed period
//! (exclusive), and in the future up to `effective_future_max` ahead.
//!
//! A close fixes the trial balance as of its `through`, as the caller read it at some position.
//! It is accepted only if no money event after that position counts at or before `through`;
//! `Recent` is how the decision knows that without reading anything: the recording times of the
//! latest events (which only grow), and the latest events that count earlier than they were
//! recorded. What falls out of it makes a close race and be retried, never be wrong.

use chrono::{DateTime, Duration, Utc};

use super::records::{ClosedPeriod, Periods, Recent, Undo};
use super::state::LedgerState;
use crate::command::{ClosePeriod, ReopenPeriod};
use crate::error::{ApplyError, Rejection};
use crate::event::{Event, PeriodClosed, PeriodReopened};

/// Runs of money events recorded at one time that `Recent` keeps; older ones fall out.
pub const RECENT_RUNS_MAX: usize = 4096;
/// Backdated money events that `Recent` keeps; older ones fall out.
pub const RECENT_BACKDATED_MAX: usize = 4096;
/// How long a close that raced writes holds back writes into its period for its retry.
pub const CLOSING_FENCE_MS: i64 = 2_000;
/// The longest reason a reopen may give, in bytes.
pub const REOPEN_REASON_BYTES_MAX: usize = 1024;

impl LedgerState {
    /// Tells the state when the events it decides and applies next will be recorded: the time an
    /// event without `effective_at` counts at.
    pub fn set_recording_at(&mut self, at: DateTime<Utc>) {
        self.timing.recording_at = at;
    }

    /// How far ahead of its recording an event may count (0 by default).
    pub fn set_effective_future_max(&mut self, max: Duration) {
        self.timing.future_max = max;
    }

    /// The time of day (UTC) at which trades settle on their settlement date (midnight by
    /// default). Each trade records when it settles, so this decides new trades only.
    pub fn set_settlement_time(&mut self, at: chrono::NaiveTime) {
        self.timing.settlement_time = at;
    }

    pub fn periods(&self) -> &Periods {
        &self.periods
    }

    /// When a write stating `effective_at` (or none) would count: refused when that is in a closed
    /// period or too far ahead.
    pub(super) fn check_effective(
        &self,
        effective_at: Option<DateTime<Utc>>,
    ) -> Result<DateTime<Utc>, Rejection> {
        let recording_at = self.timing.recording_at;
        let effective = effective_at.unwrap_or(recording_at);
        let latest = recording_at + self.timing.future_max;
        if effective > latest {
            return Err(Rejection::EffectiveInFuture {
                effective_at: rfc3339(effective),
                latest: rfc3339(latest),
            });
        }
        if let Some(closed) = self.periods.latest().filter(|c| effective <= c.through) {
            return Err(Rejection::PeriodClosed {
                effective_at: rfc3339(effective),
                period: closed.period,
                closed_through: rfc3339(closed.through),
            });
        }
        match self.recent.closing {
            Some((through, until)) if effective <= through && recording_at < until => {
                Err(Rejection::PeriodClosing {
                    closing_through: rfc3339(through),
                })
            }
            _ => Ok(effective),
        }
    }

    /// Holds back writes into the period through `through` for `CLOSING_FENCE_MS`: a close
    /// raced by them is about to be retried, and would race again under a steady stream of them.
    pub fn fence_closing(&mut self, through: DateTime<Utc>) {
        let until = self.timing.recording_at + Duration::milliseconds(CLOSING_FENCE_MS);
        self.recent.closing = Some((through, until));
    }

    /// Whether `at` is in a period closed now.
    pub fn is_closed_at(&self, at: DateTime<Utc>) -> bool {
        self.periods.latest().is_some_and(|c| at <= c.through)
    }

    pub(super) fn decide_close(&self, c: &ClosePeriod) -> Result<Event, Rejection> {
        if let Some(last) = self.periods.latest() {
            if c.through <= last.through {
                return Err(Rejection::validation(format!(
                    "through must be later than the end of the last closed period, {}",
                    rfc3339(last.through)
                )));
            }
        }
        if c.through >= self.timing.recording_at {
            return Err(Rejection::validation(format!(
                "through {} is not in the past: a period closes once it has ended",
                rfc3339(c.through)
            )));
        }
        if c.known_at_position > self.head || c.known_at_position < 0 {
            return Err(Rejection::validation(format!(
                "known_at_position {} is not in the log, which ends at {}",
                c.known_at_position, self.head
            )));
        }
        self.recent
            .check_nothing_after(c.known_at_position, self.head, c.through)?;
        Ok(Event::PeriodClosed(PeriodClosed {
            period: self.periods.closes + 1,
            through: c.through,
            known_at_position: c.known_at_position,
            trial_balance_digest: c.trial_balance_digest.clone(),
            metadata: c.metadata.clone(),
        }))
    }

    pub(super) fn decide_reopen(&self, c: &ReopenPeriod) -> Result<Event, Rejection> {
        let latest = self.periods.latest().ok_or(Rejection::NoClosedPeriod)?;
        if c.reason.trim().is_empty() || c.reason.len() > REOPEN_REASON_BYTES_MAX {
            return Err(Rejection::validation(format!(
                "a reopen gives a reason of 1 to {REOPEN_REASON_BYTES_MAX} bytes"
            )));
        }
        Ok(Event::PeriodReopened(PeriodReopened {
            period: latest.period,
            reason: c.reason.clone(),
            metadata: c.metadata.clone(),
        }))
    }

    /// What a period event does to the periods; checked before anything changes.
    pub(super) fn apply_period(&mut self, event: &Event) -> Result<(), ApplyError> {
        match event {
            Event::PeriodClosed(e) => {
                if e.period != self.periods.closes + 1
                    || self
                        .periods
                        .latest()
                        .is_some_and(|l| e.through <= l.through)
                {
                    return Err(ApplyError(format!(
                        "period {} closed out of order",
                        e.period
                    )));
                }
                self.record(Undo::Periods(self.periods.clone()));
                // Closed, the period refuses writes for good: the fence has done its work.
                self.recent.closing = None;
                self.periods.closes = e.period;
                self.periods.closed.push(ClosedPeriod {
                    period: e.period,
                    through: e.through,
                });
            }
            Event::PeriodReopened(e) => {
                if self.periods.latest().map(|l| l.period) != Some(e.period) {
                    return Err(ApplyError(format!(
                        "period {} reopened but it is not the latest closed",
                        e.period
                    )));
                }
                self.record(Undo::Periods(self.periods.clone()));
                self.periods.closed.pop();
            }
            _ => {}
        }
        Ok(())
    }

    /// Restores the periods read from the projections: every close and reopen, in log order.
    pub fn restore_period_event(&mut self, event: &Event) -> Result<(), ApplyError> {
        self.apply_period(event)
    }

    /// Notes when a money event applied at `position` counts, for later closes to check.
    pub(super) fn note_effective(&mut self, event: &Event, position: i64) {
        if event.moved().is_empty() {
            return;
        }
        let recorded = self.timing.recording_at;
        match self.recent.runs.back_mut() {
            Some(run) if run.2 == recorded && run.1 + 1 == position => {
                let before = run.1;
                run.1 = position;
                self.record(Undo::RunExtended(before));
            }
            _ => {
                self.recent.runs.push_back((position, position, recorded));
                self.record(Undo::RunPushed);
                if self.recent.runs.len() > RECENT_RUNS_MAX {
                    if let Some((_, last, _)) = self.recent.runs.pop_front() {
                        self.recent.known_after = self.recent.known_after.max(last);
                    }
                }
            }
        }
        if let Some(effective) = event.effective_at().filter(|e| *e < recorded) {
            self.recent.backdated.push_back((position, effective));
            self.record(Undo::BackdatedPushed);
            if self.recent.backdated.len() > RECENT_BACKDATED_MAX {
                if let Some((dropped, _)) = self.recent.backdated.pop_front() {
                    self.recent.known_after = self.recent.known_after.max(dropped);
                }
            }
        }
    }

    /// After a restore from the projections, nothing before the head is known here.
    pub(super) fn forget_recent(&mut self) {
        self.recent = Recent {
            known_after: self.head,
            ..Recent::default()
        };
    }

    pub(super) fn undo_recent(&mut self, undo: &Undo) {
        match undo {
            Undo::RunPushed => {
                self.recent.runs.pop_back();
            }
            Undo::RunExtended(before) => {
                if let Some(run) = self.recent.runs.back_mut() {
                    run.1 = *before;
                }
            }
            Undo::BackdatedPushed => {
                self.recent.backdated.pop_back();
            }
            _ => {}
        }
    }
}

impl Recent {
    /// Refuses when a money event after `position` (up to `head`) may count at or before
    /// `through`, or when that is not known here.
    fn check_nothing_after(
        &self,
        position: i64,
        head: i64,
        through: DateTime<Utc>,
    ) -> Result<(), Rejection> {
        if position == head {
            return Ok(());
        }
        let raced = |why: &str| {
            Err(Rejection::PeriodCloseRaced {
                message: format!(
                    "the trial balance was read at position {position} and the log is at {head}: {why}; read it again and retry"
                ),
            })
        };
        if position < self.known_after {
            return raced("what was written since is no longer known to the writer");
        }
        if let Some((_, _, recorded)) = self.runs.iter().find(|(_, last, _)| *last > position) {
            if *recorded <= through {
                return raced("entries recorded since count in the period");
            }
        }
        if self
            .backdated
            .iter()
            .any(|(at, effective)| *at > position && *effective <= through)
        {
            return raced("entries written since are backdated into the period");
        }
        Ok(())
    }
}

/// RFC 3339 in UTC with microseconds, as the API writes times.
pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::command::{
        Command, DefineAsset, OpenAccount, PostTransaction, PostingInstruction, TransactionKind,
    };
    use crate::values::{AccountId, Metadata, TransactionId};

    fn t(seconds: i64) -> DateTime<Utc> {
        DateTime::UNIX_EPOCH + Duration::seconds(1_000_000 + seconds)
    }

    fn run(state: &mut LedgerState, command: Command) -> Result<(), Rejection> {
        let event = state.decide(&command)?;
        state.apply(&event).unwrap();
        Ok(())
    }

    /// A ledger with USD, `world` (may go negative) and `alice`, recorded at t(0).
    fn ledger() -> LedgerState {
        let mut state = LedgerState::new();
        state.set_recording_at(t(0));
        let scale = 2u32.try_into().unwrap();
        let usd = "USD".parse().unwrap();
        run(
            &mut state,
            Command::DefineAsset(DefineAsset { code: usd, scale }),
        )
        .unwrap();
        for (n, code) in [(1, "world"), (2, "alice")] {
            let open = OpenAccount {
                booking_method: None,
                id: AccountId(Uuid::from_u128(n)),
                code: code.parse().unwrap(),
                allow_negative: code == "world",
                metadata: Metadata::default(),
            };
            run(&mut state, Command::OpenAccount(open)).unwrap();
        }
        state
    }

    fn pay(effective_at: Option<DateTime<Utc>>) -> Command {
        Command::PostTransaction(PostTransaction {
            id: TransactionId(Uuid::new_v4()),
            kind: TransactionKind::Transfer,
            postings: vec![PostingInstruction {
                cost: None,
                source: "world".parse().unwrap(),
                destination: "alice".parse().unwrap(),
                asset: "USD".parse().unwrap(),
                amount: "1.00".parse().unwrap(),
            }],
            metadata: Metadata::default(),
            guards: Default::default(),
            pending: None,
            effective_at,
        })
    }

    fn close(through: DateTime<Utc>, known_at_position: i64) -> Command {
        Command::ClosePeriod(ClosePeriod {
            through,
            known_at_position,
            trial_balance_digest: "digest".to_owned(),
            metadata: Metadata::default(),
        })
    }

    fn close_at_head(state: &mut LedgerState, through: DateTime<Utc>) -> Result<(), Rejection> {
        let head = state.head();
        run(state, close(through, head))
    }

    fn code(result: Result<(), Rejection>) -> &'static str {
        result.err().map_or("accepted", |r| r.code())
    }

    #[test]
    fn a_close_races_what_counts_in_its_period_after_its_trial_balance_was_read() {
        let mut state = ledger();
        state.set_recording_at(t(100));
        run(&mut state, pay(None)).unwrap();
        let read_at = state.head();
        // Recorded after the period's end: the close stands.
        state.set_recording_at(t(200));
        run(&mut state, pay(None)).unwrap();
        assert_eq!(
            code(state.decide(&close(t(150), read_at)).map(drop)),
            "accepted"
        );
        // Backdated into it: the trial balance read at `read_at` is no longer true.
        run(&mut state, pay(Some(t(120)))).unwrap();
        let raced = state.decide(&close(t(150), read_at)).map(drop);
        assert_eq!(code(raced), "period_close_raced");
        // Read again at the head, it stands; then nothing counts in the period any more.
        close_at_head(&mut state, t(150)).unwrap();
        assert_eq!(code(run(&mut state, pay(Some(t(150))))), "period_closed");
        assert_eq!(code(run(&mut state, pay(Some(t(151))))), "accepted");
        // Periods close in order, and once they have ended.
        assert_eq!(code(close_at_head(&mut state, t(140))), "validation_error");
        assert_eq!(code(close_at_head(&mut state, t(200))), "validation_error");
    }

    #[test]
    fn what_a_restored_writer_cannot_tell_makes_a_close_race_never_stand() {
        let mut state = ledger();
        state.set_recording_at(t(100));
        run(&mut state, pay(None)).unwrap();
        let read_at = state.head();
        run(&mut state, pay(None)).unwrap();
        state.restore_head(state.head());
        state.set_recording_at(t(300));
        let raced = state.decide(&close(t(200), read_at)).map(drop);
        assert_eq!(code(raced), "period_close_raced");
        assert_eq!(
            code(state.decide(&close(t(200), state.head())).map(drop)),
            "accepted"
        );
    }

    #[test]
    fn a_raced_close_holds_back_writes_into_its_period_until_it_lands_or_its_fence_ends() {
        let mut state = ledger();
        state.set_recording_at(t(100));
        state.fence_closing(t(50));
        assert_eq!(code(run(&mut state, pay(Some(t(40))))), "period_closing");
        assert_eq!(code(run(&mut state, pay(None))), "accepted");
        state.set_recording_at(t(103));
        assert_eq!(code(run(&mut state, pay(Some(t(40))))), "accepted");
        state.fence_closing(t(50));
        close_at_head(&mut state, t(50)).unwrap();
        assert_eq!(code(run(&mut state, pay(Some(t(40))))), "period_closed");
    }

    #[test]
    fn a_group_taken_back_forgets_what_it_noted() {
        let mut state = ledger();
        state.set_recording_at(t(100));
        run(&mut state, pay(None)).unwrap();
        let read_at = state.head();
        state.begin_group();
        run(&mut state, pay(Some(t(10)))).unwrap();
        state.roll_back_group();
        assert_eq!(
            code(state.decide(&close(t(50), read_at)).map(drop)),
            "accepted"
        );
    }
}
