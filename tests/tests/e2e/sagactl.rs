//! `sagactl` end to end: the real binary, run as a process (stdout is a pipe, so its plain output)
//! against real `sagad` and `demo-participants` processes; each subcommand's output and exit code; its
//! TLS, client certificate and token flags against a sagad that requires them; `conform` against the
//! demo participants.

use std::time::Duration;

use e2e_tests::certs::Pki;
use e2e_tests::in_process::InProcess;
use e2e_tests::{Stack, binary, state_uuid, watch_until};
use saga_proto::v1::{GetSagaHistoryRequest, SagaStatus, StepStatus};
use serde_json::{Value, json};

/// What a `sagactl` run printed and how it exited.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The stdout parsed as one JSON document.
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {self:#?}"))
    }

    /// The stdout's lines, each split on whitespace.
    fn rows(&self) -> Vec<Vec<&str>> {
        self.stdout
            .lines()
            .map(|line| line.split_whitespace().collect())
            .collect()
    }
}

/// Runs `sagactl args...` against the stack's sagad, with no inherited `SAGACTL_*` settings.
async fn sagactl(stack: &Stack, args: &[&str]) -> Run {
    let addr = format!("http://{}", stack.sagad_addr);
    sagactl_with(args, &[("SAGACTL_ADDR", &addr)]).await
}

