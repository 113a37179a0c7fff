//! The store's error type.

use std::sync::Arc;

use saga_core::SagaId;

/// Why a store operation failed. Cheap to clone, so one failed batch can answer each of its writers.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or answered with an error.
    ///
    /// Not marked as `#[source]`: sqlx already writes its cause into its own message, and chaining it
    /// again would print every cause twice.
    #[error("database error: {0}")]
    Database(Arc<sqlx::Error>),
    /// Migrations could not be applied.
    #[error("cannot apply database migrations")]
    Migrate(#[source] Arc<sqlx::migrate::MigrateError>),
    /// Every connection of the pool stayed busy past the acquire timeout: the database answers, this
    /// instance asks more of it than its pool allows. Load, not an outage.
    #[error("saga log busy: every connection is in use")]
    Busy,
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
        Self::Database(Arc::new(e))
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        Self::Migrate(Arc::new(e))
    }
}

impl StoreError {
    /// The database refused the data itself (SQLSTATE class 22, data exception, or 23, integrity
    /// constraint violation): writing the same again fails the same way, so retrying cannot help.
    pub fn is_data_error(&self) -> bool {
        matches!(self, Self::Database(e) if matches!(&**e, sqlx::Error::Database(e)
            if e.code().is_some_and(|c| c.starts_with("22") || c.starts_with("23"))))
    }

    /// The database gave up this statement to break a deadlock or a serialization conflict (SQLSTATE
    /// 40P01, 40001): running it again is the remedy.
    pub fn is_retryable_conflict(&self) -> bool {
        matches!(self, Self::Database(e) if matches!(&**e, sqlx::Error::Database(e)
            if e.code().is_some_and(|c| matches!(&*c, "40P01" | "40001"))))
    }

    /// Whether the database itself is out of reach (down, restarting, refusing connections), as opposed
    /// to an answer about this one operation or a busy pool ([`StoreError::Busy`]).
    pub fn is_unavailable(&self) -> bool {
        let Self::Database(e) = self else {
            return false;
        };
        match &**e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            // Class 08: connection exceptions; 57P01-57P03: admin shutdown, crash shutdown, cannot
            // connect now (the server is starting or stopping).
            sqlx::Error::Database(e) => e
                .code()
                .is_some_and(|c| c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03")),
            _ => false,
        }
    }
}
