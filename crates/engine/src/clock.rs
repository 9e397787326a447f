//! The only place that reads the wall clock, so `--now` and tests can fix time.

use std::time::{SystemTime, UNIX_EPOCH};

/// A `--now` value that is not a usable time.
#[derive(Debug, thiserror::Error)]
pub enum ClockError {
    /// Not RFC 3339.
    #[error("`{0}` is not an RFC 3339 time: {1}")]
    NotRfc3339(String, humantime::TimestampError),
    /// Before the Unix epoch.
    #[error("`{0}` is before 1970")]
    Before1970(String),
}

/// Seconds since the Unix epoch, as a float (token dates may be fractional).
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    /// The system clock.
    System,
    /// A fixed time (`--now`, test cases, fuzzing).
    Fixed(f64),
}

impl Clock {
    /// Seconds since the Unix epoch.
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
    pub fn parse_rfc3339(s: &str) -> Result<Clock, ClockError> {
        let t = humantime::parse_rfc3339_weak(s)
            .map_err(|e| ClockError::NotRfc3339(s.to_string(), e))?;
        let d = t
            .duration_since(UNIX_EPOCH)
            .map_err(|_| ClockError::Before1970(s.to_string()))?;
        Ok(Clock::Fixed(d.as_secs_f64()))
    }
}
