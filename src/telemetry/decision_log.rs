//! The decision log: one JSON object per request, written by a dedicated thread
//! so a slow disk never slows requests. When the buffer is full the line is
//! dropped and counted (`writ_decision_log_dropped_total`), never waited for.

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::time::SystemTime;

use prometheus::IntCounter;
use serde_json::{Number, Value};

use writ_engine::authenticate::token::Verified;
use writ_engine::authorize::Introspected;
use writ_engine::config::LogTarget;
use writ_engine::record::{BasisRef, Credential};

/// SPEC fields, and nothing a client could smuggle a secret through: no token,
/// no signature, no header value, no query. `credential` and the basis fields
/// are what `writ replay` reads back (`writ_engine::record::LoggedDecision`).
/// What the line derives from shared data (the timestamp, the claims) is
/// derived on the writer thread: the request thread only moves handles.
#[derive(Debug)]
pub struct DecisionRecord {
    /// When it was decided; the line's `ts` (RFC 3339, microseconds).
    pub at: SystemTime,
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
    /// The verified token, when there was one: the line's `subject`,
    /// `actor_chain`, `client_id`, `issuer` and basis are read from its claims
    /// (nothing else of it is logged).
    pub token: Option<Arc<Verified>>,
    /// The claims the policy binds (`Policy::bound_claims`): the basis records them.
    pub bound_claims: Arc<[String]>,
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
    pub credential: Option<Credential>,
    /// The kind of revocation entry that refused the token (`sub+issued_before`),
    /// never its values.
    pub revocation: Option<String>,
    /// The introspection answer the decision used (`active`, `inactive`, `unavailable`).
    pub introspection: Option<Introspected>,
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

/// Lines are handed to the sink in writes of about this many bytes (or fewer
/// when the queue runs dry).
const BATCH_BYTES: usize = 64 * 1024;

fn write_loop(rx: Receiver<DecisionRecord>, mut sink: Box<dyn Write + Send>) {
    let mut out = Vec::with_capacity(BATCH_BYTES + 4096);
    // Parked here only when a pause brought nothing: the next line wakes it.
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        loop {
            while let Some(r) = next {
                write_line(&mut out, &r);
                if out.len() >= BATCH_BYTES {
                    let _ = sink.write_all(&out);
                    out.clear();
                }
                next = rx.try_recv().ok();
            }
            // Flush whenever the queue runs dry: lines appear promptly at low
            // rates, and are batched at high ones.
            let _ = sink.write_all(&out);
            out.clear();
            let _ = sink.flush();
            std::thread::sleep(BATCH_PAUSE);
            match rx.try_recv() {
                Ok(r) => next = Some(r),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
    }
}

/// One record as one line of JSON, appended to `out`: the fields in a fixed
/// order, written by hand rather than through `serde_json` (whose map path for
/// the flattened basis and per-fragment formatter calls cost about 14,000
/// instructions a line: docs/decisions/0016-hand-written-decision-log-line.md).
/// The bytes equal what `serde_json` with [`LineSafe`]'s escapes wrote before;
/// the property test below pins that.
fn write_line(out: &mut Vec<u8>, r: &DecisionRecord) {
    let claims = r.token.as_ref().map(|t| &t.claims);
    let mut f = Fields(out, b'{');
    f.key("ts");
    // RFC 3339 needs no escaping.
    f.0.push(b'"');
    let _ = write!(f.0, "{}", humantime::format_rfc3339_micros(r.at));
    f.0.push(b'"');
    f.str("request_id", &r.request_id);
    f.str("method", &r.method);
    f.opt("path", r.path.as_deref());
    f.opt("host", r.host.as_deref());
    f.opt("action", r.action.as_deref());
    f.bool("execution", r.execution);
    f.str("decision", r.decision);
    f.bool("enforced", r.enforced);
    f.str("reason", r.reason);
    f.u64("status", u64::from(r.status));
    f.opt("subject", claims.and_then(|c| c.sub.as_deref()));
    f.key("actor_chain");
    let chain = claims.and_then(|c| c.act.as_ref().ok());
    push_strs(f.0, chain.into_iter().flatten().map(|a| a.sub.as_str()));
    f.opt("client_id", claims.and_then(|c| c.client_id.as_deref()));
    f.opt("issuer", claims.and_then(|c| c.iss.as_deref()));
    f.u64("duration_us", r.duration_us);
    f.str("frontend", r.frontend);
    f.opt("upstream", r.upstream.as_deref());
    f.opt("tool", r.tool.as_deref());
    // Absent rather than null when `None` (`skip_serializing_if` before).
    if let Some(c) = r.credential {
        f.str("credential", credential_name(c));
    }
    if let Some(k) = &r.revocation {
        f.str("revocation", k);
    }
    if let Some(i) = r.introspection {
        f.str("introspection", introspected_name(i));
    }
    if let Some(c) = claims {
        push_basis(&mut f, &BasisRef::of(c, &r.bound_claims));
    }
    f.0.extend_from_slice(b"}\n");
}

/// Writes `"key":value` pairs, each after the byte in `.1` (`{` first, then `,`).
/// Keys are this file's constants, known to need no escaping.
struct Fields<'a>(&'a mut Vec<u8>, u8);

impl Fields<'_> {
    fn key(&mut self, k: &str) {
        self.0.push(self.1);
        self.1 = b',';
        self.0.push(b'"');
        self.0.extend_from_slice(k.as_bytes());
        self.0.extend_from_slice(b"\":");
    }
    fn str(&mut self, k: &str, v: &str) {
        self.key(k);
        push_str(self.0, v);
    }
    fn opt(&mut self, k: &str, v: Option<&str>) {
        self.key(k);
        match v {
            Some(s) => push_str(self.0, s),
            None => self.0.extend_from_slice(b"null"),
        }
    }
    fn bool(&mut self, k: &str, v: bool) {
        self.key(k);
        push_bool(self.0, v);
    }
    fn u64(&mut self, k: &str, v: u64) {
        self.key(k);
        push_u64(self.0, v);
    }
    /// Only when present (the basis skips absent fields).
    fn some_str(&mut self, k: &str, v: Option<&str>) {
        if let Some(s) = v {
            self.str(k, s);
        }
    }
    fn some_strs(&mut self, k: &str, v: Option<&[String]>) {
        if let Some(list) = v {
            self.key(k);
            push_strs(self.0, list.iter().map(String::as_str));
        }
    }
    fn some_number(&mut self, k: &str, v: &Option<Number>) {
        if let Some(n) = v {
            self.key(k);
            push_number(self.0, n);
        }
    }
}

