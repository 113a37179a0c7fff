//! The three demo services.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};

use saga_participant::StepError;

/// One demo participant service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Service {
    /// Plans and orders: `ValidatePlan`, `CreateOrder`, `ActivateOrder`; compensation `CancelOrder`.
    Billing,
    /// Devices: `AllocateDevice`; compensation `ReleaseDevice`.
    Device,
    /// Payments: `Charge`; compensation `Refund`.
    Payment,
}

impl Service {
    /// Every service, in the order they are started and reported.
    pub const ALL: [Service; 3] = [Service::Billing, Service::Device, Service::Payment];

    /// The service's name: in readiness lines, logs, barrier rows and the coordinator's config.
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Billing => "billing",
            Service::Device => "device",
            Service::Payment => "payment",
        }
    }

    /// Where the binary listens by default: `0.0.0.0:50061`, `:50062`, `:50063`.
    pub fn default_addr(self) -> SocketAddr {
        let port = match self {
            Service::Billing => 50061,
            Service::Device => 50062,
            Service::Payment => 50063,
        };
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))
    }

    /// The refusal for an action this service does not implement in the requested direction.
    pub(crate) fn unknown_action(self, action: &str) -> StepError {
        StepError::invalid_argument(format!("unknown action {action} for service {self}"))
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
