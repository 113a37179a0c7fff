//! `GetStats` in PostgreSQL. Each statement reads only what it must, through an index: the sagas that
//! finished in the window (completed and compensated ones by finish time through `sagas_finished`, the
//! parked set through `sagas_by_status`), the active sagas and the parked ones; never the finished
//! history before the window. All run in one read-only `REPEATABLE READ` transaction, so the numbers are
//! of one snapshot and agree with each other.
//!
//! Every statement takes the same parameters: `$1` the window's start, `$2` the saga type (referenced
//! only when the query names one, so that each case gets a plan of its own), `$3` the creation time
//! before which an active saga is stuck, `$4` the claimable time before which an unclaimed one is, `$5`
//! the limit.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use saga_core::{Counts, FailureCount, Percentiles, SagaId, Stats, StatsQuery, Stuck, StuckSaga};
use sqlx::{FromRow, PgConnection, Postgres};

use crate::StoreError;

/// The statements, by name (the name says which part of [`Stats`] each fills).
pub(crate) const STATEMENTS: [(&str, &str); 4] = [
    ("finished", FINISHED),
    ("open", OPEN),
    ("failure_reasons", FAILURE_REASONS),
    ("stuck", STUCK),
];

/// The sagas that finished in the window (columns `{COLUMNS}`): two index range scans, because the
/// parked set is kept out of `sagas_finished` (retention never reads it) and found by status instead.
const FINISHED_IN_WINDOW: &str = "
    SELECT {COLUMNS} FROM sagas s
    WHERE s.status IN ('COMPLETED', 'COMPENSATED') AND s.finished_at >= $1 {TYPE}
    UNION ALL
    SELECT {COLUMNS} FROM sagas s
    WHERE s.status = 'FAILED' AND s.finished_at >= $1 {TYPE}";

/// Per type and in total (`GROUPING SETS`: percentiles do not add up), the window's finished sagas by
/// outcome, how many of them started in the window, and their duration percentiles in seconds.
const FINISHED: &str = "
    WITH finished AS ({FINISHED_IN_WINDOW})
    SELECT GROUPING(saga_type) = 1 AS total, saga_type,
           count(*) FILTER (WHERE created_at >= $1) AS started,
           count(*) FILTER (WHERE status = 'COMPLETED') AS completed,
           count(*) FILTER (WHERE status = 'COMPENSATED') AS compensated,
           count(*) FILTER (WHERE status = 'FAILED') AS failed,
           percentile_cont(ARRAY[0.5, 0.95, 0.99]::float8[]) WITHIN GROUP
               (ORDER BY EXTRACT(EPOCH FROM finished_at - created_at)::float8) AS durations
    FROM finished
    GROUP BY GROUPING SETS ((saga_type), ())";

/// Per type, the sagas that are not finished for good: active ones (and how many of them started in
/// the window) and parked ones.
const OPEN: &str = "
    SELECT s.saga_type,
           count(*) FILTER (WHERE s.status IN ('RUNNING', 'COMPENSATING') AND s.created_at >= $1)
               AS started,
           count(*) FILTER (WHERE s.status = 'RUNNING') AS running,
           count(*) FILTER (WHERE s.status = 'COMPENSATING') AS compensating,
           count(*) FILTER (WHERE s.status = 'FAILED') AS parked
    FROM sagas s
    WHERE s.status IN ('RUNNING', 'COMPENSATING', 'FAILED') {TYPE}
    GROUP BY s.saga_type";

/// The window's compensated and parked sagas grouped by type, reason and the step they failed at: the
/// step whose compensation could not be done (the only one left `COMPENSATING` in a finished saga),
/// else the last step attempted (steps run in order). Each saga's steps are read by primary key.
const FAILURE_REASONS: &str = "
    WITH failed AS ({FINISHED_IN_WINDOW})
    SELECT f.saga_type, f.failure_reason, step.name AS step, count(*) AS count,
           (array_agg(f.failure_message ORDER BY f.finished_at DESC, f.id DESC))[1] AS sample_error,
           (array_agg(f.id ORDER BY f.finished_at DESC, f.id DESC))[1] AS sample_id,
           max(f.finished_at) AS last_finished_at
    FROM failed f
    LEFT JOIN LATERAL (
        SELECT st.name FROM saga_steps st
        WHERE st.saga_id = f.id AND (st.attempts > 0 OR st.status = 'COMPENSATING')
        ORDER BY st.status = 'COMPENSATING' DESC, st.step_index DESC
        LIMIT 1
    ) step ON true
    WHERE f.status <> 'COMPLETED' AND f.failure_reason IS NOT NULL
    GROUP BY f.saga_type, f.failure_reason, step.name
    ORDER BY count DESC, last_finished_at DESC
    LIMIT $5";

