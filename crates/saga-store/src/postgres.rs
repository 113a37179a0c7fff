//! [`PgStore`]: the saga log in PostgreSQL.

use std::time::Duration;

use chrono::{DateTime, Utc};
use saga_core::{
    ListFilter, RecordedEvent, Saga, SagaId, SagaSummary, Stats, StatsQuery, Transition,
};
use saga_pgpool::{Connections, connection_lost};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool, Postgres, QueryBuilder};
use tracing::instrument;

use crate::rows::{RecordedEventRow, SagaRow, SummaryRow};
use crate::{
    Claimed, Committed, Created, CreatedAndCommitted, LeaseAfter, Owner, ParkedAndStuck, SagaStore,
    StoreError, Undecodable, Wakeups,
};

mod stats;
mod writes;

/// Reads one saga and all its steps in a single statement.
const SELECT_SAGA: &str = "SELECT s.epoch, {SAGA_COLUMNS} FROM sagas s";

/// The `sagas` columns a [`SagaRow`] reads besides `epoch`, with the steps and labels aggregated.
const SAGA_COLUMNS: &str = "
    s.id, s.definition, s.status, s.failure_reason, s.failure_message, s.state,
    s.idempotency_key, s.started_by, s.traceparent, s.next_attempt_at, s.deadline_at, s.revision,
    s.created_at, s.updated_at, s.finished_at,
    COALESCE((SELECT jsonb_agg(to_jsonb(st) ORDER BY st.step_index)
              FROM saga_steps st WHERE st.saga_id = s.id), '[]'::jsonb) AS steps,
    {LABELS} AS labels";

/// The labels of saga `s` as one JSON object (read through `saga_labels`' primary key).
const LABELS: &str = "COALESCE((SELECT jsonb_object_agg(l.key, l.value)
              FROM saga_labels l WHERE l.saga_id = s.id), '{}'::jsonb)";

/// The statuses of sagas that still have work to do (the `sagas_due` partial index).
const ACTIVE: &str = "s.status IN ('RUNNING', 'COMPENSATING')";

/// When an active saga becomes claimable: its lease gone and its retry time reached. Word for word the
/// expression of the `sagas_due` index, so the planner uses it.
const DUE: &str = "GREATEST(COALESCE(s.lease_until, '-infinity'::timestamptz), \
                   COALESCE(s.next_attempt_at, '-infinity'::timestamptz))";

/// The channel on which instances announce released leases.
const WAKEUP_CHANNEL: &str = "sagad_due";

/// Connections kept apart for the lease machinery (claims, renewals, releases, the clock), so that a
/// pool saturated by executors' commits never delays a renewal into a lost lease or a takeover into a
/// stalled saga.
const CONTROL_CONNECTIONS: u32 = 2;

/// Connections the group commit writes on (a batch's starts and transitions share one statement, or
/// run side by side when it falls back to writing them apart; an operator action's single commit takes
/// one too), kept out of sqlx's pool so that each goes back after
/// its statement without a test round trip (`saga_pgpool`). Opened through the main pool, beyond its
/// `max_connections`.
const WRITER_CONNECTIONS: usize = 2;

/// How long a pooled connection may sit idle before it is tested on checkout.
const TEST_IDLE_AFTER: Duration = Duration::from_secs(1);

/// Session settings for every connection, sent when it opens.
///
/// Each statement is prepared once per connection, and after a few runs PostgreSQL keeps one generic
/// plan for it until the tables' statistics change. With the default `random_page_cost` (4, priced for
/// spinning disks) a plan made while `sagas` is still small — a fresh database, and no `ANALYZE` yet —
/// joins a batch to `sagas` by hashing the whole table, and keeps doing so as the table grows: every
/// commit then reads every saga. The saga log's statements are index probes into a working set that is
/// cached, so random reads are priced as such (the usual value for SSDs), and even a plan made on an
/// empty table looks sagas up by primary key.
const PLANNER_SETTINGS: [(&str, &str); 1] = [("random_page_cost", "1.1")];

/// The saga log in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgStore {
    /// Sagas' reads and writes.
    pool: PgPool,
    /// Leases: claims, renewals, releases, the next due time, the database clock.
    control: PgPool,
    /// Every saga write: [`SagaStore::create_many`] and [`SagaStore::commit_many`].
    writers: Connections,
}

