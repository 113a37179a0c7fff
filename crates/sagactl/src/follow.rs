//! Following a saga live with `WatchSaga` until it ends: a redrawing per-step progress display when
//! stdout is a terminal, one plain line per change when it is not, one JSON message per change with
//! `--output json`. Returns how the saga ended.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use saga_proto::v1::{Saga, SagaStatus, Step, StepStatus, WatchSagaRequest, WatchSagaResponse};

use crate::cli::Output;
use crate::connect::Client;
use crate::exit::{Failure, Outcome, one_line};
use crate::json;
use crate::render::{outcome, step_status, time};

/// Follows saga `saga_id` until it is terminal, or until `limit` has passed
/// ([`Failure::WaitEnded`]).
pub async fn follow(
    client: &mut Client,
    saga_id: &str,
    output: Output,
    limit: Option<Duration>,
) -> Result<Outcome, Failure> {
    let mut view = match output {
        Output::Json => View::Json,
        Output::Table if std::io::stdout().is_terminal() => View::Progress(Progress::default()),
        Output::Table => View::Lines(None),
    };
    let mut status = SagaStatus::Unspecified;
    let watch = async {
        let mut stream = client
            .watch_saga(WatchSagaRequest {
                saga_id: saga_id.to_owned(),
            })
            .await?
            .into_inner();
        while let Some(message) = stream.message().await? {
            view.show(&message)?;
            let Some(saga) = message.saga else { continue };
            status = saga.status();
            if let Some(ended) = terminal(status) {
                view.finish();
                return Ok(ended);
            }
        }
        Err(Failure::Rpc(tonic::Status::unavailable(
            "the watch ended before the saga did",
        )))
    };
    let Some(limit) = limit else {
        return watch.await;
    };
    let result = tokio::time::timeout(limit, watch).await;
    view.finish();
    result.unwrap_or_else(|_| {
        Err(Failure::WaitEnded {
            saga_id: saga_id.to_owned(),
            status,
            waited: limit,
        })
    })
}

/// How a saga in `status` ended, or `None` while it is active.
fn terminal(status: SagaStatus) -> Option<Outcome> {
    match status {
        SagaStatus::Completed => Some(Outcome::Done),
        SagaStatus::Compensated => Some(Outcome::Compensated),
        SagaStatus::Failed => Some(Outcome::Parked),
        SagaStatus::Unspecified | SagaStatus::Running | SagaStatus::Compensating => None,
    }
}

/// Where the changes go.
enum View {
    /// Each message as JSON.
    Json,
    /// A line per change, given the last version seen.
    Lines(Option<Box<Saga>>),
    /// Bars redrawn in place.
    Progress(Progress),
}

impl View {
    fn show(&mut self, message: &WatchSagaResponse) -> Result<(), Failure> {
        match (self, &message.saga) {
            (Self::Json, _) => json::print(message)?,
            (Self::Lines(previous), Some(saga)) => {
                for line in changes(previous.as_deref(), saga) {
                    println!("{line}");
                }
                *previous = Some(Box::new(saga.clone()));
            }
            (Self::Progress(progress), Some(saga)) => progress.show(saga),
            (_, None) => {}
        }
        Ok(())
    }

    fn finish(&mut self) {
        if let Self::Progress(progress) = self {
            progress.finish();
        }
    }
}

/// The lines that describe how `saga` differs from `previous` (everything, for the first version):
/// one per step whose status, attempts or error changed, and one when the saga's status changed.
fn changes(previous: Option<&Saga>, saga: &Saga) -> Vec<String> {
    let clock = time(saga.updated_at.as_ref())
        .map(|t| t.format("%H:%M:%S%.3f").to_string())
        .unwrap_or_default();
    let mut lines = Vec::new();
    let header = |saga: &Saga| format!("{clock} saga {} {}", saga.saga_id, outcome(saga));
    if previous.is_none() {
        lines.push(format!(
            "{clock} saga {} ({} v{}) {}",
            saga.saga_id,
            saga.saga_type,
            saga.definition_version,
            outcome(saga)
        ));
    }
    let untouched = Step::default();
    for (index, step) in saga.steps.iter().enumerate() {
        let before = previous
            .and_then(|p| p.steps.get(index))
            .unwrap_or(&untouched);
        let changed = before.status != step.status
            || before.attempts != step.attempts
            || before.compensation_attempts != step.compensation_attempts
            || before.last_error != step.last_error;
        if changed && step.status() != StepStatus::Pending {
            lines.push(format!("{clock}   {} {}", step.name, step_line(step)));
        }
    }
    if previous.is_some_and(|p| p.status != saga.status || p.failure_reason != saga.failure_reason)
    {
        lines.push(header(saga));
    }
    lines
}

/// A step's status with its attempts and last error: `RUNNING attempt 2 (error: ...)`.
fn step_line(step: &Step) -> String {
    let mut line = step_status(step.status()).to_owned();
    let compensating = matches!(
        step.status(),
        StepStatus::Compensating | StepStatus::Compensated
    );
    if compensating && step.compensation_attempts > 0 {
        line.push_str(&format!(
            " compensation attempt {}",
            step.compensation_attempts
        ));
    } else if step.attempts > 0 {
        line.push_str(&format!(" attempt {}", step.attempts));
    }
    if !step.last_error.is_empty() && step.status() != StepStatus::Succeeded {
        line.push_str(&format!(" (last error: {})", one_line(&step.last_error)));
    }
    line
}

