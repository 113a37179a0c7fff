//! Parsing and validation of definitions, field by field.

use super::*;

const PURCHASE: &str = r"
name: purchase_plan
version: 3
timeout: 5m
retry: {max_attempts: 4, initial_backoff: 1s, multiplier: 2.0, max_backoff: 30s, jitter: 0.2}
steps:
  - {name: VALIDATE_PLAN,   participant: billing, action: ValidatePlan,  timeout: 5s}
  - {name: CREATE_ORDER,    participant: billing, action: CreateOrder,   compensate: CancelOrder}
  - {name: ALLOCATE_DEVICE, participant: device,  action: AllocateDevice, compensate: ReleaseDevice, timeout: 30s}
  - {name: PROCESS_PAYMENT, participant: payment, action: Charge,        compensate: Refund}
  - {name: ACTIVATE_ORDER,  participant: billing, action: ActivateOrder, pivot: true}
";

fn participants() -> HashSet<String> {
    ["billing", "device", "payment"].map(String::from).into()
}

fn parse(text: &str) -> Result<Definition, DefinitionError> {
    Definition::from_yaml(text, &participants())
}

fn field_of(err: DefinitionError) -> String {
    match err {
        DefinitionError::Invalid { field, .. } => field,
        DefinitionError::Parse(p) => panic!("expected a validation error, got parse error {p}"),
    }
}

#[test]
fn a_step_can_reclassify_grpc_codes_and_keeps_the_default_table_for_the_rest() {
    let text = PURCHASE.replace(
        "action: ValidatePlan,",
        "action: ValidatePlan, errors: {NOT_FOUND: transient, UNAVAILABLE: refusal},",
    );
    let d = parse(&text).unwrap();
    let overridden = &d.steps[0];
    assert_eq!(
        overridden.error_kind(GrpcCode::NotFound),
        ErrorKind::Transient
    );
    assert_eq!(
        overridden.error_kind(GrpcCode::Unavailable),
        ErrorKind::Refusal
    );
    assert_eq!(overridden.error_kind(GrpcCode::Aborted), ErrorKind::Refusal);
    assert_eq!(
        overridden.error_kind(GrpcCode::Internal),
        ErrorKind::Transient
    );
    let plain = &d.steps[1];
    assert_eq!(plain.error_kind(GrpcCode::NotFound), ErrorKind::Refusal);
    assert_eq!(
        plain.error_kind(GrpcCode::Unavailable),
        ErrorKind::Transient
    );
}

#[test]
fn parses_the_purchase_plan_definition_with_defaults_filled_in() {
    let d = parse(PURCHASE).unwrap();
    assert_eq!(d.name, "purchase_plan");
    assert_eq!(d.version, 3);
    assert_eq!(d.timeout, Some(Duration::from_secs(300)));
    assert_eq!(d.steps.len(), 5);
    assert_eq!(d.pivot_index(), Some(4));
    assert_eq!(d.timeout_for(0), Duration::from_secs(5));
    assert_eq!(
        d.timeout_for(1),
        Duration::from_secs(30),
        "default step timeout"
    );
    assert_eq!(d.compensation, RetryPolicy::compensation_default());
    assert_eq!(d.steps[1].compensate.as_deref(), Some("CancelOrder"));
}

#[test]
fn a_compensation_can_be_marked_manual_and_snapshots_without_the_flag_still_load() {
    let text = PURCHASE.replace("compensate: Refund}", "compensate: Refund, manual: true}");
    let d = parse(&text).unwrap();
    assert!(d.steps[3].manual);
    assert!(!d.steps[1].manual);
    // Snapshots stored before the flag existed have no `manual` key.
    let mut snapshot = serde_json::to_value(parse(PURCHASE).unwrap()).unwrap();
    assert!(snapshot["steps"][3].get("manual").is_none());
    snapshot["steps"][3]["manual"] = serde_json::Value::Bool(true);
    let back: Definition = serde_json::from_value(snapshot).unwrap();
    assert_eq!(back, d);
}

