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
    /// A numeric offset that is not `±HH:MM`.
    #[error("`{0}` has an offset that is not ±HH:MM")]
    BadOffset(String),
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
        rfc3339_seconds(s).map(Clock::Fixed)
    }
}

/// Seconds since the Unix epoch of an RFC 3339 time: `Z` or a numeric offset
/// (`+01:00`), fractional seconds allowed.
pub fn rfc3339_seconds(s: &str) -> Result<f64, ClockError> {
    // humantime reads UTC only: take a numeric offset off and apply it here.
    let split = s
        .len()
        .checked_sub(6)
        .filter(|&i| s.is_char_boundary(i))
        .map(|i| s.split_at(i));
    let (utc, offset) = match split {
        Some((head, tail))
            if tail.len() == 6
                && matches!(tail.as_bytes()[0], b'+' | b'-')
                && tail.as_bytes()[3] == b':'
                && head.contains('T') =>
        {
            let sign = if tail.starts_with('-') { -1.0 } else { 1.0 };
            let h: f64 = tail[1..3].parse().unwrap_or(f64::NAN);
            let m: f64 = tail[4..6].parse().unwrap_or(f64::NAN);
            (format!("{head}Z"), sign * (h * 3600.0 + m * 60.0))
        }
        _ => (s.to_string(), 0.0),
    };
    let t = humantime::parse_rfc3339_weak(&utc)
        .map_err(|e| ClockError::NotRfc3339(s.to_string(), e))?;
    if offset.is_nan() {
        return Err(ClockError::BadOffset(s.to_string()));
    }
    let d = t
        .duration_since(UNIX_EPOCH)
        .map_err(|_| ClockError::Before1970(s.to_string()))?;
    Ok(d.as_secs_f64() - offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_applied() {
        let z = rfc3339_seconds("2027-01-15T08:00:00Z").unwrap();
        assert_eq!(z, 1_800_000_000.0);
        assert_eq!(rfc3339_seconds("2027-01-15T09:00:00+01:00").unwrap(), z);
        assert_eq!(rfc3339_seconds("2027-01-15T03:30:00-04:30").unwrap(), z);
        assert_eq!(rfc3339_seconds("2027-01-15T08:00:00.5Z").unwrap(), z + 0.5);
        assert!(rfc3339_seconds("2027-01-15T08:00:00+1x:00").is_err());
        assert!(rfc3339_seconds("tomorrow").is_err());
        // Multi-byte characters where the offset would be: an error, never a panic.
        assert!(rfc3339_seconds("2027-01-15T08:00:00ééé€").is_err());
    }
}
