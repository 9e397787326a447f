//! `writ replay`: decide recorded decision-log lines again under a new config
//! and report what would change. Exit 0 nothing changes, 1 something does,
//! 2 on error. Lines are decided in parallel, in chunks, and the chunk reports
//! are merged in log order so examples are the first ones logged.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;

use writ_engine::Policy;
use writ_engine::replay::{Report, parse_line, replay};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The config to decide under (the new one).
    #[arg(long, env = "WRIT_CONFIG")]
    config: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// Decision-log files (JSON lines), in order.
    #[arg(required = true)]
    logs: Vec<PathBuf>,
}

/// Lines handed to a worker at once: big enough to amortize the channel, small
/// enough to keep both cores busy on a short log.
const CHUNK: usize = 4096;

struct Chunk {
    seq: usize,
    file: usize,
    first_line: u64,
    lines: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
enum ReplayError {
    #[error("a replay worker failed; the report would be incomplete")]
    Worker,
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub fn run(args: Args) -> u8 {
    let policy = match writ_engine::config::load(&args.config) {
        Ok(c) => c.policy,
        Err(e) => {
            eprintln!("writ replay: invalid config:\n{e}");
            return 2;
        }
    };
    let report = match replay_files(&policy, &args.logs) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("writ replay: {e}");
            return 2;
        }
    };
    if args.json {
        out!("{}", serde_json::to_string(&report).unwrap_or_default());
    } else {
        print_text(&args.config, &report);
    }
    u8::from(report.changed())
}

fn replay_files(policy: &Policy, logs: &[PathBuf]) -> Result<Report, ReplayError> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (tx, rx) = sync_channel::<Chunk>(workers * 2);
    let rx = std::sync::Mutex::new(rx);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| s.spawn(|| work(policy, logs, &rx)))
            .collect();
        let read = read_chunks(logs, |c| tx.send(c).is_ok());
        drop(tx);
        let mut parts: Vec<(usize, Report)> = Vec::new();
        let mut crashed = false;
        for h in handles {
            match h.join() {
                Ok(p) => parts.extend(p),
                // A worker that died lost its lines: an error, never a short report.
                Err(_) => crashed = true,
            }
        }
        read?;
        if crashed {
            return Err(ReplayError::Worker);
        }
        parts.sort_by_key(|(seq, _)| *seq);
        let mut report = Report::default();
        for (_, r) in parts {
            report.merge(r);
        }
        report.finish();
        Ok(report)
    })
}

/// One worker: replays whole chunks, one report per chunk (merged in order later).
fn work(
    policy: &Policy,
    logs: &[PathBuf],
    rx: &std::sync::Mutex<std::sync::mpsc::Receiver<Chunk>>,
) -> Vec<(usize, Report)> {
    let mut done = Vec::new();
    loop {
        let next = match rx.lock() {
            Ok(r) => r.recv(),
            Err(_) => break,
        };
        let Ok(chunk) = next else { break };
        let mut report = Report::default();
        let name = logs[chunk.file].display();
        for (i, text) in chunk.lines.iter().enumerate() {
            let at = || format!("{name}:{}", chunk.first_line + i as u64);
            match parse_line(text) {
                Ok(line) => match replay(policy, &line, false) {
                    Ok(d) => report.add(policy, Ok(&line), Some(&d), at),
                    Err(why) => report.add(policy, Err(why), None, at),
                },
                Err(why) => report.add(policy, Err(why), None, at),
            }
        }
        done.push((chunk.seq, report));
    }
    done
}

/// Reads every file in order, in chunks of non-empty lines; `send` returns
/// false when the workers are gone.
fn read_chunks(logs: &[PathBuf], mut send: impl FnMut(Chunk) -> bool) -> Result<(), ReplayError> {
    let mut seq = 0;
    for (file, path) in logs.iter().enumerate() {
        let err = |source| ReplayError::Read {
            path: path.clone(),
            source,
        };
        let mut reader = BufReader::with_capacity(1 << 20, File::open(path).map_err(err)?);
        let mut lines = Vec::with_capacity(CHUNK);
        let mut first_line = 1;
        let mut number = 0u64;
        loop {
            let mut text = String::new();
            let n = reader.read_line(&mut text).map_err(err)?;
            if n == 0 {
                break;
            }
            number += 1;
            if text.trim().is_empty() {
                continue;
            }
            if lines.is_empty() {
                first_line = number;
            }
            lines.push(text);
            if lines.len() == CHUNK {
                let chunk = Chunk {
                    seq,
                    file,
                    first_line,
                    lines: std::mem::replace(&mut lines, Vec::with_capacity(CHUNK)),
                };
                seq += 1;
                if !send(chunk) {
                    return Ok(());
                }
            }
        }
        if !lines.is_empty() {
            let chunk = Chunk {
                seq,
                file,
                first_line,
                lines,
            };
            seq += 1;
            if !send(chunk) {
                return Ok(());
            }
        }
    }
    Ok(())
}

fn print_text(config: &Path, r: &Report) {
    out!(
        "replayed {} line{} under {}: {} unchanged, {} allow -> deny, {} deny -> allow, {} reason changed, {} not replayable",
        r.total,
        if r.total == 1 { "" } else { "s" },
        config.display(),
        r.unchanged,
        r.allow_to_deny,
        r.deny_to_allow,
        r.reason_changed,
        r.not_replayable
    );
    if !r.changes.is_empty() {
        out!("");
        out!("changes (action: then -> now, count, example request ids)");
    }
    for c in &r.changes {
        out!(
            "  {}: {} ({}) -> {} ({})  x{}  e.g. {}",
            c.action.as_deref().unwrap_or("(no action)"),
            c.from.decision,
            c.from.reason,
            c.to.decision,
            c.to.reason,
            c.count,
            c.examples.join(", ")
        );
    }
    if !r.not_replayable_causes.is_empty() {
        out!("");
        out!("not replayable (count, cause, first line)");
    }
    for (cause, (n, first)) in &r.not_replayable_causes {
        out!("  {n}  {cause}  (first: {first})");
    }
}
