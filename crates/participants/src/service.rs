//! The four demo services: names, default ports, actions and migrations.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};

use saga_participant::Router;
use sqlx::PgPool;
use sqlx::migrate::{MigrateError, Migrator};

use crate::{billing, device, payment, withdrawal};

/// One demo participant service. Each owns a PostgreSQL schema of the same name, with its own migrations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Service {
    /// Plans and orders: `ValidatePlan`, `CreateOrder` (compensation `CancelOrder`), `ActivateOrder`,
    /// `MarkOrderRefunded`.
    Billing,
    /// Devices, quotas and a simulated container runtime: `AllocateDevice` (`ReleaseDevice`),
    /// `ReleaseOrderDevices`, and device_creation's `CheckQuota`, `CreateContainer`
    /// (`DestroyContainer`), `CreateDeviceRecord` (`DeleteDeviceRecord`), `InitializeDevice`
    /// (`ResetDevice`), `IncrementQuotaUsage` (`DecrementQuotaUsage`).
    Device,
    /// Payments and a simulated provider: `Charge` (`Refund`), and payment_refund's `MarkRefunding`
    /// (`RestorePayment`), `ProviderRefund`, `MarkRefunded`.
    Payment,
    /// Merchant balances and a simulated bank: `FreezeBalance` (`UnfreezeBalance`),
    /// `ExecuteBankTransfer` (`ReverseBankTransfer`), `DeductBalance` (`RestoreBalance`),
    /// `CompleteWithdrawal` (`ReopenWithdrawal`).
    Withdrawal,
}

impl Service {
    /// Every service, in the order they are started and reported.
    pub const ALL: [Service; 4] = [
        Service::Billing,
        Service::Device,
        Service::Payment,
        Service::Withdrawal,
    ];

    /// The service's name: in readiness lines, logs, barrier rows, its schema and the coordinator's
    /// config.
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Billing => "billing",
            Service::Device => "device",
            Service::Payment => "payment",
            Service::Withdrawal => "withdrawal",
        }
    }

    /// Where the binary listens by default: `0.0.0.0:50061`, `:50062`, `:50063`, `:50064`.
    pub fn default_addr(self) -> SocketAddr {
        let port = match self {
            Service::Billing => 50061,
            Service::Device => 50062,
            Service::Payment => 50063,
            Service::Withdrawal => 50064,
        };
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))
    }

    /// The service's actions.
    pub fn router(self) -> Router {
        match self {
            Service::Billing => billing::router(),
            Service::Device => device::router(),
            Service::Payment => payment::router(),
            Service::Withdrawal => withdrawal::router(),
        }
    }

    /// Creates or upgrades the service's schema.
    ///
    /// The services' migrations (and the SDK's) share sqlx's `_sqlx_migrations` table, so each migrator
    /// tolerates versions it does not know.
    pub async fn migrate(self, pool: &PgPool) -> Result<(), MigrateError> {
        let mut migrator: Migrator = match self {
            Service::Billing => sqlx::migrate!("./migrations/billing"),
            Service::Device => sqlx::migrate!("./migrations/device"),
            Service::Payment => sqlx::migrate!("./migrations/payment"),
            Service::Withdrawal => sqlx::migrate!("./migrations/withdrawal"),
        };
        migrator.set_ignore_missing(true);
        migrator.run(pool).await
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
