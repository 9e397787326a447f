//! The only place that reads the wall clock, so `--now` and tests can fix time.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, as a float (token dates may be fractional).
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    System,
    Fixed(f64),
}

impl Clock {
    pub fn now(&self) -> f64 {
        match self {
            Clock::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
            Clock::Fixed(t) => *t,
        }
    }

    /// Parses an RFC 3339 timestamp for `--now`.
    pub fn parse_rfc3339(s: &str) -> Result<Clock, String> {
        let t = humantime::parse_rfc3339_weak(s)
            .map_err(|e| format!("`{s}` is not an RFC 3339 time: {e}"))?;
        let d = t
            .duration_since(UNIX_EPOCH)
            .map_err(|_| format!("`{s}` is before 1970"))?;
        Ok(Clock::Fixed(d.as_secs_f64()))
    }
}
