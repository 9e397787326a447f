//! `writ test`: run policy cases (SPEC: Policy test cases). Prints each failure
//! with expected vs actual, ends with `N passed, N failed`; exit 0 iff all pass.
//! The cases themselves are the engine's ([`writ_engine::cases`]).

use std::path::{Path, PathBuf};

use writ_engine::cases::{
    CaseFile, CaseFileError, Coverage, CoverageReport, evaluate, mismatch, parse_cases,
};
use writ_engine::clock::Clock;

/// Reads and parses one case file.
pub fn load_cases(path: &Path) -> Result<CaseFile, CaseFileError> {
    let text = std::fs::read_to_string(path).map_err(|e| CaseFileError {
        file: path.display().to_string(),
        line: 0,
        col: 0,
        message: format!("cannot read: {e}"),
    })?;
    parse_cases(&text, &path.display().to_string())
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, env = "WRIT_CONFIG")]
    config: PathBuf,
    /// After the cases, list actions no case exercises, execution actions no case
    /// sees denied, and reasons no case produces.
    #[arg(long)]
    coverage: bool,
    /// Fail unless at least PCT percent of the actions are exercised (implies --coverage).
    #[arg(long, value_name = "PCT", value_parser = parse_percent)]
    min_coverage: Option<f64>,
    /// Case files (YAML).
    #[arg(required = true)]
    cases: Vec<PathBuf>,
}

/// `80`, `80%` or `62.5`: a share between 0 and 100.
fn parse_percent(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("`{s}` is not a percentage"))?;
    if (0.0..=100.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("`{s}` is not between 0 and 100"))
    }
}

pub fn run(args: &Args) -> u8 {
    let (config, cases) = (&args.config, &args.cases);
    let policy = match writ_engine::config::load(config) {
        Ok(c) => c.policy,
        Err(e) => {
            eprintln!("{e}");
            out!("0 passed, 1 failed");
            return 1;
        }
    };
    let now = Clock::System.now();
    let (mut passed, mut failed) = (0usize, 0usize);
    let mut coverage = Coverage::default();
    for file in cases {
        let cf = match load_cases(file) {
            Ok(c) => c,
            Err(e) => {
                out!("FAIL {e}");
                failed += 1;
                continue;
            }
        };
        for case in &cf.cases {
            let at = format!("{}:{}", file.display(), case.name.line());
            let result = evaluate(&policy, case, now);
            if let Ok(got) = &result {
                coverage.record(got);
            }
            match result {
                Ok(got) => match mismatch(&case.expect, &got) {
                    None => {
                        passed += 1;
                        out!("ok   {}", case.name.get());
                    }
                    Some(why) => {
                        failed += 1;
                        // What actually happened, even for fields the case did
                        // not assert: "expected allow, got deny" alone hides why.
                        out!(
                            "FAIL {} ({at})\n     {why}\n     got: decision {}, status {}, reason {}, action {}",
                            case.name.get(),
                            got.decision,
                            got.status,
                            got.reason,
                            got.action.as_deref().unwrap_or("(none)")
                        );
                    }
                },
                Err(e) => {
                    failed += 1;
                    out!("FAIL {} ({at})\n     invalid case: {e}", case.name.get());
                }
            }
        }
    }
    let mut below = false;
    if args.coverage || args.min_coverage.is_some() {
        let report = coverage.report(&policy);
        print_coverage(&report);
        if let Some(min) = args.min_coverage
            && report.percent() < min
        {
            below = true;
            out!(
                "FAIL coverage {:.1}% is below --min-coverage {min}%",
                report.percent()
            );
        }
    }
    // The summary stays the last line (SPEC), after any coverage report.
    out!("{passed} passed, {failed} failed");
    if failed == 0 && !below { 0 } else { 1 }
}

fn print_coverage(r: &CoverageReport) {
    out!("");
    out!(
        "coverage: {} of {} action{} exercised ({:.1}%)",
        r.exercised,
        r.total,
        if r.total == 1 { "" } else { "s" },
        r.percent()
    );
    let list = |title: &str, items: &[String]| {
        if items.is_empty() {
            out!("  {title}: none");
        } else {
            out!("  {title}: {}", items.join(", "));
        }
    };
    list("actions no case exercises", &r.unexercised);
    list(
        "execution actions without a denying case",
        &r.execution_never_denied,
    );
    let reasons: Vec<String> = r
        .reasons_never_produced
        .iter()
        .map(|s| s.to_string())
        .collect();
    list("reasons no case produces", &reasons);
}
