//! PostgreSQL connections for hot paths, given back to their pool without sqlx's round trip.
//!
//! sqlx (0.8) tests every connection given back to its pool with a round trip (a `Sync` the server
//! answers), in a task spawned after the caller let go: per transaction one more round trip, and one
//! more wake-up of the server and of the client. On a participant's step, or on sagad's group commit,
//! that was about a tenth of what a `purchase_plan` saga cost the machine (`BENCHMARKS.md`).
//!
//! [`Connections`] opens connections through a sqlx [`PgPool`] (its connect options and `after_connect`
//! hooks apply), detaches them from it and keeps them itself. A [`Connection`] goes back only when its
//! user says its work ended cleanly ([`Connection::give_back`]); one dropped instead (a cancelled call,
//! a failed statement, a lost session) is closed, so its server session ends, rolling back whatever it
//! had open, and nothing half-done reaches the next user.

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use deadpool::Runtime;
use deadpool::managed::{self, Metrics, Object, PoolError, QueueMode, RecycleResult};
use sqlx::{Connection as _, PgConnection, PgPool};

/// A pool of connections detached from a sqlx [`PgPool`].
#[derive(Clone)]
pub struct Connections {
    pool: managed::Pool<Detached>,
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = self.pool.status();
        f.debug_struct("Connections")
            .field("size", &status.size)
            .field("available", &status.available)
            .field("max_size", &status.max_size)
            .finish()
    }
}

impl Connections {
    /// At most `max_size` connections opened through `pool`, waiting for one at most the pool's
    /// `acquire_timeout`. A connection that sat idle `test_after_idle` or longer is tested with a round
    /// trip before it is handed out (replaced if the server ended it meanwhile); `None` never tests,
    /// for users that notice a dead connection before any work and simply try another
    /// ([`connection_lost`]).
    pub fn new(pool: PgPool, max_size: usize, test_after_idle: Option<Duration>) -> Self {
        let wait = pool.options().get_acquire_timeout();
        let built = managed::Pool::builder(Detached {
            pool,
            test_after_idle,
        })
        .max_size(max_size)
        .wait_timeout(Some(wait))
        .runtime(Runtime::Tokio1)
        // The most recently used connection first: under light load the same few server sessions stay
        // warm while the rest sit idle.
        .queue_mode(QueueMode::Lifo)
        .build();
        match built {
            Ok(pool) => Self { pool },
            // Only a timeout without a runtime fails to build, and the runtime is set above.
            Err(err) => unreachable!("building a connection pool: {err}"),
        }
    }

    /// The most connections this pool holds.
    pub fn max_size(&self) -> usize {
        self.pool.status().max_size
    }

    /// An idle connection, or a new one when none is idle and the pool is not full.
    pub async fn get(&self) -> Result<Connection, sqlx::Error> {
        match self.pool.get().await {
            Ok(conn) => Ok(Connection { conn: Some(conn) }),
            Err(PoolError::Backend(err)) => Err(err),
            Err(PoolError::Timeout(_)) => Err(sqlx::Error::PoolTimedOut),
            Err(PoolError::Closed) => Err(sqlx::Error::PoolClosed),
            Err(other) => Err(sqlx::Error::Protocol(other.to_string())),
        }
    }
}

/// A connection checked out of [`Connections`]. Derefs to the sqlx connection; closed when dropped,
/// unless given back.
pub struct Connection {
    /// `None` once given back.
    conn: Option<Object<Detached>>,
}

impl Connection {
    /// Returns the connection to its pool. Only for a connection whose work ended cleanly: no
    /// transaction open, every statement's answer read.
    pub fn give_back(mut self) {
        // Dropping the pool object (not this wrapper) is what returns it.
        self.conn.take();
    }
}

impl Deref for Connection {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        self.conn
            .as_deref()
            .expect("a connection is held until given back, which consumes it")
    }
}

impl DerefMut for Connection {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.conn
            .as_deref_mut()
            .expect("a connection is held until given back, which consumes it")
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(unfinished) = self.conn.take() {
            // Out of the pool and closed: its session may be mid-transaction or mid-message.
            drop(Object::take(unfinished));
        }
    }
}

/// Whether `err` says the session is gone rather than anything about the statement: an I/O failure, or
/// the server ending the session (SQLSTATE class 08, connection exception, or 57P, operator
/// intervention such as a shutdown or `pg_terminate_backend`).
pub fn connection_lost(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_) => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
        _ => false,
    }
}

/// Opens a connection through the caller's pool and detaches it from that pool.
struct Detached {
    pool: PgPool,
    test_after_idle: Option<Duration>,
}

impl managed::Manager for Detached {
    type Type = PgConnection;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<PgConnection, sqlx::Error> {
        Ok(self.pool.acquire().await?.detach())
    }

    async fn recycle(
        &self,
        conn: &mut PgConnection,
        metrics: &Metrics,
    ) -> RecycleResult<sqlx::Error> {
        // Only a connection whose work ended cleanly comes back; what may have happened since is the
        // server ending the session.
        if self
            .test_after_idle
            .is_some_and(|after| metrics.last_used() >= after)
        {
            conn.ping().await?;
        }
        Ok(())
    }
}
