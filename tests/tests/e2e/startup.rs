//! sagad refuses to start on bad configuration with one clear line on stderr and a non-zero exit; sagad
//! and demo-participants drain on the first SIGTERM within their grace period, and exit at once on a
//! second one.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use e2e_tests::definitions::PARTICIPANTS;
use e2e_tests::{Process, binary, isolate, repo_root, start_sagad_keeping_stderr};
use saga_testkit::TestDatabase;
use tonic::Streaming;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

/// Runs sagad with `env` (and nothing inherited from `SAGAD_*`), expecting it to exit by itself.
fn run_sagad(env: &[(&str, String)]) -> (i32, String) {
    let mut command = std::process::Command::new(binary("sagad"));
    isolate(&mut command);
    command
        .env("SAGAD_GRPC_ADDR", "127.0.0.1:0")
        .env("SAGAD_DEFINITIONS_DIR", repo_root().join("definitions"));
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("run sagad");
    let stderr = String::from_utf8(output.stderr).expect("utf-8 stderr");
    (output.status.code().unwrap_or(-1), stderr)
}

fn assert_one_line(stderr: &str, expected: &[&str]) {
    assert_eq!(stderr.lines().count(), 1, "one line, got: {stderr}");
    for part in expected {
        assert!(stderr.contains(part), "{stderr:?} lacks {part:?}");
    }
}

#[test]
fn an_unreachable_database_is_one_line_and_exit_code_1() {
    let (code, stderr) = run_sagad(&[(
        "SAGAD_DATABASE_URL",
        "postgres://sagad:secret@127.0.0.1:1/sagad".to_owned(),
    )]);
    assert_eq!(code, 1);
    assert_one_line(
        &stderr,
        &[
            "sagad: error: cannot open the saga log",
            "127.0.0.1:1",
            "refused",
        ],
    );
    assert!(!stderr.contains("secret"), "the password leaked: {stderr}");
}

#[test]
fn an_invalid_definition_names_the_file_and_field() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = std::fs::read_to_string(repo_root().join("definitions/purchase_plan.yaml"))
        .expect("shipped definition");
    std::fs::write(
        dir.path().join("purchase_plan.yaml"),
        text.replace("timeout: 30s", "timeout: 0s"),
    )
    .expect("write");
    let (code, stderr) = run_sagad(&[("SAGAD_DEFINITIONS_DIR", dir.path().display().to_string())]);
    assert_eq!(code, 1);
    assert_one_line(
        &stderr,
        &["purchase_plan.yaml", "steps[2].timeout", "longer than zero"],
    );
}

#[test]
fn a_malformed_setting_is_named() {
    let (code, stderr) = run_sagad(&[("SAGAD_MAX_IN_FLIGHT", "lots".to_owned())]);
    assert_eq!(code, 1);
    assert_one_line(&stderr, &["invalid configuration", "MAX_IN_FLIGHT"]);

    let (code, stderr) = run_sagad(&[("SAGAD_PARTICIPANTS__BILLING", "billing:50061".to_owned())]);
    assert_eq!(code, 1);
    assert_one_line(&stderr, &["participants", "billing", "http://"]);
}

#[test]
fn a_missing_certificate_or_a_bad_principals_file_is_named_in_one_line() {
    let (code, stderr) = run_sagad(&[
        ("SAGAD_TLS__CERT_FILE", "/nonexistent/server.pem".to_owned()),
        ("SAGAD_TLS__KEY_FILE", "/nonexistent/server.key".to_owned()),
    ]);
    assert_eq!(code, 1);
    assert_one_line(&stderr, &["tls.cert_file", "/nonexistent/server.pem"]);

    let dir = tempfile::tempdir().expect("temp dir");
    let tokens = dir.path().join("principals.toml");
    std::fs::write(
        &tokens,
        "[[principal]]\nname = \"ops\"\nroles = [\"root\"]\n",
    )
    .expect("write");
    let (code, stderr) = run_sagad(&[("SAGAD_AUTH__TOKENS_FILE", tokens.display().to_string())]);
    assert_eq!(code, 1);
    assert_one_line(&stderr, &["auth.tokens_file", "principals.toml", "root"]);
}

/// sagad with a shutdown grace period of `grace`, its participants' endpoints never called (a health
/// watch needs no saga), stderr kept.
async fn start_sagad_with_grace(database: &TestDatabase, grace: &str) -> (Process, String) {
    let unused: BTreeMap<String, String> = PARTICIPANTS
        .iter()
        .map(|name| ((*name).to_owned(), "http://127.0.0.1:1".to_owned()))
        .collect();
    start_sagad_keeping_stderr(
        &database.url(),
        &repo_root().join("definitions"),
        &unused,
        &[("SAGAD_SHUTDOWN_GRACE", grace.to_owned())],
    )
    .await
}

