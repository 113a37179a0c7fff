//! `demo-participants`: serves the demo participants (billing, device, payment, withdrawal, gateway, app,
//! notification, customer, inventory, sales), each on its own port.
//!
//! Logs go to stderr. Once every listener is bound, stdout gets exactly one line per service,
//! `<service> listening on <addr>`, so a caller that passed port 0 learns the real ports.

/// jemalloc, as sagad uses (see why in its `main.rs`).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use participants::{DEFAULT_DATABASE_URL, DemoServices, Service, Settings};
use saga_participant::TlsFiles;
use saga_telemetry::LogFormat;
use tokio_util::sync::CancellationToken;

/// Serves the sagad demo participants (billing, device, payment, withdrawal, gateway, app, notification,
/// customer, inventory, sales).
#[derive(Debug, Parser)]
#[command(name = "demo-participants", version)]
struct Cli {
    /// Which service to run: one by name, or all.
    #[arg(long, default_value = "all", env = "DEMO_SERVICE", value_parser = selection())]
    service: Selection,
    /// Listen address of the billing service.
    #[arg(long, default_value_t = Service::Billing.default_addr(), env = "DEMO_BILLING_ADDR")]
    billing_addr: SocketAddr,
    /// Listen address of the device service.
    #[arg(long, default_value_t = Service::Device.default_addr(), env = "DEMO_DEVICE_ADDR")]
    device_addr: SocketAddr,
    /// Listen address of the payment service.
    #[arg(long, default_value_t = Service::Payment.default_addr(), env = "DEMO_PAYMENT_ADDR")]
    payment_addr: SocketAddr,
    /// Listen address of the withdrawal service.
    #[arg(long, default_value_t = Service::Withdrawal.default_addr(), env = "DEMO_WITHDRAWAL_ADDR")]
    withdrawal_addr: SocketAddr,
    /// Listen address of the gateway service.
    #[arg(long, default_value_t = Service::Gateway.default_addr(), env = "DEMO_GATEWAY_ADDR")]
    gateway_addr: SocketAddr,
    /// Listen address of the app service.
    #[arg(long, default_value_t = Service::App.default_addr(), env = "DEMO_APP_ADDR")]
    app_addr: SocketAddr,
    /// Listen address of the notification service.
    #[arg(long, default_value_t = Service::Notification.default_addr(), env = "DEMO_NOTIFICATION_ADDR")]
    notification_addr: SocketAddr,
    /// Listen address of the customer service.
    #[arg(long, default_value_t = Service::Customer.default_addr(), env = "DEMO_CUSTOMER_ADDR")]
    customer_addr: SocketAddr,
    /// Listen address of the inventory service.
    #[arg(long, default_value_t = Service::Inventory.default_addr(), env = "DEMO_INVENTORY_ADDR")]
    inventory_addr: SocketAddr,
    /// Listen address of the sales service.
    #[arg(long, default_value_t = Service::Sales.default_addr(), env = "DEMO_SALES_ADDR")]
    sales_addr: SocketAddr,
    /// PostgreSQL URL of the demo database (created if it does not exist).
    #[arg(long, default_value = DEFAULT_DATABASE_URL, env = "DEMO_DATABASE_URL")]
    database_url: String,
    /// Directory the app service keeps its packages in, and owns [default: sagad-demo-storage/<database>
    /// under the system's temporary directory].
    #[arg(long, env = "DEMO_STORAGE_DIR")]
    storage_dir: Option<PathBuf>,
    /// Serve TLS with this PEM certificate chain (every service); needs --tls-key.
    #[arg(long, env = "DEMO_TLS_CERT", requires = "tls_key", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "DEMO_TLS_KEY", requires = "tls_cert", value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Require callers (sagad) to present a certificate signed by this PEM CA (mTLS); needs --tls-cert.
    #[arg(
        long,
        env = "DEMO_TLS_CLIENT_CA",
        requires = "tls_cert",
        value_name = "FILE"
    )]
    tls_client_ca: Option<PathBuf>,
    /// How long in-flight calls may take to finish on shutdown (e.g. 10s, 500ms); a second SIGINT or
    /// SIGTERM exits at once.
    #[arg(long, default_value = "10s", env = "DEMO_SHUTDOWN_GRACE", value_parser = humantime::parse_duration)]
    shutdown_grace: Duration,
    /// Log format on stderr; the level comes from RUST_LOG (default info).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "DEMO_LOG_FORMAT")]
    log_format: LogFormat,
}

/// The `--service` argument: one service, or all of them (`None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Selection(Option<Service>);

/// Parses `--service`: `all` or a service's name, listed in `--help`.
fn selection() -> impl TypedValueParser<Value = Selection> {
    let names = std::iter::once("all").chain(Service::ALL.map(Service::as_str));
    PossibleValuesParser::new(names).map(|name| {
        Selection(
            Service::ALL
                .into_iter()
                .find(|service| service.as_str() == name),
        )
    })
}

impl Cli {
    /// The traces' `service.name`: the one service this process serves, or `demo-participants` for all.
    fn service_name(&self) -> &'static str {
        self.service.0.map_or("demo-participants", Service::as_str)
    }

    fn settings(&self) -> Settings {
        let addr = |service| match service {
            Service::Billing => self.billing_addr,
            Service::Device => self.device_addr,
            Service::Payment => self.payment_addr,
            Service::Withdrawal => self.withdrawal_addr,
            Service::Gateway => self.gateway_addr,
            Service::App => self.app_addr,
            Service::Notification => self.notification_addr,
            Service::Customer => self.customer_addr,
            Service::Inventory => self.inventory_addr,
            Service::Sales => self.sales_addr,
        };
        Settings {
            database_url: self.database_url.clone(),
            services: Service::ALL
                .into_iter()
                .filter(|service| self.service.0.is_none_or(|chosen| chosen == *service))
                .map(|service| (service, addr(service)))
                .collect(),
            storage_dir: self
                .storage_dir
                .clone()
                .unwrap_or_else(|| Settings::default_storage_dir(&self.database_url)),
            tls: self
                .tls_cert
                .clone()
                .zip(self.tls_key.clone())
                .map(|(cert, key)| TlsFiles {
                    cert,
                    key,
                    client_ca: self.tls_client_ca.clone(),
                }),
            shutdown_grace: self.shutdown_grace,
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // sqlx relays PostgreSQL notices ("relation already exists, skipping") at info: noise here.
    let telemetry = match saga_telemetry::init(
        cli.service_name(),
        cli.log_format,
        "info,sqlx::postgres::notice=warn",
    ) {
        Ok(telemetry) => telemetry,
        Err(err) => {
            eprintln!("demo-participants: {}", saga_shutdown::one_line(&err));
            return ExitCode::FAILURE;
        }
    };
    let result = run(cli).await;
    telemetry.shutdown().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!(
                "demo-participants: {}",
                saga_shutdown::one_line(err.as_ref())
            );
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let services = DemoServices::build(cli.settings()).await?;
    announce(&services)?;

    // The first SIGINT/SIGTERM drains, a second exits at once.
    let shutdown = CancellationToken::new();
    let running = services.run_until_stopped(shutdown.clone());
    saga_shutdown::until_stopped("demo-participants", shutdown, running).await??;
    Ok(())
}

/// The readiness lines: tests and scripts wait for them, so write them in one go and flush.
fn announce(services: &DemoServices) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    for (service, addr) in services.local_addrs() {
        writeln!(stdout, "{service} listening on {addr}")?;
    }
    stdout.flush()
}
