//! sagad's durable saga log: the [`SagaStore`] trait the engine writes through, and its PostgreSQL
//! implementation [`PgStore`] with embedded migrations.
//!
//! # Durability contract
//! - [`SagaStore::create`] commits the saga, its steps and its first event in one statement before
//!   `StartSaga` answers.
//! - [`SagaStore::commit`] writes one transition (changed step rows, saga progress, history events) in one
//!   statement, so one commit per step outcome; it is fenced on the saga's revision and on the lease
//!   (owner and epoch) the writer holds, and a write that matches no row is reported as
//!   [`StoreError::Conflict`], never applied over someone else's work.
//!
//! # Leases
//! An instance owns the sagas it drives until `lease_until`, always computed by the database clock.
//! Creating a saga leases it to its creator; [`SagaStore::claim_due`] leases due sagas whose lease is free
//! or expired (`FOR UPDATE SKIP LOCKED`, so replicas never claim the same saga), bumping the epoch;
//! [`SagaStore::renew`] extends all of an instance's leases in one statement; a commit can release the
//! lease (terminal, or waiting long) or take it over (operator actions).

mod error;
mod postgres;
mod rows;

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use saga_core::{
    ListFilter, RecordedEvent, Saga, SagaId, SagaSummary, Stats, StatsQuery, Transition,
};

pub use error::StoreError;
pub use postgres::{PgStore, PgWakeups};

/// The instance writing: its owner name (unique per process start) and how long its leases last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// Unique per process start, so a restarted instance never mistakes its predecessor's leases for
    /// its own.
    pub name: String,
    /// Lease length; renewed well before it runs out while the instance lives.
    pub lease: Duration,
}

/// What a commit does with the saga's lease. A commit that finishes the saga always releases it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseAfter {
    /// Keep it (the writer continues driving the saga). Fenced on owner and epoch.
    Keep,
    /// Give it up: the saga is terminal, or waits long enough that any instance may continue it.
    /// Fenced on owner and epoch.
    Release,
    /// Take it over whoever holds it (operator actions): a new epoch, leased to the writer. Fenced on
    /// the revision only.
    TakeOver,
}

/// What [`SagaStore::commit`] wrote: the saga's new revision and the epoch the writer now holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// The revision after the write.
    pub revision: i64,
    /// The lease epoch after the write.
    pub epoch: i64,
}

/// Notifications that due work may be waiting (another instance released leases).
pub trait Wakeups: Send + 'static {
    /// Waits for the next notification.
    fn recv(&mut self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// What [`SagaStore::create`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Created {
    /// The stored saga: the new one, or the existing one with the same idempotency key.
    pub saga: Saga,
    /// False when an existing saga with the same (type, idempotency key) was returned instead.
    pub created: bool,
}

/// What [`SagaStore::create_and_commit_many`] did: per start, as [`SagaStore::create_many`] answers;
/// per transition, as [`SagaStore::commit_many`] does.
pub type CreatedAndCommitted = (Vec<Result<Created, StoreError>>, Vec<Option<Committed>>);

/// What [`SagaStore::claim_due`] leased to the claiming instance.
#[derive(Debug, Default)]
pub struct Claimed {
    /// The claimed sagas, at their new epoch, read after the claim committed.
    pub sagas: Vec<Saga>,
    /// Claimed rows that could not be decoded; the claimer should [`SagaStore::quarantine`] them.
    pub undecodable: Vec<Undecodable>,
    /// How many of the claimed sagas were still leased to another instance whose lease had expired
    /// (it crashed or stalled) rather than released.
    pub taken_over: usize,
}

/// Sagas of one type that need someone's attention, counted in the saga log (all instances' alike).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedAndStuck {
    /// The saga type.
    pub saga_type: String,
    /// `FAILED` sagas, parked for an operator.
    pub parked: i64,
    /// Active sagas claimable for longer than asked that no instance has claimed.
    pub stuck: i64,
}

/// A claimed saga row that could not be turned into a [`Saga`].
#[derive(Debug)]
pub struct Undecodable {
    /// The saga.
    pub id: SagaId,
    /// Why it could not be decoded.
    pub error: StoreError,
}

