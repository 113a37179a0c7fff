//! README.md is executed: every `grpcurl` command in it runs, with the real grpcurl (installed into
//! tools/bin by scripts/ensure-tools.sh), against the stack its block asks for, in README order, and
//! each answer is checked for what the README says about it.
//!
//! Rules for README authors (a command the test cannot run or check fails the test, never skips):
//! - A code block with `grpcurl` commands is preceded by `<!-- readme-test: stack=NAME -->` and
//!   optionally `setup=parked-saga`; or by `<!-- readme-test: skip: REASON -->`. Stacks: `demo` —
//!   sagad with the shipped steps and millisecond backoffs, and the demo participants; `secure` — the
//!   same, with TLS, client certificates and tokens as the block sets them up (`secure.rs`: it must run
//!   `scripts/dev-certs.sh certs` and give sagad `SAGAD_*=certs/...` settings).
//! - Commands talk to `localhost:50051`. A placeholder id (`019aa4f0-…`) is replaced by a real one:
//!   in GetStatus, GetSagaHistory and WatchSaga by the saga the README started last (once it has
//!   finished); in AbortSaga by a saga running before its pivot; in RetrySaga by a parked saga; in
//!   ResolveSaga by a saga parked at CREATE_ORDER's compensation (a purchase whose device is refused
//!   and whose CancelOrder keeps failing); in a StartSaga payload's `paymentId` by the payment of the
//!   first purchase the README made.
//! - Comment lines right after a command say what it answers: a JSON object is a subset of the
//!   answer (placeholders match any value; a list matches item by item); `Code: X` and `Message: ...`
//!   lines say the call fails and what grpcurl prints then; after `list`, one service per line; after
//!   GetStatus, and after StartSaga or ResolveSaga as `GetStatus: ...`, the saga's statuses, steps and
//!   state (`words.rs`).
//! - Every RPC has a check of its own below (e.g. ListSagas: every saga matches the filter; operator
//!   actions are in the history with the caller's principal as `by`); an RPC without one fails the
//!   test until one is added.

mod answers;
mod markdown;
mod secure;
mod words;

use std::path::{Path, PathBuf};
use std::time::Duration;

use e2e_tests::{Stack, repo_root, state_uuid, wait_terminal, watch_until};
use saga_proto::v1::{SagaStatus, StepStatus};
use serde_json::{Value, json};

use self::answers::{Expected, expect_eq};
use self::markdown::{Block, Command, Marker};
use self::secure::Certs;

/// The address every README command uses; replaced by the stack's.
const README_ADDR: &str = "localhost:50051";
/// Marks a placeholder in a README request (`019aa4f0-…`).
pub const PLACEHOLDER: char = '…';
const COORDINATOR: &str = "saga.v1.SagaCoordinator/";

#[tokio::test]
async fn every_grpcurl_command_in_the_readme_runs_and_answers_as_the_readme_says() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let blocks = markdown::blocks(&readme).unwrap_or_else(|e| panic!("{e}"));
    assert!(!blocks.is_empty(), "README.md has no grpcurl commands");
    let grpcurl = e2e_tests::grpcurl();
    let mut demo: Option<Session> = None;
    let mut secure: Option<Session> = None;
    let mut ran = 0;
    for block in &blocks {
        let (session, setup) = match &block.marker {
            None => panic!(
                "README.md:{}: a code block with grpcurl commands needs a marker before it, e.g. \
                 <!-- readme-test: stack=demo --> (see tests/tests/e2e/readme.rs)",
                block.line
            ),
            Some(Marker::Skip(reason)) => {
                println!("README.md:{}: not run: {reason}", block.line);
                continue;
            }
            Some(Marker::Run { stack, setup }) if stack == "demo" => {
                if demo.is_none() {
                    demo = Some(Session::demo(grpcurl.clone()).await);
                }
                (demo.as_mut().expect("started above"), setup)
            }
            Some(Marker::Run { stack, setup }) if stack == "secure" => {
                assert!(
                    secure.is_none(),
                    "README.md:{}: one secure block sets the stack up; add its commands there",
                    block.line
                );
                secure = Some(Session::secure(grpcurl.clone(), &block.lines).await);
                (secure.as_mut().expect("started above"), setup)
            }
            Some(Marker::Run { stack, .. }) => panic!(
                "README.md:{}: unknown stack {stack:?}: add it to tests/tests/e2e/readme.rs",
                block.line
            ),
        };
        ran += session.block(block, setup).await;
    }
    println!("README.md: {ran} grpcurl commands ran and answered as documented");
    for session in [demo, secure].into_iter().flatten() {
        session.stack.stop().await;
    }
}

