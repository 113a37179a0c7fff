//! The withdrawal saga end to end (real sagad and demo-participants processes), checked through the
//! merchant's balance, the withdrawal row and the simulated bank's transfers after each saga; and a
//! variant whose bank reversal is done by hand, resolved by an operator.

use std::time::Duration;

use e2e_tests::{Stack, definitions, object, saga_uuid, step_statuses};
use saga_proto::v1::{
    EventKind, FailureReason, GetSagaHistoryRequest, Label, ListSagasRequest, ResolveOutcome,
    ResolveSagaRequest, RetrySagaRequest, Saga, SagaStatus, StartSagaRequest, StepStatus,
};
use serde_json::{Value, json};
use tonic::Code;

/// The merchant every test withdraws from; it starts with this many cents available.
const MERCHANT: &str = "globex";
const START_CENTS: i64 = 250_000;

async fn withdraw(stack: &mut Stack, amount_cents: i64, faults: Value) -> Saga {
    stack
        .run_saga(
            "withdrawal",
            json!({"merchantId": MERCHANT, "amountCents": amount_cents, "faults": faults}),
        )
        .await
}

/// Everything a withdrawal moves: the merchant's (available, frozen) cents, the saga's withdrawal status
/// and its bank transfers' statuses.
#[derive(Debug, PartialEq)]
struct Rows {
    balance: (i64, i64),
    withdrawal: Option<String>,
    transfers: Vec<String>,
}

impl Rows {
    async fn of(stack: &Stack, saga: &Saga) -> Self {
        let balance = sqlx::query_as(
            "SELECT available_cents, frozen_cents FROM withdrawal.merchants WHERE id = $1",
        )
        .bind(MERCHANT)
        .fetch_one(&stack.demo_db)
        .await
        .expect("merchant");
        let withdrawal =
            sqlx::query_scalar("SELECT status FROM withdrawal.withdrawals WHERE saga_id = $1")
                .bind(saga_uuid(saga))
                .fetch_optional(&stack.demo_db)
                .await
                .expect("withdrawal");
        let transfers = sqlx::query_scalar(
            "SELECT t.status FROM withdrawal.bank_transfers t
             JOIN withdrawal.withdrawals w ON w.id = t.withdrawal_id
             WHERE w.saga_id = $1 ORDER BY t.created_at",
        )
        .bind(saga_uuid(saga))
        .fetch_all(&stack.demo_db)
        .await
        .expect("transfers");
        Self {
            balance,
            withdrawal,
            transfers,
        }
    }

    /// The balance as it started, the withdrawal cancelled, and `transfers` (each reversed if sent).
    fn rolled_back(transfers: &[&str]) -> Self {
        Self {
            balance: (START_CENTS, 0),
            withdrawal: Some("CANCELLED".to_owned()),
            transfers: transfers.iter().map(|s| (*s).to_owned()).collect(),
        }
    }
}

#[tokio::test]
async fn a_withdrawal_sends_the_money_once_and_deducts_it_leaving_nothing_frozen() {
    let mut stack = Stack::start().await;

    let saga = withdraw(&mut stack, 10_000, json!({})).await;

    assert_eq!(saga.status(), SagaStatus::Completed, "{saga:#?}");
    assert_eq!(step_statuses(&saga), [StepStatus::Succeeded; 4]);
    assert_eq!(
        Rows::of(&stack, &saga).await,
        Rows {
            balance: (START_CENTS - 10_000, 0),
            withdrawal: Some("COMPLETED".to_owned()),
            transfers: vec!["SENT".to_owned()],
        }
    );
    stack.stop().await;
}

#[tokio::test]
async fn a_withdrawal_over_the_balance_is_refused_before_anything_is_frozen() {
    let mut stack = Stack::start().await;

    let saga = withdraw(&mut stack, START_CENTS + 1, json!({})).await;

    assert_eq!(saga.status(), SagaStatus::Compensated, "{saga:#?}");
    assert_eq!(saga.failure_reason(), FailureReason::StepFailed);
    assert_eq!(saga.steps[0].status(), StepStatus::Failed);
    assert!(
        saga.failure_message.contains("cents available"),
        "{}",
        saga.failure_message
    );
    assert_eq!(
        Rows::of(&stack, &saga).await,
        Rows {
            balance: (START_CENTS, 0),
            withdrawal: None,
            transfers: vec![],
        }
    );
    stack.stop().await;
}

