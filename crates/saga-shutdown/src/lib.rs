//! Shutdown plumbing shared by `sagad` and `demo-participants`, in the style of mini-redis and
//! linkerd2-proxy: one cancellation token from `main`, every background task tracked, a bounded drain.
//!
//! # Layout
//! - [`Tasks`]: the background tasks; one that returns an error or panics is logged with its cause and
//!   fires [`Tasks::failed`], so the process drains and exits non-zero instead of limping on without it.
//!   [`Tasks::drain`] waits for them within a grace period, then abandons the rest.
//! - [`until_stopped`]: runs the process's work under SIGINT/SIGTERM: the first signal cancels the token
//!   (the work drains and returns), a second one exits at once.
//! - [`one_line`]: an error and its causes on one line, for the exit message.

mod signals;
mod tasks;

pub use signals::until_stopped;
pub use tasks::{TaskFailure, TaskOutcome, Tasks};

use std::error::Error;

/// The error and its causes on one line. Some errors (sqlx's I/O error) repeat their source in their own
/// message; a cause already spelled out is not repeated.
pub fn one_line(err: &(dyn Error + 'static)) -> String {
    let mut line = err.to_string();
    let mut cause = err.source();
    while let Some(source) = cause {
        let text = source.to_string();
        if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = source.source();
    }
    line
}
