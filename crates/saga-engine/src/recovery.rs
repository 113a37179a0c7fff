//! The background work every instance runs beside its executors:
//! - the recovery loop claims due sagas (retry time reached, lease free or expired — a crashed or
//!   stopped instance's work) in batches and drives them; it wakes on a timer, on `NOTIFY` from an
//!   instance that released its leases, and when an in-flight slot frees up;
//! - the heartbeat renews the leases of every saga this instance drives in one statement, and stops the
//!   executors of any it lost;
//! - retention deletes old finished sagas in small batches.

use std::sync::Arc;
use std::time::Duration;

use std::sync::atomic::Ordering;

use saga_store::{SagaStore, Wakeups};
use tracing::{debug, info, info_span, warn};

use crate::Engine;

/// Sagas deleted per retention statement: small, so no statement holds many row locks for long.
const RETENTION_BATCH: u32 = 500;

/// How often retention runs.
const RETENTION_INTERVAL: Duration = Duration::from_secs(60);

impl<S: SagaStore> Engine<S> {
    /// Starts the recovery loop, the lease heartbeat and retention; they stop on shutdown.
    pub fn run_background(self: &Arc<Self>) {
        let engine = Arc::clone(self);
        self.spawn_task(
            async move { engine.recovery_loop().await },
            info_span!("recovery"),
        );
        let engine = Arc::clone(self);
        self.spawn_task(
            async move { engine.heartbeat().await },
            info_span!("heartbeat"),
        );
        if let Some(age) = self.settings.retention {
            let engine = Arc::clone(self);
            self.spawn_task(
                async move { engine.retention(age).await },
                info_span!("retention"),
            );
        }
    }

    async fn recovery_loop(self: Arc<Self>) {
        let mut wakeups = None;
        loop {
            if wakeups.is_none() {
                wakeups = self.store.listen().await.ok();
            }
            let claimed = self.claim_once().await;
            // A full batch means more may be due right now; otherwise sleep until something happens.
            if claimed == Some(self.settings.claim_batch as usize) {
                continue;
            }
            // Sleep no longer than until the next saga becomes due (a retry time, a lease expiry), so
            // it moves on time even when the scan interval is long.
            let sleep = match claimed {
                Some(_) => self.until_next_due().await,
                None => self.settings.recovery_interval,
            };
            let notified = async {
                match wakeups.as_mut() {
                    Some(w) => w.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = tokio::time::sleep(sleep) => {}
                () = self.recovery_wake.notified() => {}
                received = notified => {
                    if let Err(e) = received {
                        debug!(error = %e, "lost the wake-up listener; reconnecting");
                        wakeups = None;
                    }
                }
            }
        }
    }

    /// Claims as many due sagas as there are free in-flight slots (up to a batch) and drives them;
    /// returns how many, or `None` when the saga log failed.
    ///
    /// Slots are not held while the claim runs, so `StartSaga` never finds them taken by a claim in
    /// progress; a claimed saga that then finds no slot is released at once for another instance.
    async fn claim_once(self: &Arc<Self>) -> Option<usize> {
        let free = self.in_flight.available_permits();
        let limit = free.min(self.settings.claim_batch as usize);
        if limit == 0 {
            self.recovery_starved.store(true, Ordering::Relaxed);
            return Some(0);
        }
        let claimed = self
            .store
            .claim_due(&self.owner, u32::try_from(limit).unwrap_or(u32::MAX))
            .await;
        self.observe(&claimed);
        let claimed = match claimed {
            Ok(claimed) => claimed,
            Err(e) => {
                warn!(error = %e, "cannot claim due sagas; retrying");
                return None;
            }
        };
        let count = claimed.len();
        // Out of slots with work possibly left: ask the next finishing executor to wake the loop.
        self.recovery_starved.store(
            limit < self.settings.claim_batch as usize && count == limit,
            Ordering::Relaxed,
        );
        if count > 0 {
            info!(count, "claimed due sagas");
        }
        let mut no_slot = Vec::new();
        for saga in claimed {
            match Arc::clone(&self.in_flight).try_acquire_owned() {
                Ok(permit) => self.spawn_driver(saga, Some(permit)),
                Err(_) => no_slot.push(saga.id),
            }
        }
        if !no_slot.is_empty() {
            self.recovery_starved.store(true, Ordering::Relaxed);
            if let Err(e) = self.store.release(&self.owner, Some(&no_slot)).await {
                warn!(error = %e, "cannot release claimed sagas; they move on when their lease expires");
            }
        }
        Some(count)
    }

    /// Time until the next active saga becomes claimable, capped by the scan interval; a little slack
    /// lets the database clock pass the due time before the next claim.
    async fn until_next_due(&self) -> Duration {
        const SLACK: Duration = Duration::from_millis(5);
        let next = self.store.next_due().await;
        self.observe(&next);
        match next {
            Ok(Some(due)) => (due + SLACK).min(self.settings.recovery_interval),
            Ok(None) | Err(_) => self.settings.recovery_interval,
        }
    }

    async fn heartbeat(self: Arc<Self>) {
        let every = self.settings.lease / 3;
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            let driven = self.driven();
            if driven.is_empty() {
                continue;
            }
            let renewed = self.store.renew(&self.owner, &driven).await;
            self.observe(&renewed);
            match renewed {
                Ok(renewed) => {
                    // A saga that finished or released its lease since `driven` was read is absent
                    // too; its executor is gone or about to be, so stopping it changes nothing.
                    let lost: Vec<_> = driven
                        .into_iter()
                        .filter(|id| !renewed.contains(id))
                        .collect();
                    self.stop_drivers(&lost);
                }
                Err(e) => warn!(error = %e, "cannot renew leases; retrying"),
            }
        }
    }

    async fn retention(self: Arc<Self>, age: Duration) {
        loop {
            let mut deleted = 0;
            loop {
                match self.store.purge_finished(age, RETENTION_BATCH).await {
                    Ok(n) => {
                        deleted += n;
                        if n < u64::from(RETENTION_BATCH) || self.shutdown.is_cancelled() {
                            break;
                        }
                    }
                    Err(e) => {
                        warn!(error = %e, "retention failed; retrying later");
                        break;
                    }
                }
            }
            if deleted > 0 {
                info!(deleted, "deleted finished sagas past retention");
            }
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = tokio::time::sleep(RETENTION_INTERVAL) => {}
            }
        }
    }
}
