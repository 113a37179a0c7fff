//! The participant contract's vocabulary (DESIGN.md §1), without a gRPC dependency: the status codes a
//! participant answers with, by their canonical names, and which of them are definite business refusals.
//! The engine classifies answers with it, definitions override it by name, and the participant SDK builds
//! its refusals from it, so the three cannot disagree.

use std::fmt;
use std::str::FromStr;

use crate::ErrorKind;

/// A gRPC status code, numbered as on the wire and named as the gRPC specification spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GrpcCode {
    /// `OK`
    Ok = 0,
    /// `CANCELLED`
    Cancelled = 1,
    /// `UNKNOWN`
    Unknown = 2,
    /// `INVALID_ARGUMENT`
    InvalidArgument = 3,
    /// `DEADLINE_EXCEEDED`
    DeadlineExceeded = 4,
    /// `NOT_FOUND`
    NotFound = 5,
    /// `ALREADY_EXISTS`
    AlreadyExists = 6,
    /// `PERMISSION_DENIED`
    PermissionDenied = 7,
    /// `RESOURCE_EXHAUSTED`
    ResourceExhausted = 8,
    /// `FAILED_PRECONDITION`
    FailedPrecondition = 9,
    /// `ABORTED`
    Aborted = 10,
    /// `OUT_OF_RANGE`
    OutOfRange = 11,
    /// `UNIMPLEMENTED`
    Unimplemented = 12,
    /// `INTERNAL`
    Internal = 13,
    /// `UNAVAILABLE`
    Unavailable = 14,
    /// `DATA_LOSS`
    DataLoss = 15,
    /// `UNAUTHENTICATED`
    Unauthenticated = 16,
}

impl GrpcCode {
    /// Every code, in wire order.
    pub const ALL: [GrpcCode; 17] = [
        GrpcCode::Ok,
        GrpcCode::Cancelled,
        GrpcCode::Unknown,
        GrpcCode::InvalidArgument,
        GrpcCode::DeadlineExceeded,
        GrpcCode::NotFound,
        GrpcCode::AlreadyExists,
        GrpcCode::PermissionDenied,
        GrpcCode::ResourceExhausted,
        GrpcCode::FailedPrecondition,
        GrpcCode::Aborted,
        GrpcCode::OutOfRange,
        GrpcCode::Unimplemented,
        GrpcCode::Internal,
        GrpcCode::Unavailable,
        GrpcCode::DataLoss,
        GrpcCode::Unauthenticated,
    ];

    /// The canonical name, e.g. `FAILED_PRECONDITION`: how definitions (`errors:`), the barrier and the
    /// saga log's error messages spell it.
    pub const fn name(self) -> &'static str {
        match self {
            GrpcCode::Ok => "OK",
            GrpcCode::Cancelled => "CANCELLED",
            GrpcCode::Unknown => "UNKNOWN",
            GrpcCode::InvalidArgument => "INVALID_ARGUMENT",
            GrpcCode::DeadlineExceeded => "DEADLINE_EXCEEDED",
            GrpcCode::NotFound => "NOT_FOUND",
            GrpcCode::AlreadyExists => "ALREADY_EXISTS",
            GrpcCode::PermissionDenied => "PERMISSION_DENIED",
            GrpcCode::ResourceExhausted => "RESOURCE_EXHAUSTED",
            GrpcCode::FailedPrecondition => "FAILED_PRECONDITION",
            GrpcCode::Aborted => "ABORTED",
            GrpcCode::OutOfRange => "OUT_OF_RANGE",
            GrpcCode::Unimplemented => "UNIMPLEMENTED",
            GrpcCode::Internal => "INTERNAL",
            GrpcCode::Unavailable => "UNAVAILABLE",
            GrpcCode::DataLoss => "DATA_LOSS",
            GrpcCode::Unauthenticated => "UNAUTHENTICATED",
        }
    }

    /// The code with wire number `number`; unknown numbers are `UNKNOWN`, as gRPC itself reads them.
    pub fn from_number(number: i32) -> GrpcCode {
        GrpcCode::ALL
            .into_iter()
            .find(|code| *code as i32 == number)
            .unwrap_or(GrpcCode::Unknown)
    }

    /// The refusal this code stands for, if it is one of the business refusals.
    pub const fn refusal(self) -> Option<Refusal> {
        match self {
            GrpcCode::Aborted => Some(Refusal::Aborted),
            GrpcCode::FailedPrecondition => Some(Refusal::FailedPrecondition),
            GrpcCode::InvalidArgument => Some(Refusal::InvalidArgument),
            GrpcCode::NotFound => Some(Refusal::NotFound),
            GrpcCode::AlreadyExists => Some(Refusal::AlreadyExists),
            GrpcCode::PermissionDenied => Some(Refusal::PermissionDenied),
            GrpcCode::OutOfRange => Some(Refusal::OutOfRange),
            _ => None,
        }
    }

    /// How the contract treats a participant answering with this code, unless a step's `errors`
    /// overrides it: the business refusals are definite, everything else may have happened and is retried.
    pub const fn default_kind(self) -> ErrorKind {
        match self.refusal() {
            Some(_) => ErrorKind::Refusal,
            None => ErrorKind::Transient,
        }
    }
}

