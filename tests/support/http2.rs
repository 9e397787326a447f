//! HTTP/2 and async clients.
//!
//! * Raw frames: a literal-only HPACK encoder, a `:status` decoder and [`raw_h2`], for the
//!   HTTP/2 messages hyper refuses to build (uppercase names, connection-specific fields, a
//!   lying content-length) and for clients that misbehave on purpose (zero windows).
//! * hyper's own HTTP/1.1 and HTTP/2 clients over any stream (TLS by ALPN, or plain TCP), run
//!   to completion with [`block_on`].

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;

use super::http1::IO_TIMEOUT;

/// Upper bound for an async exchange run with [`block_on`].
pub const ASYNC_TIMEOUT: Duration = Duration::from_secs(10);

// ==========================================================================================
// === hyper clients ===
// ==========================================================================================

/// Runs `fut` on a fresh current-thread runtime; panics after [`ASYNC_TIMEOUT`].
pub fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    block_on_within(ASYNC_TIMEOUT, fut)
}

/// Runs `fut` on a fresh current-thread runtime; panics after `timeout`.
pub fn block_on_within<F: std::future::Future>(timeout: Duration, fut: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        tokio::time::timeout(timeout, fut)
            .await
            .expect("async exchange timed out")
    })
}

/// The request body type of the hyper clients here.
pub type ClientBody = Full<Bytes>;

/// A collected response.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub version: hyper::Version,
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {} {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// A writ rejection: status, problem+json, reason, request id matches the header.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, reason: &str) -> Value {
        assert_eq!(self.status.as_u16(), status, "{self:?}");
        let ct = self.header("content-type").unwrap_or("");
        assert!(
            ct.starts_with("application/problem+json"),
            "content-type {ct:?}: {self:?}"
        );
        let body = self.json();
        assert_eq!(body["reason"], reason, "{body}");
        assert_eq!(body["status"], status, "{body}");
        assert_eq!(
            body["request_id"].as_str(),
            self.header("x-request-id"),
            "{body}"
        );
        body
    }
}

/// Reads a whole response into an [`Answer`].
pub async fn collect(resp: Response<hyper::body::Incoming>) -> Answer {
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("response body").to_bytes();
    Answer {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body: body.to_vec(),
    }
}

/// An h2 client over any stream (TLS with ALPN h2, or plain TCP: prior knowledge).
pub async fn h2_client<S>(io: S) -> hyper::client::conn::http2::SendRequest<ClientBody>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    sender
}

/// An HTTP/1.1 client over any stream.
pub async fn h1_client<S>(io: S) -> hyper::client::conn::http1::SendRequest<ClientBody>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .expect("h1 handshake");
    tokio::spawn(conn);
    sender
}

/// A request with these headers and body, for [`h1_client`] / [`h2_client`].
pub fn req(method: &str, uri: &str, headers: &[(&str, &str)], body: &[u8]) -> Request<ClientBody> {
    let mut b = Request::builder().method(method).uri(uri);
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    b.body(Full::new(Bytes::copy_from_slice(body))).unwrap()
}

// ==========================================================================================
// === raw HTTP/2 frames ===
// ==========================================================================================

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const END_STREAM: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const ACK: u8 = 0x1;
pub const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;

/// One frame: 9-byte head (length, type, flags, stream) and `payload`.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap();
    assert!(len < (1 << 14), "keep frames under the default max size");
    let mut out = len.to_be_bytes()[1..].to_vec();
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// HPACK integer with an `n`-bit prefix, first byte ORed with `first`.
pub fn hpack_int(out: &mut Vec<u8>, first: u8, n: u32, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | u8::try_from(v).unwrap());
        return;
    }
    out.push(first | u8::try_from(max).unwrap());
    v -= max;
    while v >= 128 {
        out.push(u8::try_from(v % 128).unwrap() | 0x80);
        v /= 128;
    }
    out.push(u8::try_from(v).unwrap());
}

/// One raw header field: name and value bytes.
pub type Field<'a> = (&'a [u8], &'a [u8]);

/// A header block of "literal without indexing, new name" fields, bytes exactly as given
/// (no Huffman, no lower-casing, no validation).
pub fn hpack(fields: &[Field<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, v) in fields {
        out.push(0x00);
        hpack_int(&mut out, 0, 7, n.len());
        out.extend_from_slice(n);
        hpack_int(&mut out, 0, 7, v.len());
        out.extend_from_slice(v);
    }
    out
}

/// A frame head read off the wire: payload length, type, flags, stream id.
pub fn frame_head(head: &[u8]) -> (usize, u8, u8, u32) {
    let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
    let sid = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    (len, head[3], head[4], sid)
}

/// The `:status` of a response HEADERS frame (padding and priority fields skipped).
pub fn headers_status(flags: u8, payload: &[u8]) -> Option<u16> {
    let mut block = payload;
    if flags & 0x8 != 0 {
        let pad = usize::from(block[0]);
        block = &block[1..block.len() - pad];
    }
    if flags & 0x20 != 0 {
        block = &block[5..];
    }
    decode_status(block)
}

/// What the server did with stream 1.
#[derive(Debug, PartialEq)]
pub enum H2Outcome {
    /// A response HEADERS frame; the `:status` if it could be decoded.
    Response(Option<u16>),
    /// RST_STREAM with this error code.
    Reset(u32),
    /// GOAWAY with this error code.
    GoAway(u32),
    /// The connection closed with no answer for the stream.
    Closed,
    /// Nothing within the timeout.
    Silence,
}

impl H2Outcome {
    pub fn is_refusal(&self) -> bool {
        match self {
            H2Outcome::Response(Some(s)) => (400..500).contains(s),
            H2Outcome::Reset(_) | H2Outcome::GoAway(_) | H2Outcome::Closed => true,
            _ => false,
        }
    }
}

