//! A byte-exact HTTP/1.1 client over `std::net::TcpStream`: never normalizes the request
//! target (the point of half of the suites) and never hangs (timeouts everywhere).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

/// Upper bound for anything the harness waits on over the network.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A response as read off the wire.
#[derive(Clone, Debug)]
pub struct RawResponse {
    pub status: u16,
    pub reason_phrase: String,
    /// Header lines in order, names as sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The values of every field named `name` (compared case-insensitively), in order.
pub(super) fn header_values<'a>(
    headers: &'a [(String, String)],
    name: &str,
) -> impl Iterator<Item = &'a str> {
    headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

impl RawResponse {
    /// First value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_values(&self.headers, name).next()
    }

    /// All values of a header (case-insensitive name).
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        header_values(&self.headers, name).collect()
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON; panics with the body otherwise.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response body is not JSON ({e}): status {} body {:?}",
                self.status,
                self.body_text()
            )
        })
    }

    /// Asserts a writ rejection: status, `application/problem+json`, every RFC 9457 field SPEC
    /// requires, `reason`, and `request_id` equal to the `x-request-id` response header.
    /// Returns the problem body.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, reason: &str) -> Value {
        assert_eq!(
            self.status,
            status,
            "status (expected reason {reason}); response: {}",
            self.describe()
        );
        let ct = self.header("content-type").unwrap_or("");
        assert!(
            ct.to_ascii_lowercase()
                .starts_with("application/problem+json"),
            "content-type should be application/problem+json, got {ct:?}; {}",
            self.describe()
        );
        let body = self.json();
        assert_eq!(
            body.get("reason").and_then(Value::as_str),
            Some(reason),
            "problem reason; {}",
            self.describe()
        );
        assert_eq!(
            body.get("status").and_then(Value::as_u64),
            Some(u64::from(status)),
            "problem status field; {}",
            self.describe()
        );
        for field in ["title", "detail"] {
            assert!(
                body.get(field).is_some_and(Value::is_string),
                "problem body must carry a string {field:?}; {}",
                self.describe()
            );
        }
        let action = body.get("action");
        assert!(
            action.is_some_and(|a| a.is_string() || a.is_null()),
            "problem body must carry `action` (string or null); {}",
            self.describe()
        );
        let rid = body.get("request_id").and_then(Value::as_str);
        assert!(
            rid.is_some_and(|r| !r.is_empty()),
            "problem body must carry a request_id; {}",
            self.describe()
        );
        assert_eq!(
            self.header("x-request-id"),
            rid,
            "x-request-id header must equal the body's request_id; {}",
            self.describe()
        );
        body
    }

    /// Like [`assert_problem`](Self::assert_problem) and also checks the body's `action`.
    #[track_caller]
    pub fn assert_problem_action(&self, status: u16, reason: &str, action: Option<&str>) -> Value {
        let body = self.assert_problem(status, reason);
        match action {
            Some(a) => assert_eq!(
                body.get("action").and_then(Value::as_str),
                Some(a),
                "problem action; {}",
                self.describe()
            ),
            None => assert!(
                body.get("action").is_some_and(Value::is_null),
                "problem action should be null; {}",
                self.describe()
            ),
        }
        body
    }

    /// Asserts a 401 `invalid_token` rejection with this reason.
    #[track_caller]
    pub fn assert_invalid_token(&self, reason: &str) -> Value {
        let body = self.assert_problem(401, reason);
        let www = self.header("www-authenticate").unwrap_or("");
        assert!(
            www.starts_with("Bearer ") && www.contains("error=\"invalid_token\""),
            "WWW-Authenticate should be Bearer error=\"invalid_token\", got {www:?}; {}",
            self.describe()
        );
        assert!(
            www.contains("error_description=\""),
            "invalid_token challenge should carry error_description, got {www:?}"
        );
        body
    }

    /// Short description for assertion messages.
    pub fn describe(&self) -> String {
        let body = self.body_text();
        let body = if body.len() > 600 {
            format!("{}…", &body[..600])
        } else {
            body
        };
        format!(
            "HTTP {} {} headers={:?} body={body:?}",
            self.status, self.reason_phrase, self.headers
        )
    }
}

/// A client connection for sending several requests in a row (pipelining, keep-alive).
pub struct RawConn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl RawConn {
    pub fn connect(addr: SocketAddr) -> io::Result<RawConn> {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        let _ = stream.set_nodelay(true);
        let writer = stream.try_clone()?;
        Ok(RawConn {
            reader: BufReader::new(stream),
            writer,
        })
    }

    /// Writes bytes as given. A write error is returned (the peer may have closed early).
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes)?;
        self.writer.flush()
    }

    /// Changes the read timeout of this connection (default [`IO_TIMEOUT`]).
    pub fn set_read_timeout(&self, timeout: Duration) -> io::Result<()> {
        self.writer.set_read_timeout(Some(timeout))
    }

    /// Half-closes the write side.
    pub fn finish_writing(&mut self) {
        let _ = self.writer.shutdown(Shutdown::Write);
    }

    /// Reads one response (`head_request`: the request was HEAD, no body follows).
    pub fn read_response(&mut self, head_request: bool) -> io::Result<RawResponse> {
        read_response(&mut self.reader, head_request)
    }

    /// Reads until the peer closes (or times out); returns everything read.
    pub fn read_to_end(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = self.reader.read_to_end(&mut out);
        out
    }
}

