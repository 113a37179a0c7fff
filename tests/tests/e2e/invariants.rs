//! A few hundred sagas of all seven types, run concurrently against real sagad and demo-participants
//! processes with random faults (refusals, transient failures, hangs past the deadline, answers lost
//! after the work committed, delays, failing compensations), then the business invariants: money
//! conserved, nothing left frozen, no device for an order that is not active, refunded payments with
//! refunded orders, no refund or transfer twice, no channel payment kept for an unpaid order, no stored
//! package without a published app (on disk too), reserved + available = stock, credit used equal to the
//! open orders, no notification for what did not complete. Each saga's outcome is predicted from its
//! faults and its rows are checked.
//!
//! The seed is printed; `INVARIANTS_SEED=<seed>` replays a run's plan (timing may still differ).

mod plan;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use e2e_tests::{Stack, checks, definitions, saga_uuid, start_saga, state_uuid, wait_terminal};
use fastrand::Rng;
use saga_core::Definition;
use saga_proto::v1::saga_coordinator_client::SagaCoordinatorClient;
use saga_proto::v1::{Saga, SagaStatus};
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tonic::transport::Channel;
use uuid::Uuid;

use self::plan::{Expect, Planned};

/// Every step deadline: what a `hang` costs per attempt. Far above a step's normal latency here.
const STEP_TIMEOUT: Duration = Duration::from_millis(750);
/// Sagas in flight at once.
const CONCURRENCY: usize = 16;
/// Merchants the withdrawals draw from, each holding enough that no withdrawal is refused for funds.
const MERCHANTS: [&str; 3] = ["inv-a", "inv-b", "inv-c"];
const MERCHANT_CENTS: i64 = 5_000_000;
/// Users that create devices, several sagas each at once, with quotas no run fills.
const MAKERS: [&str; 4] = ["maker-0", "maker-1", "maker-2", "maker-3"];
/// Customers of the orders, with credit no run uses up, and the product they order, in stock enough.
const CUSTOMERS: [&str; 3] = ["inv-cust-a", "inv-cust-b", "inv-cust-c"];
const PRODUCT: &str = "inv-widget";
/// Distinct package contents the uploads draw from, so that several apps share one stored file.
const PACKAGES: usize = 6;

