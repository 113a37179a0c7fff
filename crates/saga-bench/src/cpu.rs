//! CPU time spent by each side of a run — sagad, PostgreSQL, the participants, the bench itself — read
//! from `/proc` before and after, so the bench can say what one saga costs each of them.
//!
//! Processes are told apart by their command name: `sagad`, `postgres` (every backend and helper of the
//! server), and the participants (`demo-participants`, and `saga-bench` processes other than this one: the
//! noop participant). Given the process ids of sagad and of the participants ([`Pids`]), only those count
//! for them, whatever else runs; PostgreSQL is always every process of the server. A process that exits
//! during the run takes its CPU time with it (PostgreSQL's pooled backends live on).

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

    fn of(command: &str, pid: i32, bench: i32, pids: &Pids) -> Option<Self> {
        if pid == bench {
            return Some(Side::Bench);
        }
        if pids.sagad.contains(&pid) {
            return Some(Side::Sagad);
        }
        if pids.participants.contains(&pid) {
            return Some(Side::Participants);
        }
        match command {
            "postgres" | "postmaster" => Some(Side::Postgres),
            "sagad" if pids.sagad.is_empty() => Some(Side::Sagad),
            // /proc truncates command names to 15 bytes.
            "demo-participan" | "saga-bench" if pids.participants.is_empty() => {
                Some(Side::Participants)
            }
            _ => None,
        }
    }
}

/// The processes that are sagad and the participants, where the caller knows them; an empty list means
/// "every process of that name".
#[derive(Debug, Clone, Default)]
pub struct Pids {
    pub sagad: Vec<i32>,
    pub participants: Vec<i32>,
}

/// CPU seconds (user + system) per process, by side.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    by_process: HashMap<i32, (Side, f64)>,
}

impl Sample {
    /// Reads every process's CPU time now.
    pub fn take(pids: &Pids) -> Result<Self> {
        let bench = i32::try_from(std::process::id()).unwrap_or_default();
        let ticks = procfs::ticks_per_second() as f64;
        let mut by_process = HashMap::new();
        for process in all_processes().context("listing /proc")?.flatten() {
            // Processes come and go while we read: skip the ones already gone.
            let Ok(stat) = process.stat() else { continue };
            if let Some(side) = Side::of(&stat.comm, stat.pid, bench, pids) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_go_by_name_unless_their_ids_are_given() {
        let by_name = Pids::default();
        assert_eq!(Side::of("sagad", 10, 1, &by_name), Some(Side::Sagad));
        assert_eq!(Side::of("postgres", 11, 1, &by_name), Some(Side::Postgres));
        assert_eq!(
            Side::of("demo-participan", 12, 1, &by_name),
            Some(Side::Participants)
        );
        assert_eq!(
            Side::of("saga-bench", 13, 1, &by_name),
            Some(Side::Participants)
        );
        assert_eq!(Side::of("saga-bench", 1, 1, &by_name), Some(Side::Bench));
        assert_eq!(Side::of("bash", 14, 1, &by_name), None);

        let given = Pids {
            sagad: vec![10],
            participants: vec![12, 13],
        };
        assert_eq!(Side::of("sagad", 10, 1, &given), Some(Side::Sagad));
        assert_eq!(Side::of("sagad", 20, 1, &given), None, "another sagad");
        assert_eq!(
            Side::of("saga-bench", 13, 1, &given),
            Some(Side::Participants)
        );
        assert_eq!(Side::of("saga-bench", 21, 1, &given), None, "another bench");
        assert_eq!(Side::of("postgres", 22, 1, &given), Some(Side::Postgres));
        assert_eq!(Side::of("saga-bench", 1, 1, &given), Some(Side::Bench));
    }
}