/// Since when an active saga could have been claimed: its lease and its retry time both passed (the
/// recovery loop's due time); for a saga with neither (released at shutdown), its last change.
const CLAIMABLE_SINCE: &str = "COALESCE(GREATEST(s.lease_until, s.next_attempt_at), s.updated_at)";

/// The active sagas started before `$3` or claimable since before `$4`, unclaimed ones first, then
/// oldest first, with how many there are in all.
const STUCK: &str = "
    SELECT s.id, s.saga_type, s.status, s.definition->'steps'->s.current_step->>'name' AS current_step,
           s.created_at, s.owner,
           CASE WHEN {CLAIMABLE_SINCE} < $4 THEN {CLAIMABLE_SINCE} END AS unclaimed_since,
           count(*) OVER () AS stuck_count
    FROM sagas s
    WHERE s.status IN ('RUNNING', 'COMPENSATING') {TYPE}
      AND (s.created_at < $3 OR {CLAIMABLE_SINCE} < $4)
    ORDER BY {CLAIMABLE_SINCE} < $4 DESC, s.created_at, s.id
    LIMIT $5";

/// The bound parameters of every statement.
struct Parameters<'a> {
    since: DateTime<Utc>,
    saga_type: Option<&'a str>,
    stuck_before: DateTime<Utc>,
    unclaimed_before: DateTime<Utc>,
    limit: i64,
}

impl<'a> Parameters<'a> {
    fn new(query: &'a StatsQuery, until: DateTime<Utc>) -> Self {
        Self {
            since: until - delta(query.window),
            saga_type: query.saga_type.as_deref(),
            stuck_before: until - delta(query.stuck_after),
            unclaimed_before: until - delta(query.unclaimed_after),
            limit: i64::from(query.limit),
        }
    }

    fn bind<'q, O>(
        &self,
        query: sqlx::query::QueryAs<'q, Postgres, O, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::QueryAs<'q, Postgres, O, sqlx::postgres::PgArguments>
    where
        'a: 'q,
    {
        query
            .bind(self.since)
            .bind(self.saga_type)
            .bind(self.stuck_before)
            .bind(self.unclaimed_before)
            .bind(self.limit)
    }
}

/// `duration` as a chrono delta; windows are bounded far below where the conversion could saturate.
fn delta(duration: Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}

/// The statement `sql` with the query's type filter (or none) and the shared fragments written in.
pub(crate) fn statement(sql: &str, query: &StatsQuery) -> String {
    let type_filter = match query.saga_type {
        Some(_) => "AND s.saga_type = $2",
        None => "",
    };
    sql.replace("{FINISHED_IN_WINDOW}", FINISHED_IN_WINDOW)
        .replace("{COLUMNS}", COLUMNS)
        .replace("{CLAIMABLE_SINCE}", CLAIMABLE_SINCE)
        .replace("{TYPE}", type_filter)
}

/// The columns [`FINISHED_IN_WINDOW`] reads of each saga.
const COLUMNS: &str = "s.id, s.saga_type, s.status, s.failure_reason, s.failure_message, \
                       s.created_at, s.finished_at";

/// Starts the read-only snapshot the statistics are read from, and returns its clock.
pub(crate) async fn begin_snapshot(conn: &mut PgConnection) -> Result<DateTime<Utc>, sqlx::Error> {
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *conn)
        .await?;
    // now() is the transaction's start, the same in every statement below.
    sqlx::query_scalar("SELECT now()").fetch_one(conn).await
}

/// Runs `EXPLAIN (ANALYZE, FORMAT JSON)` of every statement (inside a snapshot begun by
/// [`begin_snapshot`]): each plan with the rows its nodes actually read.
pub(crate) async fn explain(
    conn: &mut PgConnection,
    query: &StatsQuery,
    until: DateTime<Utc>,
) -> Result<Vec<(&'static str, serde_json::Value)>, sqlx::Error> {
    let parameters = Parameters::new(query, until);
    let mut plans = Vec::with_capacity(STATEMENTS.len());
    for (name, sql) in STATEMENTS {
        let explain = format!("EXPLAIN (ANALYZE, FORMAT JSON) {}", statement(sql, query));
        let (plan,): (serde_json::Value,) = parameters
            .bind(sqlx::query_as(&explain))
            .fetch_one(&mut *conn)
            .await?;
        plans.push((name, plan));
    }
    Ok(plans)
}

#[derive(FromRow)]
struct FinishedRow {
    total: bool,
    saga_type: Option<String>,
    started: i64,
    completed: i64,
    compensated: i64,
    failed: i64,
    /// Seconds at the 50th, 95th and 99th percentile; NULL without rows.
    durations: Option<Vec<f64>>,
}

#[derive(FromRow)]
struct OpenRow {
    saga_type: String,
    started: i64,
    running: i64,
    compensating: i64,
    parked: i64,
}

