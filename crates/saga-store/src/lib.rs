//! sagad's durable saga log: the [`SagaStore`] trait the engine writes through, and its PostgreSQL
//! implementation [`PgStore`] with embedded migrations.
//!
//! # Durability contract
//! - [`SagaStore::create`] commits the saga, its steps and its first event in one statement before
//!   `StartSaga` answers.
//! - [`SagaStore::commit`] writes one transition (changed step rows, saga progress, history events) in one
//!   statement, so one commit per step outcome; it is fenced on the saga's revision, and a write that
//!   matches no row is reported as [`StoreError::Conflict`], never applied over someone else's work.

mod error;
mod postgres;
mod rows;

use std::future::Future;

use saga_core::{ListFilter, RecordedEvent, Saga, SagaId, SagaSummary, Transition};

pub use error::StoreError;
pub use postgres::PgStore;

/// What [`SagaStore::create`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Created {
    /// The stored saga: the new one, or the existing one with the same idempotency key.
    pub saga: Saga,
    /// False when an existing saga with the same (type, idempotency key) was returned instead.
    pub created: bool,
}

/// The saga log.
pub trait SagaStore: Send + Sync + 'static {
    /// Persists a new saga (all steps `PENDING`, event `SAGA_STARTED`), or returns the saga that already
    /// holds its (type, idempotency key).
    fn create(&self, saga: &Saga) -> impl Future<Output = Result<Created, StoreError>> + Send;

    /// Loads one saga with its steps; `None` when there is no such saga.
    fn load(&self, id: SagaId) -> impl Future<Output = Result<Option<Saga>, StoreError>> + Send;

    /// Writes a transition computed from a saga at revision `transition.saga.revision`, and returns the
    /// new revision. Fails with [`StoreError::Conflict`] if the stored saga moved on meanwhile.
    fn commit(
        &self,
        transition: &Transition,
    ) -> impl Future<Output = Result<i64, StoreError>> + Send;

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
}