/// Refuses step number `step` (from 1), named `name`, and checks every step before it was compensated
/// and the money is back where it was.
async fn refused_at(step: usize, name: &str, transfers: &[&str]) {
    let mut stack = Stack::start().await;

    let saga = withdraw(&mut stack, 10_000, json!({name: "refuse"})).await;

    assert_eq!(saga.status(), SagaStatus::Compensated, "{saga:#?}");
    let mut expected = vec![StepStatus::Compensated; step - 1];
    expected.push(StepStatus::Failed);
    expected.resize(4, StepStatus::Skipped);
    assert_eq!(step_statuses(&saga), expected);
    assert_eq!(Rows::of(&stack, &saga).await, Rows::rolled_back(transfers));
    stack.stop().await;
}

#[tokio::test]
async fn a_refused_bank_transfer_unfreezes_the_amount() {
    refused_at(2, "EXECUTE_BANK_TRANSFER", &[]).await;
}

#[tokio::test]
async fn a_refused_deduction_reverses_the_transfer_and_unfreezes_the_amount() {
    refused_at(3, "DEDUCT_BALANCE", &["REVERSED"]).await;
}

#[tokio::test]
async fn a_refused_status_update_restores_reverses_and_unfreezes() {
    refused_at(4, "UPDATE_WITHDRAWAL_STATUS", &["REVERSED"]).await;
}

#[tokio::test]
async fn a_transfer_sent_on_every_attempt_whose_answers_are_lost_is_sent_once_and_reversed() {
    let mut stack = Stack::start_fast(Duration::from_secs(2)).await;

    // The bank would pay four times (it has no idempotency of its own); the barrier lets it pay once,
    // and once retries run out the saga reverses that one transfer.
    let saga = withdraw(
        &mut stack,
        10_000,
        json!({"EXECUTE_BANK_TRANSFER": "apply-then-fail"}),
    )
    .await;

    assert_eq!(saga.status(), SagaStatus::Compensated, "{saga:#?}");
    assert_eq!(saga.steps[1].attempts, 4);
    assert_eq!(saga.steps[1].status(), StepStatus::Compensated);
    assert_eq!(
        Rows::of(&stack, &saga).await,
        Rows::rolled_back(&["REVERSED"])
    );
    stack.stop().await;
}

#[tokio::test]
async fn lost_answers_and_a_hung_call_still_complete_with_one_transfer_and_one_deduction() {
    let mut stack = Stack::start_fast(Duration::from_secs(1)).await;

    let saga = withdraw(
        &mut stack,
        10_000,
        json!({
            "PRE_FREEZE_BALANCE": "apply-then-fail:2",
            "EXECUTE_BANK_TRANSFER": "hang:1",
            "DEDUCT_BALANCE": "apply-then-fail:1",
        }),
    )
    .await;

    assert_eq!(saga.status(), SagaStatus::Completed, "{saga:#?}");
    let attempts: Vec<u32> = saga.steps.iter().map(|step| step.attempts).collect();
    assert_eq!(attempts, [3, 2, 2, 1]);
    assert_eq!(
        Rows::of(&stack, &saga).await,
        Rows {
            balance: (START_CENTS - 10_000, 0),
            withdrawal: Some("COMPLETED".to_owned()),
            transfers: vec!["SENT".to_owned()],
        }
    );
    stack.stop().await;
}

