//! Chaos: three `sagad` replicas on one saga log drive `purchase_plan`, `payment_create`, `app_upload`
//! and `order_creation` sagas whose participants inject transient errors, lost answers and latency, while replicas are SIGKILLed and restarted, frozen
//! (SIGSTOP) mid-call past the deadline of the short sagas among them and then resumed or killed, and the
//! saga log's PostgreSQL server is restarted once. At the end every saga must be terminal with the
//! outcome its faults call for (a short saga may also have timed out), the participants' tables must
//! agree with every saga, no effect may have been applied twice, and every saga a killed or frozen
//! replica held must have been taken over within lease + 2 s.
//!
//! Small by default (500 sagas, five kills); `CHAOS_SAGAS=5000 CHAOS_KILLS=10` runs it large.
//! `CHAOS_SEED` replays a fault plan (timing still varies). The saga log lives on a private PostgreSQL
//! server so that restarting it disturbs no other test.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use e2e_tests::definitions::{policy, purchase_plan_as, shipped_as, write_dir};
use e2e_tests::postgres::PrivatePostgres;
use e2e_tests::{
    Process, active_sagas_owned_by, checks, follow_until, is_terminal, object,
    start_participants_storing, start_sagad,
};
use saga_proto::v1::saga_coordinator_client::SagaCoordinatorClient;
use saga_proto::v1::{Saga, SagaStatus, StartSagaRequest};
use saga_testkit::TestDatabase;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

const REPLICAS: usize = 3;
/// Lease length given to the replicas; takeover after a kill must happen within this + 2 s.
const LEASE: Duration = Duration::from_secs(2);
/// Time between chaos events; a takeover finishes well within it, so events never overlap.
const CHAOS_INTERVAL: Duration = Duration::from_secs(3);

/// Whole-saga deadline of `purchase_plan_short`: shorter than a freeze, so a saga a frozen replica
/// holds is past its deadline when it is taken over.
const SHORT_TIMEOUT: Duration = Duration::from_millis(2500);

/// The shipped `purchase_plan` with retry budgets that outlast every injected transient fault, one 2 s
/// deadline for every call, and backoffs long enough that some waits are handed over through the saga
/// log (beyond `SAGAD_HOLD_WAIT`); `purchase_plan_short`, the same with a deadline shorter than a
/// freeze; and the other flows of the mix with the same budgets.
fn definitions() -> tempfile::TempDir {
    let chaos = |d: &mut saga_core::Definition| {
        d.timeout = Some(Duration::from_secs(300));
        d.step_timeout = Duration::from_secs(2);
        for step in &mut d.steps {
            step.timeout = None;
        }
        d.retry = policy(8, 100, 3.0, 2000, 0.2);
        d.compensation = policy(30, 100, 3.0, 2000, 0.2);
    };
    write_dir(&[
        purchase_plan_as("purchase_plan", chaos),
        purchase_plan_as("purchase_plan_short", |d| {
            chaos(d);
            d.timeout = Some(SHORT_TIMEOUT);
        }),
        shipped_as("payment_create", "payment_create", chaos),
        shipped_as("app_upload", "app_upload", chaos),
        shipped_as("order_creation", "order_creation", chaos),
    ])
}

/// A flow of the mix: its steps, those a refusal may hit (after the first and before the pivot, so that
/// a refusal always means compensation), and a step whose compensation may fail for a while.
struct Flow {
    steps: &'static [&'static str],
    refusable: std::ops::Range<usize>,
    compensable: &'static str,
}

const PURCHASE: Flow = Flow {
    steps: &[
        "VALIDATE_PLAN",
        "CREATE_ORDER",
        "ALLOCATE_DEVICE",
        "PROCESS_PAYMENT",
        "ACTIVATE_ORDER",
    ],
    refusable: 1..4,
    compensable: "CREATE_ORDER",
};
const PAYMENT_CREATE: Flow = Flow {
    steps: &["CREATE_ORDER", "CALL_PAYMENT_CHANNEL"],
    refusable: 1..2,
    compensable: "CREATE_ORDER",
};
const APP_UPLOAD: Flow = Flow {
    steps: &[
        "CREATE_APP_RECORD",
        "UPLOAD_TO_STORAGE",
        "UPDATE_APP_STATUS",
        "SEND_NOTIFICATION",
    ],
    refusable: 1..3,
    compensable: "UPLOAD_TO_STORAGE",
};
const ORDER_CREATION: Flow = Flow {
    steps: &[
        "VALIDATE_CUSTOMER",
        "RESERVE_INVENTORY",
        "CREATE_ORDER",
        "PROCESS_PAYMENT",
        "UPDATE_CUSTOMER",
        "SEND_NOTIFICATION",
    ],
    refusable: 1..6,
    compensable: "RESERVE_INVENTORY",
};

