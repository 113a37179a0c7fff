//! How long this instance may still act on a saga's lease, by its own monotonic clock.
//!
//! The database decides when a lease expires; an instance only learns that it lost one at its next write.
//! So that it never calls a participant for a saga another instance may already drive, each executor keeps
//! a local deadline: the time it *sent* the statement that last granted or renewed the lease, plus the
//! lease length. The database's `lease_until` is at least that late, so while the local deadline holds,
//! the lease does.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A lease's local deadline, shared by an executor and the heartbeat that renews it.
#[derive(Debug)]
pub(crate) struct LocalLease {
    /// Nanoseconds after `base` at which the lease may have expired.
    until_nanos: AtomicU64,
    base: Instant,
    length: Duration,
}

impl LocalLease {
    /// A lease granted by a statement sent at `sent`, lasting `length`.
    pub(crate) fn granted(base: Instant, sent: Instant, length: Duration) -> Self {
        let lease = Self {
            until_nanos: AtomicU64::new(0),
            base,
            length,
        };
        lease.renewed(sent);
        lease
    }

    /// The lease was renewed by a statement sent at `sent`.
    pub(crate) fn renewed(&self, sent: Instant) {
        let until = sent.saturating_duration_since(self.base) + self.length;
        let nanos = u64::try_from(until.as_nanos()).unwrap_or(u64::MAX);
        self.until_nanos.fetch_max(nanos, Ordering::Relaxed);
    }

    /// Whether the lease surely still holds.
    pub(crate) fn holds(&self) -> bool {
        self.holds_at(Instant::now())
    }

    fn holds_at(&self, now: Instant) -> bool {
        let now =
            u64::try_from(now.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX);
        now < self.until_nanos.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_holds_until_its_length_after_the_granting_statement_was_sent() {
        let base = Instant::now();
        let ms = Duration::from_millis;
        let lease = LocalLease::granted(base, base + ms(5), ms(40));
        assert!(lease.holds_at(base + ms(44)));
        assert!(!lease.holds_at(base + ms(45)), "expired by the local clock");
        lease.renewed(base + ms(30));
        assert!(lease.holds_at(base + ms(60)), "a renewal extends it");
        lease.renewed(base);
        assert!(
            lease.holds_at(base + ms(60)),
            "an older renewal never shortens it"
        );
    }
}