/// Runs `sagactl args...` with `env` and no inherited `SAGACTL_*` settings.
async fn sagactl_with(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = tokio::process::Command::new(binary("sagactl"));
    for (key, _) in std::env::vars() {
        if key.starts_with("SAGACTL_") {
            command.env_remove(key);
        }
    }
    let output = command
        .args(args)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run sagactl");
    Run {
        code: output.status.code().expect("sagactl exited by itself"),
        stdout: String::from_utf8(output.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(output.stderr).expect("utf-8 stderr"),
    }
}

/// Asserts a failed run: `code`, nothing on stdout, and one stderr line naming `grpc_code`.
fn assert_refused(run: &Run, code: i32, grpc_code: &str) {
    assert_eq!(run.code, code, "{run:#?}");
    assert!(run.stdout.is_empty(), "{run:#?}");
    assert_eq!(run.stderr.lines().count(), 1, "one error line: {run:#?}");
    assert!(
        run.stderr.starts_with(&format!("sagactl: {grpc_code}: ")),
        "{run:#?}"
    );
}

const PURCHASE: &str = r#"{"userId":"u1","planId":"pro"}"#;

#[tokio::test]
async fn start_wait_show_history_and_list_describe_a_completed_purchase() {
    let mut stack = Stack::start().await;

    let started = sagactl(
        &stack,
        &[
            "start",
            "purchase_plan",
            "--payload",
            PURCHASE,
            "--wait",
            "30s",
        ],
    )
    .await;
    assert_eq!(started.code, 0, "{started:#?}");
    let first = started.stdout.lines().next().expect("a first line");
    let id = first
        .strip_prefix("started saga ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("first line names the saga: {started:#?}"))
        .to_owned();
    for step in [
        "VALIDATE_PLAN",
        "CREATE_ORDER",
        "ALLOCATE_DEVICE",
        "PROCESS_PAYMENT",
        "ACTIVATE_ORDER",
    ] {
        assert!(
            started
                .stdout
                .contains(&format!("{step} SUCCEEDED attempt 1")),
            "{step} in {started:#?}"
        );
    }
    let last = started.stdout.lines().last().expect("a last line");
    assert!(
        last.ends_with(&format!("saga {id} COMPLETED")),
        "{started:#?}"
    );

    let show = sagactl(&stack, &["show", &id]).await;
    assert_eq!(show.code, 0, "{show:#?}");
    let rows = show.rows();
    assert!(rows.contains(&vec!["saga", id.as_str()]), "{show:#?}");
    assert!(rows.contains(&vec!["status", "COMPLETED"]), "{show:#?}");
    let header = rows
        .iter()
        .position(|r| r.first() == Some(&"#"))
        .expect("step table");
    let steps = &rows[header + 1..];
    assert_eq!(steps.len(), 5, "{show:#?}");
    for row in steps {
        // #, STEP, PARTICIPANT, STATUS, ATTEMPTS, COMPENSATIONS, DURATION...
        assert_eq!(&row[3..6], ["SUCCEEDED", "1", "0"], "{show:#?}");
        assert!(
            row[6].ends_with("ms") || row[6].ends_with('s'),
            "a duration: {row:?}"
        );
    }
    let state = show
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("state"))
        .expect("state");
    assert!(
        state.contains("\"orderId\"") && state.contains("\"paymentId\""),
        "{state}"
    );

    let json_show = sagactl(&stack, &["show", &id, "--output", "json"]).await;
    let saga = &json_show.json()["saga"];
    assert_eq!(saga["sagaId"], id.as_str());
    assert_eq!(saga["status"], "SAGA_STATUS_COMPLETED");
    assert_eq!(saga["steps"][3]["status"], "STEP_STATUS_SUCCEEDED");
    assert_eq!(saga["state"]["planId"], "pro");
    assert!(
        saga["revision"].as_str().is_some(),
        "uint64 as a string, as grpcurl prints it"
    );

    let history = sagactl(&stack, &["history", &id]).await;
    assert_eq!(history.code, 0, "{history:#?}");
    let events = stack
        .client
        .get_saga_history(GetSagaHistoryRequest {
            saga_id: id.clone(),
        })
        .await
        .expect("GetSagaHistory")
        .into_inner()
        .events;
    let lines: Vec<&str> = history.stdout.lines().collect();
    assert_eq!(
        lines.len(),
        events.len(),
        "one line per event: {history:#?}"
    );
    let kinds: Vec<&str> = history.rows().iter().map(|row| row[1]).collect();
    assert_eq!(kinds.first(), Some(&"SAGA_STARTED"));
    assert_eq!(kinds.last(), Some(&"SAGA_COMPLETED"));
    assert_eq!(kinds.iter().filter(|k| **k == "STEP_SUCCEEDED").count(), 5);
    assert!(lines[1].contains("VALIDATE_PLAN attempt=1"), "{history:#?}");

    let other = sagactl(
        &stack,
        &[
            "start",
            "withdrawal",
            "--payload",
            r#"{"merchantId":"acme","amountCents":100}"#,
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(other.code, 0, "{other:#?}");
    let other_id = other.json()["sagaId"].as_str().expect("sagaId").to_owned();
    assert_eq!(other.json()["status"], "SAGA_STATUS_RUNNING");
    assert_eq!(other.json()["created"], true);
    let watched = sagactl(&stack, &["watch", &other_id]).await;
    assert_eq!(watched.code, 0, "{watched:#?}");

    let list = sagactl(&stack, &["list"]).await;
    assert_eq!(list.code, 0, "{list:#?}");
    let rows = list.rows();
    assert_eq!(
        rows[0],
        ["ID", "TYPE", "STATUS", "REASON", "STEP", "AGE", "LABELS"],
        "{list:#?}"
    );
    assert_eq!(
        rows[1][..3],
        [other_id.as_str(), "withdrawal", "COMPLETED"],
        "newest first: {list:#?}"
    );
    assert_eq!(
        rows[2][..3],
        [id.as_str(), "purchase_plan", "COMPLETED"],
        "{list:#?}"
    );
    assert_eq!(rows.len(), 3, "{list:#?}");

    let filtered = sagactl(
        &stack,
        &[
            "list",
            "--type",
            "purchase_plan",
            "--status",
            "completed",
            "--status",
            "failed",
            "--since",
            "1h",
        ],
    )
    .await;
    assert_eq!(filtered.rows().len(), 2, "{filtered:#?}");
    assert_eq!(filtered.rows()[1][0], id);
    let none = sagactl(&stack, &["list", "--status", "compensated"]).await;
    assert_eq!(
        (none.code, none.stdout.as_str(), none.stderr.trim()),
        (0, "", "no sagas match")
    );

    // --limit 1 reads one page and says there is more; --all pages through everything, one saga a page.
    let limited = sagactl(&stack, &["list", "--limit", "1", "-o", "json"]).await;
    let page = limited.json();
    assert_eq!(page["sagas"].as_array().map(Vec::len), Some(1));
    assert!(
        page["nextPageToken"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "{limited:#?}"
    );
    let limited = sagactl(&stack, &["list", "--limit", "1"]).await;
    assert!(limited.stderr.contains("more sagas match"), "{limited:#?}");
    let all = sagactl(&stack, &["list", "--all", "-o", "json"]).await;
    let listed = all.json();
    let ids: Vec<&str> = listed["sagas"]
        .as_array()
        .expect("sagas")
        .iter()
        .filter_map(|s| s["sagaId"].as_str())
        .collect();
    assert_eq!(ids, [other_id.as_str(), id.as_str()], "{all:#?}");

    // The same key returns the first saga.
    let keyed = [
        "start",
        "purchase_plan",
        "--payload",
        PURCHASE,
        "--key",
        "order-7",
    ];
    let first = sagactl(&stack, &keyed).await;
    assert!(first.stdout.starts_with("started saga "), "{first:#?}");
    let again = sagactl(&stack, &keyed).await;
    assert_eq!(again.code, 0, "{again:#?}");
    let first_id = first.rows()[0][2];
    assert!(
        again
            .stdout
            .starts_with(&format!("saga {first_id} already exists for this key")),
        "{again:#?}"
    );

    stack.stop().await;
}

/// Makes billing's database refuse every change to an order, so CancelOrder fails until it is dropped.
const FREEZE_ORDERS: &str = "CREATE FUNCTION frozen() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'billing.orders is read-only for maintenance'; END $$;
    CREATE TRIGGER frozen BEFORE UPDATE ON billing.orders FOR EACH ROW EXECUTE FUNCTION frozen();";

#[tokio::test]
async fn watch_exits_with_a_code_that_says_whether_the_saga_was_compensated_or_parked() {
    let stack = Stack::start_fast(Duration::from_secs(2)).await;

    // Refused device: compensated (exit code 6), followed live from RUNNING.
    let refused = r#"{"userId":"u2","planId":"pro","faults":{"CREATE_ORDER":"delay:300ms","ALLOCATE_DEVICE":"refuse"}}"#;
    let started = sagactl(
        &stack,
        &["start", "purchase_plan", "--payload", refused, "-o", "json"],
    )
    .await;
    let id = started.json()["sagaId"]
        .as_str()
        .expect("sagaId")
        .to_owned();
    let watched = sagactl(&stack, &["watch", &id]).await;
    assert_eq!(watched.code, 6, "{watched:#?}");
    let lines: Vec<&str> = watched.stdout.lines().collect();
    assert!(
        lines[0].ends_with(&format!("saga {id} (purchase_plan v1) RUNNING")),
        "{watched:#?}"
    );
    let position = |text: &str| {
        lines
            .iter()
            .position(|line| line.contains(text))
            .unwrap_or_else(|| panic!("{text:?} in {watched:#?}"))
    };
    let refusal = position("ALLOCATE_DEVICE FAILED attempt 1 (last error: FAILED_PRECONDITION");
    let compensating = position(&format!("saga {id} COMPENSATING (STEP_FAILED"));
    let cancelled = position("CREATE_ORDER COMPENSATED compensation attempt 1");
    assert!(position("CREATE_ORDER SUCCEEDED attempt 1") < refusal);
    assert!(
        refusal <= compensating && compensating < cancelled,
        "{watched:#?}"
    );
    assert!(
        lines
            .last()
            .is_some_and(|l| l.contains(&format!("saga {id} COMPENSATED (STEP_FAILED"))),
        "{watched:#?}"
    );
    assert!(watched.stderr.is_empty(), "{watched:#?}");

    // CancelOrder failing on every attempt: parked in FAILED (exit code 7), then retried by the
    // operator once billing is fixed, and compensated.
    sqlx::raw_sql(FREEZE_ORDERS)
        .execute(&stack.demo_db)
        .await
        .expect("freeze orders");
    let refused = r#"{"userId":"u3","planId":"pro","faults":{"ALLOCATE_DEVICE":"refuse"}}"#;
    let parked = sagactl(
        &stack,
        &[
            "start",
            "purchase_plan",
            "--payload",
            refused,
            "--wait",
            "30s",
        ],
    )
    .await;
    assert_eq!(parked.code, 7, "{parked:#?}");
    let id = parked.rows()[0][2].to_owned();
    assert!(
        parked
            .stdout
            .contains("CREATE_ORDER COMPENSATING compensation attempt 2 (last error: INTERNAL"),
        "{parked:#?}"
    );
    assert!(
        parked
            .stdout
            .lines()
            .last()
            .is_some_and(|l| l.contains(&format!("saga {id} FAILED (COMPENSATION_FAILED"))),
        "{parked:#?}"
    );
    let listed = sagactl(&stack, &["list", "--status", "failed"]).await;
    assert_eq!(
        listed.rows()[1][..4],
        [
            id.as_str(),
            "purchase_plan",
            "FAILED",
            "COMPENSATION_FAILED"
        ],
        "{listed:#?}"
    );
    let again = sagactl(&stack, &["watch", &id]).await;
    assert_eq!(
        again.code, 7,
        "a finished saga's watch ends at once: {again:#?}"
    );

    sqlx::raw_sql("DROP TRIGGER frozen ON billing.orders")
        .execute(&stack.demo_db)
        .await
        .expect("thaw orders");
    let retried = sagactl(
        &stack,
        &["retry", &id, "--reason", "billing maintenance is over"],
    )
    .await;
    assert_eq!(retried.code, 0, "{retried:#?}");
    assert!(
        retried
            .stdout
            .starts_with(&format!("retried saga {id}: now COMPENSATING")),
        "{retried:#?}"
    );
    let finished = sagactl(&stack, &["watch", &id]).await;
    assert_eq!(finished.code, 6, "{finished:#?}");
    let history = sagactl(&stack, &["history", &id]).await;
    assert!(
        history.stdout.lines().any(|l| l.contains("SAGA_RETRIED")
            && l.contains("operator_reason=\"billing maintenance is over\"")),
        "{history:#?}"
    );

    // Retrying a saga that is not parked is refused: one line, exit code 3.
    let refused_retry = sagactl(&stack, &["retry", &id, "--reason", "again"]).await;
    assert_refused(&refused_retry, 3, "FAILED_PRECONDITION");
    stack.stop().await;
}

#[tokio::test]
async fn abort_compensates_a_running_saga_and_a_wait_that_runs_out_exits_with_8() {
    let mut stack = Stack::start_fast(Duration::from_secs(5)).await;
    let hanging = r#"{"userId":"u4","planId":"pro","faults":{"ALLOCATE_DEVICE":"hang"}}"#;
    let started = sagactl(
        &stack,
        &[
            "start",
            "purchase_plan",
            "--payload",
            hanging,
            "--wait",
            "300ms",
        ],
    )
    .await;
    assert_eq!(started.code, 8, "{started:#?}");
    let id = started.rows()[0][2].to_owned();
    assert_eq!(
        started.stderr.trim(),
        format!("sagactl: saga {id} still RUNNING after 300ms"),
        "{started:#?}"
    );
    let timed_out = sagactl(&stack, &["watch", &id, "--timeout", "100ms"]).await;
    assert_eq!(timed_out.code, 8, "{timed_out:#?}");

    watch_until(&mut stack.client, &id, |saga| {
        saga.steps[2].status() == StepStatus::Running
    })
    .await;
    let aborted = sagactl(
        &stack,
        &["abort", &id, "--reason", "customer cancelled", "-o", "json"],
    )
    .await;
    assert_eq!(aborted.code, 0, "{aborted:#?}");
    let saga = &aborted.json()["saga"];
    assert_eq!(saga["status"], "SAGA_STATUS_COMPENSATING");
    assert_eq!(saga["failureReason"], "FAILURE_REASON_ABORTED");
    let ended = sagactl(&stack, &["watch", &id, "--timeout", "30s"]).await;
    assert_eq!(ended.code, 6, "{ended:#?}");
    let saga = stack.wait_terminal(&id).await;
    assert_eq!(saga.status(), SagaStatus::Compensated);

    let again = sagactl(&stack, &["abort", &id, "--reason", "twice"]).await;
    assert_refused(&again, 3, "FAILED_PRECONDITION");
    stack.stop().await;
}

#[tokio::test]
async fn bad_input_and_an_unreachable_sagad_are_one_line_on_stderr_with_their_exit_code() {
    let stack = Stack::start().await;
    assert_refused(
        &sagactl(&stack, &["show", "not-a-uuid"]).await,
        3,
        "INVALID_ARGUMENT",
    );
    let unknown = "019aa4f0-0000-7000-8000-000000000000";
    assert_refused(
        &sagactl(&stack, &["history", unknown]).await,
        3,
        "NOT_FOUND",
    );
    assert_refused(&sagactl(&stack, &["watch", unknown]).await, 3, "NOT_FOUND");
    let no_type = sagactl(&stack, &["start", "nosuch", "--payload", "{}"]).await;
    assert_refused(&no_type, 3, "NOT_FOUND");
    assert!(
        no_type.stderr.contains("purchase_plan"),
        "lists the known types: {no_type:#?}"
    );
    assert_refused(
        &sagactl(&stack, &["abort", unknown, "--reason", ""]).await,
        3,
        "INVALID_ARGUMENT",
    );

    // Usage errors are clap's, exit code 2.
    let not_object = sagactl(&stack, &["start", "purchase_plan", "--payload", "[1]"]).await;
    assert_eq!(not_object.code, 2, "{not_object:#?}");
    assert!(
        not_object.stderr.contains("must be a JSON object"),
        "{not_object:#?}"
    );
    assert_eq!(sagactl(&stack, &["list", "--status", "lost"]).await.code, 2);
    assert_eq!(
        sagactl(&stack, &["abort", unknown]).await.code,
        2,
        "--reason is required"
    );
    let tls_on_plain = sagactl(&stack, &["list", "--ca-cert", "ca.pem"]).await;
    assert_eq!(tls_on_plain.code, 2, "{tls_on_plain:#?}");
    assert!(
        tls_on_plain.stderr.contains("https://"),
        "{tls_on_plain:#?}"
    );

    // https:// to sagad's plaintext port: the TLS handshake fails, so sagad is unreachable (4); a CA
    // file that cannot be read is a local error (1).
    let https = format!("https://{}", stack.sagad_addr);
    let handshake = sagactl(&stack, &["--addr", &https, "list"]).await;
    assert_refused(&handshake, 4, "UNAVAILABLE");
    let no_ca = ["--addr", &https, "--ca-cert", "/nonexistent/ca.pem", "list"];
    let no_ca = sagactl(&stack, &no_ca).await;
    assert_eq!(no_ca.code, 1, "{no_ca:#?}");
    assert!(
        no_ca
            .stderr
            .starts_with("sagactl: cannot read /nonexistent/ca.pem"),
        "{no_ca:#?}"
    );

    let help = sagactl(&stack, &["--help"]).await;
    assert_eq!(help.code, 0);
    for code in [
        "0  done",
        "2  usage",
        "3  refused",
        "4  sagad unavailable",
        "6  the saga ended COMPENSATED",
        "7  the saga ended FAILED",
        "8  the wait ended",
        "9  conform: the participant failed a check",
    ] {
        assert!(help.stdout.contains(code), "{code:?} documented in --help");
    }

    // A port nobody listens on: the port of a listener bound, then closed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let mut command = tokio::process::Command::new(binary("sagactl"));
    let output = command
        .args(["--addr", &format!("http://{closed}"), "list"])
        .env_remove("SAGACTL_ADDR")
        .output()
        .await
        .expect("run sagactl");
    let unreachable = Run {
        code: output.status.code().expect("exit code"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert_refused(&unreachable, 4, "UNAVAILABLE");
    assert!(
        unreachable
            .stderr
            .contains(&format!("cannot connect to http://{closed}")),
        "{unreachable:#?}"
    );
    stack.stop().await;
}

#[tokio::test]
async fn labels_given_at_start_find_the_saga_in_list_and_show_with_it() {
    let stack = Stack::start().await;
    let labelled = |order: &'static str| {
        [
            "start",
            "purchase_plan",
            "--payload",
            PURCHASE,
            "--label",
            order,
            "--label",
            "channel=web shop",
            "-o",
            "json",
        ]
    };
    let first = sagactl(&stack, &labelled("orderId=123")).await;
    assert_eq!(first.code, 0, "{first:#?}");
    let id = first.json()["sagaId"].as_str().expect("sagaId").to_owned();
    let other = sagactl(&stack, &labelled("orderId=124")).await;
    assert_eq!(other.code, 0, "{other:#?}");

    let found = sagactl(&stack, &["list", "--label", "orderId=123"]).await;
    assert_eq!(found.code, 0, "{found:#?}");
    let rows = found.rows();
    assert_eq!(rows.len(), 2, "the header and one saga: {found:#?}");
    assert_eq!(rows[1][0], id);
    assert_eq!(
        found
            .stdout
            .lines()
            .nth(1)
            .map(|l| l.trim_end().ends_with("channel=web shop,orderId=123")),
        Some(true),
        "{found:#?}"
    );
    let json = sagactl(
        &stack,
        &["list", "--label", "channel=web shop", "-o", "json"],
    )
    .await;
    assert_eq!(
        json.json()["sagas"].as_array().map(Vec::len),
        Some(2),
        "{json:#?}"
    );

    let show = sagactl(&stack, &["show", &id]).await;
    assert!(
        show.stdout
            .lines()
            .any(|l| l == "labels           channel=web shop,orderId=123"),
        "{show:#?}"
    );
    let none = sagactl(&stack, &["list", "--label", "orderId=999"]).await;
    assert_eq!((none.code, none.stderr.trim()), (0, "no sagas match"));
    let bad = sagactl(&stack, &["list", "--label", "orderId="]).await;
    assert_refused(&bad, 3, "INVALID_ARGUMENT");
    assert_eq!(
        sagactl(&stack, &["list", "--label", "orderId"]).await.code,
        2
    );
    stack.stop().await;
}

#[tokio::test]
async fn stats_print_counts_rates_and_durations_by_type_then_failure_reasons_and_stuck_sagas() {
    let stack = Stack::start_fast(Duration::from_secs(10)).await;
    let run = |payload: &'static str| {
        [
            "start",
            "purchase_plan",
            "--payload",
            payload,
            "--wait",
            "30s",
        ]
    };
    assert_eq!(sagactl(&stack, &run(PURCHASE)).await.code, 0);
    let refused = r#"{"userId":"u2","planId":"pro","faults":{"ALLOCATE_DEVICE":"refuse"}}"#;
    let compensated = sagactl(&stack, &run(refused)).await;
    assert_eq!(compensated.code, 6, "{compensated:#?}");
    let refused_id = compensated.rows()[0][2].to_owned();

    let table = sagactl(&stack, &["stats", "--window", "15m"]).await;
    assert_eq!(table.code, 0, "{table:#?}");
    println!("sagactl stats --window 15m:\n{}", table.stdout);
    assert!(table.stderr.is_empty(), "{table:#?}");
    let rows = table.rows();
    assert_eq!(rows[0][0], "sagas", "{table:#?}");
    assert_eq!(
        rows[1],
        [
            "TYPE",
            "STARTED",
            "COMPLETED",
            "COMPENSATED",
            "FAILED",
            "RUNNING",
            "COMPENSATING",
            "PARKED",
            "SUCCESS",
            "COMPENSATION",
            "P50",
            "P95",
            "P99"
        ],
        "{table:#?}"
    );
    let counts = ["2", "1", "1", "0", "0", "0", "0", "50.0%", "50.0%"];
    assert_eq!(rows[2][0], "purchase_plan", "{table:#?}");
    assert_eq!(rows[2][1..10], counts, "{table:#?}");
    assert_eq!(rows[3][0], "(all)", "{table:#?}");
    assert_eq!(rows[3][1..10], counts, "{table:#?}");
    assert!(
        rows[3][10..]
            .iter()
            .all(|p| p.ends_with("ms") || p.ends_with('s')),
        "three durations: {table:#?}"
    );
    let reasons = rows
        .iter()
        .position(|r| r.first() == Some(&"failure") && r.get(1) == Some(&"reasons:"))
        .unwrap_or_else(|| panic!("failure reasons: {table:#?}"));
    assert_eq!(
        rows[reasons + 1],
        ["TYPE", "REASON", "STEP", "COUNT", "LATEST", "ERROR"]
    );
    assert_eq!(
        rows[reasons + 2][..6],
        [
            "purchase_plan",
            "STEP_FAILED",
            "ALLOCATE_DEVICE",
            "1",
            refused_id.as_str(),
            "ALLOCATE_DEVICE"
        ],
        "{table:#?}"
    );
    assert_eq!(
        table.stdout.lines().last(),
        Some("stuck sagas: none"),
        "{table:#?}"
    );

    let json = sagactl(&stack, &["stats", "--type", "withdrawal", "-o", "json"]).await;
    assert_eq!(json.code, 0, "{json:#?}");
    let stats = json.json();
    assert!(stats["byType"].is_null(), "no withdrawal ran: {json:#?}");
    assert!(stats["since"].is_string() && stats["until"].is_string());
    let all = sagactl(&stack, &["stats", "-o", "json", "--stuck-after", "1ms"]).await;
    assert_eq!(all.json()["total"]["completed"], "1", "{all:#?}");
    assert_eq!(all.json()["total"]["successRate"], 0.5, "{all:#?}");
    let too_long = sagactl(&stack, &["stats", "--window", "40days"]).await;
    assert_refused(&too_long, 3, "INVALID_ARGUMENT");
    stack.stop().await;
}

#[tokio::test]
async fn resolve_records_a_parked_step_done_by_hand_and_the_saga_goes_on_to_complete() {
    let mut stack = Stack::start_fast(Duration::from_secs(2)).await;
    let purchase = stack
        .run_saga("purchase_plan", json!({"userId": "u5", "planId": "pro"}))
        .await;
    let payment = state_uuid(&purchase, "paymentId");
    let order = state_uuid(&purchase, "orderId");
    // The provider refunds (the pivot), then recording it on the payment is refused: parked after the
    // pivot, FORWARD_FAILED.
    let refund =
        json!({"paymentId": payment, "faults": {"UPDATE_PAYMENT_STATUS": "refuse"}}).to_string();
    let parked = sagactl(
        &stack,
        &[
            "start",
            "payment_refund",
            "--payload",
            &refund,
            "--wait",
            "30s",
        ],
    )
    .await;
    assert_eq!(parked.code, 7, "{parked:#?}");
    let id = parked.rows()[0][2].to_owned();

    let resolve = |outcome: &'static str| {
        [
            "resolve",
            id.as_str(),
            "--step",
            "UPDATE_PAYMENT_STATUS",
            "--outcome",
            outcome,
            "--note",
            "payment marked REFUNDED in the admin console",
            "--reason",
            "payments db rejected the update",
        ]
    };
    let refused = sagactl(&stack, &resolve("compensated")).await;
    assert_refused(&refused, 3, "FAILED_PRECONDITION");
    assert!(
        refused.stderr.contains("can only be resolved as SUCCEEDED"),
        "{refused:#?}"
    );

    // The operator records the refund on the payment by hand, then says so.
    sqlx::query(
        "UPDATE payment.payments SET status = 'REFUNDED', refunding_saga_id = NULL WHERE id = $1",
    )
    .bind(payment)
    .execute(&stack.demo_db)
    .await
    .expect("refund recorded by hand");
    let resolved = sagactl(&stack, &resolve("succeeded")).await;
    assert_eq!(resolved.code, 0, "{resolved:#?}");
    assert!(
        resolved
            .stdout
            .starts_with(&format!("resolved saga {id}: now RUNNING")),
        "{resolved:#?}"
    );
    let finished = sagactl(&stack, &["watch", &id, "--timeout", "30s"]).await;
    assert_eq!(
        finished.code, 0,
        "the saga went on and COMPLETED: {finished:#?}"
    );
    let (order_status, device_status): (String, String) = sqlx::query_as(
        "SELECT o.status, d.status FROM billing.orders o JOIN device.devices d ON d.order_id = o.id
         WHERE o.id = $1",
    )
    .bind(order)
    .fetch_one(&stack.demo_db)
    .await
    .expect("order and device");
    assert_eq!(
        (order_status.as_str(), device_status.as_str()),
        ("REFUNDED", "RELEASED")
    );

    let show = sagactl(&stack, &["show", &id]).await;
    let by_hand = show
        .stdout
        .lines()
        .skip_while(|l| *l != "done by hand:")
        .nth(1)
        .unwrap_or_else(|| panic!("a done-by-hand block: {show:#?}"));
    assert!(
        by_hand.starts_with("  UPDATE_PAYMENT_STATUS SUCCEEDED at ")
            && by_hand.ends_with(
                "by -: payment marked REFUNDED in the admin console (reason: payments db rejected \
                 the update)"
            ),
        "{show:#?}"
    );
    let history = sagactl(&stack, &["history", &id]).await;
    assert!(
        history.stdout.lines().any(|l| l.contains("STEP_RESOLVED")
            && l.contains("UPDATE_PAYMENT_STATUS resolved_as=SUCCEEDED note=\"payment marked")),
        "{history:#?}"
    );
    assert_refused(
        &sagactl(&stack, &resolve("succeeded")).await,
        3,
        "FAILED_PRECONDITION",
    );
    let unknown_outcome = sagactl(&stack, &resolve("done")).await;
    assert_eq!(unknown_outcome.code, 2, "{unknown_outcome:#?}");
    stack.stop().await;
}

/// Principals for the TLS test: a client and an operator, by token.
fn principals(client: &str, operator: &str) -> String {
    let hash = |token: &str| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(token.as_bytes()));
    format!(
        "[[principal]]\nname = \"billing-service\"\ntoken_sha256 = \"{}\"\nroles = [\"client\"]\n\n\
         [[principal]]\nname = \"ops\"\ntoken_sha256 = \"{}\"\nroles = [\"operator\"]\n",
        hash(client),
        hash(operator)
    )
}

#[tokio::test]
async fn tls_client_certificate_and_token_flags_reach_a_sagad_that_requires_them() {
    let pki = Pki::new("sagactl");
    let server = pki.server("sagad");
    let client_cert = pki.client("billing-service");
    let tokens = pki.dir().join("principals.toml");
    std::fs::write(&tokens, principals("client-token-1", "operator-token-2")).expect("write");
    let sagad = InProcess::start(|s| {
        s.tls.cert_file = Some(server.cert.clone());
        s.tls.key_file = Some(server.key.clone());
        s.tls.client_ca_file = Some(pki.ca_file());
        s.auth.tokens_file = Some(tokens.clone());
    })
    .await;
    let ca = pki.ca_file().display().to_string();
    let (cert, key) = (
        client_cert.cert.display().to_string(),
        client_cert.key.display().to_string(),
    );
    // By IP, the certificate's name given with --tls-server-name; every flag on the command line.
    let addr = format!("https://127.0.0.1:{}", sagad.addr.port());
    let flags = |token: &'static str| {
        vec![
            "--addr".to_owned(),
            addr.clone(),
            "--ca-cert".to_owned(),
            ca.clone(),
            "--client-cert".to_owned(),
            cert.clone(),
            "--client-key".to_owned(),
            key.clone(),
            "--tls-server-name".to_owned(),
            "localhost".to_owned(),
            "--token".to_owned(),
            token.to_owned(),
        ]
    };
    let with = |flags: Vec<String>, args: &[&str]| {
        let mut all = flags;
        all.extend(args.iter().map(|a| (*a).to_owned()));
        all
    };
    let run = |args: Vec<String>| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        sagactl_with(&args, &[]).await
    };

    let started = run(with(
        flags("client-token-1"),
        &[
            "start",
            "purchase_plan",
            "--payload",
            PURCHASE,
            "--label",
            "orderId=77",
            "-o",
            "json",
        ],
    ))
    .await;
    assert_eq!(started.code, 0, "{started:#?}");
    let id = started.json()["sagaId"]
        .as_str()
        .expect("sagaId")
        .to_owned();
    let show = run(with(flags("client-token-1"), &["show", &id, "-o", "json"])).await;
    assert_eq!(show.code, 0, "{show:#?}");
    assert_eq!(show.json()["saga"]["startedBy"], "billing-service");
    assert_eq!(show.json()["saga"]["labels"]["orderId"], "77");

    let refused = run(with(
        flags("client-token-1"),
        &["abort", &id, "--reason", "no"],
    ))
    .await;
    assert_refused(&refused, 5, "PERMISSION_DENIED");
    let unknown = run(with(flags("guessed"), &["list"])).await;
    assert_refused(&unknown, 5, "UNAUTHENTICATED");

    // The same through the environment, as the operator: the abort goes through.
    let port = sagad.addr.port().to_string();
    let localhost = format!("https://localhost:{port}");
    let env = [
        ("SAGACTL_ADDR", localhost.as_str()),
        ("SAGACTL_CA_CERT", ca.as_str()),
        ("SAGACTL_CLIENT_CERT", cert.as_str()),
        ("SAGACTL_CLIENT_KEY", key.as_str()),
        ("SAGACTL_TOKEN", "operator-token-2"),
    ];
    let aborted = sagactl_with(&["abort", &id, "--reason", "customer cancelled"], &env).await;
    assert_eq!(aborted.code, 0, "{aborted:#?}");
    assert!(
        aborted
            .stdout
            .starts_with(&format!("aborted saga {id}: now COMPENSAT")),
        "{aborted:#?}"
    );
    let history = sagactl_with(&["history", &id], &env).await;
    assert!(
        history
            .stdout
            .lines()
            .any(|l| l.contains("SAGA_ABORTED") && l.contains("by=ops")),
        "{history:#?}"
    );

    sagad.stop().await;
}

#[tokio::test]
async fn conform_checks_a_demo_participant_and_fails_one_that_breaks_the_contract() {
    let stack = Stack::start().await;
    let billing = stack.participants["billing"].clone();
    let conform = |action: &'static str, output: &'static str| {
        let billing = billing.clone();
        async move {
            sagactl_with(
                &[
                    "conform",
                    "--addr",
                    &billing,
                    "--action",
                    action,
                    "--compensate",
                    "CancelOrder",
                    "--payload",
                    PURCHASE,
                    "--refusal-payload",
                    r#"{"userId":"u1","planId":"legacy"}"#,
                    "-o",
                    output,
                ],
                // sagad's address plays no part: conform talks to the participant only.
                &[("SAGACTL_ADDR", "http://127.0.0.1:9")],
            )
            .await
        }
    };
    let passed = conform("CreateOrder", "table").await;
    assert_eq!(passed.code, 0, "{passed:#?}");
    assert!(
        passed
            .stdout
            .starts_with(&format!("checked CreateOrder / CancelOrder at {billing}")),
        "{passed:#?}"
    );
    assert_eq!(
        passed.stdout.trim_end().lines().last(),
        Some("10 passed, 0 failed, 0 skipped"),
        "{passed:#?}"
    );

    // ActivateOrder refuses the purchase payload (it needs an orderId): the checks that need a success
    // fail, and so does the run.
    let failed = conform("ActivateOrder", "json").await;
    assert_eq!(failed.code, 9, "{failed:#?}");
    let report = failed.json();
    assert_eq!(report["passed"], false);
    let results = report["results"].as_array().expect("results");
    assert_eq!(results.len(), 10);
    assert!(results.iter().any(|r| r["result"] == "fail"), "{report:#}");
    assert!(
        results
            .iter()
            .all(|r| r["check"].is_string() && r["rule"].is_string())
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let unreachable = sagactl_with(
        &[
            "conform",
            "--addr",
            &closed.to_string(),
            "--action",
            "A",
            "--compensate",
            "B",
            "--payload",
            "{}",
            "--timeout",
            "2s",
        ],
        &[],
    )
    .await;
    assert_refused(&unreachable, 4, "UNAVAILABLE");
    let not_object = sagactl_with(
        &[
            "conform",
            "--addr",
            &billing,
            "--action",
            "A",
            "--compensate",
            "B",
            "--payload",
            "[]",
        ],
        &[],
    )
    .await;
    assert_eq!(not_object.code, 2, "{not_object:#?}");
    assert!(
        not_object
            .stderr
            .contains("--payload must be a JSON object"),
        "{not_object:#?}"
    );
    stack.stop().await;
}