/// The basis fields, flattened into the record: each only when present, read
/// from the claims without copying them ([`BasisRef`]: the facts of
/// [`Basis`](writ_engine::record::Basis)).
fn push_basis(f: &mut Fields<'_>, b: &BasisRef<'_>) {
    f.some_str("jti", b.jti);
    f.some_strs("scopes", b.scopes);
    f.some_strs("aud", b.aud);
    f.some_number("iat", &b.iat);
    f.some_number("exp", &b.exp);
    f.some_number("nbf", &b.nbf);
    f.some_number("auth_time", &b.auth_time);
    f.some_str("acr", b.acr);
    f.some_number("act_iat", &b.act_iat);
    f.some_number("act_exp", &b.act_exp);
    f.some_str("act_iss", b.act_iss);
    let mut claims = b.claims().peekable();
    if claims.peek().is_some() {
        f.key("claims");
        push_object(f.0, claims);
    }
}

/// As `#[serde(rename_all = "lowercase")]` spells it (the test pins it).
fn credential_name(c: Credential) -> &'static str {
    match c {
        Credential::None => "none",
        Credential::Verified => "verified",
        Credential::Rejected => "rejected",
        Credential::Unchecked => "unchecked",
    }
}

fn introspected_name(i: Introspected) -> &'static str {
    match i {
        Introspected::Active => "active",
        Introspected::Inactive => "inactive",
        Introspected::Unavailable => "unavailable",
    }
}

fn push_bool(out: &mut Vec<u8>, b: bool) {
    out.extend_from_slice(if b { b"true" } else { b"false" });
}

fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// As `serde_json` writes a number: integers as such, floats the shortest
/// way that reads back the same (its `Display` is its serialization).
fn push_number(out: &mut Vec<u8>, n: &Number) {
    if let Some(u) = n.as_u64() {
        push_u64(out, u);
    } else if let Some(i) = n.as_i64() {
        out.push(b'-');
        push_u64(out, i.unsigned_abs());
    } else {
        let _ = write!(out, "{n}");
    }
}

fn push_strs<'a>(out: &mut Vec<u8>, list: impl Iterator<Item = &'a str>) {
    out.push(b'[');
    for (i, s) in list.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_str(out, s);
    }
    out.push(b']');
}

/// A map in its iteration order (both `Basis::claims` and `serde_json::Map`
/// without `preserve_order` iterate sorted by key, as serde_json writes them).
fn push_object<'a>(out: &mut Vec<u8>, m: impl IntoIterator<Item = (&'a String, &'a Value)>) {
    out.push(b'{');
    for (i, (k, v)) in m.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_str(out, k);
        out.push(b':');
        push_value(out, v);
    }
    out.push(b'}');
}

fn push_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => push_bool(out, *b),
        Value::Number(n) => push_number(out, n),
        Value::String(s) => push_str(out, s),
        Value::Array(a) => {
            out.push(b'[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                push_value(out, v);
            }
            out.push(b']');
        }
        Value::Object(m) => push_object(out, m),
    }
}

/// Marks a byte that starts a character escaped only for line safety when the
/// bytes after it say so: 0xC2 starts the C1 controls (U+0080..U+009F, U+0085
/// is NEL), 0xE2 starts U+2028/U+2029.
const MAYBE: u8 = 1;

/// Per byte: 0 to copy it, the letter of its short escape (`\n`, `\"`...),
/// `u` for `\u00XX`, or [`MAYBE`]. JSON requires escaping `"`, `\` and the
/// controls below 0x20 (as `serde_json` does: the short forms where JSON has
/// them); DEL is escaped too, like the C1 controls and U+2028/U+2029, because
/// line-based readers split on them or terminals act on them. One record is
/// always exactly one line.
const ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t[0x7f] = b'u';
    t[0xc2] = MAYBE;
    t[0xe2] = MAYBE;
    t
};

/// Whether no byte of `w` needs a look in [`ESCAPE`]: none below 0x20, none
/// `"` or `\\`, none DEL or above (every non-zero entry is one of those).
/// The usual bit tricks: `v - 0x01.. & !v & 0x80..` is non-zero exactly when
/// some byte of `v` is zero, `w - 0x20.. & !w & 0x80..` when some byte is below 0x20.
fn is_plain(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let control = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    let quote = zero(w ^ (ONES * u64::from(b'"')));
    let backslash = zero(w ^ (ONES * u64::from(b'\\')));
    let del = zero(w ^ (ONES * 0x7f));
    (control | quote | backslash | del | (w & HIGH)) == 0
}

/// `s` as a JSON string: runs of bytes that need nothing are copied at once.
fn push_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let b = s.as_bytes();
    out.push(b'"');
    let (mut run, mut i) = (0, 0);
    while i < b.len() {
        // Eight bytes at a time while none needs a look (most of a line).
        if let Some(Ok(word)) = b.get(i..i + 8).map(<[u8; 8]>::try_from)
            && is_plain(u64::from_ne_bytes(word))
        {
            i += 8;
            continue;
        }
        let e = ESCAPE[usize::from(b[i])];
        if e == 0 {
            i += 1;
            continue;
        }
        // The code point to write as `\uXXXX` (or a short escape) and its length in UTF-8.
        let (code, len) = match (e, b.get(i + 1), b.get(i + 2)) {
            (MAYBE, Some(&c @ 0x80..=0x9f), _) if b[i] == 0xc2 => (u16::from(c), 2),
            (MAYBE, Some(0x80), Some(&c @ (0xa8 | 0xa9))) if b[i] == 0xe2 => {
                (0x2000 | u16::from(c & 0x3f), 3)
            }
            (MAYBE, _, _) => {
                i += 1;
                continue;
            }
            _ => (u16::from(b[i]), 1),
        };
        out.extend_from_slice(&b[run..i]);
        if e == b'u' || e == MAYBE {
            out.extend_from_slice(b"\\u");
            for shift in [12, 8, 4, 0] {
                out.push(HEX[usize::from((code >> shift) & 0xf)]);
            }
        } else {
            out.extend_from_slice(&[b'\\', e]);
        }
        i += len;
        run = i;
    }
    out.extend_from_slice(&b[run..]);
    out.push(b'"');
}