impl PgStore {
    /// Connects a pool of at most `max_connections` to `url`, failing fast if the database is unreachable.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let options: PgConnectOptions = url
            .parse::<PgConnectOptions>()?
            .application_name("sagad")
            .options(PLANNER_SETTINGS);
        // One direct connection first: a pool would retry until its timeout and then report only
        // "pool timed out", hiding the real cause (refused, unknown database, bad password).
        PgConnection::connect_with(&options).await?.close().await?;
        // While the database is down a caller should hear so quickly, not queue behind a long wait.
        let pool = |connections| {
            PgPoolOptions::new()
                .max_connections(connections)
                .acquire_timeout(Duration::from_secs(2))
                // A test round trip before each checkout came before every commit, in the latency of
                // every step. Only a connection that sat idle for a while is tested (the server may have
                // restarted meanwhile, and a failed test quietly opens a new one); one in steady use was
                // tested when it was given back, a moment ago.
                .test_before_acquire(false)
                .before_acquire(|connection, meta| {
                    Box::pin(async move {
                        if meta.idle_for >= TEST_IDLE_AFTER {
                            connection.ping().await?;
                        }
                        Ok(true)
                    })
                })
                .connect_lazy_with(options.clone())
        };
        let main = pool(max_connections);
        Ok(Self {
            writers: Connections::new(main.clone(), WRITER_CONNECTIONS, Some(TEST_IDLE_AFTER)),
            pool: main,
            control: pool(CONTROL_CONNECTIONS),
        })
    }

    /// Applies the embedded migrations. Safe to run from several replicas at once: sqlx serialises
    /// them with a database lock.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("../../migrations").run(&self.pool).await?;
        Ok(())
    }

    /// The underlying pool, for health checks and tests.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Turns a driver error into a [`StoreError`], telling a busy pool from an outage: sqlx reports both
    /// as "pool timed out". When every connection the pool may hold is open (and checked out), the
    /// database answers and this instance is only asking too much of it; when connections are missing,
    /// the pool could not open them.
    fn db<T>(&self, result: Result<T, sqlx::Error>) -> Result<T, StoreError> {
        result.map_err(|e| classify(&self.pool, e))
    }

    /// Runs one of the group commit's statements on a writer connection. The connection goes back once
    /// the statement was answered, even by the database's refusal (the session is sound either way);
    /// after anything else (I/O, protocol) it is closed.
    async fn write<T>(
        &self,
        statement: impl AsyncFnOnce(&mut PgConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, StoreError> {
        let mut conn = self.db(self.writers.get().await)?;
        let result = statement(&mut conn).await;
        let answered = match &result {
            Ok(_) => true,
            Err(e) => matches!(e, sqlx::Error::Database(_)) && !connection_lost(e),
        };
        if answered {
            conn.give_back();
        }
        self.db(result)
    }

    /// What creating each of `sagas` did, given whether its row was `inserted`: a start whose
    /// idempotency key was taken answers with the saga that holds it.
    async fn created(
        &self,
        sagas: &[&Saga],
        inserted: Vec<bool>,
    ) -> Vec<Result<Created, StoreError>> {
        let mut created = Vec::with_capacity(sagas.len());
        for (saga, inserted) in sagas.iter().zip(inserted) {
            created.push(match (inserted, saga.idempotency_key.as_deref()) {
                (true, _) => Ok(Created {
                    saga: Saga {
                        epoch: 1,
                        ..(*saga).clone()
                    },
                    created: true,
                }),
                (false, Some(key)) => self
                    .load_by_idempotency_key(saga.saga_type(), key)
                    .await
                    .map(|saga| Created {
                        saga,
                        created: false,
                    }),
                (false, None) => Err(StoreError::Conflict(saga.id)),
            });
        }
        created
    }

    /// [`PgStore::db`] for the lease machinery's own pool.
    fn control<T>(&self, result: Result<T, sqlx::Error>) -> Result<T, StoreError> {
        result.map_err(|e| classify(&self.control, e))
    }

    /// The recovery loop's claim, run for `"explain"` under `EXPLAIN ANALYZE` in a transaction that is
    /// rolled back (nothing stays claimed): the plan with the rows each node actually read.
    pub async fn explain_claim_due_run(&self) -> Result<String, StoreError> {
        let mut tx = self.db(self.pool.begin().await)?;
        let lines: Vec<String> = self.db(sqlx::query_scalar(&format!(
            "EXPLAIN (ANALYZE, COSTS OFF) {}",
            claim_due_sql()
        ))
        .bind("explain")
        .bind(1_000_i64)
        .bind(100_i64)
        .fetch_all(&mut *tx)
        .await)?;
        self.db(tx.rollback().await)?;
        Ok(lines.join("\n"))
    }

    /// The plan that the group commit's most recently used connection keeps for its prepared statement
    /// whose text contains `fragment`, as `EXPLAIN EXECUTE` shows it (all parameters NULL: a cached
    /// generic plan does not depend on them). `None` when that connection has not prepared such a
    /// statement, or still plans it afresh on every run.
    pub async fn explain_cached_write(&self, fragment: &str) -> Result<Option<String>, StoreError> {
        self.write(async |conn| {
            let prepared: Option<(String, i32)> = sqlx::query_as(
                "SELECT name, cardinality(parameter_types) FROM pg_prepared_statements
                 WHERE strpos(statement, $1) > 0 AND generic_plans > 0",
            )
            .bind(fragment)
            .fetch_optional(&mut *conn)
            .await?;
            let Some((name, parameters)) = prepared else {
                return Ok(None);
            };
            let nulls = vec!["NULL"; usize::try_from(parameters).unwrap_or_default()].join(", ");
            let lines: Vec<String> =
                sqlx::query_scalar(&format!("EXPLAIN EXECUTE {name}({nulls})"))
                    .persistent(false)
                    .fetch_all(&mut *conn)
                    .await?;
            Ok(Some(lines.join("\n")))
        })
        .await
    }

    /// The query plan of the recovery loop's claim, as `EXPLAIN` prints it (nothing is claimed).
    pub async fn explain_claim_due(&self) -> Result<String, StoreError> {
        let lines: Vec<String> =
            self.db(sqlx::query_scalar(&format!("EXPLAIN {}", claim_due_sql()))
                .bind("explain")
                .bind(1_000_i64)
                .bind(100_i64)
                .fetch_all(&self.pool)
                .await)?;
        Ok(lines.join("\n"))
    }

    /// The query plan of [`SagaStore::parked_and_stuck`], as `EXPLAIN` prints it.
    pub async fn explain_parked_and_stuck(&self) -> Result<String, StoreError> {
        let lines: Vec<String> = self.db(sqlx::query_scalar(&format!(
            "EXPLAIN {}",
            parked_and_stuck_sql()
        ))
        .bind(60_000_i64)
        .fetch_all(&self.pool)
        .await)?;
        Ok(lines.join("\n"))
    }

    /// The query plan of a listing, as `EXPLAIN` prints it (nothing is listed).
    pub async fn explain_list(
        &self,
        filter: &ListFilter,
        before: Option<SagaId>,
        limit: u32,
    ) -> Result<String, StoreError> {
        let lines: Vec<String> = self.db(list_query("EXPLAIN", filter, before, limit)
            .build_query_scalar()
            .fetch_all(&self.pool)
            .await)?;
        Ok(lines.join("\n"))
    }

    /// Runs every `GetStats` statement for `query` under `EXPLAIN (ANALYZE, FORMAT JSON)`, in a read-only
    /// snapshot: each statement's name and its plan with the rows each node actually read.
    pub async fn explain_stats(
        &self,
        query: &StatsQuery,
    ) -> Result<Vec<(&'static str, serde_json::Value)>, StoreError> {
        let mut tx = self.db(self.pool.begin().await)?;
        let until = self.db(stats::begin_snapshot(&mut tx).await)?;
        let plans = self.db(stats::explain(&mut tx, query, until).await)?;
        self.db(tx.rollback().await)?;
        Ok(plans)
    }

    async fn load_by_idempotency_key(
        &self,
        saga_type: &str,
        key: &str,
    ) -> Result<Saga, StoreError> {
        let row: Result<SagaRow, _> = sqlx::query_as(&format!(
            "{} WHERE s.saga_type = $1 AND s.idempotency_key = $2",
            select_saga()
        ))
        .bind(saga_type)
        .bind(key)
        .fetch_one(&self.pool)
        .await;
        self.db(row)?.into_saga()
    }
}

/// A driver error from `pool` as a [`StoreError`]; see [`PgStore::db`].
fn classify(pool: &PgPool, e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::PoolTimedOut if pool.size() >= pool.options().get_max_connections() => {
            StoreError::Busy
        }
        e => StoreError::from(e),
    }
}

