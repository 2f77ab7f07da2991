//! Webhooks: the log delivered to HTTP receivers. A subscription names a URL and filters; the
//! deliverer (one per ledger, across its processes) POSTs each matching event to it, one per
//! request, in position order, signed (`signing`), to an address the guard allows (`guard`),
//! retrying a failure with exponential backoff while the later events wait. Its cursor, in
//! PostgreSQL (`store`), moves only once the receiver answered 2xx: delivery is at least once, and
//! a receiver drops duplicates by the position each request carries.

pub mod deliverer;
pub mod filter;
pub mod guard;
pub mod signing;
pub mod store;

use std::time::Duration;

use chrono::{DateTime, Utc};

pub use deliverer::Webhooks;
pub use filter::Filter;
pub use store::{AfterFailure, Outcome, Subscription};

/// Retries of a failing receiver stop this long after its first failure: the subscription is then
/// disabled.
pub const RETRY_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// How the deliverer works; `ledger serve`'s `--webhook-*` flags set it.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Deliver to loopback, private, link-local, unique-local and CGNAT addresses too.
    pub allow_private: bool,
    /// How long a receiver has to answer a delivery (connecting included).
    pub request_timeout: Duration,
    /// The wait before the first retry; it doubles with each failure in a row...
    pub retry_base: Duration,
    /// ...up to this.
    pub retry_max: Duration,
    /// How long a run of failures may last before the subscription is disabled.
    pub retry_window: Duration,
    /// Failures in a row that disable a subscription.
    pub failures_max: u32,
    /// Deliveries in flight at once, across subscriptions (each has at most one).
    pub in_flight_max: usize,
    /// How often to look for new events and subscriptions when nothing in this process says there
    /// are some (the writer or the API call was another process's).
    pub idle_poll_interval: Duration,
    /// How long a deliverer that does not hold the lock waits before trying again.
    pub lock_retry_interval: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            allow_private: false,
            request_timeout: Duration::from_secs(10),
            retry_base: Duration::from_secs(5),
            retry_max: Duration::from_secs(60 * 60),
            retry_window: RETRY_WINDOW,
            failures_max: 40,
            in_flight_max: 16,
            idle_poll_interval: Duration::from_secs(1),
            lock_retry_interval: Duration::from_secs(1),
        }
    }
}

/// The wait after the `failures`-th failure in a row: `retry_base × 2^(failures−1)`, at most
/// `retry_max`.
pub fn backoff(failures: u32, retry_base: Duration, retry_max: Duration) -> Duration {
    let doublings = failures.saturating_sub(1).min(31);
    retry_base.saturating_mul(1 << doublings).min(retry_max)
}

/// What follows a failure at `now`, after `failures_before` failures in a row that began at
/// `failing_since`: the next attempt, and whether the subscription is disabled instead (too many
/// failures, or the next attempt would fall after the retry window).
pub fn after_failure(
    failures_before: i32,
    failing_since: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    config: &WebhookConfig,
) -> AfterFailure {
    let failures = u32::try_from(failures_before)
        .unwrap_or(0)
        .saturating_add(1);
    let delay = backoff(failures, config.retry_base, config.retry_max);
    let next_attempt_at = now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
    let since = failing_since.unwrap_or(now);
    let window = chrono::Duration::from_std(config.retry_window).unwrap_or(chrono::Duration::MAX);
    let disabled_reason = if failures >= config.failures_max {
        Some(format!(
            "disabled after {failures} failed deliveries in a row"
        ))
    } else if next_attempt_at - since > window {
        Some(format!(
            "disabled: deliveries kept failing for {} s",
            config.retry_window.as_secs()
        ))
    } else {
        None
    };
    AfterFailure {
        next_attempt_at,
        disabled_reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_base_up_to_the_cap() {
        let (base, max) = (Duration::from_secs(5), Duration::from_secs(3600));
        let waits: Vec<u64> = (1..=12).map(|n| backoff(n, base, max).as_secs()).collect();
        assert_eq!(
            waits,
            [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]
        );
        assert_eq!(backoff(u32::MAX, base, max), max);
    }

    #[test]
    fn failures_in_a_row_disable_at_the_bound() {
        let config = WebhookConfig {
            failures_max: 3,
            ..WebhookConfig::default()
        };
        let now = Utc::now();
        let second = after_failure(1, Some(now), now, &config);
        assert_eq!(second.disabled_reason, None);
        assert_eq!(second.next_attempt_at, now + chrono::Duration::seconds(10));
        let third = after_failure(2, Some(now), now, &config);
        assert!(third
            .disabled_reason
            .unwrap()
            .contains("3 failed deliveries"));
    }

    #[test]
    fn the_defaults_retry_for_a_day_then_disable() {
        let config = WebhookConfig {
            failures_max: u32::MAX,
            ..WebhookConfig::default()
        };
        let start = Utc::now();
        let (mut now, mut failures) = (start, 0);
        loop {
            let plan = after_failure(failures, Some(start), now, &config);
            failures += 1;
            if plan.disabled_reason.is_some() {
                break;
            }
            now = plan.next_attempt_at;
        }
        let retried = now - start;
        assert!(retried <= chrono::Duration::hours(24), "{retried}");
        assert!(retried > chrono::Duration::hours(23), "{retried}");
        // With the default backoff a day is about 34 failures: the default bound on failures in
        // a row (for receivers that fail fast under a shorter backoff) does not end it first.
        assert!((30..40).contains(&failures), "{failures}");
    }
}