#[tokio::test]
async fn a_failing_compensation_is_retried_until_the_transfer_is_reversed() {
    let mut stack = Stack::start_fast(Duration::from_secs(2)).await;

    let saga = withdraw(
        &mut stack,
        10_000,
        json!({
            "UPDATE_WITHDRAWAL_STATUS": "refuse",
            "EXECUTE_BANK_TRANSFER:compensate": "unavailable:2",
        }),
    )
    .await;

    assert_eq!(saga.status(), SagaStatus::Compensated, "{saga:#?}");
    assert_eq!(saga.steps[1].compensation_attempts, 3);
    assert_eq!(
        Rows::of(&stack, &saga).await,
        Rows::rolled_back(&["REVERSED"])
    );
    stack.stop().await;
}

/// The operator's bank reversal by hand, as `ReverseBankTransfer` would have made it: the transfer
/// reversed at the bank, the withdrawal back to FROZEN.
async fn reverse_by_hand(stack: &Stack, saga: &Saga) {
    for statement in [
        "UPDATE withdrawal.bank_transfers SET status = 'REVERSED', reversed_at = now()
         WHERE status = 'SENT'
           AND withdrawal_id = (SELECT id FROM withdrawal.withdrawals WHERE saga_id = $1)",
        "UPDATE withdrawal.withdrawals SET status = 'FROZEN' WHERE saga_id = $1",
    ] {
        sqlx::query(statement)
            .bind(saga_uuid(saga))
            .execute(&stack.demo_db)
            .await
            .expect("reverse by hand");
    }
}

fn resolve_transfer(saga: &Saga, step: &str, outcome: ResolveOutcome) -> ResolveSagaRequest {
    ResolveSagaRequest {
        saga_id: saga.saga_id.clone(),
        step: step.to_owned(),
        outcome: outcome.into(),
        note: "reversed at the bank by letter, reference 4711".to_owned(),
        reason: "this bank reverses transfers on paper only".to_owned(),
    }
}

