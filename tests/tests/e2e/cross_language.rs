//! End to end across languages: `loyalty_purchase` sagas (tests/definitions) whose steps are served by the
//! Rust demo participants (billing, payment) and by the TypeScript SDK's loyalty example under node, with
//! lost answers on both sides, refusals that compensate across both, and a sagad replica SIGKILLed while
//! it holds sagas whose TypeScript step is in flight. At the end every saga has the outcome its faults
//! call for and both participants' rows agree with it: one award, one order, one payment per saga, every
//! effect of a compensated saga undone, no point or cent counted twice.
//!
//! The TypeScript participant starts first on the database the two participants share, so the Rust one
//! must accept the barrier table and migration records the TypeScript SDK wrote.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use e2e_tests::definitions::test_only_dir;
use e2e_tests::{
    active_sagas_owned_by, start_loyalty, start_participants, start_saga, start_sagad,
    wait_terminal, watch_until,
};
use saga_proto::v1::SagaStatus;
use saga_proto::v1::saga_coordinator_client::SagaCoordinatorClient;
use saga_testkit::TestDatabase;
use serde_json::{Value, json};
use sqlx::PgPool;
use tonic::transport::Channel;
use uuid::Uuid;

const SAGAS: usize = 30;
/// Points the loyalty example awards for the `pro` plan (2999 cents): one per whole unit.
const PRO_POINTS: i64 = 29;

/// Saga `i`'s faults, and whether they make it compensate.
fn faults(i: usize) -> (Value, bool) {
    match i % 5 {
        // In flight at the TypeScript participant when the replica driving it is killed.
        0 => (json!({"AWARD_POINTS": "delay:1500ms"}), false),
        // The award's answer is lost once: the retry must get the first answer from the TS barrier.
        1 => (json!({"AWARD_POINTS": "apply-then-fail:1"}), false),
        // Payment refuses: the order is cancelled (Rust) and the points revoked (TS), whose first
        // compensation attempt fails.
        2 => (
            json!({"PROCESS_PAYMENT": "refuse", "AWARD_POINTS:compensate": "unavailable:1"}),
            true,
        ),
        // Lost answers on both sides.
        3 => (
            json!({"AWARD_POINTS": "apply-then-fail:2", "PROCESS_PAYMENT": "apply-then-fail:1"}),
            false,
        ),
        _ => (json!({}), false),
    }
}

async fn client(addr: &str) -> SagaCoordinatorClient<Channel> {
    SagaCoordinatorClient::connect(format!("http://{addr}"))
        .await
        .expect("connect")
}