/// The customer and product the orders of the mix use, with credit and stock no run uses up.
const CUSTOMER: &str = "chaos-customer";
const PRODUCT: &str = "chaos-widget";

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One saga: its type, its payload with its faults, and whether they make it compensate (a refusal) or
/// complete.
struct Plan {
    saga_type: &'static str,
    payload: Value,
    refused: bool,
}

/// Saga `i`: half are purchases, one purchase in five short (it may time out, and then must be
/// compensated like any other); the rest payment creations, app uploads and orders.
fn plan(rng: &mut fastrand::Rng, i: usize) -> Plan {
    let (saga_type, flow, mut payload) = match rng.u32(0..6) {
        0..=2 => {
            let purchase = json!({"userId": format!("u{}", i % 50), "planId": "pro"});
            if rng.u32(0..5) == 0 {
                ("purchase_plan_short", &PURCHASE, purchase)
            } else {
                ("purchase_plan", &PURCHASE, purchase)
            }
        }
        3 => (
            "payment_create",
            &PAYMENT_CREATE,
            json!({"payerId": format!("p{}", i % 50), "channel": "card", "amountCents": rng.i64(1..=50_000)}),
        ),
        4 => {
            // Three packages ("a", "b", "c") for all the uploads, so that apps share stored files.
            let package = ["YQ==", "Yg==", "Yw=="][rng.usize(0..3)];
            let upload = json!({
                "developerId": format!("d{}", i % 50), "appName": format!("chaos-app-{i}"),
                "version": "1.0.0", "packageBase64": package,
            });
            ("app_upload", &APP_UPLOAD, upload)
        }
        _ => {
            let quantity = rng.i64(1..=3);
            (
                "order_creation",
                &ORDER_CREATION,
                json!({"customerId": CUSTOMER, "sku": PRODUCT, "quantity": quantity, "amountCents": quantity * 1_250}),
            )
        }
    };
    let (faults, refused) = fault_plan(rng, flow);
    payload["faults"] = faults;
    Plan {
        saga_type,
        payload,
        refused,
    }
}

/// One saga's faults, and whether they make it compensate (a refusal) or complete.
fn fault_plan(rng: &mut fastrand::Rng, flow: &Flow) -> (Value, bool) {
    let mut faults = serde_json::Map::new();
    let mut refused = false;
    for (i, step) in flow.steps.iter().enumerate() {
        let roll = rng.u32(0..100);
        let fault = match roll {
            0..=14 => Some(format!("unavailable:{}", rng.u32(1..=3))),
            15..=29 => Some(format!("delay:{}ms", rng.u32(10..=150))),
            30..=36 => Some("apply-then-fail:1".to_owned()),
            37..=38 => Some("hang:1".to_owned()),
            // Refusals only before the pivot, so they always mean compensation.
            39..=41 if flow.refusable.contains(&i) => {
                refused = true;
                Some("refuse".to_owned())
            }
            _ => None,
        };
        if let Some(fault) = fault {
            faults.insert((*step).to_owned(), Value::String(fault));
        }
    }
    if rng.u32(0..100) < 5 {
        faults.insert(
            format!("{}:compensate", flow.compensable),
            Value::String(format!("unavailable:{}", rng.u32(1..=3))),
        );
    }
    (Value::Object(faults), refused)
}

/// The live replicas' addresses (None while one is down).
type Addresses = Arc<Mutex<Vec<Option<String>>>>;

