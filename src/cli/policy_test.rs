//! `writ test`: run policy cases (SPEC: Policy test cases). Prints each failure
//! with expected vs actual, ends with `N passed, N failed`; exit 0 iff all pass.
//! The cases themselves are the engine's ([`writ_engine::cases`]).

use std::path::{Path, PathBuf};

use writ_engine::cases::{CaseFile, CaseFileError, evaluate, mismatch, parse_cases};
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

pub fn run(config: &Path, cases: &[PathBuf]) -> u8 {
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
            match evaluate(&policy, case, now) {
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
    out!("{passed} passed, {failed} failed");
    if failed == 0 { 0 } else { 1 }
}
