//! The classification index: a segment trie. Lookup cost depends on the number of
//! path segments, never on the number of actions (SPEC: Templates).
//!
//! The virtual host decides first (SPEC, round-two settlements), as in nginx and
//! Envoy: actions with a `host` live in that host's own trie, and a request whose
//! host has one is classified there first; only when nothing there takes the
//! method and path do the host-less actions get their turn. A host-less literal
//! can therefore never outrank a host's own catch-all.
//!
//! Within one trie, precedence is the walk order: at each segment the literal
//! child is tried first, then the `{param}` child, then `{*rest}` endpoints; the
//! first node (leftmost difference wins) with an endpoint for the method wins.

use std::collections::HashMap;

use super::template::{Segment, Template};

/// Which methods an action accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Methods {
    /// Every method (`"*"`).
    Any,
    /// These methods.
    List(Vec<String>),
}

impl Methods {
    /// Whether `method` is accepted.
    pub fn contains(&self, method: &str) -> bool {
        match self {
            Methods::Any => true,
            Methods::List(l) => l.iter().any(|m| m == method),
        }
    }

    fn overlaps(&self, other: &Methods) -> Option<String> {
        match (self, other) {
            (Methods::Any, Methods::Any) => Some("*".into()),
            (Methods::Any, Methods::List(l)) | (Methods::List(l), Methods::Any) => {
                l.first().cloned()
            }
            (Methods::List(a), Methods::List(b)) => a.iter().find(|m| b.contains(m)).cloned(),
        }
    }
}

#[derive(Debug, Clone)]
struct Endpoint {
    action: usize,
    methods: Methods,
    params: Vec<String>,
}

#[derive(Debug, Default, Clone)]
struct Node {
    literals: HashMap<String, usize>,
    param: Option<usize>,
    endpoints: Vec<Endpoint>,
    rest: Vec<Endpoint>,
}

/// A successful classification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch {
    /// Index of the matched action.
    pub action: usize,
    /// Path parameters by name, values as normalized.
    pub params: Vec<(String, String)>,
}

/// Why nothing matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoMatch {
    /// Templates match the path, but none of their actions lists the method.
    MethodNotAllowed(Vec<String>),
    /// No template matches the path.
    NotFound,
}

/// A conflict found while building: the index of the action already there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// Index of the action already there.
    pub existing: usize,
    /// A method both actions accept.
    pub method: String,
}

#[derive(Debug, Clone)]
/// The segment-trie router: one trie per virtual host, plus the host-less one.
pub struct Router {
    /// Every trie's nodes; node 0 is the root of the host-less trie.
    nodes: Vec<Node>,
    /// Root node of each host's trie (hosts canonical: lowercase, no port).
    hosts: HashMap<String, usize>,
    case_sensitive: bool,
}

/// Root of the host-less trie.
const ANY_HOST: usize = 0;

impl Router {
    /// An empty router; `case_sensitive` governs literal segments.
    pub fn new(case_sensitive: bool) -> Self {
        Router {
            nodes: vec![Node::default()],
            hosts: HashMap::new(),
            case_sensitive,
        }
    }

    fn root_for_insert(&mut self, host: Option<String>) -> usize {
        let Some(h) = host else {
            return ANY_HOST;
        };
        if let Some(&r) = self.hosts.get(&h) {
            return r;
        }
        let r = self.push_node();
        self.hosts.insert(h, r);
        r
    }

    /// Adds an action; fails when another action has the same method, host and
    /// template shape (parameter names do not count).
    pub fn insert(
        &mut self,
        action: usize,
        template: &Template,
        host: Option<String>,
        methods: Methods,
    ) -> Result<(), Conflict> {
        let mut node = self.root_for_insert(host);
        let mut is_rest = false;
        for seg in &template.segments {
            match seg {
                Segment::Literal(l) => {
                    let key = if self.case_sensitive {
                        l.clone()
                    } else {
                        l.to_lowercase()
                    };
                    node = match self.nodes[node].literals.get(&key) {
                        Some(&n) => n,
                        None => {
                            let n = self.push_node();
                            self.nodes[node].literals.insert(key, n);
                            n
                        }
                    };
                }
                Segment::Param(_) => {
                    node = match self.nodes[node].param {
                        Some(n) => n,
                        None => {
                            let n = self.push_node();
                            self.nodes[node].param = Some(n);
                            n
                        }
                    };
                }
                Segment::Rest(_) => is_rest = true,
            }
        }
        let ep = Endpoint {
            action,
            methods,
            params: template.param_names(),
        };
        let list = if is_rest {
            &mut self.nodes[node].rest
        } else {
            &mut self.nodes[node].endpoints
        };
        for other in list.iter() {
            if let Some(method) = other.methods.overlaps(&ep.methods) {
                return Err(Conflict {
                    existing: other.action,
                    method,
                });
            }
        }
        list.push(ep);
        Ok(())
    }

