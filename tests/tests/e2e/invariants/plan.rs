//! Random sagas and faults, and the outcome each must reach.
//!
//! Faults are drawn from the definitions themselves, so that a saga can never be parked for an operator:
//! before the pivot anything goes (refusals, transient failures that outlast every retry, answers lost on
//! every attempt or given after every deadline); at the pivot only a refusal or a failure that a retry overcomes; after it, and in
//! compensations, only failures that a retry overcomes. From the faults alone the outcome is known:
//! COMPENSATED if a fault before the pivot (or a refused pivot) can never succeed, COMPLETED otherwise.

use fastrand::Rng;
use saga_core::Definition;
use serde_json::{Map, Value, json};

/// The outcome a saga must reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Completed,
    Compensated,
    /// Decided by a race the test does not control (two refunds of one payment).
    Either,
}

/// One saga to run.
#[derive(Debug, Clone)]
pub struct Planned {
    pub saga_type: &'static str,
    pub payload: Value,
    pub expect: Expect,
}

/// Where a step sits relative to its saga's pivot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    BeforePivot,
    Pivot,
    AfterPivot,
}

/// Draws faults for the steps of `definition`: `(faults, whether they force a compensation)`.
pub fn faults(rng: &mut Rng, definition: &Definition) -> (Value, bool) {
    let pivot = definition.pivot_index();
    let mut faults = Map::new();
    let mut forced = false;
    for (index, step) in definition.steps.iter().enumerate() {
        let place = match pivot {
            Some(p) if index == p => Place::Pivot,
            Some(p) if index > p => Place::AfterPivot,
            _ => Place::BeforePivot,
        };
        if !forced && rng.f64() < 0.25 {
            let (mode, forces) = forward_fault(rng, place);
            faults.insert(step.name.clone(), json!(mode));
            forced = forces;
        }
        if step.compensate.is_some() && rng.f64() < 0.15 {
            faults.insert(
                format!("{}:compensate", step.name),
                json!(recoverable_fault(rng)),
            );
        }
    }
    (Value::Object(faults), forced)
}

/// A fault for a forward step, and whether it makes the step fail for good.
fn forward_fault(rng: &mut Rng, place: Place) -> (String, bool) {
    let roll = rng.u32(0..10);
    match (place, roll) {
        (Place::BeforePivot | Place::Pivot, 0 | 1) => ("refuse".to_owned(), true),
        (Place::BeforePivot, 2) => ("unavailable".to_owned(), true),
        (Place::BeforePivot, 3) => ("apply-then-fail".to_owned(), true),
        (Place::BeforePivot, 4) if rng.bool() => ("hang".to_owned(), true),
        // Done at once, answered after every deadline (STEP_TIMEOUT).
        (Place::BeforePivot, 5) if rng.bool() => ("late:1s".to_owned(), true),
        _ => (recoverable_fault(rng), false),
    }
}

/// A fault that a retry overcomes (fewer failing attempts than any policy allows).
fn recoverable_fault(rng: &mut Rng) -> String {
    let attempts = rng.u32(1..=3);
    match rng.u32(0..10) {
        0..=2 => format!("unavailable:{attempts}"),
        3..=5 => format!("apply-then-fail:{attempts}"),
        6 => "hang:1".to_owned(),
        7 => format!("late:{}ms", rng.u32(5..=60)),
        _ => format!("delay:{}ms", rng.u32(5..=60)),
    }
}

/// A saga of `saga_type` with `payload` plus random faults.
pub fn saga(
    rng: &mut Rng,
    definitions: &[Definition],
    saga_type: &'static str,
    mut payload: Value,
) -> Planned {
    let definition = definitions
        .iter()
        .find(|definition| definition.name == saga_type)
        .unwrap_or_else(|| panic!("no shipped definition {saga_type}"));
    let (faults, forced) = faults(rng, definition);
    payload["faults"] = faults;
    Planned {
        saga_type,
        payload,
        expect: if forced {
            Expect::Compensated
        } else {
            Expect::Completed
        },
    }
}
