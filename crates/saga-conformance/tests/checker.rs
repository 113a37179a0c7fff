//! The checker checked: a participant built on the SDK passes every check, and a deliberately naive one
//! (no barrier: it runs every delivery) fails exactly the checks it breaks — through the library and
//! through the `saga-conformance` binary. Both participants are real gRPC servers on port 0.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use anyhow::Result;
use saga_conformance::{Check, Target, Verdict};
use saga_participant::{ParticipantService, Router, StepCall, StepError, StepOutput, output};
use saga_proto::json_to_struct;
use saga_proto::v1::saga_participant_server::{SagaParticipant, SagaParticipantServer};
use saga_proto::v1::{StepRequest, StepResponse};
use saga_testkit::TestDatabase;
use serde_json::{Map, Value, json};
use sqlx::{PgConnection, PgPool};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use uuid::Uuid;

/// Runs every delivery it gets: a fresh `thingId` per execute, no record of anything. It validates the
/// action name and refuses `{"refuse": true}`, as a hand-written participant typically does.
struct Naive;

#[tonic::async_trait]
impl SagaParticipant for Naive {
    async fn execute(
        &self,
        request: Request<StepRequest>,
    ) -> Result<Response<StepResponse>, Status> {
        let request = request.into_inner();
        if request.action != "CreateThing" {
            return Err(Status::invalid_argument(format!(
                "unknown action {}",
                request.action
            )));
        }
        let refuse = request
            .payload
            .and_then(|payload| payload.fields.get("refuse").cloned())
            .is_some();
        if refuse {
            return Err(Status::failed_precondition("things are sold out"));
        }
        let output = object(json!({"thingId": Uuid::new_v4().to_string()}));
        Ok(Response::new(StepResponse {
            output: Some(json_to_struct(output)),
        }))
    }

    async fn compensate(
        &self,
        request: Request<StepRequest>,
    ) -> Result<Response<StepResponse>, Status> {
        if request.get_ref().action != "DeleteThing" {
            return Err(Status::invalid_argument("unknown action"));
        }
        Ok(Response::new(StepResponse {
            output: Some(json_to_struct(Map::new())),
        }))
    }
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("expected an object, got {other}"),
    }
}

async fn serve_naive() -> Result<(SocketAddr, CancellationToken)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(SagaParticipantServer::new(Naive))
            .serve_with_incoming_shutdown(
                TcpListenerStream::new(listener),
                stopped.cancelled_owned(),
            ),
    );
    Ok((addr, stop))
}

fn target(addr: SocketAddr, payload: Value, refusal: Value) -> Target {
    Target {
        endpoint: format!("http://{addr}"),
        action: "CreateThing".to_owned(),
        compensate: "DeleteThing".to_owned(),
        payload: object(payload),
        refusal_payload: Some(object(refusal)),
        step: "CONFORMANCE_CHECK".to_owned(),
        saga_type: "conformance".to_owned(),
        timeout: Duration::from_secs(10),
        concurrency: 8,
    }
}

/// The SDK participant's action: creates a thing, refusing a sold-out one.
async fn create_thing(call: &StepCall, tx: &mut PgConnection) -> Result<StepOutput, StepError> {
    if call.payload.contains_key("refuse") {
        return Err(StepError::failed_precondition("things are sold out"));
    }
    let id = Uuid::new_v4();
    sqlx::query("INSERT INTO things (id, saga_id) VALUES ($1, $2)")
        .bind(id)
        .bind(call.saga_id)
        .execute(&mut *tx)
        .await?;
    Ok(output([("thingId", json!(id))]))
}

async fn delete_thing(call: &StepCall, tx: &mut PgConnection) -> Result<StepOutput, StepError> {
    let deleted = sqlx::query("DELETE FROM things WHERE saga_id = $1")
        .bind(call.saga_id)
        .execute(&mut *tx)
        .await?;
    Ok(output([("deleted", json!(deleted.rows_affected()))]))
}

