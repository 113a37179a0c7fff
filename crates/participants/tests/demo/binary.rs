//! The `demo-participants` binary as a real process: readiness lines, health, clean stop, bad database.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use participants::Service;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use saga_testkit::TestDatabase;

use crate::support::DATABASE_PREFIX;

const BINARY: &str = env!("CARGO_BIN_EXE_demo-participants");

fn demo_participants(database_url: &str, storage_dir: &Path) -> Command {
    let mut command = Command::new(BINARY);
    command
        .args(["--database-url", database_url])
        .arg("--storage-dir")
        .arg(storage_dir)
        .kill_on_drop(true);
    for service in Service::ALL {
        command.args([&format!("--{service}-addr"), "127.0.0.1:0"]);
    }
    command
}

#[tokio::test]
async fn the_binary_creates_its_database_announces_each_port_and_stops_on_sigterm() -> Result<()> {
    let db = TestDatabase::create(DATABASE_PREFIX).await;
    let storage = tempfile::tempdir()?;
    let mut child = demo_participants(&db.sibling_url("demo"), storage.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().context("stdout is piped")?;
    let mut lines = BufReader::new(stdout).lines();

    let mut announced = Vec::new();
    for _ in Service::ALL {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .context("no readiness line in time")??
            .context("stdout closed before every service was announced")?;
        let Some((service, addr)) = line.split_once(" listening on ") else {
            bail!("unexpected stdout line {line:?}");
        };
        announced.push((service.to_owned(), addr.parse::<SocketAddr>()?));
    }
    let names: Vec<_> = announced.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        Service::ALL.map(Service::as_str),
        "one line per service, in order"
    );

    for (_, addr) in &announced {
        assert_ne!(addr.port(), 0);
        let channel = Channel::from_shared(format!("http://{addr}"))?
            .connect()
            .await?;
        let health = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: "saga.v1.SagaParticipant".to_owned(),
            })
            .await?;
        assert_eq!(health.into_inner().status(), ServingStatus::Serving);
    }

    let pid = child.id().context("child is running")?;
    let signalled = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    assert!(signalled.success());
    let exit = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .context("no exit after SIGTERM")??;
    assert!(exit.success(), "{exit:?}");
    assert_eq!(lines.next_line().await?, None, "nothing else on stdout");
    Ok(())
}

#[tokio::test]
async fn an_unreachable_database_is_one_line_on_stderr_and_exit_code_1() -> Result<()> {
    let storage = tempfile::tempdir()?;
    let output = demo_participants("postgres://postgres@127.0.0.1:1/sagad_demo", storage.path())
        .output()
        .await?;

    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8(output.stderr)?;
    let lines: Vec<_> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with(
            "demo-participants: cannot reach the demo database sagad_demo at 127.0.0.1:1: "
        ),
        "{stderr}"
    );
    Ok(())
}
