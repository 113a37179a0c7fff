//! Harness for sagad's end-to-end tests: starts the real `sagad` and `demo-participants` binaries, and the
//! TypeScript SDK's example participant under `node`, as processes on port 0 against fresh databases, and
//! talks to them over gRPC.
//!
//! The binaries must be built first (`cargo build --bins`), and the TypeScript SDK too (`npm ci && npm run
//! build` in `sdk/typescript`); the README's test command does both.
//!
//! # Layout
//! - [`Stack`], [`Process`]: the processes and clients; [`start_loyalty`] for the TypeScript participant.
//! - [`definitions`]: the shipped definitions, a fast copy for tests that wait on deadlines, and the
//!   test-only ones in `tests/definitions`.
//! - [`in_process`]: sagad inside the test process, for tests of its edge.
//! - [`otlp`]: a real OTLP trace receiver that hands the spans it receives to the test.
//! - [`certs`]: a test CA and the certificates it issues, as PEM files.
//! - [`checks`]: the rows each flow must leave, and the business invariants across them.
//! - [`http`]: plain HTTP GETs, for the metrics endpoint and Prometheus's query API.

pub mod certs;
pub mod checks;
pub mod definitions;
pub mod http;
pub mod in_process;
pub mod otlp;
pub mod postgres;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use saga_proto::v1::saga_coordinator_client::SagaCoordinatorClient;
use saga_proto::v1::{Saga, SagaStatus, StartSagaRequest, StepStatus, WatchSagaRequest};
use saga_testkit::TestDatabase;
use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, ChildStdout, Command};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::definitions::PARTICIPANTS;

/// How long a process may take to print its readiness line.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Path of a workspace binary, next to the test executable's target directory.
///
/// # Panics
/// When the binary has not been built.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the binaries first with `cargo build --bins`",
        path.display()
    );
    path
}

/// The real grpcurl, which `scripts/ensure-tools.sh` (run by the test command) links into `tools/bin`.
///
/// # Panics
/// When it is not there.
pub fn grpcurl() -> PathBuf {
    tool("grpcurl")
}

/// A command-line tool `scripts/ensure-tools.sh` (run by the test command) links into `tools/bin`:
/// `grpcurl`, `prometheus`, `promtool`, …
///
/// # Panics
/// When it is not there.
pub fn tool(name: &str) -> PathBuf {
    let path = repo_root().join("tools/bin").join(name);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/ensure-tools.sh (the test command does)",
        path.display()
    );
    path
}

/// Root of the repository (for `definitions/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository root")
        .to_owned()
}

/// Keeps a child's configuration to what the test sets: no inherited `SAGAD_*`, `DEMO_*` or `OTEL_*`
/// variables, sagad's metrics on a free port (the default 9464 would collide between the sagads tests run
/// side by side; a test may set another after this), and quiet logs unless the person running the tests
/// asked for them with `RUST_LOG`.
pub fn isolate(command: &mut std::process::Command) {
    for (key, _) in std::env::vars() {
        if key.starts_with("SAGAD_") || key.starts_with("DEMO_") || key.starts_with("OTEL_") {
            command.env_remove(key);
        }
    }
    command.env("SAGAD_METRICS_ADDR", "127.0.0.1:0");
    if std::env::var_os("RUST_LOG").is_none() {
        command.env("RUST_LOG", "warn");
    }
}

/// A child process killed when dropped, with its stdout readable line by line.
pub struct Process {
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
    /// Kept for [`Process::exit_output`] when spawned with [`Process::spawn_keeping_stderr`].
    stderr: Option<ChildStderr>,
}

impl Process {
    /// Spawns `binary` with `args` and `env`, with no inherited `SAGAD_*` variables; its stderr goes to
    /// the test's.
    pub fn spawn(binary: &Path, args: &[&str], env: &[(&str, String)]) -> Self {
        Self::spawn_with(binary, args, env, Stdio::inherit())
    }