/// One grpcurl call: its flags, the address, the method (or `list`), the request.
#[derive(Debug, Clone)]
struct Call {
    flags: Vec<String>,
    addr: String,
    method: String,
    request: Option<Value>,
}

impl Call {
    /// The README command, pointed at `addr`, each word passed through `map`.
    fn parse(command: &Command, addr: &str, map: impl Fn(&str) -> String) -> Result<Self, String> {
        let args: Vec<String> = command.args[1..].iter().map(|a| map(a)).collect();
        let at = args
            .iter()
            .position(|a| a == README_ADDR)
            .ok_or(format!("the command does not talk to {README_ADDR}"))?;
        let mut flags = Vec::new();
        let mut request = None;
        let mut words = args[..at].iter();
        while let Some(word) = words.next() {
            if word == "-d" {
                let data = words.next().ok_or("-d without a request")?;
                request = Some(
                    serde_json::from_str(data)
                        .map_err(|e| format!("the -d request is not JSON: {e}"))?,
                );
            } else {
                flags.push(word.clone());
            }
        }
        let method = match &args[at + 1..] {
            [method] => method.clone(),
            other => {
                return Err(format!(
                    "expected one method after the address, found {other:?}"
                ));
            }
        };
        Ok(Self {
            flags,
            addr: addr.to_owned(),
            method,
            request,
        })
    }

    /// The RPC's name without the coordinator's prefix (`GetStatus`), or the whole method.
    fn rpc(&self) -> &str {
        self.method
            .strip_prefix(COORDINATOR)
            .unwrap_or(&self.method)
    }

    /// The principal the call's bearer token names, if it sends one.
    fn token(&self) -> Option<&str> {
        self.flags
            .iter()
            .find_map(|flag| flag.strip_prefix("authorization: Bearer "))
    }

    /// The same flags for another coordinator RPC.
    fn sibling(&self, rpc: &str, request: Value) -> Self {
        Self {
            method: format!("{COORDINATOR}{rpc}"),
            request: Some(request),
            ..self.clone()
        }
    }

    /// Runs grpcurl; a non-zero exit is an error.
    async fn run_ok(&self, grpcurl: &Path) -> Result<Answer, String> {
        let answer = self.run(grpcurl).await?;
        if answer.success {
            Ok(answer)
        } else {
            Err(format!(
                "grpcurl failed: {}{}",
                answer.stdout, answer.stderr
            ))
        }
    }

    /// Runs grpcurl and returns what it printed, whether it succeeded or not.
    async fn run(&self, grpcurl: &Path) -> Result<Answer, String> {
        let mut args = self.flags.clone();
        if let Some(request) = &self.request {
            args.extend(["-d".to_owned(), request.to_string()]);
        }
        args.extend([self.addr.clone(), self.method.clone()]);
        let run = tokio::process::Command::new(grpcurl)
            .args(&args)
            .stdin(std::process::Stdio::null())
            .output();
        let output = tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .map_err(|_| "grpcurl did not finish within 30s".to_owned())?
            .map_err(|e| format!("cannot run grpcurl: {e}"))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let success = output.status.success();
        let messages = if self.method == "list" || !success {
            Vec::new()
        } else {
            serde_json::Deserializer::from_str(&stdout)
                .into_iter::<Value>()
                .collect::<Result<_, _>>()
                .map_err(|e| format!("grpcurl printed something that is not JSON: {e}"))?
        };
        Ok(Answer {
            success,
            stdout,
            stderr,
            messages,
        })
    }
}

/// What grpcurl printed for one call.
struct Answer {
    /// Whether grpcurl exited 0.
    success: bool,
    stdout: String,
    stderr: String,
    /// The JSON messages (one, or one per streamed message); empty for `list`.
    messages: Vec<Value>,
}

impl Answer {
    fn first(&self) -> &Value {
        self.messages.first().unwrap_or(&Value::Null)
    }
}

/// A stack and the sagas the README made on it.
struct Session {
    stack: Stack,
    grpcurl: PathBuf,
    /// What README commands' `localhost:50051` becomes.
    addr: String,
    /// The secure stack's certificates and tokens; `None` on the demo stack.
    certs: Option<Certs>,
    /// Sagas started by README commands, oldest first.
    started: Vec<String>,
    /// The first `purchase_plan` saga the README started.
    first_purchase: Option<String>,
    /// A saga parked in FAILED, once a setup or RetrySaga needed one.
    parked: Option<String>,
}

impl Session {
    /// The `demo` stack.
    async fn demo(grpcurl: PathBuf) -> Self {
        let stack = Stack::start_fast(Duration::from_secs(10)).await;
        Self::new(stack, grpcurl, None)
    }