/// demo-participants serving only billing, with a shutdown grace period of `grace`, stderr kept.
async fn start_billing_with_grace(database: &TestDatabase, grace: &str) -> (Process, String) {
    let mut billing = Process::spawn_keeping_stderr(
        &binary("demo-participants"),
        &[
            "--service",
            "billing",
            "--billing-addr",
            "127.0.0.1:0",
            "--shutdown-grace",
            grace,
        ],
        &[("DEMO_DATABASE_URL", database.url())],
    );
    let addr = billing.wait_for_listening("billing listening on").await;
    (billing, addr)
}

/// Opens a health `Watch` on `service` at `addr` and reads its first answer, SERVING. The stream stays
/// open: a server that drains waits for it.
async fn watch_health(addr: &str, service: &str) -> Streaming<HealthCheckResponse> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut watch = HealthClient::new(channel)
        .watch(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .expect("health watch")
        .into_inner();
    assert_eq!(next_status(&mut watch).await, ServingStatus::Serving);
    watch
}

async fn next_status(watch: &mut Streaming<HealthCheckResponse>) -> ServingStatus {
    let message = tokio::time::timeout(Duration::from_secs(20), watch.message())
        .await
        .expect("a health update within 20s")
        .expect("health update")
        .expect("the watch is still open");
    message.status()
}

/// Sends SIGTERM and waits until the health watch says NOT_SERVING: the drain has begun, and the
/// watch, still open, holds it.
async fn begin_drain(process: &Process, watch: &mut Streaming<HealthCheckResponse>) -> Instant {
    let signalled = Instant::now();
    process.signal("TERM");
    assert_eq!(next_status(watch).await, ServingStatus::NotServing);
    signalled
}

/// With a drain held open by `watch`, a second SIGTERM ends `process` at once (128 + 15), and `program`
/// says so on stderr.
async fn second_sigterm_exits_at_once(
    process: Process,
    mut watch: Streaming<HealthCheckResponse>,
    program: &str,
) {
    begin_drain(&process, &mut watch).await;
    let second = Instant::now();
    process.signal("TERM");
    let (status, stderr) = process.exit_output().await;
    let took = second.elapsed();
    assert_eq!(status.code(), Some(128 + 15), "{status}; stderr: {stderr}");
    assert!(
        took < Duration::from_secs(10),
        "exited {took:?} after the second signal"
    );
    assert!(
        stderr.contains(&format!(
            "{program}: received SIGTERM again: exiting at once without draining"
        )),
        "{stderr}"
    );
}

/// With a drain held open by `watch` and a 1 s grace period, `process` exits cleanly once the grace
/// period ends, not before and not much later; returns its stderr.
async fn grace_ends_the_drain(
    process: Process,
    mut watch: Streaming<HealthCheckResponse>,
) -> String {
    let signalled = begin_drain(&process, &mut watch).await;
    let (status, stderr) = process.exit_output().await;
    let took = signalled.elapsed();
    assert!(status.success(), "{status}; stderr: {stderr}");
    assert!(
        took >= Duration::from_secs(1),
        "the open watch held the drain for the grace period, not {took:?}"
    );
    assert!(took < Duration::from_secs(10), "the drain took {took:?}");
    stderr
}

#[tokio::test]
async fn a_second_sigterm_ends_a_sagad_drain_held_by_an_open_stream_at_once() {
    let database = TestDatabase::create("sagad_second_signal").await;
    let (sagad, addr) = start_sagad_with_grace(&database, "60s").await;
    let watch = watch_health(&addr, "saga.v1.SagaCoordinator").await;
    second_sigterm_exits_at_once(sagad, watch, "sagad").await;
}

#[tokio::test]
async fn the_grace_period_bounds_a_sagad_drain_held_by_an_open_stream() {
    let database = TestDatabase::create("sagad_grace").await;
    let (sagad, addr) = start_sagad_with_grace(&database, "1s").await;
    let watch = watch_health(&addr, "saga.v1.SagaCoordinator").await;
    let stderr = grace_ends_the_drain(sagad, watch).await;
    assert!(
        stderr.contains("still running after the shutdown grace period"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_second_sigterm_ends_a_demo_participants_drain_at_once() {
    let database = TestDatabase::create("sagad_demo_second_signal").await;
    let (billing, addr) = start_billing_with_grace(&database, "60s").await;
    let watch = watch_health(&addr, "saga.v1.SagaParticipant").await;
    second_sigterm_exits_at_once(billing, watch, "demo-participants").await;
}

#[tokio::test]
async fn the_grace_period_bounds_a_demo_participants_drain() {
    let database = TestDatabase::create("sagad_demo_grace").await;
    let (billing, addr) = start_billing_with_grace(&database, "1s").await;
    let watch = watch_health(&addr, "saga.v1.SagaParticipant").await;
    grace_ends_the_drain(billing, watch).await;
}
