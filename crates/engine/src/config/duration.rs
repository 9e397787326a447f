//! Durations as SPEC writes them: `250ms`, `30s`, `5m`, `2h` (one number, one unit).

use std::time::Duration;

/// Why a duration string was refused (the text is quoted in each message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// `30` with no unit.
    #[error("duration `{0}` has no unit (use ms, s, m, h or d)")]
    NoUnit(String),
    /// `s` or `m5`.
    #[error("duration `{0}` must start with a number")]
    NoNumber(String),
    /// More milliseconds than a `u64` holds.
    #[error("duration `{0}` is too large")]
    TooLarge(String),
    /// `5y`.
    #[error("duration `{text}` has an unknown unit `{unit}` (use ms, s, m, h or d)")]
    UnknownUnit {
        /// The whole duration as written.
        text: String,
        /// The unit that is not one of ms, s, m, h, d.
        unit: String,
    },
}

/// Parses `N(ms|s|m|h|d)`; a bare `0` is zero.
pub fn parse(s: &str) -> Result<Duration, DurationError> {
    let t = s.trim();
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    let split = t
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| DurationError::NoUnit(s.to_string()))?;
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(DurationError::NoNumber(s.to_string()));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| DurationError::TooLarge(s.to_string()))?;
    let ms = match unit {
        "ms" => Some(n),
        "s" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "d" => n.checked_mul(86_400_000),
        _ => {
            return Err(DurationError::UnknownUnit {
                text: s.to_string(),
                unit: unit.to_string(),
            });
        }
    };
    ms.map(Duration::from_millis)
        .ok_or_else(|| DurationError::TooLarge(s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_examples() {
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "5",
            "m",
            "5 m",
            "1.5s",
            "-1s",
            "5mins",
            "99999999999999999999s",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