async fn rows<T>(pool: &PgPool, sql: &str) -> Vec<T>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> + Send + Unpin,
{
    sqlx::query_as(sql).fetch_all(pool).await.expect(sql)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saga_across_rust_and_typescript_participants_survives_lost_answers_and_a_replica_kill() {
    let participants_db = TestDatabase::create("cross_language_participants").await;
    let saga_db = TestDatabase::create("cross_language_sagas").await;
    let (loyalty, loyalty_endpoint) = start_loyalty(&participants_db.url()).await;
    let (demo, mut participants) = start_participants(&participants_db.url(), "error").await;
    participants.insert("loyalty".to_owned(), loyalty_endpoint);

    let replica_env = [
        ("SAGAD_LEASE", "2s".to_owned()),
        ("SAGAD_RECOVERY_INTERVAL", "200ms".to_owned()),
        // Faults are injected by the dozen: errors only.
        ("RUST_LOG", "error".to_owned()),
    ];
    let definitions = test_only_dir();
    let (a, a_addr) = start_sagad(&saga_db.url(), &definitions, &participants, &replica_env).await;
    let (b, b_addr) = start_sagad(&saga_db.url(), &definitions, &participants, &replica_env).await;

    // Every saga starts on A.
    let mut a_client = client(&a_addr).await;
    let mut sagas: BTreeMap<usize, (Uuid, bool)> = BTreeMap::new();
    for i in 0..SAGAS {
        let (faults, compensates) = faults(i);
        let payload = json!({"userId": format!("x{i}"), "planId": "pro", "faults": faults});
        let started = start_saga(&mut a_client, "loyalty_purchase", payload).await;
        sagas.insert(i, (started.parse().expect("uuid"), compensates));
    }

    // Kill A while the last delayed award is in flight at the TypeScript participant.
    let last_delayed = sagas[&(SAGAS - 5)].0.to_string();
    watch_until(&mut a_client, &last_delayed, |saga| {
        saga.current_step == "AWARD_POINTS"
    })
    .await;
    let pid = a.pid();
    a.kill().await;
    let killed_at: DateTime<Utc> = Utc::now();
    let saga_log = PgPool::connect(&saga_db.url()).await.expect("saga log");
    let held = active_sagas_owned_by(&saga_log, pid).await;
    println!("killed replica A (pid {pid}) holding {} sagas", held.len());
    assert!(
        held.contains(&last_delayed.parse().expect("uuid")),
        "the kill must hit a saga mid-step"
    );

    // B finishes every saga, each with the outcome its faults call for.
    let mut b_client = client(&b_addr).await;
    for (i, (id, compensates)) in &sagas {
        let saga = wait_terminal(&mut b_client, &id.to_string()).await;
        let expected = if *compensates {
            SagaStatus::Compensated
        } else {
            SagaStatus::Completed
        };
        assert_eq!(saga.status(), expected, "saga {i} ({id})");
    }
    for id in &held {
        let claimed: Option<DateTime<Utc>> = sqlx::query_scalar(
            "SELECT min(created_at) FROM saga_events
             WHERE saga_id = $1 AND kind = 'SAGA_CLAIMED' AND created_at > $2",
        )
        .bind(id)
        .bind(killed_at)
        .fetch_one(&saga_log)
        .await
        .expect("claim");
        assert!(
            claimed.is_some(),
            "saga {id} held by the killed replica was never claimed"
        );
    }

    // The TypeScript participant's rows: one award per saga, revoked exactly for the compensated ones,
    // and balances that count every point once.
    let pool = PgPool::connect(&participants_db.url())
        .await
        .expect("participants db");
    let awards: Vec<(Uuid, String, i64)> =
        rows(&pool, "SELECT saga_id, status, points FROM loyalty.awards").await;
    let balances: HashMap<String, i64> =
        rows(&pool, "SELECT user_id, points FROM loyalty.balances")
            .await
            .into_iter()
            .collect();
    let orders: Vec<(Uuid, String)> =
        rows(&pool, "SELECT saga_id, status FROM billing.orders").await;
    let payments: Vec<(Uuid, String)> =
        rows(&pool, "SELECT saga_id, status FROM payment.payments").await;
    assert_eq!(awards.len(), SAGAS, "one award per saga: {awards:?}");
    for (i, (id, compensates)) in &sagas {
        let of = |list: &[(Uuid, String)]| -> Vec<String> {
            list.iter()
                .filter(|row| row.0 == *id)
                .map(|row| row.1.clone())
                .collect()
        };
        let award: Vec<(String, i64)> = awards
            .iter()
            .filter(|row| row.0 == *id)
            .map(|row| (row.1.clone(), row.2))
            .collect();
        let balance = balances.get(&format!("x{i}")).copied().unwrap_or_default();
        if *compensates {
            assert_eq!(award, [("REVOKED".to_owned(), PRO_POINTS)], "saga {i}");
            assert_eq!(balance, 0, "saga {i}: points left after compensation");
            assert_eq!(of(&orders), ["CANCELLED"], "saga {i}");
            assert!(
                of(&payments).is_empty(),
                "saga {i}: refused payment charged"
            );
        } else {
            assert_eq!(award, [("AWARDED".to_owned(), PRO_POINTS)], "saga {i}");
            assert_eq!(balance, PRO_POINTS, "saga {i}: points counted once");
            assert_eq!(of(&orders), ["ACTIVE"], "saga {i}");
            assert_eq!(of(&payments), ["SUCCESS"], "saga {i}");
        }
    }

    // One barrier table for both languages; the duplicates each side absorbed.
    let barrier: Vec<(String, String, i64, i64)> = rows(
        &pool,
        "SELECT service, direction, count(*), sum(replays)::bigint FROM saga_barrier
         GROUP BY service, direction ORDER BY service, direction",
    )
    .await;
    println!("barrier rows (service, direction, rows, replays): {barrier:?}");
    let row = |service: &str, direction: &str| {
        barrier
            .iter()
            .find(|row| row.0 == service && row.1 == direction)
            .map(|row| (row.2, row.3))
            .unwrap_or_else(|| panic!("no {service} {direction} rows"))
    };
    let compensated = sagas
        .values()
        .filter(|(_, compensates)| *compensates)
        .count() as i64;
    let (loyalty_rows, loyalty_replays) = row("loyalty", "execute");
    assert_eq!(loyalty_rows, SAGAS as i64);
    // Six sagas lose one award answer, six lose two: each lost answer comes back as a replay.
    assert!(
        loyalty_replays >= 18,
        "{loyalty_replays} replays at the TypeScript participant"
    );
    assert_eq!(row("loyalty", "compensate").0, compensated);
    let (_, payment_replays) = row("payment", "execute");
    assert!(
        payment_replays >= 6,
        "{payment_replays} replays at the Rust payment participant"
    );
    assert_eq!(row("billing", "compensate").0, compensated);

    pool.close().await;
    saga_log.close().await;
    let status = b.terminate().await;
    assert!(status.success(), "sagad B exited with {status}");
    let status = loyalty.terminate().await;
    assert!(
        status.success(),
        "the TypeScript participant exited with {status}"
    );
    demo.terminate().await;
}
