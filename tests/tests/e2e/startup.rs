//! sagad refuses to start on bad configuration with one clear line on stderr and a non-zero exit.

use e2e_tests::{binary, isolate, repo_root};

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
