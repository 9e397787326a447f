//! Differential check (classification vs. what the backend executes).
//!
//! For a large, deterministically generated set of request targets, the action writ classified
//! (the `x-writ-action` header it sets on every forwarded request, SPEC "Settled questions") must
//! equal the action a strict, independent reference router picks for the target the backend
//! *actually received* (captured by the recording backend). Any disagreement is a bypass: writ
//! authorized one thing and the backend executes another.
//!
//! The reference router lives in this file and shares nothing with writ but the template table:
//! it treats the received path as already canonical (and asserts that it is: no dot segments,
//! no empty segments, no lowercase or needless escapes, nothing writ's default normalization
//! policy refuses), splits it on `/` and picks, among the templates that match, the most
//! specific one segment by segment from the left (literal > `{param}` > `{*rest}`, `{*rest}`
//! = one or more segments). Every action is public and `defaults.unmatched: allow`, so every
//! request writ does not refuse reaches the backend, with or without an action header.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Config, Env, RawConn, RawResponse, Recorded, build_request, eventually};

/// (action name, template). The config and the reference router are both built from this.
const ROUTES: &[(&str, &str)] = &[
    ("root", "/"),
    ("admin", "/admin"),
    ("admin-user", "/admin/users/{id}"),
    ("admin-rest", "/admin/{*rest}"),
    ("public-rest", "/public/{*rest}"),
    ("public-doc", "/public/docs/{page}"),
    ("item", "/api/v1/items/{id}"),
    ("item-run", "/api/v1/items/{id}/run"),
    ("items-any-version", "/api/{version}/items"),
    ("abc", "/a/b/c"),
    ("xbd", "/{x}/b/d"),
    ("any-two", "/{first}/{second}"),
    ("static", "/static/{*file}"),
    ("file-raw", "/files/{name}/raw"),
    ("files-rest", "/files/{*path}"),
    ("user-settings", "/users/{id}/settings"),
    ("me-settings", "/users/me/settings"),
];

/// Number of generated targets (plus the fixed corpus).
const GENERATED: usize = 3000;
const SEED: u64 = 0x5eed_d1ff_2026_0001;
/// Hard bound on the whole run.
const RUN_BUDGET: Duration = Duration::from_secs(60);

fn actions_yaml() -> String {
    let mut out = String::new();
    for (name, path) in ROUTES {
        let _ = write!(
            out,
            "  - name: {name}\n    methods: [GET]\n    path: \"{path}\"\n    public: true\n"
        );
    }
    out
}

// ==========================================================================================
// === reference router ===
// ==========================================================================================

#[derive(Clone, Debug, PartialEq, Eq)]
enum Seg {
    Lit(String),
    Param,
    Rest,
}

impl Seg {
    /// Specificity rank: lower wins.
    fn rank(&self) -> u8 {
        match self {
            Seg::Lit(_) => 0,
            Seg::Param => 1,
            Seg::Rest => 2,
        }
    }
}

fn parse_template(t: &str) -> Vec<Seg> {
    t.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            if s.starts_with("{*") {
                Seg::Rest
            } else if s.starts_with('{') {
                Seg::Param
            } else {
                Seg::Lit(s.to_string())
            }
        })
        .collect()
}

/// Does `template` match `segs` (already split, canonical)?
fn template_matches(template: &[Seg], segs: &[&str]) -> bool {
    for (i, t) in template.iter().enumerate() {
        match t {
            // one or more remaining segments
            Seg::Rest => return segs.len() > i,
            Seg::Param => {
                if segs.get(i).is_none_or(|s| s.is_empty()) {
                    return false;
                }
            }
            Seg::Lit(l) => {
                if segs.get(i) != Some(&l.as_str()) {
                    return false;
                }
            }
        }
    }
    template.len() == segs.len()
}

