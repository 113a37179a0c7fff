//! TLS, mTLS and bearer tokens with roles on sagad's API, with certificates made by the test (`rcgen`)
//! and sagad in-process on a real socket: who may connect, who may call what, what is recorded about who
//! did it, and that certificates and principals are re-read when their files change.

use std::path::Path;
use std::time::Duration;

use e2e_tests::certs::{CertFiles, Pki};
use e2e_tests::in_process::InProcess;
use e2e_tests::object;
use saga_proto::v1::saga_coordinator_client::SagaCoordinatorClient;
use saga_proto::v1::{
    AbortSagaRequest, EventKind, GetSagaHistoryRequest, GetStatusRequest, ListSagasRequest,
    ResolveOutcome, ResolveSagaRequest, SagaStatus, StartSagaRequest,
};
use sagad::Settings;
use serde_json::json;
use sha2::{Digest, Sha256};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const CLIENT_TOKEN: &str = "billing-token-3f9a";
const OPERATOR_TOKEN: &str = "ops-token-77c1";

fn sha256_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The principals file: a client limited to `purchase_plan`, an operator, and a client known by its
/// certificate subject.
fn principals() -> String {
    format!(
        "[[principal]]\nname = \"billing-service\"\ntoken_sha256 = \"{}\"\nroles = [\"client\"]\n\
         saga_types = [\"purchase_plan\"]\n\n\
         [[principal]]\nname = \"ops\"\ntoken_sha256 = \"{}\"\nroles = [\"operator\"]\n",
        sha256_hex(CLIENT_TOKEN),
        sha256_hex(OPERATOR_TOKEN)
    )
}

fn write_principals(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("principals.toml");
    std::fs::write(&path, text).expect("write principals");
    path
}

/// A client over TLS trusting `ca`, presenting `identity` if given.
fn tls_endpoint(addr: std::net::SocketAddr, ca: &Path, identity: Option<&CertFiles>) -> Endpoint {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(ca).expect("ca")));
    if let Some(id) = identity {
        tls = tls.identity(Identity::from_pem(
            std::fs::read(&id.cert).expect("cert"),
            std::fs::read(&id.key).expect("key"),
        ));
    }
    Endpoint::from_shared(format!("https://127.0.0.1:{}", addr.port()))
        .expect("uri")
        .tls_config(tls)
        .expect("tls config")
        .connect_timeout(Duration::from_secs(5))
}

/// sagad serves TLS with `server`'s certificate.
fn serve_tls(settings: &mut Settings, server: &CertFiles) {
    settings.tls.cert_file = Some(server.cert.clone());
    settings.tls.key_file = Some(server.key.clone());
}

fn plain_endpoint(addr: std::net::SocketAddr) -> Endpoint {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect_timeout(Duration::from_secs(5))
}

/// Whether a health check over `endpoint` succeeds (TLS 1.3 may report a refused client certificate
/// only at the first call, so connecting alone proves nothing).
async fn serves(endpoint: Endpoint) -> bool {
    let Ok(channel) = endpoint.connect().await else {
        return false;
    };
    HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .is_ok()
}

async fn client(endpoint: Endpoint) -> SagaCoordinatorClient<Channel> {
    SagaCoordinatorClient::new(endpoint.connect().await.expect("connect"))
}

/// `message` with `authorization: Bearer <token>` metadata when a token is given.
fn with_token<T>(message: T, token: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(token) = token {
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("ascii"),
        );
    }
    request
}

fn purchase() -> StartSagaRequest {
    StartSagaRequest {
        labels: Default::default(),
        saga_type: "purchase_plan".to_owned(),
        payload: Some(object(json!({"userId": "u1", "planId": "pro"}))),
        idempotency_key: String::new(),
        wait: None,
    }
}