    /// The `secure` stack, set up as the block's lines say (`secure.rs`).
    async fn secure(grpcurl: PathBuf, block_lines: &[String]) -> Self {
        let certs = Certs::make(block_lines);
        let env = certs.sagad_env(block_lines);
        let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        // Short step deadlines: a saga to abort is one whose hanging call has timed out once.
        let stack =
            Stack::start_fast_secured(Duration::from_secs(2), &env, certs.harness_tls()).await;
        Self::new(stack, grpcurl, Some(certs))
    }

    fn new(stack: Stack, grpcurl: PathBuf, certs: Option<Certs>) -> Self {
        // The certificate names localhost; the demo stack is plaintext on its IP.
        let addr = match &certs {
            Some(_) => stack.sagad_addr.replace("127.0.0.1", "localhost"),
            None => stack.sagad_addr.clone(),
        };
        Self {
            stack,
            grpcurl,
            addr,
            certs,
            started: Vec::new(),
            first_purchase: None,
            parked: None,
        }
    }

    /// The principal a call authenticates as, by its bearer token; `None` without one or on the
    /// demo stack (no authentication).
    fn principal(&self, call: &Call) -> Option<String> {
        let certs = self.certs.as_ref()?;
        certs.principal(call.token()?).map(str::to_owned)
    }

    /// Runs every command of `block` after its setups; returns how many ran.
    async fn block(&mut self, block: &Block, setup: &[String]) -> usize {
        for name in setup {
            match name.as_str() {
                "parked-saga" => {
                    self.parked_saga().await;
                }
                other => panic!("README.md:{}: unknown setup {other:?}", block.line),
            }
        }
        for command in &block.commands {
            self.command(command).await.unwrap_or_else(|e| {
                panic!(
                    "README.md:{}: {e}\n  command: {}",
                    command.line,
                    command.args.join(" ")
                )
            });
        }
        block.commands.len()
    }

    async fn command(&mut self, command: &Command) -> Result<(), String> {
        let certs = self.certs.as_ref();
        let mut call = Call::parse(command, &self.addr, |word| match certs {
            Some(certs) => certs.map(word),
            None => word.to_owned(),
        })?;
        if let Some(request) = &mut call.request {
            let rpc = call
                .method
                .strip_prefix(COORDINATOR)
                .unwrap_or(&call.method)
                .to_owned();
            self.fill_placeholders(&rpc, request).await?;
        }
        let answer = call.run(&self.grpcurl).await?;
        let expected = Expected::new(&command.expected);
        if !expected.errors.is_empty() {
            return answers::refused(&expected.errors, answer.success, &answer.stderr);
        }
        if !answer.success {
            return Err(format!(
                "grpcurl failed: {}{}",
                answer.stdout, answer.stderr
            ));
        }
        self.check(&call, &expected, &answer)
            .await
            .map_err(|e| format!("{e}\n  answer: {}", answer.stdout))
    }

    /// Replaces every placeholder in `request` by a real value (module docs), or says it cannot.
    async fn fill_placeholders(&mut self, rpc: &str, request: &mut Value) -> Result<(), String> {
        if is_placeholder(&request["saga_id"]) {
            request["saga_id"] = json!(match rpc {
                "GetStatus" | "GetSagaHistory" | "WatchSaga" =>
                    self.last_started_finished().await?,
                "AbortSaga" => self.running_saga().await,
                "RetrySaga" => self.parked_saga().await,
                "ResolveSaga" => self.park_a_purchase().await,
                other => return Err(format!("no real saga for the placeholder in {other}")),
            });
        }
        if rpc == "StartSaga" && is_placeholder(&request["payload"]["paymentId"]) {
            let purchase = self
                .first_purchase
                .clone()
                .ok_or("no purchase before this refund")?;
            let saga = wait_terminal(&mut self.stack.client, &purchase).await;
            request["payload"]["paymentId"] = json!(state_uuid(&saga, "paymentId").to_string());
        }
        let text = request.to_string();
        if text.contains(PLACEHOLDER) {
            return Err(format!("no real value for the placeholder in {text}"));
        }
        Ok(())
    }

    async fn last_started_finished(&mut self) -> Result<String, String> {
        let id = self
            .started
            .last()
            .cloned()
            .ok_or("no saga started before this command")?;
        wait_terminal(&mut self.stack.client, &id).await;
        Ok(id)
    }

