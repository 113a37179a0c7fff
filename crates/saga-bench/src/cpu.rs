//! CPU time spent by each side of a run — sagad, PostgreSQL, the participants, the bench itself — read
//! from `/proc` before and after, so the bench can say what one saga costs each of them.
//!
//! Processes are told apart by their command name: `sagad`, `postgres` (every backend and helper of the
//! server), and the participants (`demo-participants`, and `saga-bench` processes other than this one: the
//! noop participant). Run the bench on an otherwise quiet machine: every process with those names counts.
//! A process that exits during the run takes its CPU time with it (PostgreSQL's pooled backends live on).

use std::collections::HashMap;

use anyhow::{Context, Result};
use procfs::process::all_processes;

/// Who spent the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    Sagad,
    Postgres,
    Participants,
    Bench,
}

impl Side {
    pub const ALL: [Side; 4] = [Side::Sagad, Side::Postgres, Side::Participants, Side::Bench];

    pub fn name(self) -> &'static str {
        match self {
            Side::Sagad => "sagad",
            Side::Postgres => "PostgreSQL",
            Side::Participants => "participants",
            Side::Bench => "saga-bench",
        }
    }

    fn of(command: &str, pid: i32, bench: i32) -> Option<Self> {
        match command {
            "sagad" => Some(Side::Sagad),
            "postgres" | "postmaster" => Some(Side::Postgres),
            // /proc truncates command names to 15 bytes.
            "demo-participan" => Some(Side::Participants),
            "saga-bench" if pid == bench => Some(Side::Bench),
            "saga-bench" => Some(Side::Participants),
            _ => None,
        }
    }
}

/// CPU seconds (user + system) per process, by side.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    by_process: HashMap<i32, (Side, f64)>,
}

impl Sample {
    /// Reads every process's CPU time now.
    pub fn take() -> Result<Self> {
        let bench = i32::try_from(std::process::id()).unwrap_or_default();
        let ticks = procfs::ticks_per_second() as f64;
        let mut by_process = HashMap::new();
        for process in all_processes().context("listing /proc")?.flatten() {
            // Processes come and go while we read: skip the ones already gone.
            let Ok(stat) = process.stat() else { continue };
            if let Some(side) = Side::of(&stat.comm, stat.pid, bench) {
                #[allow(clippy::cast_precision_loss)] // CPU ticks are far below 2^52
                let seconds = (stat.utime + stat.stime) as f64 / ticks;
                by_process.insert(stat.pid, (side, seconds));
            }
        }
        Ok(Self { by_process })
    }

    /// CPU seconds each side spent between `before` and `self`; a process started meanwhile counts from
    /// zero.
    pub fn since(&self, before: &Sample) -> HashMap<Side, f64> {
        let mut spent: HashMap<Side, f64> = Side::ALL.iter().map(|&s| (s, 0.0)).collect();
        for (pid, (side, now)) in &self.by_process {
            let then = before.by_process.get(pid).map_or(0.0, |(_, t)| *t);
            *spent.entry(*side).or_default() += (now - then).max(0.0);
        }
        spent
    }
}