#[test]
fn a_definition_survives_a_json_snapshot_round_trip() {
    let d = parse(PURCHASE).unwrap();
    let snapshot = serde_json::to_value(&d).unwrap();
    let back: Definition = serde_json::from_value(snapshot).unwrap();
    assert_eq!(back, d);
}

#[test]
fn rejects_duplicate_step_names_naming_the_field() {
    let text = PURCHASE.replace("name: CREATE_ORDER", "name: VALIDATE_PLAN");
    assert_eq!(field_of(parse(&text).unwrap_err()), "steps[1].name");
}

#[test]
fn rejects_unknown_participants_and_lists_the_configured_ones() {
    let text = PURCHASE.replace("participant: device", "participant: warehouse");
    let err = parse(&text).unwrap_err();
    assert_eq!(
        err.to_string(),
        "steps[2].participant: unknown participant \"warehouse\" (configured: billing, device, payment)"
    );
}

#[test]
fn rejects_insane_values() {
    let cases = [
        (PURCHASE.replace("version: 3", "version: 0"), "version"),
        (
            PURCHASE.replace("timeout: 5s", "timeout: 0s"),
            "steps[0].timeout",
        ),
        (PURCHASE.replace("timeout: 5m", "timeout: 30d"), "timeout"),
        (
            PURCHASE.replace("max_attempts: 4", "max_attempts: 0"),
            "retry.max_attempts",
        ),
        (
            PURCHASE.replace("multiplier: 2.0", "multiplier: 0.5"),
            "retry.multiplier",
        ),
        (
            PURCHASE.replace("jitter: 0.2", "jitter: 1.5"),
            "retry.jitter",
        ),
        (
            PURCHASE.replace("initial_backoff: 1s", "initial_backoff: 1m"),
            "retry.initial_backoff",
        ),
        (
            PURCHASE.replace("name: purchase_plan", "name: 'purchase plan'"),
            "name",
        ),
        (
            PURCHASE.replace(
                "action: ActivateOrder, pivot: true",
                "action: ActivateOrder, pivot: true, compensate: Undo",
            ),
            "steps[4].compensate",
        ),
        (
            PURCHASE.replace(
                "action: ValidatePlan,",
                "action: ValidatePlan, pivot: true,",
            ),
            "steps[1].compensate",
        ),
        (
            PURCHASE.replace(
                "action: ValidatePlan,",
                "action: ValidatePlan, manual: true,",
            ),
            "steps[0].manual",
        ),
        (
            PURCHASE.replace(
                "action: ValidatePlan,",
                "action: ValidatePlan, errors: {NOT_FOUN: transient},",
            ),
            "steps[0].errors",
        ),
        (
            PURCHASE.replace(
                "action: ValidatePlan,",
                "action: ValidatePlan, errors: {OK: refusal},",
            ),
            "steps[0].errors",
        ),
        (
            PURCHASE.replace(
                "action: ValidatePlan,",
                "action: ValidatePlan, errors: {INTERNAL: invalid_output},",
            ),
            "steps[0].errors",
        ),
    ];
    for (text, field) in cases {
        assert_eq!(field_of(parse(&text).unwrap_err()), field, "{text}");
    }
}

#[test]
fn rejects_unknown_keys_and_empty_step_lists() {
    let typo = PURCHASE.replace("timeout: 5m", "timout: 5m");
    assert!(matches!(parse(&typo), Err(DefinitionError::Parse(m)) if m.contains("timout")));
    let empty = "name: x\nversion: 1\nsteps: []\n";
    assert_eq!(field_of(parse(empty).unwrap_err()), "steps");
}
#[test]
fn missing_keys_are_the_needed_keys_absent_or_null_in_the_state_in_declared_order() {
    let text = PURCHASE.replace(
        "action: Charge,",
        "action: Charge, needs: [orderId, amountCents, userId],",
    );
    let d = parse(&text).unwrap();
    let payment = &d.steps[3];
    let state = |value: serde_json::Value| match value {
        serde_json::Value::Object(map) => map,
        _ => unreachable!("an object"),
    };
    assert_eq!(
        payment.missing_keys(&state(serde_json::json!({"userId": "u1"}))),
        ["orderId", "amountCents"]
    );
    assert_eq!(
        payment.missing_keys(&state(
            serde_json::json!({"userId": "u1", "orderId": null, "amountCents": 0})
        )),
        ["orderId"]
    );
    let full = serde_json::json!({"userId": "u1", "orderId": "o1", "amountCents": 999});
    assert!(payment.missing_keys(&state(full.clone())).is_empty());
    assert!(
        d.steps[0].missing_keys(&state(full)).is_empty(),
        "a step without needs"
    );
}

