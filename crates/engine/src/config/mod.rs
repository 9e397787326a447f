//! Loading the YAML config: parse (`raw`, serde types that stay here), then
//! validate and compile (`validate`) into the decision [`Policy`] and the
//! server [`Settings`]. Every problem is reported as `FILE:LINE:COL: message`.
//! Reading the config and the key files it names is the engine's only I/O.

pub mod duration;
pub mod lint;
mod raw;
pub use raw::Sp;
pub mod revoked;
pub mod settings;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::policy::Policy;
pub use settings::{ExtAuthz, HealthCheck, Limits, LogTarget, Settings, TlsFiles, Upstream};

/// A loaded config file.
#[derive(Debug)]
pub struct Config {
    /// What requests are decided under.
    pub policy: Policy,
    /// How the server runs.
    pub settings: Settings,
    /// Files whose change triggers a reload (the config and the files it names).
    pub watched_files: Vec<PathBuf>,
    /// `writ lint` findings: valid, but probably not what was meant.
    pub findings: Vec<lint::Finding>,
    /// Shared Signals transmitters (`signals:`).
    pub signals: Vec<crate::signals::Transmitter>,
    /// SHA-256 of the config text (16 hex digits): equal on every replica that
    /// runs the same file, whatever its reload history (`writ_config_info`).
    pub digest: String,
}

impl Config {
    /// Index into `settings.upstreams` of where a request decided as `action`
    /// goes (the action's upstream; `defaults.upstream` when unmatched).
    pub fn upstream_index(&self, action: Option<usize>) -> usize {
        action.map_or(self.policy.defaults.upstream, |i| {
            self.policy.action(i).upstream
        })
    }

    /// The upstream a request decided as `action` goes to.
    pub fn upstream_for(&self, action: Option<usize>) -> &Upstream {
        &self.settings.upstreams[self.upstream_index(action)]
    }
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The config file as named on the command line.
    pub file: String,
    /// 1-based line (0 when the file could not be read).
    pub line: u64,
    /// 1-based column.
    pub col: u64,
    /// What is wrong, and how to write it instead where that helps.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.col, self.message
        )
    }
}

/// All problems found in one file, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The JSON Schema of the config file (`writ schema`, for yaml-language-server).
pub fn json_schema() -> schemars::Schema {
    schemars::schema_for!(raw::RawConfig)
}

/// Reads and compiles the config at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let file = path.display().to_string();
    let text = std::fs::read(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: file.clone(),
            line: 0,
            col: 0,
            message: format!("cannot read config file: {e}"),
        }])
    })?;
    let text = String::from_utf8(text).map_err(|_| {
        ConfigErrors(vec![ConfigError {
            file: file.clone(),
            line: 1,
            col: 1,
            message: "config file is not UTF-8".into(),
        }])
    })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    load_str(&text, &file, &base, path.to_path_buf())
}

/// Compiles config text; `file` names it in errors, relative paths resolve
/// against `base`.
pub fn load_str(
    text: &str,
    file: &str,
    base: &Path,
    source: PathBuf,
) -> Result<Config, ConfigErrors> {
    let raw: raw::RawConfig = serde_saphyr::from_str(text).map_err(|e| {
        let (line, col) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((1, 1));
        ConfigErrors(vec![ConfigError {
            file: file.to_string(),
            line: line.max(1),
            col: col.max(1),
            message: plain_message(&e),
        }])
    })?;
    let mut config = validate::compile(raw, file, base, source)?;
    config.digest = digest(text);
    Ok(config)
}

/// The first 16 hex digits of the SHA-256 of `text`.
fn digest(text: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// serde-saphyr's message without its own " at line L, column C" suffix.
fn plain_message(e: &serde_saphyr::Error) -> String {
    let s = e.without_snippet().to_string();
    let s = match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    };
    s.replace(", set DuplicateKeyPolicy in Options if acceptable", "")
}

#[cfg(test)]
mod tests;