#[derive(FromRow)]
struct ReasonRow {
    saga_type: String,
    failure_reason: String,
    step: Option<String>,
    count: i64,
    sample_error: Option<String>,
    sample_id: uuid::Uuid,
    last_finished_at: DateTime<Utc>,
}

#[derive(FromRow)]
struct StuckRow {
    id: uuid::Uuid,
    saga_type: String,
    status: String,
    current_step: Option<String>,
    created_at: DateTime<Utc>,
    owner: Option<String>,
    unclaimed_since: Option<DateTime<Utc>>,
    stuck_count: i64,
}

/// Reads the statistics (inside a snapshot begun by [`begin_snapshot`], whose clock is `until`).
pub(crate) async fn read(
    conn: &mut PgConnection,
    query: &StatsQuery,
    until: DateTime<Utc>,
) -> Result<Stats, StoreError> {
    let parameters = Parameters::new(query, until);
    let finished: Vec<FinishedRow> = parameters
        .bind(sqlx::query_as(&statement(FINISHED, query)))
        .fetch_all(&mut *conn)
        .await?;
    let open: Vec<OpenRow> = parameters
        .bind(sqlx::query_as(&statement(OPEN, query)))
        .fetch_all(&mut *conn)
        .await?;
    let reasons: Vec<ReasonRow> = parameters
        .bind(sqlx::query_as(&statement(FAILURE_REASONS, query)))
        .fetch_all(&mut *conn)
        .await?;
    let stuck: Vec<StuckRow> = parameters
        .bind(sqlx::query_as(&statement(STUCK, query)))
        .fetch_all(&mut *conn)
        .await?;

    let mut total = Counts::default();
    let mut by_type: BTreeMap<String, Counts> = BTreeMap::new();
    for row in finished {
        let durations = row.durations.as_deref().and_then(percentiles);
        match (row.total, row.saga_type) {
            (true, _) => total.durations = durations,
            (false, Some(saga_type)) => {
                let counts = counts_of(&mut by_type, saga_type);
                counts.started += count(row.started);
                counts.completed = count(row.completed);
                counts.compensated = count(row.compensated);
                counts.failed = count(row.failed);
                counts.durations = durations;
            }
            // saga_type is NOT NULL: only the grand total has none.
            (false, None) => {}
        }
    }
    for row in open {
        let counts = counts_of(&mut by_type, row.saga_type);
        counts.started += count(row.started);
        counts.running = count(row.running);
        counts.compensating = count(row.compensating);
        counts.parked = count(row.parked);
    }
    for counts in by_type.values() {
        total.add_counts(counts);
    }

    let failure_reasons = reasons
        .into_iter()
        .map(|row| {
            let saga_id = SagaId(row.sample_id);
            Ok(FailureCount {
                saga_type: row.saga_type,
                reason: row
                    .failure_reason
                    .parse()
                    .map_err(|e| StoreError::Corrupt {
                        saga_id,
                        message: format!("{e}"),
                    })?,
                step: row.step,
                count: count(row.count),
                sample_error: row.sample_error.unwrap_or_default(),
                sample_saga_id: saga_id,
                last_finished_at: row.last_finished_at,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let stuck_count = stuck.first().map_or(0, |row| count(row.stuck_count));
    let stuck = stuck
        .into_iter()
        .map(|row| {
            let saga_id = SagaId(row.id);
            Ok(StuckSaga {
                id: saga_id,
                saga_type: row.saga_type,
                status: row.status.parse().map_err(|e| StoreError::Corrupt {
                    saga_id,
                    message: format!("{e}"),
                })?,
                current_step: row.current_step,
                created_at: row.created_at,
                owner: row.owner,
                why: match row.unclaimed_since {
                    Some(since) => Stuck::Unclaimed { since },
                    None => Stuck::RunningTooLong,
                },
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;

    Ok(Stats {
        since: parameters.since,
        until,
        total,
        by_type: by_type.into_values().collect(),
        failure_reasons,
        stuck,
        stuck_count,
    })
}

/// The counts of `saga_type`, new ones at zero.
fn counts_of(by_type: &mut BTreeMap<String, Counts>, saga_type: String) -> &mut Counts {
    by_type.entry(saga_type.clone()).or_insert_with(|| Counts {
        saga_type: Some(saga_type),
        ..Counts::default()
    })
}

/// A SQL count (never negative) as a `u64`.
fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or_default()
}

/// The 50th, 95th and 99th percentile, in seconds, as durations.
fn percentiles(seconds: &[f64]) -> Option<Percentiles> {
    let duration = |s: f64| Duration::try_from_secs_f64(s.max(0.0)).unwrap_or_default();
    match seconds {
        [p50, p95, p99] => Some(Percentiles {
            p50: duration(*p50),
            p95: duration(*p95),
            p99: duration(*p99),
        }),
        _ => None,
    }
}
