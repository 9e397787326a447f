//! `writ check`: validate the config; exit 0 valid, 1 invalid. Lint findings
//! print as warnings on stderr.

use std::path::Path;

pub fn run(config: &Path) -> u8 {
    match writ_engine::config::load(config) {
        Ok(c) => {
            // Lint findings are warnings here: they never change the exit status.
            for f in &c.findings {
                eprintln!("{f}");
            }
            let p = &c.policy;
            out!(
                "{}: ok ({} action{}, {} issuer{})",
                config.display(),
                p.actions.len(),
                if p.actions.len() == 1 { "" } else { "s" },
                p.issuers.len(),
                if p.issuers.len() == 1 { "" } else { "s" },
            );
            0
        }
        Err(errs) => {
            eprintln!("{errs}");
            1
        }
    }
}
