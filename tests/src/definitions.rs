//! The shipped saga definitions rewritten for tests: same steps, pivots and compensations, but short step
//! deadlines and millisecond backoffs, so that tests exercising `hang` or retries finish in moments
//! instead of waiting out production timeouts; and the test-only definitions kept in `tests/definitions`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use saga_core::{Definition, RetryPolicy};
use tempfile::TempDir;

use crate::repo_root;

/// The participants the shipped definitions use.
pub const PARTICIPANTS: [&str; 10] = [
    "billing",
    "device",
    "payment",
    "withdrawal",
    "gateway",
    "app",
    "notification",
    "customer",
    "inventory",
    "sales",
];

/// The test-only definitions (`tests/definitions`), e.g. `loyalty_purchase`, whose steps span the Rust and
/// the TypeScript participants.
pub fn test_only_dir() -> PathBuf {
    repo_root().join("tests/definitions")
}

/// Parses every shipped definition (`definitions/*.yaml`).
///
/// # Panics
/// When a file cannot be read or is not valid: the shipped definitions must load.
pub fn shipped() -> Vec<Definition> {
    let participants: HashSet<String> = PARTICIPANTS.map(String::from).into();
    let dir = repo_root().join("definitions");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("definitions directory")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).expect("read definition");
            Definition::from_yaml(&text, &participants)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .collect()
}

/// Writes the shipped definitions to a temporary directory with every step deadline set to
/// `step_timeout` and every backoff between 5 and 20 ms; retry and compensation attempt counts, steps,
/// pivots and saga deadlines stay as shipped.
///
/// # Panics
/// When the directory cannot be written.
pub fn fast(step_timeout: Duration) -> TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for mut definition in shipped() {
        definition.step_timeout = step_timeout;
        shorten(&mut definition.retry);
        shorten(&mut definition.compensation);
        for step in &mut definition.steps {
            step.timeout = None;
            if let Some(retry) = &mut step.retry {
                shorten(retry);
            }
        }
        write(dir.path(), &definition);
    }
    dir
}

/// The shipped `purchase_plan` under the name `name`, changed by `adjust`: for tests that need timings
/// of their own on the real steps.
///
/// # Panics
/// When the shipped definitions do not include `purchase_plan`.
pub fn purchase_plan_as(name: &str, adjust: impl FnOnce(&mut Definition)) -> Definition {
    shipped_as("purchase_plan", name, adjust)
}

/// The shipped definition `saga_type` under the name `name`, changed by `adjust`.
///
/// # Panics
/// When no shipped definition is named `saga_type`.
pub fn shipped_as(saga_type: &str, name: &str, adjust: impl FnOnce(&mut Definition)) -> Definition {
    let mut definition = shipped()
        .into_iter()
        .find(|d| d.name == saga_type)
        .unwrap_or_else(|| panic!("{saga_type} is shipped"));
    definition.name = name.to_owned();
    adjust(&mut definition);
    definition
}

/// A retry policy from its five numbers (backoffs in milliseconds).
pub fn policy(
    max_attempts: u32,
    initial_backoff_ms: u64,
    multiplier: f64,
    max_backoff_ms: u64,
    jitter: f64,
) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_backoff: Duration::from_millis(initial_backoff_ms),
        multiplier,
        max_backoff: Duration::from_millis(max_backoff_ms),
        jitter,
    }
}

/// Writes `definitions` to a temporary directory for sagad's `definitions_dir`.
///
/// # Panics
/// When the directory cannot be written.
pub fn write_dir(definitions: &[Definition]) -> TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for definition in definitions {
        write(dir.path(), definition);
    }
    dir
}

fn shorten(policy: &mut RetryPolicy) {
    policy.initial_backoff = Duration::from_millis(5);
    policy.max_backoff = Duration::from_millis(20);
}

/// JSON is YAML, and `Definition` serializes to exactly the fields it parses.
fn write(dir: &Path, definition: &Definition) {
    let text = serde_json::to_string_pretty(definition).expect("serialize definition");
    std::fs::write(dir.join(format!("{}.yaml", definition.name)), text).expect("write definition");
}
