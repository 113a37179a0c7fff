//! Start-up seam shared by the binary and in-process tests: [`DemoServices::build`] connects, migrates
//! and binds (port 0 allowed), [`DemoServices::run_until_stopped`] serves until cancelled, then drains
//! within the shutdown grace period.

use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use saga_participant::{
    ParticipantService, Router, StepConnections, TlsFileError, TlsFiles, serve_with_tls,
};
use saga_shutdown::{TaskFailure, Tasks};
use sqlx::migrate::{MigrateDatabase, MigrateError};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::ServerTlsConfig;
use tracing::info;

use crate::Service;
use crate::app::{StorageError, prepare_storage};
use crate::faults::FaultInjection;

/// The demo database used when none is configured.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/sagad_demo";

/// How long start-up waits for the database before giving up with a clear error.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long in-flight calls may take to finish on shutdown when nothing else is configured.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// PostgreSQL URL of the demo database, shared by the services; created if it does not exist.
    pub database_url: String,
    /// The services to run and the address each binds; port 0 picks a free port.
    pub services: BTreeMap<Service, SocketAddr>,
    /// Where the app service keeps its packages, one file per content (created with the first). The
    /// service owns it: at start it removes the files its database does not count.
    pub storage_dir: PathBuf,
    /// Serve TLS with these files (every service the same certificate); plaintext when `None`.
    pub tls: Option<TlsFiles>,
    /// How long in-flight calls and open streams may take to finish once shutdown starts; what is still
    /// open then is cut.
    pub shutdown_grace: Duration,
}