#[tokio::test]
async fn mixed_sagas_with_random_faults_keep_every_business_invariant() {
    let seed = std::env::var("INVARIANTS_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("invariants: seed {seed} (replay with INVARIANTS_SEED={seed})");
    let started = Instant::now();
    let mut rng = Rng::with_seed(seed);
    let definitions = definitions::shipped();
    let stack = Stack::start_fast(STEP_TIMEOUT).await;
    let initial_cents = seed_accounts(&stack).await;

    // Phase 1: purchases, withdrawals and device creations, interleaved.
    let mut first = Vec::new();
    for i in 0..110 {
        let plan_id = if rng.bool() { "pro" } else { "basic" };
        let payload = json!({"userId": format!("buyer-{}", i % 7), "planId": plan_id});
        first.push(plan::saga(&mut rng, &definitions, "purchase_plan", payload));
    }
    first.extend(withdrawals(&mut rng, &definitions, 80));
    first.extend(device_creations(&mut rng, &definitions, 60));
    first.extend(payment_creations(&mut rng, &definitions, 50));
    first.extend(app_uploads(&mut rng, &definitions, 50));
    first.extend(order_creations(&mut rng, &definitions, 60));
    rng.shuffle(&mut first);
    let first = run(&stack.client, first).await;
    let mut purchases = Vec::new();
    for (planned, saga) in &first {
        check_outcome(planned, saga);
        check_rows(&stack, planned, saga).await;
        if planned.saga_type == "purchase_plan" {
            purchases.push(saga.clone());
        }
    }

    // Phase 2: refunds (some twice at once, some of payments already refunded by their purchase's
    // compensation) among more withdrawals and device creations.
    let mut second = refunds(&mut rng, &definitions, &stack, &purchases).await;
    second.extend(withdrawals(&mut rng, &definitions, 30));
    second.extend(device_creations(&mut rng, &definitions, 30));
    rng.shuffle(&mut second);
    let second = run(&stack.client, second).await;
    let mut completed_refunds: HashMap<Uuid, usize> = HashMap::new();
    for (planned, saga) in &second {
        check_outcome(planned, saga);
        if planned.saga_type == "payment_refund" {
            let payment = state_uuid(saga, "paymentId");
            let completed = completed_refunds.entry(payment).or_default();
            if saga.status() == SagaStatus::Completed {
                *completed += 1;
                checks::completed_refund(&stack.demo_db, saga).await;
            }
        } else {
            check_rows(&stack, planned, saga).await;
        }
    }
    for (payment, completed) in &completed_refunds {
        assert!(
            *completed <= 1,
            "payment {payment} refunded by {completed} sagas"
        );
    }

    checks::global(&stack.demo_db, initial_cents).await;
    let packages = checks::storage(&stack.demo_db, stack.storage.path()).await;
    assert!(
        packages > 0,
        "completed uploads were planned, so packages must be stored"
    );
    report(&stack, &first, &second, started).await;
    stack.stop().await;
}

/// Adds the merchants and quotas the sagas use; returns every merchant's money before any withdrawal.
async fn seed_accounts(stack: &Stack) -> i64 {
    for merchant in MERCHANTS {
        sqlx::query("INSERT INTO withdrawal.merchants (id, available_cents) VALUES ($1, $2)")
            .bind(merchant)
            .bind(MERCHANT_CENTS)
            .execute(&stack.demo_db)
            .await
            .expect("merchant");
    }
    for maker in MAKERS {
        sqlx::query("INSERT INTO device.quotas (user_id, max_devices) VALUES ($1, 1000)")
            .bind(maker)
            .execute(&stack.demo_db)
            .await
            .expect("quota");
    }
    for customer in CUSTOMERS {
        sqlx::query(
            "INSERT INTO customer.customers (id, name, status, credit_limit_cents)
             VALUES ($1, $1, 'ACTIVE', 1000000000)",
        )
        .bind(customer)
        .execute(&stack.demo_db)
        .await
        .expect("customer");
    }
    sqlx::query(
        "INSERT INTO inventory.products (sku, name, stock, available) VALUES ($1, $1, 100000, 100000)",
    )
    .bind(PRODUCT)
    .execute(&stack.demo_db)
    .await
    .expect("product");
    sqlx::query_scalar(
        "SELECT sum(available_cents + frozen_cents)::bigint FROM withdrawal.merchants",
    )
    .fetch_one(&stack.demo_db)
    .await
    .expect("balances")
}

fn withdrawals(rng: &mut Rng, definitions: &[Definition], count: usize) -> Vec<Planned> {
    (0..count)
        .map(|_| {
            let merchant = MERCHANTS[rng.usize(..MERCHANTS.len())];
            let payload = json!({"merchantId": merchant, "amountCents": rng.i64(1..=50_000)});
            plan::saga(rng, definitions, "withdrawal", payload)
        })
        .collect()
}

fn device_creations(rng: &mut Rng, definitions: &[Definition], count: usize) -> Vec<Planned> {
    (0..count)
        .map(|_| {
            let payload = json!({"userId": MAKERS[rng.usize(..MAKERS.len())]});
            plan::saga(rng, definitions, "device_creation", payload)
        })
        .collect()
}

fn payment_creations(rng: &mut Rng, definitions: &[Definition], count: usize) -> Vec<Planned> {
    (0..count)
        .map(|i| {
            let channel = if rng.bool() { "card" } else { "wallet" };
            let payload = json!({
                "payerId": format!("payer-{}", i % 5), "channel": channel,
                "amountCents": rng.i64(1..=50_000),
            });
            plan::saga(rng, definitions, "payment_create", payload)
        })
        .collect()
}

fn app_uploads(rng: &mut Rng, definitions: &[Definition], count: usize) -> Vec<Planned> {
    (0..count)
        .map(|i| {
            let package = format!("package {}", rng.usize(..PACKAGES));
            let payload = json!({
                "developerId": format!("dev-{}", i % 4), "appName": format!("inv-app-{i}"),
                "version": "1.0.0", "packageBase64": BASE64.encode(package),
            });
            plan::saga(rng, definitions, "app_upload", payload)
        })
        .collect()
}

fn order_creations(rng: &mut Rng, definitions: &[Definition], count: usize) -> Vec<Planned> {
    (0..count)
        .map(|_| {
            let quantity = rng.i64(1..=5);
            let payload = json!({
                "customerId": CUSTOMERS[rng.usize(..CUSTOMERS.len())], "sku": PRODUCT,
                "quantity": quantity, "amountCents": quantity * 1_250,
            });
            plan::saga(rng, definitions, "order_creation", payload)
        })
        .collect()
}

/// Refund sagas for phase 1's purchases: most completed purchases once, some twice at once (one of the
/// two may win), and some compensated purchases whose payment their compensation already refunded
/// (refused at the first step).
async fn refunds(
    rng: &mut Rng,
    definitions: &[Definition],
    stack: &Stack,
    purchases: &[Saga],
) -> Vec<Planned> {
    let mut planned = Vec::new();
    for purchase in purchases {
        let refund = |rng: &mut Rng, payment: Uuid, expect: Option<Expect>| {
            let mut saga = plan::saga(
                rng,
                definitions,
                "payment_refund",
                json!({"paymentId": payment}),
            );
            if let Some(expect) = expect {
                saga.expect = expect;
            }
            saga
        };
        if purchase.status() == SagaStatus::Completed {
            if rng.f64() < 0.4 {
                continue;
            }
            let payment = state_uuid(purchase, "paymentId");
            if rng.f64() < 0.25 {
                planned.push(refund(rng, payment, Some(Expect::Either)));
                planned.push(refund(rng, payment, Some(Expect::Either)));
            } else {
                planned.push(refund(rng, payment, None));
            }
        } else if rng.bool() {
            let payment: Option<Uuid> =
                sqlx::query_scalar("SELECT id FROM payment.payments WHERE saga_id = $1")
                    .bind(saga_uuid(purchase))
                    .fetch_optional(&stack.demo_db)
                    .await
                    .expect("payment");
            if let Some(payment) = payment {
                planned.push(refund(rng, payment, Some(Expect::Compensated)));
            }
        }
    }
    planned
}

/// Runs every planned saga, `CONCURRENCY` at a time, each on its own client clone; returns them with
/// their terminal state.
async fn run(
    client: &SagaCoordinatorClient<Channel>,
    planned: Vec<Planned>,
) -> Vec<(Planned, Saga)> {
    let slots = Arc::new(Semaphore::new(CONCURRENCY));
    let mut tasks = JoinSet::new();
    for planned in planned {
        let mut client = client.clone();
        let slots = slots.clone();
        tasks.spawn(async move {
            let _slot = slots.acquire_owned().await.expect("semaphore open");
            let id = start_saga(&mut client, planned.saga_type, planned.payload.clone()).await;
            let saga = wait_terminal(&mut client, &id).await;
            (planned, saga)
        });
    }
    let mut done = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        done.push(joined.expect("saga task"));
    }
    done
}

