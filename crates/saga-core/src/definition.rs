//! Saga definitions: the YAML files in `definitions/`, their defaults and their validation.
//!
//! A definition is parsed and validated once at load; a saga stores the snapshot it started with, so
//! editing or removing a file never changes a saga in flight.
//!
//! A step may declare the state keys it `needs` (its preconditions): [`StepDefinition::missing_keys`]
//! tells which are absent from a saga's state, and the coordinator fails the step without calling the
//! participant. What can be known at load is checked by [`Definition::unprovided_needs`], from the keys
//! the start payload carries (`input`) and those each step's output sets (`provides`).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::contract::GrpcCode;
use crate::{ErrorKind, JsonMap};

/// Longest duration accepted anywhere in a definition; anything longer is almost surely a typo.
const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// A named, versioned list of steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Definition {
    /// Saga type name callers pass to `StartSaga`, e.g. `purchase_plan`.
    pub name: String,
    /// Version, from 1; stored with every saga started from this definition.
    pub version: u32,
    /// Whole-saga deadline; past it an unfinished saga is compensated with reason `TIMED_OUT`.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    /// Per-call deadline for steps that do not set their own.
    #[serde(default = "default_step_timeout", with = "humantime_serde")]
    pub step_timeout: Duration,
    /// Retry policy for forward steps that do not set their own.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Retry policy for compensations; when it runs out the saga parks in `FAILED`.
    #[serde(default = "RetryPolicy::compensation_default")]
    pub compensation: RetryPolicy,
    /// The keys the start payload carries, when declared: with the steps' `provides`, what lets the load
    /// tell a `needs` nothing provides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Vec<String>>,
    /// The steps, run in order.
    pub steps: Vec<StepDefinition>,
}

/// One step: a call to a participant, with an optional compensating call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepDefinition {
    /// Unique name within the saga, e.g. `ALLOCATE_DEVICE`.
    pub name: String,
    /// Participant service name, resolved to an endpoint by the coordinator's configuration.
    pub participant: String,
    /// Forward action sent to the participant.
    pub action: String,
    /// Compensating action; `None` for steps with nothing to undo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compensate: Option<String>,
    /// Per-call deadline overriding the definition's `step_timeout`.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Duration>,
    /// Retry policy overriding the definition's `retry`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// The point of no return: once it succeeds the saga only moves forward.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pivot: bool,
    /// The compensation is done by hand (a refund at a provider without an API, a reversal the bank
    /// only takes on paper): when the saga reaches it, nothing is called and the saga parks in `FAILED`
    /// (`COMPENSATION_FAILED`) until an operator has done it and says so with `ResolveSaga`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub manual: bool,
    /// Overrides of the default classification of the participant's gRPC codes, by code name, e.g.
    /// `{NOT_FOUND: transient}` for a participant that answers NOT_FOUND while a replica catches up.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub errors: BTreeMap<String, ErrorKind>,
    /// State keys the step needs: when one is missing (absent or null) the step fails as refused without
    /// the participant being called, and the saga compensates what ran.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<String>,
    /// The keys the step's output sets, when declared (`[]`: none). Only the load reads it, to check the
    /// later steps' `needs`; the coordinator merges whatever the participant answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provides: Option<Vec<String>>,
}

/// A key a step needs that neither the start payload nor an earlier step provides, by their
/// declarations: a warning at load, since a participant may set keys it does not declare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnprovidedNeed {
    /// The step that needs the key.
    pub step: String,
    /// The key.
    pub key: String,
}

impl fmt::Display for UnprovidedNeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "step {} needs {:?}, which neither the input nor an earlier step provides",
            self.step, self.key
        )
    }
}

/// How often and how fast to retry a call whose outcome is transient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Attempts in all, including the first.
    pub max_attempts: u32,
    /// Delay before the second attempt.
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Growth factor of the delay per attempt.
    pub multiplier: f64,
    /// Cap on the delay.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Random spread of each delay, as a fraction (0.2 = ±20%).
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            initial_backoff: Duration::from_secs(1),
            multiplier: 2.0,
            max_backoff: Duration::from_secs(30),
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// Compensations must eventually happen, so they retry far longer by default.
    pub fn compensation_default() -> Self {
        Self {
            max_attempts: 20,
            initial_backoff: Duration::from_secs(2),
            multiplier: 2.0,
            max_backoff: Duration::from_secs(300),
            jitter: 0.2,
        }
    }
}

fn default_step_timeout() -> Duration {
    Duration::from_secs(30)
}

