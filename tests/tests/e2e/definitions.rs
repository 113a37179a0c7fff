//! The shipped definitions are the seven flows of DESIGN.md §1: their steps in order, which steps can be
//! undone, where the point of no return is, the seeds' per-step deadlines, and what each step needs.

use std::time::Duration;

use e2e_tests::definitions;
use saga_core::Definition;

fn shipped(name: &str) -> Definition {
    definitions::shipped()
        .into_iter()
        .find(|definition| definition.name == name)
        .unwrap_or_else(|| panic!("definitions/{name}.yaml is missing"))
}

/// `(step, participant, has a compensation)` for every step.
fn shape(definition: &Definition) -> Vec<(&str, &str, bool)> {
    definition
        .steps
        .iter()
        .map(|step| {
            (
                step.name.as_str(),
                step.participant.as_str(),
                step.compensate.is_some(),
            )
        })
        .collect()
}

#[test]
fn exactly_the_seven_flows_ship() {
    let mut names: Vec<_> = definitions::shipped()
        .into_iter()
        .map(|definition| definition.name)
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "app_upload",
            "device_creation",
            "order_creation",
            "payment_create",
            "payment_refund",
            "purchase_plan",
            "withdrawal"
        ]
    );
}

#[test]
fn purchase_plan_activates_the_order_as_its_pivot() {
    let purchase = shipped("purchase_plan");
    assert_eq!(
        shape(&purchase),
        [
            ("VALIDATE_PLAN", "billing", false),
            ("CREATE_ORDER", "billing", true),
            ("ALLOCATE_DEVICE", "device", true),
            ("PROCESS_PAYMENT", "payment", true),
            ("ACTIVATE_ORDER", "billing", false),
        ]
    );
    assert_eq!(purchase.pivot_index(), Some(4));
}

#[test]
fn payment_refund_pivots_on_the_provider_refund_and_then_only_moves_forward() {
    let refund = shipped("payment_refund");
    assert_eq!(
        shape(&refund),
        [
            ("SET_REFUNDING_STATUS", "payment", true),
            ("CALL_PROVIDER_REFUND", "payment", false),
            ("UPDATE_PAYMENT_STATUS", "payment", false),
            ("UPDATE_ORDER_STATUS", "billing", false),
            ("RELEASE_DEVICES", "device", false),
        ]
    );
    assert_eq!(refund.pivot_index(), Some(1));
    for index in 1..refund.steps.len() {
        assert!(
            refund.retry_for(index).max_attempts > refund.retry.max_attempts,
            "{} retries longer than the steps before the pivot",
            refund.steps[index].name
        );
    }
}

#[test]
fn withdrawal_can_undo_every_step_and_has_the_specified_deadlines() {
    let withdrawal = shipped("withdrawal");
    assert_eq!(
        shape(&withdrawal),
        [
            ("PRE_FREEZE_BALANCE", "withdrawal", true),
            ("EXECUTE_BANK_TRANSFER", "withdrawal", true),
            ("DEDUCT_BALANCE", "withdrawal", true),
            ("UPDATE_WITHDRAWAL_STATUS", "withdrawal", true),
        ]
    );
    assert_eq!(withdrawal.pivot_index(), None);
    let deadlines: Vec<_> = (0..4).map(|index| withdrawal.timeout_for(index)).collect();
    assert_eq!(
        deadlines,
        [30, 120, 30, 10].map(Duration::from_secs),
        "DESIGN.md §1"
    );
}

#[test]
fn device_creation_can_undo_everything_after_the_quota_check() {
    let creation = shipped("device_creation");
    assert_eq!(
        shape(&creation),
        [
            ("CHECK_QUOTA", "device", false),
            ("CREATE_CONTAINER", "device", true),
            ("CREATE_DEVICE_RECORD", "device", true),
            ("INITIALIZE_DEVICE", "device", true),
            ("UPDATE_QUOTA_USAGE", "device", true),
        ]
    );
    assert_eq!(creation.pivot_index(), None);
}

#[test]
fn payment_create_can_cancel_the_channel_payment_and_has_the_seeds_deadlines() {
    let create = shipped("payment_create");
    assert_eq!(
        shape(&create),
        [
            ("CREATE_ORDER", "gateway", true),
            ("CALL_PAYMENT_CHANNEL", "gateway", true),
        ]
    );
    assert_eq!(create.pivot_index(), None);
    let deadlines: Vec<_> = (0..2).map(|index| create.timeout_for(index)).collect();
    assert_eq!(deadlines, [30, 60].map(Duration::from_secs));
    assert_eq!(create.steps[1].needs, ["orderId"]);
}

#[test]
fn app_upload_publishes_as_its_pivot_and_notifies_after_it() {
    let upload = shipped("app_upload");
    assert_eq!(
        shape(&upload),
        [
            ("CREATE_APP_RECORD", "app", true),
            ("UPLOAD_TO_STORAGE", "app", true),
            ("UPDATE_APP_STATUS", "app", false),
            ("SEND_NOTIFICATION", "notification", false),
        ]
    );
    assert_eq!(upload.pivot_index(), Some(2));
    assert!(upload.retry_for(3).max_attempts > upload.retry.max_attempts);
}

#[test]
fn order_creation_undoes_everything_before_the_notification_which_is_its_pivot() {
    let order = shipped("order_creation");
    assert_eq!(
        shape(&order),
        [
            ("VALIDATE_CUSTOMER", "customer", false),
            ("RESERVE_INVENTORY", "inventory", true),
            ("CREATE_ORDER", "sales", true),
            ("PROCESS_PAYMENT", "sales", true),
            ("UPDATE_CUSTOMER", "customer", true),
            ("SEND_NOTIFICATION", "notification", false),
        ]
    );
    assert_eq!(order.pivot_index(), Some(5));
    assert_eq!(
        order.timeout,
        Some(Duration::from_secs(300)),
        "the seed's 5 minutes"
    );
    assert_eq!(
        order.steps[2].needs,
        [
            "customerId",
            "sku",
            "quantity",
            "amountCents",
            "reservationId",
            "reservationExpiresAt"
        ]
    );
}

#[test]
fn the_new_flows_declare_their_data_and_every_need_is_provided() {
    for name in ["payment_create", "app_upload", "order_creation"] {
        let definition = shipped(name);
        assert!(definition.input.is_some(), "{name} declares its input");
        assert!(
            definition.steps.iter().all(|step| step.provides.is_some()),
            "{name}: every step declares what it provides"
        );
        assert_eq!(definition.unprovided_needs(), [], "{name}");
    }
}