pub fn read_exact_by(stream: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> Option<bool> {
    let mut got = 0;
    while got < buf.len() {
        if Instant::now() > deadline {
            return None;
        }
        match stream.read(&mut buf[got..]) {
            Ok(0) => return Some(false),
            Ok(n) => got += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some(false),
        }
    }
    Some(true)
}

/// Decodes the `:status` at the start of a response header block (static-table index, or a
/// literal with the `:status` name whose value is plain or Huffman-coded digits).
pub fn decode_status(block: &[u8]) -> Option<u16> {
    let mut i = 0;
    // Skip dynamic table size updates (001xxxxx).
    while i < block.len() && block[i] & 0xe0 == 0x20 {
        i += 1;
        if block[i - 1] & 0x1f == 0x1f {
            while i < block.len() && block[i] & 0x80 != 0 {
                i += 1;
            }
            i += 1;
        }
    }
    let b = *block.get(i)?;
    if b & 0x80 != 0 {
        return match b & 0x7f {
            8 => Some(200),
            9 => Some(204),
            10 => Some(206),
            11 => Some(304),
            12 => Some(400),
            13 => Some(404),
            14 => Some(500),
            _ => None,
        };
    }
    let idx = if b & 0xc0 == 0x40 {
        b & 0x3f
    } else if b & 0xe0 == 0x00 {
        b & 0x0f
    } else {
        return None;
    };
    if !(8..=14).contains(&idx) {
        return None;
    }
    let lb = *block.get(i + 1)?;
    let len = usize::from(lb & 0x7f);
    let raw = block.get(i + 2..i + 2 + len)?;
    let digits = if lb & 0x80 == 0 {
        String::from_utf8(raw.to_vec()).ok()?
    } else {
        // Huffman: '0'-'2' are 5-bit 00000..00010, '3'-'9' are 6-bit 011001..011111.
        let bits: Vec<u8> = raw
            .iter()
            .flat_map(|byte| (0..8).rev().map(move |k| (byte >> k) & 1))
            .collect();
        let mut out = String::new();
        let mut p = 0;
        while out.len() < 3 && p + 5 <= bits.len() {
            let v5 = bits[p..p + 5].iter().fold(0u8, |a, b| a << 1 | b);
            if v5 <= 2 {
                out.push(char::from(b'0' + v5));
                p += 5;
            } else if p + 6 <= bits.len() {
                let v6 = bits[p..p + 6].iter().fold(0u8, |a, b| a << 1 | b);
                if (0x19..=0x1f).contains(&v6) {
                    out.push(char::from(b'0' + 3 + (v6 - 0x19)));
                    p += 6;
                } else {
                    return None;
                }
            } else {
                return None;
            }
        }
        out
    };
    digits.parse().ok()
}

/// Opens a prior-knowledge h2 connection, sends the preface, empty SETTINGS and `frames`,
/// then reads until the server answers stream 1 (acknowledging its SETTINGS, answering PING).
pub fn raw_h2(addr: SocketAddr, frames: &[Vec<u8>]) -> H2Outcome {
    raw_h2_paced(addr, frames, Duration::ZERO)
}

/// Like [`raw_h2`], but waits `pause` before each frame after the first (so that writ has
/// decided and started forwarding before the next frame arrives).
pub fn raw_h2_paced(addr: SocketAddr, frames: &[Vec<u8>], pause: Duration) -> H2Outcome {
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut out = PREFACE.to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    for (i, f) in frames.iter().enumerate() {
        if i > 0 && !pause.is_zero() {
            if s.write_all(&out).is_err() {
                return H2Outcome::Closed;
            }
            out.clear();
            thread::sleep(pause);
        }
        out.extend_from_slice(f);
    }
    if s.write_all(&out).is_err() {
        return H2Outcome::Closed;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut head = [0u8; 9];
        match read_exact_by(&mut s, &mut head, deadline) {
            None => return H2Outcome::Silence,
            Some(false) => return H2Outcome::Closed,
            Some(true) => {}
        }
        let (len, kind, flags, sid) = frame_head(&head);
        let mut payload = vec![0u8; len];
        match read_exact_by(&mut s, &mut payload, deadline) {
            None => return H2Outcome::Silence,
            Some(false) => return H2Outcome::Closed,
            Some(true) => {}
        }
        match kind {
            SETTINGS if flags & ACK == 0 => {
                let _ = s.write_all(&frame(SETTINGS, ACK, 0, &[]));
            }
            PING if flags & ACK == 0 => {
                let _ = s.write_all(&frame(PING, ACK, 0, &payload));
            }
            HEADERS if sid == 1 => return H2Outcome::Response(headers_status(flags, &payload)),
            RST_STREAM if sid == 1 => {
                return H2Outcome::Reset(u32::from_be_bytes(payload[..4].try_into().unwrap()));
            }
            GOAWAY => {
                return H2Outcome::GoAway(u32::from_be_bytes(payload[4..8].try_into().unwrap()));
            }
            _ => {}
        }
    }
}

/// The standard pseudo-headers for a request to writ, then `extra` fields.
pub fn request_block(
    addr: SocketAddr,
    method: &str,
    path: &[u8],
    extra: &[(&[u8], &[u8])],
) -> Vec<u8> {
    let authority = addr.to_string();
    let mut fields: Vec<Field<'_>> = vec![
        (b":method", method.as_bytes()),
        (b":scheme", b"http"),
        (b":authority", authority.as_bytes()),
        (b":path", path),
    ];
    fields.extend_from_slice(extra);
    hpack(&fields)
}
