//! Every command in the docs runs (issue: the rule owner's guides): for each Markdown file in
//! `docs/` and the README, blocks opened with ```` ```LANG file=NAME ```` are written to a
//! fresh directory, in order, and every `$ writ ...` line of a ```` ```console ```` block is run
//! there with the real binary. Its exit status must be 0 (or the `# exit N` written after the
//! command), and its output (stdout, then stderr) must be the lines shown, where `...` stands
//! for any number of lines.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use support::{repo_path, run, tempdir, writ};

#[derive(Debug)]
enum Block {
    File { name: String, text: String },
    Console { line: usize, text: String },
}

/// The fenced blocks of a Markdown file that this suite acts on.
fn blocks(md: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut lines = md.lines().enumerate();
    while let Some((i, l)) = lines.next() {
        let Some(info) = l.trim_start().strip_prefix("```") else {
            continue;
        };
        let info = info.trim().to_string();
        let mut body = String::new();
        for (_, l) in lines.by_ref() {
            if l.trim_start().starts_with("```") {
                break;
            }
            body.push_str(l);
            body.push('\n');
        }
        if info == "console" {
            out.push(Block::Console {
                line: i + 1,
                text: body,
            });
        } else if let Some(name) = info
            .split_whitespace()
            .find_map(|w| w.strip_prefix("file="))
        {
            out.push(Block::File {
                name: name.to_string(),
                text: body,
            });
        }
    }
    out
}

/// Splits a command line like a shell would for the cases the docs use: whitespace,
/// '...' and "..." quoting, and a trailing `# comment`.
fn split(cmd: &str) -> (Vec<String>, Option<String>) {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut have = false;
    let mut chars = cmd.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                have = true;
                for q in chars.by_ref() {
                    if q == c {
                        break;
                    }
                    cur.push(q);
                }
            }
            '#' if !have => {
                let comment: String = chars.collect();
                return (words, Some(comment.trim().to_string()));
            }
            c if c.is_whitespace() => {
                if have {
                    words.push(std::mem::take(&mut cur));
                    have = false;
                }
            }
            c => {
                cur.push(c);
                have = true;
            }
        }
    }
    if have {
        words.push(cur);
    }
    (words, None)
}

/// Whether `actual` is `expected`, where an expected `...` line stands for any lines.
fn matches(expected: &[&str], actual: &[&str]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((&"...", rest)) => (0..=actual.len()).any(|skip| matches(rest, &actual[skip..])),
        Some((e, rest)) => actual
            .split_first()
            .is_some_and(|(a, more)| a.trim_end() == e.trim_end() && matches(rest, more)),
    }
}

fn run_console(doc: &Path, dir: &Path, line: usize, text: &str) -> usize {
    let mut ran = 0;
    let mut cmds: Vec<(String, Vec<&str>)> = Vec::new();
    for l in text.lines() {
        if let Some(c) = l.strip_prefix("$ ") {
            cmds.push((c.to_string(), Vec::new()));
        } else if let Some((_, out)) = cmds.last_mut() {
            out.push(l);
        }
    }
    for (cmd, expected) in cmds {
        let (words, comment) = split(&cmd);
        assert_eq!(
            words.first().map(String::as_str),
            Some("writ"),
            "{}:{line}: only writ commands run here: {cmd}",
            doc.display()
        );
        let code = comment
            .as_deref()
            .and_then(|c| c.strip_prefix("exit "))
            .map_or(0, |n| n.trim().parse().unwrap());
        let out = run(writ().current_dir(dir).args(&words[1..]));
        let all = format!("{}{}", out.stdout, out.stderr);
        let actual: Vec<&str> = all.lines().collect();
        let expected: Vec<&str> = expected
            .into_iter()
            .rev()
            .skip_while(|l| l.trim().is_empty())
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        assert!(
            out.code == Some(code) && matches(&expected, &actual),
            "{}:{line}: `{cmd}` (expected exit {code})\n--- expected ---\n{}\n--- got ---\n{}",
            doc.display(),
            expected.join("\n"),
            out.dump()
        );
        ran += 1;
    }
    ran
}

/// Runs one document's blocks in a fresh directory; returns how many commands ran.
fn run_doc(doc: &Path) -> usize {
    let md = fs::read_to_string(doc).unwrap();
    let dir = tempdir();
    // The demo signing key, for `writ token` examples (the docs say where it comes from).
    fs::copy(
        repo_path("config/demo/demo-key.pem"),
        dir.path().join("demo-key.pem"),
    )
    .unwrap();
    let mut ran = 0;
    for b in blocks(&md) {
        match b {
            Block::File { name, text } => {
                let p = dir.path().join(&name);
                if let Some(parent) = p.parent() {
                    fs::create_dir_all(parent).unwrap();
                }
                fs::write(p, text).unwrap();
            }
            Block::Console { line, text } => ran += run_console(doc, dir.path(), line, &text),
        }
    }
    ran
}

fn docs() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(repo_path("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    v.push(repo_path("README.md"));
    v.sort();
    v
}

#[test]
fn every_command_in_the_docs_runs_as_shown() {
    let mut total = 0;
    for doc in docs() {
        total += run_doc(&doc);
    }
    // The guides are built on commands; a parser that found none would pass vacuously.
    assert!(total >= 12, "only {total} commands found in the docs");
}

#[test]
fn the_guides_exist_and_carry_commands() {
    for guide in ["docs/rules.md", "docs/operations.md", "docs/agents.md"] {
        let n = run_doc(&repo_path(guide));
        assert!(n >= 3, "{guide}: {n} commands");
    }
}

#[test]
fn the_expected_output_matcher_is_strict_where_it_should_be() {
    assert!(matches(&["a", "...", "c"], &["a", "b", "b", "c"]));
    assert!(matches(&["...", "c"], &["c"]));
    assert!(!matches(&["a", "c"], &["a", "b", "c"]));
    assert!(!matches(&["a"], &["a", "extra"]));
    assert!(!matches(&["a", "..."], &["b"]));
    let (w, c) = split("writ explain --log-line '{\"a\": 1}'  # exit 1");
    assert_eq!(w, ["writ", "explain", "--log-line", "{\"a\": 1}"]);
    assert_eq!(c.as_deref(), Some("exit 1"));
}
