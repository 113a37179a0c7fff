//! The connections step transactions run on: opened through the sqlx pool the service was given, then
//! kept by the SDK, so a step's connection goes back without sqlx's test round trip (`saga_pgpool`).

use saga_pgpool::{Connection, Connections, connection_lost};
use sqlx::postgres::PgTransactionManager;
use sqlx::{PgConnection, PgPool, TransactionManager};
use std::ops::{Deref, DerefMut};
use tracing::debug;

/// Connections for step transactions, opened through a sqlx [`PgPool`] (its connect options and
/// `after_connect` hooks apply) and then held here, as many at most as that pool's `max_connections`,
/// waiting for one at most its `acquire_timeout`. They are tested neither on checkout nor on return:
/// a step's `BEGIN` that finds its session gone begins again on another connection, as a test would
/// have.
///
/// Services that share a database can share these too: build one from the pool and give each
/// [`ParticipantService`](crate::ParticipantService) a clone. A `PgPool` converts into a set of its own.
#[derive(Clone, Debug)]
pub struct StepConnections(Connections);

impl From<PgPool> for StepConnections {
    fn from(pool: PgPool) -> Self {
        let max_size = usize::try_from(pool.options().get_max_connections()).unwrap_or(usize::MAX);
        Self(Connections::new(pool, max_size, None))
    }
}

impl StepConnections {
    /// Begins a step's transaction. A connection that died while idle (the server restarted, or ended
    /// the session) fails its `BEGIN`, before any work, and is closed; beginning again on the next one
    /// is then safe. Every idle connection may be dead: one try more than the pool holds reaches a new
    /// one.
    pub(crate) async fn begin(&self) -> Result<StepTransaction, sqlx::Error> {
        let mut tries = self.0.max_size() + 1;
        loop {
            let mut conn = self.0.get().await?;
            match PgTransactionManager::begin(&mut conn, None).await {
                Ok(()) => return Ok(StepTransaction(conn)),
                Err(err) if tries > 1 && connection_lost(&err) => {
                    debug!(error = %err, "pooled connection lost, beginning on another");
                    tries -= 1;
                }
                Err(err) => return Err(err),
            }
        }
    }
}

/// One step's transaction; derefs to its connection for the barrier's statements and the handler's.
/// Committed or rolled back, the connection goes back to [`StepConnections`]; dropped while open, it is
/// closed, and the server rolls the transaction back.
pub(crate) struct StepTransaction(Connection);

impl StepTransaction {
    pub(crate) async fn commit(mut self) -> Result<(), sqlx::Error> {
        PgTransactionManager::commit(&mut self.0).await?;
        self.0.give_back();
        Ok(())
    }

    pub(crate) async fn rollback(mut self) -> Result<(), sqlx::Error> {
        PgTransactionManager::rollback(&mut self.0).await?;
        self.0.give_back();
        Ok(())
    }
}

impl Deref for StepTransaction {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.0
    }
}

impl DerefMut for StepTransaction {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.0
    }
}
