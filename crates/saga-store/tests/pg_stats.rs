//! `GetStats` in PostgreSQL: the numbers on a small data set whose answer is known, and the plans at a
//! million finished sagas (only the window, the active and the parked sagas are read, through indexes).

use std::time::Duration;

use saga_core::{FailureReason, SagaStatus, Stats, StatsQuery, Stuck};
use saga_store::{PgStore, SagaStore};
use saga_testkit::TestDatabase;
use serde_json::Value;

async fn store() -> (PgStore, TestDatabase) {
    let db = TestDatabase::create("saga_store_stats").await;
    let store = PgStore::connect(&db.url(), 2).await.expect("connect");
    store.migrate().await.expect("migrate");
    (store, db)
}

fn query(saga_type: Option<&str>, limit: u32) -> StatsQuery {
    StatsQuery {
        window: Duration::from_secs(3600),
        saga_type: saga_type.map(str::to_owned),
        stuck_after: Duration::from_secs(600),
        unclaimed_after: Duration::from_secs(60),
        limit,
    }
}

/// One saga row to insert; times are PostgreSQL intervals relative to now (`"-5 minutes"`).
#[derive(Clone, Copy)]
struct Row<'a> {
    saga_type: &'a str,
    status: &'a str,
    failure: Option<(&'a str, &'a str)>,
    created: &'a str,
    finished: Option<&'a str>,
    /// Owner and lease end.
    lease: Option<(&'a str, &'a str)>,
    next_attempt: Option<&'a str>,
    current_step: Option<i32>,
    /// Name, status and forward attempts of each step.
    steps: &'a [(&'a str, &'a str, i32)],
}

const PURCHASE: Row<'static> = Row {
    saga_type: "purchase_plan",
    status: "RUNNING",
    failure: None,
    created: "-1 minute",
    finished: None,
    lease: None,
    next_attempt: None,
    current_step: None,
    steps: &[],
};

const DEFINITION: &str = r#"{"steps": [{"name": "CREATE_ORDER"}, {"name": "ALLOCATE_DEVICE"},
                                       {"name": "ACTIVATE_ORDER"}]}"#;

/// Inserts `row` and its steps; returns its id.
async fn insert(store: &PgStore, row: Row<'_>) -> uuid::Uuid {
    let id: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO sagas (id, saga_type, definition_version, definition, status, failure_reason,
                            failure_message, state, current_step, created_at, updated_at,
                            finished_at, owner, lease_until, next_attempt_at)
         VALUES (gen_random_uuid(), $1, 1, $2::jsonb, $3, $4, $5, '{}', $6, now() + $7::interval,
                 now() + $7::interval, now() + $8::interval, $9, now() + $10::interval,
                 now() + $11::interval)
         RETURNING id",
    )
    .bind(row.saga_type)
    .bind(DEFINITION)
    .bind(row.status)
    .bind(row.failure.map(|f| f.0))
    .bind(row.failure.map(|f| f.1))
    .bind(row.current_step)
    .bind(row.created)
    .bind(row.finished)
    .bind(row.lease.map(|l| l.0))
    .bind(row.lease.map(|l| l.1))
    .bind(row.next_attempt)
    .fetch_one(store.pool())
    .await
    .expect("insert saga");
    for (index, (name, status, attempts)) in row.steps.iter().enumerate() {
        sqlx::query(
            "INSERT INTO saga_steps (saga_id, step_index, name, participant, status, attempts)
             VALUES ($1, $2, $3, 'billing', $4, $5)",
        )
        .bind(id)
        .bind(i32::try_from(index).expect("few steps"))
        .bind(name)
        .bind(status)
        .bind(attempts)
        .execute(store.pool())
        .await
        .expect("insert step");
    }
    id
}

/// `percentile_cont`: linear interpolation between the two values nearest to rank `p * (n - 1)`.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = p * (sorted.len() - 1) as f64;
    let (low, high) = (rank.floor() as usize, rank.ceil() as usize);
    sorted[low] + (sorted[high] - sorted[low]) * (rank - low as f64)
}

fn assert_seconds(actual: Duration, expected: f64, what: &str) {
    assert!(
        (actual.as_secs_f64() - expected).abs() < 0.001,
        "{what}: {actual:?}, expected {expected}s"
    );
}

