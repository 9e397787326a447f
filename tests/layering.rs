//! The architecture, checked (docs/architecture.md): the engine crate has no async runtime,
//! HTTP stack or TLS in its dependency tree, and inside each crate no module imports one
//! above it. A change that breaks either fails here, with the offending file and import.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Crates the engine must never depend on, directly or not.
const FORBIDDEN_IN_ENGINE: [&str; 7] = [
    "tokio",
    "hyper",
    "hyper-util",
    "hyper-rustls",
    "rustls",
    "tokio-rustls",
    "mio",
];

/// The engine's modules, lowest first; one rank may hold several modules, which then may
/// not import each other.
const ENGINE_RANKS: &[&[&str]] = &[
    &["vocab", "json"],
    &["decision", "keys", "claims", "clock", "request"],
    &["escape", "record", "revocation"],
    &["policy"],
    &["normalize"],
    &["classify"],
    &["authenticate"],
    &["authorize", "signals"],
    &["decide"],
    &["config"],
    &["cases", "replay"],
];

/// The `writ` package's modules, lowest first.
const WRIT_RANKS: &[&[&str]] = &[
    &["tls", "mint", "telemetry", "overrides"],
    &["jwks", "revocation_store", "inject", "introspect"],
    &["ssf"],
    &["proxy", "webhook"],
    &["admin", "reload", "frontdoor"],
    &["serve"],
    &["demo"],
    &["cli"],
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn engine_has_no_runtime_http_or_tls_in_its_dependency_tree() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(root())
        .args([
            "tree",
            "-p",
            "writ-engine",
            "-e",
            "normal,build",
            "--prefix",
            "none",
            "--locked",
            "--offline",
        ])
        .output()
        .expect("run cargo tree");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let crates: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        crates.contains("writ-engine") && crates.contains("jsonwebtoken"),
        "unexpected cargo tree output:\n{text}"
    );
    let found: Vec<&&str> = FORBIDDEN_IN_ENGINE
        .iter()
        .filter(|c| crates.contains(**c))
        .collect();
    assert!(
        found.is_empty(),
        "writ-engine depends on {found:?}:\n{text}"
    );
}

/// Every `.rs` file under `dir`, except test modules (`tests.rs`, files under a `tests/`
/// directory): tests may load a config to exercise a lower module.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "tests") {
                    stack.push(p);
                }
            } else if p.extension().is_some_and(|x| x == "rs")
                && p.file_name().is_some_and(|n| n != "tests.rs")
            {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The top-level module a file belongs to (`src/proxy/forward.rs` -> `proxy`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// Top-level modules named by `crate::NAME` in code (comments skipped).
fn imports(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
            rest = after;
        }
    }
    out
}

fn rank(ranks: &[&[&str]], module: &str) -> Option<usize> {
    ranks.iter().position(|r| r.contains(&module))
}

fn check_layers(src: &Path, ranks: &[&[&str]], roots: &[&str]) -> Vec<String> {
    let mut problems = Vec::new();
    for file in sources(src) {
        let module = module_of(src, &file);
        if roots.contains(&module.as_str()) {
            continue;
        }
        let Some(own) = rank(ranks, &module) else {
            problems.push(format!("{}: module `{module}` has no rank", file.display()));
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        for name in imports(&text) {
            if name == module {
                continue;
            }
            match rank(ranks, &name) {
                None => problems.push(format!(
                    "{}: imports `crate::{name}`, which has no rank",
                    file.display()
                )),
                Some(r) if r >= own => problems.push(format!(
                    "{}: `{module}` imports `crate::{name}`, which is not below it",
                    file.display()
                )),
                Some(_) => {}
            }
        }
    }
    problems
}

#[test]
fn engine_modules_import_only_modules_below_them() {
    let problems = check_layers(&root().join("crates/engine/src"), ENGINE_RANKS, &["lib"]);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn writ_modules_import_only_modules_below_them() {
    let problems = check_layers(&root().join("src"), WRIT_RANKS, &["lib", "main"]);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_checker_sees_an_upward_import() {
    // The check must be able to fail: an upward import in a scratch tree is reported.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("vocab.rs"), "use crate::decide::x;\n").unwrap();
    std::fs::write(
        dir.path().join("decide.rs"),
        "// crate::cases in a comment\n",
    )
    .unwrap();
    let problems = check_layers(dir.path(), ENGINE_RANKS, &["lib"]);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("`vocab` imports `crate::decide`"));
}
