//! Retry helpers for asynchronous effects (log lines, counters, reloads).

use std::thread;
use std::time::{Duration, Instant};

/// Patience for asynchronous effects, `WRIT_TEST_PATIENCE_MS` overrides (default 2 s).
pub fn patience() -> Duration {
    std::env::var("WRIT_TEST_PATIENCE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_millis(2000), Duration::from_millis)
}

/// Calls `f` until it returns `Some`, for up to `timeout`; returns the last result.
pub fn eventually_within<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Calls `f` until it returns `Some`, for up to [`patience`].
pub fn eventually<T>(f: impl FnMut() -> Option<T>) -> Option<T> {
    eventually_within(patience(), f)
}

/// Retries a boolean condition for up to [`patience`], then panics with the message.
#[macro_export]
macro_rules! assert_eventually {
    ($cond:expr $(,)?) => {
        $crate::assert_eventually!($cond, "condition never became true: {}", stringify!($cond))
    };
    ($cond:expr, $($arg:tt)+) => {{
        let ok = $crate::support::eventually(|| if $cond { Some(()) } else { None }).is_some();
        assert!(ok, $($arg)+);
    }};
}
