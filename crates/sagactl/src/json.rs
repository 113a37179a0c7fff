//! Proto messages as JSON, the way grpcurl prints them: the proto3 JSON mapping (lowerCamelCase field
//! names, enum value names, RFC 3339 timestamps, 64-bit integers as strings, default values left out),
//! produced through the same descriptors sagad serves by reflection.

use std::sync::LazyLock;

use prost::{Message, Name};
use prost_reflect::{DescriptorError, DescriptorPool, DynamicMessage};

use crate::cli::Output;
use crate::exit::Failure;

static POOL: LazyLock<Result<DescriptorPool, DescriptorError>> =
    LazyLock::new(|| DescriptorPool::decode(saga_proto::FILE_DESCRIPTOR_SET));

/// Prints `message` on stdout as pretty JSON.
pub fn print<M: Message + Name>(message: &M) -> Result<(), Failure> {
    println!("{}", to_json(message)?);
    Ok(())
}

/// With `--output json`, prints `message` and says so; with `table`, leaves the printing to the caller.
pub fn printed<M: Message + Name>(output: Output, message: &M) -> Result<bool, Failure> {
    match output {
        Output::Json => print(message).map(|()| true),
        Output::Table => Ok(false),
    }
}

/// `message` as pretty JSON.
pub fn to_json<M: Message + Name>(message: &M) -> Result<String, Failure> {
    let internal =
        |what: String| Failure::Local(format!("cannot print {}: {what}", M::full_name()));
    let pool = POOL.as_ref().map_err(|e| internal(e.to_string()))?;
    let descriptor = pool
        .get_message_by_name(&M::full_name())
        .ok_or_else(|| internal("no descriptor".to_owned()))?;
    let dynamic = DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())
        .map_err(|e| internal(e.to_string()))?;
    serde_json::to_string_pretty(&dynamic).map_err(|e| internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_types::Timestamp;
    use saga_proto::v1::{HistoryEvent, SagaStatus, StartSagaResponse};

    #[test]
    fn prints_camel_case_names_enum_names_and_leaves_defaults_out() {
        let response = StartSagaResponse {
            saga_id: "s1".to_owned(),
            status: SagaStatus::Running.into(),
            created: false,
            ..StartSagaResponse::default()
        };
        let json: serde_json::Value = serde_json::from_str(&to_json(&response).unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"sagaId": "s1", "status": "SAGA_STATUS_RUNNING"})
        );
    }

    #[test]
    fn prints_timestamps_in_rfc3339_and_64_bit_integers_as_strings() {
        let event = HistoryEvent {
            sequence: 7,
            recorded_at: Some(Timestamp {
                seconds: 1_700_000_000,
                nanos: 5_000_000,
            }),
            ..HistoryEvent::default()
        };
        let json: serde_json::Value = serde_json::from_str(&to_json(&event).unwrap()).unwrap();
        assert_eq!(json["sequence"], "7");
        assert_eq!(json["recordedAt"], "2023-11-14T22:13:20.005Z");
    }
}
