//! The participant contract's wire details, shared by the caller (sagad's engine) and the callee (the
//! participant SDK), so the two cannot drift: metadata names and
//! the conversion between tonic's status codes and the contract's ([`saga_core::contract`]).

use saga_core::contract::GrpcCode;
use tonic::Code;

/// gRPC metadata entry that also carries `StepRequest.idempotency_key`.
pub const IDEMPOTENCY_KEY_HEADER: &str = "x-idempotency-key";

/// gRPC metadata entry that also carries `StepRequest.generation`.
pub const GENERATION_HEADER: &str = "x-saga-generation";

/// gRPC metadata entry carrying the saga's W3C trace context.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// The contract's code for a gRPC status code.
pub fn grpc_code(code: Code) -> GrpcCode {
    GrpcCode::from_number(code as i32)
}

/// The gRPC status code for the contract's code.
pub fn tonic_code(code: GrpcCode) -> Code {
    Code::from_i32(code as i32)
}

/// The canonical name of a gRPC code, as saga definitions spell it (`errors: {NOT_FOUND: transient}`).
pub fn code_name(code: Code) -> &'static str {
    grpc_code(code).name()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_grpc_code_maps_to_the_contract_and_back() {
        for number in 0..=16 {
            let code = Code::from_i32(number);
            assert_eq!(tonic_code(grpc_code(code)), code);
        }
        assert_eq!(code_name(Code::FailedPrecondition), "FAILED_PRECONDITION");
    }
}
