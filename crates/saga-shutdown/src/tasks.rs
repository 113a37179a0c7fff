//! The background tasks of a process, tracked until drained. A task that fails stops the process: a
//! coordinator without its lease heartbeat or a participant without one of its servers must not go on
//! looking healthy.

use std::any::Any;
use std::error::Error;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::FutureExt;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, warn};

/// The first task that failed: its name and its error chain or panic message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("background task {task} {cause}")]
pub struct TaskFailure {
    /// The task's name, as given to [`Tasks::spawn`].
    pub task: &'static str,
    /// `failed: <error and causes>` or `panicked: <message>`.
    pub cause: String,
}

/// What a task's output says about how it ended: `()` always succeeds; a `Result` fails with its error.
pub trait TaskOutcome {
    /// The error and its causes on one line, or `None` if the task succeeded.
    fn failure(self) -> Option<String>;
}

impl TaskOutcome for () {
    fn failure(self) -> Option<String> {
        None
    }
}

impl<E: Into<Box<dyn Error + Send + Sync>>> TaskOutcome for Result<(), E> {
    fn failure(self) -> Option<String> {
        self.err().map(|err| {
            let err: Box<dyn Error + Send + Sync> = err.into();
            crate::one_line(err.as_ref())
        })
    }
}

/// A set of background tasks. Cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct Tasks {
    tracker: TaskTracker,
    /// Fired when a drain gives up: the remaining tasks are dropped at their next await point.
    abandon: CancellationToken,
    /// Fired by the first failure, once `failure` holds it.
    failed: CancellationToken,
    failure: Arc<OnceLock<TaskFailure>>,
}

impl Tasks {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `future` as a task named `name`. If it returns an error or panics, the failure is logged and
    /// [`Tasks::failed`] fires; the owner then stops the process.
    pub fn spawn<T: TaskOutcome + Send + 'static>(
        &self,
        name: &'static str,
        future: impl Future<Output = T> + Send + 'static,
    ) {
        let abandon = self.abandon.clone();
        let failed = self.failed.clone();
        let failure = self.failure.clone();
        // Boxed: this wrapper holds the future twice (captured, then inside the `select!`), which for a
        // saga executor doubled the memory every saga in flight costs.
        let future = Box::pin(future);
        self.tracker.spawn(async move {
            let outcome = tokio::select! {
                outcome = AssertUnwindSafe(future).catch_unwind() => outcome,
                () = abandon.cancelled() => return,
            };
            let cause = match outcome {
                Ok(output) => match output.failure() {
                    Some(err) => format!("failed: {err}"),
                    None => return,
                },
                Err(panic) => format!("panicked: {}", panic_message(panic.as_ref())),
            };
            error!(task = name, %cause, "background task stopped: shutting down");
            // Only the first failure is kept: the later ones are usually its consequences.
            let _ = failure.set(TaskFailure { task: name, cause });
            failed.cancel();
        });
    }

    /// Waits until a task has failed.
    pub async fn failed(&self) {
        self.failed.cancelled().await;
    }

    /// The first failure, if a task failed.
    pub fn failure(&self) -> Option<TaskFailure> {
        self.failure.get().cloned()
    }

    /// The tasks still running.
    pub fn len(&self) -> usize {
        self.tracker.len()
    }

    /// Whether no task is running.
    pub fn is_empty(&self) -> bool {
        self.tracker.is_empty()
    }

    /// Waits for every task to finish, however long they take: for tasks the caller has already told to
    /// stop.
    pub async fn wait(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }

    /// Waits up to `grace` for the tasks to finish; then drops the remaining ones at their next await
    /// point and returns false.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok()
        {
            return true;
        }
        warn!(
            remaining = self.tracker.len(),
            ?grace,
            "background tasks still running after the shutdown grace period: abandoning them"
        );
        self.abandon.cancel();
        self.tracker.wait().await;
        false
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    if let Some(message) = panic.downcast_ref::<&str>() {
        message
    } else if let Some(message) = panic.downcast_ref::<String>() {
        message
    } else {
        "a non-text panic payload"
    }
}

#[cfg(test)]
mod tests {
    use std::future::pending;

    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot renew leases")]
    struct Renew(#[source] std::io::Error);

    #[tokio::test]
    async fn an_error_is_reported_with_its_causes_and_fires_failed() {
        let tasks = Tasks::new();
        tasks.spawn("heartbeat", async {
            Err::<(), _>(Renew(std::io::Error::other("connection reset")))
        });
        tasks.failed().await;
        assert_eq!(
            tasks.failure(),
            Some(TaskFailure {
                task: "heartbeat",
                cause: "failed: cannot renew leases: connection reset".to_owned(),
            })
        );
        assert_eq!(
            tasks.failure().map(|f| f.to_string()).as_deref(),
            Some("background task heartbeat failed: cannot renew leases: connection reset")
        );
    }

    #[tokio::test]
    async fn a_panic_is_reported_with_its_message() {
        let tasks = Tasks::new();
        let id = 7;
        tasks.spawn("mirror", async move {
            if id == 7 {
                panic!("health channel closed for {id}");
            }
        });
        tasks.failed().await;
        let failure = tasks.failure().expect("a failure");
        assert_eq!(failure.task, "mirror");
        assert_eq!(failure.cause, "panicked: health channel closed for 7");
    }

    #[tokio::test]
    async fn only_the_first_failure_is_kept() {
        let tasks = Tasks::new();
        tasks.spawn("first", async { Err::<(), _>(anyhow::anyhow!("first")) });
        tasks.failed().await;
        tasks.spawn("second", async { Err::<(), _>(anyhow::anyhow!("second")) });
        tasks.wait().await;
        assert_eq!(tasks.failure().map(|f| f.task), Some("first"));
    }

    #[tokio::test]
    async fn tasks_that_end_well_drain_in_time_and_report_nothing() {
        let tasks = Tasks::new();
        let stop = CancellationToken::new();
        for _ in 0..3 {
            let stop = stop.clone();
            tasks.spawn("loop", async move { stop.cancelled().await });
        }
        tasks.spawn("ok", async { Ok::<(), std::io::Error>(()) });
        stop.cancel();
        assert!(tasks.drain(Duration::from_secs(5)).await);
        assert!(tasks.is_empty());
        assert_eq!(tasks.failure(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_drain_abandons_what_outlives_the_grace_period() {
        let tasks = Tasks::new();
        let (dropped, was_dropped) = tokio::sync::oneshot::channel::<()>();
        tasks.spawn("stuck", async move {
            let _dropped = dropped;
            pending::<()>().await;
        });
        let started = tokio::time::Instant::now();
        assert!(!tasks.drain(Duration::from_secs(3)).await);
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        assert!(tasks.is_empty());
        assert!(was_dropped.await.is_err(), "the stuck task was dropped");
        assert_eq!(tasks.failure(), None, "an abandoned task is not a failure");
    }
}