    fn push_node(&mut self) -> usize {
        self.nodes.push(Node::default());
        self.nodes.len() - 1
    }

    /// Classifies `segments` (already normalized) for `method` and `host`
    /// (already lowercased, without port or trailing dot).
    pub fn lookup(
        &self,
        method: &str,
        host: Option<&str>,
        segments: &[&str],
    ) -> Result<RouteMatch, NoMatch> {
        let host_root = host.and_then(|h| self.hosts.get(h).copied());
        let mut captured: Vec<&str> = Vec::with_capacity(4);
        let mut lower = String::new();
        for root in host_root.into_iter().chain([ANY_HOST]) {
            captured.clear();
            if let Some((ep, rest)) = self.walk(root, segments, method, &mut captured, &mut lower) {
                let mut values: Vec<String> = captured.iter().map(|s| s.to_string()).collect();
                if let Some(rest) = rest {
                    values.push(rest);
                }
                let params = ep.params.iter().cloned().zip(values).collect();
                return Ok(RouteMatch {
                    action: ep.action,
                    params,
                });
            }
        }
        let mut allowed = Vec::new();
        for root in host_root.into_iter().chain([ANY_HOST]) {
            self.collect_methods(root, segments, &mut allowed);
        }
        if allowed.is_empty() {
            Err(NoMatch::NotFound)
        } else {
            allowed.sort();
            allowed.dedup();
            Err(NoMatch::MethodNotAllowed(allowed))
        }
    }

    fn walk<'a, 'p>(
        &'a self,
        node: usize,
        segs: &[&'p str],
        method: &str,
        captured: &mut Vec<&'p str>,
        lower: &mut String,
    ) -> Option<(&'a Endpoint, Option<String>)> {
        let n = &self.nodes[node];
        let Some((first, rest_segs)) = segs.split_first() else {
            return pick(&n.endpoints, method).map(|e| (e, None));
        };
        let child = if self.case_sensitive {
            n.literals.get(*first)
        } else {
            lower.clear();
            lower.push_str(&first.to_lowercase());
            n.literals.get(lower.as_str())
        };
        if let Some(&c) = child
            && let Some(found) = self.walk(c, rest_segs, method, captured, lower)
        {
            return Some(found);
        }
        if let Some(p) = n.param
            && !first.is_empty()
        {
            captured.push(first);
            if let Some(found) = self.walk(p, rest_segs, method, captured, lower) {
                return Some(found);
            }
            captured.pop();
        }
        pick(&n.rest, method).map(|e| (e, Some(segs.join("/"))))
    }

    fn collect_methods(&self, node: usize, segs: &[&str], out: &mut Vec<String>) {
        let n = &self.nodes[node];
        let add = |eps: &[Endpoint], out: &mut Vec<String>| {
            for e in eps {
                match &e.methods {
                    Methods::Any => out.push("*".into()),
                    Methods::List(l) => out.extend(l.iter().cloned()),
                }
            }
        };
        let Some((first, rest)) = segs.split_first() else {
            add(&n.endpoints, out);
            return;
        };
        let key = if self.case_sensitive {
            first.to_string()
        } else {
            first.to_lowercase()
        };
        if let Some(&c) = n.literals.get(&key) {
            self.collect_methods(c, rest, out);
        }
        if let Some(p) = n.param
            && !first.is_empty()
        {
            self.collect_methods(p, rest, out);
        }
        add(&n.rest, out);
    }
}

/// The first endpoint of a node that takes the method (one trie holds one host,
/// and at most one endpoint per method and shape, so order is immaterial).
fn pick<'a>(eps: &'a [Endpoint], method: &str) -> Option<&'a Endpoint> {
    eps.iter().find(|e| e.methods.contains(method))
}

#[cfg(test)]
mod tests;
