//! The engine's notion of now: the local clock corrected by its measured offset from the database clock.
//!
//! The saga log compares stored times (`next_attempt_at`, `deadline_at`, `lease_until`) with the database's
//! `now()`. A replica whose own clock is off would otherwise schedule retries and deadlines that far off
//! too; measuring the offset (at start-up and on every heartbeat) puts every time the core computes on
//! the database clock.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use chrono::{DateTime, Utc};
use saga_store::{SagaStore, StoreError};

/// Database time = local time + offset.
#[derive(Debug)]
pub struct Clock {
    /// Where local time comes from; tests give a skewed one.
    local: fn() -> DateTime<Utc>,
    /// Database time minus local time, in microseconds.
    offset_micros: AtomicI64,
}

impl Default for Clock {
    fn default() -> Self {
        Self::with_local(Utc::now)
    }
}

impl Clock {
    /// A clock reading local time from `local` (the system clock in production) until the first
    /// [`Clock::sync`].
    pub fn with_local(local: fn() -> DateTime<Utc>) -> Self {
        Self {
            local,
            offset_micros: AtomicI64::new(0),
        }
    }

    /// The current time on the database clock (as of the last sync).
    pub fn now(&self) -> DateTime<Utc> {
        (self.local)() + chrono::Duration::microseconds(self.offset_micros.load(Ordering::Relaxed))
    }

    /// Measures the offset from the database clock: its `now()` is taken as read halfway through the
    /// round trip. An offset within half the round trip cannot be told from none (a database on the
    /// same host, or clocks kept in step by NTP): it is not corrected, so no error is added where the
    /// clocks already agree.
    pub async fn sync<S: SagaStore>(&self, store: &S) -> Result<(), StoreError> {
        let sent = Instant::now();
        let before = (self.local)();
        let database = store.now().await?;
        let half_trip = chrono::Duration::from_std(sent.elapsed() / 2).unwrap_or_default();
        let offset = database - (before + half_trip);
        let offset = if offset.abs() <= half_trip {
            chrono::Duration::zero()
        } else {
            offset
        };
        self.offset_micros.store(
            offset.num_microseconds().unwrap_or(i64::MAX),
            Ordering::Relaxed,
        );
        Ok(())
    }
}