/// Retries `attempt` for up to 10 s (files are re-read once a second) until it holds.
async fn eventually<F: Future<Output = bool>>(what: &str, mut attempt: impl FnMut() -> F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !attempt().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within 10s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn tls_only_sagad_refuses_plaintext_and_clients_that_do_not_trust_its_ca() {
    let pki = Pki::new("sagad");
    let other = Pki::new("other");
    let server = pki.server("server");
    let sagad = InProcess::start(|s| serve_tls(s, &server)).await;
    assert!(
        !serves(plain_endpoint(sagad.addr)).await,
        "plaintext refused"
    );
    assert!(
        !serves(tls_endpoint(sagad.addr, &other.ca_file(), None)).await,
        "a client trusting another CA cannot verify sagad"
    );
    assert!(serves(tls_endpoint(sagad.addr, &pki.ca_file(), None)).await);
    let mut client = client(tls_endpoint(sagad.addr, &pki.ca_file(), None)).await;
    let started = client.start_saga(purchase()).await.expect("start over TLS");
    assert!(started.into_inner().created);
    sagad.stop().await;
}

#[tokio::test]
async fn mtls_refuses_clients_without_a_certificate_or_with_one_from_another_ca() {
    let pki = Pki::new("sagad");
    let other = Pki::new("other");
    let server = pki.server("server");
    let sagad = InProcess::start(|s| {
        serve_tls(s, &server);
        s.tls.client_ca_file = Some(pki.ca_file());
    })
    .await;
    let ca = pki.ca_file();
    assert!(
        !serves(tls_endpoint(sagad.addr, &ca, None)).await,
        "no client certificate"
    );
    let stranger = other.client("billing-service");
    assert!(
        !serves(tls_endpoint(sagad.addr, &ca, Some(&stranger))).await,
        "a client certificate from another CA"
    );
    let known = pki.client("billing-service");
    assert!(serves(tls_endpoint(sagad.addr, &ca, Some(&known))).await);
    sagad.stop().await;
}

#[tokio::test]
async fn a_client_token_starts_sagas_and_only_an_operator_token_aborts_them() {
    let dir = tempfile::tempdir().expect("dir");
    let tokens = write_principals(dir.path(), &principals());
    let sagad = InProcess::start(|s| s.auth.tokens_file = Some(tokens.clone())).await;
    let mut client = client(plain_endpoint(sagad.addr)).await;

    for token in [None, Some("not-a-token")] {
        let refused = client
            .start_saga(with_token(purchase(), token))
            .await
            .expect_err("no principal");
        assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    }
    let withdrawal = StartSagaRequest {
        saga_type: "withdrawal".to_owned(),
        ..purchase()
    };
    let refused = client
        .start_saga(with_token(withdrawal, Some(CLIENT_TOKEN)))
        .await
        .expect_err("type not granted");
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(refused.message().contains("purchase_plan"), "{refused:?}");
    assert_eq!(sagad.rows().await, (0, 0), "refusals write nothing");

    let started = client
        .start_saga(with_token(purchase(), Some(CLIENT_TOKEN)))
        .await
        .expect("client starts")
        .into_inner();
    let saga = client
        .get_status(with_token(
            GetStatusRequest {
                saga_id: started.saga_id.clone(),
            },
            Some(CLIENT_TOKEN),
        ))
        .await
        .expect("client reads")
        .into_inner()
        .saga
        .expect("saga");
    assert_eq!(saga.started_by, "billing-service");
    let listed = client
        .list_sagas(with_token(ListSagasRequest::default(), Some(CLIENT_TOKEN)))
        .await
        .expect("client lists")
        .into_inner();
    assert_eq!(listed.sagas[0].started_by, "billing-service");

    let abort = || AbortSagaRequest {
        saga_id: started.saga_id.clone(),
        reason: "customer cancelled".to_owned(),
    };
    let refused = client
        .abort_saga(with_token(abort(), Some(CLIENT_TOKEN)))
        .await
        .expect_err("a client cannot abort");
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(refused.message().contains("operator"), "{refused:?}");
    let aborted: i64 =
        sqlx::query_scalar("SELECT count(*) FROM saga_events WHERE kind = 'SAGA_ABORTED'")
            .fetch_one(&sagad.pool)
            .await
            .expect("count");
    assert_eq!(aborted, 0, "a refused abort writes nothing");

    client
        .abort_saga(with_token(abort(), Some(OPERATOR_TOKEN)))
        .await
        .expect("an operator aborts");
    let history = client
        .get_saga_history(with_token(
            GetSagaHistoryRequest {
                saga_id: started.saga_id.clone(),
            },
            Some(OPERATOR_TOKEN),
        ))
        .await
        .expect("history")
        .into_inner();
    let aborted = history
        .events
        .iter()
        .find(|e| e.kind() == EventKind::SagaAborted)
        .expect("abort recorded");
    assert_eq!(aborted.by, "ops");
    assert_eq!(aborted.operator_reason, "customer cancelled");

    let health = HealthClient::new(plain_endpoint(sagad.addr).connect().await.expect("connect"))
        .check(HealthCheckRequest::default())
        .await;
    assert!(health.is_ok(), "health stays open: {health:?}");
    sagad.stop().await;
}

/// One step whose compensation is done by hand: aborted while its call may be in flight, the saga parks
/// at once (no participant runs here).
const HOLD: &str = "name: hold\nversion: 1\nsteps:\n  \
    - {name: HOLD_FUNDS, participant: billing, action: Hold, compensate: Release, manual: true}\n";

#[tokio::test]
async fn only_an_operator_resolves_a_parked_saga_and_is_recorded_as_the_one_who_did() {
    let dir = tempfile::tempdir().expect("dir");
    let tokens = write_principals(dir.path(), &principals());
    let definitions = dir.path().join("definitions");
    std::fs::create_dir(&definitions).expect("mkdir");
    std::fs::write(definitions.join("hold.yaml"), HOLD).expect("write definition");
    let sagad = InProcess::start(|s| {
        s.auth.tokens_file = Some(tokens.clone());
        s.definitions_dir = definitions.clone();
    })
    .await;
    let mut client = client(plain_endpoint(sagad.addr)).await;
    let hold = StartSagaRequest {
        saga_type: "hold".to_owned(),
        ..purchase()
    };
    let started = client
        .start_saga(with_token(hold, Some(OPERATOR_TOKEN)))
        .await
        .expect("start")
        .into_inner();
    let parked = client
        .abort_saga(with_token(
            AbortSagaRequest {
                saga_id: started.saga_id.clone(),
                reason: "customer cancelled".to_owned(),
            },
            Some(OPERATOR_TOKEN),
        ))
        .await
        .expect("abort")
        .into_inner()
        .saga
        .expect("saga");
    assert_eq!(parked.status(), SagaStatus::Failed, "{parked:#?}");

    let resolve = || ResolveSagaRequest {
        saga_id: started.saga_id.clone(),
        step: "HOLD_FUNDS".to_owned(),
        outcome: ResolveOutcome::Compensated.into(),
        note: "released in the ledger".to_owned(),
        reason: "no API for releases".to_owned(),
    };
    for (token, code) in [
        (None, Code::Unauthenticated),
        (Some(CLIENT_TOKEN), Code::PermissionDenied),
    ] {
        let refused = client
            .resolve_saga(with_token(resolve(), token))
            .await
            .expect_err("not an operator");
        assert_eq!(refused.code(), code, "{refused:?}");
    }
    let resolved: i64 =
        sqlx::query_scalar("SELECT count(*) FROM saga_events WHERE kind = 'STEP_RESOLVED'")
            .fetch_one(&sagad.pool)
            .await
            .expect("count");
    assert_eq!(resolved, 0, "a refused resolve writes nothing");

    let saga = client
        .resolve_saga(with_token(resolve(), Some(OPERATOR_TOKEN)))
        .await
        .expect("an operator resolves")
        .into_inner()
        .saga
        .expect("saga");
    assert_eq!(saga.status(), SagaStatus::Compensated);
    let resolution = saga.steps[0].resolution.clone().expect("resolution");
    assert_eq!(resolution.by, "ops");
    let history = client
        .get_saga_history(with_token(
            GetSagaHistoryRequest {
                saga_id: started.saga_id.clone(),
            },
            Some(CLIENT_TOKEN),
        ))
        .await
        .expect("history")
        .into_inner();
    let event = history
        .events
        .iter()
        .find(|e| e.kind() == EventKind::StepResolved)
        .expect("resolution recorded");
    assert_eq!(
        (event.by.as_str(), event.note.as_str(), event.step.as_str()),
        ("ops", "released in the ledger", "HOLD_FUNDS")
    );
    sagad.stop().await;
}

#[tokio::test]
async fn with_mtls_a_principal_is_known_by_its_certificate_subject() {
    let pki = Pki::new("sagad");
    let server = pki.server("server");
    let text = format!(
        "{}\n[[principal]]\nname = \"device-fleet\"\ncert_subject = \"CN=device-fleet, O=Acme\"\n\
         roles = [\"client\"]\n",
        principals()
    );
    let tokens = write_principals(pki.dir(), &text);
    let sagad = InProcess::start(|s| {
        serve_tls(s, &server);
        s.tls.client_ca_file = Some(pki.ca_file());
        s.auth.tokens_file = Some(tokens.clone());
    })
    .await;
    let fleet = pki.client("device-fleet");
    let mut as_fleet = client(tls_endpoint(sagad.addr, &pki.ca_file(), Some(&fleet))).await;
    let started = as_fleet
        .start_saga(purchase())
        .await
        .expect("known by its certificate")
        .into_inner();
    let saga = as_fleet
        .get_status(GetStatusRequest {
            saga_id: started.saga_id,
        })
        .await
        .expect("status")
        .into_inner()
        .saga
        .expect("saga");
    assert_eq!(saga.started_by, "device-fleet");

    let unlisted = pki.client("someone-else");
    let mut as_unlisted = client(tls_endpoint(sagad.addr, &pki.ca_file(), Some(&unlisted))).await;
    let refused = as_unlisted
        .start_saga(purchase())
        .await
        .expect_err("a valid certificate of no listed subject");
    assert_eq!(refused.code(), Code::Unauthenticated);
    let with_token = as_unlisted
        .start_saga(with_token(purchase(), Some(CLIENT_TOKEN)))
        .await
        .expect("a token still identifies its principal")
        .into_inner();
    assert!(with_token.created);
    sagad.stop().await;
}

#[tokio::test]
async fn principals_and_the_server_certificate_are_reloaded_when_their_files_change() {
    let pki = Pki::new("sagad");
    let server = pki.server("server");
    let tokens = write_principals(pki.dir(), &principals());
    let sagad = InProcess::start(|s| {
        serve_tls(s, &server);
        s.auth.tokens_file = Some(tokens.clone());
    })
    .await;
    let mut client = client(tls_endpoint(sagad.addr, &pki.ca_file(), None)).await;
    let late = "late-token-0b2e";
    let refused = client
        .list_sagas(with_token(ListSagasRequest::default(), Some(late)))
        .await
        .expect_err("not listed yet");
    assert_eq!(refused.code(), Code::Unauthenticated);

    let added = format!(
        "{}\n[[principal]]\nname = \"late\"\ntoken_sha256 = \"{}\"\nroles = [\"client\"]\n",
        principals(),
        sha256_hex(late)
    );
    std::fs::write(&tokens, added).expect("rewrite principals");
    eventually("the new token is accepted", || {
        let mut client = client.clone();
        async move {
            client
                .list_sagas(with_token(ListSagasRequest::default(), Some(late)))
                .await
                .is_ok()
        }
    })
    .await;

    // Rotate to a certificate from a new CA over the same files: new connections get it.
    let rotated = Pki::new("rotated");
    let next = rotated.server("next");
    std::fs::copy(&next.cert, &server.cert).expect("rotate cert");
    std::fs::copy(&next.key, &server.key).expect("rotate key");
    eventually("new connections get the rotated certificate", || {
        serves(tls_endpoint(sagad.addr, &rotated.ca_file(), None))
    })
    .await;
    assert!(
        !serves(tls_endpoint(sagad.addr, &pki.ca_file(), None)).await,
        "the old certificate is no longer served"
    );
    sagad.stop().await;
}
