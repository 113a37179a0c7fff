//! The conformance checker (`saga-conformance`, a real process) against real participants: the Rust demo
//! participants and the TypeScript SDK's example pass every check. (A deliberately naive participant
//! failing the right checks is `crates/saga-conformance/tests/checker.rs`.)
//!
//! Both participants share one database, the Rust one migrating it first: the TypeScript SDK must accept
//! the barrier table and the migration records sqlx wrote (`cross_language.rs` starts them the other way
//! round).

use std::process::Output;

use e2e_tests::{binary, start_loyalty, start_participants};
use saga_testkit::TestDatabase;

/// Runs `saga-conformance` against `endpoint` with `args` and returns its output.
async fn conform(endpoint: &str, args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(binary("saga-conformance"));
    command.args(["--addr", endpoint]).args(args);
    command.output().await.expect("run saga-conformance")
}

/// Asserts the run passed with the given summary, printing its table either way.
fn assert_passed(output: &Output, summary: &str) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "saga-conformance exited with {}",
        output.status
    );
    assert_eq!(stdout.trim_end().lines().last(), Some(summary));
}

#[tokio::test]
async fn the_rust_demo_participants_and_the_typescript_example_pass_every_check() {
    let database = TestDatabase::create("conformance_e2e").await;
    let (demo, participants) = start_participants(&database.url(), "warn").await;
    let (loyalty, loyalty_endpoint) = start_loyalty(&database.url()).await;

    // (participant, action, compensation, a payload it accepts, one it must refuse, the summary line)
    let cases = [
        (
            &participants["billing"],
            ["CreateOrder", "CancelOrder"],
            r#"{"userId":"u1","planId":"pro"}"#,
            Some(r#"{"userId":"u1","planId":"legacy"}"#),
            "10 passed, 0 failed, 0 skipped",
        ),
        (
            &participants["withdrawal"],
            ["FreezeBalance", "UnfreezeBalance"],
            r#"{"merchantId":"acme","amountCents":100}"#,
            Some(r#"{"merchantId":"globex","amountCents":999999999}"#),
            "10 passed, 0 failed, 0 skipped",
        ),
        (
            &participants["device"],
            ["AllocateDevice", "ReleaseDevice"],
            r#"{"userId":"u1","orderId":"0195b1d0-0000-7000-8000-0000000000aa"}"#,
            None,
            "8 passed, 0 failed, 2 skipped",
        ),
        (
            &loyalty_endpoint,
            ["AwardPoints", "RevokePoints"],
            r#"{"userId":"u1","amountCents":2999}"#,
            Some(r#"{"userId":"u1","amountCents":50}"#),
            "10 passed, 0 failed, 0 skipped",
        ),
    ];
    for (endpoint, [action, compensate], payload, refusal, summary) in cases {
        let mut args = vec![
            "--action",
            action,
            "--compensate",
            compensate,
            "--payload",
            payload,
        ];
        if let Some(refusal) = refusal {
            args.extend(["--refusal-payload", refusal]);
        }
        assert_passed(&conform(endpoint, &args).await, summary);
    }

    // What the checks left behind, seen from the shared database: both SDKs wrote one barrier table, and
    // the withdrawal check froze and unfroze acme's balance without losing a cent.
    let pool = sqlx::PgPool::connect(&database.url())
        .await
        .expect("database");
    let services: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT service FROM saga_barrier ORDER BY service")
            .fetch_all(&pool)
            .await
            .expect("barrier services");
    assert_eq!(services, ["billing", "device", "loyalty", "withdrawal"]);
    let (available, frozen): (i64, i64) = sqlx::query_as(
        "SELECT available_cents, frozen_cents FROM withdrawal.merchants WHERE id = 'acme'",
    )
    .fetch_one(&pool)
    .await
    .expect("acme");
    let still_frozen: i64 = sqlx::query_scalar(
        "SELECT COALESCE(sum(amount_cents), 0)::bigint FROM withdrawal.withdrawals WHERE status = 'FROZEN'",
    )
    .fetch_one(&pool)
    .await
    .expect("frozen withdrawals");
    assert_eq!(
        frozen, still_frozen,
        "frozen cents match the open withdrawals"
    );
    assert_eq!(available + frozen, 1_000_000, "no cent created or lost");
    pool.close().await;

    loyalty.terminate().await;
    demo.terminate().await;
}