/// The per-type counts of `stats` for `saga_type`, as a tuple: started, completed, compensated,
/// failed, running, compensating, parked.
fn counts(stats: &Stats, saga_type: &str) -> (u64, u64, u64, u64, u64, u64, u64) {
    let c = stats
        .by_type
        .iter()
        .find(|c| c.saga_type.as_deref() == Some(saga_type))
        .unwrap_or_else(|| panic!("{saga_type} in {stats:#?}"));
    (
        c.started,
        c.completed,
        c.compensated,
        c.failed,
        c.running,
        c.compensating,
        c.parked,
    )
}

#[tokio::test]
async fn stats_count_rate_and_time_the_window_and_name_failure_reasons_and_stuck_sagas() {
    let (store, _db) = store().await;
    // withdrawal: 100 completed in the window, taking 1 s to 100 s.
    sqlx::query(
        "INSERT INTO sagas (id, saga_type, definition_version, definition, status, state,
                            created_at, updated_at, finished_at)
         SELECT gen_random_uuid(), 'withdrawal', 1, '{}', 'COMPLETED', '{}',
                now() - interval '10 minutes' - i * interval '1 second', now(),
                now() - interval '10 minutes'
         FROM generate_series(1, 100) i",
    )
    .execute(store.pool())
    .await
    .expect("completed withdrawals");

    // purchase_plan: three refused at ALLOCATE_DEVICE (the latest 5 minutes ago), one timed out in
    // CREATE_ORDER, two parked at CREATE_ORDER's compensation, each taking 10 s.
    let refused_steps = [
        ("CREATE_ORDER", "COMPENSATED", 1),
        ("ALLOCATE_DEVICE", "FAILED", 1),
        ("ACTIVATE_ORDER", "SKIPPED", 0),
    ];
    let mut latest_refusal = None;
    for (minutes, ended) in [(5, "-5 minutes"), (6, "-6 minutes"), (7, "-7 minutes")] {
        let created = format!("-{minutes} minutes -10 seconds");
        let message = format!("ALLOCATE_DEVICE refused: out of stock ({minutes})");
        let id = insert(
            &store,
            Row {
                status: "COMPENSATED",
                failure: Some(("STEP_FAILED", &message)),
                created: &created,
                finished: Some(ended),
                steps: &refused_steps,
                ..PURCHASE
            },
        )
        .await;
        latest_refusal.get_or_insert(id);
    }
    insert(
        &store,
        Row {
            status: "COMPENSATED",
            failure: Some(("TIMED_OUT", "saga did not finish within its 5m timeout")),
            created: "-8 minutes -10 seconds",
            finished: Some("-8 minutes"),
            steps: &[
                ("CREATE_ORDER", "COMPENSATED", 2),
                ("ALLOCATE_DEVICE", "SKIPPED", 0),
                ("ACTIVATE_ORDER", "SKIPPED", 0),
            ],
            ..PURCHASE
        },
    )
    .await;
    let parked_steps = [
        ("CREATE_ORDER", "COMPENSATING", 1),
        ("ALLOCATE_DEVICE", "FAILED", 1),
        ("ACTIVATE_ORDER", "SKIPPED", 0),
    ];
    let parked = Row {
        status: "FAILED",
        failure: Some((
            "COMPENSATION_FAILED",
            "compensation of CREATE_ORDER failed after 20 attempts: unavailable",
        )),
        created: "-3 minutes -10 seconds",
        finished: Some("-3 minutes"),
        steps: &parked_steps,
        ..PURCHASE
    };
    insert(&store, parked).await;
    insert(&store, parked).await;
    // Finished two days ago: outside the window, but a parked one still counts as parked.
    let old = Row {
        created: "-2 days",
        finished: Some("-2 days"),
        ..parked
    };
    insert(&store, old).await;
    insert(
        &store,
        Row {
            status: "COMPLETED",
            failure: None,
            ..old
        },
    )
    .await;

    // Active: a fresh one, one leased to a live owner for 30 minutes (running too long), one whose
    // owner died 2 minutes ago (unclaimed), one whose lease ran out 10 s ago (not stuck yet), one
    // compensating since 2 hours, waiting for its retry (running too long; started before the window).
    let live = Some(("live", "1 minute"));
    insert(
        &store,
        Row {
            lease: live,
            current_step: Some(0),
            ..PURCHASE
        },
    )
    .await;
    let long = insert(
        &store,
        Row {
            created: "-30 minutes",
            lease: live,
            current_step: Some(1),
            ..PURCHASE
        },
    )
    .await;
    let unclaimed = insert(
        &store,
        Row {
            created: "-3 minutes",
            lease: Some(("dead", "-2 minutes")),
            current_step: Some(2),
            ..PURCHASE
        },
    )
    .await;
    insert(
        &store,
        Row {
            created: "-3 minutes",
            lease: Some(("dead", "-10 seconds")),
            current_step: Some(2),
            ..PURCHASE
        },
    )
    .await;
    let compensating = insert(
        &store,
        Row {
            status: "COMPENSATING",
            failure: Some(("STEP_FAILED", "ALLOCATE_DEVICE refused: out of stock")),
            created: "-2 hours",
            next_attempt: Some("1 minute"),
            current_step: Some(0),
            ..PURCHASE
        },
    )
    .await;

    let stats = store.stats(&query(None, 10)).await.expect("stats");
    assert_eq!(
        stats.until - stats.since,
        chrono::TimeDelta::hours(1),
        "{stats:#?}"
    );
    assert_eq!(counts(&stats, "withdrawal"), (100, 100, 0, 0, 0, 0, 0));
    assert_eq!(counts(&stats, "purchase_plan"), (10, 0, 4, 2, 4, 1, 3));
    assert_eq!(stats.by_type.len(), 2);
    let total = &stats.total;
    assert_eq!(
        (
            total.saga_type.as_deref(),
            total.started,
            total.completed,
            total.compensated,
            total.failed,
            total.running,
            total.compensating,
            total.parked
        ),
        (None, 110, 100, 4, 2, 4, 1, 3)
    );
    assert!((total.success_rate() - 100.0 / 106.0).abs() < 1e-12);
    assert!((total.compensation_rate() - 4.0 / 106.0).abs() < 1e-12);
    assert!((total.failure_rate() - 2.0 / 106.0).abs() < 1e-12);

    // Percentiles: withdrawal's alone, and over both types (six 10 s sagas among 1..100 s).
    let withdrawal = stats
        .by_type
        .iter()
        .find(|c| c.saga_type.as_deref() == Some("withdrawal"));
    let p = withdrawal.and_then(|c| c.durations).expect("durations");
    assert_seconds(p.p50, 50.5, "withdrawal p50");
    assert_seconds(p.p95, 95.05, "withdrawal p95");
    assert_seconds(p.p99, 99.01, "withdrawal p99");
    let mut all: Vec<f64> = (1..=100).map(f64::from).chain([10.0; 6]).collect();
    all.sort_by(f64::total_cmp);
    let p = total.durations.expect("durations");
    assert_seconds(p.p50, percentile(&all, 0.5), "p50");
    assert_seconds(p.p95, percentile(&all, 0.95), "p95");
    assert_seconds(p.p99, percentile(&all, 0.99), "p99");

    let reasons: Vec<(&str, FailureReason, Option<&str>, u64)> = stats
        .failure_reasons
        .iter()
        .map(|r| (r.saga_type.as_str(), r.reason, r.step.as_deref(), r.count))
        .collect();
    assert_eq!(
        reasons,
        [
            (
                "purchase_plan",
                FailureReason::StepFailed,
                Some("ALLOCATE_DEVICE"),
                3
            ),
            (
                "purchase_plan",
                FailureReason::CompensationFailed,
                Some("CREATE_ORDER"),
                2
            ),
            (
                "purchase_plan",
                FailureReason::TimedOut,
                Some("CREATE_ORDER"),
                1
            ),
        ]
    );
    let refusals = &stats.failure_reasons[0];
    assert_eq!(
        refusals.sample_error, "ALLOCATE_DEVICE refused: out of stock (5)",
        "the latest"
    );
    assert_eq!(Some(refusals.sample_saga_id.0), latest_refusal);

    let stuck: Vec<(uuid::Uuid, SagaStatus, Option<&str>, bool)> = stats
        .stuck
        .iter()
        .map(|s| {
            let unclaimed = matches!(s.why, Stuck::Unclaimed { .. });
            (s.id.0, s.status, s.current_step.as_deref(), unclaimed)
        })
        .collect();
    assert_eq!(
        stuck,
        [
            (unclaimed, SagaStatus::Running, Some("ACTIVATE_ORDER"), true),
            (
                compensating,
                SagaStatus::Compensating,
                Some("CREATE_ORDER"),
                false
            ),
            (long, SagaStatus::Running, Some("ALLOCATE_DEVICE"), false),
        ],
        "unclaimed first, then oldest first"
    );
    assert_eq!(stats.stuck_count, 3);
    let Stuck::Unclaimed { since } = stats.stuck[0].why else {
        unreachable!()
    };
    // The lease's end: 2 minutes before the insert, a moment before the stats were read.
    let before_read = stats.until - chrono::TimeDelta::minutes(2) - since;
    assert!(
        before_read >= chrono::TimeDelta::zero() && before_read < chrono::TimeDelta::seconds(10),
        "{since} against {}",
        stats.until
    );
    assert_eq!(stats.stuck[0].owner.as_deref(), Some("dead"));

    // The limit bounds both lists, not the count; a type filter keeps to its type.
    let limited = store.stats(&query(None, 1)).await.expect("stats");
    assert_eq!(
        (
            limited.failure_reasons.len(),
            limited.stuck.len(),
            limited.stuck_count
        ),
        (1, 1, 3)
    );
    assert_eq!(limited.stuck[0].id.0, unclaimed);
    let withdrawals = store
        .stats(&query(Some("withdrawal"), 10))
        .await
        .expect("stats");
    assert_eq!(withdrawals.by_type.len(), 1);
    assert_eq!(
        counts(&withdrawals, "withdrawal"),
        (100, 100, 0, 0, 0, 0, 0)
    );
    assert_eq!(
        withdrawals.total.durations,
        withdrawal.and_then(|c| c.durations)
    );
    assert!(withdrawals.failure_reasons.is_empty() && withdrawals.stuck.is_empty());
    assert_eq!(withdrawals.stuck_count, 0);

    // Longer thresholds: nothing is stuck; a longer window takes in what finished two days ago.
    let patient = StatsQuery {
        stuck_after: Duration::from_secs(3 * 3600),
        unclaimed_after: Duration::from_secs(600),
        window: Duration::from_secs(3 * 86_400),
        ..query(None, 10)
    };
    let patient = store.stats(&patient).await.expect("stats");
    assert_eq!(patient.stuck_count, 0, "{patient:#?}");
    assert_eq!(counts(&patient, "purchase_plan"), (13, 1, 4, 3, 4, 1, 3));
}