/// Claims due sagas for `$1` with lease length `$2` ms, at most `$3`; returns their ids. The claimed ids
/// are handed to the update as an array, so it finds them by primary key whatever the planner thinks of
/// the table's size (a join could scan every active saga).
fn claim_due_sql() -> String {
    format!(
        "WITH due AS (
            SELECT s.id, s.owner IS NOT NULL AND s.owner <> $1 AS expired FROM sagas s
            WHERE {ACTIVE} AND {DUE} <= now()
            ORDER BY {DUE}
            LIMIT $3
            FOR UPDATE SKIP LOCKED
         ),
         claimed AS (
            UPDATE sagas s SET owner = $1, lease_until = now() + $2 * interval '1 millisecond',
                               epoch = s.epoch + 1
            WHERE s.id = ANY(ARRAY(SELECT id FROM due))
            RETURNING s.id, s.epoch
         ),
         events AS (
            INSERT INTO saga_events (saga_id, kind, detail)
            SELECT c.id, 'SAGA_CLAIMED',
                   jsonb_build_object('kind', 'SAGA_CLAIMED', 'owner', $1::text, 'epoch', c.epoch)
            FROM claimed c
         )
         SELECT c.id, d.expired FROM claimed c JOIN due d ON d.id = c.id"
    )
}

