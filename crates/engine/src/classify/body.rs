//! Classification by the body (SPEC: Request bodies). Runs after the router
//! found an action that reads JSON (`body: json`, or an MCP endpoint): the
//! body is checked (content type, size) and parsed strictly once; on an MCP
//! endpoint the JSON-RPC envelope picks the endpoint's action, and the
//! protocol's mirrored routing headers must say what the body says.

use base64::Engine as _;
use serde_json::Value;

use crate::decision::{Denial, Reason, Staged};
use crate::json::{is_json_content_type, parse_strict};
use crate::policy::Policy;
use crate::policy::mcp::{PROMPTS_GET, RESOURCES_READ, TOOLS_CALL};
use crate::policy::router::RouteMatch;
use crate::request::Request;

/// What classification found, the body included.
#[derive(Debug, Clone)]
pub struct Classified {
    /// The action and its path parameters.
    pub route: RouteMatch,
    /// The parsed body, when the action reads one.
    pub body: Option<Value>,
}

/// What the caller must know whatever the outcome: whether the body must be
/// read first, and the JSON-RPC call on an MCP endpoint.
#[derive(Debug, Clone, Default)]
pub struct BodyFacts {
    /// The action reads a JSON body and [`Request::json_body`] had none: read
    /// it (bounded) and decide again.
    pub needs_body: bool,
    /// Set when the request reached an MCP endpoint (denials answer in JSON-RPC).
    pub mcp: Option<McpCall>,
}

/// The JSON-RPC request on an MCP endpoint, as far as it was read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct McpCall {
    /// The request's `id` (`None`: a notification, or not read).
    pub id: Option<Value>,
    /// The JSON-RPC method.
    pub method: Option<String>,
    /// `params.name` of a `tools/call` (the decision log's `tool`).
    pub tool: Option<String>,
}

fn bad(detail: impl Into<String>) -> Denial {
    Denial::new(Reason::BadRequest, detail)
}

/// The body step of the classify stage.
pub fn classify_body(
    policy: &Policy,
    req: &Request<'_>,
    route: RouteMatch,
    facts: &mut BodyFacts,
) -> Staged<Classified> {
    Staged::run(|steps| {
        let action = policy.action(route.action);
        if !action.body_json {
            return Ok(Classified { route, body: None });
        }
        steps.ran("classify", "json body");
        let group = action.mcp_group;
        if group.is_some() {
            facts.mcp = Some(McpCall::default());
        }
        if !is_json_content_type(req.headers) {
            return Err(bad(
                "this action reads a JSON body: Content-Type must be application/json",
            ));
        }
        let Some(bytes) = req.json_body else {
            facts.needs_body = true;
            return Err(bad("the JSON body was not read"));
        };
        let max = policy.requests.max_json_body;
        if bytes.len() > max {
            return Err(Denial::new(
                Reason::BodyTooLarge,
                format!("JSON bodies are read before deciding and may be at most {max} bytes"),
            ));
        }
        let body = parse_strict(bytes).map_err(|e| bad(e.to_string()))?;
        let Some(g) = group else {
            return Ok(Classified {
                route,
                body: Some(body),
            });
        };
        steps.ran("classify", "mcp");
        let call = envelope(&body, facts)?;
        mirrored_headers(req.headers, &call, &body)?;
        let Some(action) = policy.mcp_groups[g].select(call.method, call.name) else {
            return Err(Denial::new(
                Reason::NoMatchingAction,
                format!("no action names the MCP call `{}`", call.label()),
            ));
        };
        Ok(Classified {
            route: RouteMatch {
                action,
                params: route.params,
            },
            body: Some(body),
        })
    })
}

/// The parts of a JSON-RPC request classification reads.
struct Envelope<'b> {
    method: &'b str,
    /// `params.name` (tools, prompts) or `params.uri` (resources).
    name: Option<&'b str>,
}

impl Envelope<'_> {
    fn label(&self) -> String {
        match self.name {
            Some(n) => format!("{} {n}", self.method),
            None => self.method.to_string(),
        }
    }
}