/// `t` (seconds since the Unix epoch, as the engine's clock says) as a time.
pub fn at(t: f64) -> SystemTime {
    // `try_`: a non-finite time must not panic the request path.
    std::time::UNIX_EPOCH + std::time::Duration::try_from_secs_f64(t.max(0.0)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use proptest::prelude::*;
    use writ_engine::record::Basis;

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
            at: SystemTime::now(),
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
            token: None,
            bound_claims: Arc::new([]),
            duration_us: 1,
            frontend: "proxy",
            upstream: Some("default".into()),
            tool: None,
            credential: Some(Credential::None),
            revocation: None,
            introspection: None,
        }
    }

    /// A verified token with these claims.
    fn token(raw: serde_json::Map<String, Value>) -> Arc<Verified> {
        Arc::new(Verified {
            claims: writ_engine::claims::Claims::parse(raw),
            issuer: 0,
            key_fingerprint: None,
            generation: 0,
            approx_size: 0,
        })
    }

    #[test]
    fn line_breaks_and_controls_in_claims_are_escaped() {
        let mut r = record();
        let sub = "a\u{2028}b\u{2029}c\u{85}d\u{7f}e\u{9f}f\ng\u{1}h é";
        r.token = Some(token(
            serde_json::json!({ "sub": sub })
                .as_object()
                .unwrap()
                .clone(),
        ));
        let mut out = Vec::new();
        write_line(&mut out, &r);
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
        assert_eq!(back["subject"].as_str(), Some(sub));
    }

    /// The line as it was written before the hand-written writer: `serde_json`
    /// on this derive (the record's fields, the basis flattened), through
    /// [`LineSafe`]. [`write_line`] must write exactly these bytes.
    #[derive(serde::Serialize)]
    struct Reference<'a> {
        ts: String,
        request_id: &'a str,
        method: &'a str,
        path: Option<&'a str>,
        host: Option<&'a str>,
        action: Option<&'a str>,
        execution: bool,
        decision: &'a str,
        enforced: bool,
        reason: &'a str,
        status: u16,
        subject: Option<String>,
        actor_chain: Vec<String>,
        client_id: Option<String>,
        issuer: Option<String>,
        duration_us: u64,
        frontend: &'a str,
        upstream: Option<&'a str>,
        tool: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        credential: Option<Credential>,
        #[serde(skip_serializing_if = "Option::is_none")]
        revocation: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        introspection: Option<Introspected>,
        #[serde(flatten)]
        basis: Basis,
    }

    /// Built as `Ctx::record` built the record before (owned copies of the
    /// claims, the timestamp formatted on the request thread).
    fn reference(r: &DecisionRecord) -> Vec<u8> {
        let claims = r.token.as_ref().map(|t| &t.claims);
        let line = Reference {
            ts: humantime::format_rfc3339_micros(r.at).to_string(),
            request_id: &r.request_id,
            method: &r.method,
            path: r.path.as_deref(),
            host: r.host.as_deref(),
            action: r.action.as_deref(),
            execution: r.execution,
            decision: r.decision,
            enforced: r.enforced,
            reason: r.reason,
            status: r.status,
            subject: claims.and_then(|c| c.sub.clone()),
            actor_chain: claims
                .and_then(|c| c.act.as_ref().ok())
                .map(|a| a.iter().map(|x| x.sub.clone()).collect())
                .unwrap_or_default(),
            client_id: claims.and_then(|c| c.client_id.clone()),
            issuer: claims.and_then(|c| c.iss.clone()),
            duration_us: r.duration_us,
            frontend: r.frontend,
            upstream: r.upstream.as_deref(),
            tool: r.tool.as_deref(),
            credential: r.credential,
            revocation: r.revocation.as_deref(),
            introspection: r.introspection,
            basis: claims
                .map(|c| Basis::of(c, &r.bound_claims))
                .unwrap_or_default(),
        };
        let mut out = Vec::new();
        let mut ser = serde_json::Serializer::with_formatter(&mut out, LineSafe);
        serde::Serialize::serialize(&line, &mut ser).unwrap();
        out.push(b'\n');
        out
    }

    /// Compact JSON that also escapes what serde_json writes raw but line-based
    /// readers split on or terminals act on: DEL, the C1 controls (U+0085 is NEL)
    /// and U+2028/U+2029 (the formatter the log used before; the reference).
    struct LineSafe;

    impl serde_json::ser::Formatter for LineSafe {
        fn write_string_fragment<W: ?Sized + Write>(
            &mut self,
            writer: &mut W,
            fragment: &str,
        ) -> std::io::Result<()> {
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

    /// Strings a claim, a path or a header could carry: every control byte,
    /// quotes, backslashes, DEL, C1, U+2028/9 and their neighbours, other
    /// non-ASCII, empty and long.
    fn hostile() -> impl Strategy<Value = String> {
        let tricky = prop::sample::select(vec![
            '"',
            '\\',
            '/',
            '\u{7f}',
            '\u{80}',
            '\u{85}',
            '\u{9f}',
            '\u{a0}',
            '\u{ff}',
            '\u{2027}',
            '\u{2028}',
            '\u{2029}',
            '\u{202a}',
            '\u{2000}',
            'é',
            '€',
            '\u{fffd}',
            '\u{10ffff}',
            'a',
            ' ',
        ]);
        let c = prop_oneof![
            3 => tricky,
            2 => (0u8..0x20).prop_map(char::from),
            2 => any::<char>(),
            1 => prop::char::range('a', 'z'),
        ];
        prop_oneof![
            4 => prop::collection::vec(c.clone(), 0..24),
            1 => prop::collection::vec(c, 200..600),
        ]
        .prop_map(String::from_iter)
    }

    fn number() -> impl Strategy<Value = Number> {
        prop_oneof![
            any::<u64>().prop_map(Number::from),
            any::<i64>().prop_map(Number::from),
            any::<f64>().prop_filter_map("finite", Number::from_f64),
            (0u32..4_000_000_000).prop_map(|t| Number::from_f64(f64::from(t) + 0.5).unwrap()),
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            number().prop_map(Value::Number),
            hostile().prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(hostile(), inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Claims as a token could carry them (the typed ones in right and wrong
    /// shapes), and the names the policy binds: some present, one absent.
    fn claims() -> impl Strategy<Value = (serde_json::Map<String, Value>, Vec<String>)> {
        let s = || prop::option::of(hostile().prop_map(Value::String));
        let n = || prop::option::of(number().prop_map(Value::Number));
        let strings = || prop::collection::vec(hostile().prop_map(Value::String), 0..4);
        let aud = prop::option::of(prop_oneof![
            hostile().prop_map(Value::String),
            strings().prop_map(Value::Array),
        ]);
        let scope =
            prop::option::of(prop::collection::vec(hostile(), 0..4).prop_map(|v| v.join(" ")));
        let act = prop::option::of((hostile(), s(), n(), n(), prop::option::of(hostile())));
        (
            (s(), s(), s(), s(), s(), aud, scope),
            (n(), n(), n(), n(), act),
            prop::collection::btree_map(hostile(), value(), 0..3),
            (any::<u8>(), hostile()),
        )
            .prop_map(|(a, b, extra, (mask, absent))| {
                let (iss, sub, client_id, jti, acr, aud, scope) = a;
                let (iat, exp, nbf, auth_time, act) = b;
                let mut raw = serde_json::Map::new();
                let mut bound = vec![absent];
                for (i, (k, v)) in extra.into_iter().enumerate() {
                    if mask & (1 << i) != 0 {
                        bound.push(k.clone());
                    }
                    raw.insert(k, v);
                }
                let named = [
                    ("iss", iss),
                    ("sub", sub),
                    ("client_id", client_id),
                    ("jti", jti),
                    ("acr", acr),
                    ("aud", aud),
                    ("scope", scope.map(Value::String)),
                    ("iat", iat),
                    ("exp", exp),
                    ("nbf", nbf),
                    ("auth_time", auth_time),
                ];
                for (k, v) in named {
                    if let Some(v) = v {
                        raw.insert(k.into(), v);
                    }
                }
                if let Some((sub, iss, exp, iat, inner)) = act {
                    let mut a = serde_json::json!({ "sub": sub });
                    for (k, v) in [("iss", iss), ("exp", exp), ("iat", iat)] {
                        if let Some(v) = v {
                            a[k] = v;
                        }
                    }
                    if let Some(inner) = inner {
                        a["act"] = serde_json::json!({ "sub": inner });
                    }
                    raw.insert("act".into(), a);
                }
                bound.sort();
                bound.dedup();
                (raw, bound)
            })
    }

    fn records() -> impl Strategy<Value = DecisionRecord> {
        let s = || prop::option::of(hostile());
        let word = || {
            prop::sample::select(vec![
                "allow",
                "deny",
                "no_matching_action",
                "proxy",
                "ext_authz_http",
                "",
            ])
        };
        let credential = prop::option::of(prop::sample::select(vec![
            Credential::None,
            Credential::Verified,
            Credential::Rejected,
            Credential::Unchecked,
        ]));
        let introspection = prop::option::of(prop::sample::select(vec![
            Introspected::Active,
            Introspected::Inactive,
            Introspected::Unavailable,
        ]));
        // Up to the year 2100, to the nanosecond (the line keeps microseconds).
        let at = (0u64..4_102_444_800, 0u32..1_000_000_000)
            .prop_map(|(secs, nanos)| std::time::UNIX_EPOCH + Duration::new(secs, nanos));
        (
            (at, hostile(), hostile(), s(), s(), s()),
            (
                any::<bool>(),
                word(),
                any::<bool>(),
                word(),
                any::<u16>(),
                word(),
            ),
            (prop::option::of(claims()), any::<u64>()),
            (s(), s(), credential, s(), introspection),
        )
            .prop_map(|(a, b, c, d)| {
                let (at, request_id, method, path, host, action) = a;
                let (execution, decision, enforced, reason, status, frontend) = b;
                let (claims, duration_us) = c;
                let (upstream, tool, credential, revocation, introspection) = d;
                let (token, bound_claims) = match claims {
                    Some((raw, bound)) => (Some(token(raw)), bound.into()),
                    None => (None, Arc::from([])),
                };
                DecisionRecord {
                    at,
                    request_id,
                    method,
                    path,
                    host,
                    action,
                    execution,
                    decision,
                    enforced,
                    reason,
                    status,
                    token,
                    bound_claims,
                    duration_us,
                    frontend,
                    upstream,
                    tool,
                    credential,
                    revocation,
                    introspection,
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// Byte for byte what serde_json + LineSafe wrote, one line, valid JSON.
        #[test]
        fn the_hand_written_line_is_the_serde_line(r in records()) {
            let mut out = Vec::new();
            write_line(&mut out, &r);
            let want = reference(&r);
            prop_assert_eq!(String::from_utf8(out.clone()).unwrap(), String::from_utf8(want).unwrap());
            prop_assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
            let _: serde_json::Value = serde_json::from_slice(&out).unwrap();
        }
    }

    /// The word test agrees with the table for every byte at every position.
    #[test]
    fn a_word_is_plain_exactly_when_no_byte_needs_a_look() {
        for byte in 0..=255u8 {
            for at in 0..8 {
                let mut word = *b"abcdefgh";
                word[at] = byte;
                let plain = word
                    .iter()
                    .all(|&b| ESCAPE[usize::from(b)] == 0 && b < 0x7f);
                assert_eq!(
                    is_plain(u64::from_ne_bytes(word)),
                    plain,
                    "{byte:#x} at {at}"
                );
            }
        }
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
