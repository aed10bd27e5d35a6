//! The harness: runs a parser on each hostile input under `catch_unwind` and reports.

use std::collections::BTreeMap;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use super::Mutation;

/// Outcomes of running a parser on many hostile inputs; [`Report::finish`] fails the test on
/// any panic, any error message that does not name the input, or any case slower than the
/// limit (a hang guard).
pub struct Report {
    parser: String,
    seed: u64,
    limit: Duration,
    cases: usize,
    ok: usize,
    failures: Vec<String>,
    /// First message seen per mutation kind.
    samples: BTreeMap<String, String>,
}

impl Report {
    /// A report for `parser`, whose mutations were drawn from `seed`.
    pub fn new(parser: &str, seed: u64) -> Self {
        Self {
            parser: parser.to_string(),
            seed,
            limit: Duration::from_secs(10),
            cases: 0,
            ok: 0,
            failures: Vec::new(),
            samples: BTreeMap::new(),
        }
    }

    /// Runs `parse` on the case `mutation`, catching panics. An `Err` must mention `name`
    /// (a file path, `payload`) when given.
    pub fn run<T, E: fmt::Display>(
        &mut self,
        mutation: &Mutation,
        name: Option<&str>,
        parse: impl FnOnce() -> Result<T, E>,
    ) {
        let label = mutation.to_string();
        self.run_labelled(&mutation.kind(), &label, name, parse);
    }

    /// As [`Report::run`], with the case described by `kind` and `label`.
    pub fn run_labelled<T, E: fmt::Display>(
        &mut self,
        kind: &str,
        label: &str,
        name: Option<&str>,
        parse: impl FnOnce() -> Result<T, E>,
    ) {
        self.cases += 1;
        let start = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| parse().map_err(|e| e.to_string())));
        let elapsed = start.elapsed();
        let case = format!("{} (seed {}): {label}", self.parser, self.seed);
        if elapsed > Duration::from_secs(1) {
            println!("  slow case ({elapsed:?}): {case}");
        }
        if elapsed > self.limit {
            self.failures
                .push(format!("{case}: took {elapsed:?} (hang guard)"));
        }
        match outcome {
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
                    .unwrap_or_else(|| "non-string panic".into());
                self.failures.push(format!("{case}: PANIC {message}"));
            }
            Ok(Ok(_)) => self.ok += 1,
            Ok(Err(message)) => {
                if message.trim().is_empty() {
                    self.failures.push(format!("{case}: empty error message"));
                }
                if let Some(name) = name.filter(|n| !message.contains(n)) {
                    self.failures
                        .push(format!("{case}: error does not name {name}: {message}"));
                }
                self.samples
                    .entry(kind.to_string())
                    .or_insert_with(|| format!("{label} -> {message}"));
            }
        }
    }

    /// Prints the summary (`cargo test -- --nocapture` shows it) and fails on any recorded
    /// failure.
    pub fn finish(self) {
        println!(
            "{}: {} cases, {} accepted, {} refused",
            self.parser,
            self.cases,
            self.ok,
            self.cases - self.ok
        );
        for (kind, sample) in &self.samples {
            println!("  [{kind}] {sample}");
        }
        assert!(
            self.failures.is_empty(),
            "{} of {} hostile inputs to {} failed:\n{}",
            self.failures.len(),
            self.cases,
            self.parser,
            self.failures.join("\n")
        );
    }
}