/// One JSON-RPC 2.0 request or notification (SPEC: a batch, a non-string
/// `method`, a `tools/call` without a string `params.name` are 400).
fn envelope<'b>(body: &'b Value, facts: &mut BodyFacts) -> Result<Envelope<'b>, Denial> {
    let obj = match body {
        Value::Object(o) => o,
        Value::Array(_) => return Err(bad("JSON-RPC batches are refused: send one request")),
        _ => return Err(bad("the body is not a JSON-RPC request object")),
    };
    let call = facts.mcp.get_or_insert_with(McpCall::default);
    match obj.get("id") {
        None => {}
        Some(id @ (Value::String(_) | Value::Number(_))) => call.id = Some(id.clone()),
        Some(_) => return Err(bad("a JSON-RPC `id` must be a string or a number")),
    }
    if obj.get("jsonrpc") != Some(&Value::String("2.0".into())) {
        return Err(bad("`jsonrpc` must be \"2.0\""));
    }
    let Some(Value::String(method)) = obj.get("method") else {
        return Err(bad(
            "`method` must be a string (responses and batches are refused)",
        ));
    };
    call.method = Some(method.clone());
    let params = obj.get("params");
    if params.is_some_and(|p| !p.is_object() && !p.is_array()) {
        return Err(bad("`params` must be an object"));
    }
    let field = match method.as_str() {
        TOOLS_CALL | PROMPTS_GET => Some("name"),
        RESOURCES_READ => Some("uri"),
        _ => None,
    };
    let name = match field {
        None => None,
        Some(f) => match params.and_then(|p| p.get(f)) {
            Some(Value::String(n)) => Some(n.as_str()),
            _ => {
                return Err(bad(format!("`{method}` needs a string `params.{f}`")));
            }
        },
    };
    if method == TOOLS_CALL {
        call.tool = name.map(str::to_string);
        if let Some(args) = params.and_then(|p| p.get("arguments"))
            && !args.is_object()
        {
            return Err(bad("`params.arguments` must be an object"));
        }
    }
    Ok(Envelope { method, name })
}

/// Mirrored routing headers (MCP Streamable HTTP, SEP-2243): `Mcp-Method`,
/// `Mcp-Name` and `Mcp-Param-*` must say what the body says, or a server (or
/// an intermediary) reading the header would act on something writ did not
/// decide. writ itself decides on the body only.
fn mirrored_headers(
    headers: &http::HeaderMap,
    call: &Envelope<'_>,
    body: &Value,
) -> Result<(), Denial> {
    let one = |name: &str| -> Result<Option<String>, Denial> {
        let mut all = headers.get_all(name).iter();
        match (all.next(), all.next()) {
            (None, _) => Ok(None),
            (Some(v), None) => decode_header(v.as_bytes())
                .map(Some)
                .ok_or_else(|| bad(format!("`{name}` is not a readable header value"))),
            (Some(_), Some(_)) => Err(bad(format!("`{name}` is sent more than once"))),
        }
    };
    if let Some(m) = one("mcp-method")?
        && m != call.method
    {
        return Err(bad("`Mcp-Method` does not match the body's `method`"));
    }
    if let Some(n) = one("mcp-name")? {
        let body_name = call.name.or_else(|| {
            body.pointer("/params/uri")
                .or_else(|| body.pointer("/params/name"))
                .and_then(Value::as_str)
        });
        if body_name != Some(n.as_str()) {
            return Err(bad("`Mcp-Name` does not match the body"));
        }
    }
    let args = body.pointer("/params/arguments").and_then(Value::as_object);
    for (name, value) in headers {
        let Some(param) = name.as_str().strip_prefix("mcp-param-") else {
            continue;
        };
        let Some(text) = decode_header(value.as_bytes()) else {
            return Err(bad(format!("`{name}` is not a readable header value")));
        };
        // The header names the argument through the tool's `x-mcp-header`;
        // writ checks the top-level argument of that name when there is one.
        let arg = args.and_then(|a| {
            a.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(param))
                .map(|(_, v)| v)
        });
        let Some(arg) = arg else { continue };
        let same = match arg {
            Value::String(s) => *s == text,
            Value::Number(n) => n.to_string() == text,
            Value::Bool(b) => b.to_string() == text,
            _ => false,
        };
        if !same {
            return Err(bad(format!("`{name}` does not match the body's argument")));
        }
    }
    Ok(())
}

/// A header value as text: visible ASCII, or `=?base64?…?=` (SEP-2243's
/// encoding for values that are not).
fn decode_header(v: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(v).ok()?;
    match s
        .strip_prefix("=?base64?")
        .and_then(|r| r.strip_suffix("?="))
    {
        Some(b64) => {
            let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
            String::from_utf8(raw).ok()
        }
        None => Some(s.to_string()),
    }
}