#[tokio::test]
async fn a_manual_bank_reversal_parks_the_withdrawal_until_an_operator_reverses_it_by_hand() {
    // A bank that reverses transfers on paper only: EXECUTE_BANK_TRANSFER's compensation is manual.
    let manual = definitions::shipped_as("withdrawal", "withdrawal", |d| d.steps[1].manual = true);
    let dir = definitions::write_dir(&[manual]);
    let mut stack = Stack::start_in(dir.path()).await;

    let started = stack
        .client
        .start_saga(StartSagaRequest {
            saga_type: "withdrawal".to_owned(),
            payload: Some(object(json!({
                "merchantId": MERCHANT,
                "amountCents": 10_000,
                "faults": {"DEDUCT_BALANCE": "refuse"},
            }))),
            labels: [("payoutRef".to_owned(), "P-77".to_owned())].into(),
            ..StartSagaRequest::default()
        })
        .await
        .expect("StartSaga")
        .into_inner();
    let saga = stack.wait_terminal(&started.saga_id).await;

    // Parked at once at the manual reversal, nothing called: the money is sent and still frozen.
    assert_eq!(saga.status(), SagaStatus::Failed, "{saga:#?}");
    assert_eq!(saga.failure_reason(), FailureReason::CompensationFailed);
    assert!(
        saga.failure_message
            .contains("the compensation of EXECUTE_BANK_TRANSFER (ReverseBankTransfer) is manual"),
        "{}",
        saga.failure_message
    );
    use StepStatus::{Compensated, Compensating, Failed, Skipped, Succeeded};
    assert_eq!(
        step_statuses(&saga),
        [Succeeded, Compensating, Failed, Skipped]
    );
    assert!(saga.steps[1].manual_compensation);
    assert_eq!(saga.steps[1].compensation_attempts, 0);
    let parked_rows = Rows {
        balance: (START_CENTS - 10_000, 10_000),
        withdrawal: Some("TRANSFERRED".to_owned()),
        transfers: vec!["SENT".to_owned()],
    };
    assert_eq!(Rows::of(&stack, &saga).await, parked_rows);

    // The operator finds it by the label they know it by, among the parked sagas.
    let listed = stack
        .client
        .list_sagas(ListSagasRequest {
            statuses: vec![SagaStatus::Failed.into()],
            label: Some(Label {
                key: "payoutRef".to_owned(),
                value: "P-77".to_owned(),
            }),
            ..ListSagasRequest::default()
        })
        .await
        .expect("ListSagas")
        .into_inner();
    let ids: Vec<&str> = listed.sagas.iter().map(|s| s.saga_id.as_str()).collect();
    assert_eq!(ids, [saga.saga_id.as_str()]);

    // A retry cannot run a manual compensation; a resolution must name the parked step and outcome.
    let retry = stack
        .client
        .retry_saga(RetrySagaRequest {
            saga_id: saga.saga_id.clone(),
            reason: "try again".to_owned(),
        })
        .await
        .expect_err("retry refused");
    assert_eq!(retry.code(), Code::FailedPrecondition);
    assert!(
        retry
            .message()
            .contains("is manual: RetrySaga cannot run it"),
        "{}",
        retry.message()
    );
    for (step, outcome, expected) in [
        (
            "PRE_FREEZE_BALANCE",
            ResolveOutcome::Compensated,
            "parked at step EXECUTE_BANK_TRANSFER, not PRE_FREEZE_BALANCE",
        ),
        (
            "EXECUTE_BANK_TRANSFER",
            ResolveOutcome::Succeeded,
            "it can only be resolved as COMPENSATED",
        ),
    ] {
        let refused = stack
            .client
            .resolve_saga(resolve_transfer(&saga, step, outcome))
            .await
            .expect_err("resolve refused");
        assert_eq!(refused.code(), Code::FailedPrecondition);
        assert!(
            refused.message().contains(expected),
            "{}",
            refused.message()
        );
    }
    assert_eq!(Rows::of(&stack, &saga).await, parked_rows, "nothing moved");

    // The operator reverses the transfer by hand, then says so: the unfreeze runs, the money is back.
    reverse_by_hand(&stack, &saga).await;
    let resolved = stack
        .client
        .resolve_saga(resolve_transfer(
            &saga,
            "EXECUTE_BANK_TRANSFER",
            ResolveOutcome::Compensated,
        ))
        .await
        .expect("ResolveSaga")
        .into_inner()
        .saga
        .expect("saga");
    assert_eq!(resolved.status(), SagaStatus::Compensating);
    let saga = stack.wait_terminal(&saga.saga_id).await;
    assert_eq!(saga.status(), SagaStatus::Compensated, "{saga:#?}");
    assert_eq!(
        saga.failure_reason(),
        FailureReason::CompensationFailed,
        "the manual reversal stays on record"
    );
    assert_eq!(
        step_statuses(&saga),
        [Compensated, Compensated, Failed, Skipped]
    );
    let resolution = saga.steps[1].resolution.clone().expect("resolution");
    assert_eq!(resolution.outcome(), ResolveOutcome::Compensated);
    assert_eq!(
        resolution.note,
        "reversed at the bank by letter, reference 4711"
    );
    assert_eq!(
        resolution.reason,
        "this bank reverses transfers on paper only"
    );
    assert!(resolution.resolved_at.is_some());
    assert_eq!(
        Rows::of(&stack, &saga).await,
        Rows::rolled_back(&["REVERSED"])
    );

    let events = stack
        .client
        .get_saga_history(GetSagaHistoryRequest {
            saga_id: saga.saga_id.clone(),
        })
        .await
        .expect("GetSagaHistory")
        .into_inner()
        .events;
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind()).collect();
    assert_eq!(
        kinds[kinds.len() - 4..],
        [
            EventKind::SagaParked,
            EventKind::StepResolved,
            EventKind::StepCompensated,
            EventKind::SagaCompensated
        ]
    );
    let resolved = &events[events.len() - 3];
    assert_eq!(resolved.step, "EXECUTE_BANK_TRANSFER");
    assert_eq!(resolved.resolved_as(), ResolveOutcome::Compensated);
    assert_eq!(resolved.note, resolution.note);
    assert_eq!(resolved.operator_reason, resolution.reason);
    assert_eq!(events[events.len() - 2].step, "PRE_FREEZE_BALANCE");
    stack.stop().await;
}
