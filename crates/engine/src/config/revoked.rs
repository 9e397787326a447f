//! The revocation file (`revocation.file`): `revoked: [ {entry}, ... ]`. Read at
//! every (re)load like a key file; a bad entry is an error at its position, so
//! the last good set keeps serving.

use std::path::Path;

use serde::Deserialize;

use super::{ConfigError, ConfigErrors, Sp, plain_message};
use crate::revocation::{Compiled, Entry, RevocationSet};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokedFile {
    #[serde(default)]
    revoked: Vec<Sp<Entry>>,
}

/// Parses revocation-file text; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Vec<Compiled>, ConfigErrors> {
    let err = |line: u64, col: u64, message: String| ConfigError {
        file: file.to_string(),
        line,
        col,
        message,
    };
    let parsed: RevokedFile = if text.trim().is_empty() {
        RevokedFile {
            revoked: Vec::new(),
        }
    } else {
        serde_saphyr::from_str(text).map_err(|e| {
            let (line, col) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((1, 1));
            ConfigErrors(vec![err(line.max(1), col.max(1), plain_message(&e))])
        })?
    };
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for e in parsed.revoked {
        let (line, col) = (e.line(), e.col());
        match e.0.value.compile() {
            Ok(c) => out.push(c),
            Err(why) => errors.push(err(line, col, why.to_string())),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Reads and indexes the revocation file at `path` as of `now`.
pub fn load(path: &Path, now: f64) -> Result<RevocationSet, ConfigErrors> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: file.clone(),
            line: 0,
            col: 0,
            message: format!("cannot read revocation file: {e}"),
        }])
    })?;
    Ok(RevocationSet::new(parse(&text, &file)?, now))
}