/// The terminal display: a header bar for the saga and a bar per step, spinning while active.
#[derive(Default)]
struct Progress {
    bars: Option<(MultiProgress, ProgressBar, Vec<ProgressBar>)>,
}

impl Progress {
    fn show(&mut self, saga: &Saga) {
        let (_, header, steps) = self.bars.get_or_insert_with(|| {
            let all = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
            let header = all.add(ProgressBar::new_spinner());
            let width = saga.steps.iter().map(|s| s.name.len()).max().unwrap_or(0);
            let steps = saga
                .steps
                .iter()
                .map(|step| {
                    let bar = all.add(ProgressBar::new_spinner());
                    bar.set_prefix(format!("{:width$}", step.name));
                    bar
                })
                .collect();
            (all, header, steps)
        });
        header.set_message(format!(
            "saga {} ({} v{}) {}",
            saga.saga_id,
            saga.saga_type,
            saga.definition_version,
            outcome(saga)
        ));
        spin(header, terminal(saga.status()).is_none(), "{spinner} {msg}");
        for (bar, step) in steps.iter().zip(&saga.steps) {
            let active = matches!(
                step.status(),
                StepStatus::Running | StepStatus::Compensating
            );
            // A still step shows its mark where an active one spins, so the columns stay put.
            if active {
                bar.set_message(step_line(step));
            } else {
                bar.set_message(format!("{} {}", symbol(step.status()), step_line(step)));
            }
            spin(bar, active, "  {prefix} {spinner} {msg}");
        }
    }

    fn finish(&mut self) {
        if let Some((_, header, steps)) = &self.bars {
            for bar in steps.iter().chain([header]) {
                bar.finish();
            }
        }
    }
}

/// Spins `bar` while `active`; otherwise draws it still, without the spinner.
fn spin(bar: &ProgressBar, active: bool, template: &str) {
    let still = template.replace("{spinner} ", "");
    let still = if still.starts_with('{') {
        format!("  {still}")
    } else {
        still
    };
    let template = if active { template } else { &still };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    if active {
        bar.enable_steady_tick(Duration::from_millis(100));
    } else {
        bar.disable_steady_tick();
        bar.tick();
    }
}

/// A mark per step status, for the terminal display.
fn symbol(status: StepStatus) -> &'static str {
    match status {
        StepStatus::Succeeded => "✓",
        StepStatus::Failed => "✗",
        StepStatus::Compensated => "↺",
        StepStatus::Unspecified
        | StepStatus::Pending
        | StepStatus::Running
        | StepStatus::Compensating
        | StepStatus::Skipped => "·",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_types::Timestamp;
    use saga_proto::v1::FailureReason;

    fn saga(status: SagaStatus, steps: &[(StepStatus, u32, u32, &str)]) -> Saga {
        Saga {
            saga_id: "s1".to_owned(),
            saga_type: "demo".to_owned(),
            definition_version: 2,
            status: status.into(),
            updated_at: Some(Timestamp {
                seconds: 3600 + 61,
                nanos: 7_000_000,
            }),
            steps: steps
                .iter()
                .zip(["A", "B"])
                .map(|(&(status, attempts, compensations, error), name)| Step {
                    name: name.to_owned(),
                    status: status.into(),
                    attempts,
                    compensation_attempts: compensations,
                    last_error: error.to_owned(),
                    ..Step::default()
                })
                .collect(),
            ..Saga::default()
        }
    }

    #[test]
    fn the_first_version_shows_the_saga_and_every_step_that_started() {
        let first = saga(
            SagaStatus::Running,
            &[
                (StepStatus::Succeeded, 1, 0, ""),
                (StepStatus::Pending, 0, 0, ""),
            ],
        );
        assert_eq!(
            changes(None, &first),
            [
                "01:01:01.007 saga s1 (demo v2) RUNNING",
                "01:01:01.007   A SUCCEEDED attempt 1"
            ]
        );
    }

    #[test]
    fn later_versions_show_only_what_changed_and_the_saga_when_its_status_does() {
        let before = saga(
            SagaStatus::Running,
            &[
                (StepStatus::Succeeded, 1, 0, ""),
                (StepStatus::Running, 1, 0, ""),
            ],
        );
        let mut after = saga(
            SagaStatus::Compensating,
            &[
                (StepStatus::Compensating, 1, 1, "UNAVAILABLE: down"),
                (StepStatus::Failed, 1, 0, "FAILED_PRECONDITION: no\nstock"),
            ],
        );
        after.failure_reason = FailureReason::StepFailed.into();
        after.failure_message = "B refused".to_owned();
        assert_eq!(
            changes(Some(&before), &after),
            [
                "01:01:01.007   A COMPENSATING compensation attempt 1 (last error: UNAVAILABLE: down)",
                "01:01:01.007   B FAILED attempt 1 (last error: FAILED_PRECONDITION: no stock)",
                "01:01:01.007 saga s1 COMPENSATING (STEP_FAILED: B refused)",
            ]
        );
        assert!(changes(Some(&after), &after).is_empty());
    }
}