    /// Like [`Process::spawn`], keeping stderr for [`Process::exit_output`]: for tests of what a process
    /// says as it stops.
    pub fn spawn_keeping_stderr(binary: &Path, args: &[&str], env: &[(&str, String)]) -> Self {
        Self::spawn_with(binary, args, env, Stdio::piped())
    }

    fn spawn_with(binary: &Path, args: &[&str], env: &[(&str, String)], stderr: Stdio) -> Self {
        let mut command = Command::new(binary);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true);
        isolate(command.as_std_mut());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let stderr = child.stderr.take();
        Self {
            child,
            stdout,
            stderr,
        }
    }

    /// Reads stdout until a line containing `marker`, and returns the address after `listening on `.
    pub async fn wait_for_listening(&mut self, marker: &str) -> String {
        let read = async {
            while let Some(line) = self.stdout.next_line().await.expect("read stdout") {
                if line.contains(marker)
                    && let Some((_, addr)) = line.split_once("listening on ")
                {
                    return addr.trim().to_owned();
                }
            }
            panic!("process exited before printing {marker:?}")
        };
        tokio::time::timeout(READY_TIMEOUT, read)
            .await
            .unwrap_or_else(|_| panic!("no {marker:?} line within {READY_TIMEOUT:?}"))
    }

    /// Reads stderr (spawned with [`Process::spawn_keeping_stderr`]) until `find` picks a value out of
    /// a line; the rest is drained in the background, so the process never blocks on a full pipe.
    pub async fn find_in_stderr<T>(&mut self, mut find: impl FnMut(&str) -> Option<T>) -> T {
        let stderr = self.stderr.take().expect("spawned keeping stderr");
        let mut lines = BufReader::new(stderr).lines();
        let read = async {
            while let Some(line) = lines.next_line().await.expect("read stderr") {
                if let Some(found) = find(&line) {
                    return found;
                }
            }
            panic!("process exited before printing the line looked for")
        };
        let found = tokio::time::timeout(READY_TIMEOUT, read)
            .await
            .unwrap_or_else(|_| panic!("the line looked for not printed within {READY_TIMEOUT:?}"));
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        found
    }

    /// Sends SIGTERM and waits for the exit status.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("running process");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -TERM {pid} failed");
        tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("process stops within 20s of SIGTERM")
            .expect("wait")
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("running process")
    }

    /// Sends `signal` (e.g. "STOP", "CONT") to the process.
    ///
    /// # Panics
    /// When `kill` fails.
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} {}", self.pid());
    }

    /// Kills the process with SIGKILL, as a crash would, and reaps it.
    pub async fn kill(mut self) {
        self.child.start_kill().expect("SIGKILL");
        self.child.wait().await.expect("wait");
    }

    /// Waits for the process to exit (within 20 s) and returns its status and everything it wrote to
    /// stderr.
    ///
    /// # Panics
    /// When it was not spawned with [`Process::spawn_keeping_stderr`], or does not exit in time.
    pub async fn exit_output(mut self) -> (std::process::ExitStatus, String) {
        let mut stderr = self.stderr.take().expect("spawned keeping stderr");
        let mut text = String::new();
        // Read while waiting, so a chatty process cannot block on a full pipe.
        let (status, read) = tokio::time::timeout(Duration::from_secs(20), async {
            tokio::join!(self.child.wait(), stderr.read_to_string(&mut text))
        })
        .await
        .expect("process exits within 20s");
        read.expect("read stderr");
        (status.expect("wait"), text)
    }

    /// Waits for the process to exit by itself.
    pub async fn wait(mut self) -> std::process::ExitStatus {
        tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("process exits within 20s")
            .expect("wait")
    }
}