/// Why a definition was rejected. `field` is a path such as `steps[2].timeout`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DefinitionError {
    /// The text is not a well-formed definition.
    #[error("invalid yaml: {0}")]
    Parse(String),
    /// A field has a value that cannot work.
    #[error("{field}: {message}")]
    Invalid {
        /// Path of the offending field.
        field: String,
        /// What is wrong with it.
        message: String,
    },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> DefinitionError {
    DefinitionError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

impl Definition {
    /// Parses a YAML definition and validates it against the participants the coordinator knows.
    pub fn from_yaml(
        text: &str,
        known_participants: &HashSet<String>,
    ) -> Result<Self, DefinitionError> {
        let definition: Self =
            serde_norway::from_str(text).map_err(|e| DefinitionError::Parse(e.to_string()))?;
        definition.validate(known_participants)?;
        Ok(definition)
    }

    /// Checks everything that would make the definition fail at run time.
    pub fn validate(&self, known_participants: &HashSet<String>) -> Result<(), DefinitionError> {
        check_identifier("name", &self.name)?;
        if self.version == 0 {
            return Err(invalid("version", "must be 1 or more"));
        }
        if let Some(timeout) = self.timeout {
            check_duration("timeout", timeout)?;
        }
        check_duration("step_timeout", self.step_timeout)?;
        self.retry.validate("retry")?;
        self.compensation.validate("compensation")?;
        if self.steps.is_empty() {
            return Err(invalid("steps", "a saga needs at least one step"));
        }
        if let Some(input) = &self.input {
            check_keys("input", input)?;
        }

        let mut names = HashSet::new();
        let mut pivot: Option<&str> = None;
        for (i, step) in self.steps.iter().enumerate() {
            let at = |field: &str| format!("steps[{i}].{field}");
            check_identifier(&at("name"), &step.name)?;
            if !names.insert(step.name.as_str()) {
                return Err(invalid(
                    at("name"),
                    format!("duplicate step name {:?}", step.name),
                ));
            }
            step.validate(&at, known_participants)?;
            if let (Some(pivot), Some(_)) = (pivot, &step.compensate) {
                return Err(invalid(
                    at("compensate"),
                    format!("step comes after the pivot {pivot:?} and is never compensated"),
                ));
            }
            if step.pivot {
                if let Some(first) = pivot {
                    return Err(invalid(
                        at("pivot"),
                        format!("{first:?} is already the pivot"),
                    ));
                }
                pivot = Some(&step.name);
            }
        }
        Ok(())
    }

    /// Index of the pivot step, if the definition has one.
    pub fn pivot_index(&self) -> Option<usize> {
        self.steps.iter().position(|s| s.pivot)
    }

    /// The retry policy that applies to step `index`.
    pub fn retry_for(&self, index: usize) -> &RetryPolicy {
        self.steps[index].retry.as_ref().unwrap_or(&self.retry)
    }

    /// The per-call deadline that applies to step `index`.
    pub fn timeout_for(&self, index: usize) -> Duration {
        self.steps[index].timeout.unwrap_or(self.step_timeout)
    }

    /// The `needs` that neither `input` nor an earlier step's `provides` covers, where that is knowable:
    /// only when `input` is declared and every step before the needing one declares `provides`.
    pub fn unprovided_needs(&self) -> Vec<UnprovidedNeed> {
        let Some(input) = &self.input else {
            return Vec::new();
        };
        let mut provided: HashSet<&str> = input.iter().map(String::as_str).collect();
        let mut unprovided = Vec::new();
        for step in &self.steps {
            unprovided.extend(
                step.needs
                    .iter()
                    .filter(|key| !provided.contains(key.as_str()))
                    .map(|key| UnprovidedNeed {
                        step: step.name.clone(),
                        key: key.clone(),
                    }),
            );
            // A step that does not say what it sets makes every later key possible.
            let Some(provides) = &step.provides else {
                break;
            };
            provided.extend(provides.iter().map(String::as_str));
        }
        unprovided
    }
}

impl StepDefinition {
    /// The checks of one step on its own (`at` names its fields); the checks across steps (unique names,
    /// one pivot, nothing compensable after it) are [`Definition::validate`]'s.
    fn validate(
        &self,
        at: &dyn Fn(&str) -> String,
        known_participants: &HashSet<String>,
    ) -> Result<(), DefinitionError> {
        if !known_participants.contains(&self.participant) {
            let mut known: Vec<_> = known_participants.iter().map(String::as_str).collect();
            known.sort_unstable();
            return Err(invalid(
                at("participant"),
                format!(
                    "unknown participant {:?} (configured: {})",
                    self.participant,
                    known.join(", ")
                ),
            ));
        }
        check_identifier(&at("action"), &self.action)?;
        if let Some(compensate) = &self.compensate {
            check_identifier(&at("compensate"), compensate)?;
            if self.pivot {
                return Err(invalid(
                    at("compensate"),
                    "a pivot is the point of no return and is never compensated",
                ));
            }
        }
        if self.manual && self.compensate.is_none() {
            return Err(invalid(
                at("manual"),
                "marks the compensation as done by hand, so the step needs a compensate action \
                 naming it",
            ));
        }
        if let Some(timeout) = self.timeout {
            check_duration(&at("timeout"), timeout)?;
        }
        if let Some(retry) = &self.retry {
            retry.validate(&at("retry"))?;
        }
        self.check_errors(&at("errors"))?;
        check_keys(&at("needs"), &self.needs)?;
        if let Some(provides) = &self.provides {
            check_keys(&at("provides"), provides)?;
        }
        Ok(())
    }

    /// `errors` maps gRPC error codes (not `OK`) to refusal or transient only.
    fn check_errors(&self, field: &str) -> Result<(), DefinitionError> {
        if let Some((code, _)) = self
            .errors
            .iter()
            .find(|(_, kind)| **kind == ErrorKind::InvalidOutput)
        {
            return Err(invalid(
                field,
                format!("{code}: a code is classified as refusal or transient"),
            ));
        }
        if let Some(code) = self
            .errors
            .keys()
            .find(|code| !matches!(code.parse::<GrpcCode>(), Ok(code) if code != GrpcCode::Ok))
        {
            let codes: Vec<&str> = GrpcCode::ALL[1..].iter().map(|c| c.name()).collect();
            return Err(invalid(
                field,
                format!(
                    "{code:?} is not a gRPC error code (one of {})",
                    codes.join(", ")
                ),
            ));
        }
        Ok(())
    }

    /// The keys of `needs` that `state` lacks (absent or null), in the order declared.
    pub fn missing_keys<'a>(&'a self, state: &JsonMap) -> Vec<&'a str> {
        self.needs
            .iter()
            .filter(|key| {
                state
                    .get(key.as_str())
                    .is_none_or(serde_json::Value::is_null)
            })
            .map(String::as_str)
            .collect()
    }

    /// How a participant's non-OK gRPC code is treated for this step: the step's `errors` override,
    /// else the contract's default ([`GrpcCode::default_kind`]).
    pub fn error_kind(&self, code: GrpcCode) -> ErrorKind {
        self.errors
            .get(code.name())
            .copied()
            .unwrap_or(code.default_kind())
    }
}

