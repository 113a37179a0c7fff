//! Files sagad re-reads while it runs (certificates, the principals file), so they can be rotated without
//! a restart.
//!
//! The files are polled: their bytes are read every [`POLL_INTERVAL`] and compared with the last read.
//! Polling, rather than file-system notifications, also sees the symlink swaps with which Kubernetes
//! updates mounted secrets, and costs a few small reads per second.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How often watched files are read for changes.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// A value built from files, rebuilt whenever their contents change. A change that does not build (a
/// half-written certificate, a typo in the principals file) is logged and the previous value kept.
pub(crate) struct Reloading<T, E> {
    what: &'static str,
    paths: Vec<PathBuf>,
    load: Box<dyn Fn() -> Result<T, E> + Send>,
    seen: Vec<Option<Vec<u8>>>,
    current: watch::Sender<Arc<T>>,
}

impl<T, E> Reloading<T, E>
where
    T: Send + Sync + 'static,
    E: std::fmt::Display,
{
    /// Builds the first value with `load` (its error is a start-up error), remembering the contents of
    /// `paths` that `load` reads. `what` names the value in logs.
    pub(crate) fn start(
        what: &'static str,
        paths: Vec<PathBuf>,
        load: impl Fn() -> Result<T, E> + Send + 'static,
    ) -> Result<Self, E> {
        let seen = read_all(&paths);
        let first = load()?;
        Ok(Self {
            what,
            paths,
            load: Box::new(load),
            seen,
            current: watch::Sender::new(Arc::new(first)),
        })
    }

    /// The current value, following every successful reload.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Arc<T>> {
        self.current.subscribe()
    }

    /// Polls the files until `shutdown`, rebuilding the value after each change.
    pub(crate) async fn run(mut self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(POLL_INTERVAL) => {}
            }
            let now = read_all(&self.paths);
            if now == self.seen {
                continue;
            }
            self.seen = now;
            match (self.load)() {
                Ok(value) => {
                    self.current.send_replace(Arc::new(value));
                    info!(what = self.what, "reloaded after a file change");
                }
                Err(error) => {
                    warn!(what = self.what, %error, "changed file cannot be used; keeping the previous one");
                }
            }
        }
    }
}

/// The contents of each file; `None` for a file that cannot be read right now (mid-rotation).
fn read_all(paths: &[PathBuf]) -> Vec<Option<Vec<u8>>> {
    paths.iter().map(|path| std::fs::read(path).ok()).collect()
}
