//! Settings from defaults, files and the environment.

use super::*;
use std::io::Write;

fn no_env() -> Env {
    Env::prefixed("SAGAD_TEST_SETTINGS_NOTHING_")
}

#[test]
fn passwords_never_reach_error_messages_or_debug_output() {
    assert_eq!(
        redact_url("postgres://sagad:s3cret@db:5432/sagad"),
        "postgres://sagad:***@db:5432/sagad"
    );
    assert_eq!(
        redact_url("postgres://postgres@127.0.0.1/sagad"),
        "postgres://postgres@127.0.0.1/sagad"
    );
    let settings = Settings {
        database_url: "postgres://sagad:s3cret@db:5432/sagad".to_owned(),
        ..Settings::default()
    };
    let debug = format!("{settings:?}");
    assert!(!debug.contains("s3cret"), "{debug}");
    assert!(debug.contains("sagad:***@db"), "{debug}");
}

#[test]
fn tls_files_come_in_pairs_and_https_participants_need_a_ca() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "[tls]\ncert_file = \"server.pem\"").unwrap();
    let err = Settings::load_from(Some(file.path()), no_env()).unwrap_err();
    assert!(err.to_string().contains("tls.cert_file"), "{err}");

    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "[tls]\nclient_ca_file = \"ca.pem\"").unwrap();
    let err = Settings::load_from(Some(file.path()), no_env()).unwrap_err();
    assert!(err.to_string().contains("tls.client_ca_file"), "{err}");

    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "[participants]\nbilling = \"https://billing:1\"").unwrap();
    let err = Settings::load_from(Some(file.path()), no_env()).unwrap_err();
    assert!(err.to_string().contains("participant_tls.ca_file"), "{err}");

    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(
        file,
        "[participants]\nbilling = \"https://billing:1\"\n[participant_tls]\nca_file = \"ca.pem\"\n\
         [tls]\ncert_file = \"s.pem\"\nkey_file = \"s.key\"\n[auth]\ntokens_file = \"t.toml\"\n\
         [limits]\nrpc_timeout = \"5s\""
    )
    .unwrap();
    let s = Settings::load_from(Some(file.path()), no_env()).unwrap();
    assert_eq!(s.tls.key_file.as_deref(), Some(Path::new("s.key")));
    assert_eq!(s.auth.tokens_file.as_deref(), Some(Path::new("t.toml")));
    assert!(!s.auth.protect_reflection);
    assert_eq!(s.limits.rpc_timeout, Duration::from_secs(5));
    assert_eq!(
        s.limits.max_concurrent_streams, 200,
        "other limits keep defaults"
    );
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
fn given_variables_are_read_as_the_environment_would_be() {
    let vars = [
        ("SAGAD_MAX_IN_FLIGHT", "12"),
        ("SAGAD_PARTICIPANTS__BILLING", "http://billing:1"),
        ("SAGAD_SHUTDOWN_GRACE", "3s"),
        ("OTHER", "ignored"),
    ];
    let s = Settings::load_with_env(None, vars).unwrap();
    assert_eq!(s.max_in_flight, 12);
    assert_eq!(s.participants["billing"], "http://billing:1");
    assert_eq!(s.participants["device"], "http://127.0.0.1:50062");
    assert_eq!(s.shutdown_grace, Duration::from_secs(3));
    let err = Settings::load_with_env(None, [("SAGAD_METRICS_ADRR", "0.0.0.0:1")]).unwrap_err();
    let cause = std::error::Error::source(&err).unwrap().to_string();
    assert!(cause.contains("metrics_adrr"), "{cause}");
}

#[test]
fn metrics_listen_on_9464_by_default_and_an_empty_address_turns_them_off() {
    let defaults = Settings::load_with_env(None, []).unwrap();
    assert_eq!(
        defaults.metrics_addr,
        Some(SocketAddr::from(([0, 0, 0, 0], 9464)))
    );
    let off = Settings::load_with_env(None, [("SAGAD_METRICS_ADDR", "")]).unwrap();
    assert_eq!(off.metrics_addr, None);
    let moved = Settings::load_with_env(None, [("SAGAD_METRICS_ADDR", "127.0.0.1:0")]).unwrap();
    assert_eq!(
        moved.metrics_addr,
        Some(SocketAddr::from(([127, 0, 0, 1], 0)))
    );

    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "metrics_addr = \"\"").unwrap();
    let s = Settings::load_from(Some(file.path()), no_env()).unwrap();
    assert_eq!(s.metrics_addr, None);

    let err = Settings::load_with_env(None, [("SAGAD_METRICS_ADDR", "everywhere")]).unwrap_err();
    let cause = std::error::Error::source(&err).unwrap().to_string();
    assert!(cause.contains("everywhere"), "{cause}");
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