/// sagad and the demo participants, each a real process, on fresh databases.
pub struct Stack {
    /// Client for sagad's coordinator API.
    pub client: SagaCoordinatorClient<Channel>,
    /// sagad's gRPC address.
    pub sagad_addr: String,
    /// sagad's metrics address (`host:port`; scrape `http://…/metrics`).
    pub metrics_addr: String,
    /// Each participant service's gRPC endpoint (`http://…`), by name.
    pub participants: BTreeMap<String, String>,
    /// Pool on the participants' database, to check business invariants.
    pub demo_db: sqlx::PgPool,
    /// Pool on sagad's saga log, to check what was persisted.
    pub saga_db: sqlx::PgPool,
    /// The app participant's storage directory, to check the packages it holds.
    pub storage: TempDir,
    sagad: Process,
    demo: Process,
    /// Dropped (and so removed) after the processes and pools are gone.
    databases: Vec<TestDatabase>,
    /// Definitions written for this stack, if any; removed on drop.
    _definitions: Option<TempDir>,
}

impl Stack {
    /// Starts `demo-participants --service all` and `sagad` with the shipped definitions, each process
    /// on port 0 with its own database.
    pub async fn start() -> Self {
        Self::start_with(repo_root().join("definitions"), None, "warn", &[], None).await
    }

    /// Like [`Stack::start`] with [`definitions::fast`] definitions: every step deadline is
    /// `step_timeout` and every backoff a few milliseconds. Tests using it inject faults by the hundred,
    /// so the processes log errors only (unless `RUST_LOG` says otherwise).
    pub async fn start_fast(step_timeout: Duration) -> Self {
        let dir = definitions::fast(step_timeout);
        Self::start_with(dir.path().to_owned(), Some(dir), "error", &[], None).await
    }

    /// Like [`Stack::start_fast`], with `sagad_env` added to sagad's environment (e.g. its TLS and auth
    /// settings) and the client connecting with TLS as `tls` says (as `localhost`).
    pub async fn start_fast_secured(
        step_timeout: Duration,
        sagad_env: &[(&str, String)],
        tls: ClientTlsConfig,
    ) -> Self {
        let dir = definitions::fast(step_timeout);
        let definitions = dir.path().to_owned();
        Self::start_with(definitions, Some(dir), "error", sagad_env, Some(tls)).await
    }

    /// Like [`Stack::start`], with sagad loading its definitions from `definitions`.
    pub async fn start_in(definitions: &Path) -> Self {
        Self::start_with(definitions.to_owned(), None, "warn", &[], None).await
    }

    async fn start_with(
        definitions_dir: PathBuf,
        keep: Option<TempDir>,
        log_level: &str,
        sagad_env: &[(&str, String)],
        tls: Option<ClientTlsConfig>,
    ) -> Self {
        let saga_database = TestDatabase::create("sagad_e2e").await;
        let demo_database = TestDatabase::create("sagad_demo_e2e").await;
        let storage = tempfile::tempdir().expect("storage directory");

        let (demo, participants) =
            start_participants_storing(&demo_database.url(), storage.path(), log_level).await;
        let mut env = vec![("RUST_LOG", log_level.to_owned())];
        env.extend_from_slice(sagad_env);
        let (mut sagad, sagad_addr) =
            start_sagad(&saga_database.url(), &definitions_dir, &participants, &env).await;
        let metrics_addr = sagad.wait_for_listening("metrics listening on").await;
        let endpoint = match tls {
            None => Endpoint::from_shared(format!("http://{sagad_addr}")),
            Some(tls) => {
                let port = sagad_addr.rsplit(':').next().unwrap_or_default();
                Endpoint::from_shared(format!("https://localhost:{port}"))
                    .and_then(|endpoint| endpoint.tls_config(tls))
            }
        };
        let channel = endpoint
            .expect("sagad endpoint")
            .connect()
            .await
            .expect("connect to sagad");
        let client = SagaCoordinatorClient::new(channel);

        Self {
            client,
            sagad_addr,
            metrics_addr,
            participants,
            demo_db: sqlx::PgPool::connect(&demo_database.url())
                .await
                .expect("demo database"),
            saga_db: sqlx::PgPool::connect(&saga_database.url())
                .await
                .expect("saga database"),
            storage,
            sagad,
            demo,
            databases: vec![saga_database, demo_database],
            _definitions: keep,
        }
    }

