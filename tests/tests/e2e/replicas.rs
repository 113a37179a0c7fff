//! Replicas and outages with real processes: a SIGTERMed replica hands its sagas to another at once
//! (not after its leases expire), and a saga log outage turns sagad NOT_SERVING, makes `StartSaga` fail
//! fast with UNAVAILABLE, and costs no saga once the database is back.

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use e2e_tests::definitions::{policy, purchase_plan_as, write_dir};
use e2e_tests::postgres::PrivatePostgres;
use e2e_tests::{object, start_participants, start_sagad, wait_terminal, watch_until};
use saga_proto::v1::saga_coordinator_client::SagaCoordinatorClient;
use saga_proto::v1::{SagaStatus, StartSagaRequest};
use saga_testkit::TestDatabase;
use serde_json::json;
use sqlx::PgPool;
use tonic::Code;
use tonic::Streaming;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

/// The shipped `purchase_plan` with retries one second apart: short enough to be held in memory by the
/// replica driving the saga (below the default `hold_wait` of 2 s).
fn definitions() -> tempfile::TempDir {
    write_dir(&[purchase_plan_as("purchase_plan", |d| {
        d.step_timeout = Duration::from_secs(5);
        d.retry = policy(5, 1000, 1.0, 1000, 0.0);
    })])
}

async fn client(addr: &str) -> SagaCoordinatorClient<Channel> {
    SagaCoordinatorClient::connect(format!("http://{addr}"))
        .await
        .expect("connect")
}

fn request(faults: serde_json::Value, key: &str) -> StartSagaRequest {
    StartSagaRequest {
        labels: Default::default(),
        saga_type: "purchase_plan".to_owned(),
        payload: Some(object(
            json!({"userId": "u1", "planId": "pro", "faults": faults}),
        )),
        idempotency_key: key.to_owned(),
        wait: None,
    }
}

/// Replica settings: leases and the recovery scan far longer than the handoff may take, so only the
/// released lease and its notification can explain a fast takeover.
fn slow_recovery() -> Vec<(&'static str, String)> {
    vec![
        ("SAGAD_LEASE", "30s".to_owned()),
        ("SAGAD_RECOVERY_INTERVAL", "30s".to_owned()),
    ]
}

async fn spawn(
    url: &str,
    definitions: &Path,
    participants: &std::collections::BTreeMap<String, String>,
    env: &[(&str, String)],
) -> (e2e_tests::Process, String) {
    start_sagad(url, definitions, participants, env).await
}

#[tokio::test]
async fn sigterm_hands_a_saga_mid_flight_to_another_replica_within_two_seconds() {
    let saga_db = TestDatabase::create("sagad_handoff").await;
    let demo_db = TestDatabase::create("sagad_handoff_demo").await;
    let (demo, participants) = start_participants(&demo_db.url(), "warn").await;
    let defs = definitions();
    let (a, a_addr) = spawn(&saga_db.url(), defs.path(), &participants, &slow_recovery()).await;
    let (b, b_addr) = spawn(&saga_db.url(), defs.path(), &participants, &slow_recovery()).await;

    // On A: PROCESS_PAYMENT fails twice, so A holds the saga through two 1 s retry waits.
    let mut a_client = client(&a_addr).await;
    let id = a_client
        .start_saga(request(json!({"PROCESS_PAYMENT": "unavailable:2"}), ""))
        .await
        .expect("start")
        .into_inner()
        .saga_id;
    watch_until(&mut a_client, &id, |saga| saga.steps[3].attempts == 1).await;

    let sigterm = Utc::now();
    let stopping = Instant::now();
    let status = a.terminate().await;
    assert!(status.success(), "A exited with {status}");
    println!("A stopped in {:?}", stopping.elapsed());

    // B finishes the saga; when it claimed it is in the history.
    let mut b_client = client(&b_addr).await;
    let saga = wait_terminal(&mut b_client, &id).await;
    assert_eq!(saga.status(), SagaStatus::Completed);
    assert_eq!(saga.steps[3].attempts, 3);
    let saga_log = PgPool::connect(&saga_db.url()).await.expect("saga log");
    let claimed: Option<DateTime<Utc>> = sqlx::query_scalar(
        "SELECT min(created_at) FROM saga_events
         WHERE saga_id = $1::uuid AND kind = 'SAGA_CLAIMED'",
    )
    .bind(&id)
    .fetch_one(&saga_log)
    .await
    .expect("claim");
    let handoff = (claimed.expect("B claimed the saga") - sigterm)
        .to_std()
        .unwrap_or_default();
    println!("SIGTERM to claim by B: {handoff:?} (lease 30 s, recovery scan every 30 s)");
    assert!(handoff < Duration::from_secs(2), "handoff took {handoff:?}");
    let status = b.terminate().await;
    assert!(status.success());
    demo.terminate().await;
    saga_log.close().await;
}

/// Reads the health watch until it says `want`; returns how long that took.
async fn wait_for_health(
    health: &mut Streaming<HealthCheckResponse>,
    want: ServingStatus,
) -> Duration {
    let started = Instant::now();
    let changed = async {
        while let Some(update) = health.message().await.expect("health watch") {
            if update.status() == want {
                return;
            }
        }
        panic!("the health watch ended before {want:?}")
    };
    tokio::time::timeout(Duration::from_secs(15), changed)
        .await
        .unwrap_or_else(|_| panic!("health never became {want:?}"));
    started.elapsed()
}