/// [`SagaStore::parked_and_stuck`]: each half reads its own index (`sagas_by_status`, `sagas_due`).
fn parked_and_stuck_sql() -> String {
    format!(
        "SELECT saga_type, count(*) FILTER (WHERE status = 'FAILED') AS parked,
                count(*) FILTER (WHERE status <> 'FAILED') AS stuck
         FROM (SELECT s.saga_type, s.status FROM sagas s WHERE s.status = 'FAILED'
               UNION ALL
               SELECT s.saga_type, s.status FROM sagas s
               WHERE {ACTIVE} AND {DUE} <= now() - $1 * interval '1 millisecond') waiting
         GROUP BY saga_type"
    )
}

fn select_saga() -> String {
    SELECT_SAGA.replace("{SAGA_COLUMNS}", &SAGA_COLUMNS.replace("{LABELS}", LABELS))
}

/// `prefix` (empty, or `EXPLAIN`) and the listing query for [`SagaStore::list`]. Only the predicates in
/// use are written, so each filter combination gets a plan of its own: the status and type indexes lead
/// with the filter column, then id; a label filter walks `saga_labels_by_value` newest first and joins
/// each saga by its key, so a page reads only its own rows however many sagas carry the label.
fn list_query<'a>(
    prefix: &str,
    filter: &'a ListFilter,
    before: Option<SagaId>,
    limit: u32,
) -> QueryBuilder<'a, Postgres> {
    let mut query = QueryBuilder::new(format!(
        "{prefix} SELECT s.id, s.saga_type, s.definition_version, s.status, s.failure_reason,
                s.failure_message, s.definition->'steps'->s.current_step->>'name' AS current_step,
                s.idempotency_key, s.started_by, {LABELS} AS labels, s.created_at, s.updated_at,
                s.finished_at
         FROM sagas s"
    ));
    if let Some(label) = &filter.label {
        query
            .push(" JOIN saga_labels by_label ON by_label.saga_id = s.id AND by_label.key = ")
            .push_bind(&label.key)
            .push(" AND by_label.value = ")
            .push_bind(&label.value);
    }
    query.push(" WHERE true");
    if !filter.statuses.is_empty() {
        let statuses: Vec<&str> = filter.statuses.iter().map(|s| s.as_str()).collect();
        query
            .push(" AND s.status = ANY(")
            .push_bind(statuses)
            .push(")");
    }
    if let Some(saga_type) = &filter.saga_type {
        query.push(" AND s.saga_type = ").push_bind(saga_type);
    }
    if let Some(after) = filter.created_after {
        query.push(" AND s.created_at >= ").push_bind(after);
    }
    if let Some(before) = filter.created_before {
        query.push(" AND s.created_at < ").push_bind(before);
    }
    if let Some(id) = before {
        query.push(" AND s.id < ").push_bind(id.0);
        if filter.label.is_some() {
            // The same bound on the label index's own column, so the walk starts there.
            query.push(" AND by_label.saga_id < ").push_bind(id.0);
        }
    }
    query
        .push(" ORDER BY s.id DESC LIMIT ")
        .push_bind(i64::from(limit));
    query
}