fn read_line(r: &mut impl BufRead) -> io::Result<String> {
    let mut buf = Vec::new();
    let n = r.read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    while matches!(buf.last(), Some(b'\n' | b'\r')) {
        buf.pop();
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn read_response(r: &mut impl BufRead, head_request: bool) -> io::Result<RawResponse> {
    loop {
        let status_line = read_line(r)?;
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        if !version.starts_with("HTTP/") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad status line {status_line:?}"),
            ));
        }
        let status: u16 = parts.next().unwrap_or("").parse().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad status line {status_line:?}"),
            )
        })?;
        let reason_phrase = parts.next().unwrap_or("").to_string();
        let mut headers = Vec::new();
        loop {
            let line = read_line(r)?;
            if line.is_empty() {
                break;
            }
            if let Some((n, v)) = line.split_once(':') {
                headers.push((n.trim().to_string(), v.trim().to_string()));
            }
        }
        if (100..200).contains(&status) && status != 101 {
            continue; // interim response
        }
        let mut resp = RawResponse {
            status,
            reason_phrase,
            headers,
            body: Vec::new(),
        };
        if head_request || status == 204 || status == 304 || status == 101 {
            return Ok(resp);
        }
        let chunked = resp
            .header_all("transfer-encoding")
            .iter()
            .any(|v| v.to_ascii_lowercase().contains("chunked"));
        if chunked {
            loop {
                let size_line = read_line(r)?;
                let size_hex = size_line.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(size_hex, 16).map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("bad chunk size {size_line:?}"),
                    )
                })?;
                if size == 0 {
                    // trailers
                    loop {
                        if read_line(r)?.is_empty() {
                            break;
                        }
                    }
                    break;
                }
                let mut chunk = vec![0u8; size];
                r.read_exact(&mut chunk)?;
                resp.body.extend_from_slice(&chunk);
                let _ = read_line(r)?; // CRLF after chunk
            }
        } else if let Some(cl) = resp.header("content-length") {
            let len: usize = cl.parse().map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad content-length {cl:?}"),
                )
            })?;
            let mut body = vec![0u8; len];
            r.read_exact(&mut body)?;
            resp.body = body;
        } else {
            r.read_to_end(&mut resp.body)?;
        }
        return Ok(resp);
    }
}

fn is_head(bytes: &[u8]) -> bool {
    bytes.starts_with(b"HEAD ")
}

/// Sends bytes as given and reads one response.
pub fn try_send_raw(addr: SocketAddr, bytes: &[u8]) -> io::Result<RawResponse> {
    let mut conn = RawConn::connect(addr)?;
    // The server may answer and close before reading everything: still read its answer.
    let write_result = conn.send(bytes);
    match conn.read_response(is_head(bytes)) {
        Ok(r) => Ok(r),
        Err(e) => Err(write_result.err().unwrap_or(e)),
    }
}

/// Sends bytes as given and reads one response; panics if none arrives within the timeouts.
#[track_caller]
pub fn send_raw(addr: SocketAddr, bytes: &[u8]) -> RawResponse {
    try_send_raw(addr, bytes).unwrap_or_else(|e| {
        panic!(
            "no HTTP response from {addr} to {:?}: {e}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
        )
    })
}

/// Builds `METHOD TARGET HTTP/1.1\r\n` + headers byte for byte as given. Adds `Host: ADDR` unless a
/// Host header is given, and `Content-Length` when a body is given (or for POST/PUT/PATCH) unless
/// Content-Length or Transfer-Encoding is given.
pub fn build_request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(format!("{method} {target} HTTP/1.1\r\n").as_bytes());
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    if !has("host") {
        out.extend_from_slice(format!("Host: {addr}\r\n").as_bytes());
    }
    for (n, v) in headers {
        out.extend_from_slice(n.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let framed = has("content-length") || has("transfer-encoding");
    if !framed && (!body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH")) {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// A request written byte for byte (see [`build_request`]); returns the response or an error.
pub fn try_request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<RawResponse> {
    try_send_raw(addr, &build_request(addr, method, target, headers, body))
}

/// A request written byte for byte (see [`build_request`]); panics if no response arrives.
#[track_caller]
pub fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> RawResponse {
    send_raw(addr, &build_request(addr, method, target, headers, body))
}

/// Encodes `body` with chunked transfer coding, in pieces of `chunk` bytes.
pub fn chunked(body: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in body.chunks(chunk.max(1)) {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// One HTTP/1.1 request read off `stream` by a test's own tiny server: the header fields
/// (names lowercased, values trimmed) and the `Content-Length` body.
pub fn read_request(stream: &std::net::TcpStream) -> (Vec<(String, String)>, Vec<u8>) {
    use std::io::{BufRead, BufReader, Read};
    let mut r = BufReader::new(stream);
    let mut headers = Vec::new();
    let mut len = 0;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
            if k == "content-length" {
                len = v.parse().unwrap_or(0);
            }
            headers.push((k, v));
        }
    }
    let mut body = vec![0; len];
    let _ = r.read_exact(&mut body);
    (headers, body)
}
