//! The background work every instance runs beside its executors:
//! - the recovery loop claims due sagas (retry time reached, lease free or expired — a crashed or
//!   stopped instance's work) in batches and drives them; it wakes on a timer, on `NOTIFY` from an
//!   instance that released its leases, and when an in-flight slot frees up;
//! - the heartbeat renews the leases of every saga this instance drives in one statement (until the
//!   drain has ended, so executors finishing their last call keep their leases), stops the executors of
//!   any it lost, and keeps the clock in step with the database's;
//! - the watch refresher re-reads the watched sagas another replica changed, in one statement;
//! - retention deletes old finished sagas in small batches;
//! - the log gauges count parked and stuck sagas in the saga log for the metrics, in one statement.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use saga_store::{SagaStore, Undecodable, Wakeups};
use tracing::{debug, error, info, info_span, warn};

use crate::Engine;
use crate::executor::QUARANTINE;
use crate::metrics::LogGauges;

/// Sagas deleted per retention statement: small, so no statement holds many row locks for long.
const RETENTION_BATCH: u32 = 500;

/// How often retention runs.
const RETENTION_INTERVAL: Duration = Duration::from_secs(60);

/// How often watched sagas are re-read for changes made by another replica (this instance's own
/// commits reach their watchers at once).
const WATCH_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// How often the parked and stuck gauges are counted again: often enough for an alert, rarely enough
/// that scrapes (of every replica) never cost the saga log a query.
const LOG_GAUGES_INTERVAL: Duration = Duration::from_secs(15);

/// How long after this instance parks (or an operator un-parks) a saga the gauges are counted again.
const LOG_GAUGES_SETTLE: Duration = Duration::from_secs(1);

/// An active saga claimable for longer than this, yet unclaimed, is stuck: every recovery loop scans
/// at least every `recovery_interval` (a second by default), so only instances that are all full or
/// all gone leave one that long.
const STUCK_AFTER: Duration = Duration::from_secs(60);

impl<S: SagaStore> Engine<S> {
    /// Starts the recovery loop, the lease heartbeat, the watch refresher and retention; they stop when
    /// the engine drains.
    pub fn run_background(self: &Arc<Self>) {
        let engine = Arc::clone(self);
        self.spawn_background(
            "recovery",
            async move { engine.recovery_loop().await },
            info_span!("recovery"),
        );
        let engine = Arc::clone(self);
        self.spawn_background(
            "heartbeat",
            async move { engine.heartbeat().await },
            info_span!("heartbeat"),
        );
        let engine = Arc::clone(self);
        self.spawn_background(
            "watch_refresh",
            async move { engine.refresh_watches().await },
            info_span!("watch_refresh"),
        );
        let engine = Arc::clone(self);
        self.spawn_background(
            "log_gauges",
            async move { engine.refresh_log_gauges().await },
            info_span!("log_gauges"),
        );
        if let Some(age) = self.settings.retention {
            let engine = Arc::clone(self);
            self.spawn_background(
                "retention",
                async move { engine.retention(age).await },
                info_span!("retention"),
            );
        }
    }

    async fn recovery_loop(self: Arc<Self>) {
        let mut wakeups = None;
        loop {
            if self.shutdown.is_cancelled() {
                return;
            }
            if wakeups.is_none() {
                wakeups = self.store.listen().await.ok();
            }
            let claimed = self.claim_once().await;
            // A full batch means more may be due right now; otherwise sleep until something happens.
            if claimed == Some(self.settings.claim_batch as usize) {
                continue;
            }
            // Sleep no longer than until the next saga becomes due (a retry time, a lease expiry), so
            // it moves on time even when the scan interval is long. A full instance has nothing to plan
            // for: it waits for a slot to free up (or the scan interval).
            let sleep = match claimed {
                Some(_) if self.in_flight.available_permits() > 0 => self.until_next_due().await,
                _ => self.settings.recovery_interval,
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
        let sent = Instant::now();
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
        let count = claimed.sagas.len() + claimed.undecodable.len();
        self.metrics.claimed(count, claimed.taken_over);
        // Out of slots with work possibly left: ask the next finishing executor to wake the loop.
        self.recovery_starved.store(
            limit < self.settings.claim_batch as usize && count == limit,
            Ordering::Relaxed,
        );
        if count > 0 {
            info!(count, "claimed due sagas");
        }
        for bad in claimed.undecodable {
            self.quarantine_undecodable(bad).await;
        }
        let mut no_slot = Vec::new();
        for saga in claimed.sagas {
            match Arc::clone(&self.in_flight).try_acquire_owned() {
                Ok(permit) => self.spawn_driver(saga, permit, sent),
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

    /// A claimed saga this version cannot decode (written by a newer one during a rolling upgrade, or
    /// damaged by hand) is set aside for a while, with a history event saying why, so it neither blocks
    /// the rest of the batch nor gets re-claimed in a tight loop.
    async fn quarantine_undecodable(&self, bad: Undecodable) {
        error!(saga_id = %bad.id, error = %bad.error, retry_in = ?QUARANTINE, "cannot decode a claimed saga; setting it aside");
        let reason = bad.error.to_string();
        if let Err(e) = self
            .store
            .quarantine(bad.id, &self.owner, &reason, QUARANTINE)
            .await
        {
            warn!(saga_id = %bad.id, error = %e, "cannot set the saga aside; it moves on when its lease expires");
        }
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
                () = self.background_stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            if let Err(e) = self.sync_clock().await {
                debug!(error = %e, "cannot read the database clock; keeping the last offset");
            }
            let driven = self.driven();
            if driven.is_empty() {
                continue;
            }
            let sent = Instant::now();
            let Some(renewed) = self.committer.renew(driven.clone()).await else {
                return;
            };
            match renewed {
                Ok(renewed) => {
                    self.renewed(&renewed, sent);
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

    async fn refresh_watches(self: Arc<Self>) {
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = tokio::time::sleep(WATCH_REFRESH_INTERVAL) => {}
            }
            let watched = self.watchers.watched();
            if watched.is_empty() {
                continue;
            }
            let changed = self.store.load_newer(&watched).await;
            self.observe(&changed);
            match changed {
                Ok(changed) => {
                    for saga in &changed {
                        self.watchers.publish(saga);
                    }
                }
                Err(e) => debug!(error = %e, "cannot refresh watched sagas; retrying"),
            }
        }
    }

    async fn refresh_log_gauges(self: Arc<Self>) {
        // Every type reported once stays reported (at zero once its sagas are gone), so a series never
        // stops at its last non-zero value; the loaded definitions' types are there from the start.
        let mut counts: HashMap<String, LogGauges> = self
            .definitions()
            .keys()
            .map(|saga_type| (saga_type.clone(), LogGauges::default()))
            .collect();
        loop {
            match self.store.parked_and_stuck(STUCK_AFTER).await {
                Ok(rows) => {
                    counts.values_mut().for_each(|c| *c = LogGauges::default());
                    for row in rows {
                        let gauges = LogGauges {
                            parked: row.parked,
                            stuck: row.stuck,
                        };
                        counts.insert(row.saga_type, gauges);
                    }
                    self.metrics.set_log_gauges(&counts);
                }
                Err(e) => debug!(error = %e, "cannot count parked and stuck sagas; retrying"),
            }
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = tokio::time::sleep(LOG_GAUGES_INTERVAL) => {}
                // A burst of sagas parking at once costs one count, a moment later.
                () = self.log_gauges_wake.notified() => tokio::select! {
                    () = self.shutdown.cancelled() => return,
                    () = tokio::time::sleep(LOG_GAUGES_SETTLE) => {}
                },
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