impl RetryPolicy {
    fn validate(&self, field: &str) -> Result<(), DefinitionError> {
        if self.max_attempts == 0 {
            return Err(invalid(
                format!("{field}.max_attempts"),
                "must be 1 or more",
            ));
        }
        check_duration(&format!("{field}.max_backoff"), self.max_backoff)?;
        if self.initial_backoff > self.max_backoff {
            return Err(invalid(
                format!("{field}.initial_backoff"),
                "must not exceed max_backoff",
            ));
        }
        if !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
            return Err(invalid(
                format!("{field}.multiplier"),
                "must be 1.0 or more",
            ));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(invalid(
                format!("{field}.jitter"),
                "must be between 0.0 and 1.0",
            ));
        }
        Ok(())
    }
}

fn check_identifier(field: &str, value: &str) -> Result<(), DefinitionError> {
    let valid = !value.is_empty()
        && value.len() <= 128
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
    if valid {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("{value:?} must be 1-128 characters of letters, digits, '_', '-' or '.'"),
        ))
    }
}

/// State keys: identifiers, each once.
fn check_keys(field: &str, keys: &[String]) -> Result<(), DefinitionError> {
    let mut seen = HashSet::new();
    for key in keys {
        check_identifier(field, key)?;
        if !seen.insert(key) {
            return Err(invalid(field, format!("{key:?} is listed twice")));
        }
    }
    Ok(())
}

fn check_duration(field: &str, d: Duration) -> Result<(), DefinitionError> {
    if d.is_zero() {
        return Err(invalid(field, "must be longer than zero"));
    }
    if d > MAX_DURATION {
        return Err(invalid(field, "must be at most 7 days"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
