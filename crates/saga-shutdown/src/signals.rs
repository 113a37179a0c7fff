//! SIGINT and SIGTERM: the first starts the drain, a second ends the process at once (an operator who
//! presses Ctrl-C twice, or an orchestrator that gave up waiting, does not want to wait for the drain).

use std::convert::Infallible;
use std::future::Future;
use std::io;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::info;

/// Runs `work` to its end. The first SIGINT or SIGTERM cancels `shutdown`, which `work` answers by
/// draining and returning; a second one prints `<program>: received <signal> again: exiting at once
/// without draining` on stderr and exits with status 128 + the signal's number, as a shell reports a
/// process killed by that signal.
///
/// # Errors
/// When the signal handlers cannot be installed.
pub async fn until_stopped<T>(
    program: &'static str,
    shutdown: CancellationToken,
    work: impl Future<Output = T>,
) -> io::Result<T> {
    let signals = Signals::install()?;
    tokio::select! {
        output = work => Ok(output),
        never = drain_on_signals(program, signals, shutdown) => match never {},
    }
}

/// Cancels `shutdown` on the first signal; exits the process on the second.
async fn drain_on_signals(
    program: &'static str,
    mut signals: Signals,
    shutdown: CancellationToken,
) -> Infallible {
    let first = signals.next().await;
    info!(
        signal = first.name,
        "shutting down: draining in-flight work (send the signal again to exit at once)"
    );
    shutdown.cancel();
    let second = signals.next().await;
    eprintln!(
        "{program}: received {} again: exiting at once without draining",
        second.name
    );
    std::process::exit(128 + second.number)
}

/// A signal that was received.
#[derive(Debug, Clone, Copy)]
struct Received {
    name: &'static str,
    number: i32,
}

const SIGINT: Received = Received {
    name: "SIGINT",
    number: 2,
};
const SIGTERM: Received = Received {
    name: "SIGTERM",
    number: 15,
};

/// The handlers, installed for the life of the process.
struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    fn install() -> io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for the next SIGINT or SIGTERM. A stream that ends (it never does while the runtime runs)
    /// counts as never firing.
    async fn next(&mut self) -> Received {
        tokio::select! {
            Some(()) = self.interrupt.recv() => SIGINT,
            Some(()) = self.terminate.recv() => SIGTERM,
            else => std::future::pending().await,
        }
    }
}
