//! The participant contract's wire details, shared by the caller (sagad's engine) and the callee (the
//! participant SDK), so the two cannot drift: metadata names and the canonical names of gRPC codes.

use tonic::Code;

/// gRPC metadata entry that also carries `StepRequest.idempotency_key`.
pub const IDEMPOTENCY_KEY_HEADER: &str = "x-idempotency-key";

/// gRPC metadata entry that also carries `StepRequest.generation`.
pub const GENERATION_HEADER: &str = "x-saga-generation";

/// gRPC metadata entry carrying the saga's W3C trace context.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// The canonical name of a gRPC code, as saga definitions spell it (`errors: {NOT_FOUND: transient}`).
pub const fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}