/// Every node of `plan` (an `EXPLAIN (ANALYZE, FORMAT JSON)` plan tree), depth first.
fn nodes(plan: &Value) -> Vec<&Value> {
    let mut found = vec![plan];
    if let Some(children) = plan["Plans"].as_array() {
        for child in children {
            found.extend(nodes(child));
        }
    }
    found
}

/// How many rows `node` read: those it returned and those it threw away, over all its loops.
fn rows_read(node: &Value) -> u64 {
    let count = |key: &str| node[key].as_f64().unwrap_or(0.0);
    let per_loop = count("Actual Rows")
        + count("Rows Removed by Filter")
        + count("Rows Removed by Index Recheck");
    (per_loop * count("Actual Loops").max(1.0)) as u64
}

#[tokio::test]
async fn with_a_million_finished_sagas_stats_read_only_the_window_the_active_and_the_parked_ones() {
    let (store, _db) = store().await;
    let started = std::time::Instant::now();
    // A million sagas that finished before the window, one every 2 s over 23 days, 1 % compensated,
    // with ids in time order as sagad's UUIDv7 ids are (and quick to index);
    // then, in the window, 2,000 finished (1 % compensated, 20 parked) with their steps; 100 parked
    // before the window; 500 active.
    sqlx::raw_sql(
        "INSERT INTO sagas (id, saga_type, definition_version, definition, status, failure_reason,
                            failure_message, state, created_at, updated_at, finished_at)
         SELECT ('00000000-0000-7000-8000-' || lpad(to_hex(i), 12, '0'))::uuid,
                CASE WHEN i % 2 = 0 THEN 'purchase_plan' ELSE 'withdrawal' END,
                1, '{}', CASE WHEN i % 100 = 0 THEN 'COMPENSATED' ELSE 'COMPLETED' END,
                CASE WHEN i % 100 = 0 THEN 'STEP_FAILED' END,
                CASE WHEN i % 100 = 0 THEN 'ALLOCATE_DEVICE refused: out of stock' END,
                '{}', t - interval '5 seconds', t, t
         FROM generate_series(1, 1000000) i,
              LATERAL (SELECT now() - interval '1 hour' - (1000000 - i) * interval '2 seconds' AS t) finished;
         INSERT INTO sagas (id, saga_type, definition_version, definition, status, failure_reason,
                            failure_message, state, created_at, updated_at, finished_at)
         SELECT gen_random_uuid(), 'purchase_plan', 1, '{}',
                CASE WHEN i % 100 = 0 THEN 'FAILED'
                     WHEN i % 100 = 1 THEN 'COMPENSATED' ELSE 'COMPLETED' END,
                CASE WHEN i % 100 = 0 THEN 'COMPENSATION_FAILED'
                     WHEN i % 100 = 1 THEN 'STEP_FAILED' END,
                CASE WHEN i % 100 IN (0, 1) THEN 'refused' END,
                '{}', t - interval '5 seconds', t, t
         FROM generate_series(1, 2000) i,
              LATERAL (SELECT now() - i * interval '1 second' AS t) finished;
         INSERT INTO saga_steps (saga_id, step_index, name, participant, status, attempts)
         SELECT id, n, 'STEP_' || n, 'billing', 'SUCCEEDED', 1
         FROM sagas, generate_series(0, 2) n WHERE finished_at > now() - interval '1 hour';
         INSERT INTO sagas (id, saga_type, definition_version, definition, status, failure_reason,
                            failure_message, state, created_at, updated_at, finished_at)
         SELECT gen_random_uuid(), 'withdrawal', 1, '{}', 'FAILED', 'FORWARD_FAILED', 'bank down',
                '{}', now() - interval '3 days', now(), now() - interval '3 days'
         FROM generate_series(1, 100);
         INSERT INTO sagas (id, saga_type, definition_version, definition, status, state,
                            created_at, updated_at, owner, lease_until, epoch)
         SELECT gen_random_uuid(), 'purchase_plan', 1, '{}', 'RUNNING', '{}', now(), now(),
                'busy', now() + interval '1 hour', 1
         FROM generate_series(1, 500);
         ANALYZE sagas; ANALYZE saga_steps;",
    )
    .execute(store.pool())
    .await
    .expect("a million finished sagas");
    println!("1,002,600 sagas inserted in {:?}", started.elapsed());

    for saga_type in [None, Some("purchase_plan")] {
        let query = query(saga_type, 10);
        let plans = store.explain_stats(&query).await.expect("explain");
        assert_eq!(plans.len(), 4);
        for (name, plan) in &plans {
            println!("{name} ({saga_type:?}):\n{plan:#}");
            let root = &plan[0]["Plan"];
            let on_sagas: Vec<&Value> = nodes(root)
                .into_iter()
                .filter(|node| node["Relation Name"] == "sagas")
                .collect();
            assert!(!on_sagas.is_empty(), "{name} reads sagas: {plan:#}");
            for node in nodes(root) {
                if node["Relation Name"] == "saga_steps" {
                    assert_ne!(node["Node Type"], "Seq Scan", "{name}: {plan:#}");
                }
            }
            for node in on_sagas {
                assert_ne!(node["Node Type"], "Seq Scan", "{name}: {plan:#}");
                // The window holds 2,000 finished sagas, 500 are active and 120 parked: reading
                // 10,000 rows would already be a scan of something else.
                assert!(
                    rows_read(node) <= 10_000,
                    "{name} reads {} rows at {}: {plan:#}",
                    rows_read(node),
                    node["Node Type"]
                );
            }
        }
        let stats = store.stats(&query).await.expect("stats");
        let purchases = stats
            .by_type
            .iter()
            .find(|c| c.saga_type.as_deref() == Some("purchase_plan"))
            .expect("purchase_plan");
        assert_eq!(
            (
                purchases.completed,
                purchases.compensated,
                purchases.failed,
                purchases.running,
                purchases.parked
            ),
            (1960, 20, 20, 500, 20)
        );
        assert_eq!(
            stats.total.parked,
            if saga_type.is_some() { 20 } else { 120 }
        );
    }
}
