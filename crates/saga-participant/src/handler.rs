//! The trait a participant author implements: the business work of each action, nothing about retries.

use std::future::Future;

use serde_json::{Map, Value};
use sqlx::PgConnection;

use crate::{Direction, StepCall, StepError};

/// What a step hands back to the saga: merged into the saga state (top-level keys, later wins).
pub type StepOutput = Map<String, Value>;

/// The business side of a participant service. [`crate::Router`] implements it from a table of
/// `async fn`s, one per action; implement it by hand only to dispatch in some other way.
///
/// Both methods run inside the barrier's database transaction: do every database write through `tx` so
/// that the work and the barrier row commit together, or not at all. Dispatch on [`StepCall::action`].
pub trait StepHandler: Send + Sync + 'static {
    /// Whether `action` exists in `direction`. The service answers `INVALID_ARGUMENT` for any other
    /// action before it touches the database. The default accepts every action.
    fn handles(&self, direction: Direction, action: &str) -> bool {
        let _ = (direction, action);
        true
    }

    /// Runs a step forward. Called at most once per (saga, step) that commits; a refusal rolls back
    /// whatever was written through `tx` and is replayed to every retry.
    fn execute(
        &self,
        call: &StepCall,
        tx: &mut PgConnection,
    ) -> impl Future<Output = Result<StepOutput, StepError>> + Send;

    /// Undoes a step whose forward work committed. Never called when the forward step did not run or
    /// was refused (the barrier answers OK itself). Any error is retried by the coordinator, refusals
    /// included: a compensation cannot refuse.
    fn compensate(
        &self,
        call: &StepCall,
        tx: &mut PgConnection,
    ) -> impl Future<Output = Result<StepOutput, StepError>> + Send;
}

/// Builds a step output from `(key, value)` pairs: `output([("orderId", json!(id))])`.
pub fn output<const N: usize>(fields: [(&str, Value); N]) -> StepOutput {
    fields
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect()
}