impl fmt::Display for GrpcCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a gRPC code's canonical name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a gRPC code")]
pub struct UnknownCode(pub String);

impl FromStr for GrpcCode {
    type Err = UnknownCode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        GrpcCode::ALL
            .into_iter()
            .find(|code| code.name() == s)
            .ok_or_else(|| UnknownCode(s.to_owned()))
    }
}

/// The business refusals: codes by which a participant says, definitely, that a step did not and will not
/// happen. The coordinator does not retry them; the saga compensates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// `ABORTED`: the step conflicts with what already happened.
    Aborted,
    /// `FAILED_PRECONDITION`: the system is not in a state that allows the step.
    FailedPrecondition,
    /// `INVALID_ARGUMENT`: the payload is missing a field or holds a bad value.
    InvalidArgument,
    /// `NOT_FOUND`: something the step refers to does not exist.
    NotFound,
    /// `ALREADY_EXISTS`: the step would create something that exists.
    AlreadyExists,
    /// `PERMISSION_DENIED`: the saga's subject may not do this.
    PermissionDenied,
    /// `OUT_OF_RANGE`: a value is outside what the step accepts.
    OutOfRange,
}

impl Refusal {
    /// Every refusal.
    pub const ALL: [Refusal; 7] = [
        Refusal::Aborted,
        Refusal::FailedPrecondition,
        Refusal::InvalidArgument,
        Refusal::NotFound,
        Refusal::AlreadyExists,
        Refusal::PermissionDenied,
        Refusal::OutOfRange,
    ];

    /// The status code the coordinator sees.
    pub const fn code(self) -> GrpcCode {
        match self {
            Refusal::Aborted => GrpcCode::Aborted,
            Refusal::FailedPrecondition => GrpcCode::FailedPrecondition,
            Refusal::InvalidArgument => GrpcCode::InvalidArgument,
            Refusal::NotFound => GrpcCode::NotFound,
            Refusal::AlreadyExists => GrpcCode::AlreadyExists,
            Refusal::PermissionDenied => GrpcCode::PermissionDenied,
            Refusal::OutOfRange => GrpcCode::OutOfRange,
        }
    }

    /// The canonical name, e.g. `FAILED_PRECONDITION`; also how the barrier stores it.
    pub const fn as_str(self) -> &'static str {
        self.code().name()
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of the refusal codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a refusal code")]
pub struct UnknownRefusal(pub String);

impl FromStr for Refusal {
    type Err = UnknownRefusal;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<GrpcCode>()
            .ok()
            .and_then(GrpcCode::refusal)
            .ok_or_else(|| UnknownRefusal(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_round_trip() {
        for code in GrpcCode::ALL {
            assert_eq!(code.name().parse::<GrpcCode>(), Ok(code));
            assert_eq!(GrpcCode::from_number(code as i32), code);
        }
        assert_eq!(GrpcCode::from_number(99), GrpcCode::Unknown);
        assert!("NOT_A_CODE".parse::<GrpcCode>().is_err());
    }

    #[test]
    fn exactly_the_seven_business_codes_are_refusals() {
        let refusals: Vec<GrpcCode> = GrpcCode::ALL
            .into_iter()
            .filter(|code| code.default_kind() == ErrorKind::Refusal)
            .collect();
        assert_eq!(refusals, {
            let mut codes = Refusal::ALL.map(Refusal::code).to_vec();
            codes.sort();
            codes
        });
        for refusal in Refusal::ALL {
            assert_eq!(refusal.as_str().parse::<Refusal>(), Ok(refusal));
            assert_eq!(refusal.code().refusal(), Some(refusal));
        }
        assert!("UNAVAILABLE".parse::<Refusal>().is_err());
        assert_eq!(
            GrpcCode::DeadlineExceeded.default_kind(),
            ErrorKind::Transient
        );
    }
}