#[tokio::test]
async fn a_participant_built_on_the_sdk_passes_every_check() -> Result<()> {
    let database = TestDatabase::create("conformance_sdk").await;
    let pool = PgPool::connect(&database.url()).await?;
    saga_participant::migrate(&pool).await?;
    sqlx::query("CREATE TABLE things (id uuid PRIMARY KEY, saga_id uuid NOT NULL UNIQUE)")
        .execute(&pool)
        .await?;
    let router = Router::new()
        .execute("CreateThing", create_thing)
        .compensate("DeleteThing", delete_thing);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let server = tokio::spawn(saga_participant::serve(
        listener,
        ParticipantService::new("things", pool.clone(), router),
        stop.clone(),
    ));

    let report = saga_conformance::run(&target(addr, json!({}), json!({"refuse": true}))).await?;

    println!("{}", report.table());
    assert!(report.passed(), "{}", report.summary());
    assert_eq!(report.summary(), "10 passed, 0 failed, 0 skipped");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM things")
        .fetch_one(&pool)
        .await?;
    let executed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM saga_barrier WHERE direction = 'execute' AND outcome = 'succeeded'",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(
        left,
        executed - 2,
        "one thing per executed saga, less the two the checks compensated"
    );
    stop.cancel();
    server.await??;
    pool.close().await;
    Ok(())
}

#[tokio::test]
async fn a_naive_participant_fails_exactly_the_checks_it_breaks() -> Result<()> {
    let (addr, stop) = serve_naive().await?;

    let report = saga_conformance::run(&target(addr, json!({}), json!({"refuse": true}))).await?;

    println!("{}", report.table());
    let failed: Vec<Check> = report.failed().collect();
    assert_eq!(
        failed,
        [
            Check::RepeatedExecute,
            Check::ConcurrentExecutes,
            Check::RepeatedCompensation,
            Check::ActionAfterCompensation,
            Check::CompensationRacingExecutes,
            Check::OperatorRetry,
            Check::MalformedRequest,
        ]
    );
    let verdict = |check| {
        report
            .results
            .iter()
            .find(|result| result.check == check)
            .map(|result| result.verdict.clone())
    };
    assert!(
        matches!(verdict(Check::ActionAfterCompensation), Some(Verdict::Fail(detail))
            if detail.starts_with("attempt 1 of the action after its compensation answered OK {\"thingId\"")),
        "{:?}",
        verdict(Check::ActionAfterCompensation)
    );
    for passing in [
        Check::CompensationWithoutAction,
        Check::Refusal,
        Check::UnknownAction,
    ] {
        assert!(
            matches!(verdict(passing), Some(Verdict::Pass(_))),
            "{passing:?}: {:?}",
            verdict(passing)
        );
    }
    stop.cancel();
    Ok(())
}

#[tokio::test]
async fn the_binary_prints_the_table_and_exits_1_when_a_check_fails() -> Result<()> {
    let (addr, stop) = serve_naive().await?;
    let binary = env!("CARGO_BIN_EXE_saga-conformance");
    let addr = addr.to_string();
    let run = tokio::task::spawn_blocking(move || {
        Command::new(binary)
            .args([
                "--addr",
                &addr,
                "--action",
                "CreateThing",
                "--compensate",
                "DeleteThing",
            ])
            .args(["--payload", "{}"])
            .output()
    });
    let out = run.await??;
    let stdout = String::from_utf8(out.stdout)?;

    println!("{stdout}");
    assert_eq!(out.status.code(), Some(1));
    for check in Check::ALL {
        assert!(stdout.contains(check.id()), "row {} missing", check.id());
    }
    assert!(stdout.trim_end().ends_with("2 passed, 6 failed, 2 skipped"));
    stop.cancel();
    Ok(())
}

#[test]
fn the_binary_exits_2_when_it_cannot_reach_the_participant() -> Result<()> {
    let unused = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let out = Command::new(env!("CARGO_BIN_EXE_saga-conformance"))
        .args([
            "--addr",
            &unused.to_string(),
            "--action",
            "A",
            "--compensate",
            "B",
        ])
        .args(["--payload", "{}", "--timeout", "2s"])
        .output()?;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr)?;
    assert!(
        stderr.starts_with(&format!(
            "saga-conformance: cannot connect to the participant at http://{unused}"
        )),
        "{stderr}"
    );
    Ok(())
}
