//! Small helpers: temp dirs and files, unique ids, RFC 3339 timestamps, a file-wide test lock.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use tempfile::TempDir;

/// A fresh temp dir whose name starts with `prefix`.
pub fn temp_dir(prefix: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("tempdir")
}

/// Writes `text` to `dir/name` (creating parent dirs) and returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        fs::create_dir_all(parent).expect("create dir");
    }
    fs::write(&p, text).expect("write file");
    p
}

/// Replaces `path` atomically: writes a sibling temp file, then renames it over `path`.
pub fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_file_name(format!(
        ".{}.{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        unique("w")
    ));
    fs::write(&tmp, text).expect("write temp file");
    fs::rename(&tmp, path).expect("rename over file");
}

/// A URL-safe unique-ish string for request ids etc.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{t:x}-{n}", std::process::id())
}

/// A lock for suites whose tests must not run at the same time (they measure timings or
/// memory on a small machine): `let _serial = serial();` first thing in each test. Each test
/// binary compiles its own copy, so the lock is file-wide.
pub fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Is `s` an RFC 3339 timestamp (`YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`)?
pub fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 20 {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if !(digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && (b[10] == b'T' || b[10] == b't')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19))
    {
        return false;
    }
    let mut i = 19;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match &b[i..] {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit()),
        _ => false,
    }
}

/// Formats a Unix time as RFC 3339 UTC (`YYYY-MM-DDTHH:MM:SSZ`), without a date library.
pub fn rfc3339(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

/// Where a lenient backend would route `path` (query excluded): decoded once, `\`
/// read as `/`, `;params` dropped (Tomcat), dot segments resolved. The front-door
/// suites use it to prove no bypass target reached a protected resource.
pub fn lenient_route(path: &str) -> Vec<String> {
    let b = path.as_bytes();
    let mut decoded = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        if b[i] == b'%'
            && let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            decoded.push(v);
            i += 3;
            continue;
        }
        decoded.push(b[i]);
        i += 1;
    }
    let decoded = String::from_utf8_lossy(&decoded).to_lowercase();
    let mut resolved: Vec<String> = Vec::new();
    for seg in decoded.split(['/', '\\']) {
        match seg.split(';').next().unwrap_or_default() {
            "" | "." => {}
            ".." => {
                resolved.pop();
            }
            s => resolved.push(s.to_string()),
        }
    }
    resolved
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_checker() {
        assert!(is_rfc3339("2026-01-02T03:04:05Z"));
        assert!(is_rfc3339("2026-01-02T03:04:05.123456Z"));
        assert!(is_rfc3339("2026-01-02T03:04:05+01:00"));
        assert!(!is_rfc3339("2026-01-02 03:04:05"));
        assert!(!is_rfc3339("1700000000"));
    }
}
