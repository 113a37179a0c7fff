//! Payload checks the demo services share.

use saga_participant::{StepCall, StepError};

/// A required integer field that must be above zero, such as an amount in cents or a quantity.
pub(crate) fn positive(call: &StepCall, field: &str) -> Result<i64, StepError> {
    let value = call.i64(field)?;
    if value <= 0 {
        return Err(StepError::invalid_argument(format!(
            "{field} must be positive, got {value}"
        )));
    }
    Ok(value)
}
