//! A `tools/list` answer filtered to the tools the caller could call (SPEC:
//! Request bodies, MCP). Only that one answer is held: a JSON answer is read
//! whole (bounded), an SSE stream is passed on event by event and only the
//! event carrying the answer is rewritten; every other response streams
//! through untouched.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use serde_json::Value;

use super::Body;
use writ_engine::authenticate::token::Verified;
use writ_engine::config::Config;

/// The most of a JSON `tools/list` answer (or one SSE event) writ holds.
const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// Who asks, decided once per `tools/list` request.
#[derive(Clone)]
pub struct ToolFilter {
    pub config: Arc<Config>,
    pub group: usize,
    pub params: Vec<(String, String)>,
    pub token: Option<Arc<Verified>>,
    pub now: f64,
    /// The request's JSON-RPC id: only the answer to it is filtered.
    pub id: Value,
}

impl ToolFilter {
    fn visible(&self, tool: &Value) -> bool {
        let Some(name) = tool.get("name").and_then(Value::as_str) else {
            return false;
        };
        writ_engine::decide::tool_visible(
            &self.config.policy,
            self.group,
            &self.params,
            self.token.as_deref(),
            name,
            self.now,
        )
    }

    /// Filters one JSON-RPC message when it is the answer; `None`: not it.
    fn message(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        let mut msg: Value = serde_json::from_slice(bytes).ok()?;
        if msg.get("id") != Some(&self.id) {
            return None;
        }
        let tools = msg.pointer_mut("/result/tools")?.as_array_mut()?;
        tools.retain(|t| self.visible(t));
        serde_json::to_vec(&msg).ok()
    }
}

/// Why an answer could not be filtered (the caller then refuses it: an
/// unfiltered list would show what the caller may not call).
#[derive(Debug)]
pub struct Unfilterable;

/// A JSON answer: read whole (bounded), filtered, re-framed.
pub async fn json(filter: &ToolFilter, body: Body) -> Result<Bytes, Unfilterable> {
    let limited = http_body_util::Limited::new(body, MAX_ANSWER);
    let bytes = limited
        .collect()
        .await
        .map_err(|_| Unfilterable)?
        .to_bytes();
    match filter.message(&bytes) {
        Some(out) => Ok(Bytes::from(out)),
        // Not the answer (an error answer, another id): passed on as it came.
        None => Ok(bytes),
    }
}

/// An SSE stream: events are passed on as they complete; the answer's event
/// has its `data` rewritten. After it, frames pass through untouched.
pub struct Sse {
    inner: Body,
    filter: ToolFilter,
    pending: BytesMut,
    done: bool,
}

impl Sse {
    pub fn new(inner: Body, filter: ToolFilter) -> Sse {
        Sse {
            inner,
            filter,
            pending: BytesMut::new(),
            done: false,
        }
    }

    /// Complete events in `pending`, each filtered; the rest stays pending.
    fn drain_events(&mut self) -> Bytes {
        let mut out = BytesMut::new();
        while !self.done {
            let Some(end) = event_end(&self.pending) else {
                break;
            };
            let event = self.pending.split_to(end);
            match self.rewrite(&event) {
                Some(new) => {
                    out.extend_from_slice(&new);
                    self.done = true;
                }
                None => out.extend_from_slice(&event),
            }
        }
        if self.done {
            out.extend_from_slice(&self.pending.split());
        }
        out.freeze()
    }

    /// The event with its data filtered, when it carries the answer.
    fn rewrite(&self, event: &[u8]) -> Option<Vec<u8>> {
        let text = std::str::from_utf8(event).ok()?;
        let mut data = String::new();
        let mut others = Vec::new();
        for line in text.lines() {
            match line.strip_prefix("data:") {
                Some(d) => {
                    if !data.is_empty() {
                        data.push('\n');
                    }
                    data.push_str(d.strip_prefix(' ').unwrap_or(d));
                }
                None if line.is_empty() => {}
                None => others.push(line),
            }
        }
        let filtered = self.filter.message(data.as_bytes())?;
        let mut out = Vec::with_capacity(event.len());
        for l in others {
            out.extend_from_slice(l.as_bytes());
            out.push(b'\n');
        }
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&filtered);
        out.extend_from_slice(b"\n\n");
        Some(out)
    }
}

/// The end (exclusive) of the first complete event: a blank line.
fn event_end(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i] == b'\n' && b[i + 1] == b'\n' {
            return Some(i + 2);
        }
        if b[i] == b'\n' && b[i + 1] == b'\r' && b.get(i + 2) == Some(&b'\n') {
            return Some(i + 3);
        }
        i += 1;
    }
    None
}

impl http_body::Body for Sse {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        loop {
            if this.done && this.pending.is_empty() {
                return Pin::new(&mut this.inner).poll_frame(cx);
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    this.pending.extend_from_slice(&data);
                    if this.pending.len() > MAX_ANSWER {
                        // One event this large is not an answer writ holds: pass it on.
                        this.done = true;
                    }
                    let out = this.drain_events();
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                }
                Poll::Ready(None) => {
                    this.done = true;
                    let rest = this.pending.split().freeze();
                    if rest.is_empty() {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(rest))));
                }
                other => return other,
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A backend body handing out the given chunks, one per poll.
    struct Chunks(VecDeque<&'static [u8]>);

    impl http_body::Body for Chunks {
        type Data = Bytes;
        type Error = hyper::Error;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
            Poll::Ready(
                self.0
                    .pop_front()
                    .map(|c| Ok(Frame::data(Bytes::from_static(c)))),
            )
        }
    }

    fn filter() -> ToolFilter {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("config/examples/mcp-server.yaml");
        let config = writ_engine::config::load(&p).unwrap();
        ToolFilter {
            config: Arc::new(config),
            group: 0,
            params: Vec::new(),
            // No token: no tool of the example is public, so every tool is hidden.
            token: None,
            now: 0.0,
            id: Value::from(3),
        }
    }

    #[test]
    fn only_the_answer_event_is_rewritten_even_when_split_across_frames() {
        let chunks: VecDeque<&'static [u8]> = VecDeque::from(vec![
            &b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\nevent: mess"[..],
            &b"age\ndata: {\"jsonrpc\":\"2.0\",\"id\":3,\"result\":{\"tools\":[{\"name\":\"get_order\"},{\"name\":\"deploy\"}]}}\n"[..],
            &b"\n: trailing comment\n\n"[..],
        ]);
        let body = Sse::new(Chunks(chunks).boxed(), filter());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let out = rt.block_on(body.collect()).unwrap().to_bytes();
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert!(
            text.starts_with(
                "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "event: message\ndata: {\"id\":3,\"jsonrpc\":\"2.0\",\"result\":{\"tools\":[]}}\n\n"
            ),
            "{text}"
        );
        assert!(text.ends_with(": trailing comment\n\n"), "{text}");
    }

    #[test]
    fn an_answer_to_another_id_is_passed_on_as_it_came() {
        let f = filter();
        assert!(
            f.message(br#"{"jsonrpc":"2.0","id":4,"result":{"tools":[{"name":"x"}]}}"#)
                .is_none()
        );
        assert_eq!(event_end(b"data: x\r\n\r\nrest"), Some(11));
        assert_eq!(event_end(b"data: x\n"), None);
    }
}
