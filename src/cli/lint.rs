//! `writ lint`: findings in a valid config (`writ_engine::config::lint`). Exit 0
//! with none, 1 with any, 2 when the config does not load.

use std::path::Path;

pub fn run(config: &Path) -> u8 {
    match writ_engine::config::load(config) {
        Ok(c) => {
            for f in &c.findings {
                out!("{f}");
            }
            let n = c.findings.len();
            out!(
                "{}: {n} finding{}",
                config.display(),
                if n == 1 { "" } else { "s" }
            );
            u8::from(n > 0)
        }
        Err(errs) => {
            eprintln!("{errs}");
            2
        }
    }
}
