//! Principals, tokens and grants, unit by unit.

use super::*;

const OPERATOR_TOKEN: &str = "op-secret";

fn file() -> String {
    let hash = |t: &str| hex::encode(Sha256::digest(t.as_bytes()));
    format!(
        "[[principal]]\nname = \"billing-service\"\ntoken_sha256 = \"{}\"\nroles = [\"client\"]\n\
         saga_types = [\"purchase_plan\"]\n\n[[principal]]\nname = \"ops\"\ntoken_sha256 = \"{}\"\n\
         roles = [\"operator\"]\n\n[[principal]]\nname = \"device-fleet\"\n\
         cert_subject = \"CN=device-fleet, O=Acme\"\nroles = [\"client\"]\n",
        hash("client-secret"),
        hash(OPERATOR_TOKEN)
    )
}

fn request(path: &str, token: Option<&str>) -> http::Request<Body> {
    let mut builder = http::Request::builder().uri(format!("http://sagad{path}"));
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    builder.body(Body::empty()).expect("request")
}

fn layer(protect_reflection: bool) -> AuthLayer {
    let principals = Principals::parse(&file(), true).expect("valid file");
    AuthLayer::new(
        Some(watch::channel(Arc::new(principals)).1),
        protect_reflection,
    )
}

#[test]
fn tokens_find_their_principal_and_nothing_else_does() {
    let principals = Principals::parse(&file(), true).expect("valid");
    assert_eq!(
        principals.by_token("client-secret").expect("known").name,
        "billing-service"
    );
    assert_eq!(
        principals.by_token(OPERATOR_TOKEN).expect("known").name,
        "ops"
    );
    assert!(principals.by_token("client-secreT").is_none());
    assert!(principals.by_token("").is_none());
}

#[test]
fn clients_start_and_read_operators_also_abort_retry_and_resolve() {
    let layer = layer(false);
    let code = |path: &str, token: Option<&str>| match layer.check(&request(path, token)) {
        Ok(_) => tonic::Code::Ok,
        Err(status) => status.code(),
    };
    let coordinator = |m: &str| format!("/saga.v1.SagaCoordinator/{m}");
    for verb in [
        "StartSaga",
        "GetStatus",
        "ListSagas",
        "WatchSaga",
        "GetSagaHistory",
        "GetStats",
    ] {
        assert_eq!(
            code(&coordinator(verb), Some("client-secret")),
            tonic::Code::Ok
        );
        assert_eq!(
            code(&coordinator(verb), Some(OPERATOR_TOKEN)),
            tonic::Code::Ok
        );
        assert_eq!(code(&coordinator(verb), None), tonic::Code::Unauthenticated);
    }
    for verb in ["AbortSaga", "RetrySaga", "ResolveSaga", "SomeFutureVerb"] {
        assert_eq!(
            code(&coordinator(verb), Some("client-secret")),
            tonic::Code::PermissionDenied
        );
        assert_eq!(
            code(&coordinator(verb), Some(OPERATOR_TOKEN)),
            tonic::Code::Ok
        );
    }
    assert_eq!(
        code(&coordinator("AbortSaga"), Some("guess")),
        tonic::Code::Unauthenticated
    );
    let refused = layer
        .check(&request(&coordinator("AbortSaga"), Some("client-secret")))
        .expect_err("refused");
    assert!(
        refused.message().contains("billing-service") && refused.message().contains("operator"),
        "{}",
        refused.message()
    );
}

#[test]
fn health_and_reflection_are_open_unless_protected() {
    let health = "/grpc.health.v1.Health/Check";
    let reflection = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
    for path in [health, reflection] {
        assert!(matches!(layer(false).check(&request(path, None)), Ok(None)));
        let refused = layer(true)
            .check(&request(path, None))
            .expect_err("protected");
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
        assert!(
            layer(true)
                .check(&request(path, Some("client-secret")))
                .is_ok()
        );
    }
}

#[test]
fn a_malformed_authorization_header_says_what_is_expected() {
    let mut request = request("/saga.v1.SagaCoordinator/GetStatus", None);
    request
        .headers_mut()
        .insert("authorization", "client-secret".parse().expect("header"));
    let refused = layer(false).check(&request).expect_err("malformed");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    assert!(
        refused.message().contains("Bearer"),
        "{}",
        refused.message()
    );
}

#[test]
fn saga_types_limit_what_a_principal_starts() {
    let principals = Principals::parse(&file(), true).expect("valid");
    let billing = principals.by_token("client-secret").expect("known");
    assert!(billing.may_start("purchase_plan").is_ok());
    let refused = billing.may_start("withdrawal").expect_err("not granted");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    assert!(
        refused.message().contains("purchase_plan"),
        "{}",
        refused.message()
    );
    let ops = principals.by_token(OPERATOR_TOKEN).expect("known");
    assert!(ops.may_start("withdrawal").is_ok(), "no list: every type");
}

#[test]
fn subjects_match_whatever_the_order_and_spacing() {
    let a = Subject::parse("CN=device-fleet, O=Acme").expect("dn");
    assert_eq!(
        Subject::parse("o = Acme,CN = device-fleet"),
        Some(a.clone())
    );
    assert_ne!(Subject::parse("CN=device-fleet"), Some(a));
    assert_eq!(Subject::parse("device-fleet"), None);
}

#[test]
fn bad_files_name_the_principal_and_the_field() {
    let cases = [
        (
            "[[principal]]\nname = \"a\"\nroles = [\"client\"]\n",
            "token_sha256",
        ),
        (
            "[[principal]]\nname = \"a\"\ntoken_sha256 = \"abc\"\nroles = [\"client\"]\n",
            "64 hex",
        ),
        (
            "[[principal]]\nname = \"a\"\ntoken_sha256 = \"00\"\nroles = [\"admin\"]\n",
            "admin",
        ),
        (
            "[[principal]]\nname = \"a\"\ncert_subject = \"CN=a\"\nroles = []\n",
            "roles",
        ),
        ("[[principal]]\nname = \"a\"\ntokn = \"x\"\n", "tokn"),
    ];
    for (text, expected) in cases {
        let err = Principals::parse(text, true).expect_err(text);
        assert!(err.to_string().contains(expected), "{err} / {expected}");
    }
    let err = Principals::parse(
        "[[principal]]\nname = \"a\"\ncert_subject = \"CN=a\"\nroles = [\"client\"]\n",
        false,
    )
    .expect_err("no client CA");
    assert!(err.to_string().contains("tls.client_ca_file"), "{err}");
}