/// Starts saga `i` on some live replica, retrying with the same idempotency key through kills, freezes,
/// refusals under load and the database restart, as a well-behaved caller would; returns the saga id.
async fn start_one(
    addresses: &Addresses,
    i: usize,
    saga_type: &str,
    payload: Value,
    rng_seed: u64,
) -> Uuid {
    let mut rng = fastrand::Rng::with_seed(rng_seed);
    for _ in 0..6000 {
        let live: Vec<String> = addresses
            .lock()
            .expect("lock")
            .iter()
            .flatten()
            .cloned()
            .collect();
        if !live.is_empty() {
            let addr = &live[rng.usize(0..live.len())];
            if let Ok(mut client) = SagaCoordinatorClient::connect(format!("http://{addr}")).await {
                let request = StartSagaRequest {
                    labels: Default::default(),
                    saga_type: saga_type.to_owned(),
                    payload: Some(object(payload.clone())),
                    idempotency_key: format!("chaos-{i}"),
                    wait: None,
                };
                if let Ok(response) = client.start_saga(request).await {
                    return response.into_inner().saga_id.parse().expect("uuid");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("saga {i} could not be started within 5 minutes");
}

/// A replica killed or frozen, and the active sagas it held a lease on then.
struct Kill {
    at: DateTime<Utc>,
    held: Vec<Uuid>,
}

/// What happens to a replica at a chaos event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Kill,
    /// SIGSTOP for longer than the short sagas' deadline, then SIGCONT.
    FreezeThenResume,
    /// SIGSTOP for longer than the short sagas' deadline, then SIGKILL.
    FreezeThenKill,
}

async fn spawn_replica(
    saga_url: &str,
    definitions: &Path,
    participants: &BTreeMap<String, String>,
) -> (Process, String) {
    start_sagad(
        saga_url,
        definitions,
        participants,
        &[
            ("SAGAD_LEASE", "2s".to_owned()),
            ("SAGAD_HOLD_WAIT", "500ms".to_owned()),
            ("SAGAD_RECOVERY_INTERVAL", "500ms".to_owned()),
            ("SAGAD_SHUTDOWN_GRACE", "2s".to_owned()),
            ("SAGAD_DATABASE_MAX_CONNECTIONS", "8".to_owned()),
            ("SAGAD_PARTICIPANT_CONCURRENCY", "8".to_owned()),
            ("RUST_LOG", "error".to_owned()),
        ],
    )
    .await
}

async fn scalar(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.expect(sql)
}

/// Adds the orders' customer and product.
async fn seed_accounts(pool: &PgPool) {
    sqlx::query(
        "INSERT INTO customer.customers (id, name, status, credit_limit_cents)
         VALUES ($1, $1, 'ACTIVE', 1000000000000)",
    )
    .bind(CUSTOMER)
    .execute(pool)
    .await
    .expect("customer");
    sqlx::query(
        "INSERT INTO inventory.products (sku, name, stock, available)
         VALUES ($1, $1, 1000000000, 1000000000)",
    )
    .bind(PRODUCT)
    .execute(pool)
    .await
    .expect("product");
}

/// Saga `id` as the saga log left it, for the row checks.
fn logged(id: Uuid, status: &str) -> Saga {
    let status = SagaStatus::from_str_name(&format!("SAGA_STATUS_{status}")).expect("a status");
    Saga {
        saga_id: id.to_string(),
        status: status.into(),
        ..Saga::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_killed_and_a_database_restart_lose_nothing_and_apply_nothing_twice() {
    let sagas = env_or("CHAOS_SAGAS", 500) as usize;
    let kills = env_or("CHAOS_KILLS", 5) as usize;
    let seed = env_or("CHAOS_SEED", fastrand::u64(..));
    println!("chaos: {sagas} sagas, {kills} kills, seed {seed}");
    let began = Instant::now();

    let pg = PrivatePostgres::start();
    let admin = PgPool::connect(&pg.url("postgres"))
        .await
        .expect("private server");
    sqlx::query("CREATE DATABASE sagad")
        .execute(&admin)
        .await
        .expect("create db");
    admin.close().await;
    let saga_url = pg.url("sagad");
    let demo_db = TestDatabase::create("sagad_chaos_demo").await;
    let storage = tempfile::tempdir().expect("storage directory");
    let (demo, participants) =
        start_participants_storing(&demo_db.url(), storage.path(), "error").await;
    let demo_pool = PgPool::connect(&demo_db.url()).await.expect("demo db");
    seed_accounts(&demo_pool).await;
    let merchant_cents = scalar(
        &demo_pool,
        "SELECT sum(available_cents + frozen_cents)::bigint FROM withdrawal.merchants",
    )
    .await;
    let definitions = definitions();

    let mut replicas: Vec<Option<Process>> = Vec::new();
    let addresses: Addresses = Arc::default();
    for _ in 0..REPLICAS {
        let (process, addr) = spawn_replica(&saga_url, definitions.path(), &participants).await;
        replicas.push(Some(process));
        addresses.lock().expect("lock").push(Some(addr));
    }

    // The load: sagas spread over the chaos period, each with its own faults.
    let mut rng = fastrand::Rng::with_seed(seed);
    let plans: Vec<Plan> = (0..sagas).map(|i| plan(&mut rng, i)).collect();
    let expected: HashMap<usize, (bool, bool)> = plans
        .iter()
        .enumerate()
        .map(|(i, p)| (i, (p.refused, p.saga_type == "purchase_plan_short")))
        .collect();
    let kinds: HashMap<usize, (&str, Value)> = plans
        .iter()
        .enumerate()
        .map(|(i, p)| (i, (p.saga_type, p.payload.clone())))
        .collect();
    let chaos_span = CHAOS_INTERVAL * u32::try_from(kills + 2).unwrap_or(u32::MAX);
    let pace = chaos_span / u32::try_from(sagas.max(1)).unwrap_or(u32::MAX);
    let load = {
        let addresses = addresses.clone();
        tokio::spawn(async move {
            let started = Arc::new(Mutex::new(HashMap::new()));
            let limit = Arc::new(tokio::sync::Semaphore::new(16));
            let mut tasks = Vec::new();
            for (i, plan) in plans.into_iter().enumerate() {
                let permit = limit.clone().acquire_owned().await.expect("permit");
                let (addresses, started) = (addresses.clone(), started.clone());
                tasks.push(tokio::spawn(async move {
                    let id =
                        start_one(&addresses, i, plan.saga_type, plan.payload, seed ^ i as u64)
                            .await;
                    started.lock().expect("lock").insert(i, id);
                    drop(permit);
                }));
                tokio::time::sleep(pace).await;
            }
            for task in tasks {
                task.await.expect("start task");
            }
            Arc::try_unwrap(started)
                .expect("all tasks done")
                .into_inner()
                .expect("lock")
        })
    };

    // The chaos, every few seconds: SIGKILL a replica and start a new one, or freeze one past the short
    // sagas' deadline and then resume or kill it; restart PostgreSQL once, halfway, away from any
    // takeover window.
    let saga_log = PgPool::connect(&saga_url).await.expect("saga log");
    let mut kill_log = Vec::new();
    let mut events: Vec<Event> = Vec::new();
    let mut database_restarts = 0;
    let restart_after = kills / 2;
    let mut rng = fastrand::Rng::with_seed(seed.wrapping_add(1));
    for k in 0..kills {
        tokio::time::sleep(CHAOS_INTERVAL).await;
        if k == restart_after {
            let down = Instant::now();
            pg.restart();
            database_restarts += 1;
            println!("chaos: PostgreSQL restarted in {:?}", down.elapsed());
            tokio::time::sleep(CHAOS_INTERVAL).await;
        }
        let event = match k % 3 {
            0 => Event::Kill,
            1 => Event::FreezeThenResume,
            _ => Event::FreezeThenKill,
        };
        let victim = rng.usize(0..REPLICAS);
        let process = replicas[victim].take().expect("replica running");
        let pid = process.pid();
        let victim_addr = addresses.lock().expect("lock")[victim].take();
        let process = match event {
            Event::Kill => {
                process.kill().await;
                None
            }
            Event::FreezeThenResume | Event::FreezeThenKill => {
                process.signal("STOP");
                Some(process)
            }
        };
        let at = Utc::now();
        let held = active_sagas_owned_by(&saga_log, pid).await;
        println!(
            "chaos: {event:?} replica {victim} (pid {pid}) holding {} sagas",
            held.len()
        );
        kill_log.push(Kill { at, held });
        events.push(event);
        let resumed = match (event, process) {
            (Event::FreezeThenResume, Some(frozen)) => {
                tokio::time::sleep(SHORT_TIMEOUT + LEASE).await;
                frozen.signal("CONT");
                Some(frozen)
            }
            (Event::FreezeThenKill, Some(frozen)) => {
                tokio::time::sleep(SHORT_TIMEOUT + LEASE).await;
                frozen.kill().await;
                None
            }
            _ => None,
        };
        let (process, addr) = match (resumed, victim_addr) {
            (Some(process), Some(addr)) => (process, addr),
            _ => spawn_replica(&saga_url, definitions.path(), &participants).await,
        };
        replicas[victim] = Some(process);
        addresses.lock().expect("lock")[victim] = Some(addr);
    }
    let started = load.await.expect("load");
    assert_eq!(started.len(), sagas);

    // Every saga reaches a terminal status: follow each with WatchSaga on a replica (one at a time, well
    // within the watch quota; most are terminal already and answer with one message).
    let addr = addresses
        .lock()
        .expect("lock")
        .iter()
        .flatten()
        .next()
        .cloned()
        .expect("a replica");
    let mut client = SagaCoordinatorClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    let settle = async {
        for id in started.values() {
            follow_until(&mut client, &id.to_string(), is_terminal).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(180), settle)
        .await
        .expect("every saga terminal within 180 s of the last chaos event");
    let active = scalar(
        &saga_log,
        "SELECT count(*) FROM sagas WHERE status IN ('RUNNING', 'COMPENSATING')",
    )
    .await;
    assert_eq!(active, 0, "no saga left active");
    let total = scalar(&saga_log, "SELECT count(*) FROM sagas").await;
    assert_eq!(total, sagas as i64, "exactly one saga per idempotency key");

    let outcomes: HashMap<Uuid, (String, Option<String>)> =
        sqlx::query_as::<_, (Uuid, String, Option<String>)>(
            "SELECT id, status, failure_reason FROM sagas",
        )
        .fetch_all(&saga_log)
        .await
        .expect("outcomes")
        .into_iter()
        .map(|(id, status, reason)| (id, (status, reason)))
        .collect();
    let mut completed = 0;
    let mut compensated = 0;
    let mut timed_out = 0;
    for (i, id) in &started {
        let (status, reason) = &outcomes[id];
        let (refused, short) = expected[i];
        let expected = if refused { "COMPENSATED" } else { "COMPLETED" };
        // A short saga may have run out of time first; then it is compensated like any other.
        let timed_out_instead =
            short && status == "COMPENSATED" && reason.as_deref() == Some("TIMED_OUT");
        assert!(
            status == expected || timed_out_instead,
            "saga {i} ({id}) with faults that call for {expected} ended {status} {reason:?}"
        );
        match status.as_str() {
            "COMPLETED" => completed += 1,
            _ if timed_out_instead => timed_out += 1,
            _ => compensated += 1,
        }
    }

    // The participants agree with every saga.
    let rows = |sql: &'static str| {
        let pool = demo_pool.clone();
        async move {
            sqlx::query_as::<_, (Uuid, String)>(sql)
                .fetch_all(&pool)
                .await
                .expect(sql)
        }
    };
    let orders = rows("SELECT saga_id, status FROM billing.orders").await;
    let devices = rows("SELECT saga_id, status FROM device.devices").await;
    let payments = rows("SELECT saga_id, status FROM payment.payments").await;
    for (table, list) in [
        ("orders", &orders),
        ("devices", &devices),
        ("payments", &payments),
    ] {
        let unique: HashSet<Uuid> = list.iter().map(|r| r.0).collect();
        assert_eq!(
            unique.len(),
            list.len(),
            "a saga created two {table}: an effect applied twice"
        );
    }
    let by_saga =
        |list: &[(Uuid, String)]| -> HashMap<Uuid, String> { list.iter().cloned().collect() };
    let (orders, devices, payments) = (by_saga(&orders), by_saga(&devices), by_saga(&payments));
    let purchases = started
        .iter()
        .filter(|(i, _)| kinds[*i].0.starts_with("purchase_plan"))
        .map(|(_, id)| id);
    for id in purchases {
        let order = orders.get(id).map(String::as_str);
        let device = devices.get(id).map(String::as_str);
        let payment = payments.get(id).map(String::as_str);
        if outcomes[id].0 == "COMPLETED" {
            assert_eq!(
                (order, device, payment),
                (Some("ACTIVE"), Some("ALLOCATED"), Some("SUCCESS")),
                "completed saga {id}"
            );
        } else {
            assert!(
                matches!(order, None | Some("CANCELLED")),
                "compensated saga {id}: order {order:?}"
            );
            assert_ne!(
                device,
                Some("ALLOCATED"),
                "compensated saga {id} left a device allocated"
            );
            assert_ne!(
                payment,
                Some("SUCCESS"),
                "compensated saga {id} left a payment captured"
            );
        }
    }
    let active_without_payment = scalar(
        &demo_pool,
        "SELECT count(*) FROM billing.orders o
         WHERE o.status = 'ACTIVE' AND NOT EXISTS (
             SELECT 1 FROM payment.payments p WHERE p.saga_id = o.saga_id AND p.status = 'SUCCESS')",
    )
    .await;
    assert_eq!(
        active_without_payment, 0,
        "an active order without a payment"
    );
    let stray_devices = scalar(
        &demo_pool,
        "SELECT count(*) FROM device.devices d
         WHERE d.status = 'ALLOCATED' AND NOT EXISTS (
             SELECT 1 FROM billing.orders o WHERE o.id = d.order_id AND o.status = 'ACTIVE')",
    )
    .await;
    assert_eq!(
        stray_devices, 0,
        "a device allocated to an order that is not active"
    );
    for (i, id) in &started {
        let (saga_type, payload) = &kinds[i];
        let saga = logged(*id, &outcomes[id].0);
        match *saga_type {
            "payment_create" => {
                let amount = payload["amountCents"].as_i64().expect("amount");
                checks::payment_creation(&demo_pool, &saga, amount).await;
            }
            "app_upload" => checks::app_upload(&demo_pool, &saga).await,
            "order_creation" => checks::order_creation(&demo_pool, &saga).await,
            _ => {}
        }
    }
    checks::global(&demo_pool, merchant_cents).await;
    checks::storage(&demo_pool, storage.path()).await;
    let absorbed = scalar(
        &demo_pool,
        "SELECT COALESCE(sum(replays), 0)::bigint FROM saga_barrier",
    )
    .await;

    // Every saga a killed replica held was claimed by another within lease + 2 s.
    let mut longest = Duration::ZERO;
    let mut taken_over = 0;
    for kill in &kill_log {
        for id in &kill.held {
            let claimed: Option<DateTime<Utc>> = sqlx::query_scalar(
                "SELECT min(created_at) FROM saga_events
                 WHERE saga_id = $1 AND kind = 'SAGA_CLAIMED' AND created_at > $2",
            )
            .bind(id)
            .bind(kill.at)
            .fetch_one(&saga_log)
            .await
            .expect("claim time");
            let claimed = claimed
                .unwrap_or_else(|| panic!("saga {id} held by a killed replica was never claimed"));
            let waited = (claimed - kill.at).to_std().unwrap_or_default();
            longest = longest.max(waited);
            taken_over += 1;
        }
    }

    let count = |wanted: Event| events.iter().filter(|e| **e == wanted).count();
    println!(
        "chaos: {sagas} sagas ({completed} completed, {compensated} compensated, {timed_out} short ones \
         timed out) in {:?}; {} replica kills, {} freezes resumed and {} killed past the short \
         deadline, {database_restarts} PostgreSQL restart; {taken_over} sagas taken over from killed \
         or frozen replicas, longest wait {longest:?} (limit {:?}); {absorbed} duplicate deliveries \
         absorbed by participants",
        began.elapsed(),
        count(Event::Kill),
        count(Event::FreezeThenResume),
        count(Event::FreezeThenKill),
        LEASE + Duration::from_secs(2)
    );
    assert!(
        taken_over > 0,
        "no kill or freeze hit a replica mid-saga; the test proved nothing about takeover"
    );
    assert!(
        longest <= LEASE + Duration::from_secs(2),
        "a saga waited {longest:?} for takeover"
    );

    for process in replicas.into_iter().flatten() {
        let status = process.terminate().await;
        assert!(status.success(), "sagad exited with {status}");
    }
    demo.terminate().await;
    saga_log.close().await;
    demo_pool.close().await;
}
