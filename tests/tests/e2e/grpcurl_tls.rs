//! The real `grpcurl` (installed by scripts/ensure-tools.sh) against sagad with TLS, client certificates and bearer
//! tokens, all made by scripts/dev-certs.sh, as the README's "Secure it" section runs it: a client token
//! starts a saga and is refused `AbortSaga`, an operator token aborts it, no token is `UNAUTHENTICATED`.

use std::path::Path;
use std::process::{Command, Output};

use e2e_tests::in_process::InProcess;
use e2e_tests::repo_root;

fn script(name: &str, args: &[&str]) -> String {
    let output = Command::new(repo_root().join("scripts").join(name))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {name}: {e}"));
    assert!(
        output.status.success(),
        "{name} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

/// Runs grpcurl with the dev CA and client certificate, `token` as bearer token if given.
fn grpcurl(certs: &Path, port: u16, token: Option<&str>, data: &str, method: &str) -> Output {
    let file = |name: &str| certs.join(name).display().to_string();
    let mut command = Command::new(e2e_tests::grpcurl());
    command.args([
        "-cacert",
        &file("ca.pem"),
        "-cert",
        &file("client.pem"),
        "-key",
        &file("client.key"),
    ]);
    if let Some(token) = token {
        command.args(["-H", &format!("authorization: Bearer {token}")]);
    }
    command
        .args(["-d", data, &format!("localhost:{port}"), method])
        .output()
        .expect("run grpcurl")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "grpcurl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn refusal(output: &Output) -> String {
    assert!(!output.status.success(), "grpcurl must fail");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn grpcurl_over_mtls_with_tokens_starts_with_a_client_token_and_aborts_only_as_operator() {
    let dir = tempfile::tempdir().expect("dir");
    let certs = dir.path().join("certs");
    script("dev-certs.sh", &[certs.to_str().expect("utf-8 path")]);
    let sagad = InProcess::start(|s| {
        s.tls.cert_file = Some(certs.join("server.pem"));
        s.tls.key_file = Some(certs.join("server.key"));
        s.tls.client_ca_file = Some(certs.join("ca.pem"));
        s.auth.tokens_file = Some(certs.join("principals.toml"));
    })
    .await;
    let port = sagad.addr.port();
    let token = |name: &str| std::fs::read_to_string(certs.join(name)).expect("token");
    let (client, operator) = (token("client.token"), token("operator.token"));
    let certs_dir = certs.clone();
    // grpcurl blocks: run it off the runtime that serves sagad.
    let run = move |token: Option<String>, data: String, method: &'static str| {
        let certs = certs_dir.clone();
        tokio::task::spawn_blocking(move || grpcurl(&certs, port, token.as_deref(), &data, method))
    };

    let start = r#"{"saga_type":"purchase_plan","payload":{"userId":"u1","planId":"pro"}}"#;
    let anonymous = run(None, start.to_owned(), "saga.v1.SagaCoordinator/StartSaga")
        .await
        .expect("grpcurl");
    assert!(refusal(&anonymous).contains("Code: Unauthenticated"));
    assert_eq!(sagad.rows().await, (0, 0));

    let started = run(
        Some(client.clone()),
        start.to_owned(),
        "saga.v1.SagaCoordinator/StartSaga",
    )
    .await
    .expect("grpcurl");
    let started: serde_json::Value = serde_json::from_str(&stdout(&started)).expect("json");
    let saga_id = started["sagaId"].as_str().expect("sagaId").to_owned();
    let abort = format!(r#"{{"saga_id":"{saga_id}","reason":"customer cancelled"}}"#);

    let refused = run(
        Some(client),
        abort.clone(),
        "saga.v1.SagaCoordinator/AbortSaga",
    )
    .await
    .expect("grpcurl");
    let refused = refusal(&refused);
    assert!(refused.contains("Code: PermissionDenied"), "{refused}");
    assert!(refused.contains("needs role operator"), "{refused}");

    let aborted = run(Some(operator), abort, "saga.v1.SagaCoordinator/AbortSaga")
        .await
        .expect("grpcurl");
    let aborted = stdout(&aborted);
    assert!(aborted.contains("SAGA_STATUS_COMPENSAT"), "{aborted}");
    assert!(
        aborted.contains("\"startedBy\": \"billing-service\""),
        "{aborted}"
    );
    sagad.stop().await;
}