    /// A purchase hanging in ALLOCATE_DEVICE (before its pivot), for AbortSaga.
    async fn running_saga(&mut self) -> String {
        let faults = json!({"ALLOCATE_DEVICE": "hang"});
        let payload = json!({"userId": "readme", "planId": "pro", "faults": faults});
        let id = self.stack.start_saga("purchase_plan", payload).await;
        watch_until(&mut self.stack.client, &id, |saga| {
            saga.steps[2].status() == StepStatus::Running
        })
        .await;
        id
    }

    /// The purchase parked in FAILED that listings and RetrySaga show, made once.
    async fn parked_saga(&mut self) -> String {
        if let Some(id) = &self.parked {
            return id.clone();
        }
        let id = self.park_a_purchase().await;
        self.parked = Some(id.clone());
        id
    }

    /// A new purchase parked in FAILED at CREATE_ORDER's compensation: its device is refused and
    /// CancelOrder never succeeds.
    async fn park_a_purchase(&mut self) -> String {
        let faults = json!({"ALLOCATE_DEVICE": "refuse", "CREATE_ORDER:compensate": "unavailable"});
        let payload = json!({"userId": "readme", "planId": "pro", "faults": faults});
        let saga = self.stack.run_saga("purchase_plan", payload).await;
        assert_eq!(
            saga.status(),
            SagaStatus::Failed,
            "the parked-saga setup: {saga:?}"
        );
        saga.saga_id
    }

    /// Checks the answer: the comment lines after the command, then what the RPC promises.
    async fn check(
        &mut self,
        call: &Call,
        expected: &Expected<'_>,
        answer: &Answer,
    ) -> Result<(), String> {
        let request = call.request.clone().unwrap_or(Value::Null);
        let rpc = call.rpc();
        expected.check_shapes(answer.first(), matches!(rpc, "list" | "GetStatus"))?;
        match rpc {
            "list" => answers::services(&answer.stdout, &expected.prose),
            "grpc.health.v1.Health/Check" => {
                expect_eq(&answer.first()["status"], "SERVING", "health")
            }
            "StartSaga" => self.started_saga(call, expected, answer).await,
            "GetStatus" => {
                let saga = &answer.first()["saga"];
                expect_eq(&saga["sagaId"], request["saga_id"].clone(), "sagaId")?;
                words::check_saga(&expected.prose.join(" "), saga)
            }
            "ListSagas" => answers::list_sagas(&request, answer.first()),
            "GetStats" => self.stats_match_the_log(&request, answer.first()).await,
            "GetSagaHistory" => answers::history(answer.first()),
            "WatchSaga" => answers::watch(&answer.messages),
            "AbortSaga" => {
                let saga = &answer.first()["saga"];
                expect_eq(
                    &saga["failureReason"],
                    "FAILURE_REASON_ABORTED",
                    "the failure reason",
                )?;
                let id = saga["sagaId"].as_str().ok_or("no sagaId")?;
                let ended = wait_terminal(&mut self.stack.client, id).await;
                expect_eq(
                    &json!(ended.status().as_str_name()),
                    "SAGA_STATUS_COMPENSATED",
                    "the end",
                )?;
                self.recorded(call, "EVENT_KIND_SAGA_ABORTED").await
            }
            "RetrySaga" => {
                answers::retried(answer.first())?;
                self.recorded(call, "EVENT_KIND_SAGA_RETRIED").await
            }
            "ResolveSaga" => {
                answers::resolved(&request, answer.first())?;
                self.recorded(call, "EVENT_KIND_STEP_RESOLVED").await?;
                let id = request["saga_id"].as_str().ok_or("no saga_id")?;
                wait_terminal(&mut self.stack.client, id).await;
                let status = call
                    .sibling("GetStatus", json!({"saga_id": id}))
                    .run_ok(&self.grpcurl)
                    .await?;
                match &expected.get_status {
                    Some(end) => words::check_saga(end, &status.first()["saga"]),
                    None => Ok(()),
                }
            }
            other => Err(format!(
                "no check for {other}: add one to tests/tests/e2e/readme.rs"
            )),
        }
    }

