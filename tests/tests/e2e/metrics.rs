//! sagad's Prometheus metrics end to end: after sagas of every outcome ran against the real demo
//! participants, a scrape of `/metrics` passes `promtool check metrics`, its counters agree with the saga
//! log row for row, and every metric the alert rules and the dashboard read is there; a real Prometheus
//! server scraping sagad answers the finished sagas by status through its query API; a metrics address
//! that is taken stops sagad at start-up with one line.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::Duration;

use e2e_tests::http::{self, encode};
use e2e_tests::{Process, Stack, isolate, repo_root, tool};
use saga_proto::v1::SagaStatus;
use saga_testkit::TestDatabase;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

/// One sample of a scrape: metric name and labels.
type Series = (String, BTreeMap<String, String>);

/// The samples of a Prometheus text exposition.
struct Scrape {
    text: String,
    samples: BTreeMap<Series, f64>,
}

impl Scrape {
    fn parse(text: String) -> Self {
        let samples = text
            .lines()
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(|line| {
                let (series, value) = line.rsplit_once(' ').expect("name and value");
                let value: f64 = value.parse().expect("a number");
                let (name, labels) = match series.split_once('{') {
                    Some((name, labels)) => (name, parse_labels(labels.trim_end_matches('}'))),
                    None => (series, BTreeMap::new()),
                };
                ((name.to_owned(), labels), value)
            })
            .collect();
        Self { text, samples }
    }

    /// The value of the sample with exactly these labels, if any.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples.get(&(name.to_owned(), labels)).copied()
    }

    /// The samples of metric `name`, by their labels.
    fn series(&self, name: &str) -> impl Iterator<Item = (&BTreeMap<String, String>, f64)> {
        self.samples
            .iter()
            .filter(move |((n, _), _)| n == name)
            .map(|((_, labels), value)| (labels, *value))
    }

    /// Whether a metric family of this name (or, for a histogram's series, of its base name) is typed.
    fn has_family(&self, name: &str) -> bool {
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        [name, base]
            .iter()
            .any(|family| self.text.contains(&format!("# TYPE {family} ")))
    }
}

/// `k="v",k2="v2"` (no escapes: sagad's label values are definition names and enum names).
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let (value, after) = after.split_once('"').expect("closing quote");
        labels.insert(key.trim_start_matches(',').to_owned(), value.to_owned());
        rest = after;
    }
    labels
}

async fn scrape(addr: &str) -> Scrape {
    let answer = http::get(addr, "/metrics").await.expect("scrape sagad");
    assert_eq!(answer.status, 200, "{}", answer.body);
    Scrape::parse(answer.body)
}

