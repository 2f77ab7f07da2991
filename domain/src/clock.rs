//! Time, as the ledger reads it. The writer stamps batches and expires holds with it, and the API
//! turns a hold's `timeout_s` into a time with it. It is injected, so a test can move time on
//! instead of sleeping. Decisions never read a clock: commands carry the time.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};

pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The system's clock moved on by an offset that only grows: time passes as usual, and a test
/// can make an hour pass at once.
#[derive(Debug, Default)]
pub struct ShiftedClock {
    offset_us: AtomicI64,
}

impl ShiftedClock {
    /// Moves the clock on by `by`.
    pub fn advance(&self, by: std::time::Duration) {
        let us = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        self.offset_us.fetch_add(us, Ordering::AcqRel);
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::microseconds(self.offset_us.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shifted_clock_is_ahead_by_what_it_was_advanced() {
        let clock = ShiftedClock::default();
        clock.advance(std::time::Duration::from_secs(3600));
        let ahead = clock.now() - Utc::now();
        assert!(ahead > chrono::Duration::seconds(3599), "{ahead}");
        assert!(ahead <= chrono::Duration::seconds(3600), "{ahead}");
    }
}
