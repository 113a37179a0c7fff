//! sagad calls participants over TLS and mTLS (`participant_tls.*`), with the real `sagad` and
//! `demo-participants` processes and certificates made by the test: a saga runs end to end when both
//! sides trust each other, and a participant whose certificate sagad does not trust fails its calls as
//! transient errors — retried, the saga kept — until it is fixed.

use std::collections::BTreeMap;
use std::path::Path;

use e2e_tests::certs::{CertFiles, Pki};
use e2e_tests::definitions::{policy, purchase_plan_as, write_dir};
use e2e_tests::{Process, start_participants_with, start_sagad, wait_terminal, watch_until};
use saga_proto::v1::saga_coordinator_client::SagaCoordinatorClient;
use saga_proto::v1::saga_participant_client::SagaParticipantClient;
use saga_proto::v1::{
    ErrorKind, EventKind, GetSagaHistoryRequest, SagaStatus, StartSagaRequest, StepRequest,
};
use saga_testkit::TestDatabase;
use serde_json::json;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// `demo-participants` arguments serving `server`'s certificate and requiring clients signed by `ca`.
fn tls_args(server: &CertFiles, client_ca: &Path) -> Vec<String> {
    let path = |p: &Path| p.display().to_string();
    vec![
        "--tls-cert".to_owned(),
        path(&server.cert),
        "--tls-key".to_owned(),
        path(&server.key),
        "--tls-client-ca".to_owned(),
        path(client_ca),
    ]
}

/// sagad's `participant_tls.*` settings, through the environment as an operator would set them.
fn sagad_tls_env(ca: &Path, identity: &CertFiles) -> Vec<(&'static str, String)> {
    vec![
        ("SAGAD_PARTICIPANT_TLS__CA_FILE", ca.display().to_string()),
        (
            "SAGAD_PARTICIPANT_TLS__CERT_FILE",
            identity.cert.display().to_string(),
        ),
        (
            "SAGAD_PARTICIPANT_TLS__KEY_FILE",
            identity.key.display().to_string(),
        ),
        ("RUST_LOG", "error".to_owned()),
    ]
}

/// Starts sagad (a plaintext API) calling `endpoints`, and a `purchase_plan` on it.
async fn sagad_with_a_purchase(
    saga_db: &TestDatabase,
    definitions: &Path,
    endpoints: &BTreeMap<String, String>,
    env: &[(&str, String)],
) -> (Process, SagaCoordinatorClient<Channel>, String) {
    let (sagad, addr) = start_sagad(&saga_db.url(), definitions, endpoints, env).await;
    let mut client = SagaCoordinatorClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    let request = StartSagaRequest {
        labels: Default::default(),
        saga_type: "purchase_plan".to_owned(),
        payload: Some(e2e_tests::object(json!({"userId": "u1", "planId": "pro"}))),
        idempotency_key: String::new(),
        wait: None,
    };
    let started = client
        .start_saga(request)
        .await
        .expect("start")
        .into_inner();
    (sagad, client, started.saga_id)
}

#[tokio::test]
async fn sagad_drives_a_saga_through_participants_that_require_its_client_certificate() {
    let pki = Pki::new("mesh");
    let participant_cert = pki.server("participants");
    let sagad_identity = pki.client("sagad");
    let (saga_db, demo_db) = (
        TestDatabase::create("sagad_ptls").await,
        TestDatabase::create("demo_ptls").await,
    );
    let (demo, endpoints) = start_participants_with(
        &demo_db.url(),
        "error",
        &BTreeMap::new(),
        &tls_args(&participant_cert, &pki.ca_file()),
    )
    .await;
    assert!(endpoints["billing"].starts_with("https://"));

    // A caller without a client certificate is refused by the participant itself.
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(
        std::fs::read(pki.ca_file()).expect("ca"),
    ));
    let anonymous = Endpoint::from_shared(endpoints["billing"].clone())
        .expect("uri")
        .tls_config(tls)
        .expect("tls");
    let refused = match anonymous.connect().await {
        Ok(channel) => SagaParticipantClient::new(channel)
            .execute(StepRequest::default())
            .await
            .is_err(),
        Err(_) => true,
    };
    assert!(
        refused,
        "a participant with a client CA refuses callers without a certificate"
    );

    let (sagad, mut client, saga_id) = sagad_with_a_purchase(
        &saga_db,
        &e2e_tests::repo_root().join("definitions"),
        &endpoints,
        &sagad_tls_env(&pki.ca_file(), &sagad_identity),
    )
    .await;
    let saga = wait_terminal(&mut client, &saga_id).await;
    assert_eq!(saga.status(), SagaStatus::Completed, "{saga:?}");

    assert!(sagad.terminate().await.success());
    assert!(demo.terminate().await.success());
}

#[tokio::test]
async fn a_participant_sagad_does_not_trust_is_retried_as_transient_and_the_saga_completes_once_fixed()
 {
    let pki = Pki::new("mesh");
    let impostor = Pki::new("impostor");
    let sagad_identity = pki.client("sagad");
    let (saga_db, demo_db) = (
        TestDatabase::create("sagad_ptls").await,
        TestDatabase::create("demo_ptls").await,
    );
    // Retries every 100 ms for long enough to outlast the participant's restart.
    let definitions = write_dir(&[purchase_plan_as("purchase_plan", |d| {
        d.retry = policy(200, 100, 1.0, 100, 0.0);
    })]);

    let untrusted = impostor.server("participants");
    let (demo, endpoints) = start_participants_with(
        &demo_db.url(),
        "error",
        &BTreeMap::new(),
        &tls_args(&untrusted, &pki.ca_file()),
    )
    .await;
    let (sagad, mut client, saga_id) = sagad_with_a_purchase(
        &saga_db,
        definitions.path(),
        &endpoints,
        &sagad_tls_env(&pki.ca_file(), &sagad_identity),
    )
    .await;
    let retrying = watch_until(&mut client, &saga_id, |saga| saga.steps[0].attempts >= 2).await;
    assert_eq!(retrying.status(), SagaStatus::Running);
    let history = client
        .get_saga_history(GetSagaHistoryRequest {
            saga_id: saga_id.clone(),
        })
        .await
        .expect("history")
        .into_inner();
    let failed = history
        .events
        .iter()
        .find(|e| e.kind() == EventKind::StepFailed)
        .expect("a failed attempt");
    assert_eq!(failed.error_kind(), ErrorKind::Transient, "{failed:?}");
    assert!(failed.retry_at.is_some(), "retried: {failed:?}");

    // Fix the participant: same addresses, a certificate sagad trusts.
    assert!(demo.terminate().await.success());
    let addrs: BTreeMap<String, String> = endpoints
        .iter()
        .map(|(service, endpoint)| {
            let addr = endpoint.trim_start_matches("https://").to_owned();
            (service.clone(), addr)
        })
        .collect();
    let trusted = pki.server("participants-fixed");
    let (demo, _) = start_participants_with(
        &demo_db.url(),
        "error",
        &addrs,
        &tls_args(&trusted, &pki.ca_file()),
    )
    .await;
    let saga = wait_terminal(&mut client, &saga_id).await;
    assert_eq!(saga.status(), SagaStatus::Completed, "{saga:?}");

    assert!(sagad.terminate().await.success());
    assert!(demo.terminate().await.success());
}