    /// GetStats: every type's counts are the saga log's, counted over the window the answer names
    /// (the README's sagas have all finished or stopped moving by then), and the total is their sum.
    async fn stats_match_the_log(&self, request: &Value, answer: &Value) -> Result<(), String> {
        let since = answer["since"].as_str().ok_or("no since")?;
        let saga_type = request["saga_type"].as_str().filter(|t| !t.is_empty());
        let logged: Vec<(String, Vec<i64>)> = sqlx::query_as(
            "SELECT saga_type, ARRAY[
                 count(*) FILTER (WHERE created_at >= $1::timestamptz),
                 count(*) FILTER (WHERE status = 'COMPLETED' AND finished_at >= $1::timestamptz),
                 count(*) FILTER (WHERE status = 'COMPENSATED' AND finished_at >= $1::timestamptz),
                 count(*) FILTER (WHERE status = 'FAILED' AND finished_at >= $1::timestamptz),
                 count(*) FILTER (WHERE status = 'RUNNING'),
                 count(*) FILTER (WHERE status = 'COMPENSATING'),
                 count(*) FILTER (WHERE status = 'FAILED')]
             FROM sagas WHERE $2::text IS NULL OR saga_type = $2
             GROUP BY saga_type ORDER BY saga_type",
        )
        .bind(since)
        .bind(saga_type)
        .fetch_all(&self.stack.saga_db)
        .await
        .map_err(|e| format!("count the saga log: {e}"))?;
        let fields = [
            "started",
            "completed",
            "compensated",
            "failed",
            "running",
            "compensating",
            "parked",
        ];
        // grpcurl prints 64-bit counts as strings and leaves zeros out.
        let counted = |stats: &Value| -> Vec<i64> {
            fields
                .iter()
                .map(|f| stats[*f].as_str().and_then(|n| n.parse().ok()).unwrap_or(0))
                .collect()
        };
        let answered: Vec<(String, Vec<i64>)> = answer["byType"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|t| {
                (
                    t["sagaType"].as_str().unwrap_or_default().to_owned(),
                    counted(t),
                )
            })
            .collect();
        let logged: Vec<(String, Vec<i64>)> = logged
            .into_iter()
            .filter(|(_, counts)| counts.iter().any(|n| *n > 0))
            .collect();
        if answered != logged {
            return Err(format!(
                "{fields:?} by type: answered {answered:?}, the saga log has {logged:?}"
            ));
        }
        let summed: Vec<i64> = (0..fields.len())
            .map(|i| logged.iter().map(|(_, counts)| counts[i]).sum())
            .collect();
        expect_eq(&json!(counted(&answer["total"])), summed, "the total")
    }

    /// An operator action's history event (`kind`) carries the request's reason and the caller's
    /// principal as `by`.
    async fn recorded(&self, call: &Call, kind: &str) -> Result<(), String> {
        let request = call.request.clone().unwrap_or(Value::Null);
        let history = call
            .sibling("GetSagaHistory", json!({"saga_id": request["saga_id"]}))
            .run_ok(&self.grpcurl)
            .await?;
        let principal = self.principal(call);
        answers::operator_event(history.first(), kind, &request, principal.as_deref())
    }

    /// StartSaga: a new saga (and, with an idempotency key, the same one again on a repeat) that ends
    /// as its `GetStatus:` line says, or COMPLETED when it says nothing; started by the caller's
    /// principal.
    async fn started_saga(
        &mut self,
        call: &Call,
        expected: &Expected<'_>,
        answer: &Answer,
    ) -> Result<(), String> {
        let request = call.request.clone().unwrap_or(Value::Null);
        let started = answer.first();
        let id = started["sagaId"].as_str().ok_or("no sagaId")?.to_owned();
        uuid::Uuid::parse_str(&id).map_err(|e| format!("sagaId {id}: {e}"))?;
        expect_eq(&started["created"], true, "created")?;
        if request["idempotency_key"].is_string() {
            // The README's word: the same key returns the first saga, created=false (grpcurl leaves
            // false out).
            let again = call.run_ok(&self.grpcurl).await?;
            expect_eq(&again.first()["sagaId"], id.as_str(), "the repeat's sagaId")?;
            if let Some(created) = again.first().get("created") {
                return Err(format!("the repeat says created: {created}"));
            }
        }
        if request["saga_type"] == "purchase_plan" && self.first_purchase.is_none() {
            self.first_purchase = Some(id.clone());
        }
        self.started.push(id.clone());
        wait_terminal(&mut self.stack.client, &id).await;
        let status = call
            .sibling("GetStatus", json!({"saga_id": id}))
            .run_ok(&self.grpcurl)
            .await?;
        let started_by = self.principal(call).map_or(Value::Null, Value::from);
        expect_eq(
            &status.first()["saga"]["startedBy"],
            started_by,
            "startedBy",
        )?;
        let end_state = expected
            .get_status
            .as_deref()
            .unwrap_or("SAGA_STATUS_COMPLETED");
        words::check_saga(end_state, &status.first()["saga"]).map_err(|e| format!("saga {id}: {e}"))
    }
}

fn is_placeholder(value: &Value) -> bool {
    value.as_str().is_some_and(|s| s.contains(PLACEHOLDER))
}
