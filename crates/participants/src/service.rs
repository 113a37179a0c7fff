//! The demo services: names, default ports, actions and migrations.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

use saga_participant::Router;
use sqlx::PgPool;
use sqlx::migrate::{MigrateError, Migrator};

use crate::{
    app, billing, customer, device, gateway, inventory, notification, payment, sales, withdrawal,
};

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
    /// A payment gateway's orders and a simulated payment channel (payment_create): `CreateOrder`
    /// (`CancelOrder`), `CallPaymentChannel` (`CancelChannelPayment`).
    Gateway,
    /// App records and their packages in a content-addressed storage directory (app_upload):
    /// `CreateAppRecord` (`DeleteAppRecord`), `UploadToStorage` (`DeleteFromStorage`), `PublishApp`.
    App,
    /// A notification outbox (app_upload, order_creation): `NotifyAppAvailable`, `NotifyOrderCreated`.
    Notification,
    /// Customers and their credit (order_creation): `ValidateCustomer`, `UseCredit` (`RestoreCredit`).
    Customer,
    /// Stock and reservations (order_creation): `ReserveInventory` (`ReleaseReservation`).
    Inventory,
    /// Sales orders and their payments (order_creation): `CreateOrder` (`CancelOrder`),
    /// `ProcessPayment` (`RefundPayment`).
    Sales,
}

impl Service {
    /// Every service, in the order they are started and reported.
    pub const ALL: [Service; 10] = [
        Service::Billing,
        Service::Device,
        Service::Payment,
        Service::Withdrawal,
        Service::Gateway,
        Service::App,
        Service::Notification,
        Service::Customer,
        Service::Inventory,
        Service::Sales,
    ];

    /// The service's name: in readiness lines, logs, barrier rows, its schema and the coordinator's
    /// config.
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Billing => "billing",
            Service::Device => "device",
            Service::Payment => "payment",
            Service::Withdrawal => "withdrawal",
            Service::Gateway => "gateway",
            Service::App => "app",
            Service::Notification => "notification",
            Service::Customer => "customer",
            Service::Inventory => "inventory",
            Service::Sales => "sales",
        }
    }

    /// Where the binary listens by default: `0.0.0.0:50061` to `:50070`, in [`Service::ALL`] order.
    pub fn default_addr(self) -> SocketAddr {
        let port = match self {
            Service::Billing => 50061,
            Service::Device => 50062,
            Service::Payment => 50063,
            Service::Withdrawal => 50064,
            Service::Gateway => 50065,
            Service::App => 50066,
            Service::Notification => 50067,
            Service::Customer => 50068,
            Service::Inventory => 50069,
            Service::Sales => 50070,
        };
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))
    }

    /// The service's actions. `storage_dir` is where the app service keeps its objects; the others
    /// ignore it.
    pub fn router(self, storage_dir: &Path) -> Router {
        match self {
            Service::Billing => billing::router(),
            Service::Device => device::router(),
            Service::Payment => payment::router(),
            Service::Withdrawal => withdrawal::router(),
            Service::Gateway => gateway::router(),
            Service::App => app::router(storage_dir),
            Service::Notification => notification::router(),
            Service::Customer => customer::router(),
            Service::Inventory => inventory::router(),
            Service::Sales => sales::router(),
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
            Service::Gateway => sqlx::migrate!("./migrations/gateway"),
            Service::App => sqlx::migrate!("./migrations/app"),
            Service::Notification => sqlx::migrate!("./migrations/notification"),
            Service::Customer => sqlx::migrate!("./migrations/customer"),
            Service::Inventory => sqlx::migrate!("./migrations/inventory"),
            Service::Sales => sqlx::migrate!("./migrations/sales"),
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
