//! The decision log: one JSON object per request, written by a dedicated thread
//! so a slow disk never slows requests. When the buffer is full the line is
//! dropped and counted (`writ_decision_log_dropped_total`), never waited for.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};

use prometheus::IntCounter;
use serde::Serialize;

use writ_engine::config::LogTarget;
use writ_engine::record::{Basis, Credential};

/// SPEC fields, and nothing a client could smuggle a secret through: no token,
/// no signature, no header value, no query. `credential` and the basis fields
/// are what `writ replay` reads back (`writ_engine::record::LoggedDecision`).
#[derive(Debug, Serialize)]
pub struct DecisionRecord {
    pub ts: String,
    pub request_id: String,
    pub method: String,
    pub path: Option<String>,
    pub host: Option<String>,
    pub action: Option<String>,
    pub execution: bool,
    pub decision: &'static str,
    pub enforced: bool,
    pub reason: &'static str,
    pub status: u16,
    pub subject: Option<String>,
    pub actor_chain: Vec<String>,
    pub client_id: Option<String>,
    pub issuer: Option<String>,
    pub duration_us: u64,
    /// The door the request came in through (`proxy`, `ext_authz_grpc`, `ext_authz_http`).
    pub frontend: &'static str,
    /// The upstream the request was (or, allowed, would have been) forwarded to:
    /// its name in `upstreams`, `default` for the single-backend form; null for
    /// a front door and for an unmatched request that was refused.
    pub upstream: Option<String>,
    /// The MCP tool of a `tools/call` (`null` otherwise); argument values are never logged.
    pub tool: Option<String>,
    /// Absent when the request was refused before it could be decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<Credential>,
    /// The kind of revocation entry that refused the token (`sub+issued_before`),
    /// never its values.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revocation: Option<String>,
    /// The introspection answer the decision used (`active`, `inactive`, `unavailable`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub introspection: Option<writ_engine::authorize::Introspected>,
    #[serde(flatten)]
    pub basis: Basis,
}

const BUFFER_LINES: usize = 16 * 1024;

#[derive(Clone)]
pub struct DecisionLog {
    tx: Option<SyncSender<DecisionRecord>>,
    dropped: IntCounter,
}

impl std::fmt::Debug for DecisionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DecisionLog")
    }
}

impl DecisionLog {
    /// Starts the writer thread for `target`.
    pub fn start(target: &LogTarget, dropped: IntCounter) -> std::io::Result<DecisionLog> {
        let sink: Box<dyn Write + Send> = match target {
            LogTarget::Off => return Ok(DecisionLog { tx: None, dropped }),
            LogTarget::Stdout => Box::new(std::io::stdout()),
            LogTarget::Stderr => Box::new(std::io::stderr()),
            LogTarget::File(p) => Box::new(OpenOptions::new().create(true).append(true).open(p)?),
        };
        Self::with_sink(sink, dropped)
    }

    /// Starts the writer thread on any sink.
    pub fn with_sink(
        sink: Box<dyn Write + Send>,
        dropped: IntCounter,
    ) -> std::io::Result<DecisionLog> {
        let (tx, rx) = sync_channel(BUFFER_LINES);
        std::thread::Builder::new()
            .name("writ-decision-log".into())
            .spawn(move || write_loop(rx, sink))?;
        Ok(DecisionLog {
            tx: Some(tx),
            dropped,
        })
    }

    pub fn record(&self, r: DecisionRecord) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(r) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => self.dropped.inc(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }
}

/// How long the writer waits for more lines after writing a batch before it
/// parks. While it waits (not parked), a request that queues a line does not
/// have to wake it: one wake-up (a futex call and a context switch) per request
/// was the decision log's main cost under load. Lines still reach the sink at
/// most this long after they were queued.
const BATCH_PAUSE: std::time::Duration = std::time::Duration::from_millis(2);