/// The reference decision: among all matching templates, the lexicographically smallest
/// vector of segment ranks (literal < param < rest, compared from the left) wins.
fn reference_route(routes: &[(&'static str, Vec<Seg>)], path: &str) -> Option<&'static str> {
    let segs: Vec<&str> = if path == "/" {
        Vec::new()
    } else {
        path.strip_prefix('/').unwrap_or(path).split('/').collect()
    };
    let mut best: Option<(Vec<u8>, &'static str)> = None;
    for (name, template) in routes {
        if !template_matches(template, &segs) {
            continue;
        }
        let key: Vec<u8> = template.iter().map(Seg::rank).collect();
        match &best {
            Some((k, other)) if *k == key => {
                panic!("reference: ambiguous templates {name} and {other} for {path}")
            }
            Some((k, _)) if *k < key => {}
            _ => best = Some((key, name)),
        }
    }
    best.map(|(_, n)| n)
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Checks that a path the backend received is in the canonical form SPEC's normalization (with
/// the default `requests:` policy) produces. Returns every violation.
fn canonical_violations(path: &str) -> Vec<String> {
    let mut v = Vec::new();
    if !path.starts_with('/') {
        v.push("does not start with '/'".to_string());
        return v;
    }
    if path != "/" && path.ends_with('/') {
        v.push("trailing '/' (trailing_slash: ignore removes it from the forwarded path)".into());
    }
    let inner = path.trim_start_matches('/');
    let inner = inner.strip_suffix('/').unwrap_or(inner);
    if path.starts_with("//") || (path != "/" && inner.split('/').any(str::is_empty)) {
        v.push("empty segment ('//' must be merged)".into());
    }
    for seg in inner.split('/') {
        if seg == "." || seg == ".." {
            v.push(format!("dot segment {seg:?} (must be removed)"));
        }
    }
    let b = path.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'%' => {
                let hex = b.get(i + 1..i + 3);
                let Some(hex) = hex else {
                    v.push(format!("truncated escape at byte {i}"));
                    break;
                };
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    v.push(format!(
                        "invalid escape %{} forwarded",
                        String::from_utf8_lossy(hex)
                    ));
                } else {
                    let s = std::str::from_utf8(hex).unwrap();
                    if hex.iter().any(u8::is_ascii_lowercase) {
                        v.push(format!("escape %{s} is not uppercase hex"));
                    }
                    let byte = u8::from_str_radix(s, 16).unwrap();
                    if is_unreserved(byte) {
                        v.push(format!(
                            "escape %{s} encodes unreserved {:?} (must be decoded)",
                            byte as char
                        ));
                    }
                    match byte {
                        b'/' => v.push("%2F forwarded (encoded_slash: reject)".into()),
                        b'\\' => v.push("%5C forwarded (backslash is 400)".into()),
                        b';' => v.push("%3B forwarded (semicolon: reject)".into()),
                        0..=0x1f | 0x7f => {
                            v.push(format!("escaped control byte %{s} forwarded"));
                        }
                        _ => {}
                    }
                }
                i += 3;
                continue;
            }
            b';' => v.push("';' forwarded (semicolon: reject)".into()),
            b'\\' => v.push("backslash forwarded".into()),
            b'#' => v.push("'#' forwarded".into()),
            0..=0x20 | 0x7f => v.push(format!("raw control/space byte 0x{c:02x}")),
            0x80..=0xff => v.push(format!("raw non-ASCII byte 0x{c:02x}")),
            _ => {}
        }
        i += 1;
    }
    v
}

// ==========================================================================================
// === target generator ===
// ==========================================================================================

/// xorshift64* (deterministic, no dependency).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n).unwrap()).unwrap()
    }

    fn pct(&mut self, p: usize) -> bool {
        self.below(100) < p
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const LITERALS: &[&str] = &[
    "admin", "users", "public", "docs", "api", "v1", "v2", "items", "run", "a", "b", "c", "d",
    "static", "files", "raw", "me", "settings",
];

const TRICKY: &[&str] = &[
    ".",
    "..",
    "...",
    "%2e",
    "%2E",
    "%2e%2e",
    "%2E%2e",
    ".%2e",
    "%2e.",
    "%2f",
    "%2F",
    "a%2fb",
    "..%2f",
    "%2e%2e%2fadmin",
    "%5c",
    "%5C",
    "\\",
    "..\\",
    "%00",
    "a%00",
    "%25",
    "%252e",
    "%252e%252e",
    "%25%32%65",
    "%2525",
    "%61dmin",
    "%41DMIN",
    "adm%69n",
    "%61%64%6d%69%6e",
    "%75sers",
    "admin;x",
    ";x",
    ";",
    "%3b",
    "%3B",
    "admin%3bx",
    "ADMIN",
    "Admin",
    "PUBLIC",
    "%7e",
    "%7E",
    "~",
    "~user",
    "%c3%a9",
    "%C3%A9",
    "\u{e9}",
    "%c0%ae",
    "%c0%ae%c0%ae",
    "%e0%80%ae",
    "%u002e",
    "%u2215",
    "%",
    "%zz",
    "%2",
    "%g1",
    "admin%20",
    "%20admin",
    "admin%09",
    "%0a",
    "%0d%0a",
    "%7f",
    "%ff",
    "*",
    "@",
    ":",
    "admin:8080",
    "a+b",
    "!$&'()*+,=",
    "-._~",
    "%2d%2e%5f%7e",
    "%2D%2E%5F%7E",
    "%40",
    "%3a",
    "%3F",
    "%23",
    "%2523",
];

const SUFFIXES: &[&str] = &[
    "?q=/admin",
    "?q=..%2f..%2fadmin",
    "?a=1&b=%2e%2e",
    "?",
    "#frag",
    "#/../admin",
    "?q=1#frag",
    "?x=%00",
    "?q=%ZZ&p=/admin/../x",
    "?_method=DELETE",
    "??",
    "?q=%2F%2f;x",
    "?Q=UPPER&q=lower",
];

fn random_name(rng: &mut Rng) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-_~.";
    let len = 1 + rng.below(6);
    (0..len)
        .map(|_| CHARS[rng.below(CHARS.len())] as char)
        .collect()
}

fn random_segment(rng: &mut Rng) -> String {
    match rng.below(100) {
        0..=44 => {
            let l = rng.pick(LITERALS);
            if rng.pct(5) {
                l.to_ascii_uppercase()
            } else {
                l.to_string()
            }
        }
        45..=64 => random_name(rng),
        _ => rng.pick(TRICKY).to_string(),
    }
}

/// Percent-encodes one byte of `seg` (lower- or uppercase hex).
fn encode_one(rng: &mut Rng, seg: &str) -> String {
    if seg.is_empty() || !seg.is_ascii() {
        return seg.to_string();
    }
    let i = rng.below(seg.len());
    let b = seg.as_bytes()[i];
    let enc = if rng.pct(50) {
        format!("%{b:02x}")
    } else {
        format!("%{b:02X}")
    };
    format!("{}{enc}{}", &seg[..i], &seg[i + 1..])
}

/// An instance of a random template (params and rest filled), then 0..=3 mutations.
fn template_instance(rng: &mut Rng) -> Vec<String> {
    let (_, t) = ROUTES[rng.below(ROUTES.len())];
    let mut segs: Vec<String> = Vec::new();
    for s in parse_template(t) {
        match s {
            Seg::Lit(l) => segs.push(l),
            Seg::Param => segs.push(if rng.pct(30) {
                rng.pick(LITERALS).to_string()
            } else {
                random_name(rng)
            }),
            Seg::Rest => {
                for _ in 0..=rng.below(3) {
                    segs.push(if rng.pct(40) {
                        rng.pick(LITERALS).to_string()
                    } else {
                        random_name(rng)
                    });
                }
            }
        }
    }
    for _ in 0..rng.below(4) {
        let pos = rng.below(segs.len() + 1);
        match rng.below(11) {
            0 if pos < segs.len() => segs[pos] = encode_one(rng, &segs[pos]),
            1 => segs.insert(pos, ".".into()),
            2 => {
                let dot = rng.pick(&["..", "%2e%2e", ".%2E", "%2e.", "%2E%2E"]);
                segs.insert(pos, dot.into());
                let name = random_segment(rng);
                segs.insert(pos, name);
            }
            3 => segs.insert(pos, String::new()),
            4 if pos < segs.len() => segs[pos] = segs[pos].to_ascii_uppercase(),
            5 if pos < segs.len() => {
                let m = rng.pick(&[";x", "%3bx", ";", "%3B"]);
                segs[pos].push_str(m);
            }
            6 if pos < segs.len() => segs[pos] = "..".into(),
            7 if pos < segs.len() => {
                let s = rng.pick(&["%2f", "%2F", "%5c", "%00", "%c0%ae"]);
                segs[pos].push_str(s);
            }
            8 => {
                let s = random_segment(rng);
                segs.insert(pos, s);
            }
            9 if !segs.is_empty() && pos < segs.len() => {
                segs.remove(pos);
            }
            _ => {
                let s = rng.pick(TRICKY).to_string();
                segs.insert(pos, s);
            }
        }
    }
    segs
}

fn generate_target(rng: &mut Rng) -> String {
    let segs: Vec<String> = if rng.pct(40) {
        template_instance(rng)
    } else {
        (0..rng.below(6)).map(|_| random_segment(rng)).collect()
    };
    let mut t = String::new();
    match rng.below(100) {
        0..=5 => t.push_str("//"),
        6..=7 if !segs.is_empty() => {} // no leading slash
        8 => t.push_str("http://h.example"),
        _ => t.push('/'),
    }
    for (i, s) in segs.iter().enumerate() {
        if i > 0 {
            match rng.below(100) {
                0..=5 => t.push_str("//"),
                6..=8 => t.push_str("/./"),
                _ => t.push('/'),
            }
        }
        t.push_str(s);
    }
    if !segs.is_empty() && rng.pct(10) {
        t.push('/');
    }
    if t.is_empty() {
        t.push('/');
    }
    if rng.pct(30) {
        t.push_str(rng.pick(SUFFIXES));
    }
    t
}

/// Hand-picked seeds from THREATS.md, sent before the generated ones.
const FIXED: &[&str] = &[
    "/",
    "/admin",
    "/admin/",
    "/public/../admin",
    "/public/%2e%2e/admin",
    "/public/%2E%2E/admin",
    "/public/.%2e/admin",
    "/public/%2e%2e%2fadmin",
    "/public/..%2fadmin",
    "/public/..;/admin",
    "/public/%3b/../admin",
    "/api../admin",
    "/api/%2e%2e/admin",
    "//admin/x",
    "//admin",
    "/%61dmin",
    "/%61dmin/users/1",
    "/admin%2fusers/1",
    "/ADMIN",
    "/admin%20",
    "/admin#x",
    "/#/../admin",
    "/%23/../admin",
    "/public?q=/admin",
    "/public/x?q=/admin",
    "/a/b/d",
    "/a/b/c",
    "/a/b",
    "/a/b/c/",
    "/a/./b/./c",
    "/x/../a/b/c",
    "/a/b/%63",
    "/a/b/%43",
    "/users/me/settings",
    "/users/%6de/settings",
    "/users/ME/settings",
    "/users/me/../me/settings",
    "/api/v1/items/7/run",
    "/api/v1/items/7/run/",
    "/api/v1/items/7//run",
    "/api/v1/items/7/%72un",
    "/api/v1/items/%2e/run",
    "/api/v1/items/..",
    "/api/v2/items",
    "/static",
    "/static/",
    "/static/a/b/c",
    "/files/x/raw",
    "/files/%2e%2e/raw",
    "/files/x/raw/..",
    "/..",
    "/../admin",
    "/%2e%2e/admin",
    "/admin/..",
    "/admin/users/..",
    "/admin/users/%2e",
    "/public/docs/..%5cadmin",
    "/public\\..\\admin",
    "/public/%c0%ae%c0%ae/admin",
    "/public/%u002e%u002e/admin",
    "*",
    "http://h.example/admin",
    "admin",
];

// ==========================================================================================
// === driver ===
// ==========================================================================================

struct Outcome {
    target: String,
    /// `None`: no response (connection closed without one).
    status: Option<u16>,
    reason: String,
    /// Indices into the backend's record of what it received for this request.
    received: std::ops::Range<usize>,
}

fn reason_of(resp: &RawResponse) -> String {
    let is_problem = resp.header("content-type").is_some_and(|c| {
        c.to_ascii_lowercase()
            .starts_with("application/problem+json")
    });
    if is_problem {
        serde_json::from_slice::<Value>(&resp.body)
            .ok()
            .and_then(|v| v.get("reason").and_then(Value::as_str).map(String::from))
            .unwrap_or_else(|| "problem-without-reason".into())
    } else {
        "bare".into()
    }
}

fn should_close(resp: &RawResponse) -> bool {
    !(200..300).contains(&resp.status)
        || resp
            .header_all("connection")
            .iter()
            .any(|v| v.eq_ignore_ascii_case("close"))
}

/// Query as the client sent it: after the first `?`, before any `#` (the parser may drop a
/// fragment; nothing after `#` may ever be forwarded).
fn client_query(target: &str) -> Option<&str> {
    let before_fragment = target.split('#').next().unwrap_or("");
    before_fragment.split_once('?').map(|(_, q)| q)
}

#[test]
fn classification_equals_reference_route_of_what_the_backend_received() {
    let config = Config::new(&actions_yaml()).set("defaults", "\n  unmatched: allow");
    let env = Env::with_config(&config);
    let routes: Vec<(&'static str, Vec<Seg>)> = ROUTES
        .iter()
        .map(|(n, t)| (*n, parse_template(t)))
        .collect();

    let mut rng = Rng(SEED);
    let mut targets: Vec<String> = FIXED.iter().map(ToString::to_string).collect();
    targets.extend((0..GENERATED).map(|_| generate_target(&mut rng)));

    let addr = env.writ.addr();
    let started = Instant::now();
    let mut conn: Option<RawConn> = None;
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(targets.len());
    let mut seen = 0usize;
    for (i, target) in targets.iter().enumerate() {
        assert!(
            started.elapsed() < RUN_BUDGET,
            "differential run exceeded {RUN_BUDGET:?} after {i} requests"
        );
        let rid = format!("diff-{i}");
        let bytes = build_request(addr, "GET", target, &[("x-request-id", &rid)], b"");
        let mut response = None;
        // One retry, only on a reused keep-alive connection the server had already closed
        // (and only if the backend saw nothing of the first attempt).
        for attempt in 0..2 {
            let fresh = conn.is_none();
            if conn.is_none() {
                conn = Some(RawConn::connect(addr).expect("connect to writ"));
            }
            let c = conn.as_mut().unwrap();
            // A failed write still lets us read an early answer (or see the close).
            let _ = c.send(&bytes);
            match c.read_response(false) {
                Ok(r) => {
                    if should_close(&r) {
                        conn = None;
                    }
                    response = Some(r);
                    break;
                }
                Err(_) => {
                    conn = None;
                    if fresh || attempt == 1 || env.backend.count() != seen {
                        break;
                    }
                }
            }
        }
        let now_seen = env.backend.count();
        let received = seen..now_seen;
        seen = now_seen;
        outcomes.push(Outcome {
            target: target.clone(),
            status: response.as_ref().map(|r| r.status),
            reason: response.as_ref().map_or_else(|| "closed".into(), reason_of),
            received,
        });
    }
    let elapsed = started.elapsed();
    drop(conn);

    // === judge ===
    let all_received: Vec<Recorded> = env.backend.requests();
    let forwarded_rids: Vec<String> = outcomes
        .iter()
        .enumerate()
        .filter(|(_, o)| o.status.is_some_and(|s| (200..300).contains(&s)))
        .map(|(i, _)| format!("diff-{i}"))
        .collect();
    let read_log = || -> HashMap<String, Value> {
        env.writ
            .decision_log_lines()
            .into_iter()
            .filter_map(|l| Some((l.get("request_id")?.as_str()?.to_string(), l)))
            .collect()
    };
    let log = eventually(|| {
        let m = read_log();
        forwarded_rids
            .iter()
            .all(|r| m.contains_key(r))
            .then_some(m)
    })
    .unwrap_or_else(read_log);
    let mut failures: Vec<String> = Vec::new();
    let mut forwarded_by_action: BTreeMap<String, usize> = BTreeMap::new();
    let mut refused_by_reason: BTreeMap<String, usize> = BTreeMap::new();
    let mut forwarded = 0usize;
    for (i, o) in outcomes.iter().enumerate() {
        let rid = format!("diff-{i}");
        let t = &o.target;
        let received = &all_received[o.received.clone()];
        match o.status {
            Some(s) if (200..300).contains(&s) => {
                forwarded += 1;
                let [rec] = received else {
                    failures.push(format!(
                        "{t:?}: client got {s} but the backend received {} requests",
                        received.len()
                    ));
                    continue;
                };
                if rec.header("x-request-id") != Some(rid.as_str()) {
                    failures.push(format!(
                        "{t:?}: backend request carries x-request-id {:?}, expected {rid:?} \
                         (desync?)",
                        rec.header("x-request-id")
                    ));
                }
                if rec.method != "GET" {
                    failures.push(format!("{t:?}: backend received method {}", rec.method));
                }
                let (path, query) = match rec.target.split_once('?') {
                    Some((p, q)) => (p, Some(q)),
                    None => (rec.target.as_str(), None),
                };
                let violations = canonical_violations(path);
                if !violations.is_empty() {
                    failures.push(format!(
                        "{t:?}: backend received non-canonical path {path:?}: {}",
                        violations.join("; ")
                    ));
                }
                let actions = rec.header_all("x-writ-action");
                let writ_action = match actions.as_slice() {
                    [] => None,
                    [a] => Some(*a),
                    many => {
                        failures.push(format!(
                            "{t:?}: backend received several x-writ-action headers {many:?}"
                        ));
                        continue;
                    }
                };
                let reference = reference_route(&routes, path);
                *forwarded_by_action
                    .entry(writ_action.unwrap_or("<unmatched>").to_string())
                    .or_default() += 1;
                if reference != writ_action {
                    failures.push(format!(
                        "BYPASS {t:?}: writ classified {writ_action:?}, but the backend received \
                         {:?} which the reference routes to {reference:?}",
                        rec.target
                    ));
                }
                match log.get(&rid) {
                    None => failures.push(format!("{t:?}: no decision-log line for {rid}")),
                    Some(line) => {
                        let logged_path = line.get("path").and_then(Value::as_str);
                        let logged_action = line.get("action").and_then(Value::as_str);
                        if logged_path != Some(path) || logged_action != writ_action {
                            failures.push(format!(
                                "{t:?}: decision log says path {logged_path:?} action \
                                 {logged_action:?}, backend received {path:?} with action \
                                 {writ_action:?}"
                            ));
                        }
                    }
                }
                if query != client_query(t) {
                    failures.push(format!(
                        "{t:?}: client sent query {:?}, backend received {query:?} (target {:?})",
                        client_query(t),
                        rec.target
                    ));
                }
            }
            status => {
                let key = match status {
                    Some(s) => format!("{s} {}", o.reason),
                    None => "no response (closed)".to_string(),
                };
                *refused_by_reason.entry(key).or_default() += 1;
                if !received.is_empty() {
                    failures.push(format!(
                        "{t:?}: refused ({status:?} {}) but the backend received {:?}",
                        o.reason,
                        received.iter().map(|r| &r.target).collect::<Vec<_>>()
                    ));
                }
                if let Some(s) = status
                    && !matches!(s, 400 | 405 | 414 | 431)
                {
                    failures.push(format!(
                        "{t:?}: unexpected status {s} ({}) for a public/unmatched-allow config",
                        o.reason
                    ));
                }
            }
        }
    }
    let total_backend = env.backend.count();
    if total_backend != forwarded {
        failures.push(format!(
            "backend received {total_backend} requests, clients got {forwarded} 2xx answers"
        ));
    }

    let mut summary = format!(
        "differential: {} targets in {elapsed:?}; forwarded {forwarded}, refused {}\n",
        outcomes.len(),
        outcomes.len() - forwarded
    );
    for (a, n) in &forwarded_by_action {
        let _ = writeln!(summary, "  forwarded {a:<20} {n}");
    }
    for (r, n) in &refused_by_reason {
        let _ = writeln!(summary, "  refused   {r:<30} {n}");
    }
    println!("{summary}");

    // The corpus must exercise both sides and every action, or the check proves nothing.
    for (name, _) in ROUTES {
        assert!(
            forwarded_by_action.contains_key(*name),
            "generator never reached action {name}; tune the grammar\n{summary}"
        );
    }
    assert!(
        forwarded_by_action.contains_key("<unmatched>"),
        "generator never produced an unmatched path\n{summary}"
    );
    assert!(
        forwarded * 5 >= outcomes.len() && (outcomes.len() - forwarded) * 10 >= outcomes.len(),
        "corpus is lopsided (forwarded {forwarded} of {})\n{summary}",
        outcomes.len()
    );

    assert!(
        failures.is_empty(),
        "{} disagreement(s) between writ and the reference router; first ones:\n{}\n\n{summary}",
        failures.len(),
        failures
            .iter()
            .take(25)
            .map(|f| format!("  - {f}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

// ==========================================================================================
// === the reference itself ===
// ==========================================================================================

#[test]
fn reference_router_follows_spec_precedence() {
    let routes: Vec<(&'static str, Vec<Seg>)> = ROUTES
        .iter()
        .map(|(n, t)| (*n, parse_template(t)))
        .collect();
    let cases: &[(&str, Option<&str>)] = &[
        ("/", Some("root")),
        ("/admin", Some("admin")),
        ("/admin/users/7", Some("admin-user")),
        ("/admin/users", Some("admin-rest")),
        ("/admin/users/7/x", Some("admin-rest")),
        ("/admin/x", Some("admin-rest")),
        ("/public", None),
        ("/public/docs", Some("public-rest")),
        ("/public/docs/p", Some("public-doc")),
        ("/public/docs/p/q", Some("public-rest")),
        ("/api/v1/items/1", Some("item")),
        ("/api/v1/items/1/run", Some("item-run")),
        ("/api/v1/items", Some("items-any-version")),
        ("/api/v2/items", Some("items-any-version")),
        ("/a/b/c", Some("abc")),
        ("/a/b/d", Some("xbd")),
        ("/z/b/d", Some("xbd")),
        ("/a/b", Some("any-two")),
        ("/ADMIN", None),
        ("/ADMIN/x", Some("any-two")),
        ("/static/x", Some("static")),
        ("/static/x/y/z", Some("static")),
        ("/static", None),
        ("/files/n/raw", Some("file-raw")),
        ("/files/n/raw2", Some("files-rest")),
        ("/files/n", Some("files-rest")),
        ("/users/me/settings", Some("me-settings")),
        ("/users/you/settings", Some("user-settings")),
        ("/users/%C3%A9/settings", Some("user-settings")),
        ("/x/y/z", None),
    ];
    for (path, want) in cases {
        assert_eq!(
            reference_route(&routes, path),
            *want,
            "reference for {path}"
        );
    }
    assert!(
        canonical_violations("/a/b%2Fc")
            .iter()
            .any(|v| v.contains("2F"))
    );
    assert!(
        canonical_violations("/a/%2e")
            .iter()
            .any(|v| v.contains("unreserved"))
    );
    assert!(
        canonical_violations("/a/%c3")
            .iter()
            .any(|v| v.contains("uppercase"))
    );
    assert!(
        canonical_violations("/a//b")
            .iter()
            .any(|v| v.contains("empty"))
    );
    assert!(
        canonical_violations("/a/")
            .iter()
            .any(|v| v.contains("trailing"))
    );
    assert!(
        canonical_violations("/a/../b")
            .iter()
            .any(|v| v.contains("dot"))
    );
    assert!(canonical_violations("/a/%C3%A9/%252e").is_empty());
    assert!(canonical_violations("/").is_empty());
}
