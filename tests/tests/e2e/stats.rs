//! `GetStats` end to end: real sagad and demo participants, sagas of every outcome, then the statistics
//! through the generated client, checked against what the sagas did and against the saga log.

use std::time::Duration;

use e2e_tests::{Stack, watch_until};
use saga_proto::v1::{
    AbortSagaRequest, FailureReason, GetStatsRequest, GetStatsResponse, SagaStats, SagaStatus,
    StuckReason,
};
use serde_json::json;

async fn stats(stack: &mut Stack, request: GetStatsRequest) -> GetStatsResponse {
    stack
        .client
        .get_stats(request)
        .await
        .expect("GetStats")
        .into_inner()
}

fn of_type<'a>(stats: &'a GetStatsResponse, saga_type: &str) -> &'a SagaStats {
    stats
        .by_type
        .iter()
        .find(|s| s.saga_type == saga_type)
        .unwrap_or_else(|| panic!("{saga_type} in {stats:#?}"))
}

/// started, completed, compensated, failed, running, compensating, parked.
fn counts(s: &SagaStats) -> [u64; 7] {
    [
        s.started,
        s.completed,
        s.compensated,
        s.failed,
        s.running,
        s.compensating,
        s.parked,
    ]
}

#[tokio::test]
async fn stats_count_every_outcome_name_the_failure_reasons_and_find_the_saga_that_is_stuck() {
    // Step deadlines of 30 s: a hanging step keeps its saga RUNNING for the whole test.
    let mut stack = Stack::start_fast(Duration::from_secs(30)).await;
    let purchase =
        |faults: serde_json::Value| json!({"userId": "u1", "planId": "pro", "faults": faults});
    for _ in 0..2 {
        let saga = stack.run_saga("purchase_plan", purchase(json!({}))).await;
        assert_eq!(saga.status(), SagaStatus::Completed);
    }
    let withdrawal = json!({"merchantId": "acme", "amountCents": 100});
    let saga = stack.run_saga("withdrawal", withdrawal).await;
    assert_eq!(saga.status(), SagaStatus::Completed);
    let refused = stack
        .run_saga(
            "purchase_plan",
            purchase(json!({"ALLOCATE_DEVICE": "refuse"})),
        )
        .await;
    assert_eq!(refused.status(), SagaStatus::Compensated);
    let parked_faults =
        json!({"ALLOCATE_DEVICE": "refuse", "CREATE_ORDER:compensate": "unavailable"});
    let parked = stack
        .run_saga("purchase_plan", purchase(parked_faults))
        .await;
    assert_eq!(parked.status(), SagaStatus::Failed);
    let hanging = stack
        .start_saga(
            "purchase_plan",
            purchase(json!({"ALLOCATE_DEVICE": "hang"})),
        )
        .await;
    // Its call to ALLOCATE_DEVICE hangs once the steps before it are recorded.
    watch_until(&mut stack.client, &hanging, |saga| {
        saga.current_step == "ALLOCATE_DEVICE"
    })
    .await;

    let all = stats(&mut stack, GetStatsRequest::default()).await;
    let window = all.until.expect("until").seconds - all.since.expect("since").seconds;
    assert_eq!(window, 3600, "the default window is an hour");
    assert_eq!(
        counts(of_type(&all, "purchase_plan")),
        [5, 2, 1, 1, 1, 0, 1]
    );
    assert_eq!(counts(of_type(&all, "withdrawal")), [1, 1, 0, 0, 0, 0, 0]);
    let total = all.total.as_ref().expect("total");
    assert_eq!(total.saga_type, "");
    assert_eq!(counts(total), [6, 3, 1, 1, 1, 0, 1]);
    assert!((total.success_rate - 0.6).abs() < 1e-9, "{total:?}");
    assert!((total.compensation_rate - 0.2).abs() < 1e-9, "{total:?}");
    assert!((total.failure_rate - 0.2).abs() < 1e-9, "{total:?}");
    let durations = total.duration.as_ref().expect("durations");
    let seconds = |d: &Option<prost_types::Duration>| {
        Duration::try_from(d.expect("a percentile")).expect("positive")
    };
    assert!(
        Duration::ZERO < seconds(&durations.p50)
            && seconds(&durations.p50) <= seconds(&durations.p95)
            && seconds(&durations.p95) <= seconds(&durations.p99)
            && seconds(&durations.p99) < Duration::from_secs(30),
        "{durations:?}"
    );

    // The numbers are the saga log's.
    let (completed, compensated, failed): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'COMPLETED'),
                count(*) FILTER (WHERE status = 'COMPENSATED'),
                count(*) FILTER (WHERE status = 'FAILED')
         FROM sagas WHERE finished_at IS NOT NULL",
    )
    .fetch_one(&stack.saga_db)
    .await
    .expect("count the log");
    assert_eq!(
        [completed, compensated, failed].map(|n| u64::try_from(n).expect("a count")),
        [total.completed, total.compensated, total.failed]
    );

    let reasons: Vec<(&str, FailureReason, &str, u64)> = all
        .failure_reasons
        .iter()
        .map(|r| (r.saga_type.as_str(), r.reason(), r.step.as_str(), r.count))
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons.contains(&(
            "purchase_plan",
            FailureReason::StepFailed,
            "ALLOCATE_DEVICE",
            1
        )),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&(
            "purchase_plan",
            FailureReason::CompensationFailed,
            "CREATE_ORDER",
            1
        )),
        "{reasons:?}"
    );
    for reason in &all.failure_reasons {
        let sample = match reason.reason() {
            FailureReason::StepFailed => &refused,
            _ => &parked,
        };
        assert_eq!(reason.sample_saga_id, sample.saga_id);
        assert_eq!(reason.sample_error, sample.failure_message);
    }

    // Hanging in ALLOCATE_DEVICE, held by the live sagad: not stuck after the default 10 minutes, stuck
    // when anything running for a millisecond is; never unclaimed.
    assert_eq!((all.stuck_count, all.stuck.len()), (0, 0), "{all:#?}");
    let impatient = GetStatsRequest {
        stuck_after: Some(prost_types::Duration {
            seconds: 0,
            nanos: 1_000_000,
        }),
        ..GetStatsRequest::default()
    };
    let impatient = stats(&mut stack, impatient).await;
    assert_eq!(impatient.stuck_count, 1, "{impatient:#?}");
    let stuck = &impatient.stuck[0];
    assert_eq!(
        (
            stuck.saga_id.as_str(),
            stuck.saga_type.as_str(),
            stuck.status(),
            stuck.current_step.as_str(),
            stuck.reason()
        ),
        (
            hanging.as_str(),
            "purchase_plan",
            SagaStatus::Running,
            "ALLOCATE_DEVICE",
            StuckReason::RunningTooLong
        )
    );
    assert!(!stuck.owner.is_empty(), "leased to the live sagad");
    assert!(stuck.claimable_since.is_none());

    // One type only; a bad request is refused with a status that names the field.
    let withdrawals = stats(
        &mut stack,
        GetStatsRequest {
            saga_type: "withdrawal".to_owned(),
            ..GetStatsRequest::default()
        },
    )
    .await;
    assert_eq!(withdrawals.by_type.len(), 1);
    assert_eq!(
        counts(withdrawals.total.as_ref().expect("total")),
        [1, 1, 0, 0, 0, 0, 0]
    );
    assert!(withdrawals.failure_reasons.is_empty());
    let refused_request = stack
        .client
        .get_stats(GetStatsRequest {
            window: Some(prost_types::Duration {
                seconds: 31 * 86_400,
                nanos: 0,
            }),
            ..GetStatsRequest::default()
        })
        .await
        .expect_err("a 31-day window");
    assert_eq!(refused_request.code(), tonic::Code::InvalidArgument);
    assert!(
        refused_request.message().starts_with("window "),
        "{refused_request:?}"
    );

    stack
        .client
        .abort_saga(AbortSagaRequest {
            saga_id: hanging.clone(),
            reason: "the test is over".to_owned(),
        })
        .await
        .expect("abort the hanging saga");
    stack.wait_terminal(&hanging).await;
    stack.stop().await;
}