fn write_loop(rx: Receiver<DecisionRecord>, sink: Box<dyn Write + Send>) {
    let mut out = BufWriter::with_capacity(64 * 1024, sink);
    // Parked here only when a pause brought nothing: the next line wakes it.
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        loop {
            while let Some(r) = next {
                let _ = write_line(&mut out, &r);
                next = rx.try_recv().ok();
            }
            // Flush whenever the queue runs dry: lines appear promptly at low
            // rates, and are batched at high ones.
            let _ = out.flush();
            std::thread::sleep(BATCH_PAUSE);
            match rx.try_recv() {
                Ok(r) => next = Some(r),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
    }
    let _ = out.flush();
}

/// One record as one line of JSON.
fn write_line<W: Write>(out: &mut W, r: &DecisionRecord) -> std::io::Result<()> {
    let mut ser = serde_json::Serializer::with_formatter(&mut *out, LineSafe);
    serde::Serialize::serialize(r, &mut ser).map_err(std::io::Error::other)?;
    out.write_all(b"\n")
}

/// Compact JSON that also escapes what serde_json writes raw but line-based
/// readers split on or terminals act on: DEL, the C1 controls (U+0085 is NEL)
/// and U+2028/U+2029. One record is always exactly one line.
struct LineSafe;

impl serde_json::ser::Formatter for LineSafe {
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        // Every character escaped below starts with one of these bytes in UTF-8
        // (DEL, U+0080..U+009F, U+2028/U+2029); most fragments have none, and a
        // byte scan is several times cheaper than decoding each character.
        if !fragment.bytes().any(|b| matches!(b, 0x7f | 0xc2 | 0xe2)) {
            return writer.write_all(fragment.as_bytes());
        }
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if matches!(c, '\u{7f}'..='\u{9f}' | '\u{2028}' | '\u{2029}') {
                writer.write_all(&fragment.as_bytes()[start..i])?;
                write!(writer, "\\u{:04x}", c as u32)?;
                start = i + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

/// RFC 3339 UTC timestamp with microseconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string()
}

/// `t` (seconds since the Unix epoch) as an RFC 3339 UTC timestamp with microseconds.
pub fn rfc3339(t: f64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(t.max(0.0));
    humantime::format_rfc3339_micros(at).to_string()
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use super::*;

    /// A disk that never finishes a write.
    struct Stuck(mpsc::Receiver<()>);

    impl Write for Stuck {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.recv();
            Err(std::io::Error::other("stuck"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn record() -> DecisionRecord {
        DecisionRecord {
            ts: now_rfc3339(),
            request_id: "r".into(),
            method: "GET".into(),
            path: Some("/".into()),
            host: None,
            action: None,
            execution: false,
            decision: "deny",
            enforced: true,
            reason: "no_matching_action",
            status: 403,
            subject: None,
            actor_chain: Vec::new(),
            client_id: None,
            issuer: None,
            duration_us: 1,
            frontend: "proxy",
            upstream: Some("default".into()),
            tool: None,
            credential: Some(Credential::None),
            revocation: None,
            introspection: None,
            basis: Basis::default(),
        }
    }

    #[test]
    fn line_breaks_and_controls_in_claims_are_escaped() {
        let mut r = record();
        r.subject = Some("a\u{2028}b\u{2029}c\u{85}d\u{7f}e\u{9f}f\ng\u{1}h é".into());
        let mut out = Vec::new();
        write_line(&mut out, &r).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 1);
        assert!(text.ends_with('\n'));
        assert!(
            !text
                .trim_end_matches('\n')
                .chars()
                .any(|c| c.is_control() || c == '\u{2028}' || c == '\u{2029}'),
            "{text:?}"
        );
        assert!(
            text.contains(r#""a\u2028b\u2029c\u0085d\u007fe\u009ff\ng\u0001h é""#),
            "{text}"
        );
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["subject"].as_str(), r.subject.as_deref());
    }

    #[test]
    fn a_stuck_sink_drops_and_counts_instead_of_blocking() {
        let (_hold, rx) = mpsc::channel();
        let dropped = IntCounter::new("dropped", "test").unwrap();
        let log = DecisionLog::with_sink(Box::new(Stuck(rx)), dropped.clone()).unwrap();
        let n = BUFFER_LINES * 2;
        let start = Instant::now();
        for _ in 0..n {
            log.record(record());
        }
        assert!(start.elapsed() < Duration::from_secs(5), "record() blocked");
        // The queue holds BUFFER_LINES and the writer's 64 KiB buffer a few hundred
        // more (about 270 bytes a line); everything beyond is dropped and counted.
        let floor = n - BUFFER_LINES - 1024;
        assert!(dropped.get() as usize >= floor, "dropped {}", dropped.get());
    }
}
