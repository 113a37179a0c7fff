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

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Everything sagad can be configured with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address of the gRPC API (coordinator, health, reflection). Port 0 picks a free port.
    pub grpc_addr: SocketAddr,
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
}

impl Default for Settings {
    fn default() -> Self {
        let participant =
            |name: &str, port: u16| (name.to_owned(), format!("http://127.0.0.1:{port}"));
        // The engine's limits and timings have their defaults in one place.
        let engine = saga_engine::EngineSettings::default();
        Self {
            grpc_addr: SocketAddr::from(([0, 0, 0, 0], 50051)),
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

    fn load_from(config_file: Option<&Path>, env: Env) -> Result<Self, SettingsError> {
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
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn no_env() -> Env {
        Env::prefixed("SAGAD_TEST_SETTINGS_NOTHING_")
    }

    #[test]
    fn defaults_reach_the_demo_participants() {
        let s = Settings::load_from(None, no_env()).unwrap();
        assert_eq!(s.grpc_addr.port(), 50051);
        assert_eq!(s.participants["device"], "http://127.0.0.1:50062");
        assert_eq!(s.participants["withdrawal"], "http://127.0.0.1:50064");
        assert_eq!(s.participants["gateway"], "http://127.0.0.1:50065");
        assert_eq!(s.participants["sales"], "http://127.0.0.1:50070");
    }

    #[test]
    fn a_file_overrides_defaults_and_keeps_the_rest() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            file,
            "grpc_addr = \"127.0.0.1:6000\"\nshutdown_grace = \"3s\"\n[participants]\nbilling = \"http://billing:1\""
        )
        .unwrap();
        let s = Settings::load_from(Some(file.path()), no_env()).unwrap();
        assert_eq!(s.grpc_addr.port(), 6000);
        assert_eq!(s.shutdown_grace, Duration::from_secs(3));
        assert_eq!(s.participants["billing"], "http://billing:1");
        assert_eq!(s.participants["payment"], "http://127.0.0.1:50063");
        assert_eq!(s.max_in_flight, 10_000);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors_that_name_them() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "max_in_fligth = 3").unwrap();
        let err = Settings::load_from(Some(file.path()), no_env()).unwrap_err();
        let cause = std::error::Error::source(&err).unwrap().to_string();
        assert!(cause.contains("max_in_fligth"), "{cause}");

        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "[participants]\nbilling = \"billing:50061\"").unwrap();
        let err = Settings::load_from(Some(file.path()), no_env()).unwrap_err();
        assert!(err.to_string().contains("http://"), "{err}");
    }

    #[test]
    fn a_missing_config_file_is_an_error() {
        let err =
            Settings::load_from(Some(Path::new("/nonexistent/sagad.toml")), no_env()).unwrap_err();
        assert!(matches!(err, SettingsError::MissingFile(_)));
    }

    #[test]
    fn lease_and_retention_settings_reach_the_engine() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            file,
            "lease = \"3s\"\nhold_wait = \"500ms\"\nretention = \"0s\""
        )
        .unwrap();
        let engine = Settings::load_from(Some(file.path()), no_env())
            .unwrap()
            .engine();
        assert_eq!(engine.lease, Duration::from_secs(3));
        assert_eq!(engine.hold_wait, Duration::from_millis(500));
        assert_eq!(engine.retention, None, "0s keeps finished sagas forever");
        let defaults = Settings::load_from(None, no_env()).unwrap().engine();
        assert_eq!(
            defaults.retention,
            Some(Duration::from_secs(30 * 24 * 3600))
        );

        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "lease = \"100ms\"").unwrap();
        let err = Settings::load_from(Some(file.path()), no_env()).unwrap_err();
        assert!(err.to_string().contains("lease"), "{err}");
    }
}
