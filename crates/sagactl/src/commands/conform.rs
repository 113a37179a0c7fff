//! `sagactl conform --addr A --action X --compensate Y --payload JSON [...]`: the `saga-conformance`
//! checks against a running participant, as a pass/fail table (or JSON), exit code 9 when one fails.

use saga_conformance::{Report, Target, Verdict};
use serde_json::{Value, json};

use crate::cli::{ConformArgs, Output};
use crate::exit::{Failure, Outcome, chain};

/// Runs every check against the participant and prints the report.
pub async fn conform(args: ConformArgs, output: Output) -> Result<Outcome, Failure> {
    let target = Target::try_from(args.target).map_err(|e| Failure::Usage(e.to_string()))?;
    let report = saga_conformance::run(&target)
        .await
        .map_err(|e| Failure::Connect {
            addr: target.endpoint.clone(),
            cause: std::error::Error::source(&e).map_or_else(|| e.to_string(), chain),
        })?;
    match output {
        Output::Table => {
            println!(
                "checked {} / {} at {}",
                target.action, target.compensate, target.endpoint
            );
            println!("{}", report.table());
            println!("{}", report.summary());
        }
        Output::Json => {
            let printed = serde_json::to_string_pretty(&as_json(&report))
                .map_err(|e| Failure::Local(format!("cannot print the report: {e}")))?;
            println!("{printed}");
        }
    }
    Ok(if report.passed() {
        Outcome::Done
    } else {
        Outcome::ChecksFailed
    })
}

/// `{"passed": bool, "results": [{"check", "rule", "result": "pass"|"fail"|"skip", "detail"}]}`.
fn as_json(report: &Report) -> Value {
    let results: Vec<Value> = report
        .results
        .iter()
        .map(|r| {
            let (result, detail) = match &r.verdict {
                Verdict::Pass(detail) => ("pass", detail),
                Verdict::Fail(detail) => ("fail", detail),
                Verdict::Skip(detail) => ("skip", detail),
            };
            json!({"check": r.check.id(), "rule": r.check.rule(), "result": result, "detail": detail})
        })
        .collect();
    json!({"passed": report.passed(), "results": results})
}
