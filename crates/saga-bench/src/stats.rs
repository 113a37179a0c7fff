//! Completion-latency summary: nearest-rank percentiles over every recorded sample (no sampling, no
//! interpolation), so a reported p99 is a latency some saga actually had.

use std::time::Duration;

/// The latency figures the bench prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Summary {
    /// Summarises samples given in any order; `None` when there are none.
    pub fn of(mut samples: Vec<Duration>) -> Option<Self> {
        samples.sort_unstable();
        Some(Self {
            p50: percentile(&samples, 50)?,
            p90: percentile(&samples, 90)?,
            p99: percentile(&samples, 99)?,
            max: *samples.last()?,
        })
    }
}

/// Nearest-rank percentile of `sorted` (ascending): the smallest sample such that at least `p` percent of
/// all samples are less than or equal to it, i.e. the sample at 1-based rank `ceil(p * n / 100)`.
/// `p` above 100 is treated as 100 (the maximum), 0 as the minimum. `None` for no samples.
pub fn percentile(sorted: &[Duration], p: usize) -> Option<Duration> {
    let rank = (p.min(100) * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(values: impl IntoIterator<Item = u64>) -> Vec<Duration> {
        values.into_iter().map(Duration::from_millis).collect()
    }

    #[test]
    fn one_to_hundred_gives_the_rank_itself() {
        // Deliberately unsorted: `Summary::of` must sort. An off-by-one index (sorted[p * n / 100])
        // would answer 51, 91, 100 here.
        let mut samples = ms(1..=100);
        samples.reverse();
        samples.swap(3, 70);
        let s = Summary::of(samples).expect("non-empty");
        assert_eq!(s.p50, Duration::from_millis(50));
        assert_eq!(s.p90, Duration::from_millis(90));
        assert_eq!(s.p99, Duration::from_millis(99));
        assert_eq!(s.max, Duration::from_millis(100));
    }

    #[test]
    fn rank_rounds_up_when_it_is_not_whole() {
        let three = ms([10, 20, 30]);
        assert_eq!(percentile(&three, 50), Some(Duration::from_millis(20))); // ceil(1.5) = 2
        assert_eq!(percentile(&three, 90), Some(Duration::from_millis(30))); // ceil(2.7) = 3
        assert_eq!(percentile(&three, 0), Some(Duration::from_millis(10)));
        assert_eq!(percentile(&three, 250), Some(Duration::from_millis(30)));

        let many = ms(1..=1001);
        assert_eq!(percentile(&many, 99), Some(Duration::from_millis(991))); // ceil(990.99) = 991
        assert_eq!(percentile(&many, 50), Some(Duration::from_millis(501))); // ceil(500.5) = 501
    }

    #[test]
    fn a_single_slow_saga_shows_only_in_the_tail() {
        let mut samples = ms(std::iter::repeat_n(5, 99));
        samples.push(Duration::from_secs(3));
        let s = Summary::of(samples).expect("non-empty");
        assert_eq!(s.p99, Duration::from_millis(5));
        assert_eq!(s.max, Duration::from_secs(3));
    }

    #[test]
    fn no_samples_no_summary() {
        assert_eq!(percentile(&[], 50), None);
        assert_eq!(Summary::of(Vec::new()), None);
        let one = Summary::of(ms([7])).expect("non-empty");
        assert_eq!(
            (one.p50, one.p99, one.max),
            (
                Duration::from_millis(7),
                Duration::from_millis(7),
                Duration::from_millis(7)
            )
        );
    }
}
