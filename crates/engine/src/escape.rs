//! Percent-escapes and single path segments: the primitives that both the
//! normalize stage (for requests) and template parsing (for the config) use, so
//! a template literal is written exactly the way a request segment normalizes.

use crate::decision::{Denial, Reason};
use crate::vocab::{Choice, SegmentPolicy};

pub(crate) fn bad(detail: &str) -> Denial {
    Denial::new(Reason::BadRequest, detail)
}

pub(crate) fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

pub(crate) fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn push_escaped(out: &mut String, b: u8) {
    out.push('%');
    out.push(HEX[(b >> 4) as usize] as char);
    out.push(HEX[(b & 15) as usize] as char);
}

/// Normalizes one raw segment (no `/` inside): decodes unreserved escapes once,
/// uppercases the hex of the others, refuses what a backend could read differently.
pub fn normalize_segment(raw: &[u8], policy: &SegmentPolicy) -> Result<String, Denial> {
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == b'%' {
            let (Some(h), Some(l)) = (
                raw.get(i + 1).copied().and_then(hex),
                raw.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(bad("invalid percent-escape in path"));
            };
            let d = h << 4 | l;
            i += 3;
            if is_unreserved(d) {
                out.push(d as char);
            } else if d == b'/' {
                if policy.encoded_slash == Choice::Reject {
                    return Err(bad("encoded slash (%2F) in path"));
                }
                push_escaped(&mut out, d);
            } else if d == b'\\' {
                return Err(bad("encoded backslash (%5C) in path"));
            } else if d < 0x20 || d == 0x7f {
                return Err(bad("encoded control character in path"));
            } else if d == b';' {
                if policy.semicolon == Choice::Reject {
                    return Err(bad("encoded semicolon (%3B) in path"));
                }
                push_escaped(&mut out, d);
            } else {
                push_escaped(&mut out, d);
            }
            continue;
        }
        i += 1;
        match b {
            b'\\' => return Err(bad("backslash in path")),
            b'#' => return Err(bad("fragment in request target")),
            b';' if policy.semicolon == Choice::Reject => {
                return Err(bad("semicolon (matrix parameter) in path"));
            }
            0..=0x20 | 0x7f => return Err(bad("control character or space in path")),
            0x80..=0xff => push_escaped(&mut out, b),
            _ => out.push(b as char),
        }
    }
    Ok(out)
}

/// A normalized path segment (or `{*rest}` value) as the backend's router
/// decodes it: every `%XX` to its byte, `+` left alone (it is literal in a
/// path). `None` when the bytes are not UTF-8: such a value cannot equal a claim.
pub fn decode_path_value(s: &str) -> Option<std::borrow::Cow<'_, str>> {
    if !s.contains('%') {
        return Some(std::borrow::Cow::Borrowed(s));
    }
    String::from_utf8(percent_decode(s, false))
        .ok()
        .map(std::borrow::Cow::Owned)
}

/// A query or form name as `application/x-www-form-urlencoded` parsers read it
/// (`+` is a space); bytes that are not UTF-8 become U+FFFD.
pub(crate) fn decode_component(s: &str) -> String {
    String::from_utf8_lossy(&percent_decode(s, true)).into_owned()
}

/// Every valid `%XX` to its byte (an invalid escape stays as written), and `+`
/// to a space when `plus_is_space`.
fn percent_decode(s: &str, plus_is_space: bool) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let escape = (b[i] == b'%')
            .then(|| Some((hex(*b.get(i + 1)?)?, hex(*b.get(i + 2)?)?)))
            .flatten();
        match (b[i], escape) {
            (_, Some((h, l))) => {
                out.push(h << 4 | l);
                i += 3;
            }
            (b'+', None) if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            (c, None) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}