impl Settings {
    /// Every service on `127.0.0.1` with a port the OS picks: what tests use.
    pub fn ephemeral(database_url: impl Into<String>, storage_dir: impl Into<PathBuf>) -> Self {
        Self {
            database_url: database_url.into(),
            services: Service::ALL
                .into_iter()
                .map(|service| (service, SocketAddr::from((Ipv4Addr::LOCALHOST, 0))))
                .collect(),
            storage_dir: storage_dir.into(),
            tls: None,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }

    /// The storage directory used when none is configured: one per demo database under the system's
    /// temporary directory, so two stacks on one machine never share (and never clean up) each other's
    /// packages.
    pub fn default_storage_dir(database_url: &str) -> PathBuf {
        let database = PgConnectOptions::from_str(database_url)
            .ok()
            .and_then(|options| options.get_database().map(str::to_owned))
            .unwrap_or_else(|| "sagad_demo".to_owned());
        std::env::temp_dir()
            .join("sagad-demo-storage")
            .join(database)
    }
}

/// Start-up failed; nothing is served.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The database URL does not parse.
    #[error("invalid demo database url")]
    DatabaseUrl(#[source] sqlx::Error),
    /// The database server refused or failed the connection.
    #[error("cannot reach the demo database {target}")]
    Database {
        /// `<database> at <host>:<port>`, never the credentials.
        target: String,
        /// Why.
        #[source]
        source: sqlx::Error,
    },
    /// The database server did not answer in time.
    #[error("timed out connecting to the demo database {target}")]
    DatabaseTimeout {
        /// `<database> at <host>:<port>`.
        target: String,
    },
    /// A TLS file cannot be read.
    #[error("cannot load the TLS files")]
    Tls(#[from] TlsFileError),
    /// A migration failed.
    #[error("cannot migrate the demo database")]
    Migrate(#[from] MigrateError),
    /// The app service's storage directory cannot be used.
    #[error("cannot prepare the app storage")]
    Storage(#[from] StorageError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr} for {service}")]
    Bind {
        /// The service whose listener failed.
        service: Service,
        /// The address it tried.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// A service's server failed or its task panicked; the other services were stopped with it.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct RunError(#[from] TaskFailure);

/// Creates or upgrades the SDK's barrier table and the schemas of `services`.
pub async fn migrate(pool: &PgPool, services: &[Service]) -> Result<(), MigrateError> {
    saga_participant::migrate(pool).await?;
    for service in services {
        service.migrate(pool).await?;
    }
    Ok(())
}

/// The demo services, connected, migrated and bound, not yet serving.
pub struct DemoServices {
    pool: PgPool,
    storage_dir: PathBuf,
    listeners: Vec<BoundService>,
    tls: Option<ServerTlsConfig>,
    shutdown_grace: Duration,
}

struct BoundService {
    service: Service,
    addr: SocketAddr,
    listener: TcpListener,
}

impl DemoServices {
    /// Connects to the database (creating it if missing), runs the migrations and binds a listener per
    /// configured service.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let tls = settings
            .tls
            .as_ref()
            .map(TlsFiles::server_config)
            .transpose()?;
        let pool = connect(&settings.database_url).await?;
        let services: Vec<Service> = settings.services.keys().copied().collect();
        migrate(&pool, &services).await?;
        if services.contains(&Service::App) {
            prepare_storage(&pool, &settings.storage_dir).await?;
        }
        let mut listeners = Vec::with_capacity(settings.services.len());
        for (service, addr) in settings.services {
            let bind_error = |source| StartupError::Bind {
                service,
                addr,
                source,
            };
            let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
            let addr = listener.local_addr().map_err(bind_error)?;
            listeners.push(BoundService {
                service,
                addr,
                listener,
            });
        }
        Ok(Self {
            pool,
            storage_dir: settings.storage_dir,
            listeners,
            tls,
            shutdown_grace: settings.shutdown_grace,
        })
    }

    /// The address `service` is bound to (the real port when 0 was asked), if it is configured.
    pub fn local_addr(&self, service: Service) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|bound| bound.service == service)
            .map(|bound| bound.addr)
    }

    /// Every configured service and its bound address, in [`Service::ALL`] order.
    pub fn local_addrs(&self) -> Vec<(Service, SocketAddr)> {
        self.listeners
            .iter()
            .map(|bound| (bound.service, bound.addr))
            .collect()
    }

    /// Serves every service until `shutdown` is cancelled or one of them fails (which stops the others),
    /// then lets in-flight calls finish within the shutdown grace period.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), RunError> {
        let stop = shutdown.child_token();
        let tasks = Tasks::new();
        // The services share one database, so they share the connections their steps run on too.
        let connections = StepConnections::from(self.pool.clone());
        for bound in self.listeners {
            info!(service = %bound.service, addr = %bound.addr, "participant listening");
            let router = bound.service.router(&self.storage_dir);
            spawn(&tasks, bound, router, &connections, self.tls.clone(), &stop);
        }

        tokio::select! {
            () = stop.cancelled() => {}
            () = tasks.failed() => {}
        }
        stop.cancel();
        // A call cut at the end of the grace period may still hold a connection: closing the pool
        // would wait for it.
        if tasks.drain(self.shutdown_grace).await {
            self.pool.close().await;
        }
        tasks
            .failure()
            .map_or(Ok(()), |failure| Err(RunError(failure)))
    }
}

fn spawn(
    tasks: &Tasks,
    bound: BoundService,
    router: Router,
    connections: &StepConnections,
    tls: Option<ServerTlsConfig>,
    stop: &CancellationToken,
) {
    let participant = ParticipantService::new(bound.service.as_str(), connections.clone(), router);
    let participant = FaultInjection::new(participant, stop.clone());
    let served = serve_with_tls(bound.listener, participant, tls, stop.clone());
    tasks.spawn(bound.service.as_str(), served);
}

async fn connect(url: &str) -> Result<PgPool, StartupError> {
    let options = PgConnectOptions::from_str(url).map_err(StartupError::DatabaseUrl)?;
    let target = format!(
        "{} at {}:{}",
        // PostgreSQL's default database is the user's name.
        options.get_database().unwrap_or(options.get_username()),
        options.get_host(),
        options.get_port()
    );
    let connecting = async {
        ensure_database_exists(url).await?;
        PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(CONNECT_TIMEOUT)
            // Steps run on connections opened through this pool and then kept by the participant SDK
            // (`StepConnections`), which tests them neither on checkout nor on return.
            .connect_with(options)
            .await
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok(pool)) => Ok(pool),
        Ok(Err(source)) => Err(StartupError::Database { target, source }),
        Err(_) => Err(StartupError::DatabaseTimeout { target }),
    }
}

/// Creates the demo database on first start so that a fresh PostgreSQL is enough to run the demo.
async fn ensure_database_exists(url: &str) -> Result<(), sqlx::Error> {
    if Postgres::database_exists(url).await? {
        return Ok(());
    }
    match Postgres::create_database(url).await {
        Ok(()) => {
            info!("created the demo database");
            Ok(())
        }
        // Another process starting at the same moment may have won the race.
        Err(_) if Postgres::database_exists(url).await? => Ok(()),
        Err(err) => Err(err),
    }
}
