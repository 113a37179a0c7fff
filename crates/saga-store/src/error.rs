//! The store's error type.

use saga_core::SagaId;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or answered with an error.
    ///
    /// Not marked as `#[source]`: sqlx already writes its cause into its own message, and chaining it
    /// again would print every cause twice.
    #[error("database error: {0}")]
    Database(sqlx::Error),
    /// Migrations could not be applied.
    #[error("cannot apply database migrations")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The saga changed since it was read (another writer, or a lost lease): the write was dropped.
    #[error("saga {0} was changed by another writer")]
    Conflict(SagaId),
    /// A stored row could not be turned back into a saga.
    #[error("saga {saga_id} has a corrupt row: {message}")]
    Corrupt {
        /// The saga.
        saga_id: SagaId,
        /// What could not be decoded.
        message: String,
    },
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        Self::Database(e)
    }
}
