//! The checks' results, as a pass/fail table.

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};

use crate::checks::{Check, Verdict};

/// Width the table wraps its detail column to.
const TABLE_WIDTH: u16 = 140;

/// One check and its verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// Which rule.
    pub check: Check,
    /// What happened.
    pub verdict: Verdict,
}

/// Every check's result, in [`Check::ALL`] order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The results.
    pub results: Vec<CheckResult>,
}

impl Report {
    /// Whether no check failed (skipped checks do not fail a report).
    pub fn passed(&self) -> bool {
        self.failed().next().is_none()
    }

    /// The checks that failed.
    pub fn failed(&self) -> impl Iterator<Item = Check> + '_ {
        self.results
            .iter()
            .filter(|result| matches!(result.verdict, Verdict::Fail(_)))
            .map(|result| result.check)
    }

    /// The results as a table: check, rule, result, detail.
    pub fn table(&self) -> Table {
        let mut table = Table::new();
        table
            .load_style(UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Dynamic)
            .set_width(TABLE_WIDTH)
            .set_header(["check", "rule", "result", "detail"]);
        for result in &self.results {
            let (outcome, detail) = match &result.verdict {
                Verdict::Pass(detail) => ("pass", detail),
                Verdict::Fail(detail) => ("FAIL", detail),
                Verdict::Skip(detail) => ("skip", detail),
            };
            table.add_row([result.check.id(), result.check.rule(), outcome, detail]);
        }
        table
    }

    /// One line: how many checks passed, failed and were skipped.
    pub fn summary(&self) -> String {
        let count = |wanted: fn(&Verdict) -> bool| {
            self.results
                .iter()
                .filter(|result| wanted(&result.verdict))
                .count()
        };
        format!(
            "{} passed, {} failed, {} skipped",
            count(|v| matches!(v, Verdict::Pass(_))),
            count(|v| matches!(v, Verdict::Fail(_))),
            count(|v| matches!(v, Verdict::Skip(_))),
        )
    }
}
