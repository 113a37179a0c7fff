//! gRPC types for sagad: the `saga.v1` coordinator and participant protocols, the descriptor set for
//! server reflection, conversions between `google.protobuf.Struct` and JSON, and from `saga_core` types
//! to their wire form, and the participant contract's wire details.

pub mod contract;
mod convert;
mod json;

pub use convert::{history_event, to_datetime};
pub use json::{json_to_struct, struct_to_json};

/// Generated code for package `saga.v1`.
#[allow(clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("saga.v1");
}

/// Encoded `FileDescriptorSet` of every `saga.v1` file, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("saga_descriptor");