    /// Starts a saga and returns its id.
    pub async fn start_saga(&mut self, saga_type: &str, payload: Value) -> String {
        start_saga(&mut self.client, saga_type, payload).await
    }

    /// Follows the saga until it is terminal.
    pub async fn wait_terminal(&mut self, saga_id: &str) -> Saga {
        wait_terminal(&mut self.client, saga_id).await
    }

    /// Starts a saga and waits until it is terminal.
    pub async fn run_saga(&mut self, saga_type: &str, payload: Value) -> Saga {
        let saga_id = self.start_saga(saga_type, payload).await;
        self.wait_terminal(&saga_id).await
    }

    /// Stops both processes with SIGTERM, checks they exit cleanly, and drops the databases.
    pub async fn stop(self) {
        let sagad = self.sagad.terminate().await;
        assert!(sagad.success(), "sagad exited with {sagad}");
        let demo = self.demo.terminate().await;
        assert!(demo.success(), "demo-participants exited with {demo}");
        self.demo_db.close().await;
        self.saga_db.close().await;
        drop(self.databases);
    }
}

/// Starts a saga (no idempotency key) and returns its id.
///
/// # Panics
/// When sagad refuses it.
pub async fn start_saga(
    client: &mut SagaCoordinatorClient<Channel>,
    saga_type: &str,
    payload: Value,
) -> String {
    let response = client
        .start_saga(StartSagaRequest {
            labels: Default::default(),
            saga_type: saga_type.to_owned(),
            payload: Some(object(payload)),
            idempotency_key: String::new(),
            wait: None,
        })
        .await
        .expect("StartSaga")
        .into_inner();
    assert!(response.created);
    response.saga_id
}

/// Starts `demo-participants --service all` on port 0 against `database_url`; returns the process and
/// each service's endpoint (`http://…`) by name. `log_level` applies unless `RUST_LOG` is set. The app
/// service keeps its packages in the binary's default directory for that database.
pub async fn start_participants(
    database_url: &str,
    log_level: &str,
) -> (Process, BTreeMap<String, String>) {
    start_participants_with(database_url, log_level, &BTreeMap::new(), &[]).await
}

/// Like [`start_participants`], with the app service's packages in `storage_dir`, for tests that
/// check them.
pub async fn start_participants_storing(
    database_url: &str,
    storage_dir: &Path,
    log_level: &str,
) -> (Process, BTreeMap<String, String>) {
    let storage = [
        "--storage-dir".to_owned(),
        storage_dir.display().to_string(),
    ];
    start_participants_with(database_url, log_level, &BTreeMap::new(), &storage).await
}

/// Like [`start_participants`], each service on the address `addrs` gives it (`127.0.0.1:0` if none),
/// with `extra_args` (e.g. `--tls-cert`). With `--tls-cert` the endpoints are `https://…`.
pub async fn start_participants_with(
    database_url: &str,
    log_level: &str,
    addrs: &BTreeMap<String, String>,
    extra_args: &[String],
) -> (Process, BTreeMap<String, String>) {
    spawn_participants(database_url, log_level, addrs, extra_args, &[]).await
}

/// Like [`start_participants`], with `env` added to the process's environment (e.g. `OTEL_*`).
pub async fn start_participants_env(
    database_url: &str,
    log_level: &str,
    env: &[(&str, String)],
) -> (Process, BTreeMap<String, String>) {
    spawn_participants(database_url, log_level, &BTreeMap::new(), &[], env).await
}

