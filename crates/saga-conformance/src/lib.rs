//! Conformance checker for saga participants written in any language: points at a running participant
//! and checks, over gRPC, the contract of DESIGN.md §1 that the SDKs' barriers implement — repeats answer
//! the first answer, concurrent duplicates run once, a compensation without its action answers OK and
//! fences the action, refusal and transient codes mean what the coordinator takes them to mean.
//!
//! # Layout
//! - [`Target`], [`TargetArgs`] (`target`): what to check, and the command-line arguments for it.
//! - [`Probe`], [`Answer`] (`probe`): step requests as the coordinator sends them; answers as compared.
//! - [`Check`], [`Verdict`] (`checks`): one rule each, judged from the answers alone; the module says
//!   what that can and cannot see.
//! - [`Report`] (`report`): the results as a pass/fail table.
//!
//! # Usage
//! The `saga-conformance` binary, or from another CLI:
//! ```no_run
//! # async fn run(target: saga_conformance::Target) -> Result<(), Box<dyn std::error::Error>> {
//! let report = saga_conformance::run(&target).await?;
//! println!("{}", report.table());
//! assert!(report.passed());
//! # Ok(())
//! # }
//! ```

mod checks;
mod probe;
mod report;
mod target;

pub use checks::{Check, Verdict};
pub use probe::{Answer, ConnectError, Probe};
pub use report::{CheckResult, Report};
pub use saga_participant::Direction;
pub use target::{Target, TargetArgs, TargetError};

/// Connects to `target` and runs every check, one after the other.
pub async fn run(target: &Target) -> Result<Report, ConnectError> {
    let probe = Probe::connect(target).await?;
    let mut results = Vec::with_capacity(Check::ALL.len());
    for check in Check::ALL {
        let verdict = check.run(&probe).await;
        results.push(CheckResult { check, verdict });
    }
    Ok(Report { results })
}