/// The saga log.
pub trait SagaStore: Send + Sync + 'static {
    /// How [`SagaStore::listen`] delivers notifications.
    type Wakeups: Wakeups;

    /// Persists new sagas (all steps `PENDING`, event `SAGA_STARTED`) leased to `owner` at epoch 1, in
    /// one statement; for each, in order, the saga as stored or the saga that already holds its (type,
    /// idempotency key). Fails as a whole only when the statement does.
    fn create_many(
        &self,
        sagas: &[&Saga],
        owner: &Owner,
    ) -> impl Future<Output = Result<Vec<Result<Created, StoreError>>, StoreError>> + Send;

    /// Persists one new saga; see [`SagaStore::create_many`].
    fn create(
        &self,
        saga: &Saga,
        owner: &Owner,
    ) -> impl Future<Output = Result<Created, StoreError>> + Send {
        async move {
            let mut created = self.create_many(&[saga], owner).await?;
            created.pop().unwrap_or(Err(StoreError::Conflict(saga.id)))
        }
    }

    /// Loads one saga with its steps; `None` when there is no such saga.
    fn load(&self, id: SagaId) -> impl Future<Output = Result<Option<Saga>, StoreError>> + Send;

    /// Writes transitions of different sagas in one statement: each computed from a saga at revision
    /// `transition.saga.revision` that `owner` holds at epoch `transition.saga.epoch` (unless taking it
    /// over), doing its lease action. Returns, in order, what each wrote, or `None` where the saga moved
    /// on or the lease was lost meanwhile — that write changed nothing, and the others are unaffected.
    /// Two writes in one call must not concern the same saga.
    fn commit_many(
        &self,
        writes: &[(&Transition, LeaseAfter)],
        owner: &Owner,
    ) -> impl Future<Output = Result<Vec<Option<Committed>>, StoreError>> + Send;

    /// Persists new sagas as [`SagaStore::create_many`] does and writes transitions as
    /// [`SagaStore::commit_many`] does, in one transaction: one commit for a batch that holds both.
    /// Fails as a whole only when the statement does; then nothing of either was written.
    fn create_and_commit_many(
        &self,
        sagas: &[&Saga],
        writes: &[(&Transition, LeaseAfter)],
        owner: &Owner,
    ) -> impl Future<Output = Result<CreatedAndCommitted, StoreError>> + Send;

    /// Writes one transition; see [`SagaStore::commit_many`]. A write that changed nothing is
    /// [`StoreError::Conflict`].
    fn commit(
        &self,
        transition: &Transition,
        owner: &Owner,
        lease: LeaseAfter,
    ) -> impl Future<Output = Result<Committed, StoreError>> + Send {
        async move {
            let committed = self.commit_many(&[(transition, lease)], owner).await?;
            committed
                .into_iter()
                .next()
                .flatten()
                .ok_or(StoreError::Conflict(transition.saga.id))
        }
    }

    /// The sagas among `known` whose stored revision is above the one given with them (the watched
    /// sagas another replica changed), in one statement.
    fn load_newer(
        &self,
        known: &[(SagaId, i64)],
    ) -> impl Future<Output = Result<Vec<Saga>, StoreError>> + Send;

    /// Leases to `owner` up to `limit` active sagas that are due (retry time or deadline reached, or
    /// never scheduled) and whose lease is free or expired, and returns them at their new epoch, each
    /// as it is once the claim committed. A row that cannot be decoded does not fail the others.
    fn claim_due(
        &self,
        owner: &Owner,
        limit: u32,
    ) -> impl Future<Output = Result<Claimed, StoreError>> + Send;

    /// Per saga type with any: the parked (`FAILED`) sagas, and the stuck ones — active sagas that have
    /// been claimable (retry time reached, lease free or expired) for longer than `stuck_after`, which
    /// no instance claimed. One statement over the status and due indexes, never the finished history.
    fn parked_and_stuck(
        &self,
        stuck_after: Duration,
    ) -> impl Future<Output = Result<Vec<ParkedAndStuck>, StoreError>> + Send;

    /// Sets aside an active saga `owner` holds but cannot decode: releases its lease, makes it due again
    /// only after `retry_after` (by then an instance that can decode it may claim it) and records a
    /// `SAGA_QUARANTINED` event with `error`. Returns false if `owner` no longer held it.
    fn quarantine(
        &self,
        id: SagaId,
        owner: &Owner,
        error: &str,
        retry_after: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The database clock: every time the saga log compares with (`lease_until`, `next_attempt_at`,
    /// `deadline_at`) is on it.
    fn now(&self) -> impl Future<Output = Result<DateTime<Utc>, StoreError>> + Send;

    /// How long until the next active saga becomes claimable (its retry time and its lease, if any, both
    /// passed), by the database clock; zero if one already is, `None` if no saga is active.
    fn next_due(&self) -> impl Future<Output = Result<Option<Duration>, StoreError>> + Send;

    /// Extends `owner`'s leases on `ids` and returns the ids it still holds; any other was lost.
    fn renew(
        &self,
        owner: &Owner,
        ids: &[SagaId],
    ) -> impl Future<Output = Result<Vec<SagaId>, StoreError>> + Send;

    /// Releases `owner`'s leases on `ids` (all of its leases when `None`) and notifies the other
    /// instances; returns how many were released.
    fn release(
        &self,
        owner: &Owner,
        ids: Option<&[SagaId]>,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Subscribes to notifications that due work may be waiting.
    fn listen(&self) -> impl Future<Output = Result<Self::Wakeups, StoreError>> + Send;

    /// Deletes up to `limit` sagas (with steps and events) that completed or were compensated more than
    /// `older_than` ago by the database clock, oldest first; returns how many. Parked (`FAILED`) sagas
    /// are kept whatever their age: they wait for an operator.
    fn purge_finished(
        &self,
        older_than: Duration,
        limit: u32,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Up to `limit` sagas matching `filter` whose id is below `before` (all when `None`), newest first.
    /// Ids are time-ordered, so paging by the last id seen stays stable while sagas are added.
    fn list(
        &self,
        filter: &ListFilter,
        before: Option<SagaId>,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<SagaSummary>, StoreError>> + Send;

    /// A saga's history, oldest first; `None` when there is no such saga.
    fn history(
        &self,
        id: SagaId,
    ) -> impl Future<Output = Result<Option<Vec<RecordedEvent>>, StoreError>> + Send;

    /// Statistics for `query`, all of one snapshot of the saga log: the sagas that finished or started
    /// in its window, the active and the parked ones, failure reasons and stuck sagas. Reads only the
    /// window's finished sagas, the active ones and the parked ones, never the history before the window.
    fn stats(&self, query: &StatsQuery) -> impl Future<Output = Result<Stats, StoreError>> + Send;
}