async fn spawn_participants(
    database_url: &str,
    log_level: &str,
    addrs: &BTreeMap<String, String>,
    extra_args: &[String],
    extra_env: &[(&str, String)],
) -> (Process, BTreeMap<String, String>) {
    let mut args = vec!["--service".to_owned(), "all".to_owned()];
    for service in PARTICIPANTS {
        args.push(format!("--{service}-addr"));
        args.push(
            addrs
                .get(service)
                .map_or("127.0.0.1:0", String::as_str)
                .to_owned(),
        );
    }
    args.extend_from_slice(extra_args);
    let scheme = if extra_args.iter().any(|a| a == "--tls-cert") {
        "https"
    } else {
        "http"
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut env = vec![("DEMO_DATABASE_URL", database_url.to_owned())];
    if std::env::var_os("RUST_LOG").is_none() {
        env.push(("RUST_LOG", log_level.to_owned()));
    }
    env.extend_from_slice(extra_env);
    let mut demo = Process::spawn(&binary("demo-participants"), &args, &env);
    let mut participants = BTreeMap::new();
    for service in PARTICIPANTS {
        let addr = demo
            .wait_for_listening(&format!("{service} listening on"))
            .await;
        participants.insert(service.to_owned(), format!("{scheme}://{addr}"));
    }
    (demo, participants)
}

/// The TypeScript SDK's example participant, as built by `npm run build` in `sdk/typescript`.
///
/// # Panics
/// When it has not been built.
pub fn loyalty_script() -> PathBuf {
    let script = repo_root().join("sdk/typescript/dist/examples/loyalty/main.js");
    assert!(
        script.is_file(),
        "{} is missing: build the TypeScript SDK first with `npm ci && npm run build` in sdk/typescript",
        script.display()
    );
    script
}

/// Starts the TypeScript SDK's loyalty example (`node …/main.js`) on port 0 against `database_url`;
/// returns the process and its endpoint (`http://…`). Its SDK logs warnings and worse to stderr.
pub async fn start_loyalty(database_url: &str) -> (Process, String) {
    let script = loyalty_script().display().to_string();
    let env = [
        ("DATABASE_URL", database_url.to_owned()),
        ("LISTEN_ADDR", "127.0.0.1:0".to_owned()),
        ("SAGA_LOG_LEVEL", "warn".to_owned()),
    ];
    let mut loyalty = Process::spawn(Path::new("node"), &[&script], &env);
    let addr = loyalty.wait_for_listening("loyalty listening on").await;
    (loyalty, format!("http://{addr}"))
}

/// Starts `sagad` on port 0 with its saga log at `database_url`, definitions from `definitions`, the
/// given participant endpoints, and `extra_env` (`SAGAD_*` settings; a `RUST_LOG` there applies unless
/// the test runner set one). Returns the process and its address.
pub async fn start_sagad(
    database_url: &str,
    definitions: &Path,
    participants: &BTreeMap<String, String>,
    extra_env: &[(&str, String)],
) -> (Process, String) {
    launch_sagad(
        database_url,
        definitions,
        participants,
        extra_env,
        Stdio::inherit(),
    )
    .await
}

/// Like [`start_sagad`], keeping sagad's stderr for [`Process::exit_output`].
pub async fn start_sagad_keeping_stderr(
    database_url: &str,
    definitions: &Path,
    participants: &BTreeMap<String, String>,
    extra_env: &[(&str, String)],
) -> (Process, String) {
    launch_sagad(
        database_url,
        definitions,
        participants,
        extra_env,
        Stdio::piped(),
    )
    .await
}

async fn launch_sagad(
    database_url: &str,
    definitions: &Path,
    participants: &BTreeMap<String, String>,
    extra_env: &[(&str, String)],
    stderr: Stdio,
) -> (Process, String) {
    let mut env = vec![
        ("SAGAD_DATABASE_URL".to_owned(), database_url.to_owned()),
        ("SAGAD_GRPC_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
        (
            "SAGAD_DEFINITIONS_DIR".to_owned(),
            definitions.display().to_string(),
        ),
    ];
    for (service, endpoint) in participants {
        env.push((
            format!("SAGAD_PARTICIPANTS__{}", service.to_uppercase()),
            endpoint.clone(),
        ));
    }
    for (key, value) in extra_env {
        if *key != "RUST_LOG" || std::env::var_os("RUST_LOG").is_none() {
            env.push(((*key).to_owned(), value.clone()));
        }
    }
    let env: Vec<(&str, String)> = env
        .iter()
        .map(|(key, value)| (key.as_str(), value.clone()))
        .collect();
    let mut sagad = Process::spawn_with(&binary("sagad"), &[], &env, stderr);
    let addr = sagad.wait_for_listening("sagad listening on").await;
    (sagad, addr)
}

/// The active (`RUNNING` or `COMPENSATING`) sagas whose lease belongs to the sagad process `pid`: what a
/// replica held when it was killed.
pub async fn active_sagas_owned_by(saga_log: &sqlx::PgPool, pid: u32) -> Vec<uuid::Uuid> {
    sqlx::query_scalar(
        "SELECT id FROM sagas WHERE owner LIKE '%-' || $1 || '-%'
           AND status IN ('RUNNING', 'COMPENSATING')",
    )
    .bind(pid.to_string())
    .fetch_all(saga_log)
    .await
    .expect("held sagas")
}

/// Follows saga `saga_id` with `WatchSaga` until a version of it satisfies `until`, and returns it.
///
/// # Panics
/// When the stream ends or fails first, or after 30 s.
pub async fn watch_until(
    client: &mut SagaCoordinatorClient<Channel>,
    saga_id: &str,
    until: impl Fn(&Saga) -> bool,
) -> Saga {
    tokio::time::timeout(
        Duration::from_secs(30),
        follow_until(client, saga_id, until),
    )
    .await
    .unwrap_or_else(|_| panic!("saga {saga_id}: no awaited change within 30s"))
}

/// Like [`watch_until`] with no time limit, for a caller that bounds a whole series of waits.
///
/// # Panics
/// When the stream ends or fails first.
pub async fn follow_until(
    client: &mut SagaCoordinatorClient<Channel>,
    saga_id: &str,
    until: impl Fn(&Saga) -> bool,
) -> Saga {
    let mut stream = client
        .watch_saga(WatchSagaRequest {
            saga_id: saga_id.to_owned(),
        })
        .await
        .expect("WatchSaga")
        .into_inner();
    while let Some(message) = stream.message().await.expect("watch message") {
        let saga = message.saga.expect("saga in message");
        if until(&saga) {
            return saga;
        }
    }
    panic!("saga {saga_id} ended without the awaited change")
}

/// Whether the saga is COMPLETED, COMPENSATED or FAILED.
pub fn is_terminal(saga: &Saga) -> bool {
    matches!(
        saga.status(),
        SagaStatus::Completed | SagaStatus::Compensated | SagaStatus::Failed
    )
}

/// Follows the saga with `WatchSaga` until it is terminal; panics after 30 s.
pub async fn wait_terminal(client: &mut SagaCoordinatorClient<Channel>, saga_id: &str) -> Saga {
    watch_until(client, saga_id, is_terminal).await
}

/// The status of every step of `saga`, in order.
pub fn step_statuses(saga: &Saga) -> Vec<StepStatus> {
    saga.steps.iter().map(|step| step.status()).collect()
}

/// The saga's id as a uuid.
///
/// # Panics
/// When the id is not a uuid.
pub fn saga_uuid(saga: &Saga) -> uuid::Uuid {
    saga.saga_id.parse().expect("saga id is a uuid")
}

/// A uuid the steps put into the saga's state, e.g. `orderId`.
///
/// # Panics
/// When the state has no such uuid.
pub fn state_uuid(saga: &Saga, key: &str) -> uuid::Uuid {
    let state = saga_proto::struct_to_json(saga.state.clone().expect("saga state"));
    state
        .get(key)
        .and_then(Value::as_str)
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no uuid {key} in the state of saga {}", saga.saga_id))
}

/// A JSON object as a protobuf Struct.
///
/// # Panics
/// When `value` is not an object.
pub fn object(value: Value) -> prost_types::Struct {
    match value {
        Value::Object(map) => saga_proto::json_to_struct(map),
        other => panic!("expected a JSON object, got {other}"),
    }
}