/// Runs `promtool check metrics` on `text`; its complaints, if any.
async fn promtool_check(text: &str) -> Result<(), String> {
    let mut promtool = tokio::process::Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promtool");
    let mut stdin = promtool.stdin.take().expect("stdin");
    stdin
        .write_all(text.as_bytes())
        .await
        .expect("feed promtool");
    drop(stdin);
    let output = promtool.wait_with_output().await.expect("promtool");
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

fn purchase(faults: Value) -> Value {
    json!({"userId": "u1", "planId": "pro", "faults": faults})
}

fn payment(faults: Value) -> Value {
    json!({"payerId": "p1", "channel": "card", "amountCents": 1500, "faults": faults})
}

/// Runs sagas of every outcome: completed (one after a transient failure), compensated, parked.
async fn run_every_outcome(stack: &mut Stack) {
    let runs = [
        ("purchase_plan", purchase(json!({})), SagaStatus::Completed),
        (
            "purchase_plan",
            purchase(json!({"CREATE_ORDER": "unavailable:1"})),
            SagaStatus::Completed,
        ),
        (
            "purchase_plan",
            purchase(json!({"ALLOCATE_DEVICE": "refuse"})),
            SagaStatus::Compensated,
        ),
        (
            "purchase_plan",
            purchase(
                json!({"ALLOCATE_DEVICE": "refuse", "CREATE_ORDER:compensate": "unavailable"}),
            ),
            SagaStatus::Failed,
        ),
        ("payment_create", payment(json!({})), SagaStatus::Completed),
        (
            "payment_create",
            payment(json!({"CALL_PAYMENT_CHANNEL": "refuse"})),
            SagaStatus::Compensated,
        ),
    ];
    for (saga_type, payload, expected) in runs {
        let saga = stack.run_saga(saga_type, payload).await;
        assert_eq!(saga.status(), expected, "{saga:#?}");
    }
}

/// Every `sagad_*` and `process_*` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("sagad_") || word.starts_with("process_"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn after_every_outcome_the_scrape_passes_promtool_and_its_counters_match_the_saga_log() {
    let mut stack = Stack::start_fast(Duration::from_secs(2)).await;
    run_every_outcome(&mut stack).await;
    // The parked gauge is counted from the saga log in the background, every 15 s and about a second
    // after this instance parks a saga: the parked saga shows well before the next 15 s count.
    let metrics = tokio::time::timeout(Duration::from_secs(6), async {
        loop {
            let metrics = scrape(&stack.metrics_addr).await;
            let parked = metrics.value("sagad_sagas_parked", &[("saga_type", "purchase_plan")]);
            if parked == Some(1.0) {
                return metrics;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await
    .expect("the parked saga shows in sagad_sagas_parked moments after it parked");

    if let Err(complaints) = promtool_check(&metrics.text).await {
        panic!("promtool check metrics: {complaints}\n{}", metrics.text);
    }

    let started: Vec<(String, i64)> =
        sqlx::query_as("SELECT saga_type, count(*) FROM sagas GROUP BY saga_type")
            .fetch_all(&stack.saga_db)
            .await
            .expect("started");
    assert_eq!(started.len(), 2, "{started:?}");
    for (saga_type, rows) in &started {
        let counted = metrics.value("sagad_sagas_started_total", &[("saga_type", saga_type)]);
        assert_eq!(counted, Some(*rows as f64), "started {saga_type}");
    }

    let finished: Vec<(String, String, String, i64)> = sqlx::query_as(
        "SELECT saga_type, status, COALESCE(failure_reason, ''), count(*) FROM sagas
         GROUP BY 1, 2, 3",
    )
    .fetch_all(&stack.saga_db)
    .await
    .expect("finished");
    assert_eq!(finished.len(), 5, "{finished:?}");
    let finished_series: Vec<_> = metrics.series("sagad_sagas_finished_total").collect();
    assert_eq!(finished_series.len(), finished.len(), "{finished_series:?}");
    for (saga_type, status, reason, rows) in &finished {
        let labels = [
            ("saga_type", saga_type.as_str()),
            ("status", status.as_str()),
            ("reason", reason.as_str()),
        ];
        let counted = metrics.value("sagad_sagas_finished_total", &labels);
        assert_eq!(counted, Some(*rows as f64), "finished {labels:?}");
        let durations = metrics
            .series("sagad_saga_duration_seconds_count")
            .find(|(l, _)| {
                l.get("saga_type") == Some(saga_type) && l.get("status") == Some(status)
            });
        assert!(durations.is_some(), "duration of {labels:?}");
    }

    // Every attempt the saga log records was counted, in each direction.
    let attempts: Vec<(String, String, i64, i64)> = sqlx::query_as(
        "SELECT s.saga_type, st.name, sum(st.attempts)::int8, sum(st.compensation_attempts)::int8
         FROM saga_steps st JOIN sagas s ON s.id = st.saga_id GROUP BY 1, 2",
    )
    .fetch_all(&stack.saga_db)
    .await
    .expect("attempts");
    for (saga_type, step, executed, compensated) in &attempts {
        for (direction, rows) in [("execute", executed), ("compensate", compensated)] {
            let counted: f64 = metrics
                .series("sagad_step_attempts_total")
                .filter(|(l, _)| {
                    l.get("saga_type") == Some(saga_type)
                        && l.get("step") == Some(step)
                        && l["direction"] == direction
                })
                .map(|(_, value)| value)
                .sum();
            assert_eq!(counted, *rows as f64, "{saga_type} {step} {direction}");
        }
    }
    let outcome = |outcome: &str| {
        metrics
            .series("sagad_step_attempts_total")
            .filter(|(l, _)| l["outcome"] == outcome)
            .map(|(_, value)| value)
            .sum::<f64>()
    };
    assert!(
        outcome("ok") > 0.0 && outcome("refusal") >= 2.0 && outcome("transient") >= 2.0,
        "{}",
        metrics.text
    );

    assert_eq!(metrics.value("sagad_sagas_in_flight", &[]), Some(0.0));
    assert_eq!(
        metrics.value(
            "sagad_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    for name in ["process_cpu_seconds_total", "process_resident_memory_bytes"] {
        assert!(metrics.value(name, &[]).is_some_and(|v| v > 0.0), "{name}");
    }
    assert!(
        metrics
            .value("process_open_fds", &[])
            .is_some_and(|v| v > 0.0)
    );

    // Everything the alert rules and the dashboard read exists.
    for file in [
        "deploy/prometheus/sagad-rules.yml",
        "deploy/grafana/sagad.json",
    ] {
        let text = std::fs::read_to_string(repo_root().join(file)).expect("read");
        let names = metric_names(&text);
        assert!(names.len() >= 5, "{file}: {names:?}");
        for name in names {
            assert!(
                metrics.has_family(&name),
                "{file} reads {name}, which sagad does not serve"
            );
        }
    }
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("deploy/grafana/sagad.json")).expect("read"),
    )
    .expect("the dashboard is JSON");
    assert!(
        dashboard["panels"]
            .as_array()
            .is_some_and(|p| !p.is_empty())
    );

    let other = http::get(&stack.metrics_addr, "/other").await.expect("get");
    assert_eq!(other.status, 404);
    stack.stop().await;
}

#[tokio::test]
async fn a_real_prometheus_scraping_sagad_answers_finished_sagas_by_status() {
    let mut stack = Stack::start_fast(Duration::from_secs(2)).await;
    for payload in [purchase(json!({})), purchase(json!({}))] {
        let saga = stack.run_saga("purchase_plan", payload).await;
        assert_eq!(saga.status(), SagaStatus::Completed);
    }
    let saga = stack
        .run_saga(
            "purchase_plan",
            purchase(json!({"ALLOCATE_DEVICE": "refuse"})),
        )
        .await;
    assert_eq!(saga.status(), SagaStatus::Compensated);

    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             scrape_configs:\n  - job_name: sagad\n    static_configs:\n      - targets: [\"{}\"]\n",
            stack.metrics_addr
        ),
    )
    .expect("write config");
    // Port 0, and the port Prometheus logs: a port picked free beforehand can be taken by another
    // test's socket before Prometheus binds it, which then answers the queries instead.
    let args = [
        format!("--config.file={}", config.display()),
        format!("--storage.tsdb.path={}", dir.path().join("data").display()),
        "--web.listen-address=127.0.0.1:0".to_owned(),
        "--log.level=info".to_owned(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut prometheus = Process::spawn_keeping_stderr(&tool("prometheus"), &args, &[]);
    let web = prometheus
        .find_in_stderr(|line| {
            line.contains("msg=\"Listening on\"")
                .then(|| {
                    line.split_once("address=")
                        .map(|(_, addr)| addr.trim().to_owned())
                })
                .flatten()
        })
        .await;

    // Prometheus scrapes every second: ask until the scrape has landed (bounded).
    let query = format!(
        "/api/v1/query?query={}",
        encode("sum by (status) (sagad_sagas_finished_total{job=\"sagad\"})")
    );
    let by_status = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            // 503 (plain text) until Prometheus has opened its storage and is ready.
            let answer = http::get(&web, &query).await.expect("query Prometheus");
            if answer.status == 200 {
                let body: Value = serde_json::from_str(&answer.body).expect("JSON answer");
                let result = body["data"]["result"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                if !result.is_empty() {
                    return result;
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await
    .expect("Prometheus has scraped sagad within a minute");
    let by_status: BTreeMap<String, String> = by_status
        .iter()
        .map(|sample| {
            (
                sample["metric"]["status"]
                    .as_str()
                    .expect("status")
                    .to_owned(),
                sample["value"][1].as_str().expect("value").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        by_status,
        BTreeMap::from([
            ("COMPENSATED".to_owned(), "1".to_owned()),
            ("COMPLETED".to_owned(), "2".to_owned()),
        ])
    );
    prometheus.kill().await;
    stack.stop().await;
}

#[tokio::test]
async fn a_metrics_address_already_taken_stops_sagad_with_one_line() {
    let database = TestDatabase::create("sagad_e2e").await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let mut command = tokio::process::Command::new(e2e_tests::binary("sagad"));
    isolate(command.as_std_mut());
    let output = command
        .env("SAGAD_DATABASE_URL", database.url())
        .env("SAGAD_GRPC_ADDR", "127.0.0.1:0")
        .env(
            "SAGAD_DEFINITIONS_DIR",
            repo_root().join("definitions").display().to_string(),
        )
        .env("SAGAD_METRICS_ADDR", &addr)
        .env("RUST_LOG", "error")
        .output()
        .await
        .expect("run sagad");
    let stderr = String::from_utf8(output.stderr).expect("utf-8");
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen for metrics on {addr}")),
        "{stderr}"
    );
    drop(taken);
}
