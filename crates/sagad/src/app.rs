//! The start-up seam: [`Application::build`] connects, migrates, loads definitions and binds (port 0 is
//! fine); [`Application::run_until_stopped`] serves until the token is cancelled or a background task
//! fails, then drains within the shutdown grace period.

use std::collections::HashMap;
use std::net::SocketAddr;

use saga_engine::{Engine, InvalidEndpoint, Participants};
use saga_proto::v1::saga_coordinator_server::SagaCoordinatorServer;
use saga_shutdown::{TaskFailure, Tasks};
use saga_store::{PgStore, StoreError};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::rustls::ServerConfig;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::server::HealthReporter;
use tracing::{info, warn};

use crate::api::CoordinatorApi;
use crate::auth::{AuthLayer, Principals, PrincipalsError};
use crate::definitions::{self, LoadError};
use crate::limits::LimitsLayer;
use crate::metrics::MetricsServer;
use crate::reload::Reloading;
use crate::settings::{Settings, redact_url};
use crate::tls::{self, TlsError};
use crate::watch_quota::WatchQuota;

/// Why sagad could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A participant endpoint is invalid.
    #[error(transparent)]
    Participants(#[from] InvalidEndpoint),
    /// The definitions directory cannot be loaded.
    #[error("cannot load saga definitions")]
    Definitions(#[from] LoadError),
    /// The saga log database is unreachable or cannot be migrated.
    #[error("cannot open the saga log at {url}")]
    Database {
        /// The database URL, without its password.
        url: String,
        /// The cause.
        source: StoreError,
    },
    /// The gRPC address cannot be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The metrics address cannot be bound.
    #[error("cannot listen for metrics on {addr}")]
    MetricsBind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The reflection service cannot be built.
    #[error("cannot build the reflection service")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// A TLS certificate, key or CA file cannot be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The principals file cannot be used.
    #[error(transparent)]
    Principals(#[from] PrincipalsError),
    /// A background task (the gRPC server, a file reloader, the health mirror, an engine loop) failed.
    #[error(transparent)]
    Task(#[from] TaskFailure),
}

/// A built, bound, not yet serving sagad.
pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    engine_shutdown: CancellationToken,
    engine: std::sync::Arc<Engine<PgStore>>,
    /// The bound metrics endpoint; `None` when `metrics_addr` is empty.
    metrics: Option<MetricsServer>,
    /// The API's TLS configuration, re-read when its files change; `None` serves plaintext.
    tls: Option<Reloading<ServerConfig, TlsError>>,
    /// The principals, re-read when the file changes; `None` runs open.
    principals: Option<Reloading<Principals, PrincipalsError>>,
    settings: Settings,
}

impl Application {
    /// Loads definitions, opens and migrates the saga log, and binds the gRPC address.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let endpoints: HashMap<String, String> =
            settings.participants.clone().into_iter().collect();
        let participant_tls = tls::participant_config(&settings.participant_tls)?;
        let participants = Participants::new(
            &endpoints,
            settings.participant_concurrency,
            participant_tls.as_ref(),
        )?;
        let tls = settings
            .tls
            .enabled()
            .then(|| {
                let files = [
                    &settings.tls.cert_file,
                    &settings.tls.key_file,
                    &settings.tls.client_ca_file,
                ];
                let files = files.into_iter().flatten().cloned().collect();
                let tls_settings = settings.tls.clone();
                Reloading::start("tls", files, move || tls::server_config(&tls_settings))
            })
            .transpose()?;
        let principals = match &settings.auth.tokens_file {
            Some(path) => {
                let (path, client_certificates) =
                    (path.clone(), settings.tls.client_ca_file.is_some());
                Some(Reloading::start(
                    "auth.tokens_file",
                    vec![path.clone()],
                    move || Principals::load(&path, client_certificates),
                )?)
            }
            None => None,
        };
        let definitions = definitions::load_dir(&settings.definitions_dir, &participants.names())?;

        let database = |source| StartupError::Database {
            url: redact_url(&settings.database_url),
            source,
        };
        let store = PgStore::connect(&settings.database_url, settings.database_max_connections)
            .await
            .map_err(database)?;
        store.migrate().await.map_err(database)?;

        let listener = TcpListener::bind(settings.grpc_addr)
            .await
            .map_err(|source| StartupError::Bind {
                addr: settings.grpc_addr,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| StartupError::Bind {
            addr: settings.grpc_addr,
            source,
        })?;

        let engine_shutdown = CancellationToken::new();
        let engine = Engine::new(
            store,
            participants,
            definitions,
            &settings.engine(),
            engine_shutdown.clone(),
        );
        let metrics = match settings.metrics_addr {
            Some(addr) => Some(
                MetricsServer::bind(addr, engine.metrics())
                    .await
                    .map_err(|source| StartupError::MetricsBind { addr, source })?,
            ),
            None => None,
        };
        // Times the engine writes are compared with the database clock: measure it before serving.
        engine.sync_clock().await.map_err(database)?;
        Ok(Self {
            listener,
            local_addr,
            engine_shutdown,
            engine,
            metrics,
            tls,
            principals,
            settings,
        })
    }

    /// The bound gRPC address (the real port when configured with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The bound metrics address, if metrics are served.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(MetricsServer::local_addr)
    }

    /// Serves until `shutdown` is cancelled or a background task fails; then reports NOT_SERVING, stops
    /// accepting, lets in-flight RPCs and then step calls finish within the grace period (whatever is
    /// still open at its end is cut), releases the leases and returns — the task's failure, if one
    /// failed.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), StartupError> {
        let tasks = Tasks::new();
        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_serving::<SagaCoordinatorServer<CoordinatorApi>>()
            .await;
        // Both reflection versions, so old and new grpcurl releases alike can list the services.
        let reflection_v1 = reflection().build_v1()?;
        let reflection_v1alpha = reflection().build_v1alpha()?;
        let limits = &self.settings.limits;
        let api = CoordinatorApi {
            engine: self.engine.clone(),
            max_payload_bytes: self.settings.max_payload_bytes,
            shutdown: shutdown.clone(),
            watch_quota: WatchQuota::new(limits.max_watches_per_principal),
        };
        let auth = AuthLayer::new(
            self.principals.as_ref().map(Reloading::subscribe),
            self.settings.auth.protect_reflection,
        );
        match self.principals {
            Some(principals) => tasks.spawn("auth reloader", principals.run(shutdown.clone())),
            None => warn!(
                "auth.tokens_file is not set: sagad runs open, any caller may start, abort and retry any saga"
            ),
        }
        let tls = self.tls.map(|tls| {
            let current = tls.subscribe();
            tasks.spawn("tls reloader", tls.run(shutdown.clone()));
            current
        });

        info!(
            addr = %self.local_addr,
            tls = tls.is_some(),
            mtls = self.settings.tls.client_ca_file.is_some(),
            metrics = ?self.metrics.as_ref().map(MetricsServer::local_addr),
            definitions = self.engine.definitions().len(),
            instance = self.engine.instance(),
            "sagad serving"
        );
        self.engine.run_background();
        // Metrics are served until the engine has drained, so a scrape during shutdown still answers:
        // their task stops after the others, on a token of its own.
        let metrics_stop = CancellationToken::new();
        let metrics_task = Tasks::new();
        if let Some(server) = self.metrics {
            metrics_task.spawn("metrics server", server.run(metrics_stop.clone()));
        }
        tasks.spawn(
            "health mirror",
            mirror_store_health(self.engine.store_health(), health.clone(), shutdown.clone()),
        );
        let stopping = {
            let shutdown = shutdown.clone();
            let health = health.clone();
            async move {
                shutdown.cancelled().await;
                info!("shutting down: no new sagas, draining in-flight work");
                health
                    .set_not_serving::<SagaCoordinatorServer<CoordinatorApi>>()
                    .await;
            }
        };
        let max_message_bytes = self.settings.max_message_bytes();
        let router = Server::builder()
            .max_concurrent_streams(limits.max_concurrent_streams)
            .http2_keepalive_interval(Some(limits.http2_keepalive_interval))
            .http2_keepalive_timeout(Some(limits.http2_keepalive_timeout))
            // One span per RPC, continuing the caller's trace (`traceparent` metadata).
            .trace_fn(saga_telemetry::propagation::grpc_server_span)
            .layer(LimitsLayer {
                max_message_bytes,
                rpc_timeout: limits.rpc_timeout,
            })
            .layer(auth)
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(
                SagaCoordinatorServer::new(api).max_decoding_message_size(max_message_bytes),
            );
        // Small request/response pairs: without TCP_NODELAY, Nagle's algorithm and delayed ACKs add
        // ~40 ms to a call. TCP keepalive finds peers that vanished without a word.
        let tcp = TcpIncoming::from(self.listener)
            .with_nodelay(Some(true))
            .with_keepalive(Some(limits.http2_keepalive_interval));
        match tls {
            Some(config) => {
                let incoming = tls::incoming(tcp, config, limits.tls_handshake_timeout);
                let serving = router.serve_with_incoming_shutdown(incoming, stopping);
                tasks.spawn("grpc server", serving);
            }
            None => tasks.spawn(
                "grpc server",
                router.serve_with_incoming_shutdown(tcp, stopping),
            ),
        }

        tokio::select! {
            () = shutdown.cancelled() => {}
            () = tasks.failed() => {}
            () = self.engine.failed() => {}
        }
        shutdown.cancel();
        // One grace period for the whole drain: first the server's in-flight RPCs (an open stream that
        // never ends, such as a health Watch, or a StartSaga waiting on a slow step would otherwise hold
        // it forever), then the executors' calls with what is left of it.
        let grace = self.settings.shutdown_grace;
        let deadline = Instant::now() + grace;
        tasks.drain(grace).await;
        self.engine_shutdown.cancel();
        self.engine
            .drain(deadline.saturating_duration_since(Instant::now()))
            .await;
        metrics_stop.cancel();
        metrics_task
            .drain(deadline.saturating_duration_since(Instant::now()))
            .await;
        if let Some(failure) =
            (tasks.failure().or_else(|| metrics_task.failure())).or_else(|| self.engine.failure())
        {
            return Err(failure.into());
        }
        info!("sagad stopped");
        Ok(())
    }
}

/// Mirrors the saga log's health into the gRPC health service: NOT_SERVING while writes fail, so load
/// balancers route around this instance until the database is back.
async fn mirror_store_health(
    mut store_health: watch::Receiver<bool>,
    health: HealthReporter,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = store_health.changed() => if changed.is_err() { return },
        }
        let healthy = *store_health.borrow_and_update();
        if healthy {
            info!("saga log reachable again: serving");
            health
                .set_serving::<SagaCoordinatorServer<CoordinatorApi>>()
                .await;
        } else {
            warn!("saga log unreachable: not serving until it is back");
            health
                .set_not_serving::<SagaCoordinatorServer<CoordinatorApi>>()
                .await;
        }
    }
}

fn reflection() -> tonic_reflection::server::Builder<'static> {
    // The descriptor set also holds saga.v1.SagaParticipant, which sagad calls but does not serve: list
    // only what this server answers.
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(saga_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .with_service_name("saga.v1.SagaCoordinator")
        .with_service_name("grpc.health.v1.Health")
        .with_service_name("grpc.reflection.v1.ServerReflection")
        .with_service_name("grpc.reflection.v1alpha.ServerReflection")
}
