//! sagad's database commit counter: `pg_stat_database.xact_commit` for the database the URL names.
//!
//! Every read runs on one dedicated connection inside **one** transaction that is committed only after the
//! last read. A backend publishes its counters only while idle outside a transaction, so none of the
//! bench's own statements can show up in the delta it measures. Inside the transaction PostgreSQL would
//! keep returning its cached statistics (15+: `stats_fetch_consistency = cache`; before 15: the collector
//! snapshot), so each read first calls `pg_stat_clear_snapshot()`. At READ COMMITTED with no writes the
//! open transaction holds no xid and no snapshot between statements, so it does not hold back vacuum.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use sqlx::{Connection, Executor, PgConnection};

/// One connection, one open read-only transaction.
pub struct CommitCounter {
    conn: PgConnection,
    database: String,
    statements: u64,
}

/// When the counter counts as settled, see [`CommitCounter::settle`].
#[derive(Debug, Clone, Copy)]
pub struct Settle {
    pub poll: Duration,
    pub quiet: Duration,
    pub min_wait: Duration,
    pub cap: Duration,
}

/// How PostgreSQL 15+ publishes a backend's counters: when the backend goes idle, at once if its last flush
/// was at least 1 s ago, otherwise by a timer 10 s later (`PGSTAT_MIN_INTERVAL`, `PGSTAT_IDLE_INTERVAL`).
/// So the last commits sagad's connections made before the load stopped can appear up to ~10 s later,
/// after the counter has already looked still for several seconds (measured against a stand-in doing
/// exactly 6 commits per saga: "unchanged for 2 s" alone read 5.07). Hence: at least 11 s after the load,
/// unchanged for 2 s, polled every 500 ms, and never longer than 15 s (a sagad that commits in the
/// background, e.g. lease renewals, keeps the counter moving; those commits are then part of the delta).
/// Before PostgreSQL 15 an idle backend may hold its last counters until it is next used, so the tail of
/// a run can be missing there.
pub const SETTLE: Settle = Settle {
    poll: Duration::from_millis(500),
    quiet: Duration::from_secs(2),
    min_wait: Duration::from_secs(11),
    cap: Duration::from_secs(15),
};

/// Outcome of [`CommitCounter::settle`].
#[derive(Debug, Clone, Copy)]
pub struct Settled {
    /// The last value read.
    pub value: i64,
    /// How long the settle wait took.
    pub waited: Duration,
    /// False when the counter was still moving when the cap was reached.
    pub stable: bool,
}

impl CommitCounter {
    /// Connects and opens the transaction every read runs in.
    pub async fn connect(url: &str) -> Result<Self> {
        let conn = PgConnection::connect(url)
            .await
            .with_context(|| format!("cannot connect to sagad's database at {url}"))?;
        let mut counter = Self {
            conn,
            database: String::new(),
            statements: 0,
        };
        // A plain BEGIN rather than sqlx's `Transaction`, which would borrow the connection.
        counter.conn.execute("BEGIN").await?;
        counter.statements += 1;
        counter.database = sqlx::query_scalar("SELECT current_database()")
            .fetch_one(&mut counter.conn)
            .await?;
        counter.statements += 1;
        Ok(counter)
    }

    /// Name of the database whose commits are counted.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// Statements the bench ran on its connection (all in the one transaction).
    pub fn statements(&self) -> u64 {
        self.statements
    }

    /// The database's committed-transaction counter as of now.
    pub async fn read(&mut self) -> Result<i64> {
        sqlx::query("SELECT pg_stat_clear_snapshot()")
            .execute(&mut self.conn)
            .await?;
        let value = sqlx::query_scalar(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one(&mut self.conn)
        .await
        .context("reading pg_stat_database.xact_commit")?;
        self.statements += 2;
        Ok(value)
    }

    /// The saga-log writes that moved `ids` (each saga's final revision + 1: its insert, then one per
    /// committed transition) and the steps of the largest definition among them.
    pub async fn footprint(&mut self, ids: &[String]) -> Result<(i64, i64)> {
        let footprint = sqlx::query_as(
            "SELECT COALESCE(sum(revision + 1), 0)::bigint,
                    COALESCE(max(jsonb_array_length(definition->'steps')), 0)::bigint
             FROM sagas WHERE id = ANY($1::uuid[])",
        )
        .bind(ids)
        .fetch_one(&mut self.conn)
        .await
        .context("reading the sagas' revisions")?;
        self.statements += 1;
        Ok(footprint)
    }

    /// Polls every `poll` until at least `min_wait` has passed and the counter has not changed for `quiet`,
    /// or `cap` has passed. Call it right after the load stops: see [`SETTLE`] for the numbers and why.
    pub async fn settle(&mut self, rule: Settle) -> Result<Settled> {
        let started = Instant::now();
        let mut value = self.read().await?;
        let mut changed_at = Instant::now();
        loop {
            let stable = started.elapsed() >= rule.min_wait && changed_at.elapsed() >= rule.quiet;
            if stable || started.elapsed() >= rule.cap {
                return Ok(Settled {
                    value,
                    waited: started.elapsed(),
                    stable,
                });
            }
            tokio::time::sleep(rule.poll).await;
            let now = self.read().await?;
            if now != value {
                value = now;
                changed_at = Instant::now();
            }
        }
    }

    /// Commits the read transaction (its one commit lands after the last read) and closes the connection.
    pub async fn finish(mut self) -> Result<()> {
        self.conn.execute("COMMIT").await?;
        self.conn.close().await?;
        Ok(())
    }
}
