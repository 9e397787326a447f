//! Metrics, the decision log and process logging.

pub mod decision_log;
pub mod metrics;

/// Installs the tracing subscriber (filter from `WRIT_LOG`, default `info`), on stderr.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WRIT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// The error and its causes, for the log line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

/// Logs a loaded config's lint findings, one warning each (the same text as
/// `writ lint`), so the findings of a live reload reach the operator too.
pub fn log_findings(findings: &[writ_engine::config::lint::Finding]) {
    for f in findings {
        tracing::warn!(
            code = f.code.as_str(),
            at = %format_args!("{}:{}:{}", f.file, f.line, f.col),
            "Lint: {}",
            f.message
        );
    }
}
