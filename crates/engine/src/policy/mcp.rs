//! MCP endpoints (SPEC: Request bodies, MCP): the `mcp:` actions that share one
//! endpoint (host, path, POST) form a group; the router knows only the group's
//! first action, and classification picks the group's action from the JSON-RPC
//! body. Built once at load: the selection is a walk over a few patterns.

use crate::vocab::glob_match;

/// The JSON-RPC method a `tool` matcher answers.
pub const TOOLS_CALL: &str = "tools/call";
/// The JSON-RPC method a `resource` matcher answers.
pub const RESOURCES_READ: &str = "resources/read";
/// The JSON-RPC method a `prompt` matcher answers.
pub const PROMPTS_GET: &str = "prompts/get";
/// The JSON-RPC method whose answer writ filters.
pub const TOOLS_LIST: &str = "tools/list";

/// The bytes of a JSON-RPC `tools/call` request (id 1) for `tool` with
/// `args`: what `writ explain --mcp-tool`, test cases and benches send.
pub fn tools_call_body(tool: &str, args: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "jsonrpc": "2.0",
        "id": 1,
        "method": TOOLS_CALL,
        "params": {"name": tool, "arguments": args},
    }))
    .unwrap_or_default()
}

/// What an `mcp:` block names (exactly one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum McpKind {
    /// `tool`: `tools/call` by `params.name`.
    Tool,
    /// `method`: any other JSON-RPC method.
    Method,
    /// `resource`: `resources/read` by `params.uri` (a URI template).
    Resource,
    /// `prompt`: `prompts/get` by `params.name`.
    Prompt,
}

impl McpKind {
    /// The YAML key.
    pub fn key(self) -> &'static str {
        match self {
            McpKind::Tool => "tool",
            McpKind::Method => "method",
            McpKind::Resource => "resource",
            McpKind::Prompt => "prompt",
        }
    }
}

/// One `mcp:` block, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpMatch {
    /// Which field it matches.
    pub kind: McpKind,
    /// As written: a name, a glob (`*` = any run), or for resources a URI
    /// template whose `{var}` parts match any run.
    pub pattern: String,
    /// The pattern as a glob (`{var}` → `*`).
    glob: String,
    /// Characters before the first wildcard: longer is more specific.
    prefix: usize,
    /// Whether it has no wildcard.
    exact: bool,
}

impl McpMatch {
    /// Compiles a pattern of `kind`.
    pub fn new(kind: McpKind, pattern: &str) -> McpMatch {
        let glob = if kind == McpKind::Resource {
            uri_template_glob(pattern)
        } else {
            pattern.to_string()
        };
        let prefix = glob.find('*').unwrap_or(glob.len());
        McpMatch {
            kind,
            pattern: pattern.to_string(),
            exact: !glob.contains('*'),
            glob,
            prefix,
        }
    }

    /// Whether `value` (tool name, method, URI, prompt name) matches.
    pub fn matches(&self, value: &str) -> bool {
        if self.exact {
            self.glob == value
        } else {
            glob_match(&self.glob, value)
        }
    }

    /// Exact first, then the longer literal prefix, then the longer pattern.
    fn rank(&self) -> (bool, usize, usize) {
        (self.exact, self.prefix, self.glob.len())
    }

    /// Whether two matchers have the same shape (a load-time conflict).
    pub fn same_shape(&self, other: &McpMatch) -> bool {
        self.kind == other.kind && self.glob == other.glob
    }

    /// Whether a `method` matcher may name `method`: the three methods with
    /// their own kind are classified only by that kind.
    pub fn reserved_method(method: &str) -> Option<McpKind> {
        match method {
            TOOLS_CALL => Some(McpKind::Tool),
            RESOURCES_READ => Some(McpKind::Resource),
            PROMPTS_GET => Some(McpKind::Prompt),
            _ => None,
        }
    }
}

/// `{var}` parts of an RFC 6570 template become `*`.
fn uri_template_glob(t: &str) -> String {
    let mut out = String::with_capacity(t.len());
    let mut in_var = false;
    for c in t.chars() {
        match c {
            '{' if !in_var => {
                in_var = true;
                out.push('*');
            }
            '}' if in_var => in_var = false,
            _ if in_var => {}
            c => out.push(c),
        }
    }
    out
}

/// The `mcp:` actions of one endpoint.
#[derive(Debug, Clone, Default)]
pub struct McpGroup {
    /// (matcher, action index), in file order.
    pub members: Vec<(McpMatch, usize)>,
}

impl McpGroup {
    /// The most specific action for a JSON-RPC `method` and, for the three
    /// methods that name something, that name (or URI).
    pub fn select(&self, method: &str, name: Option<&str>) -> Option<usize> {
        let (kind, value) = match McpMatch::reserved_method(method) {
            Some(kind) => (kind, name?),
            None => (McpKind::Method, method),
        };
        self.members
            .iter()
            .filter(|(m, _)| m.kind == kind && m.matches(value))
            // `max_by_key` keeps the last of equals; file order breaks ties the
            // other way round, so compare the reversed index as well.
            .max_by_key(|(m, i)| (m.rank(), std::cmp::Reverse(*i)))
            .map(|(_, i)| *i)
    }

    /// Every tool matcher, for filtering a `tools/list` answer.
    pub fn has_tools(&self) -> bool {
        self.members.iter().any(|(m, _)| m.kind == McpKind::Tool)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(ms: &[(McpKind, &str)]) -> McpGroup {
        McpGroup {
            members: ms
                .iter()
                .enumerate()
                .map(|(i, (k, p))| (McpMatch::new(*k, p), i))
                .collect(),
        }
    }

    #[test]
    fn exact_beats_glob_and_longer_prefix_beats_shorter() {
        let g = group(&[
            (McpKind::Tool, "*"),
            (McpKind::Tool, "get_*"),
            (McpKind::Tool, "get_secret"),
            (McpKind::Method, "tools/list"),
            (McpKind::Method, "notifications/*"),
            (McpKind::Resource, "file:///{path}"),
            (McpKind::Prompt, "p*"),
        ]);
        assert_eq!(g.select("tools/call", Some("get_secret")), Some(2));
        assert_eq!(g.select("tools/call", Some("get_orders")), Some(1));
        assert_eq!(g.select("tools/call", Some("deploy")), Some(0));
        assert_eq!(g.select("tools/call", None), None);
        assert_eq!(g.select("tools/list", None), Some(3));
        assert_eq!(g.select("notifications/initialized", None), Some(4));
        assert_eq!(g.select("initialize", None), None);
        assert_eq!(g.select("resources/read", Some("file:///a/b")), Some(5));
        assert_eq!(g.select("resources/read", Some("http://x")), None);
        assert_eq!(g.select("prompts/get", Some("plan")), Some(6));
        // A `method` glob never reaches the methods with their own kind.
        let g = group(&[(McpKind::Method, "*")]);
        assert_eq!(g.select("tools/call", Some("x")), None);
        assert_eq!(g.select("ping", None), Some(0));
    }

    #[test]
    fn shapes() {
        let a = McpMatch::new(McpKind::Resource, "db://{table}");
        let b = McpMatch::new(McpKind::Resource, "db://{name}");
        assert!(a.same_shape(&b));
        assert!(!a.same_shape(&McpMatch::new(McpKind::Prompt, "db://*")));
    }
}
