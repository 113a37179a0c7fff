//! Typed settings: defaults → `--config FILE` (TOML) → `SAGAD_*` environment → [`Settings::validate`].
//!
//! Nested keys use a double underscore in the environment: `SAGAD_PARTICIPANTS__BILLING=http://…`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

pub use saga_telemetry::LogFormat;

/// Everything sagad can be configured with. `Debug` leaves the database password out.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address of the gRPC API (coordinator, health, reflection). Port 0 picks a free port.
    pub grpc_addr: SocketAddr,
    /// Address of the Prometheus endpoint (`GET /metrics`, plain HTTP); empty (`None`) serves no
    /// metrics. Port 0 picks a free port.
    #[serde(with = "empty_is_none")]
    pub metrics_addr: Option<SocketAddr>,
    /// PostgreSQL URL of the saga log.
    pub database_url: String,
    /// Connections in the saga log's pool.
    pub database_max_connections: u32,
    /// Directory of `*.yaml` saga definitions.
    pub definitions_dir: PathBuf,
    /// Participant name → gRPC endpoint URI.
    pub participants: BTreeMap<String, String>,
    /// Largest accepted `StartSaga` payload, in encoded bytes.
    pub max_payload_bytes: usize,
    /// Sagas one instance drives at once; beyond it `StartSaga` answers `RESOURCE_EXHAUSTED`.
    pub max_in_flight: usize,
    /// `WatchSaga` streams one instance serves at once; beyond it `WatchSaga` answers
    /// `RESOURCE_EXHAUSTED`.
    pub max_watches: usize,
    /// Calls one instance makes to one participant at once; further calls wait in sagad (without
    /// spending their attempt or its timeout) rather than piling onto a participant that is slow.
    pub participant_concurrency: usize,
    /// How long in-flight calls may finish after SIGTERM before the process exits.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// How long a saga lease lasts without renewal: a killed instance's sagas move to another instance
    /// about this long after it died.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// Retry waits longer than this release the saga for any instance to continue; shorter ones wait
    /// in memory.
    #[serde(with = "humantime_serde")]
    pub hold_wait: Duration,
    /// How often the recovery loop looks for due or orphaned sagas (it is also woken by released leases).
    #[serde(with = "humantime_serde")]
    pub recovery_interval: Duration,
    /// Finished sagas older than this are deleted with their history; `0s` keeps them forever.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// TLS on the gRPC API; without `cert_file` and `key_file` sagad serves plaintext.
    pub tls: TlsSettings,
    /// TLS to `https://` participant endpoints.
    pub participant_tls: ParticipantTlsSettings,
    /// Bearer tokens and roles; without `tokens_file` every caller may do everything.
    pub auth: AuthSettings,
    /// Bounds on what one caller or connection can hold.
    pub limits: Limits,
}

/// `tls.*`: the API's certificate, and the CA whose client certificates it requires (mTLS).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM certificate chain served by the API. Re-read when the file changes.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`. Re-read when the file changes.
    pub key_file: Option<PathBuf>,
    /// PEM CA certificates; when set, every client must present a certificate signed by one of them.
    pub client_ca_file: Option<PathBuf>,
}

impl TlsSettings {
    /// Whether the API serves TLS.
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some()
    }
}

/// `participant_tls.*`: how sagad calls `https://` participants.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ParticipantTlsSettings {
    /// PEM CA certificates that sign the participants' certificates.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate sagad presents to participants that require one (mTLS).
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
}

/// `auth.*`: who may call what.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// TOML file of principals (token hash, roles, saga types); re-read when it changes.
    pub tokens_file: Option<PathBuf>,
    /// Require a principal for health checks and reflection too (they are open by default, for load
    /// balancers and `grpcurl list`).
    pub protect_reflection: bool,
}

/// `limits.*`: what one connection, call or principal can hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Concurrent HTTP/2 streams (calls) per connection.
    pub max_concurrent_streams: u32,
    /// How often sagad pings an HTTP/2 connection to check the peer is still there.
    #[serde(with = "humantime_serde")]
    pub http2_keepalive_interval: Duration,
    /// How long a ping may go unanswered before the connection is closed.
    #[serde(with = "humantime_serde")]
    pub http2_keepalive_timeout: Duration,
    /// How long a client may take to finish the TLS handshake.
    #[serde(with = "humantime_serde")]
    pub tls_handshake_timeout: Duration,
    /// Longest a unary call may run on the server; beyond it the caller gets `DEADLINE_EXCEEDED`.
    #[serde(with = "humantime_serde")]
    pub rpc_timeout: Duration,
    /// Open `WatchSaga` streams per principal (per client address when sagad runs without
    /// authentication); beyond it `WatchSaga` answers `RESOURCE_EXHAUSTED`.
    pub max_watches_per_principal: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_concurrent_streams: 200,
            http2_keepalive_interval: Duration::from_secs(30),
            http2_keepalive_timeout: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(10),
            rpc_timeout: Duration::from_secs(30),
            max_watches_per_principal: 100,
        }
    }
}