fn check_outcome(planned: &Planned, saga: &Saga) {
    let status = saga.status();
    let expected = match planned.expect {
        Expect::Completed => status == SagaStatus::Completed,
        Expect::Compensated => status == SagaStatus::Compensated,
        Expect::Either => matches!(status, SagaStatus::Completed | SagaStatus::Compensated),
    };
    assert!(
        expected,
        "{} saga {} with payload {} ended {status:?}, expected {:?}: {}",
        planned.saga_type, saga.saga_id, planned.payload, planned.expect, saga.failure_message
    );
}

async fn check_rows(stack: &Stack, planned: &Planned, saga: &Saga) {
    let db = &stack.demo_db;
    match planned.saga_type {
        "purchase_plan" => checks::purchase(db, saga).await,
        "withdrawal" => {
            let amount = planned.payload["amountCents"].as_i64().expect("amount");
            checks::withdrawal(db, saga, amount).await;
        }
        "device_creation" => checks::device_creation(db, saga).await,
        "payment_create" => {
            let amount = planned.payload["amountCents"].as_i64().expect("amount");
            checks::payment_creation(db, saga, amount).await;
        }
        "app_upload" => checks::app_upload(db, saga).await,
        "order_creation" => checks::order_creation(db, saga).await,
        other => panic!("no row check for {other}"),
    }
}

/// What the run did: sagas by type and outcome, and the duplicates the participants absorbed.
async fn report(
    stack: &Stack,
    first: &[(Planned, Saga)],
    second: &[(Planned, Saga)],
    started: Instant,
) {
    let mut outcomes: HashMap<(&str, SagaStatus), usize> = HashMap::new();
    for (planned, saga) in first.iter().chain(second) {
        *outcomes
            .entry((planned.saga_type, saga.status()))
            .or_default() += 1;
    }
    let mut outcomes: Vec<_> = outcomes.into_iter().collect();
    outcomes.sort_by_key(|((saga_type, status), _)| (*saga_type, *status as i32));
    println!(
        "invariants: {} sagas in {:.1?}",
        first.len() + second.len(),
        started.elapsed()
    );
    for ((saga_type, status), count) in outcomes {
        println!("  {saga_type:<16} {status:?}: {count}");
    }
    let replays: Vec<(String, i64)> = sqlx::query_as(
        "SELECT service, sum(replays)::bigint FROM saga_barrier GROUP BY service ORDER BY service",
    )
    .fetch_all(&stack.demo_db)
    .await
    .expect("replays");
    println!("  duplicate deliveries absorbed by the barrier: {replays:?}");
    let total: i64 = replays.iter().map(|(_, count)| count).sum();
    assert!(
        total > 0,
        "lost answers were injected, so retries must have been absorbed"
    );
}