/// A duration as whole milliseconds for SQL (`$n * interval '1 millisecond'`).
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn to_json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    // Serializing plain data (maps, strings, numbers, timestamps) cannot fail.
    serde_json::to_value(value).unwrap_or_default()
}

/// [`Wakeups`] over PostgreSQL `LISTEN`.
#[derive(Debug)]
pub struct PgWakeups {
    listener: PgListener,
}

impl Wakeups for PgWakeups {
    async fn recv(&mut self) -> Result<(), StoreError> {
        // PgListener reconnects by itself; notifications sent while it was away are lost, which the
        // recovery loop's periodic scan covers.
        self.listener.recv().await?;
        Ok(())
    }
}

impl SagaStore for PgStore {
    type Wakeups = PgWakeups;

    #[instrument(level = "debug", skip_all, fields(sagas = sagas.len()), err(level = "debug"))]
    async fn create_many(
        &self,
        sagas: &[&Saga],
        owner: &Owner,
    ) -> Result<Vec<Result<Created, StoreError>>, StoreError> {
        let inserted = self
            .write(async |conn| writes::insert(conn, sagas, owner).await)
            .await?;
        Ok(self.created(sagas, inserted).await)
    }

    #[instrument(level = "debug", skip_all, fields(sagas = sagas.len(), writes = writes.len()),
                 err(level = "debug"))]
    async fn create_and_commit_many(
        &self,
        sagas: &[&Saga],
        writes: &[(&Transition, LeaseAfter)],
        owner: &Owner,
    ) -> Result<CreatedAndCommitted, StoreError> {
        let (inserted, committed) = self
            .write(async |conn| writes::insert_and_update(conn, sagas, writes, owner).await)
            .await?;
        Ok((self.created(sagas, inserted).await, committed))
    }

    #[instrument(level = "debug", skip_all, fields(saga_id = %id), err(level = "debug"))]
    async fn load(&self, id: SagaId) -> Result<Option<Saga>, StoreError> {
        let row: Result<Option<SagaRow>, _> =
            sqlx::query_as(&format!("{} WHERE s.id = $1", select_saga()))
                .bind(id.0)
                .fetch_optional(&self.pool)
                .await;
        self.db(row)?.map(SagaRow::into_saga).transpose()
    }

    #[instrument(level = "debug", skip_all, fields(sagas = known.len()), err(level = "debug"))]
    async fn load_newer(&self, known: &[(SagaId, i64)]) -> Result<Vec<Saga>, StoreError> {
        let (ids, revisions): (Vec<uuid::Uuid>, Vec<i64>) =
            known.iter().map(|(id, revision)| (id.0, *revision)).unzip();
        let rows: Vec<SagaRow> = self.db(sqlx::query_as(&format!(
            "{} JOIN unnest($1::uuid[], $2::bigint[]) AS k(id, revision) ON k.id = s.id
                 WHERE s.revision > k.revision",
            select_saga()
        ))
        .bind(ids)
        .bind(revisions)
        .fetch_all(&self.pool)
        .await)?;
        rows.into_iter().map(SagaRow::into_saga).collect()
    }

    #[instrument(level = "debug", skip_all, fields(writes = writes.len()), err(level = "debug"))]
    async fn commit_many(
        &self,
        writes: &[(&Transition, LeaseAfter)],
        owner: &Owner,
    ) -> Result<Vec<Option<Committed>>, StoreError> {
        self.write(async |conn| writes::update(conn, writes, owner).await)
            .await
    }

    #[instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn claim_due(&self, owner: &Owner, limit: u32) -> Result<Claimed, StoreError> {
        // SKIP LOCKED: replicas claiming at the same moment take disjoint sets instead of queueing.
        let due: Vec<(uuid::Uuid, bool)> = self.control(
            sqlx::query_as(&claim_due_sql())
                .bind(&owner.name)
                .bind(millis(owner.lease))
                .bind(i64::from(limit))
                .fetch_all(&self.control)
                .await,
        )?;
        if due.is_empty() {
            return Ok(Claimed::default());
        }
        let taken_over = due.iter().filter(|(_, expired)| *expired).count();
        let ids: Vec<uuid::Uuid> = due.into_iter().map(|(id, _)| id).collect();
        // Re-read what was claimed: within the claim statement, a row another writer committed after
        // the statement's snapshot was taken is locked at its newest version but read at its older
        // one. Only rows still leased to this owner count (an operator may have taken one over since).
        let rows: Vec<SagaRow> = self.control(
            sqlx::query_as(&format!(
                "{} WHERE s.id = ANY($1) AND s.owner = $2",
                select_saga()
            ))
            .bind(&ids)
            .bind(&owner.name)
            .fetch_all(&self.control)
            .await,
        )?;
        // Row by row: one that cannot be decoded must not keep the others from being driven.
        let mut claimed = Claimed {
            taken_over,
            ..Claimed::default()
        };
        for row in rows {
            let id = SagaId(row.id);
            match row.into_saga() {
                Ok(saga) => claimed.sagas.push(saga),
                Err(error) => claimed.undecodable.push(Undecodable { id, error }),
            }
        }
        Ok(claimed)
    }

    #[instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn parked_and_stuck(
        &self,
        stuck_after: Duration,
    ) -> Result<Vec<ParkedAndStuck>, StoreError> {
        let rows: Vec<(String, i64, i64)> = self.db(sqlx::query_as(&parked_and_stuck_sql())
            .bind(millis(stuck_after))
            .fetch_all(&self.pool)
            .await)?;
        Ok(rows
            .into_iter()
            .map(|(saga_type, parked, stuck)| ParkedAndStuck {
                saga_type,
                parked,
                stuck,
            })
            .collect())
    }

    #[instrument(level = "debug", skip_all, fields(saga_id = %id), err(level = "debug"))]
    async fn quarantine(
        &self,
        id: SagaId,
        owner: &Owner,
        error: &str,
        retry_after: Duration,
    ) -> Result<bool, StoreError> {
        // The error text goes into a jsonb column: no NUL, and short enough to read.
        let error: String = error.replace('\0', "").chars().take(1000).collect();
        let quarantined: Option<DateTime<Utc>> = self.control(
            sqlx::query_scalar(&format!(
                "WITH saga AS (
                    UPDATE sagas s SET owner = NULL, lease_until = NULL,
                                       next_attempt_at = now() + $3 * interval '1 millisecond'
                    WHERE {ACTIVE} AND s.id = $1 AND s.owner = $2
                    RETURNING s.id, s.next_attempt_at
                 ),
                 events AS (
                    INSERT INTO saga_events (saga_id, kind, detail)
                    SELECT saga.id, 'SAGA_QUARANTINED',
                           jsonb_build_object('kind', 'SAGA_QUARANTINED', 'owner', $2::text,
                                              'error', $4::text, 'retry_at', saga.next_attempt_at)
                    FROM saga
                 )
                 SELECT next_attempt_at FROM saga"
            ))
            .bind(id.0)
            .bind(&owner.name)
            .bind(millis(retry_after))
            .bind(&error)
            .fetch_optional(&self.control)
            .await,
        )?;
        Ok(quarantined.is_some())
    }

    async fn now(&self) -> Result<DateTime<Utc>, StoreError> {
        self.control(
            sqlx::query_scalar("SELECT now()")
                .fetch_one(&self.control)
                .await,
        )
    }

    #[instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn next_due(&self) -> Result<Option<Duration>, StoreError> {
        let seconds: Result<Option<f64>, _> = sqlx::query_scalar(&format!(
            "SELECT EXTRACT(EPOCH FROM min({DUE}) - now())::float8 FROM sagas s WHERE {ACTIVE}"
        ))
        .fetch_one(&self.control)
        .await;
        let seconds = self.control(seconds)?;
        // -infinity minus now is -infinity: due now.
        Ok(seconds.map(|s| Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::ZERO)))
    }

    #[instrument(level = "debug", skip_all, fields(sagas = ids.len()), err(level = "debug"))]
    async fn renew(&self, owner: &Owner, ids: &[SagaId]) -> Result<Vec<SagaId>, StoreError> {
        let ids: Vec<uuid::Uuid> = ids.iter().map(|id| id.0).collect();
        let renewed: Result<Vec<(uuid::Uuid,)>, _> = sqlx::query_as(&format!(
            "UPDATE sagas s SET lease_until = now() + $2 * interval '1 millisecond'
             WHERE {ACTIVE} AND s.owner = $1 AND s.id = ANY($3)
             RETURNING s.id"
        ))
        .bind(&owner.name)
        .bind(millis(owner.lease))
        .bind(ids)
        .fetch_all(&self.control)
        .await;
        Ok(self
            .db(renewed)?
            .into_iter()
            .map(|(id,)| SagaId(id))
            .collect())
    }

    #[instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn release(&self, owner: &Owner, ids: Option<&[SagaId]>) -> Result<u64, StoreError> {
        let ids: Option<Vec<uuid::Uuid>> = ids.map(|ids| ids.iter().map(|id| id.0).collect());
        let released = self
            .db(sqlx::query(&format!(
                "UPDATE sagas s SET owner = NULL, lease_until = NULL
                     WHERE {ACTIVE} AND s.owner = $1 AND ($2::uuid[] IS NULL OR s.id = ANY($2))"
            ))
            .bind(&owner.name)
            .bind(ids)
            .execute(&self.control)
            .await)?
            .rows_affected();
        if released > 0 {
            self.control(
                sqlx::query("SELECT pg_notify($1, '')")
                    .bind(WAKEUP_CHANNEL)
                    .execute(&self.control)
                    .await,
            )?;
        }
        Ok(released)
    }

    async fn listen(&self) -> Result<PgWakeups, StoreError> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(WAKEUP_CHANNEL).await?;
        Ok(PgWakeups { listener })
    }

    #[instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn purge_finished(&self, older_than: Duration, limit: u32) -> Result<u64, StoreError> {
        // Small batches, oldest first: each statement holds its row locks only briefly. There are no
        // foreign keys (see migrations): a saga's steps, events and labels are deleted in the statement
        // that deletes the saga, so none outlives it. Nothing adds a child row to a finished saga without
        // updating the saga row, which this statement has locked, so none can be added meanwhile.
        // Parked (FAILED) sagas are the dead-letter set: kept until an operator resolves them.
        let deleted = self.db(sqlx::query(
            "WITH doomed AS (
                    SELECT id FROM sagas
                    WHERE status IN ('COMPLETED', 'COMPENSATED')
                      AND finished_at < now() - $1 * interval '1 millisecond'
                    ORDER BY finished_at
                    LIMIT $2
                    FOR UPDATE SKIP LOCKED
                 ),
                 doomed_ids AS (SELECT ARRAY(SELECT id FROM doomed) AS ids),
                 steps AS (
                    DELETE FROM saga_steps c USING doomed_ids d WHERE c.saga_id = ANY(d.ids)
                 ),
                 events AS (
                    DELETE FROM saga_events c USING doomed_ids d WHERE c.saga_id = ANY(d.ids)
                 ),
                 labels AS (
                    DELETE FROM saga_labels c USING doomed_ids d WHERE c.saga_id = ANY(d.ids)
                 )
                 DELETE FROM sagas s USING doomed_ids d WHERE s.id = ANY(d.ids)",
        )
        .bind(millis(older_than))
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await)?;
        Ok(deleted.rows_affected())
    }

    #[instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn list(
        &self,
        filter: &ListFilter,
        before: Option<SagaId>,
        limit: u32,
    ) -> Result<Vec<SagaSummary>, StoreError> {
        let mut query = list_query("", filter, before, limit);
        let rows: Vec<SummaryRow> = self.db(query.build_query_as().fetch_all(&self.pool).await)?;
        rows.into_iter().map(SummaryRow::into_summary).collect()
    }

    #[instrument(level = "debug", skip_all, err(level = "debug"))]
    async fn stats(&self, query: &StatsQuery) -> Result<Stats, StoreError> {
        let mut tx = self.db(self.pool.begin().await)?;
        let until = self.db(stats::begin_snapshot(&mut tx).await)?;
        let stats = stats::read(&mut tx, query, until).await?;
        self.db(tx.commit().await)?;
        Ok(stats)
    }

    #[instrument(level = "debug", skip_all, fields(saga_id = %id), err(level = "debug"))]
    async fn history(&self, id: SagaId) -> Result<Option<Vec<RecordedEvent>>, StoreError> {
        let rows: Result<Vec<RecordedEventRow>, _> = sqlx::query_as(
            "SELECT id, detail, created_at FROM saga_events WHERE saga_id = $1 ORDER BY id",
        )
        .bind(id.0)
        .fetch_all(&self.pool)
        .await;
        let rows = self.db(rows)?;
        // Every saga has at least its SAGA_STARTED event, written in the same statement as the saga.
        if rows.is_empty() {
            return Ok(None);
        }
        rows.into_iter()
            .map(|row| row.into_event(id))
            .collect::<Result<_, _>>()
            .map(Some)
    }
}
