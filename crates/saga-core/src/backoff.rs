//! Retry delays: exponential growth from `initial_backoff`, capped at `max_backoff`, spread by jitter so
//! that many sagas failing together do not retry in lockstep.

use std::time::Duration;

use crate::RetryPolicy;

/// The delay before attempt `failed_attempt + 1`.
///
/// `sample` is a uniform random number in `[0, 1)` supplied by the caller, which keeps this function pure
/// and testable; 0.5 means "no jitter".
pub fn delay(policy: &RetryPolicy, failed_attempt: u32, sample: f64) -> Duration {
    let exponent = i32::try_from(failed_attempt.saturating_sub(1)).unwrap_or(i32::MAX);
    let base = policy.initial_backoff.as_secs_f64() * policy.multiplier.powi(exponent);
    let capped = base.min(policy.max_backoff.as_secs_f64());
    let spread = 1.0 + policy.jitter * (2.0 * sample.clamp(0.0, 1.0) - 1.0);
    Duration::try_from_secs_f64(capped * spread).unwrap_or(policy.max_backoff)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(jitter: f64) -> RetryPolicy {
        RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_secs(1),
            multiplier: 2.0,
            max_backoff: Duration::from_secs(30),
            jitter,
        }
    }

    #[test]
    fn grows_exponentially_then_caps() {
        let p = policy(0.0);
        let delays: Vec<_> = (1..=7).map(|a| delay(&p, a, 0.5).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
    }

    #[test]
    fn jitter_spreads_within_its_fraction() {
        let p = policy(0.2);
        assert_eq!(delay(&p, 3, 0.0), Duration::from_millis(3200));
        assert_eq!(delay(&p, 3, 0.5), Duration::from_secs(4));
        assert_eq!(delay(&p, 3, 1.0), Duration::from_millis(4800));
    }

    #[test]
    fn huge_attempt_numbers_stay_at_the_cap() {
        assert_eq!(delay(&policy(0.0), u32::MAX, 0.5), Duration::from_secs(30));
    }
}