#[tokio::test]
async fn a_saga_log_outage_turns_sagad_not_serving_fails_starts_fast_and_loses_no_saga() {
    let pg = PrivatePostgres::start();
    let saga_url = pg.create_database("sagad").await;
    let demo_db = TestDatabase::create("sagad_outage_demo").await;
    let (demo, participants) = start_participants(&demo_db.url(), "warn").await;
    let defs = definitions();
    let (sagad, addr) = spawn(&saga_url, defs.path(), &participants, &[]).await;
    let mut api = client(&addr).await;
    let mut health = HealthClient::new(
        Channel::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect()
            .await
            .expect("connect"),
    )
    .watch(HealthCheckRequest {
        service: "saga.v1.SagaCoordinator".to_owned(),
    })
    .await
    .expect("health watch")
    .into_inner();
    wait_for_health(&mut health, ServingStatus::Serving).await;

    // A saga in the middle of its retries when the database goes away.
    let id = api
        .start_saga(request(json!({"PROCESS_PAYMENT": "unavailable:2"}), ""))
        .await
        .expect("start")
        .into_inner()
        .saga_id;
    pg.stop();
    let became = wait_for_health(&mut health, ServingStatus::NotServing).await;
    println!("NOT_SERVING {became:?} after the database stopped");

    let asked = Instant::now();
    let refused = api
        .start_saga(request(json!({}), "during-outage"))
        .await
        .expect_err("no saga can be accepted without the saga log");
    let answered = asked.elapsed();
    println!(
        "StartSaga during the outage answered {:?} in {answered:?}",
        refused.code()
    );
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(answered < Duration::from_secs(1), "took {answered:?}");

    pg.resume();
    let back = wait_for_health(&mut health, ServingStatus::Serving).await;
    println!("SERVING again {back:?} after the database came back");

    let saga = wait_terminal(&mut api, &id).await;
    assert_eq!(saga.status(), SagaStatus::Completed, "{saga:#?}");
    let later = api
        .start_saga(request(json!({}), "after-outage"))
        .await
        .expect("accepted again")
        .into_inner();
    let later = wait_terminal(&mut api, &later.saga_id).await;
    assert_eq!(later.status(), SagaStatus::Completed);
    // An open watch would hold the drain for the whole grace period.
    drop(health);
    let status = sagad.terminate().await;
    assert!(
        status.success(),
        "sagad kept running through the outage: {status}"
    );
    demo.terminate().await;
}

#[tokio::test]
async fn a_replica_paused_past_its_lease_cannot_write_its_stale_result_when_it_resumes() {
    let saga_db = TestDatabase::create("sagad_paused").await;
    let demo_db = TestDatabase::create("sagad_paused_demo").await;
    let (demo, participants) = start_participants(&demo_db.url(), "warn").await;
    let defs = definitions();
    let short_lease = [
        ("SAGAD_LEASE", "1s".to_owned()),
        ("SAGAD_RECOVERY_INTERVAL", "200ms".to_owned()),
    ];
    let (a, a_addr) = spawn(&saga_db.url(), defs.path(), &participants, &short_lease).await;
    let (b, b_addr) = spawn(&saga_db.url(), defs.path(), &participants, &short_lease).await;

    // A calls PROCESS_PAYMENT, which takes 1.5 s; A is frozen mid-call.
    let mut a_client = client(&a_addr).await;
    let id = a_client
        .start_saga(request(json!({"PROCESS_PAYMENT": "delay:1500ms"}), ""))
        .await
        .expect("start")
        .into_inner()
        .saga_id;
    watch_until(&mut a_client, &id, |saga| {
        saga.current_step == "PROCESS_PAYMENT"
    })
    .await;
    a.signal("STOP");

    // B takes the saga over once A's lease runs out, and finishes it (the participant's barrier answers
    // B's repeat of the charge with the first result).
    let mut b_client = client(&b_addr).await;
    let saga = wait_terminal(&mut b_client, &id).await;
    assert_eq!(saga.status(), SagaStatus::Completed);
    let saga_log = PgPool::connect(&saga_db.url()).await.expect("saga log");
    let footprint = || async {
        sqlx::query_as::<_, (i64, i64)>(
            "SELECT revision, (SELECT count(*) FROM saga_events WHERE saga_id = $1::uuid)
             FROM sagas WHERE id = $1::uuid",
        )
        .bind(&id)
        .fetch_one(&saga_log)
        .await
        .expect("saga row")
    };
    let finished_by_b = footprint().await;

    // A resumes: its charge answers, its write is refused; SIGTERM then waits for that executor to end.
    a.signal("CONT");
    let status = a.terminate().await;
    assert!(status.success(), "A exited with {status}");
    assert_eq!(
        footprint().await,
        finished_by_b,
        "A's stale result changed neither the saga nor its history"
    );
    let charges: i64 =
        sqlx::query_scalar("SELECT count(*) FROM payment.payments WHERE saga_id = $1::uuid")
            .bind(&id)
            .fetch_one(&PgPool::connect(&demo_db.url()).await.expect("demo db"))
            .await
            .expect("payments");
    assert_eq!(charges, 1, "charged once");
    let status = b.terminate().await;
    assert!(status.success());
    demo.terminate().await;
    saga_log.close().await;
}