#[test]
fn needs_provides_and_input_must_be_identifiers_listed_once() {
    let cases = [
        (
            PURCHASE.replace(
                "action: Charge,",
                "action: Charge, needs: [orderId, orderId],",
            ),
            "steps[3].needs",
        ),
        (
            PURCHASE.replace(
                "action: Charge,",
                "action: Charge, provides: ['payment id'],",
            ),
            "steps[3].provides",
        ),
        (
            PURCHASE.replace("timeout: 5m", "timeout: 5m\ninput: ['']"),
            "input",
        ),
    ];
    for (text, field) in cases {
        assert_eq!(field_of(parse(&text).unwrap_err()), field, "{text}");
    }
}

/// PURCHASE with its data flow declared: the start payload, what each step sets and what each needs.
fn declared() -> String {
    PURCHASE
        .replace("timeout: 5m", "timeout: 5m\ninput: [userId, planId]")
        .replace(
            "action: ValidatePlan,",
            "action: ValidatePlan, provides: [amountCents],",
        )
        .replace(
            "action: CreateOrder,",
            "action: CreateOrder, needs: [userId, planId], provides: [orderId],",
        )
        .replace(
            "action: AllocateDevice,",
            "action: AllocateDevice, needs: [orderId], provides: [deviceId],",
        )
        .replace(
            "action: Charge,",
            "action: Charge, needs: [orderId, amountCents], provides: [paymentId],",
        )
        .replace(
            "action: ActivateOrder,",
            "action: ActivateOrder, needs: [orderId],",
        )
}

#[test]
fn needs_covered_by_the_input_or_an_earlier_step_raise_no_warning() {
    let d = parse(&declared()).unwrap();
    assert_eq!(d.unprovided_needs(), []);
    let snapshot = serde_json::to_value(&d).unwrap();
    let back: Definition = serde_json::from_value(snapshot).unwrap();
    assert_eq!(back, d, "needs, provides and input survive the snapshot");
}

#[test]
fn a_need_nothing_earlier_provides_is_reported_with_its_step() {
    // couponCode is nowhere; deviceId is only provided by a later step.
    let text = declared()
        .replace(
            "needs: [orderId, amountCents]",
            "needs: [orderId, amountCents, couponCode]",
        )
        .replace(
            "needs: [userId, planId]",
            "needs: [userId, planId, deviceId]",
        );
    let d = parse(&text).unwrap();
    let found: Vec<String> = d
        .unprovided_needs()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        found,
        [
            "step CREATE_ORDER needs \"deviceId\", which neither the input nor an earlier step provides",
            "step PROCESS_PAYMENT needs \"couponCode\", which neither the input nor an earlier step provides",
        ]
    );
}

#[test]
fn needs_are_not_judged_where_the_declarations_leave_them_unknowable() {
    let text = declared().replace(
        "needs: [orderId, amountCents]",
        "needs: [orderId, couponCode]",
    );
    // Without `input`, nothing is knowable.
    let no_input = parse(&text.replace("\ninput: [userId, planId]", "")).unwrap();
    assert_eq!(no_input.unprovided_needs(), []);
    // ALLOCATE_DEVICE does not say what it sets: from there on, any key may be in the state.
    let silent_step = parse(&text.replace(", provides: [deviceId]", "")).unwrap();
    assert_eq!(silent_step.unprovided_needs(), []);
    // Declared `provides: []`, it sets nothing, and the missing coupon is known.
    let sets_nothing = parse(&text.replace("provides: [deviceId]", "provides: []")).unwrap();
    assert_eq!(
        sets_nothing.unprovided_needs(),
        [UnprovidedNeed {
            step: "PROCESS_PAYMENT".to_owned(),
            key: "couponCode".to_owned()
        }]
    );
}
