//! Every action the shipped saga definitions name is one its participant serves, in the right direction.

use std::collections::HashSet;
use std::path::Path;

use anyhow::{Context, Result};
use participants::Service;
use saga_core::Definition;
use saga_participant::{Direction, StepHandler};

#[test]
fn every_action_in_the_shipped_definitions_is_served_by_its_participant() -> Result<()> {
    let known: HashSet<String> = Service::ALL.map(|s| s.as_str().to_owned()).into();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../definitions");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.extension().is_none_or(|ext| ext != "yaml") {
            continue;
        }
        let definition = Definition::from_yaml(&std::fs::read_to_string(&path)?, &known)
            .with_context(|| path.display().to_string())?;
        for step in &definition.steps {
            let service = Service::ALL
                .into_iter()
                .find(|service| service.as_str() == step.participant)
                .context("validated participant")?;
            let router = service.router(Path::new("unused"));
            assert!(
                router.handles(Direction::Execute, &step.action),
                "{}: {service} has no action {}",
                definition.name,
                step.action
            );
            if let Some(compensate) = &step.compensate {
                assert!(
                    router.handles(Direction::Compensate, compensate),
                    "{}: {service} has no compensation {compensate}",
                    definition.name
                );
            }
            checked += 1;
        }
    }
    assert_eq!(
        checked,
        5 + 5 + 4 + 5 + 2 + 4 + 6,
        "every step of the seven flows"
    );
    Ok(())
}