/// Request messages may exceed `max_payload_bytes` by this much (saga type, keys, labels, framing), so
/// that a payload just over its limit still gets the precise `INVALID_ARGUMENT` naming it.
const MESSAGE_ENVELOPE_BYTES: usize = 16 * 1024;

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("grpc_addr", &self.grpc_addr)
            .field("metrics_addr", &self.metrics_addr)
            .field("database_url", &redact_url(&self.database_url))
            .field("database_max_connections", &self.database_max_connections)
            .field("definitions_dir", &self.definitions_dir)
            .field("participants", &self.participants)
            .field("max_payload_bytes", &self.max_payload_bytes)
            .field("max_in_flight", &self.max_in_flight)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("lease", &self.lease)
            .field("hold_wait", &self.hold_wait)
            .field("recovery_interval", &self.recovery_interval)
            .field("retention", &self.retention)
            .field("log_format", &self.log_format)
            .field("tls", &self.tls)
            .field("participant_tls", &self.participant_tls)
            .field("auth", &self.auth)
            .field("limits", &self.limits)
            .finish()
    }
}

/// An optional address written as text, the empty text meaning none: `SAGAD_METRICS_ADDR=` turns the
/// endpoint off the same way in the environment as in a file.
mod empty_is_none {
    use std::net::SocketAddr;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(addr: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
        match addr {
            Some(addr) => s.collect_str(addr),
            None => s.serialize_str(""),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
        let text = String::deserialize(d)?;
        let text = text.trim();
        if text.is_empty() {
            return Ok(None);
        }
        text.parse().map(Some).map_err(|_| {
            serde::de::Error::custom(format!(
                "{text:?} is not an address (host:port), nor empty to turn metrics off"
            ))
        })
    }
}

/// A database URL without its password, for errors, logs and `Debug`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

impl Default for Settings {
    fn default() -> Self {
        let participant =
            |name: &str, port: u16| (name.to_owned(), format!("http://127.0.0.1:{port}"));
        // The engine's limits and timings have their defaults in one place.
        let engine = saga_engine::EngineSettings::default();
        Self {
            grpc_addr: SocketAddr::from(([0, 0, 0, 0], 50051)),
            metrics_addr: Some(SocketAddr::from(([0, 0, 0, 0], 9464))),
            database_url: "postgres://postgres@127.0.0.1:5432/sagad".to_owned(),
            database_max_connections: 16,
            definitions_dir: PathBuf::from("definitions"),
            // The demo participants' default ports, so `sagad` and `demo-participants` work together
            // with no configuration at all.
            participants: [
                participant("billing", 50061),
                participant("device", 50062),
                participant("payment", 50063),
                participant("withdrawal", 50064),
                participant("gateway", 50065),
                participant("app", 50066),
                participant("notification", 50067),
                participant("customer", 50068),
                participant("inventory", 50069),
                participant("sales", 50070),
            ]
            .into(),
            max_payload_bytes: 64 * 1024,
            max_in_flight: engine.max_in_flight,
            max_watches: engine.max_watches,
            participant_concurrency: 32,
            shutdown_grace: Duration::from_secs(10),
            lease: engine.lease,
            hold_wait: engine.hold_wait,
            recovery_interval: engine.recovery_interval,
            retention: engine.retention.unwrap_or_default(),
            log_format: LogFormat::Text,
            tls: TlsSettings::default(),
            participant_tls: ParticipantTlsSettings::default(),
            auth: AuthSettings::default(),
            limits: Limits::default(),
        }
    }
}

/// Settings that cannot be loaded or make no sense.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The `--config` file does not exist.
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    /// A value has the wrong type, a key is unknown, …
    #[error("invalid configuration")]
    Load(#[from] Box<figment::Error>),
    /// A value is out of range.
    #[error("invalid configuration: {field}: {message}")]
    Invalid {
        /// Setting name.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl Settings {
    /// Loads defaults, then `config_file`, then the process environment, and validates the result.
    pub fn load(config_file: Option<&Path>) -> Result<Self, SettingsError> {
        Self::load_from(config_file, Env::prefixed("SAGAD_").split("__"))
    }

    /// Like [`Settings::load`], with `vars` in place of the process environment (the `SAGAD_*` ones
    /// count, read as `load` reads them): for checking the variables a deployment file sets without
    /// touching this process's environment.
    pub fn load_with_env<'a>(
        config_file: Option<&Path>,
        vars: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, SettingsError> {
        let env = vars
            .into_iter()
            .filter_map(|(key, value)| {
                let key = key.strip_prefix("SAGAD_")?;
                let Ok(value) = value.parse::<figment::value::Value>();
                Some((key.replace("__", ".").to_ascii_lowercase(), value))
            })
            .fold(Figment::new(), |env, (key, value)| {
                env.merge(Serialized::default(&key, value))
            });
        Self::load_from(config_file, env)
    }

    fn load_from(
        config_file: Option<&Path>,
        env: impl figment::Provider,
    ) -> Result<Self, SettingsError> {
        let mut figment = Figment::from(Serialized::defaults(Self::default()));
        if let Some(path) = config_file {
            if !path.is_file() {
                return Err(SettingsError::MissingFile(path.to_owned()));
            }
            figment = figment.merge(Toml::file(path));
        }
        let settings: Self = figment.merge(env).extract().map_err(Box::new)?;
        settings.validate()?;
        Ok(settings)
    }

    /// Largest accepted request message: `max_payload_bytes` plus room for the other fields.
    pub fn max_message_bytes(&self) -> usize {
        self.max_payload_bytes
            .saturating_add(MESSAGE_ENVELOPE_BYTES)
    }

    /// The engine's share of the settings.
    pub fn engine(&self) -> saga_engine::EngineSettings {
        saga_engine::EngineSettings {
            max_in_flight: self.max_in_flight,
            max_watches: self.max_watches,
            lease: self.lease,
            hold_wait: self.hold_wait,
            recovery_interval: self.recovery_interval,
            retention: Some(self.retention).filter(|r| !r.is_zero()),
            ..saga_engine::EngineSettings::default()
        }
    }

    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let invalid = |field, message: &str| {
            Err(SettingsError::Invalid {
                field,
                message: message.to_owned(),
            })
        };
        if self.database_max_connections == 0 {
            return invalid("database_max_connections", "must be 1 or more");
        }
        if self.max_in_flight == 0 {
            return invalid("max_in_flight", "must be 1 or more");
        }
        if self.max_watches == 0 {
            return invalid("max_watches", "must be 1 or more");
        }
        if self.participant_concurrency == 0 {
            return invalid("participant_concurrency", "must be 1 or more");
        }
        if self.max_payload_bytes == 0 {
            return invalid("max_payload_bytes", "must be 1 or more");
        }
        if self.lease < Duration::from_millis(300) {
            return invalid(
                "lease",
                "must be at least 300ms (it is renewed every third of it)",
            );
        }
        if self.recovery_interval.is_zero() {
            return invalid("recovery_interval", "must be longer than zero");
        }
        if self.participants.is_empty() {
            return invalid(
                "participants",
                "at least one participant endpoint is needed",
            );
        }
        for (name, uri) in &self.participants {
            if !(uri.starts_with("http://") || uri.starts_with("https://")) {
                return Err(SettingsError::Invalid {
                    field: "participants",
                    message: format!(
                        "{name}: endpoint {uri:?} must start with http:// or https://"
                    ),
                });
            }
            if uri.starts_with("https://") && self.participant_tls.ca_file.is_none() {
                return Err(SettingsError::Invalid {
                    field: "participant_tls.ca_file",
                    message: format!(
                        "{name} is called over https ({uri}): set the CA that signs its certificate"
                    ),
                });
            }
        }
        self.validate_tls()?;
        let limits = &self.limits;
        if limits.max_concurrent_streams == 0 {
            return invalid("limits.max_concurrent_streams", "must be 1 or more");
        }
        if limits.max_watches_per_principal == 0 {
            return invalid("limits.max_watches_per_principal", "must be 1 or more");
        }
        for (field, value) in [
            (
                "limits.http2_keepalive_interval",
                limits.http2_keepalive_interval,
            ),
            (
                "limits.http2_keepalive_timeout",
                limits.http2_keepalive_timeout,
            ),
            ("limits.tls_handshake_timeout", limits.tls_handshake_timeout),
            ("limits.rpc_timeout", limits.rpc_timeout),
        ] {
            if value.is_zero() {
                return invalid(field, "must be longer than zero");
            }
        }
        Ok(())
    }

    /// Certificate and key come in pairs; a client CA needs a server certificate to go with it.
    fn validate_tls(&self) -> Result<(), SettingsError> {
        let pair = |field, cert: &Option<PathBuf>, key: &Option<PathBuf>, other| {
            if cert.is_some() != key.is_some() {
                return Err(SettingsError::Invalid {
                    field,
                    message: format!("must be set together with {other}"),
                });
            }
            Ok(())
        };
        let tls = &self.tls;
        pair(
            "tls.cert_file",
            &tls.cert_file,
            &tls.key_file,
            "tls.key_file",
        )?;
        if tls.client_ca_file.is_some() && !tls.enabled() {
            return Err(SettingsError::Invalid {
                field: "tls.client_ca_file",
                message: "client certificates need TLS: set tls.cert_file and tls.key_file".into(),
            });
        }
        let participant = &self.participant_tls;
        pair(
            "participant_tls.cert_file",
            &participant.cert_file,
            &participant.key_file,
            "participant_tls.key_file",
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
